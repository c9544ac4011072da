//! Guessing limits: how many wrong guesses at a secret are allowed, and what happens
//! after. Pure state transitions; the store runs them under a row lock, so every replica
//! shares one count and a parallel burst gets no more tries than a sequential run.
//!
//! A counter counts failures in a window. An attempt is charged before its secret is
//! checked (and refunded if it was right), so attempts still being checked count too.
//! Once a window holds `failures` charges, the next attempt trips the limit: attempts
//! are refused unchecked until the block ends, at least until the window would have
//! ended and at least `next_delay` from now. Each trip doubles `next_delay` (up to the
//! maximum); a window that ends without a trip forgets earlier trips. Windows never
//! overlap, and each lasts at least `window`, so any period of one window admits at most
//! twice `failures` failures.

use super::clock::UnixSeconds;
use std::net::{IpAddr, Ipv6Addr};

/// Which secret is being guessed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Guessed {
    /// A user's password (the password grant).
    Password,
    /// An integration's client secret.
    ClientSecret,
    /// A user's API token under HTTP Basic.
    ApiToken,
}

impl Guessed {
    /// The stored and shown name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Password => "password",
            Self::ClientSecret => "client_secret",
            Self::ApiToken => "api_token",
        }
    }

    /// The kind a stored or requested name stands for.
    pub fn parse(s: &str) -> Option<Self> {
        [Self::Password, Self::ClientSecret, Self::ApiToken]
            .into_iter()
            .find(|g| g.as_str() == s)
    }
}

/// One counter: a secret kind, whose secret (the subject), and from where (empty for the
/// count over every source).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LimitKey {
    /// The secret kind.
    pub secret: Guessed,
    /// The account's canonical username, the typed login name of no account, the
    /// client id, or the Basic username.
    pub subject: String,
    /// A source address as [`source_key`] writes it, or empty.
    pub source: String,
}

impl LimitKey {
    /// How the key is named in the audit log: `password:alice` or
    /// `password:alice@192.0.2.1`.
    pub fn target(&self) -> String {
        let (secret, subject) = (self.secret.as_str(), &self.subject);
        match self.source.as_str() {
            "" => format!("{secret}:{subject}"),
            source => format!("{secret}:{subject}@{source}"),
        }
    }
}

/// How many failures one counter allows, and the blocks that follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rules {
    /// Failures allowed in a window.
    pub failures: u32,
    /// Seconds a window lasts.
    pub window: UnixSeconds,
    /// Seconds of the first block.
    pub first_delay: UnixSeconds,
    /// Longest block, in seconds.
    pub max_delay: UnixSeconds,
}

/// The state of one counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counter {
    /// Charges in the current window.
    pub failures: i64,
    /// When the current window started.
    pub window_start: UnixSeconds,
    /// Attempts are refused unchecked before this time; 0 when never blocked.
    pub blocked_until: UnixSeconds,
    /// The block the next trip imposes, in seconds.
    pub next_delay: UnixSeconds,
}

/// When an attempt is charged: before its secret is checked (an expensive check, which
/// a refused attempt must not cost), or once a cheap check found it wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// Before the check; refunded if the secret was right.
    BeforeCheck,
    /// After the check found the secret wrong; the failure that reaches the limit
    /// starts the block at once, so even a right secret cached elsewhere is refused.
    Failure,
}

/// What an attempt may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Attempt {
    /// Check the secret; the attempt counts as a failure unless refunded.
    Admitted,
    /// Refused without checking, until `until`; `tripped` when this attempt set the block.
    Limited {
        /// When the block ends.
        until: UnixSeconds,
        /// This attempt started the block.
        tripped: bool,
    },
}

impl Counter {
    /// A counter with nothing counted.
    pub fn fresh(now: UnixSeconds, rules: &Rules) -> Self {
        Self {
            failures: 0,
            window_start: now,
            blocked_until: 0,
            next_delay: rules.first_delay,
        }
    }

    /// Charges one attempt at `now` as `charge` says, or refuses it.
    pub fn charge(&mut self, charge: Charge, now: UnixSeconds, rules: &Rules) -> Attempt {
        let attempt = self.attempt(now, rules);
        match (charge, attempt) {
            (Charge::Failure, Attempt::Admitted) if self.failures >= i64::from(rules.failures) => {
                // The limit is reached now: block as the next attempt would.
                self.attempt(now, rules)
            }
            _ => attempt,
        }
    }

    /// Charges one attempt at `now`, or refuses it.
    fn attempt(&mut self, now: UnixSeconds, rules: &Rules) -> Attempt {
        if self.blocked_until > now {
            return Attempt::Limited {
                until: self.blocked_until,
                tripped: false,
            };
        }
        if self.window_start + rules.window <= now {
            // A window without a trip: earlier trips are forgotten.
            *self = Self::fresh(now, rules);
        }
        if self.failures >= i64::from(rules.failures) {
            let until = (self.window_start + rules.window).max(now + self.next_delay);
            self.blocked_until = until;
            self.next_delay = (self.next_delay * 2).min(rules.max_delay);
            // Counting starts again when the block ends.
            self.failures = 0;
            self.window_start = until;
            return Attempt::Limited {
                until,
                tripped: true,
            };
        }
        self.failures += 1;
        Attempt::Admitted
    }

