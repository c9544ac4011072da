//! The check cache: verified credentials keyed by their digest, so a warm check costs no
//! database round trip.
//!
//! Invalidation must never lose to a concurrent fill: a check that read the database
//! before a revoking change committed must not put the stale result back afterwards.
//! Every invalidation first bumps an epoch; a fill remembers the epoch from before its
//! database read and, after inserting, drops its own entry again if the epoch moved.
//! Either the fill's insert precedes the invalidation (which then removes it), or its
//! epoch check follows the bump (and it removes itself).
//!
//! Every invalidation a change makes is also announced to the other replicas (see
//! [`replicas`](super::replicas)), which apply it to their own caches.

use super::replicas::Notice;
use crate::domain::principal::{Authenticated, CredentialKind};
use crate::domain::secret::SecretDigest;
use moka::sync::Cache;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::mpsc::UnboundedSender;

/// Bounded, expiring cache of authenticated credentials.
pub struct CheckCache {
    entries: Cache<SecretDigest, Arc<Authenticated>>,
    epoch: AtomicU64,
    hits: AtomicU64,
    misses: AtomicU64,
    outbox: OnceLock<UnboundedSender<Notice>>,
}

/// Hit and miss counts since start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheStats {
    /// Lookups answered from memory.
    pub hits: u64,
    /// Lookups that went to the database.
    pub misses: u64,
}

/// The epoch observed before a database read; hand it back to [`CheckCache::fill`].
#[derive(Debug, Clone, Copy)]
pub struct Epoch(u64);

impl CheckCache {
    /// A cache of at most `capacity` credentials, each kept at most `ttl`. The TTL bounds
    /// how long another replica's change can go unseen.
    pub fn new(capacity: u64, ttl: Duration) -> Self {
        Self {
            entries: Cache::builder()
                .max_capacity(capacity)
                .time_to_live(ttl)
                .support_invalidation_closures()
                .build(),
            epoch: AtomicU64::new(0),
            hits: AtomicU64::new(0),
            misses: AtomicU64::new(0),
            outbox: OnceLock::new(),
        }
    }

    /// Where announced notices go from now on (once; later calls change nothing).
    pub fn set_outbox(&self, outbox: UnboundedSender<Notice>) {
        let _ = self.outbox.set(outbox);
    }

    /// Tells the other replicas, if there are any.
    pub fn announce(&self, notice: Notice) {
        if let Some(outbox) = self.outbox.get() {
            // Fails only once the sender task is gone, at shutdown.
            let _ = outbox.send(notice);
        }
    }

    /// Applies a notice to this cache only.
    pub fn apply(&self, notice: &Notice) {
        match notice {
            Notice::Principal(id) => {
                let id = id.clone();
                self.invalidate_if(move |v| {
                    v.principal.id == id
                        || v.principal
                            .attached_user
                            .as_ref()
                            .is_some_and(|u| u.id == id)
                });
            }
            Notice::Session(id) => {
                let id = id.clone();
                self.invalidate_if(move |v| v.principal.session_id.as_deref() == Some(id.as_str()));
            }
            Notice::Credential(id) => {
                let id = id.clone();
                self.invalidate_if(move |v| v.principal.credential_id == id);
            }
            Notice::All => {
                self.epoch.fetch_add(1, Ordering::SeqCst);
                self.entries.invalidate_all();
            }
            Notice::ApiTokenOf(username) => {
                let username = username.clone();
                self.invalidate_if(move |v| {
                    v.principal.credential_kind == CredentialKind::ApiToken
                        && v.principal.name == username
                });
            }
            // Not the cache's: documents have their own follower.
            Notice::Documents => {}
        }
    }

    /// Applies a notice here and announces it to the other replicas.
    fn apply_everywhere(&self, notice: Notice) {
        self.apply(&notice);
        self.announce(notice);
    }

    /// The cached result for a credential digest.
    pub fn get(&self, key: &SecretDigest) -> Option<Arc<Authenticated>> {
        let found = self.entries.get(key);
        let counter = if found.is_some() {
            &self.hits
        } else {
            &self.misses
        };
        counter.fetch_add(1, Ordering::Relaxed);
        found
    }

    /// Hits and misses so far.
    pub fn stats(&self) -> CacheStats {
        CacheStats {
            hits: self.hits.load(Ordering::Relaxed),
            misses: self.misses.load(Ordering::Relaxed),
        }
    }

    /// Call before reading the database for a fill.
    pub fn epoch(&self) -> Epoch {
        Epoch(self.epoch.load(Ordering::SeqCst))
    }

    /// Caches `value` unless an invalidation happened since `read_at`.
    pub fn fill(&self, key: SecretDigest, value: Arc<Authenticated>, read_at: Epoch) {
        self.entries.insert(key, value);
        if self.epoch.load(Ordering::SeqCst) != read_at.0 {
            self.entries.invalidate(&key);
        }
    }

