//! Guessing limits on every secret a person or program could guess: passwords (per
//! account), client secrets (per client id) and API tokens (per Basic username), each
//! also per source address when the caller supplies one.
//!
//! Two counters guard each secret. The per-source counter (account and address) trips
//! fast, so one attacker is stopped without touching the victim's other sources; the
//! per-account counter is slower and bounds what many sources together may try. An
//! attacker who knows a username can therefore lock its owner out only by tripping the
//! slower counter, and only for the block it imposes, which ends by itself.
//!
//! Passwords are expensive to check, so an attempt is charged before argon2 runs and
//! refunded when it was right: a refused attempt costs no hashing. Client secrets and
//! API tokens are checked by digest, so they are checked first and only a wrong one is
//! charged; a right one still passes only when no counter refuses. Either way a parallel
//! burst gets exactly as many checks as a sequential run (the store counts under a row
//! lock), and a right secret during a block gets the same answer as a wrong one.
//!
//! A tripped API-token counter is also held in memory on every replica (announced like
//! cache invalidations), because a right token may be answered from the check cache
//! without any database read.

use super::ServiceError;
use super::cache::CheckCache;
use super::replicas::Notice;
use crate::domain::audit::{Event, Origin};
use crate::domain::clock::{Clock, UnixSeconds};
use crate::domain::guessing::{
    Attempt, Charge, Guessed, LimitKey, Rules, source_key_of, subject_digest, trip_event,
};
use crate::domain::names;
use crate::domain::secret::SecretDigest;
use crate::store::{LimitRecord, Store, StoreError};
use moka::sync::Cache;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

/// The rules of the two counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// Per subject, over every source.
    pub account: Rules,
    /// Per subject and source address.
    pub source: Rules,
}

impl LimitSettings {
    /// The longest window: a counter unchanged for that long, and not blocking, holds
    /// nothing.
    pub fn longest_window(&self) -> UnixSeconds {
        self.account.window.max(self.source.window)
    }
}

/// One attempt at a secret: whose, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guess {
    /// The secret kind.
    pub secret: Guessed,
    /// Whose secret (see [`LimitKey::subject`]).
    pub subject: String,
    /// The client's address, when known.
    pub source: Option<IpAddr>,
}

impl Guess {
    /// The counters this attempt is decided on, the per-source one first (always the
    /// same order, so concurrent attempts take their locks alike).
    fn counters(&self, settings: &LimitSettings) -> Vec<(LimitKey, Rules)> {
        let key = |source: String| LimitKey {
            secret: self.secret,
            subject: self.subject.clone(),
            source,
        };
        let mut counters = Vec::with_capacity(2);
        if let Some(ip) = self.source {
            counters.push((key(source_key_of(ip)), settings.source));
        }
        counters.push((key(String::new()), settings.account));
        counters
    }
}

/// Counts of refused attempts and of trips, by secret kind, for metrics.
#[derive(Debug, Default)]
pub struct LimitStats {
    limited: [AtomicU64; 3],
    tripped: [AtomicU64; 3],
}

impl LimitStats {
    /// The kinds in declaration order: 0, 1, 2.
    fn slot(secret: Guessed) -> usize {
        secret as usize
    }

    /// Attempts refused unchecked so far, of `secret`.
    pub fn limited(&self, secret: Guessed) -> u64 {
        self.limited[Self::slot(secret)].load(Ordering::Relaxed)
    }

    /// Counters tripped so far, of `secret`.
    pub fn tripped(&self, secret: Guessed) -> u64 {
        self.tripped[Self::slot(secret)].load(Ordering::Relaxed)
    }
}

/// Most blocks held in memory; beyond it the least used are dropped (a dropped block
/// still refuses on the database path, where its token is not cached).
const MEMORY_CAPACITY: u64 = 100_000;
/// Refused attempts of one counter are recorded at most once per this long; the metric
/// counts them all.
const RECORD_REFUSALS_EVERY: Duration = Duration::from_secs(60);

/// The guessing limits of this replica.
pub struct GuessLimits {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache: Arc<CheckCache>,
    settings: LimitSettings,
    /// Blocked API-token counters by subject ([`subject_digest`]): each source (empty
    /// for the per-account counter) and when its block ends.
    blocked: Cache<SecretDigest, Arc<[(String, UnixSeconds)]>>,
    /// The end of the latest block in `blocked`: while it is past, nothing is blocked
    /// and a warm check does no more than read it.
    latest_block: AtomicI64,
    /// Refusals recorded lately, by digest of what they were about.
    recorded: Cache<SecretDigest, ()>,
    stats: LimitStats,
}

