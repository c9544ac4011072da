//! Audit events: who did what to whom, from where, and how it ended. The store writes
//! each one in the same transaction as the change it records, so the log never holds a
//! change that did not happen, and no change happens without its event. Events never
//! hold a secret: details name what changed (flags, roles, scopes, ids), never a token,
//! password or digest.

use super::clock::UnixSeconds;
use super::principal::{Principal, PrincipalKind};
use serde_json::{Map, Value};
use std::borrow::Cow;
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

/// How the audited attempt ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It happened.
    Success,
    /// It was refused after the secret or request was checked.
    Failure,
    /// It was refused by a guessing limit, without checking the secret.
    Limited,
}

impl Outcome {
    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
            Self::Limited => "limited",
        }
    }

    /// The outcome a stored or requested name stands for.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Success, Self::Failure, Self::Limited]
            .into_iter()
            .find(|o| o.as_str() == s)
    }
}

/// Who acted: a principal (`user:<id>`, `integration:<id>`, `app:<id>`), `system` for
/// what identityd does by itself, `cli` for the recovery commands, `anonymous` for a
/// caller who has not proved who it is (a login attempt names an account, but only a
/// successful one acts as it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// Kind and id, e.g. `user:0190…`.
    pub id: Cow<'static, str>,
    /// A readable name: the username, integration or app name.
    pub name: String,
    /// The credential it acted with, as principals report it (`api_token:…`), or how
    /// it logged in (`password`, `client_secret:<client_id>`).
    pub credential: String,
}

impl Actor {
    /// identityd itself (startup documents, the first signing key, the first admin).
    pub fn system() -> Self {
        Self::named("system")
    }

    /// The operator at the recovery command line.
    pub fn cli() -> Self {
        Self::named("cli")
    }

    /// Nobody proven: an unauthenticated caller. Allocates nothing, as every check
    /// starts with it.
    pub fn anonymous() -> Self {
        Self::named("anonymous")
    }

    /// Nobody proven, presenting `credential` (e.g. `password`).
    pub fn presenting(credential: impl Into<String>) -> Self {
        Self {
            credential: credential.into(),
            ..Self::anonymous()
        }
    }

    fn named(id: &'static str) -> Self {
        Self {
            id: Cow::Borrowed(id),
            name: String::new(),
            credential: String::new(),
        }
    }

    /// The principal behind an authenticated credential.
    pub fn of(principal: &Principal) -> Self {
        Self::principal(
            principal.kind,
            &principal.id,
            &principal.name,
            &principal.credential_id,
        )
    }

    /// A principal by kind, id and name, acting with `credential`.
    pub fn principal(kind: PrincipalKind, id: &str, name: &str, credential: &str) -> Self {
        Self {
            id: Cow::Owned(principal_id(kind, id)),
            name: name.to_owned(),
            credential: credential.to_owned(),
        }
    }
}

impl Default for Actor {
    fn default() -> Self {
        Self::anonymous()
    }
}

/// `user:<id>`, `integration:<id>` or `app:<id>`.
pub fn principal_id(kind: PrincipalKind, id: &str) -> String {
    let kind = match kind {
        PrincipalKind::User => "user",
        PrincipalKind::Integration => "integration",
        PrincipalKind::App => "app",
    };
    format!("{kind}:{id}")
}

/// Where a request came from and what it is called, for every event it causes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Origin {
    /// Who asked.
    pub actor: Actor,
    /// The end client's address: what the calling service passed as `client_address`,
    /// the downstream address Envoy reported, or the peer when the caller is the client
    /// (Admin). Guessing limits count per client.
    pub client: Option<IpAddr>,
    /// The address the request itself came from (the gRPC peer).
    pub peer: Option<IpAddr>,
    /// The request id, shared by every event of the request.
    pub request_id: RequestId,
}

/// A request's id: the caller's `x-request-id`, or one made the first time an event
/// needs it, then shared by every later event of the request.
#[derive(Debug, Clone, Default)]
pub struct RequestId(Arc<OnceLock<String>>);

impl RequestId {
    /// The id the caller sent.
    pub fn given(id: String) -> Self {
        Self(Arc::new(OnceLock::from(id)))
    }

    /// The id, made now if the caller sent none.
    pub fn get(&self) -> &str {
        self.0
            .get_or_init(|| uuid::Uuid::now_v7().simple().to_string())
    }
}

impl PartialEq for RequestId {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.0.get() == other.0.get()
    }
}

impl Eq for RequestId {}

impl Origin {
    /// identityd acting by itself.
    pub fn system() -> Self {
        Self {
            actor: Actor::system(),
            ..Self::default()
        }
    }

    /// The same origin, with the actor a request turned out to act for (a login's
    /// user, once its password was right).
    pub fn acting(&self, actor: Actor) -> Self {
        Self {
            actor,
            ..self.clone()
        }
    }

