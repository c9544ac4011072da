//! Turns an `Authorization` header into an authenticated principal, through the cache.
//!
//! The credential's scheme and shape decide how it is checked, never trial and error:
//! `Basic` carries a username and API token; `Bearer` and `JWT` carry a signed access
//! token. A warm check is one cache lookup; a cold one verifies the signature once and
//! reads the session and its owner's permissions in one round trip.

use super::cache::CheckCache;
use super::keys::KeyRing;
use crate::domain::access_token::{AccessClaims, TokenPolicy, TokenRejection, looks_like_jwt};
use crate::domain::clock::Clock;
use crate::domain::credentials::{Credential, Scheme, parse_authorization};
use crate::domain::permissions::{Permission, PermissionSet};
use crate::domain::principal::{Authenticated, CredentialKind, Principal, PrincipalKind};
use crate::domain::secret::{SecretDigest, SecretKind};
use crate::domain::verdict::AuthFailure;
use crate::store::{ApiTokenOwner, SessionPrincipal, Store, StoreError};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;

/// The verdict on a credential: who it is, or why not.
pub type Outcome = Result<Arc<Authenticated>, AuthFailure>;

/// Authenticates credentials against the store, caching successes by digest.
pub struct Authenticator {
    store: Arc<dyn Store>,
    cache: Arc<CheckCache>,
    keys: Arc<KeyRing>,
    policy: TokenPolicy,
    clock: Arc<dyn Clock>,
}

impl Authenticator {
    /// An authenticator over `store`, filling `cache`, verifying access tokens with
    /// `keys` for `policy`.
    pub fn new(
        store: Arc<dyn Store>,
        cache: Arc<CheckCache>,
        keys: Arc<KeyRing>,
        policy: TokenPolicy,
        clock: Arc<dyn Clock>,
    ) -> Self {
        Self {
            store,
            cache,
            keys,
            policy,
            clock,
        }
    }

    /// Authenticates a raw header. `Err` only when storage failed: the caller must then
    /// deny (fail closed), never allow.
    pub async fn authenticate(&self, header: &str) -> Result<Outcome, StoreError> {
        let credential = match parse_authorization(header) {
            Ok(c) => c,
            Err(e) => return Ok(Err(e.into())),
        };
        match credential {
            Credential::Basic { username, token } => {
                if !SecretKind::ApiToken.matches_shape(token.expose_secret()) {
                    return Ok(Err(AuthFailure::Invalid {
                        scheme: Scheme::Basic,
                    }));
                }
                let digest = SecretDigest::of(&token);
                let found = self.api_token(digest).await?;
                // A token presented with someone else's username is simply invalid.
                Ok(found
                    .filter(|a| a.principal.name == username)
                    .ok_or(AuthFailure::Invalid {
                        scheme: Scheme::Basic,
                    }))
            }
            Credential::Token { scheme, token } if looks_like_jwt(token.expose_secret()) => {
                self.access_token(scheme, &token).await
            }
            Credential::Token { scheme, .. } => Ok(Err(AuthFailure::Invalid { scheme })),
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
        if let Some(hit) = self.cache.get(&key) {
            if hit.principal.expires_at.is_some_and(|exp| exp > now) {
                return Ok(Ok(hit));
            }
            self.cache.invalidate(&key);
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
        if session.revoked || !session.active {
            return Ok(Err(AuthFailure::Revoked { scheme }));
        }
        if session.expires_at <= now {
            return Ok(Err(AuthFailure::Expired { scheme }));
        }
        let authenticated = Arc::new(session_principal(session, &claims, scheme));
        self.cache.fill(key, authenticated.clone(), read_at);
        Ok(Ok(authenticated))
    }

    /// The valid API token with this digest, from the cache or the store.
    async fn api_token(
        &self,
        digest: SecretDigest,
    ) -> Result<Option<Arc<Authenticated>>, StoreError> {
        if let Some(hit) = self.cache.get(&digest) {
            return Ok(Some(hit));
        }
        let read_at = self.cache.epoch();
        let Some(owner) = self.store.find_api_token(&digest).await? else {
            return Ok(None);
        };
        if !owner.digest.ct_eq(&digest) || !owner.active || !owner.api_access {
            return Ok(None);
        }
        let authenticated = Arc::new(api_token_principal(owner, &digest));
        self.cache.fill(digest, authenticated.clone(), read_at);
        Ok(Some(authenticated))
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

fn session_principal(
    session: SessionPrincipal,
    claims: &AccessClaims,
    scheme: Scheme,
) -> Authenticated {
    let kind = if session.integration {
        PrincipalKind::Integration
    } else {
        PrincipalKind::User
    };
    Authenticated {
        principal: Principal {
            kind,
            id: session.principal_id,
            name: session.name,
            is_staff: session.is_staff,
            scheme,
            credential_kind: CredentialKind::AccessToken,
            credential_id: format!("access_token:{}", claims.jti),
            session_id: Some(session.session_id),
            expires_at: Some(claims.exp),
        },
        permissions: stored_permissions(&session.permissions),
    }
}

fn api_token_principal(owner: ApiTokenOwner, digest: &SecretDigest) -> Authenticated {
    Authenticated {
        principal: Principal {
            kind: PrincipalKind::User,
            id: owner.user_id,
            name: owner.username,
            is_staff: owner.is_staff,
            scheme: Scheme::Basic,
            credential_kind: CredentialKind::ApiToken,
            credential_id: format!("api_token:{}", digest.short_id()),
            session_id: None,
            expires_at: None,
        },
        permissions: stored_permissions(&owner.permissions),
    }
}
