//! First start: the built-in `admin` role, and on an empty database an `admin` user with
//! API access, so a newcomer can use grpcurl at once.

use crate::domain::audit::Origin;
use crate::domain::clock::Clock;
use crate::domain::permissions::admin;
use crate::domain::secret::{SecretDigest, SecretKind};
use crate::store::{BuiltinRole, NewUser, Store, StoreResult};
use secrecy::{ExposeSecret as _, SecretString};
use std::fmt;

/// Name of the built-in role holding every admin permission.
pub const ADMIN_ROLE: &str = "admin";

/// Username of the user created on an empty database.
pub const DEFAULT_ADMIN_USERNAME: &str = "admin";

/// The credentials of a freshly bootstrapped admin, to be shown once.
pub struct BootstrapCredentials {
    /// The admin's username.
    pub username: String,
    /// The admin's API token.
    pub api_token: SecretString,
}

impl fmt::Debug for BootstrapCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BootstrapCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Creates or refreshes the built-in `admin` role so it holds every admin permission,
/// including ones added by newer releases.
pub async fn ensure_admin_role(store: &dyn Store, clock: &dyn Clock) -> StoreResult<()> {
    let role = BuiltinRole {
        name: ADMIN_ROLE,
        description: "Built in: every Admin permission.",
        permissions: admin::ALL.iter().map(|p| (*p).to_owned()).collect(),
    };
    store.ensure_builtin_role(&role, clock.now()).await
}

/// On a database with no users, creates a staff user `username` holding the `admin` role
/// with API access on, and returns its credentials. Returns `None` (changing nothing) when
/// any user exists, so this is safe to run at every start and from every replica.
///
/// The API token is `given` (already checked with [`check_given_token`]) or generated;
/// `username` is canonical. `origin` says who asked, for the audit log.
pub async fn bootstrap_admin(
    store: &dyn Store,
    clock: &dyn Clock,
    origin: &Origin,
    username: &str,
    given: Option<&SecretString>,
) -> StoreResult<Option<BootstrapCredentials>> {
    ensure_admin_role(store, clock).await?;
    let token = given
        .cloned()
        .unwrap_or_else(|| SecretKind::ApiToken.generate());
    let user = NewUser {
        username: username.to_owned(),
        email: None,
        is_staff: true,
        is_customer: false,
        roles: vec![ADMIN_ROLE.to_owned()],
    };
    let event = origin
        .event(clock.now(), "user.bootstrap", format!("user:{username}"))
        .with("roles", vec![ADMIN_ROLE]);
    let created = store
        .bootstrap_user(&user, &SecretDigest::of(&token), &event)
        .await?;
    if created {
        super::audit::log(&event);
    }
    Ok(created.then(|| BootstrapCredentials {
        username: username.to_owned(),
        api_token: token,
    }))
}

/// Why a bootstrap token given in the configuration was refused; never holds the token.
#[derive(Debug, thiserror::Error)]
#[error(
    "IDENTITYD_BOOTSTRAP_API_TOKEN must be `idt_api_` followed by 43 characters of A-Z, a-z, \
     0-9, - and _ (256 random bits, e.g. `idt_api_` and the output of \
     `openssl rand -base64 32 | tr '+/' '-_' | tr -d '='`)"
)]
pub struct GivenTokenError;

/// A given bootstrap token must look exactly like a generated API token, so that the
/// dispatcher routes it as one and secret scanners recognise it.
pub fn check_given_token(token: &SecretString) -> Result<(), GivenTokenError> {
    if SecretKind::ApiToken.matches_shape(token.expose_secret()) {
        Ok(())
    } else {
        Err(GivenTokenError)
    }
}
