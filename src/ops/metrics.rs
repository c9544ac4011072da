//! This server's metrics, in a registry of its own: servers sharing a process (as the
//! tests do) never mix their counts.
//!
//! Events (gRPC calls, verdicts) are counted as they happen, on label sets resolved by a
//! hash lookup with no allocation once a combination has been seen. State owned by other
//! parts (cache counters, argon2 queue, connection pool) is read only at scrape time.

use crate::domain::guessing::Guessed;
use crate::service::cache::CheckCache;
use crate::service::limits::GuessLimits;
use crate::service::passwords::Passwords;
use crate::store::Store;
use prometheus::core::{Collector, Desc};
use prometheus::proto::{self, MetricFamily, MetricType};
use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder};
use std::sync::Arc;
use std::time::Duration;
use tonic::Code;

/// Latency buckets in seconds: a warm check takes under a millisecond, a password login
/// tens of milliseconds, anything past seconds is an outage.
const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

/// The method label of calls to methods no service has: unbounded garbage paths must
/// not become label values.
const UNKNOWN_METHOD: &str = "unknown";

/// gRPC status names (`grpc_code` as in the gRPC docs), indexed by code.
const CODE_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The registry of one server and the handles that record into it.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    grpc: GrpcCalls,
    verdicts: Verdicts,
}

impl Metrics {
    /// Registers every metric; `store`, `cache`, `passwords` and `limits` are read at
    /// scrape time.
    pub fn new(
        store: Arc<dyn Store>,
        cache: Arc<CheckCache>,
        passwords: Arc<Passwords>,
        limits: Arc<GuessLimits>,
    ) -> prometheus::Result<Self> {
        let registry = Registry::new();
        let calls = IntCounterVec::new(
            Opts::new(
                "identityd_grpc_requests_total",
                "gRPC calls finished, by method path and status code.",
            ),
            &["method", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "identityd_grpc_request_duration_seconds",
                "Time from a gRPC call's arrival to its status, by method path.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["method"],
        )?;
        let verdicts = IntCounterVec::new(
            Opts::new(
                "identityd_verdicts_total",
                "Check verdicts, by RPC and reason code (ok for allow).",
            ),
            &["rpc", "reason"],
        )?;
        registry.register(Box::new(calls.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(verdicts.clone()))?;
        for pulled in pulled_metrics(store, cache, passwords)? {
            registry.register(Box::new(pulled))?;
        }
        registry.register(Box::new(GuessCounts::new(limits)?))?;
        Ok(Self {
            registry,
            grpc: GrpcCalls { calls, latency },
            verdicts: Verdicts(Some(verdicts)),
        })
    }

    /// The verdict counter's handle.
    pub fn verdicts(&self) -> Verdicts {
        self.verdicts.clone()
    }

    /// The gRPC call counter's and histogram's handle.
    pub fn grpc_calls(&self) -> GrpcCalls {
        self.grpc.clone()
    }

    /// Everything, in the Prometheus text format.
    pub fn render(&self) -> prometheus::Result<String> {
        TextEncoder::new().encode_to_string(&self.registry.gather())
    }
}

/// Counts check verdicts. Cheap to clone and to call on every check.
#[derive(Clone, Default)]
pub struct Verdicts(Option<IntCounterVec>);

impl Verdicts {
    /// Counts one verdict of `rpc` (`CheckPermission`, `Authenticate`, …) with its
    /// reason code. The default handle (no server metrics) counts nothing.
    pub fn record(&self, rpc: &'static str, reason: &'static str) {
        if let Some(counter) = &self.0 {
            counter.with_label_values(&[rpc, reason]).inc();
        }
    }
}

/// Counts and times gRPC calls.
#[derive(Clone)]
pub struct GrpcCalls {
    calls: IntCounterVec,
    latency: HistogramVec,
}

impl GrpcCalls {
    /// Records one finished call of `method` (the request path).
    pub fn record(&self, method: &str, code: Code, elapsed: Duration) {
        let method = if code == Code::Unimplemented {
            UNKNOWN_METHOD
        } else {
            method
        };
        let name = usize::try_from(i32::from(code))
            .ok()
            .and_then(|i| CODE_NAMES.get(i))
            .unwrap_or(&"UNKNOWN");
        self.calls.with_label_values(&[method, name]).inc();
        self.latency
            .with_label_values(&[method])
            .observe(elapsed.as_secs_f64());
    }
}

/// Reads one value at scrape time.
type Read = Box<dyn Fn() -> f64 + Send + Sync>;

/// A metric without labels whose value is read from its owner at scrape time.
struct Pulled {
    desc: Desc,
    kind: MetricType,
    read: Read,
}

impl Pulled {
    fn new(name: &str, help: &str, kind: MetricType, read: Read) -> prometheus::Result<Self> {
        let desc = Desc::new(name.into(), help.into(), Vec::new(), Default::default())?;
        Ok(Self { desc, kind, read })
    }
}

impl Collector for Pulled {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.desc]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let value = (self.read)();
        let mut metric = proto::Metric::default();
        if self.kind == MetricType::COUNTER {
            let mut counter = proto::Counter::default();
            counter.set_value(value);
            metric.set_counter(counter);
        } else {
            let mut gauge = proto::Gauge::default();
            gauge.set_value(value);
            metric.set_gauge(gauge);
        }
        let mut family = MetricFamily::default();
        family.set_name(self.desc.fq_name.clone());
        family.set_help(self.desc.help.clone());
        family.set_field_type(self.kind);
        family.set_metric(vec![metric]);
        vec![family]
    }
}

