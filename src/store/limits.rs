//! Storage of guessing-limit counters, shared by every replica. Each change runs the
//! domain's state transition ([`Counter`]) on a row locked for the transaction, so
//! concurrent attempts on any replica are counted one after the other.

use super::StoreResult;
use crate::domain::audit::Event;
use crate::domain::clock::UnixSeconds;
use crate::domain::guessing::{Attempt, Charge, Counter, Guessed, LimitKey, Rules};
use async_trait::async_trait;

/// A counter as Admin lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LimitRecord {
    /// Whose secret, from where.
    pub key: LimitKey,
    /// Its state.
    pub counter: Counter,
    /// Last change.
    pub updated_at: UnixSeconds,
}

/// Guessing-limit counters. Every method that changes state is one transaction.
#[async_trait]
pub trait LimitStore: Send + Sync + 'static {
    /// Charges an attempt on `key` (see [`Counter::charge`]). When the charge trips the
    /// limit, `on_trip` is recorded in the same transaction, with the block's end added.
    async fn charge_attempt(
        &self,
        key: &LimitKey,
        charge: Charge,
        rules: &Rules,
        now: UnixSeconds,
        on_trip: &Event,
    ) -> StoreResult<Attempt>;
    /// Takes back an attempt whose secret was right: `reset` forgets the counter (the
    /// per-source count of a client that proved itself), otherwise one charge is
    /// refunded (the per-subject count, which other sources share).
    async fn refund_attempt(
        &self,
        key: &LimitKey,
        rules: &Rules,
        reset: bool,
        now: UnixSeconds,
    ) -> StoreResult<()>;
    /// True when an attempt on `key` now would be refused unchecked.
    async fn is_limited(
        &self,
        key: &LimitKey,
        rules: &Rules,
        now: UnixSeconds,
    ) -> StoreResult<bool>;
    /// Counters with failures or a block that have not ended by `now`, of `secret` when
    /// given and of `subject` when not empty, most recently changed first.
    async fn list_limits(
        &self,
        secret: Option<Guessed>,
        subject: &str,
        now: UnixSeconds,
        limit: u32,
    ) -> StoreResult<Vec<LimitRecord>>;
    /// Forgets one counter, recording `event`; false (recording nothing) when there was
    /// none.
    async fn clear_limit(&self, key: &LimitKey, event: &Event) -> StoreResult<bool>;
    /// Deletes counters unchanged since `before` that no longer block.
    async fn purge_limits(&self, before: UnixSeconds, now: UnixSeconds) -> StoreResult<u64>;
}

/// Makes sure the row exists, so the next statement can lock it.
pub(super) const ENSURE: &str = "\
    INSERT INTO guess_limits (secret, subject, source, failures, window_start, \
                              blocked_until, next_delay, updated_at) \
    VALUES ($1, $2, $3, 0, $4, 0, $5, $4) ON CONFLICT DO NOTHING";

/// A counter, read without locking it.
pub(super) const COUNTER: &str = "\
    SELECT failures, window_start, blocked_until, next_delay FROM guess_limits \
    WHERE secret = $1 AND subject = $2 AND source = $3";

pub(super) const UPDATE: &str = "\
    UPDATE guess_limits SET failures = $4, window_start = $5, blocked_until = $6, \
                            next_delay = $7, updated_at = $8 \
    WHERE secret = $1 AND subject = $2 AND source = $3";

pub(super) const DELETE: &str =
    "DELETE FROM guess_limits WHERE secret = $1 AND subject = $2 AND source = $3";

pub(super) const LIST: &str = "\
    SELECT secret, subject, source, failures, window_start, blocked_until, next_delay, \
           updated_at \
    FROM guess_limits \
    WHERE ($1 = '' OR secret = $1) AND ($2 = '' OR subject = $2) \
      AND (failures > 0 OR blocked_until > $3) \
    ORDER BY updated_at DESC, secret, subject, source LIMIT $4";

pub(super) const PURGE: &str =
    "DELETE FROM guess_limits WHERE updated_at < $1 AND blocked_until <= $2";

#[derive(sqlx::FromRow)]
pub(super) struct CounterRow {
    pub failures: i64,
    pub window_start: i64,
    pub blocked_until: i64,
    pub next_delay: i64,
}

impl From<CounterRow> for Counter {
    fn from(r: CounterRow) -> Self {
        Self {
            failures: r.failures,
            window_start: r.window_start,
            blocked_until: r.blocked_until,
            next_delay: r.next_delay,
        }
    }
}

#[derive(sqlx::FromRow)]
pub(super) struct LimitRow {
    pub secret: String,
    pub subject: String,
    pub source: String,
    pub failures: i64,
    pub window_start: i64,
    pub blocked_until: i64,
    pub next_delay: i64,
    pub updated_at: i64,
}

/// Rows of a kind this build does not know are skipped: a newer release's.
pub(super) fn records(rows: Vec<LimitRow>) -> Vec<LimitRecord> {
    rows.into_iter()
        .filter_map(|r| {
            Some(LimitRecord {
                key: LimitKey {
                    secret: Guessed::parse(&r.secret)?,
                    subject: r.subject,
                    source: r.source,
                },
                counter: Counter {
                    failures: r.failures,
                    window_start: r.window_start,
                    blocked_until: r.blocked_until,
                    next_delay: r.next_delay,
                },
                updated_at: r.updated_at,
            })
        })
        .collect()
}

