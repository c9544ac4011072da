//! Human passwords: argon2id on blocking threads behind a semaphore, so a flood of logins
//! queues here instead of stalling the async workers that serve checks.

use super::ServiceError;
use argon2::password_hash::{PasswordHasher as _, PasswordVerifier as _};
use argon2::{Algorithm, Argon2, Params, Version};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tokio::sync::Semaphore;

/// Fewest bytes a new password may have (NIST SP 800-63B).
pub const MIN_PASSWORD_BYTES: usize = 8;
/// Most bytes a password may have: bounds the work one request can cause.
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// argon2id cost parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HashCost {
    /// Memory in KiB.
    pub memory_kib: u32,
    /// Passes over memory.
    pub iterations: u32,
    /// Lanes.
    pub parallelism: u32,
}

impl HashCost {
    /// OWASP's recommendation (Password Storage Cheat Sheet): m=19 MiB, t=2, p=1.
    pub const OWASP: Self = Self {
        memory_kib: 19 * 1024,
        iterations: 2,
        parallelism: 1,
    };
}

/// Why a password could not be hashed or checked.
#[derive(Debug, thiserror::Error)]
pub enum PasswordError {
    /// The cost parameters are out of argon2's range.
    #[error("invalid argon2 parameters: {0}")]
    Params(String),
}

/// Hashes and verifies passwords with bounded concurrency.
pub struct Passwords {
    argon2: Argon2<'static>,
    permits: Arc<Semaphore>,
    /// Hashes allowed at once: `permits` starts with this many.
    slots: usize,
    waiting: AtomicUsize,
    max_waiting: usize,
    /// Verified against when a login names no user, so both cases cost the same.
    dummy_hash: String,
}

impl std::fmt::Debug for Passwords {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passwords")
            .field("params", self.argon2.params())
            .finish_non_exhaustive()
    }
}

impl Passwords {
    /// A hasher with `cost`, running at most `concurrency` hashes at once.
    pub fn new(cost: HashCost, concurrency: usize) -> Result<Arc<Self>, PasswordError> {
        let params = Params::new(cost.memory_kib, cost.iterations, cost.parallelism, None)
            .map_err(|e| PasswordError::Params(e.to_string()))?;
        let argon2 = Argon2::new(Algorithm::Argon2id, Version::V0x13, params);
        let mut random = [0u8; 32];
        rand::fill(&mut random);
        let dummy_hash = argon2
            .hash_password(&random)
            .map_err(|e| PasswordError::Params(e.to_string()))?
            .to_string();
        let concurrency = concurrency.max(1);
        Ok(Arc::new(Self {
            argon2,
            permits: Arc::new(Semaphore::new(concurrency)),
            slots: concurrency,
            waiting: AtomicUsize::new(0),
            max_waiting: concurrency * WAITING_PER_SLOT,
            dummy_hash,
        }))
    }

    /// Logins waiting for a hashing slot right now (for metrics).
    pub fn queue_depth(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }

    /// Hashes running right now (for metrics).
    pub fn in_flight(&self) -> usize {
        self.slots.saturating_sub(self.permits.available_permits())
    }

    /// Checks a new password's length: byte-exact, never trimmed or normalised.
    pub fn validate_new(password: &SecretString) -> Result<(), ServiceError> {
        let len = password.expose_secret().len();
        if !(MIN_PASSWORD_BYTES..=MAX_PASSWORD_BYTES).contains(&len) {
            return Err(ServiceError::invalid(
                "password",
                format!("must be {MIN_PASSWORD_BYTES} to {MAX_PASSWORD_BYTES} bytes"),
            ));
        }
        Ok(())
    }

    /// The argon2id PHC string of a new password.
    pub async fn hash(self: &Arc<Self>, password: SecretString) -> Result<String, ServiceError> {
        Self::validate_new(&password)?;
        let this = self.clone();
        self.run(move || {
            this.argon2
                .hash_password(password.expose_secret().as_bytes())
                .map(|h| h.to_string())
                .map_err(|e| ServiceError::Internal(format!("argon2: {e}")))
        })
        .await?
    }

