//! Storage of the audit log. Every store method that changes state takes the event that
//! records the change and writes it (`write_event` in `sql.rs`) inside its own
//! transaction; this module adds reading the log back and purging old events.

use super::StoreResult;
use crate::domain::audit::{Event, Outcome};
use crate::domain::clock::UnixSeconds;
use async_trait::async_trait;

/// One stored event, as Admin lists it (and as its row reads).
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AuditRecord {
    /// Increases with every event.
    pub id: i64,
    /// When.
    pub at: UnixSeconds,
    /// `user:<id>`, `integration:<id>`, `app:<id>`, `system`, `cli` or `anonymous`.
    pub actor: String,
    /// The actor's readable name.
    pub actor_name: String,
    /// The credential the actor used.
    pub credential: String,
    /// What was done.
    pub action: String,
    /// To what.
    pub target: String,
    /// `success`, `failure` or `limited`.
    pub outcome: String,
    /// Why it failed.
    pub reason: String,
    /// The end client's address.
    pub source: String,
    /// The address the request came from.
    pub peer: String,
    /// The request id.
    pub request_id: String,
    /// What changed, a JSON object.
    pub details: String,
}

/// Which events to list: every field left empty (or `None`) matches everything.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Actor id (`user:<id>`) or actor name (a username).
    pub actor: String,
    /// Exact target.
    pub target: String,
    /// Exact action.
    pub action: String,
    /// Outcome.
    pub outcome: Option<Outcome>,
    /// Events at or after this time.
    pub since: Option<UnixSeconds>,
    /// Events before this time.
    pub until: Option<UnixSeconds>,
    /// Only events with an id below this one (the page before).
    pub before_id: Option<i64>,
}

/// Reading and purging the audit log.
#[async_trait]
pub trait AuditStore: Send + Sync + 'static {
    /// Events matching `filter`, newest first, at most `limit`.
    async fn list_audit_events(
        &self,
        filter: &AuditFilter,
        limit: u32,
    ) -> StoreResult<Vec<AuditRecord>>;
    /// Deletes events older than `before`; returns how many.
    async fn purge_audit_events(&self, before: UnixSeconds) -> StoreResult<u64>;
    /// Records an event that goes with no other change (a refused login).
    async fn record_event(&self, event: &Event) -> StoreResult<()>;
}

/// Writes one event; run inside the transaction of the change it records.
pub(super) const INSERT: &str = "\
    INSERT INTO audit_events (at, actor, actor_name, credential, action, target, outcome, \
                              reason, source, peer, request_id, details) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)";

/// Newest first; each condition is skipped when its parameter says so, so one
/// statement serves every filter.
pub(super) const LIST: &str = "\
    SELECT id, at, actor, actor_name, credential, action, target, outcome, reason, source, \
           peer, request_id, details \
    FROM audit_events \
    WHERE ($1 = '' OR actor = $1 OR actor_name = $1) \
      AND ($2 = '' OR target = $2) \
      AND ($3 = '' OR action = $3) \
      AND ($4 = '' OR outcome = $4) \
      AND at >= $5 AND at < $6 AND id < $7 \
    ORDER BY id DESC LIMIT $8";

/// One batch of old events: purging in batches keeps each write transaction short, so a
/// purge after a flood never holds SQLite's write lock for long.
pub(super) const PURGE: &str = "\
    DELETE FROM audit_events WHERE id IN \
        (SELECT id FROM audit_events WHERE at < $1 ORDER BY id LIMIT $2)";

/// Events deleted per purge transaction.
pub(super) const PURGE_BATCH: i64 = 10_000;

/// Implements [`AuditStore`] for `$store` (see `sql.rs`).
macro_rules! impl_audit_store {
    ($store:ty) => {
        #[async_trait::async_trait]
        impl AuditStore for $store {
            async fn list_audit_events(
                &self,
                filter: &AuditFilter,
                limit: u32,
            ) -> StoreResult<Vec<AuditRecord>> {
                let rows = sqlx::query_as::<_, AuditRecord>(audit::LIST)
                    .bind(&filter.actor)
                    .bind(&filter.target)
                    .bind(&filter.action)
                    .bind(filter.outcome.map_or("", |o| o.as_str()))
                    .bind(filter.since.unwrap_or(i64::MIN))
                    .bind(filter.until.unwrap_or(i64::MAX))
                    .bind(filter.before_id.unwrap_or(i64::MAX))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows)
            }

            async fn purge_audit_events(&self, before: UnixSeconds) -> StoreResult<u64> {
                let mut purged = 0;
                loop {
                    let mut tx = self.begin_write().await?;
                    let batch = sqlx::query(audit::PURGE)
                        .bind(before)
                        .bind(audit::PURGE_BATCH)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    tx.commit().await?;
                    purged += batch;
                    if batch < audit::PURGE_BATCH.unsigned_abs() {
                        return Ok(purged);
                    }
                }
            }

            async fn record_event(&self, event: &Event) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(())
            }
        }
    };
}
pub(super) use impl_audit_store;
