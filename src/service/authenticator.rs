//! Turns an `Authorization` header into an authenticated principal, through the cache.
//!
//! The credential's scheme and shape decide how it is checked, never trial and error
//! (see [`dispatch`](crate::domain::dispatch)): `Basic` carries a username and API token;
//! `Bearer` a signed access token, a non-expiring token or an app token; `JWT` a user's
//! signed access token. A warm check is one cache lookup; a cold one verifies the
//! signature once (or looks the opaque token up by digest) and reads the credential's
//! owner and permissions in one round trip.
//!
//! A scoped credential's entry also holds what its scopes grant under the catalog in
//! force; replacing the catalog empties the cache.
//!
//! API tokens are under a guessing limit per Basic username (see
//! [`limits`](super::limits)): a wrong token is charged to it, and a right one is
//! refused while it blocks, from the cache too.

use super::apps::{app_token_credential_id, app_token_id};
use super::cache::CheckCache;
use super::documents::Documents;
use super::keys::KeyRing;
use super::limits::{AdmitError, Guess, GuessLimits};
use super::usage::UsageRecorder;
use crate::domain::access_token::{TokenPolicy, TokenRejection};
use crate::domain::audit::Origin;
use crate::domain::clock::{Clock, NEVER, UnixSeconds};
use crate::domain::credentials::{Scheme, parse_authorization};
use crate::domain::dispatch::{Presented, accepts_principal, dispatch};
use crate::domain::guessing::{Guessed, source_bytes};
use crate::domain::names;
use crate::domain::permissions::{Permission, PermissionSet};
use crate::domain::principal::{
    AttachedUser, Authenticated, CredentialKind, Principal, PrincipalKind,
};
use crate::domain::scopes;
use crate::domain::secret::SecretDigest;
use crate::domain::verdict::AuthFailure;
use crate::store::{ApiTokenOwner, AppTokenPrincipal, SessionPrincipal, Store, StoreError};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

/// The verdict on a credential: who it is, or why not.
pub type Outcome = Result<Arc<Authenticated>, AuthFailure>;

/// Authenticates credentials against the store, caching successes by digest.
pub struct Authenticator {
    store: Arc<dyn Store>,
    cache: Arc<CheckCache>,
    limits: Arc<GuessLimits>,
    keys: Arc<KeyRing>,
    policy: TokenPolicy,
    clock: Arc<dyn Clock>,
    documents: Arc<Documents>,
    usage: Arc<UsageRecorder>,
}