    /// A successful `action` on `target` at `at`, with no details yet.
    pub fn event(&self, at: UnixSeconds, action: &'static str, target: impl Into<String>) -> Event {
        let address = |ip: Option<IpAddr>| ip.map(|ip| ip.to_string()).unwrap_or_default();
        Event {
            at,
            actor: self.actor.clone(),
            action,
            target: target.into(),
            outcome: Outcome::Success,
            reason: String::new(),
            source: address(self.client),
            peer: address(self.peer),
            request_id: self.request_id.get().to_owned(),
            details: Map::new(),
        }
    }
}

/// One audit event.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    /// When.
    pub at: UnixSeconds,
    /// Who.
    pub actor: Actor,
    /// What, e.g. `user.create`, `login`, `token.refresh`.
    pub action: &'static str,
    /// To what: `user:<username>`, `session:<id>`, `integration:<client_id>`, …
    pub target: String,
    /// How it ended.
    pub outcome: Outcome,
    /// Why it failed, for operators (e.g. `wrong_password`); empty on success.
    pub reason: String,
    /// The end client's address, if known (see [`Origin::client`]); what a caller passed
    /// may be false, so the peer is recorded too.
    pub source: String,
    /// The address the request came from, if known.
    pub peer: String,
    /// The request id.
    pub request_id: String,
    /// What changed, as JSON members. Never a secret.
    pub details: Map<String, Value>,
}

impl Event {
    /// Adds one detail.
    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// The same event, ended otherwise.
    pub fn ended(mut self, outcome: Outcome, reason: &str) -> Self {
        self.outcome = outcome;
        self.reason = reason.to_owned();
        self
    }

    /// The details as stored: a JSON object.
    pub fn details_json(&self) -> String {
        Value::Object(self.details.clone()).to_string()
    }
}

/// Names for text that must not be stored as typed: the login name of an attempt that
/// names no account may well be a password typed into the wrong field. Each text gets a
/// keyed digest (`#` and 24 hex digits), the same on every replica (the key derives from
/// the master key), so attempts at one name are still counted and found together, but
/// the log never holds the text.
#[derive(Clone)]
pub struct Pseudonyms(Arc<zeroize::Zeroizing<[u8; 32]>>);

impl Pseudonyms {
    /// Pseudonyms under `key`.
    pub fn new(key: zeroize::Zeroizing<[u8; 32]>) -> Self {
        Self(Arc::new(key))
    }

    /// The pseudonym of `text`.
    pub fn of(&self, text: &str) -> String {
        use sha2::{Digest, Sha256};
        let mut hasher = Sha256::new();
        hasher.update(self.0.as_slice());
        hasher.update(text.as_bytes());
        let digest = hasher.finalize();
        format!("#{}", hex::encode(&digest[..12]))
    }
}

impl std::fmt::Debug for Pseudonyms {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Pseudonyms(<key>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_carry_their_origin() {
        let origin = Origin {
            actor: Actor {
                id: "user:1".into(),
                name: "admin".into(),
                credential: "api_token:ab".into(),
            },
            client: "192.0.2.1".parse().ok(),
            peer: "10.0.0.2".parse().ok(),
            request_id: RequestId::given("r-1".into()),
        };
        let event = origin
            .event(7, "user.create", "user:alice")
            .with("roles", vec!["support"])
            .ended(Outcome::Failure, "already_exists");
        assert_eq!(event.actor, origin.actor);
        assert_eq!(
            (
                event.source.as_str(),
                event.peer.as_str(),
                event.request_id.as_str()
            ),
            ("192.0.2.1", "10.0.0.2", "r-1")
        );
        assert_eq!(event.details_json(), r#"{"roles":["support"]}"#);
        assert_eq!(event.outcome, Outcome::Failure);
        for outcome in [Outcome::Success, Outcome::Failure, Outcome::Limited] {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(Outcome::parse("ok"), None);
        // Without a request id from the caller, the request gets one, shared by its events.
        let anonymous = Origin::default();
        let (a, b) = (
            anonymous.event(1, "login", "x"),
            anonymous.clone().event(1, "login", "x"),
        );
        assert!(!a.request_id.is_empty() && a.request_id == b.request_id);
        assert_ne!(
            a.request_id,
            Origin::default().event(1, "login", "x").request_id
        );
        assert_eq!(a.actor.id, "anonymous");
    }

    #[test]
    fn pseudonyms_hide_the_text_and_keep_it_apart() {
        let key = |b| zeroize::Zeroizing::new([b; 32]);
        let names = Pseudonyms::new(key(1));
        let name = names.of("Tr0ub4dor&3");
        assert!(name.starts_with('#') && name.len() == 25, "{name}");
        assert!(!name.contains("Tr0ub4dor"));
        assert_eq!(name, names.of("Tr0ub4dor&3"));
        assert_ne!(name, names.of("Tr0ub4dor&4"));
        assert_ne!(name, Pseudonyms::new(key(2)).of("Tr0ub4dor&3"));
        assert!(!format!("{names:?}").contains('1'));
    }
}
