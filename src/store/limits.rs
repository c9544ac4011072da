//! Storage of guessing-limit counters, shared by every replica. Each attempt is decided
//! by the domain's rule ([`decide`](crate::domain::guessing::decide)) inside one transaction that holds the
//! locks of its counters, so concurrent attempts on any replica are decided one after
//! the other, exactly as a sequential run would be.

use super::StoreResult;
use crate::domain::audit::{Event, Origin};
use crate::domain::clock::UnixSeconds;
use crate::domain::guessing::{Attempt, Charge, Counter, Guessed, LimitKey, Rules};
use crate::domain::secret::SecretDigest;
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
    /// Decides one attempt from `origin` over its counters at once (see
    /// [`decide`](crate::domain::guessing::decide)), with each counter locked, so
    /// concurrent attempts on any replica are decided one after the other. Each counter
    /// the decision blocks is recorded in the same transaction
    /// ([`trip_event`](crate::domain::guessing::trip_event)).
    async fn decide_attempt(
        &self,
        keys: &[(LimitKey, Rules)],
        charge: Charge,
        now: UnixSeconds,
        origin: &Origin,
    ) -> StoreResult<Attempt>;
    /// After a right secret: takes back the attempt's charge from the per-account
    /// counter and forgives the per-source counter its failures.
    async fn refund_attempt(&self, keys: &[(LimitKey, Rules)], now: UnixSeconds)
    -> StoreResult<()>;
    /// Counters live at `live.now` (see [`Counter::is_live`]), of `secret` when given
    /// and of `subject` when not empty: blocked ones first, latest block end first, then
    /// the most recently changed.
    async fn list_limits(
        &self,
        secret: Option<Guessed>,
        subject: &str,
        live: LiveAt,
        limit: u32,
    ) -> StoreResult<Vec<LimitRecord>>;
    /// Forgets one counter, recording `event`; false (recording nothing) when there was
    /// none.
    async fn clear_limit(&self, key: &LimitKey, event: &Event) -> StoreResult<bool>;
    /// Forgets every counter of `secret` and `subject`, whatever the source, recording
    /// `event` when there was any; returns how many.
    async fn clear_subject_limits(
        &self,
        secret: Guessed,
        subject: &str,
        event: &Event,
    ) -> StoreResult<u64>;
    /// Deletes counters that no longer block at `now` and whose window started at or
    /// before `window_over` (`now` less the longest window): those a fresh one replaces.
    async fn purge_limits(&self, window_over: UnixSeconds, now: UnixSeconds) -> StoreResult<u64>;
}

/// When a counter counts as live: at `now`, each window as long as its rules say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LiveAt {
    /// The time.
    pub now: UnixSeconds,
    /// The per-account counters' window.
    pub account_window: UnixSeconds,
    /// The per-source counters' window.
    pub source_window: UnixSeconds,
}

/// A counter: read inside the deciding transaction once its lock is held, or alone.
pub(super) const COUNTER: &str = "\
    SELECT failures, window_start, blocked_until, next_delay FROM guess_limits \
    WHERE secret = $1 AND subject = $2 AND source = $3";

pub(super) const SAVE: &str = "\
    INSERT INTO guess_limits (secret, subject, source, failures, window_start, \
                              blocked_until, next_delay, updated_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
    ON CONFLICT (secret, subject, source) DO UPDATE SET \
        failures = excluded.failures, window_start = excluded.window_start, \
        blocked_until = excluded.blocked_until, next_delay = excluded.next_delay, \
        updated_at = excluded.updated_at";

pub(super) const DELETE: &str =
    "DELETE FROM guess_limits WHERE secret = $1 AND subject = $2 AND source = $3";

pub(super) const DELETE_SUBJECT: &str =
    "DELETE FROM guess_limits WHERE secret = $1 AND subject = $2";

pub(super) const LIST: &str = "\
    SELECT secret, subject, source, failures, window_start, blocked_until, next_delay, \
           updated_at \
    FROM guess_limits \
    WHERE ($1 = '' OR secret = $1) AND ($2 = '' OR subject = $2) \
      AND (blocked_until > $3 \
           OR (failures > 0 \
               AND window_start > $3 - CASE WHEN source = '' THEN $4 ELSE $5 END)) \
    ORDER BY blocked_until DESC, updated_at DESC, secret, subject, source LIMIT $6";

/// A counter that no longer blocks and whose window is over is one the next attempt
/// would start afresh (delay included): deleting it changes no decision. Not
/// `updated_at`: a block writes its row once, so a long block's row is "unchanged" when
/// it ends while its doubled delay still matters.
pub(super) const PURGE: &str =
    "DELETE FROM guess_limits WHERE window_start <= $1 AND blocked_until <= $2";

/// The number a counter's lock is taken under (PostgreSQL advisory locks take an
/// `i64`): the first bytes of the key's digest. Rows are not enough to lock on, since a
/// counter that was never charged has none, and creating one for every right secret
/// would write on every cold check.
pub(super) fn lock_id(key: &LimitKey) -> i64 {
    let digest = SecretDigest::of_parts(&[
        key.secret.as_str().as_bytes(),
        key.subject.as_bytes(),
        key.source.as_bytes(),
    ]);
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_bytes()[..8]);
    i64::from_be_bytes(first)
}

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

