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
use crate::domain::guessing::{Attempt, Charge, Guessed, LimitKey, Rules};
use crate::store::{LimitRecord, Store, StoreError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// The rules of the two counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LimitSettings {
    /// Per subject, over every source.
    pub account: Rules,
    /// Per subject and source address.
    pub source: Rules,
}

/// One attempt at a secret: whose, and from where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Guess {
    /// The secret kind.
    pub secret: Guessed,
    /// Whose secret (see [`LimitKey::subject`]).
    pub subject: String,
    /// The client's address as counted ([`source_key`](crate::domain::guessing::source_key)),
    /// when the caller supplied one.
    pub source: Option<String>,
}

impl Guess {
    /// The counters this attempt is charged to, the per-source one first.
    fn counters<'a>(&self, settings: &'a LimitSettings) -> Vec<(LimitKey, &'a Rules, Tier)> {
        let key = |source: &str| LimitKey {
            secret: self.secret,
            subject: self.subject.clone(),
            source: source.to_owned(),
        };
        let mut counters = Vec::with_capacity(2);
        if let Some(source) = &self.source {
            counters.push((key(source), &settings.source, Tier::Source));
        }
        counters.push((key(""), &settings.account, Tier::Account));
        counters
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tier {
    Source,
    Account,
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

/// The guessing limits of this replica.
pub struct GuessLimits {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache: Arc<CheckCache>,
    settings: LimitSettings,
    /// Tripped API-token counters and when their blocks end.
    blocked: Mutex<HashMap<LimitKey, UnixSeconds>>,
    /// How many entries `blocked` holds, read without the lock on every warm check.
    blocked_count: AtomicUsize,
    stats: LimitStats,
}

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
        Self {
            store,
            clock,
            cache,
            settings,
            blocked: Mutex::new(HashMap::new()),
            blocked_count: AtomicUsize::new(0),
            stats: LimitStats::default(),
        }
    }

    /// Refused and tripped counts, for metrics.
    pub fn stats(&self) -> &LimitStats {
        &self.stats
    }

    /// Before an expensive check: charges the attempt to each counter, the per-source
    /// one first (an attempt it refuses is not charged to the account, so one blocked
    /// source does not use up the account's allowance). `Err(Limited)` when refused.
    pub async fn admit(&self, guess: &Guess, origin: &Origin) -> Result<(), AdmitError> {
        for (key, rules, _) in guess.counters(&self.settings) {
            self.charge(&key, Charge::BeforeCheck, rules, origin)
                .await?;
        }
        Ok(())
    }

    /// After an admitted expensive check that was right: the source proved itself (its
    /// counter is forgotten) and the account gets its charge back. Failing to refund
    /// only leaves a failure counted, so errors are logged, not returned.
    pub async fn refund(&self, guess: &Guess) {
        let now = self.clock.now();
        for (key, rules, tier) in guess.counters(&self.settings) {
            let reset = tier == Tier::Source;
            if let Err(e) = self.store.refund_attempt(&key, rules, reset, now).await {
                tracing::warn!(error = %e, limit = %key.target(), "could not refund a right guess");
            }
        }
    }

    /// After a cheap check that was wrong: charges it to each counter; the failure that
    /// reaches a limit starts its block at once.
    pub async fn charge_failure(&self, guess: &Guess, origin: &Origin) -> Result<(), StoreError> {
        for (key, rules, _) in guess.counters(&self.settings) {
            match self.charge(&key, Charge::Failure, rules, origin).await {
                Ok(()) | Err(AdmitError::Limited(Limited)) => {}
                Err(AdmitError::Store(e)) => return Err(e),
            }
        }
        Ok(())
    }

    /// After a cheap check that was right: whether a counter refuses it anyway.
    pub async fn check_right(&self, guess: &Guess) -> Result<(), AdmitError> {
        let now = self.clock.now();
        for (key, rules, _) in guess.counters(&self.settings) {
            if self.store.is_limited(&key, rules, now).await? {
                self.count_limited(guess.secret);
                return Err(AdmitError::Limited(Limited));
            }
        }
        Ok(())
    }

    /// On a warm API-token check: whether a tripped counter of this replica's memory
    /// refuses the attempt `guess` builds. Costs one atomic load (and builds nothing)
    /// while nothing is blocked.
    pub fn blocked_in_memory(&self, guess: impl FnOnce() -> Guess) -> bool {
        if self.blocked_count.load(Ordering::Acquire) == 0 {
            return false;
        }
        let guess = guess();
        let now = self.clock.now();
        let Ok(mut blocked) = self.blocked.lock() else {
            // A poisoned lock: refuse rather than guess.
            return true;
        };
        blocked.retain(|_, until| *until > now);
        self.blocked_count.store(blocked.len(), Ordering::Release);
        let hit = guess
            .counters(&self.settings)
            .iter()
            .any(|(key, _, _)| blocked.contains_key(key));
        if hit {
            self.count_limited(guess.secret);
        }
        hit
    }

    /// Applies another replica's notice about an API-token counter.
    pub fn apply(&self, notice: &Notice) {
        match notice {
            Notice::Blocked(key, until) => self.remember(key.clone(), *until),
            Notice::Unblocked(key) => self.forget(key),
            _ => {}
        }
    }

    /// Counters with failures or a block, of `secret` and `subject` when given.
    pub async fn list(
        &self,
        secret: Option<Guessed>,
        subject: &str,
        limit: u32,
    ) -> Result<Vec<LimitRecord>, StoreError> {
        self.store
            .list_limits(secret, subject, self.clock.now(), limit)
            .await
    }

    /// Forgets one counter (a person vouched for the account); false when there was
    /// none. The block ends on every replica.
    pub async fn clear(&self, key: &LimitKey, origin: &Origin) -> Result<bool, ServiceError> {
        let event = origin.event(self.clock.now(), "limit.clear", key.target());
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

    async fn charge(
        &self,
        key: &LimitKey,
        charge: Charge,
        rules: &Rules,
        origin: &Origin,
    ) -> Result<(), AdmitError> {
        let now = self.clock.now();
        let on_trip = trip_event(origin, now, key, rules);
        let attempt = self
            .store
            .charge_attempt(key, charge, rules, now, &on_trip)
            .await?;
        match attempt {
            Attempt::Admitted => Ok(()),
            Attempt::Limited { until, tripped } => {
                // A failure that trips a limit was itself checked, not refused.
                if !(tripped && charge == Charge::Failure) {
                    self.count_limited(key.secret);
                }
                if tripped {
                    self.stats.tripped[LimitStats::slot(key.secret)]
                        .fetch_add(1, Ordering::Relaxed);
                    super::audit::log(&on_trip.with("blocked_until", until));
                }
                if key.secret == Guessed::ApiToken {
                    self.remember(key.clone(), until);
                    if tripped {
                        self.cache.announce(Notice::Blocked(key.clone(), until));
                    }
                }
                Err(AdmitError::Limited(Limited))
            }
        }
    }

    fn count_limited(&self, secret: Guessed) {
        self.stats.limited[LimitStats::slot(secret)].fetch_add(1, Ordering::Relaxed);
    }

    fn remember(&self, key: LimitKey, until: UnixSeconds) {
        if let Ok(mut blocked) = self.blocked.lock() {
            blocked.insert(key, until);
            self.blocked_count.store(blocked.len(), Ordering::Release);
        }
    }

    fn forget(&self, key: &LimitKey) {
        if let Ok(mut blocked) = self.blocked.lock() {
            blocked.remove(key);
            self.blocked_count.store(blocked.len(), Ordering::Release);
        }
    }
}

/// The event recorded when a counter trips.
fn trip_event(origin: &Origin, now: UnixSeconds, key: &LimitKey, rules: &Rules) -> Event {
    origin
        .event(now, "limit.set", key.target())
        .with("failures", rules.failures)
        .with("window_seconds", rules.window)
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

/// Default and largest page of ListGuessLimits.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

impl super::admin::AdminService {
    /// Counters with failures or a block, of `secret` and `subject` when given.
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
        check_subject(subject)?;
        let limit = match page_size {
            0 => DEFAULT_PAGE,
            n if n > MAX_PAGE => {
                return Err(ServiceError::invalid("page_size", "must be at most 1000"));
            }
            n => n,
        };
        Ok(self.limits.list(secret, subject, limit).await?)
    }

    /// Forgets one counter; false when there was none.
    pub async fn clear_guess_limit(
        &self,
        origin: &Origin,
        secret: &str,
        subject: &str,
        source: &str,
    ) -> Result<bool, ServiceError> {
        let secret = secret_kind(secret)?;
        check_subject(subject)?;
        if subject.is_empty() {
            return Err(ServiceError::invalid("subject", "is required"));
        }
        // A source is stored as its counted form; accept it as listed or as an address.
        let source = match source {
            "" => String::new(),
            given if given.ends_with("/64") => given.to_owned(),
            given => crate::domain::guessing::source_key(given).ok_or_else(|| {
                ServiceError::invalid("source", "must be empty, an IP address or a listed /64")
            })?,
        };
        let key = LimitKey {
            secret,
            subject: subject.to_owned(),
            source,
        };
        self.limits.clear(&key, origin).await
    }
}

fn secret_kind(given: &str) -> Result<Guessed, ServiceError> {
    Guessed::parse(given).ok_or_else(|| {
        ServiceError::invalid("secret", "must be password, client_secret or api_token")
    })
}

/// Subjects are names and ids identityd stored: short, with no control characters.
fn check_subject(subject: &str) -> Result<(), ServiceError> {
    if subject.len() > crate::domain::names::MAX_EMAIL || subject.chars().any(char::is_control) {
        return Err(ServiceError::invalid(
            "subject",
            "must be at most 254 characters without control characters",
        ));
    }
    Ok(())
}
