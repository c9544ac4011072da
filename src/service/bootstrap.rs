//! First start: the built-in `admin` role, and on an empty database an `admin` user with
//! API access, so a newcomer can use grpcurl at once.

use crate::domain::clock::Clock;
use crate::domain::permissions::admin;
use crate::domain::secret::{SecretDigest, SecretKind};
use crate::store::{BuiltinRole, NewUser, Store, StoreResult};
use secrecy::SecretString;
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
pub async fn bootstrap_admin(
    store: &dyn Store,
    clock: &dyn Clock,
    username: &str,
) -> StoreResult<Option<BootstrapCredentials>> {
    ensure_admin_role(store, clock).await?;
    let token = SecretKind::ApiToken.generate();
    let user = NewUser {
        username: username.to_owned(),
        email: None,
        is_staff: true,
        is_customer: false,
        roles: vec![ADMIN_ROLE.to_owned()],
    };
    let created = store
        .bootstrap_user(&user, &SecretDigest::of(&token), clock.now())
        .await?;
    Ok(created.then(|| BootstrapCredentials {
        username: username.to_owned(),
        api_token: token,
    }))
}
