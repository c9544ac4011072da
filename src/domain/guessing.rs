//! Guessing limits: how many wrong guesses at a secret are allowed, and what happens
//! after. Pure state transitions; the store runs them with the counters locked, so every
//! replica shares one count and a parallel burst gets no more tries than a sequential
//! run.
//!
//! A counter counts failures in a window. An attempt is charged before its secret is
//! checked (and refunded if it was right), so attempts still being checked count too.
//! Once a window holds `failures` charges, the next attempt trips the limit: attempts
//! are refused unchecked until the block ends, at least until the window would have
//! ended and at least `next_delay` from now. Each trip doubles `next_delay` (up to the
//! maximum); a window that ends without a trip forgets earlier trips. Windows never
//! overlap, and each lasts at least `window`, so any period of one window admits at most
//! twice `failures` failures.

use super::audit::{Actor, Event, Origin};
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
    /// The account's canonical username, the pseudonym of a login name that is no
    /// account's, the client id, or the Basic username.
    pub subject: String,
    /// A source address as [`source_key`] writes it, or empty.
    pub source: String,
}

impl LimitKey {
    /// How the audit log names the counter's secret: `password:alice`. The source, if
    /// any, goes with it as a detail: a username may hold `@` and digits, so
    /// `alice@192.0.2.1` could name either.
    pub fn target(&self) -> String {
        format!("{}:{}", self.secret.as_str(), self.subject)
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

/// What is known of an attempt when it is decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Charge {
    /// An expensive secret (a password), decided before it is checked so that a refused
    /// attempt costs no hashing: counted as a failure until refunded.
    BeforeCheck,
    /// A cheap secret (by digest), checked and found wrong: counted; the failure that
    /// reaches the limit starts the block at once, so even a right secret held in a
    /// cache elsewhere is refused from then on.
    Wrong,
    /// A cheap secret, checked and found right: not counted.
    Right,
}

/// A counter an attempt blocked: its index among the attempt's counters, and when the
/// block ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Trip {
    /// Which counter.
    pub index: usize,
    /// When its block ends.
    pub until: UnixSeconds,
}

/// The decision on one attempt, taken over all its counters at once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attempt {
    /// Go on: check the secret (`BeforeCheck`), or act on the check (`Wrong`, `Right`).
    /// `tripped` lists the counters a wrong secret has just blocked.
    Admitted {
        /// Counters this failure blocked.
        tripped: Vec<Trip>,
    },
    /// Refused unchecked until `until`, whatever the secret: nothing is counted.
    /// `tripped` lists the counters this attempt found at their limit and blocked.
    Limited {
        /// When the last block ends.
        until: UnixSeconds,
        /// The counter refusing it: the per-account one when both do.
        by: usize,
        /// Counters this attempt blocked.
        tripped: Vec<Trip>,
    },
}

impl Attempt {
    /// The counters this attempt blocked.
    pub fn tripped(&self) -> &[Trip] {
        match self {
            Self::Admitted { tripped } | Self::Limited { tripped, .. } => tripped,
        }
    }
}

/// The event of a counter blocked at `now` by an attempt from `origin`: identityd blocks
/// (actor `system`), with the request's source and id; the counter is the target, its
/// source and the block's end are details.
pub fn trip_event(origin: &Origin, now: UnixSeconds, key: &LimitKey, until: UnixSeconds) -> Event {
    let mut event = origin
        .acting(Actor::system())
        .event(now, "limit.set", key.target());
    if !key.source.is_empty() {
        event = event.with("source", key.source.as_str());
    }
    event.with("blocked_until", until)
}