/// The source of a key that stands for every counter of its subject, in
/// [`Notice::Unblocked`]: no address is written so.
pub const EVERY_SOURCE: &str = "*";

/// Why an attempt was refused unchecked; answered exactly like a wrong secret.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited;

impl GuessLimits {
    /// The limits of one replica.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        cache: Arc<CheckCache>,
        settings: LimitSettings,
    ) -> Self {
        let longest_block = Duration::from_secs(
            u64::try_from(settings.longest_window().max(settings.account.max_delay))
                .unwrap_or(u64::MAX),
        );
        Self {
            store,
            clock,
            cache,
            settings,
            blocked: Cache::builder()
                .max_capacity(MEMORY_CAPACITY)
                .time_to_live(longest_block)
                .build(),
            latest_block: AtomicI64::new(0),
            recorded: Cache::builder()
                .max_capacity(MEMORY_CAPACITY)
                .time_to_live(RECORD_REFUSALS_EVERY)
                .build(),
            stats: LimitStats::default(),
        }
    }

    /// Refused and tripped counts, for metrics.
    pub fn stats(&self) -> &LimitStats {
        &self.stats
    }

    /// Before an expensive check (a password): decides the attempt on its counters at
    /// once, counting it as a failure until [`Self::refund`]. `Err(Limited)` when
    /// refused: then nothing is counted, and the secret must not be checked.
    pub async fn admit(&self, guess: &Guess, origin: &Origin) -> Result<(), AdmitError> {
        self.decide(guess, Charge::BeforeCheck, origin).await
    }

    /// After an admitted expensive check that was right: its charge is taken back.
    /// Failing to only leaves a failure counted, so errors are logged, not returned.
    pub async fn refund(&self, guess: &Guess) {
        let counters = guess.counters(&self.settings);
        if let Err(e) = self.store.refund_attempt(&counters, self.clock.now()).await {
            tracing::warn!(error = %e, limit = %guess.subject, "could not refund a right guess");
        }
    }

    /// After a cheap check (by digest): decides the attempt with its result. A right
    /// secret passes and a wrong one is counted, unless a counter refuses it, which
    /// then happens exactly alike for both (`Err(Limited)`), so neither the answer nor
    /// the work done tells them apart.
    pub async fn settle(
        &self,
        guess: &Guess,
        right: bool,
        origin: &Origin,
    ) -> Result<(), AdmitError> {
        let charge = if right { Charge::Right } else { Charge::Wrong };
        self.decide(guess, charge, origin).await
    }

    /// On an API-token check of `username` (as given) from `source`, before the cache:
    /// whether a block refuses it. While nothing is blocked this reads one atomic; a
    /// block held in memory is confirmed with the database, which a clear made
    /// anywhere (another replica, the command line) has reached first.
    pub async fn refuses_api_token(
        &self,
        username: &str,
        source: Option<IpAddr>,
    ) -> Result<bool, StoreError> {
        let now = self.clock.now();
        if self.latest_block.load(Ordering::Acquire) <= now {
            return Ok(false);
        }
        let subject = username.to_ascii_lowercase();
        let digest = subject_digest(Guessed::ApiToken, &subject);
        let Some(blocks) = self.blocked.get(&digest) else {
            return Ok(false);
        };
        let source = source.map(source_key_of);
        let held: Vec<LimitKey> = blocks
            .iter()
            .filter(|(blocked, until)| {
                *until > now && (blocked.is_empty() || source.as_deref() == Some(blocked.as_str()))
            })
            .map(|(blocked, _)| LimitKey {
                secret: Guessed::ApiToken,
                subject: subject.clone(),
                source: blocked.clone(),
            })
            .collect();
        if held.is_empty() {
            return Ok(false);
        }
        let stored = self.store.read_counters(&held).await?;
        let blocked = stored
            .iter()
            .zip(&held)
            .any(|(counter, _)| counter.is_some_and(|c| c.blocked_until > now));
        if blocked {
            self.count_limited(Guessed::ApiToken);
        } else {
            self.blocked.invalidate(&digest);
        }
        Ok(blocked)
    }

    /// Whether a refusal about `what` should be recorded now: at most once per minute
    /// each, so a flood of refused attempts cannot fill the audit log.
    pub fn record_refusal(&self, what: &[&[u8]]) -> bool {
        let digest = SecretDigest::of_parts(what);
        if self.recorded.contains_key(&digest) {
            return false;
        }
        self.recorded.insert(digest, ());
        true
    }

    /// Applies another replica's notice about an API-token counter.
    pub fn apply(&self, notice: &Notice) {
        match notice {
            Notice::Blocked(key, until) => self.remember(key, *until),
            Notice::Unblocked(key) => self.forget(key),
            _ => {}
        }
    }

    /// Counters that hold failures in a live window or a block, of `secret` and
    /// `subject` when given.
    pub async fn list(
        &self,
        secret: Option<Guessed>,
        subject: &str,
        limit: u32,
    ) -> Result<Vec<LimitRecord>, StoreError> {
        let now = self.clock.now();
        let mut records = self.store.list_limits(secret, subject, now, limit).await?;
        records.retain(|r| r.counter.is_live(now, self.rules_of(&r.key)));
        Ok(records)
    }

    /// Forgets one counter (a person vouched for the account); false when there was
    /// none. The block ends on every replica.
    pub async fn clear(&self, key: &LimitKey, origin: &Origin) -> Result<bool, ServiceError> {
        let mut event = origin.event(self.clock.now(), "limit.clear", key.target());
        if !key.source.is_empty() {
            event = event.with("source", key.source.as_str());
        }
        let cleared = self.store.clear_limit(key, &event).await?;
        if cleared {
            super::audit::log(&event);
        }
        if key.secret == Guessed::ApiToken {
            self.forget(key);
            self.cache.announce(Notice::Unblocked(key.clone()));
        }
        Ok(cleared)
    }

    /// Forgets every API-token counter of `username` (its token was just replaced, so
    /// nobody has guessed at the new one), recording it as `origin`'s.
    pub async fn clear_api_token(
        &self,
        username: &str,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        let key = LimitKey {
            secret: Guessed::ApiToken,
            subject: username.to_owned(),
            source: String::new(),
        };
        let event = origin.event(self.clock.now(), "limit.clear", key.target());
        if self
            .store
            .clear_subject_limits(Guessed::ApiToken, username, &event)
            .await?
            > 0
        {
            super::audit::log(&event);
        }
        let every = LimitKey {
            source: EVERY_SOURCE.into(),
            ..key
        };
        self.forget(&every);
        self.cache.announce(Notice::Unblocked(every));
        Ok(())
    }

    async fn decide(
        &self,
        guess: &Guess,
        charge: Charge,
        origin: &Origin,
    ) -> Result<(), AdmitError> {
        let now = self.clock.now();
        let counters = guess.counters(&self.settings);
        let attempt = self
            .store
            .decide_attempt(&counters, charge, now, origin)
            .await?;
        for trip in attempt.tripped() {
            if let Some((key, _)) = counters.get(trip.index) {
                self.tripped(&trip_event(origin, now, key, trip.until), key, trip.until);
            }
        }
        match attempt {
            Attempt::Admitted { .. } => Ok(()),
            Attempt::Limited { .. } => {
                self.count_limited(guess.secret);
                Err(AdmitError::Limited(Limited))
            }
        }
    }

    /// A counter this replica blocked: counted, logged as the store recorded it, and
    /// for API tokens held in memory here and announced to the other replicas.
    fn tripped(&self, event: &Event, key: &LimitKey, until: UnixSeconds) {
        self.stats.tripped[LimitStats::slot(key.secret)].fetch_add(1, Ordering::Relaxed);
        super::audit::log(event);
        if key.secret == Guessed::ApiToken {
            self.remember(key, until);
            self.cache.announce(Notice::Blocked(key.clone(), until));
        }
    }

    fn rules_of(&self, key: &LimitKey) -> &Rules {
        if key.source.is_empty() {
            &self.settings.account
        } else {
            &self.settings.source
        }
    }

    fn count_limited(&self, secret: Guessed) {
        self.stats.limited[LimitStats::slot(secret)].fetch_add(1, Ordering::Relaxed);
    }

    /// Holds a block of an API-token counter until `until`, beside the subject's others.
    fn remember(&self, key: &LimitKey, until: UnixSeconds) {
        let now = self.clock.now();
        self.blocked
            .entry(subject_digest(key.secret, &key.subject))
            .and_upsert_with(|held| {
                let mut blocks: Vec<(String, UnixSeconds)> =
                    held.map(|e| e.into_value().to_vec()).unwrap_or_default();
                blocks.retain(|(source, end)| *end > now && *source != key.source);
                blocks.push((key.source.clone(), until));
                blocks.into()
            });
        self.latest_block.fetch_max(until, Ordering::AcqRel);
    }

    /// Drops the block of one counter held here, or of every counter of the subject
    /// when the key's source is [`EVERY_SOURCE`].
    fn forget(&self, key: &LimitKey) {
        let digest = subject_digest(key.secret, &key.subject);
        if key.source == EVERY_SOURCE {
            self.blocked.invalidate(&digest);
            return;
        }
        self.blocked.entry(digest).and_compute_with(|held| {
            let Some(held) = held else {
                return moka::ops::compute::Op::Nop;
            };
            let blocks: Vec<(String, UnixSeconds)> = held
                .into_value()
                .iter()
                .filter(|(source, _)| *source != key.source)
                .cloned()
                .collect();
            if blocks.is_empty() {
                moka::ops::compute::Op::Remove
            } else {
                moka::ops::compute::Op::Put(blocks.into())
            }
        });
    }
}

