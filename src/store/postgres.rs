//! The PostgreSQL backend: shared by many stateless replicas.

use super::apps::{
    self, AppPatch, AppRecord, AppStore, AppTokenPrincipal, AppTokenRecord, NewApp, NewAppToken,
    impl_app_store,
};
use super::audit::{self, AuditFilter, AuditRecord, AuditStore, impl_audit_store};
use super::documents::{self, DocumentRecord, DocumentStore, impl_document_store};
use super::limits::{self, LimitRecord, LimitStore, impl_limit_store};
use super::notices::{self, ChangeFeed, NoticeStore};
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
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Transaction};
use std::str::FromStr;

/// [`Store`] on a PostgreSQL database.
#[derive(Debug, Clone)]
pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to the database a `postgres:` URL names.
    pub async fn connect(url: &str, settings: &PoolSettings) -> StoreResult<Self> {
        let options = PgConnectOptions::from_str(url)?.application_name("identityd");
        let pool = PgPoolOptions::new()
            .max_connections(settings.max_connections)
            .acquire_timeout(settings.acquire_timeout)
            .connect_with(options)
            .await?;
        Ok(Self { pool })
    }

    /// Row locks and unique indexes serialise conflicting writers, so a plain
    /// transaction is enough.
    async fn begin_write(&self) -> StoreResult<Transaction<'static, Postgres>> {
        Ok(self.pool.begin().await?)
    }

    /// Inside a write transaction: keeps every other writer off `users` until it ends
    /// (readers go on), so what it read of them stays true.
    const HOLD_USERS: &str = "LOCK TABLE users IN SHARE ROW EXCLUSIVE MODE";
}

impl_sql_store!(
    PostgresStore,
    Postgres,
    sqlx::migrate!("migrations/postgres")
);
impl_oauth_store!(PostgresStore, Postgres);

#[async_trait::async_trait]
impl NoticeStore for PostgresStore {
    async fn publish(&self, notice: &str) -> StoreResult<()> {
        sqlx::query(notices::PUBLISH)
            .bind(notices::CHANNEL)
            .bind(notice)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    fn change_feed(&self) -> Option<Box<dyn ChangeFeed>> {
        Some(Box::new(notices::PgFeed::new(self.pool.clone())))
    }
}
impl_app_store!(PostgresStore);
impl_document_store!(
    PostgresStore,
    "LOCK TABLE documents IN SHARE ROW EXCLUSIVE MODE"
);
impl_audit_store!(PostgresStore);
impl_limit_store!(PostgresStore, "SELECT pg_advisory_xact_lock($1)");
