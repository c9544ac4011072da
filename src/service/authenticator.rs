//! Turns an `Authorization` header into an authenticated principal, through the cache.

use super::cache::CheckCache;
use crate::domain::credentials::{Credential, Scheme, parse_authorization};
use crate::domain::permissions::{Permission, PermissionSet};
use crate::domain::principal::{Authenticated, CredentialKind, Principal, PrincipalKind};
use crate::domain::secret::{SecretDigest, SecretKind};
use crate::domain::verdict::AuthFailure;
use crate::store::{ApiTokenOwner, Store, StoreError};
use secrecy::ExposeSecret;
use std::sync::Arc;

/// The verdict on a credential: who it is, or why not.
pub type Outcome = Result<Arc<Authenticated>, AuthFailure>;

/// Authenticates credentials against the store, caching successes by digest.
pub struct Authenticator {
    store: Arc<dyn Store>,
    cache: Arc<CheckCache>,
}

impl Authenticator {
    /// An authenticator over `store`, filling `cache`.
    pub fn new(store: Arc<dyn Store>, cache: Arc<CheckCache>) -> Self {
        Self { store, cache }
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
            // No bearer credential is issued yet, so none can be valid.
            Credential::Token { scheme, .. } => Ok(Err(AuthFailure::Invalid { scheme })),
        }
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

fn api_token_principal(owner: ApiTokenOwner, digest: &SecretDigest) -> Authenticated {
    // Stored permissions were validated on the way in; one that no longer parses is
    // dropped, which can only narrow access.
    let permissions: PermissionSet = owner
        .permissions
        .iter()
        .filter_map(|p| Permission::parse(p).ok())
        .collect();
    Authenticated {
        principal: Principal {
            kind: PrincipalKind::User,
            id: owner.user_id,
            name: owner.username,
            is_staff: owner.is_staff,
            scheme: Scheme::Basic,
            credential_kind: CredentialKind::ApiToken,
            credential_id: format!("api_token:{}", digest.short_id()),
        },
        permissions: Arc::new(permissions),
    }
}