/// Why an attempt may not go on.
#[derive(Debug)]
pub enum AdmitError {
    /// A counter refuses it.
    Limited(Limited),
    /// Storage failed: the caller must refuse (fail closed).
    Store(StoreError),
}

impl From<StoreError> for AdmitError {
    fn from(e: StoreError) -> Self {
        Self::Store(e)
    }
}

impl super::admin::AdminService {
    /// Counters with failures in a live window or a block, of `secret` and `subject`
    /// when given.
    pub async fn list_guess_limits(
        &self,
        secret: &str,
        subject: &str,
        page_size: u32,
    ) -> Result<Vec<LimitRecord>, ServiceError> {
        let secret = match secret {
            "" => None,
            given => Some(secret_kind(given)?),
        };
        let subject = match (secret, subject) {
            (_, "") => String::new(),
            (Some(secret), given) => canonical_subject(secret, given)?,
            // Any kind: a subject is canonical for one kind as for another.
            (None, given) => canonical_subject(Guessed::Password, given)
                .or_else(|_| canonical_subject(Guessed::ClientSecret, given))?,
        };
        let limit = super::admin::page_size(page_size)?;
        Ok(self.limits.list(secret, &subject, limit).await?)
    }

    /// Forgets one counter; false when there was none.
    pub async fn clear_guess_limit(
        &self,
        origin: &Origin,
        secret: &str,
        subject: &str,
        source: &str,
    ) -> Result<bool, ServiceError> {
        let key = limit_key(secret, subject, source)?;
        self.limits.clear(&key, origin).await
    }
}