    /// True when `password` matches `stored`. With no stored hash (no such user, or no
    /// password set) a dummy hash is checked instead, so the answer takes as long.
    pub async fn verify(
        self: &Arc<Self>,
        password: SecretString,
        stored: Option<String>,
    ) -> Result<bool, ServiceError> {
        if password.expose_secret().len() > MAX_PASSWORD_BYTES {
            return Ok(false);
        }
        let this = self.clone();
        self.run(move || {
            let known = stored.is_some();
            let hash = stored.unwrap_or_else(|| this.dummy_hash.clone());
            let matches = this
                .argon2
                .verify_password(password.expose_secret().as_bytes(), hash.as_str())
                .is_ok();
            known && matches
        })
        .await
    }

    /// Runs `work` on a blocking thread once a permit is free. The permit moves into the
    /// blocking task, so a caller that gives up (a cancelled RPC) cannot free its slot
    /// while the hash still runs. A full queue refuses at once.
    async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ServiceError> {
        let permit = {
            let _queued = Waiting::join(&self.waiting, self.max_waiting)?;
            self.permits.clone().acquire_owned().await
        };
        let permit = permit.map_err(|_| ServiceError::Internal("hasher closed".into()))?;
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            work()
        })
        .await
        .map_err(|e| ServiceError::Internal(format!("hashing task: {e}")))
    }
}

/// Logins allowed to wait per hashing slot before new ones are refused.
const WAITING_PER_SLOT: usize = 64;

/// A place in the queue for a hashing slot, given back when dropped (also when the
/// waiting RPC is cancelled).
struct Waiting<'a>(&'a AtomicUsize);

impl<'a> Waiting<'a> {
    fn join(count: &'a AtomicUsize, max: usize) -> Result<Self, ServiceError> {
        if count.fetch_add(1, Ordering::SeqCst) >= max {
            count.fetch_sub(1, Ordering::SeqCst);
            return Err(ServiceError::Overloaded(
                "too many password checks are waiting; retry shortly",
            ));
        }
        Ok(Self(count))
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: HashCost = HashCost {
        memory_kib: 64,
        iterations: 1,
        parallelism: 1,
    };

    fn secret(s: &str) -> SecretString {
        SecretString::from(s)
    }

    #[tokio::test]
    async fn hashes_verify_byte_exact() {
        let passwords = Passwords::new(CHEAP, 2).unwrap();
        let hash = passwords.hash(secret("correct horse ")).await.unwrap();
        assert!(hash.starts_with("$argon2id$v=19$m=64,t=1,p=1$"));
        let check = |p: &str| passwords.verify(secret(p), Some(hash.clone()));
        assert!(check("correct horse ").await.unwrap());
        assert!(!check("correct horse").await.unwrap());
        assert!(!check("Correct horse ").await.unwrap());
        // No stored hash: the dummy is checked, and the answer is no.
        assert!(!passwords.verify(secret("x"), None).await.unwrap());
    }

    #[tokio::test]
    async fn length_bounds() {
        let passwords = Passwords::new(CHEAP, 1).unwrap();
        assert!(passwords.hash(secret("short")).await.is_err());
        assert!(passwords.hash(secret(&"a".repeat(1025))).await.is_err());
        assert!(passwords.hash(secret(&"é".repeat(4))).await.is_ok());
        assert!(
            !passwords
                .verify(secret(&"a".repeat(2000)), Some(String::new()))
                .await
                .unwrap()
        );
    }

    #[tokio::test]
    async fn a_full_queue_refuses_and_cancelled_waiters_leave_it() {
        let passwords = Passwords::new(CHEAP, 1).unwrap();
        let held = passwords.permits.clone().acquire_owned().await.unwrap();
        let mut waiting = Vec::new();
        for _ in 0..WAITING_PER_SLOT {
            let p = passwords.clone();
            waiting.push(tokio::spawn(
                async move { p.verify(secret("x"), None).await },
            ));
        }
        while passwords.queue_depth() < WAITING_PER_SLOT {
            tokio::task::yield_now().await;
        }
        let refused = passwords.verify(secret("x"), None).await;
        assert!(matches!(refused, Err(ServiceError::Overloaded(_))));
        for task in &waiting {
            task.abort();
        }
        for task in waiting {
            let _ = task.await;
        }
        assert_eq!(passwords.queue_depth(), 0);
        drop(held);
        assert!(!passwords.verify(secret("x"), None).await.unwrap());
    }

    #[test]
    fn bad_parameters_are_refused() {
        let bad = HashCost {
            memory_kib: 1,
            ..CHEAP
        };
        assert!(Passwords::new(bad, 1).is_err());
    }
}