/// Decides one attempt on every counter guarding its secret (per source and per
/// account), changing them as it goes. An attempt any counter refuses is refused
/// unchecked and counted nowhere: a blocked source does not use up the account's
/// allowance, nor a blocked account the owner's own source.
pub fn decide(
    counters: &mut [Counter],
    rules: &[Rules],
    charge: Charge,
    now: UnixSeconds,
) -> Attempt {
    let mut refusal = None;
    let mut tripped = Vec::new();
    for (i, (counter, rules)) in counters.iter_mut().zip(rules).enumerate() {
        counter.roll(now, rules);
        if counter.blocked_until <= now && counter.at_limit(rules) {
            counter.trip(now, rules);
            tripped.push(Trip {
                index: i,
                until: counter.blocked_until,
            });
        }
        if counter.blocked_until > now {
            let until =
                refusal.map_or(counter.blocked_until, |(u, _)| counter.blocked_until.max(u));
            refusal = Some((until, i));
        }
    }
    if let Some((until, by)) = refusal {
        return Attempt::Limited { until, by, tripped };
    }
    if charge != Charge::Right {
        for (i, (counter, rules)) in counters.iter_mut().zip(rules).enumerate() {
            counter.failures += 1;
            if charge == Charge::Wrong && counter.at_limit(rules) {
                counter.trip(now, rules);
                tripped.push(Trip {
                    index: i,
                    until: counter.blocked_until,
                });
            }
        }
    }
    Attempt::Admitted { tripped }
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

    /// Starts a new window once the current one is over; a window that ended without a
    /// trip forgets earlier trips.
    fn roll(&mut self, now: UnixSeconds, rules: &Rules) {
        if self.blocked_until <= now && self.window_start + rules.window <= now {
            *self = Self::fresh(now, rules);
        }
    }

    fn at_limit(&self, rules: &Rules) -> bool {
        self.failures >= i64::from(rules.failures)
    }

    /// Blocks until the window would have ended and at least the current delay, which
    /// then doubles; counting starts again when the block ends.
    fn trip(&mut self, now: UnixSeconds, rules: &Rules) {
        let until = (self.window_start + rules.window).max(now + self.next_delay);
        self.blocked_until = until;
        self.next_delay = (self.next_delay * 2).min(rules.max_delay);
        self.failures = 0;
        self.window_start = until;
    }

    /// Takes back the charge of an attempt whose secret was right.
    pub fn refund(&mut self) {
        self.failures = (self.failures - 1).max(0);
    }

    /// Forgets the failures of the window (not a block): the secret was right from this
    /// source, so its earlier failures were its owner's typos.
    pub fn forgive(&mut self) {
        self.failures = 0;
    }

    /// True when the counter holds something at `now`: failures in a live window, or a
    /// block. Counters that hold nothing are not worth listing.
    pub fn is_live(&self, now: UnixSeconds, rules: &Rules) -> bool {
        self.blocked_until > now || (self.failures > 0 && self.window_start + rules.window > now)
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
    address.parse().ok().map(source_key_of)
}

/// [`source_key`] of an address already parsed.
pub fn source_key_of(ip: IpAddr) -> String {
    match counted(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(prefix) => format!("{prefix}/64"),
    }
}

/// [`source_key_of`] as bytes, without writing it out: for keys built on every check.
/// An IPv4 address and an IPv6 prefix never share bytes (the first byte tells them
/// apart).
pub fn source_bytes(ip: IpAddr) -> [u8; 9] {
    let mut bytes = [0u8; 9];
    match counted(ip) {
        IpAddr::V4(v4) => {
            bytes[0] = 4;
            bytes[1..5].copy_from_slice(&v4.octets());
        }
        IpAddr::V6(prefix) => {
            bytes[0] = 6;
            bytes[1..].copy_from_slice(&prefix.octets()[..8]);
        }
    }
    bytes
}

/// The address a client is counted as: an IPv4 address itself (also when written as
/// IPv4-mapped IPv6), an IPv6 address as its /64 prefix.
fn counted(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(Ipv6Addr::from(u128::from(v6) & !((1u128 << 64) - 1))),
        },
    }
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

    fn one(counter: &mut Counter, charge: Charge, now: UnixSeconds) -> Attempt {
        decide(std::slice::from_mut(counter), &[RULES], charge, now)
    }

    fn admitted(counter: &mut Counter, now: UnixSeconds, n: usize) -> usize {
        (0..n)
            .filter(|_| {
                matches!(
                    one(counter, Charge::BeforeCheck, now),
                    Attempt::Admitted { .. }
                )
            })
            .count()
    }

    #[test]
    fn a_burst_gets_exactly_the_allowed_tries() {
        let mut c = Counter::fresh(0, &RULES);
        assert_eq!(admitted(&mut c, 0, 150), 3);
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
            let Attempt::Limited { until, tripped, .. } = one(&mut c, Charge::BeforeCheck, now)
            else {
                panic!("the fourth attempt is limited")
            };
            assert_eq!(tripped.iter().map(|t| t.index).collect::<Vec<_>>(), [0]);
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
    fn a_wrong_secret_that_reaches_the_limit_blocks_at_once() {
        let mut c = Counter::fresh(0, &RULES);
        for _ in 0..2 {
            assert_eq!(
                one(&mut c, Charge::Wrong, 0),
                Attempt::Admitted { tripped: vec![] }
            );
        }
        assert_eq!(
            one(&mut c, Charge::Wrong, 0),
            Attempt::Admitted {
                tripped: vec![Trip {
                    index: 0,
                    until: 100
                }]
            }
        );
        assert_eq!(c.blocked_until, 100);
        // Now right and wrong alike are refused, and nothing more is counted.
        for charge in [Charge::Right, Charge::Wrong] {
            assert_eq!(
                one(&mut c, charge, 1),
                Attempt::Limited {
                    until: 100,
                    by: 0,
                    tripped: vec![]
                }
            );
        }
        assert_eq!(c.failures, 0);
    }

    #[test]
    fn a_right_secret_is_not_counted() {
        let mut c = Counter::fresh(0, &RULES);
        for _ in 0..10 {
            assert_eq!(
                one(&mut c, Charge::Right, 0),
                Attempt::Admitted { tripped: vec![] }
            );
        }
        assert_eq!(c.failures, 0);
    }

    #[test]
    fn a_refusal_is_counted_nowhere() {
        // Per source, then per account: the source is blocked.
        let rules = [
            RULES,
            Rules {
                failures: 50,
                ..RULES
            },
        ];
        let mut counters = [Counter::fresh(0, &rules[0]), Counter::fresh(0, &rules[1])];
        for _ in 0..3 {
            decide(&mut counters, &rules, Charge::Wrong, 0);
        }
        assert_eq!(counters[1].failures, 3);
        for _ in 0..40 {
            let refused = decide(&mut counters, &rules, Charge::Wrong, 1);
            assert!(matches!(refused, Attempt::Limited { by: 0, .. }));
        }
        assert_eq!(
            counters[1].failures, 3,
            "the blocked source spent nothing of the account"
        );
        // The account blocked: the owner's own source is not charged either.
        let mut counters = [Counter::fresh(0, &rules[0]), Counter::fresh(0, &rules[1])];
        counters[1].blocked_until = 500;
        for _ in 0..20 {
            let refused = decide(&mut counters, &rules, Charge::BeforeCheck, 1);
            assert!(matches!(refused, Attempt::Limited { by: 1, .. }));
        }
        assert_eq!(counters[0].failures, 0);
        assert_eq!(counters[0].blocked_until, 0);
    }

    #[test]
    fn refunds_liveness_and_idleness() {
        let mut c = Counter::fresh(0, &RULES);
        admitted(&mut c, 0, 3);
        c.refund();
        assert_eq!(c.failures, 2);
        assert!(c.is_live(0, &RULES));
        assert!(!c.is_live(200, &RULES), "an ended window counts nothing");
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

    #[test]
    fn source_bytes_tell_apart_what_source_keys_tell_apart() {
        let addresses = [
            "192.0.2.7",
            "::ffff:192.0.2.7",
            "192.0.2.8",
            "2001:db8:1:2::ffff",
            "2001:db8:1:2:aaaa::1",
            "2001:db8:1:3::1",
            "c000:207::",
        ];
        for a in addresses {
            for b in addresses {
                let (a, b): (IpAddr, IpAddr) = (a.parse().unwrap(), b.parse().unwrap());
                assert_eq!(
                    source_bytes(a) == source_bytes(b),
                    source_key_of(a) == source_key_of(b),
                    "{a} {b}"
                );
            }
        }
    }
}
