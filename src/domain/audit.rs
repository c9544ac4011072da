//! Audit events: who did what to whom, from where, and how it ended. The store writes
//! each one in the same transaction as the change it records, so the log never holds a
//! change that did not happen, and no change happens without its event. Events never
//! hold a secret: details name what changed (flags, roles, scopes, ids), never a token,
//! password or digest.

use super::clock::UnixSeconds;
use super::principal::{Principal, PrincipalKind};
use serde_json::{Map, Value};

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
/// login whose account is unknown.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Actor {
    /// Kind and id, e.g. `user:0190…`.
    pub id: String,
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

    /// Nobody known: a login naming no account.
    pub fn anonymous() -> Self {
        Self::named("anonymous")
    }

    fn named(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            name: String::new(),
            credential: String::new(),
        }
    }

    /// The principal behind an authenticated credential.
    pub fn of(principal: &Principal) -> Self {
        Self {
            id: principal_id(principal.kind, &principal.id),
            name: principal.name.clone(),
            credential: principal.credential_id.clone(),
        }
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
    /// Where from, as recorded: the end client's address when the caller passed one,
    /// else the address the request came from; empty when neither is known.
    pub source: String,
    /// The end client's address as guessing limits count it
    /// ([`source_key`](super::guessing::source_key)), when known.
    pub client_address: Option<String>,
    /// The request id the caller sent (`x-request-id`); empty when it sent none, and
    /// each event then gets one of its own.
    pub request_id: String,
}

impl Origin {
    /// identityd acting by itself.
    pub fn system() -> Self {
        Self {
            actor: Actor::system(),
            ..Self::default()
        }
    }

    /// The same origin, with the actor a request turned out to act for (a login's
    /// user, once known).
    pub fn acting(&self, actor: Actor) -> Self {
        Self {
            actor,
            ..self.clone()
        }
    }

    /// A successful `action` on `target` at `at`, with no details yet.
    pub fn event(&self, at: UnixSeconds, action: &'static str, target: impl Into<String>) -> Event {
        let request_id = match self.request_id.as_str() {
            "" => uuid::Uuid::now_v7().simple().to_string(),
            given => given.to_owned(),
        };
        Event {
            at,
            actor: self.actor.clone(),
            action,
            target: target.into(),
            outcome: Outcome::Success,
            reason: String::new(),
            source: self.source.clone(),
            request_id,
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
    /// The end client's address, if known.
    pub source: String,
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
            source: "192.0.2.1".into(),
            client_address: Some("192.0.2.1".into()),
            request_id: "r-1".into(),
        };
        let event = origin
            .event(7, "user.create", "user:alice")
            .with("roles", vec!["support"])
            .ended(Outcome::Failure, "already_exists");
        assert_eq!(event.actor, origin.actor);
        assert_eq!(
            (event.source.as_str(), event.request_id.as_str()),
            ("192.0.2.1", "r-1")
        );
        assert_eq!(event.details_json(), r#"{"roles":["support"]}"#);
        assert_eq!(event.outcome, Outcome::Failure);
        for outcome in [Outcome::Success, Outcome::Failure, Outcome::Limited] {
            assert_eq!(Outcome::parse(outcome.as_str()), Some(outcome));
        }
        assert_eq!(Outcome::parse("ok"), None);
        // Without a request id from the caller, each event gets one.
        let anonymous = Origin::default();
        let (a, b) = (
            anonymous.event(1, "login", "x"),
            anonymous.event(1, "login", "x"),
        );
        assert!(!a.request_id.is_empty() && a.request_id != b.request_id);
    }
}
