//! A load generator: drives `CheckPermission` (or, as a baseline, the health check) at a
//! chosen concurrency for a chosen time and reports throughput and latency. This is how
//! identityd's speed is measured; see the README for the procedure.
//!
//! It only targets loopback addresses: load is never sent to another machine.

use crate::api::pb::{CheckPermissionRequest, IssueTokenRequest, identity_client::IdentityClient};
use clap::{Args, ValueEnum};
use std::time::{Duration, Instant};
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// `identityd loadgen`.
#[derive(Debug, Clone, Args)]
pub struct LoadgenConfig {
    /// Server to drive; must resolve to loopback addresses only.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    pub target: String,
    /// Which RPC to call.
    #[arg(long, value_enum, default_value_t = LoadRpc::Check)]
    pub rpc: LoadRpc,
    /// The `Authorization` value to check (e.g. `Basic …`). Prefer the environment
    /// variable: flags are visible to other users of the machine.
    #[arg(
        long,
        env = "IDENTITYD_LOADGEN_AUTHORIZATION",
        hide_env_values = true,
        default_value = ""
    )]
    pub authorization: String,
    /// Log this user in with the password grant first and check the access token it
    /// returns (a JWT) instead of `--authorization`. The password comes from
    /// `IDENTITYD_LOADGEN_PASSWORD`.
    #[arg(long)]
    pub login: Option<String>,
    /// The password for `--login`.
    #[arg(
        long,
        env = "IDENTITYD_LOADGEN_PASSWORD",
        hide_env_values = true,
        default_value = ""
    )]
    pub password: String,
    /// The scheme the `--login` access token is presented with.
    #[arg(long, value_enum, default_value_t = TokenScheme::Jwt)]
    pub login_scheme: TokenScheme,
    /// Scopes the `--login` token is issued with, space-separated; empty for none.
    #[arg(long, default_value = "")]
    pub scope: String,
    /// Permission each check asks for (repeatable).
    #[arg(long = "permission", default_value = "orders:read")]
    pub permissions: Vec<String>,
    /// Check a route instead of permissions: `METHOD PATH`, e.g. `GET /api/v1/orders/1`.
    #[arg(long)]
    pub route: Option<String>,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 32, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub concurrency: u32,
    /// HTTP/2 connections to spread the calls over.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=256))]
    pub connections: u32,
    /// Seconds to run.
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub duration_secs: u64,
}

/// The RPCs the generator can drive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LoadRpc {
    /// `identity.v1.Identity/CheckPermission` with the given credential.
    Check,
    /// `grpc.health.v1.Health/Check`: the cost of a trivial RPC, as a baseline.
    Health,
}

/// Schemes an access token can be presented with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TokenScheme {
    /// `Authorization: JWT <token>`.
    Jwt,
    /// `Authorization: Bearer <token>`.
    Bearer,
}

/// What a run measured.
#[derive(Debug, Clone)]
pub struct Report {
    /// Calls that returned a response.
    pub ok: u64,
    /// Calls that returned a gRPC error.
    pub errors: u64,
    /// Of the checks, how many were allowed.
    pub allowed: u64,
    /// Wall time of the run.
    pub elapsed: Duration,
    /// Median latency.
    pub p50: Duration,
    /// 99th percentile latency.
    pub p99: Duration,
    /// Slowest call.
    pub max: Duration,
}

impl Report {
    /// Completed calls per second.
    pub fn rps(&self) -> f64 {
        (self.ok + self.errors) as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "requests/s: {:.0}  p50: {:.3} ms  p99: {:.3} ms  max: {:.3} ms  ok: {}  allowed: {}  errors: {}  elapsed: {:.1} s",
            self.rps(),
            ms(self.p50),
            ms(self.p99),
            ms(self.max),
            self.ok,
            self.allowed,
            self.errors,
            self.elapsed.as_secs_f64()
        )
    }
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// Runs the load and prints the report.
pub async fn run(config: &LoadgenConfig) -> Result<(), Box<dyn std::error::Error>> {
    println!(
        "driving {:?} on {} with {} calls in flight over {} connections for {} s",
        config.rpc, config.target, config.concurrency, config.connections, config.duration_secs
    );
    let report = drive(config).await?;
    println!("{report}");
    Ok(())
}