/// The guessing limits' counts by secret kind, read at scrape time.
struct GuessCounts {
    limits: Arc<GuessLimits>,
    limited: Desc,
    tripped: Desc,
}

impl GuessCounts {
    fn new(limits: Arc<GuessLimits>) -> prometheus::Result<Self> {
        let desc = |name: &str, help: &str| {
            Desc::new(
                name.into(),
                help.into(),
                vec!["secret".into()],
                Default::default(),
            )
        };
        Ok(Self {
            limits,
            limited: desc(
                "identityd_guess_limited_total",
                "Attempts refused unchecked by a guessing limit, by secret kind.",
            )?,
            tripped: desc(
                "identityd_guess_limit_trips_total",
                "Guessing limits tripped (blocks started) on this replica, by secret kind.",
            )?,
        })
    }
}

impl Collector for GuessCounts {
    fn desc(&self) -> Vec<&Desc> {
        vec![&self.limited, &self.tripped]
    }

    fn collect(&self) -> Vec<MetricFamily> {
        let stats = self.limits.stats();
        let kinds = [Guessed::Password, Guessed::ClientSecret, Guessed::ApiToken];
        let family = |desc: &Desc, read: &dyn Fn(Guessed) -> u64| {
            let metrics = kinds
                .iter()
                .map(|&secret| {
                    let mut label = proto::LabelPair::default();
                    label.set_name("secret".into());
                    label.set_value(secret.as_str().into());
                    let mut counter = proto::Counter::default();
                    counter.set_value(read(secret) as f64);
                    let mut metric = proto::Metric::default();
                    metric.set_label(vec![label]);
                    metric.set_counter(counter);
                    metric
                })
                .collect();
            let mut family = MetricFamily::default();
            family.set_name(desc.fq_name.clone());
            family.set_help(desc.help.clone());
            family.set_field_type(MetricType::COUNTER);
            family.set_metric(metrics);
            family
        };
        vec![
            family(&self.limited, &|s| stats.limited(s)),
            family(&self.tripped, &|s| stats.tripped(s)),
        ]
    }
}

/// Cache, argon2 and connection-pool values, read at scrape time.
fn pulled_metrics(
    store: Arc<dyn Store>,
    cache: Arc<CheckCache>,
    passwords: Arc<Passwords>,
) -> prometheus::Result<Vec<Pulled>> {
    use MetricType::{COUNTER, GAUGE};
    let (c1, c2, c3) = (cache.clone(), cache.clone(), cache);
    let (p1, p2) = (passwords.clone(), passwords);
    let (s1, s2, s3) = (store.clone(), store.clone(), store);
    Ok(vec![
        Pulled::new(
            "identityd_cache_hits_total",
            "Credential lookups answered from the check cache.",
            COUNTER,
            Box::new(move || c1.stats().hits as f64),
        )?,
        Pulled::new(
            "identityd_cache_misses_total",
            "Credential lookups that went to the database.",
            COUNTER,
            Box::new(move || c2.stats().misses as f64),
        )?,
        Pulled::new(
            "identityd_cache_entries",
            "Credentials in the check cache (approximate).",
            GAUGE,
            Box::new(move || c3.len() as f64),
        )?,
        Pulled::new(
            "identityd_argon2_running",
            "Password hashes being computed.",
            GAUGE,
            Box::new(move || p1.in_flight() as f64),
        )?,
        Pulled::new(
            "identityd_argon2_waiting",
            "Password checks waiting for a hashing slot.",
            GAUGE,
            Box::new(move || p2.queue_depth() as f64),
        )?,
        Pulled::new(
            "identityd_db_pool_connections",
            "Database connections open (idle or in use).",
            GAUGE,
            Box::new(move || f64::from(s1.pool_status().open)),
        )?,
        Pulled::new(
            "identityd_db_pool_idle_connections",
            "Open database connections waiting for work.",
            GAUGE,
            Box::new(move || f64::from(s2.pool_status().idle)),
        )?,
        Pulled::new(
            "identityd_db_pool_max_connections",
            "Most database connections the pool may open.",
            GAUGE,
            Box::new(move || f64::from(s3.pool_status().max)),
        )?,
    ])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_code_has_its_name() {
        assert_eq!(CODE_NAMES[Code::Ok as usize], "OK");
        assert_eq!(
            CODE_NAMES[Code::Unauthenticated as usize],
            "UNAUTHENTICATED"
        );
        assert_eq!(CODE_NAMES[Code::Unimplemented as usize], "UNIMPLEMENTED");
    }

    #[test]
    fn detached_verdicts_count_nothing() {
        Verdicts::default().record("CheckPermission", "ok");
    }
}