impl Authenticator {
    /// An authenticator over `store`, filling `cache`, verifying access tokens with
    /// `keys` for `policy`, reading scopes by the catalog in `documents`, noting app
    /// token uses in `usage`.
    #[allow(
        clippy::too_many_arguments,
        reason = "built once, by the server's wiring"
    )]
    pub fn new(
        store: Arc<dyn Store>,
        cache: Arc<CheckCache>,
        limits: Arc<GuessLimits>,
        keys: Arc<KeyRing>,
        policy: TokenPolicy,
        clock: Arc<dyn Clock>,
        documents: Arc<Documents>,
        usage: Arc<UsageRecorder>,
    ) -> Self {
        Self {
            store,
            cache,
            limits,
            keys,
            policy,
            clock,
            documents,
            usage,
        }
    }

    /// Authenticates a raw header presented by `origin` (whose client address, if any,
    /// counts guesses per source). `Err` only when storage failed: the caller must then
    /// deny (fail closed), never allow.
    pub async fn authenticate(&self, header: &str, origin: &Origin) -> Result<Outcome, StoreError> {
        let presented = match parse_authorization(header) {
            Ok(credential) => dispatch(credential),
            Err(e) => return Ok(Err(e.into())),
        };
        match presented {
            Err(failure) => Ok(Err(failure)),
            Ok(Presented::ApiToken { username, token }) => {
                self.api_token(&username, &token, origin).await
            }
            Ok(Presented::AccessToken { scheme, token }) => self.access_token(scheme, &token).await,
            Ok(Presented::NonExpiringToken(token)) => self.non_expiring_token(&token).await,
            Ok(Presented::AppToken(token)) => {
                let outcome = self.app_token(&token).await?;
                if let Ok(a) = &outcome
                    && let Some(id) = app_token_id(&a.principal.credential_id)
                {
                    self.usage.touch(id, self.clock.now());
                }
                Ok(outcome)
            }
        }
    }

    /// Checks a signed access token: cache first, else signature, claims and session.
    async fn access_token(
        &self,
        scheme: Scheme,
        token: &SecretString,
    ) -> Result<Outcome, StoreError> {
        // The scheme is part of the key: the principal reports the scheme it came with.
        let key = SecretDigest::of_parts(&[
            scheme.as_str().as_bytes(),
            b" ",
            token.expose_secret().as_bytes(),
        ]);
        let now = self.clock.now();
        if let Some(hit) = self.live_hit(&key, now) {
            return Ok(Ok(hit));
        }
        let verified = self
            .keys
            .verify_checked(token.expose_secret(), &self.policy, now)
            .await;
        let claims = match verified {
            Ok(claims) => claims,
            Err(rejection) => return Ok(Err(rejected(rejection, scheme))),
        };
        let read_at = self.cache.epoch();
        let Some(session) = self.store.find_session(&claims.sid).await? else {
            // Signed by us, so the session existed: its owner was deleted or it was purged.
            return Ok(Err(AuthFailure::Revoked { scheme }));
        };
        if session.principal_id != claims.sub || session.client_id != claims.client_id {
            return Ok(Err(AuthFailure::Invalid { scheme }));
        }
        if let Err(mismatch) = accepts_principal(scheme, session_kind(&session)) {
            return Ok(Err(mismatch));
        }
        if session.revoked || !session.active {
            return Ok(Err(AuthFailure::Revoked { scheme }));
        }
        if session.expires_at <= now {
            return Ok(Err(AuthFailure::Expired { scheme }));
        }
        let credential = SessionCredential {
            scheme,
            kind: CredentialKind::AccessToken,
            id: format!("access_token:{}", claims.jti),
            expires_at: claims.exp,
            scopes: claims.scope.as_deref(),
        };
        let authenticated = Arc::new(self.session_principal(session, credential));
        self.cache.fill(key, authenticated.clone(), read_at);
        Ok(Ok(authenticated))
    }

    /// Checks a non-expiring token: cache first, else the session it is stored as.
    async fn non_expiring_token(&self, token: &SecretString) -> Result<Outcome, StoreError> {
        let scheme = Scheme::Bearer;
        let digest = SecretDigest::of(token);
        let now = self.clock.now();
        if let Some(hit) = self.live_hit(&digest, now) {
            return Ok(Ok(hit));
        }
        let read_at = self.cache.epoch();
        let Some(session) = self.store.find_token_session(&digest).await? else {
            return Ok(Err(AuthFailure::Invalid { scheme }));
        };
        if session.revoked || !session.active {
            return Ok(Err(AuthFailure::Revoked { scheme }));
        }
        if session.regenerate_at.is_some_and(|at| at <= now) {
            return Ok(Err(AuthFailure::RegenerationRequired { scheme }));
        }
        if session.expires_at <= now {
            return Ok(Err(AuthFailure::Expired { scheme }));
        }
        let scopes = session.scopes.clone();
        let credential = SessionCredential {
            scheme,
            kind: CredentialKind::NonExpiringToken,
            id: format!("non_expiring_token:{}", digest.short_id()),
            // When it must be regenerated; never otherwise.
            expires_at: session.regenerate_at.unwrap_or(NEVER),
            scopes: Some(&scopes),
        };
        let authenticated = Arc::new(self.session_principal(session, credential));
        self.cache.fill(digest, authenticated.clone(), read_at);
        Ok(Ok(authenticated))
    }

    /// Checks an app token: cache first, else the token, its app and the attached user.
    async fn app_token(&self, token: &SecretString) -> Result<Outcome, StoreError> {
        let scheme = Scheme::Bearer;
        let digest = SecretDigest::of(token);
        if let Some(hit) = self.cache.get(&digest) {
            return Ok(Ok(hit));
        }
        let read_at = self.cache.epoch();
        let Some(found) = self.store.find_app_token(&digest).await? else {
            return Ok(Err(AuthFailure::Invalid { scheme }));
        };
        if !found.digest.ct_eq(&digest) {
            return Ok(Err(AuthFailure::Invalid { scheme }));
        }
        let attached_inactive = found.attached.as_ref().is_some_and(|u| !u.active);
        if !found.app_active || attached_inactive {
            return Ok(Err(AuthFailure::Disabled { scheme }));
        }
        let authenticated = Arc::new(app_token_principal(found));
        self.cache.fill(digest, authenticated.clone(), read_at);
        Ok(Ok(authenticated))
    }

    /// A cached entry still within its lifetime. An entry past it is dropped, so the
    /// slow path reports why (expired, or regeneration required).
    fn live_hit(&self, key: &SecretDigest, now: UnixSeconds) -> Option<Arc<Authenticated>> {
        let hit = self.cache.get(key)?;
        if hit.principal.expires_at.is_none_or(|at| at > now) {
            return Some(hit);
        }
        self.cache.invalidate(key);
        None
    }

    /// The principal behind a session, with what its scopes grant under the catalog in
    /// force.
    fn session_principal(
        &self,
        session: SessionPrincipal,
        credential: SessionCredential<'_>,
    ) -> Authenticated {
        let kind = session_kind(&session);
        let documents = self.documents.current();
        let scopes: Option<Vec<String>> = credential.scopes.map(scopes::names);
        let mut ceiling = scopes.as_ref().map(|n| documents.catalog.grants(n));
        // A refresh may have narrowed the session since this token was issued: the
        // session's scopes bound every token of it.
        if !session.scopes.is_empty() {
            let session_grants = documents.catalog.grants(&scopes::names(&session.scopes));
            ceiling = Some(match ceiling {
                Some(token_grants) => token_grants.intersect(&session_grants),
                None => session_grants,
            });
        }
        let scope_ceiling = ceiling.map(Arc::new);
        Authenticated {
            principal: Principal {
                kind,
                id: session.principal_id,
                name: session.name,
                is_staff: session.is_staff,
                is_customer: session.is_customer,
                attached_user: None,
                scheme: credential.scheme,
                credential_kind: credential.kind,
                credential_id: credential.id,
                session_id: Some(session.session_id),
                expires_at: (credential.expires_at != NEVER).then_some(credential.expires_at),
                scopes: scopes.unwrap_or_default(),
            },
            permissions: stored_permissions(&session.permissions),
            scope_ceiling,
            attached_permissions: None,
        }
    }

    /// Checks Basic `username:token`, under the username's guessing limit: a token
    /// presented with a username that is not its owner's is simply wrong. A cold check
    /// is decided with its result under the counters' locks, so a blocked attempt is
    /// refused alike, right or wrong. A warm one is cached per source address and
    /// dropped when a counter of its username trips (see [`limits`](super::limits)), so
    /// a blocked source always reaches the database.
    async fn api_token(
        &self,
        username: &str,
        token: &SecretString,
        origin: &Origin,
    ) -> Result<Outcome, StoreError> {
        let invalid = Err(AuthFailure::Invalid {
            scheme: Scheme::Basic,
        });
        // A name no user can have is no guess at anyone's token.
        if names::check_username(username).is_err() {
            return Ok(invalid);
        }
        let source = origin.client.map(source_bytes);
        let key = SecretDigest::of_parts(&[
            b"api_token",
            token.expose_secret().as_bytes(),
            source.as_ref().map_or(&[], |s| s),
        ]);
        // Stored names are canonical (lower-case ASCII), so a warm hit compares without
        // copying.
        if let Some(hit) = self.cache.get(&key)
            && hit.principal.name.eq_ignore_ascii_case(username)
        {
            return Ok(Ok(hit));
        }
        let guess = Guess {
            secret: Guessed::ApiToken,
            subject: username.to_ascii_lowercase(),
            source: origin.client,
        };
        let read_at = self.cache.epoch();
        let digest = SecretDigest::of(token);
        let owner = self.store.find_api_token(&digest).await?.filter(|o| {
            o.digest.ct_eq(&digest) && o.active && o.api_access && o.username == guess.subject
        });
        match self.limits.settle(&guess, owner.is_some(), origin).await {
            Ok(()) => {}
            Err(AdmitError::Limited(_)) => return Ok(invalid),
            Err(AdmitError::Store(e)) => return Err(e),
        }
        let Some(owner) = owner else {
            return Ok(invalid);
        };
        let authenticated = Arc::new(api_token_principal(owner, &digest));
        self.cache.fill(key, authenticated.clone(), read_at);
        Ok(Ok(authenticated))
    }
}