    /// Takes back the charge of an attempt whose secret was right.
    pub fn refund(&mut self) {
        self.failures = (self.failures - 1).max(0);
    }

    /// True when an attempt now would be refused unchecked (whether or not it trips).
    pub fn is_limited(&self, now: UnixSeconds, rules: &Rules) -> bool {
        self.blocked_until > now
            || (self.window_start + rules.window > now
                && self.failures >= i64::from(rules.failures))
    }

    /// True when the counter holds nothing a fresh one would not: it can be deleted.
    pub fn is_idle(&self, now: UnixSeconds, rules: &Rules) -> bool {
        self.blocked_until <= now
            && (self.failures == 0 || self.window_start + rules.window <= now)
            && self.next_delay <= rules.first_delay
    }
}

/// The form a client address is counted under: an IPv4 address as written, an IPv6
/// address as its /64 prefix (one subscriber usually holds a whole /64), an
/// IPv4-mapped IPv6 address as the IPv4 address. `None` for anything that is not an IP
/// address.
pub fn source_key(address: &str) -> Option<String> {
    let ip: IpAddr = address.parse().ok()?;
    Some(match ip {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let prefix = u128::from(v6) & !((1u128 << 64) - 1);
                format!("{}/64", Ipv6Addr::from(prefix))
            }
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const RULES: Rules = Rules {
        failures: 3,
        window: 100,
        first_delay: 10,
        max_delay: 1000,
    };

    fn admitted(counter: &mut Counter, now: UnixSeconds, n: usize) -> usize {
        (0..n)
            .filter(|_| counter.charge(Charge::BeforeCheck, now, &RULES) == Attempt::Admitted)
            .count()
    }

    #[test]
    fn a_burst_gets_exactly_the_allowed_tries() {
        let mut c = Counter::fresh(0, &RULES);
        assert_eq!(admitted(&mut c, 0, 150), 3);
        assert!(c.is_limited(1, &RULES));
        // The block lasts until the window would have ended.
        assert_eq!(c.blocked_until, 100);
        assert_eq!(admitted(&mut c, 99, 5), 0);
        assert_eq!(admitted(&mut c, 100, 5), 3);
    }

    #[test]
    fn blocks_grow_and_a_quiet_window_forgets_them() {
        let mut c = Counter::fresh(0, &RULES);
        let mut now = 0;
        let mut blocks = Vec::new();
        for _ in 0..8 {
            admitted(&mut c, now, 3);
            let Attempt::Limited { until, tripped } = c.charge(Charge::BeforeCheck, now, &RULES)
            else {
                panic!("the fourth attempt is limited")
            };
            assert!(tripped);
            blocks.push(until - now);
            now = until;
        }
        // At least the window; then 10 s doubling beyond it, capped at 1000 s.
        assert_eq!(blocks, [100, 100, 100, 100, 160, 320, 640, 1000]);
        // A whole window after the block with no trip: back to the first delay.
        now += 1000;
        assert_eq!(admitted(&mut c, now, 1), 1);
        assert_eq!(c.next_delay, RULES.first_delay);
    }

    #[test]
    fn a_known_failure_that_reaches_the_limit_blocks_at_once() {
        let mut c = Counter::fresh(0, &RULES);
        for _ in 0..2 {
            assert_eq!(c.charge(Charge::Failure, 0, &RULES), Attempt::Admitted);
        }
        assert_eq!(
            c.charge(Charge::Failure, 0, &RULES),
            Attempt::Limited {
                until: 100,
                tripped: true
            }
        );
        assert!(c.is_limited(1, &RULES));
    }

    #[test]
    fn refunds_and_limits() {
        let mut c = Counter::fresh(0, &RULES);
        admitted(&mut c, 0, 3);
        assert!(c.is_limited(0, &RULES), "the next attempt would trip");
        c.refund();
        assert!(!c.is_limited(0, &RULES));
        assert!(!c.is_limited(200, &RULES), "an ended window counts nothing");
        assert!(c.is_idle(200, &RULES));
        assert!(!c.is_idle(0, &RULES));
    }

    #[test]
    fn sources_are_counted_by_address_or_prefix() {
        assert_eq!(source_key("192.0.2.7").as_deref(), Some("192.0.2.7"));
        assert_eq!(
            source_key("2001:db8:1:2:3:4:5:6").as_deref(),
            Some("2001:db8:1:2::/64")
        );
        assert_eq!(
            source_key("2001:db8:1:2::ffff").as_deref(),
            source_key("2001:db8:1:2:aaaa::1").as_deref()
        );
        assert_eq!(source_key("::ffff:192.0.2.7").as_deref(), Some("192.0.2.7"));
        for bad in [
            "",
            "example.com",
            "192.0.2.7:443",
            "192.0.2.256",
            "1.2.3.4\0",
        ] {
            assert_eq!(source_key(bad), None, "{bad:?}");
        }
    }
}