/// Implements [`LimitStore`] for `$store` (see `sql.rs`); `$lock` ends the statement
/// that reads a counter for change (`FOR UPDATE`, or nothing on SQLite).
macro_rules! impl_limit_store {
    ($store:ty, $lock:literal) => {
        impl $store {
            /// The counter of `key`, locked for the rest of the transaction; created
            /// fresh when there is none.
            async fn lock_counter(
                conn: &mut Conn,
                key: &LimitKey,
                rules: &Rules,
                now: UnixSeconds,
            ) -> StoreResult<Counter> {
                sqlx::query(limits::ENSURE)
                    .bind(key.secret.as_str())
                    .bind(&key.subject)
                    .bind(&key.source)
                    .bind(now)
                    .bind(rules.first_delay)
                    .execute(&mut *conn)
                    .await?;
                let row = sqlx::query_as::<_, limits::CounterRow>(concat!(
                    "SELECT failures, window_start, blocked_until, next_delay FROM guess_limits \
                     WHERE secret = $1 AND subject = $2 AND source = $3 ",
                    $lock
                ))
                .bind(key.secret.as_str())
                .bind(&key.subject)
                .bind(&key.source)
                .fetch_one(&mut *conn)
                .await?;
                Ok(row.into())
            }

            async fn save_counter(
                conn: &mut Conn,
                key: &LimitKey,
                counter: &Counter,
                rules: &Rules,
                now: UnixSeconds,
            ) -> StoreResult<()> {
                if counter.is_idle(now, rules) {
                    sqlx::query(limits::DELETE)
                        .bind(key.secret.as_str())
                        .bind(&key.subject)
                        .bind(&key.source)
                        .execute(&mut *conn)
                        .await?;
                } else {
                    sqlx::query(limits::UPDATE)
                        .bind(key.secret.as_str())
                        .bind(&key.subject)
                        .bind(&key.source)
                        .bind(counter.failures)
                        .bind(counter.window_start)
                        .bind(counter.blocked_until)
                        .bind(counter.next_delay)
                        .bind(now)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl LimitStore for $store {
            async fn charge_attempt(
                &self,
                key: &LimitKey,
                charge: Charge,
                rules: &Rules,
                now: UnixSeconds,
                on_trip: &Event,
            ) -> StoreResult<Attempt> {
                let mut tx = self.begin_write().await?;
                let mut counter = Self::lock_counter(&mut tx, key, rules, now).await?;
                let attempt = counter.charge(charge, now, rules);
                match attempt {
                    // A refused attempt changes nothing but the block it may start.
                    Attempt::Limited { tripped: false, .. } => return Ok(attempt),
                    Attempt::Limited { until, .. } => {
                        let event = on_trip.clone().with("blocked_until", until);
                        Self::write_event(&mut tx, &event).await?;
                    }
                    Attempt::Admitted => {}
                }
                Self::save_counter(&mut tx, key, &counter, rules, now).await?;
                tx.commit().await?;
                Ok(attempt)
            }

            async fn refund_attempt(
                &self,
                key: &LimitKey,
                rules: &Rules,
                reset: bool,
                now: UnixSeconds,
            ) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                if reset {
                    sqlx::query(limits::DELETE)
                        .bind(key.secret.as_str())
                        .bind(&key.subject)
                        .bind(&key.source)
                        .execute(&mut *tx)
                        .await?;
                } else {
                    let mut counter = Self::lock_counter(&mut tx, key, rules, now).await?;
                    counter.refund();
                    Self::save_counter(&mut tx, key, &counter, rules, now).await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn is_limited(
                &self,
                key: &LimitKey,
                rules: &Rules,
                now: UnixSeconds,
            ) -> StoreResult<bool> {
                let row = sqlx::query_as::<_, limits::CounterRow>(limits::COUNTER)
                    .bind(key.secret.as_str())
                    .bind(&key.subject)
                    .bind(&key.source)
                    .fetch_optional(&self.pool)
                    .await?;
                Ok(row.is_some_and(|r| Counter::from(r).is_limited(now, rules)))
            }

            async fn list_limits(
                &self,
                secret: Option<Guessed>,
                subject: &str,
                now: UnixSeconds,
                limit: u32,
            ) -> StoreResult<Vec<LimitRecord>> {
                let rows = sqlx::query_as::<_, limits::LimitRow>(limits::LIST)
                    .bind(secret.map_or("", Guessed::as_str))
                    .bind(subject)
                    .bind(now)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(limits::records(rows))
            }

            async fn clear_limit(&self, key: &LimitKey, event: &Event) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let deleted = sqlx::query(limits::DELETE)
                    .bind(key.secret.as_str())
                    .bind(&key.subject)
                    .bind(&key.source)
                    .execute(&mut *tx)
                    .await?;
                if deleted.rows_affected() == 0 {
                    return Ok(false);
                }
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn purge_limits(
                &self,
                before: UnixSeconds,
                now: UnixSeconds,
            ) -> StoreResult<u64> {
                let mut tx = self.begin_write().await?;
                let purged = sqlx::query(limits::PURGE)
                    .bind(before)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                tx.commit().await?;
                Ok(purged.rows_affected())
            }
        }
    };
}
pub(super) use impl_limit_store;