fn session_kind(session: &SessionPrincipal) -> PrincipalKind {
    if session.integration {
        PrincipalKind::Integration
    } else {
        PrincipalKind::User
    }
}

fn rejected(rejection: TokenRejection, scheme: Scheme) -> AuthFailure {
    match rejection {
        TokenRejection::Invalid => AuthFailure::Invalid { scheme },
        TokenRejection::Expired => AuthFailure::Expired { scheme },
    }
}

/// Stored permissions were validated on the way in; one that no longer parses is
/// dropped, which can only narrow access.
fn stored_permissions(stored: &[String]) -> Arc<PermissionSet> {
    Arc::new(
        stored
            .iter()
            .filter_map(|p| Permission::parse(p).ok())
            .collect(),
    )
}

/// How a session-backed credential was presented, for its principal.
struct SessionCredential<'a> {
    scheme: Scheme,
    kind: CredentialKind,
    id: String,
    /// When it stops working; [`NEVER`] for never.
    expires_at: UnixSeconds,
    /// Its scopes, space-separated; `None` when unscoped.
    scopes: Option<&'a str>,
}

fn api_token_principal(owner: ApiTokenOwner, digest: &SecretDigest) -> Authenticated {
    Authenticated {
        principal: Principal {
            kind: PrincipalKind::User,
            id: owner.user_id,
            name: owner.username,
            is_staff: owner.is_staff,
            is_customer: owner.is_customer,
            attached_user: None,
            scheme: Scheme::Basic,
            credential_kind: CredentialKind::ApiToken,
            credential_id: format!("api_token:{}", digest.short_id()),
            session_id: None,
            expires_at: None,
            scopes: Vec::new(),
        },
        permissions: stored_permissions(&owner.permissions),
        scope_ceiling: None,
        attached_permissions: None,
    }
}

fn app_token_principal(found: AppTokenPrincipal) -> Authenticated {
    let (attached_user, attached_permissions) = match found.attached {
        Some(user) => (
            Some(AttachedUser {
                id: user.id,
                username: user.username,
                is_staff: user.is_staff,
            }),
            Some(stored_permissions(&user.permissions)),
        ),
        None => (None, None),
    };
    Authenticated {
        principal: Principal {
            kind: PrincipalKind::App,
            id: found.app_id,
            name: found.app_name,
            is_staff: false,
            is_customer: false,
            attached_user,
            scheme: Scheme::Bearer,
            credential_kind: CredentialKind::AppToken,
            credential_id: app_token_credential_id(&found.token_id),
            session_id: None,
            expires_at: None,
            scopes: Vec::new(),
        },
        permissions: stored_permissions(&found.permissions),
        scope_ceiling: None,
        attached_permissions,
    }
}
