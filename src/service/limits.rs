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
//! burst gets exactly as many checks as a sequential run (the store decides with the
//! counters locked), and a right secret during a block gets the same answer as a wrong
//! one.
//!
//! A right API token may be answered from the check cache without any database read, so
//! its cached check is kept per source address, and a counter that trips drops every
//! cached check of its username on every replica: from then on the database decides,
//! and a blocked source never gets a cached answer back while its block lasts.

use super::ServiceError;
use super::cache::CheckCache;
use crate::domain::audit::{Event, Origin};
use crate::domain::clock::{Clock, UnixSeconds};
use crate::domain::guessing::{
    Attempt, Charge, Guessed, LimitKey, Rules, source_bytes, source_key_of, trip_event,
};
use crate::domain::names;
use crate::domain::secret::SecretDigest;
use crate::store::{LimitRecord, LimitStore, LiveAt, Store, StoreError};
use moka::sync::Cache;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
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
        let mut counters = Vec::with_capacity(2);
        if let Some(ip) = self.source {
            counters.push((self.key(source_key_of(ip)), settings.source));
        }
        counters.push((self.key(String::new()), settings.account));
        counters
    }

    /// This attempt's counter from `source` (empty: the per-account one).
    fn key(&self, source: String) -> LimitKey {
        LimitKey {
            secret: self.secret,
            subject: self.subject.clone(),
            source,
        }
    }
}

/// Counts of refused attempts and of trips, by secret kind, for metrics.
#[derive(Debug, Default)]
pub struct LimitStats {
    limited: [AtomicU64; 3],
    tripped: [AtomicU64; 3],
}

impl LimitStats {
    fn slot(secret: Guessed) -> usize {
        match secret {
            Guessed::Password => 0,
            Guessed::ClientSecret => 1,
            Guessed::ApiToken => 2,
        }
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

/// Refusals recorded lately, remembered at most: beyond it the least used are forgotten
/// (then recorded again, which costs an audit row, not a decision).
const RECORDED_CAPACITY: u64 = 100_000;
/// Refused attempts of one counter are recorded at most once per this long; the metric
/// counts them all.
const RECORD_REFUSALS_EVERY: Duration = Duration::from_secs(60);

/// The guessing limits of this replica.
pub struct GuessLimits {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache: Arc<CheckCache>,
    settings: LimitSettings,
    /// Refusals recorded lately, by digest of what they were about.
    recorded: Cache<SecretDigest, ()>,
    stats: LimitStats,
}

/// Why an attempt was refused unchecked; answered exactly like a wrong secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limited {
    /// The counter refusing it.
    pub by: LimitKey,
}

impl GuessLimits {
    /// The limits of one replica.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        cache: Arc<CheckCache>,
        settings: LimitSettings,
    ) -> Self {
        Self {
            store,
            clock,
            cache,
            settings,
            recorded: Cache::builder()
                .max_capacity(RECORDED_CAPACITY)
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

    /// Whether a refusal by the counter `key` should be recorded now: at most once per
    /// minute each, so a refused flood cannot fill the audit log.
    pub fn record_refusal(&self, key: &LimitKey) -> bool {
        self.record_once(&[
            b"limited",
            key.secret.as_str().as_bytes(),
            key.subject.as_bytes(),
            key.source.as_bytes(),
        ])
    }

    /// Whether a login naming an unknown client from `source` should be recorded now:
    /// at most once per minute per source address (or once for every caller that gives
    /// none), whatever ids it makes up.
    pub fn record_unknown_client(&self, source: Option<IpAddr>) -> bool {
        let source = source.map(source_bytes);
        self.record_once(&[b"unknown_client", source.as_ref().map_or(&[], |s| s)])
    }

    fn record_once(&self, what: &[&[u8]]) -> bool {
        let digest = SecretDigest::of_parts(what);
        if self.recorded.contains_key(&digest) {
            return false;
        }
        self.recorded.insert(digest, ());
        true
    }

    /// Counters that hold failures in a live window or a block, of `secret` and
    /// `subject` when given.
    pub async fn list(
        &self,
        secret: Option<Guessed>,
        subject: &str,
        limit: u32,
    ) -> Result<Vec<LimitRecord>, StoreError> {
        let live = LiveAt {
            now: self.clock.now(),
            account_window: self.settings.account.window,
            source_window: self.settings.source.window,
        };
        self.store.list_limits(secret, subject, live, limit).await
    }

    /// Forgets one counter (a person vouched for the account); false when there was
    /// none. Nothing is held in memory: the next attempt reads the database.
    pub async fn clear(&self, key: &LimitKey, origin: &Origin) -> Result<bool, ServiceError> {
        Ok(clear_limit(self.store.as_ref(), self.clock.now(), key, origin).await?)
    }

    /// Forgets every API-token counter of `username` (its token was just replaced, so
    /// nobody has guessed at the new one), recording it as `origin`'s.
    pub async fn clear_api_token(
        &self,
        username: &str,
        origin: &Origin,
    ) -> Result<(), ServiceError> {
        clear_api_token(self.store.as_ref(), self.clock.now(), username, origin).await?;
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
                self.tripped(&trip_event(origin, now, key, trip.until), key);
            }
        }
        match attempt {
            Attempt::Admitted { .. } => Ok(()),
            Attempt::Limited { by, .. } => {
                self.count_limited(guess.secret);
                let by = counters
                    .into_iter()
                    .nth(by)
                    .map_or_else(|| guess.key(String::new()), |(key, _)| key);
                Err(AdmitError::Limited(Limited { by }))
            }
        }
    }