/// Implements [`LimitStore`] for `$store` (see `sql.rs`); `$lock` takes a counter's lock
/// for the rest of the transaction, given its [`lock_id`] (PostgreSQL: an advisory lock;
/// SQLite's write transaction already excludes every other writer).
macro_rules! impl_limit_store {
    ($store:ty, $lock:literal) => {
        impl $store {
            /// The counters of `keys` (fresh where none is stored), each locked, and
            /// whether each was stored.
            async fn lock_counters(
                conn: &mut Conn,
                keys: &[(LimitKey, Rules)],
                now: UnixSeconds,
            ) -> StoreResult<Vec<(Counter, bool)>> {
                // Every lock before any read: a clear holding the account's lock (which
                // every attempt takes) then never races a read made before it.
                for (key, _) in keys {
                    sqlx::query($lock)
                        .bind(limits::lock_id(key))
                        .execute(&mut *conn)
                        .await?;
                }
                let mut counters = Vec::with_capacity(keys.len());
                for (key, rules) in keys {
                    let row = sqlx::query_as::<_, limits::CounterRow>(limits::COUNTER)
                        .bind(key.secret.as_str())
                        .bind(&key.subject)
                        .bind(&key.source)
                        .fetch_optional(&mut *conn)
                        .await?;
                    let stored = row.is_some();
                    let counter = row.map_or_else(|| Counter::fresh(now, rules), Counter::from);
                    counters.push((counter, stored));
                }
                Ok(counters)
            }

            /// Writes `counter` back unless it is as it was, deleting it once it holds
            /// nothing.
            async fn save_counter(
                conn: &mut Conn,
                key: &LimitKey,
                (counter, before, stored): (&Counter, &Counter, bool),
                rules: &Rules,
                now: UnixSeconds,
            ) -> StoreResult<()> {
                if counter.is_idle(now, rules) {
                    if stored {
                        sqlx::query(limits::DELETE)
                            .bind(key.secret.as_str())
                            .bind(&key.subject)
                            .bind(&key.source)
                            .execute(&mut *conn)
                            .await?;
                    }
                    return Ok(());
                }
                if stored && counter == before {
                    return Ok(());
                }
                sqlx::query(limits::SAVE)
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
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl LimitStore for $store {
            async fn decide_attempt(
                &self,
                keys: &[(LimitKey, Rules)],
                charge: Charge,
                now: UnixSeconds,
                origin: &Origin,
            ) -> StoreResult<Attempt> {
                let mut tx = self.begin_write().await?;
                let locked = Self::lock_counters(&mut tx, keys, now).await?;
                let before: Vec<Counter> = locked.iter().map(|(c, _)| *c).collect();
                let mut counters = before.clone();
                let rules: Vec<Rules> = keys.iter().map(|(_, r)| *r).collect();
                let attempt = guessing::decide(&mut counters, &rules, charge, now);
                for (i, (key, rules)) in keys.iter().enumerate() {
                    let (Some(counter), Some(old), Some((_, stored))) =
                        (counters.get(i), before.get(i), locked.get(i))
                    else {
                        continue;
                    };
                    Self::save_counter(&mut tx, key, (counter, old, *stored), rules, now).await?;
                }
                for trip in attempt.tripped() {
                    if let Some((key, _)) = keys.get(trip.index) {
                        let event = guessing::trip_event(origin, now, key, trip.until);
                        Self::write_event(&mut tx, &event).await?;
                    }
                }
                tx.commit().await?;
                Ok(attempt)
            }

            async fn refund_attempt(
                &self,
                keys: &[(LimitKey, Rules)],
                now: UnixSeconds,
            ) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let locked = Self::lock_counters(&mut tx, keys, now).await?;
                for ((key, rules), (before, stored)) in keys.iter().zip(locked) {
                    let mut counter = before;
                    if key.source.is_empty() {
                        counter.refund();
                    } else {
                        counter.forgive();
                    }
                    Self::save_counter(&mut tx, key, (&counter, &before, stored), rules, now)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }

            async fn list_limits(
                &self,
                secret: Option<Guessed>,
                subject: &str,
                live: limits::LiveAt,
                limit: u32,
            ) -> StoreResult<Vec<LimitRecord>> {
                let rows = sqlx::query_as::<_, limits::LimitRow>(limits::LIST)
                    .bind(secret.map_or("", Guessed::as_str))
                    .bind(subject)
                    .bind(live.now)
                    .bind(live.account_window)
                    .bind(live.source_window)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(limits::records(rows))
            }

            async fn clear_limit(&self, key: &LimitKey, event: &Event) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                // Under the counter's lock, so no attempt that read it before writes
                // it back after.
                sqlx::query($lock)
                    .bind(limits::lock_id(key))
                    .execute(&mut *tx)
                    .await?;
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

            async fn clear_subject_limits(
                &self,
                secret: Guessed,
                subject: &str,
                event: &Event,
            ) -> StoreResult<u64> {
                let mut tx = self.begin_write().await?;
                // Every attempt on the subject takes its per-account lock.
                let account = LimitKey {
                    secret,
                    subject: subject.to_owned(),
                    source: String::new(),
                };
                sqlx::query($lock)
                    .bind(limits::lock_id(&account))
                    .execute(&mut *tx)
                    .await?;
                let deleted = sqlx::query(limits::DELETE_SUBJECT)
                    .bind(secret.as_str())
                    .bind(subject)
                    .execute(&mut *tx)
                    .await?;
                if deleted.rows_affected() == 0 {
                    return Ok(0);
                }
                let event = event.clone().with("counters", deleted.rows_affected());
                Self::write_event(&mut tx, &event).await?;
                tx.commit().await?;
                Ok(deleted.rows_affected())
            }

            async fn purge_limits(
                &self,
                window_over: UnixSeconds,
                now: UnixSeconds,
            ) -> StoreResult<u64> {
                let mut tx = self.begin_write().await?;
                let purged = sqlx::query(limits::PURGE)
                    .bind(window_over)
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
