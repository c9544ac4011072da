//! Storage: one [`Store`] trait, one implementation per backend.
//!
//! Both backends share their SQL (see [`sql`]); each module adds only what truly differs:
//! connecting, migrations and how a write transaction begins. Every change is one
//! transaction, so nothing the service has acknowledged is ever half-applied.

mod apps;
mod audit;
mod documents;
mod limits;
mod notices;
mod oauth;
mod oauth_sql;
mod postgres;
mod rows;
mod sql;
mod sqlite;

use crate::domain::audit::Event;
use crate::domain::clock::UnixSeconds;
use crate::domain::secret::SecretDigest;
use async_trait::async_trait;
use std::sync::Arc;
use std::time::Duration;

pub use apps::{
    AppPatch, AppRecord, AppStore, AppTokenPrincipal, AppTokenRecord, AttachedUserState, NewApp,
    NewAppToken,
};
pub use audit::{AuditFilter, AuditRecord, AuditStore};
pub use documents::{DocumentRecord, DocumentStore};
pub use limits::{LimitRecord, LimitStore, LiveAt};
pub use notices::{CHANNEL as NOTICE_CHANNEL, ChangeFeed, FeedEvent, NoticeStore};
pub use oauth::{
    ClientRecord, IntegrationRecord, LoginRecord, NewIntegration, NewRefreshToken, NewSession,
    OAuthStore, RefreshRecord, SessionGuard, SessionPrincipal, SigningKeyRecord, Subject,
};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

/// What can go wrong in storage. The `Display` texts of the first three are safe to show
/// callers; `Unavailable` and `Corrupt` are logged and answered generically.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The named thing already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// The change is not allowed in the current state; the text says why.
    #[error("{0}")]
    Precondition(String),
    /// The database could not be reached or refused the statement.
    #[error("storage unavailable")]
    Unavailable(#[from] sqlx::Error),
    /// Stored data breaks an invariant (e.g. a digest of the wrong length).
    #[error("stored data is corrupt: {0}")]
    Corrupt(&'static str),
    /// Migrations failed.
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The database holds users whose names would clash in one login namespace; the
    /// text names them.
    #[error("cannot make usernames and emails one login namespace: {0}")]
    LoginNameClashes(String),
}

/// Result of store calls.
pub type StoreResult<T> = Result<T, StoreError>;

/// A user as the admin surface shows it. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRecord {
    /// Stable opaque id.
    pub id: String,
    /// Unique login name.
    pub username: String,
    /// Optional unique email, lower-cased.
    pub email: Option<String>,
    /// Staff (control-panel) user.
    pub is_staff: bool,
    /// Customer (shop) user. A user is staff, a customer, or both.
    pub is_customer: bool,
    /// False when disabled.
    pub active: bool,
    /// API access ticked.
    pub api_access: bool,
    /// Role names, sorted.
    pub roles: Vec<String>,
    /// Creation time.
    pub created_at: UnixSeconds,
    /// Last change.
    pub updated_at: UnixSeconds,
}

/// A role and its permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRecord {
    /// Unique name.
    pub name: String,
    /// Free text.
    pub description: String,
    /// Permission strings, sorted.
    pub permissions: Vec<String>,
    /// Maintained by identityd itself.
    pub builtin: bool,
    /// Creation time.
    pub created_at: UnixSeconds,
}

/// A user to create.
#[derive(Debug, Clone)]
pub struct NewUser {
    /// Validated username.
    pub username: String,
    /// Normalised email.
    pub email: Option<String>,
    /// Staff flag.
    pub is_staff: bool,
    /// Customer flag; at least one of the two is set.
    pub is_customer: bool,
    /// Roles to give; each must exist.
    pub roles: Vec<String>,
}

/// Changes to a user; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct UserPatch {
    /// `Some(None)` clears the email.
    pub email: Option<Option<String>>,
    /// New staff flag.
    pub is_staff: Option<bool>,
    /// New customer flag. A change that would leave the user neither staff nor customer
    /// fails with `Precondition`, changing nothing.
    pub is_customer: Option<bool>,
    /// New active flag. Disabling also revokes everything, as
    /// [`Store::revoke_user_credentials`] does.
    pub active: Option<bool>,
}

/// The owner of an API token, as the check path needs it: one round trip.
#[derive(Debug, Clone)]
pub struct ApiTokenOwner {
    /// User id.
    pub user_id: String,
    /// Username, to compare with the Basic user-id.
    pub username: String,
    /// Staff flag.
    pub is_staff: bool,
    /// Customer flag.
    pub is_customer: bool,
    /// Active flag.
    pub active: bool,
    /// API access flag.
    pub api_access: bool,
    /// The stored digest, compared again in constant time.
    pub digest: SecretDigest,
    /// Union of the permissions of the user's roles.
    pub permissions: Vec<String>,
}

/// What [`Store::revoke_user_credentials`] ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserRevocation {
    /// The user after the change.
    pub user: UserRecord,
    /// Sessions newly revoked.
    pub sessions: u64,
    /// True when an API token digest was deleted.
    pub api_token: bool,
    /// Tokens of apps attached to the user that were deleted.
    pub app_tokens: u64,
}

/// The built-in role created on first start, with what it must hold.
#[derive(Debug, Clone)]
pub struct BuiltinRole {
    /// Role name.
    pub name: &'static str,
    /// Description.
    pub description: &'static str,
    /// Permissions it must hold.
    pub permissions: Vec<String>,
}