/// Runs the load and returns what it measured.
pub async fn drive(config: &LoadgenConfig) -> Result<Report, Box<dyn std::error::Error>> {
    ensure_loopback(&config.target).await?;
    let endpoint = Endpoint::from_shared(config.target.clone())?.timeout(Duration::from_secs(10));
    let mut channels = Vec::new();
    for _ in 0..config.connections {
        channels.push(endpoint.connect().await?);
    }
    let mut config = config.clone();
    if let Some(username) = &config.login {
        config.authorization = login(&channels[0], username, &config).await?;
    }
    let config = &config;
    let deadline = Instant::now() + Duration::from_secs(config.duration_secs);
    let started = Instant::now();
    let mut workers = tokio::task::JoinSet::new();
    for i in 0..config.concurrency as usize {
        let channel = channels[i % channels.len()].clone();
        workers.spawn(worker(config.clone(), channel, deadline));
    }
    let mut latencies = Vec::new();
    let (mut ok, mut errors, mut allowed) = (0, 0, 0);
    while let Some(done) = workers.join_next().await {
        let w = done?;
        latencies.extend(w.latencies);
        ok += w.ok;
        errors += w.errors;
        allowed += w.allowed;
    }
    let elapsed = started.elapsed();
    latencies.sort_unstable();
    let at = |q: f64| {
        let i = ((latencies.len() as f64 - 1.0) * q).round() as usize;
        latencies.get(i).copied().unwrap_or_default()
    };
    Ok(Report {
        ok,
        errors,
        allowed,
        elapsed,
        p50: at(0.50),
        p99: at(0.99),
        max: latencies.last().copied().unwrap_or_default(),
    })
}

#[derive(Default)]
struct WorkerResult {
    latencies: Vec<Duration>,
    ok: u64,
    errors: u64,
    allowed: u64,
}

async fn worker(config: LoadgenConfig, channel: Channel, deadline: Instant) -> WorkerResult {
    let mut identity = IdentityClient::new(channel.clone());
    let mut health = HealthClient::new(channel);
    let check = match config.route.as_deref().and_then(|r| r.split_once(' ')) {
        Some((method, path)) => CheckPermissionRequest {
            authorization: config.authorization.clone(),
            method: method.to_owned(),
            path: path.to_owned(),
            ..Default::default()
        },
        None => CheckPermissionRequest {
            authorization: config.authorization.clone(),
            permissions: config.permissions.clone(),
            ..Default::default()
        },
    };
    let mut result = WorkerResult::default();
    while Instant::now() < deadline {
        let start = Instant::now();
        let outcome = match config.rpc {
            LoadRpc::Check => identity
                .check_permission(check.clone())
                .await
                .map(|r| r.get_ref().http_status == 200),
            LoadRpc::Health => health
                .check(HealthCheckRequest::default())
                .await
                .map(|_| false),
        };
        result.latencies.push(start.elapsed());
        match outcome {
            Ok(allow) => {
                result.ok += 1;
                result.allowed += u64::from(allow);
            }
            Err(_) => result.errors += 1,
        }
    }
    result
}

/// Logs in with the password grant and returns the `Authorization` value to check.
async fn login(
    channel: &Channel,
    username: &str,
    config: &LoadgenConfig,
) -> Result<String, Box<dyn std::error::Error>> {
    let issued = IdentityClient::new(channel.clone())
        .issue_token(IssueTokenRequest {
            grant_type: "password".into(),
            username: username.to_owned(),
            password: config.password.clone(),
            scope: config.scope.clone(),
            ..Default::default()
        })
        .await
        .map_err(|s| format!("login failed: {}", s.message()))?
        .into_inner();
    let scheme = match config.login_scheme {
        TokenScheme::Jwt => "JWT",
        TokenScheme::Bearer => "Bearer",
    };
    Ok(format!("{scheme} {}", issued.access_token))
}

/// Refuses any target that is not (or does not resolve only to) loopback.
async fn ensure_loopback(target: &str) -> Result<(), Box<dyn std::error::Error>> {
    let url = url::Url::parse(target)?;
    let host = url.host_str().ok_or("the target has no host")?;
    let port = url.port_or_known_default().unwrap_or(80);
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let addrs: Vec<_> = tokio::net::lookup_host((host, port)).await?.collect();
    if addrs.is_empty() || addrs.iter().any(|a| !a.ip().is_loopback()) {
        return Err(format!(
            "refusing to load {target}: only loopback addresses may be load-tested"
        )
        .into());
    }
    Ok(())
}
