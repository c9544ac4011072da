//! The embedded SQLite backend: one file, zero set-up.

use super::apps::{
    self, AppPatch, AppRecord, AppStore, AppTokenPrincipal, AppTokenRecord, NewApp, NewAppToken,
    impl_app_store,
};
use super::audit::{self, AuditFilter, AuditRecord, AuditStore, impl_audit_store};
use super::documents::{self, DocumentRecord, DocumentStore, impl_document_store};
use super::limits::{self, LimitRecord, LimitStore, impl_limit_store};
use super::notices::{ChangeFeed, NoticeStore};
use super::oauth_sql::{self, impl_oauth_store};
use super::sql::{self, impl_sql_store};
use super::{
    ApiTokenOwner, BuiltinRole, ClientRecord, IntegrationRecord, LoginRecord, NewIntegration,
    NewRefreshToken, NewSession, NewUser, OAuthStore, PoolSettings, RefreshRecord, RoleRecord,
    SessionGuard, SessionPrincipal, SigningKeyRecord, Store, StoreError, StoreResult, Subject,
    UserPatch, UserRecord, UserRevocation, rows,
};
use crate::domain::audit::{Event, Origin};
use crate::domain::clock::UnixSeconds;
use crate::domain::guessing::{self, Attempt, Charge, Counter, Guessed, LimitKey, Rules};
use crate::domain::secret::SecretDigest;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};
use std::str::FromStr;
use std::time::Duration;

/// How long a statement waits for another connection's write lock.
const BUSY_TIMEOUT: Duration = Duration::from_secs(5);

/// [`Store`] on a SQLite file.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database a `sqlite:` URL names.
    pub async fn connect(url: &str, settings: &PoolSettings) -> StoreResult<Self> {
        let options = SqliteConnectOptions::from_str(url)?
            .create_if_missing(true)
            .foreign_keys(true)
            // WAL lets checks read while an admin change writes; NORMAL is durable in WAL
            // across process crashes (an OS crash can lose the last commits).
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(BUSY_TIMEOUT);
        let pool = SqlitePoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// Takes the write lock up front: a deferred transaction that reads and then writes
    /// can fail with SQLITE_BUSY instead of waiting.
    async fn begin_write(&self) -> StoreResult<Transaction<'static, Sqlite>> {
        Ok(self.pool.begin_with("BEGIN IMMEDIATE").await?)
    }

    /// A write transaction already keeps every other writer out.
    const HOLD_USERS: &str = "SELECT 1";
}

impl_sql_store!(SqliteStore, Sqlite, sqlx::migrate!("migrations/sqlite"));
impl_oauth_store!(SqliteStore, Sqlite);

/// One process serves a SQLite file, so there is no one to tell.
#[async_trait::async_trait]
impl NoticeStore for SqliteStore {
    async fn publish(&self, _notice: &str) -> StoreResult<()> {
        Ok(())
    }

    fn change_feed(&self) -> Option<Box<dyn ChangeFeed>> {
        None
    }
}
impl_app_store!(SqliteStore);
impl_document_store!(SqliteStore, "SELECT 1");
impl_audit_store!(SqliteStore);
impl_limit_store!(SqliteStore, "SELECT $1");