/// Persistent state of identityd. Implementations must make every method that changes
/// state a single transaction, and write the audit [`Event`] it is given (its time is
/// the time of the change) in that transaction.
#[async_trait]
pub trait Store:
    OAuthStore + DocumentStore + AppStore + NoticeStore + AuditStore + LimitStore
{
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// One cheap round trip: is the database reachable?
    async fn ping(&self) -> StoreResult<()>;
    /// True when every migration this build knows has been applied successfully.
    async fn migrations_applied(&self) -> StoreResult<bool>;
    /// The connection pool's counts, read from memory (no round trip).
    fn pool_status(&self) -> PoolStatus;

    /// Creates or refreshes a built-in role so it holds exactly `role.permissions`.
    async fn ensure_builtin_role(&self, role: &BuiltinRole, now: UnixSeconds) -> StoreResult<()>;
    /// On an empty database only: creates `user` (with its roles) holding API access with
    /// `digest`. Returns false, changing nothing, when any user already exists.
    async fn bootstrap_user(
        &self,
        user: &NewUser,
        digest: &SecretDigest,
        event: &Event,
    ) -> StoreResult<bool>;

    /// Creates a user, entering its username and email in the login namespace:
    /// `AlreadyExists` when either is another user's username or email.
    async fn create_user(&self, user: &NewUser, event: &Event) -> StoreResult<UserRecord>;
    /// Reads a user.
    async fn get_user(&self, username: &str) -> StoreResult<UserRecord>;
    /// Users with username greater than `after`, ordered by username, at most `limit`.
    async fn list_users(&self, after: &str, limit: u32) -> StoreResult<Vec<UserRecord>>;
    /// Changes a user; a new email must not be another user's username or email.
    async fn update_user(
        &self,
        username: &str,
        patch: &UserPatch,
        event: &Event,
    ) -> StoreResult<UserRecord>;
    /// Deletes a user and revokes everything of it, as [`Store::revoke_user_credentials`]
    /// does; apps attached to it are also deactivated and detached (never left attached
    /// to nobody and active, which would widen them). Returns the deleted user's id.
    async fn delete_user(&self, username: &str, event: &Event) -> StoreResult<String>;
    /// In one transaction: revokes every live session of the user, deletes its API token
    /// digest (API access stays on) and deletes the tokens of every app attached to it.
    async fn revoke_user_credentials(
        &self,
        username: &str,
        event: &Event,
    ) -> StoreResult<UserRevocation>;

    /// Turns API access on with a new token digest. Fails with `Precondition` when it is
    /// already on or the user is disabled.
    async fn enable_api_access(
        &self,
        username: &str,
        digest: &SecretDigest,
        event: &Event,
    ) -> StoreResult<UserRecord>;
    /// Turns API access off and deletes the token digest. Idempotent.
    async fn disable_api_access(&self, username: &str, event: &Event) -> StoreResult<UserRecord>;
    /// Replaces the token digest; the old digest is gone when this returns. Fails with
    /// `Precondition` when API access is off or the user is disabled.
    async fn replace_api_token(
        &self,
        username: &str,
        digest: &SecretDigest,
        event: &Event,
    ) -> StoreResult<UserRecord>;
    /// The user holding the token with this digest, with their permissions.
    async fn find_api_token(&self, digest: &SecretDigest) -> StoreResult<Option<ApiTokenOwner>>;

    /// Gives a user a role (idempotent).
    async fn assign_role(
        &self,
        username: &str,
        role: &str,
        event: &Event,
    ) -> StoreResult<UserRecord>;
    /// Takes a role from a user (idempotent).
    async fn unassign_role(
        &self,
        username: &str,
        role: &str,
        event: &Event,
    ) -> StoreResult<UserRecord>;

    /// Creates a role.
    async fn create_role(&self, role: &RoleRecord, event: &Event) -> StoreResult<RoleRecord>;
    /// Reads a role.
    async fn get_role(&self, name: &str) -> StoreResult<RoleRecord>;
    /// All roles by name.
    async fn list_roles(&self) -> StoreResult<Vec<RoleRecord>>;
    /// Replaces a non-built-in role's permissions.
    async fn set_role_permissions(
        &self,
        name: &str,
        permissions: &[String],
        event: &Event,
    ) -> StoreResult<RoleRecord>;
    /// Deletes a non-built-in role.
    async fn delete_role(&self, name: &str, event: &Event) -> StoreResult<()>;
}

/// The connection pool at one instant, for metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolStatus {
    /// Connections open, idle or in use.
    pub open: u32,
    /// Open connections waiting for work.
    pub idle: u32,
    /// Most connections the pool may open.
    pub max: u32,
}

/// Connection settings common to both backends.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// Most connections held open.
    pub max_connections: u32,
    /// How long to wait for a free connection before failing.
    pub acquire_timeout: Duration,
}

/// Opens the store a database URL names: `sqlite:` or `postgres:` / `postgresql:`.
pub async fn open(url: &str, settings: &PoolSettings) -> StoreResult<Arc<dyn Store>> {
    match url.split_once(':').map(|(scheme, _)| scheme) {
        Some("sqlite") => Ok(Arc::new(SqliteStore::connect(url, settings).await?)),
        Some("postgres" | "postgresql") => {
            Ok(Arc::new(PostgresStore::connect(url, settings).await?))
        }
        _ => Err(StoreError::Precondition(
            "the database URL must start with sqlite: or postgres:".into(),
        )),
    }
}