    /// A counter this replica blocked: counted and logged as the store recorded it. For
    /// an API token, every cached check of its username is dropped on every replica, so
    /// the database decides its next checks.
    fn tripped(&self, event: &Event, key: &LimitKey) {
        self.stats.tripped[LimitStats::slot(key.secret)].fetch_add(1, Ordering::Relaxed);
        super::audit::log(event);
        if key.secret == Guessed::ApiToken {
            self.cache.invalidate_api_token_of(&key.subject);
        }
    }

    fn count_limited(&self, secret: Guessed) {
        self.stats.limited[LimitStats::slot(secret)].fetch_add(1, Ordering::Relaxed);
    }
}

/// Forgets one counter, recorded as `origin`'s (the counter is the target, its source a
/// detail); false when there was none.
pub async fn clear_limit(
    store: &dyn LimitStore,
    now: UnixSeconds,
    key: &LimitKey,
    origin: &Origin,
) -> Result<bool, StoreError> {
    let mut event = origin.event(now, "limit.clear", key.target());
    if !key.source.is_empty() {
        event = event.with("source", key.source.as_str());
    }
    let cleared = store.clear_limit(key, &event).await?;
    if cleared {
        super::audit::log(&event);
    }
    Ok(cleared)
}

/// Forgets every API-token counter of `username`, recorded as `origin`'s when there
/// were any: after its token was replaced (by the service or the command line), nobody
/// has guessed at the new one, and blocks on the name would only keep its owner out.
/// How many there were.
pub async fn clear_api_token(
    store: &dyn LimitStore,
    now: UnixSeconds,
    username: &str,
    origin: &Origin,
) -> Result<u64, StoreError> {
    let event = origin.event(now, "limit.clear", format!("api_token:{username}"));
    let cleared = store
        .clear_subject_limits(Guessed::ApiToken, username, &event)
        .await?;
    if cleared > 0 {
        super::audit::log(&event);
    }
    Ok(cleared)
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
                .or_else(|_| canonical_subject(Guessed::ClientSecret, given))
                .map_err(|_| bad_subject())?,
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
        Guessed::Password | Guessed::ApiToken => {
            names::normalize_username(given).map_err(|_| bad_subject())
        }
    }
}

fn bad_subject() -> ServiceError {
    ServiceError::invalid(
        "subject",
        "must be a username, a #pseudonym as listed, or a client id",
    )
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