    /// Drops one credential here only (it expired; other replicas see that themselves).
    pub fn invalidate(&self, key: &SecretDigest) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        self.entries.invalidate(key);
    }

    /// Drops every credential of one principal, and those of apps attached to it (an
    /// app's entry holds its attached user's permissions), on every replica.
    pub fn invalidate_principal(&self, principal_id: &str) {
        self.apply_everywhere(Notice::Principal(principal_id.to_owned()));
    }

    /// Drops one credential by its credential id, for credentials revoked without
    /// their secret at hand (an app token revoked by id), on every replica.
    pub fn invalidate_credential(&self, credential_id: &str) {
        self.apply_everywhere(Notice::Credential(credential_id.to_owned()));
    }

    /// Drops every cached check of one username's API token (a guessing limit on it
    /// tripped), on every replica.
    pub fn invalidate_api_token_of(&self, username: &str) {
        self.apply_everywhere(Notice::ApiTokenOf(username.to_owned()));
    }

    /// Drops every access token of one session, on every replica.
    pub fn invalidate_session(&self, session_id: &str) {
        self.apply_everywhere(Notice::Session(session_id.to_owned()));
    }

    fn invalidate_if(&self, predicate: impl Fn(&Authenticated) -> bool + Send + Sync + 'static) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let by_predicate = self.entries.invalidate_entries_if(move |_, v| predicate(v));
        if by_predicate.is_err() {
            // Unreachable with the builder above; dropping everything is the safe fallback.
            self.entries.invalidate_all();
        }
    }

    /// Drops everything, e.g. when a role's permissions change, on every replica.
    pub fn invalidate_all(&self) {
        self.apply_everywhere(Notice::All);
    }

    /// Entries currently held (approximate; for metrics and tests).
    pub fn len(&self) -> u64 {
        self.entries.run_pending_tasks();
        self.entries.entry_count()
    }

    /// True when nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::credentials::Scheme;
    use crate::domain::principal::{AttachedUser, CredentialKind, Principal, PrincipalKind};
    use secrecy::SecretString;

    fn entry(id: &str) -> Arc<Authenticated> {
        Arc::new(Authenticated {
            principal: Principal {
                kind: PrincipalKind::User,
                id: id.into(),
                name: id.into(),
                is_staff: false,
                is_customer: true,
                attached_user: None,
                scheme: Scheme::Basic,
                credential_kind: CredentialKind::ApiToken,
                credential_id: String::new(),
                session_id: None,
                expires_at: None,
                scopes: Vec::new(),
            },
            permissions: Arc::default(),
            scope_ceiling: None,
            attached_permissions: None,
        })
    }

    fn key(s: &str) -> SecretDigest {
        SecretDigest::of(&SecretString::from(s))
    }

    #[test]
    fn fill_then_get() {
        let cache = CheckCache::new(10, Duration::from_secs(60));
        cache.fill(key("a"), entry("u1"), cache.epoch());
        assert!(cache.get(&key("a")).is_some());
        assert!(cache.get(&key("b")).is_none());
    }

    #[test]
    fn a_fill_that_raced_an_invalidation_is_dropped() {
        let cache = CheckCache::new(10, Duration::from_secs(60));
        let before_read = cache.epoch();
        cache.invalidate_principal("u1"); // a revoking change commits meanwhile
        cache.fill(key("a"), entry("u1"), before_read);
        assert!(cache.get(&key("a")).is_none());
    }

    #[test]
    fn invalidate_principal_keeps_others() {
        let cache = CheckCache::new(10, Duration::from_secs(60));
        cache.fill(key("a"), entry("u1"), cache.epoch());
        cache.fill(key("b"), entry("u2"), cache.epoch());
        cache.invalidate_principal("u1");
        assert!(cache.get(&key("a")).is_none());
        assert!(cache.get(&key("b")).is_some());
        cache.invalidate_all();
        assert!(cache.get(&key("b")).is_none());
    }

    #[test]
    fn invalidating_a_user_drops_the_apps_attached_to_it() {
        let cache = CheckCache::new(10, Duration::from_secs(60));
        let mut app = (*entry("app1")).clone();
        app.principal.attached_user = Some(AttachedUser {
            id: "u1".into(),
            username: "u1".into(),
            is_staff: false,
        });
        cache.fill(key("app"), Arc::new(app), cache.epoch());
        cache.fill(key("other"), entry("u2"), cache.epoch());
        cache.invalidate_principal("u1");
        assert!(cache.get(&key("app")).is_none());
        assert!(cache.get(&key("other")).is_some());
    }

    #[test]
    fn invalidate_credential_drops_only_that_one() {
        let cache = CheckCache::new(10, Duration::from_secs(60));
        for (k, credential) in [("t1", "app_token:t1"), ("t2", "app_token:t2")] {
            let mut token = (*entry("app")).clone();
            token.principal.credential_id = credential.into();
            cache.fill(key(k), Arc::new(token), cache.epoch());
        }
        cache.invalidate_credential("app_token:t1");
        assert!(cache.get(&key("t1")).is_none());
        assert!(cache.get(&key("t2")).is_some());
    }
}