/// The counter a request names, checked and in stored form.
pub fn limit_key(secret: &str, subject: &str, source: &str) -> Result<LimitKey, ServiceError> {
    let secret = secret_kind(secret)?;
    if subject.is_empty() {
        return Err(ServiceError::invalid("subject", "is required"));
    }
    Ok(LimitKey {
        secret,
        subject: canonical_subject(secret, subject)?,
        source: canonical_source(source)?,
    })
}

fn secret_kind(given: &str) -> Result<Guessed, ServiceError> {
    Guessed::parse(given).ok_or_else(|| {
        ServiceError::invalid("secret", "must be password, client_secret or api_token")
    })
}

/// A subject as counters are stored under: a username in canonical form (given in any
/// case), a pseudonym (`#` and 24 hex digits, as listed), or a client id.
fn canonical_subject(secret: Guessed, given: &str) -> Result<String, ServiceError> {
    let pseudonym = given.len() == 25
        && given.starts_with('#')
        && given[1..]
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    match secret {
        Guessed::ClientSecret => {
            super::admin::check_issued_id("subject", given).map(|()| given.to_owned())
        }
        Guessed::Password if pseudonym => Ok(given.to_owned()),
        Guessed::Password | Guessed::ApiToken => names::normalize_username(given).map_err(|_| {
            ServiceError::invalid(
                "subject",
                "must be a username, a #pseudonym as listed, or a client id",
            )
        }),
    }
}

/// A source as counters are stored under: empty, an IP address (counted by its /64 for
/// IPv6), or a /64 prefix as listed.
fn canonical_source(given: &str) -> Result<String, ServiceError> {
    let invalid =
        || ServiceError::invalid("source", "must be empty, an IP address or a listed /64");
    if given.is_empty() {
        return Ok(String::new());
    }
    let address = given.strip_suffix("/64").unwrap_or(given);
    let ip: IpAddr = address.parse().map_err(|_| invalid())?;
    let canonical = source_key_of(ip);
    // A prefix must be written exactly as listed; an address may be any of the /64.
    if given.ends_with("/64") && canonical != given {
        return Err(invalid());
    }
    Ok(canonical)
}
