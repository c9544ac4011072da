//! Configuration: defaults, overridden by `IDENTITYD_*` environment variables, overridden
//! by flags. Everything is validated before a socket is bound.

use clap::{Args, Parser, Subcommand, ValueEnum};
use secrecy::{ExposeSecret, SecretString};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

/// identityd: authenticates credentials and answers allow, 401 or 403.
#[derive(Debug, Parser)]
#[command(name = "identityd", version, about)]
pub struct Cli {
    /// What to do; `serve` when omitted.
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
#[allow(
    clippy::large_enum_variant,
    reason = "built once at start; boxing would buy nothing"
)]
pub enum Command {
    /// Run the gRPC server (migrating and bootstrapping first).
    Serve(ServeConfig),
    /// Apply database migrations and exit.
    Migrate(DatabaseConfig),
    /// Bootstrap and recovery tasks that work directly on the database.
    Admin(AdminCommand),
    /// Drive a running server with load and print requests per second and latency.
    Loadgen(crate::loadgen::LoadgenConfig),
}

/// `identityd admin …`.
#[derive(Debug, Args)]
pub struct AdminCommand {
    /// Database to work on.
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// The task.
    #[command(subcommand)]
    pub task: AdminTask,
}

/// Admin tasks.
#[derive(Debug, Subcommand)]
pub enum AdminTask {
    /// On an empty database, create a staff user with the built-in `admin` role and API
    /// access, and print its credentials once. Does nothing if any user exists.
    Bootstrap {
        /// Username of the admin to create.
        #[arg(long, default_value = crate::service::bootstrap::DEFAULT_ADMIN_USERNAME)]
        username: String,
    },
    /// Replace a user's API token and print the new one (recovery for a lost admin
    /// token). Running servers stop accepting the old token within the cache TTL.
    RegenerateToken {
        /// Whose token to replace.
        #[arg(long)]
        username: String,
    },
    /// Clear a guessing limit, ending its block on every running server (recovery when
    /// an attacker keeps an account, or the admin, blocked). As Admin.ClearGuessLimit.
    ClearLimit {
        /// `password`, `client_secret` or `api_token`.
        #[arg(long)]
        secret: String,
        /// Whose secret: a username, a `#pseudonym` as listed, or a client id.
        #[arg(long)]
        subject: String,
        /// A client address or a listed /64; without it, the counter over every source.
        #[arg(long, default_value = "")]
        source: String,
    },
}

/// Where the data lives.
#[derive(Debug, Clone, Args)]
pub struct DatabaseConfig {
    /// `sqlite://FILE` (created if missing) or `postgres://USER@HOST:PORT/DB`.
    #[arg(
        long,
        env = "IDENTITYD_DATABASE_URL",
        default_value = "sqlite://identityd.db",
        value_parser = DatabaseUrlParser
    )]
    pub database_url: DatabaseUrl,
    /// Most database connections held open.
    #[arg(long, env = "IDENTITYD_DB_MAX_CONNECTIONS", default_value_t = 16,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub db_max_connections: u32,
    /// Seconds to wait for a free database connection before failing a call.
    #[arg(long, env = "IDENTITYD_DB_ACQUIRE_TIMEOUT_SECS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=300))]
    pub db_acquire_timeout_secs: u64,
}

impl DatabaseConfig {
    /// The pool settings these options describe.
    pub fn pool_settings(&self) -> crate::store::PoolSettings {
        crate::store::PoolSettings {
            max_connections: self.db_max_connections,
            acquire_timeout: Duration::from_secs(self.db_acquire_timeout_secs),
        }
    }

    /// Settings for a database URL with every other option at its default.
    pub fn for_url(url: &str) -> Result<Self, String> {
        Ok(Self {
            database_url: url.parse()?,
            db_max_connections: 16,
            db_acquire_timeout_secs: 5,
        })
    }
}

/// `identityd serve`.
#[derive(Debug, Clone, Args)]
pub struct ServeConfig {
    /// Database.
    #[command(flatten)]
    pub database: DatabaseConfig,
    /// Address for gRPC.
    #[arg(long, env = "IDENTITYD_LISTEN", default_value = "127.0.0.1:50051")]
    pub listen: SocketAddr,
    /// Address for the operator HTTP port (/metrics, /healthz, /readyz,
    /// /.well-known/jwks.json); `off` or empty turns it off.
    #[arg(long, env = "IDENTITYD_HTTP_LISTEN", default_value = "127.0.0.1:9090")]
    pub http_listen: crate::ops::HttpListen,
    /// Realm named in `WWW-Authenticate` challenges.
    #[arg(long, env = "IDENTITYD_REALM", default_value = "identityd", value_parser = parse_realm)]
    pub realm: String,
    /// Most credentials kept in the check cache.
    #[arg(long, env = "IDENTITYD_CACHE_CAPACITY", default_value_t = 100_000,
          value_parser = clap::value_parser!(u64).range(1..=100_000_000))]
    pub cache_capacity: u64,
    /// Seconds a cached credential is trusted before it is read again; bounds how long
    /// another replica's revocation can go unseen.
    #[arg(long, env = "IDENTITYD_CACHE_TTL_SECS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub cache_ttl_secs: u64,
    /// Do not create the first admin on an empty database.
    #[arg(long, env = "IDENTITYD_NO_BOOTSTRAP")]
    pub no_bootstrap: bool,
    /// The API token the first admin gets on an empty database, instead of a generated
    /// one printed on standard output (which a container platform would keep in its
    /// logs). `idt_api_` and 43 characters of A-Z a-z 0-9 - _, at least 256 random bits.
    /// Prefer the environment variable: flags are visible to other users of the machine.
    #[arg(long, env = "IDENTITYD_BOOTSTRAP_API_TOKEN", hide_env_values = true)]
    pub bootstrap_api_token: Option<SecretString>,
    /// Do not apply migrations; refuse to start unless the database already has every
    /// migration of this release (applied by `identityd migrate`, e.g. a deployment's
    /// migration job). A database with newer migrations is served.
    #[arg(long, env = "IDENTITYD_NO_MIGRATE")]
    pub no_migrate: bool,
    /// Tokens: lifetimes, issuer and audience.
    #[command(flatten)]
    pub tokens: TokenConfig,
    /// The master key that seals signing keys.
    #[command(flatten)]
    pub master_key: MasterKeyConfig,
    /// Password hashing.
    #[command(flatten)]
    pub argon2: Argon2Config,
    /// A scope catalog file, applied at startup when it changed since it was last
    /// applied; without it, the stored (or built-in) catalog.
    #[arg(long, env = "IDENTITYD_SCOPE_CATALOG")]
    pub scope_catalog: Option<std::path::PathBuf>,
    /// A route policy file, applied at startup when it changed since it was last
    /// applied; without it, the stored (or built-in) policy.
    #[arg(long, env = "IDENTITYD_ROUTE_POLICY")]
    pub route_policy: Option<std::path::PathBuf>,
    /// Envoy ext_authz: identity headers and the credential header.
    #[command(flatten)]
    pub ext_authz: crate::api::ext_authz::ExtAuthzConfig,
    /// Guessing limits on passwords, client secrets and API tokens.
    #[command(flatten)]
    pub limits: LimitConfig,
    /// Days audit events are kept before they are purged; 0 keeps them forever.
    #[arg(long, env = "IDENTITYD_AUDIT_RETENTION_DAYS", default_value_t = 365,
          value_parser = clap::value_parser!(u32).range(0..=36_500))]
    pub audit_retention_days: u32,
    /// TLS for gRPC; plaintext without a certificate.
    #[command(flatten)]
    pub tls: crate::tls::TlsConfig,
    /// Log format.
    #[arg(long, env = "IDENTITYD_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

impl ServeConfig {
    /// Defaults for a database URL, listening on an ephemeral loopback port.
    pub fn for_url(url: &str) -> Result<Self, String> {
        Ok(Self {
            database: DatabaseConfig::for_url(url)?,
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http_listen: crate::ops::HttpListen(Some(SocketAddr::from(([127, 0, 0, 1], 0)))),
            realm: "identityd".into(),
            cache_capacity: 100_000,
            cache_ttl_secs: 30,
            no_bootstrap: false,
            bootstrap_api_token: None,
            no_migrate: false,
            tokens: TokenConfig::default(),
            master_key: MasterKeyConfig::default(),
            argon2: Argon2Config::default(),
            scope_catalog: None,
            route_policy: None,
            ext_authz: crate::api::ext_authz::ExtAuthzConfig::default(),
            limits: LimitConfig::default(),
            audit_retention_days: 365,
            tls: crate::tls::TlsConfig::default(),
            log_format: LogFormat::Text,
        })
    }
}

/// Access and refresh tokens.
#[derive(Debug, Clone, Args)]
pub struct TokenConfig {
    /// Seconds an access token is valid.
    #[arg(long, env = "IDENTITYD_ACCESS_TOKEN_TTL_SECS", default_value_t = 600,
          value_parser = clap::value_parser!(i64).range(60..=86_400))]
    pub access_token_ttl_secs: i64,
    /// Seconds a login session lasts, however often its refresh token is rotated.
    #[arg(long, env = "IDENTITYD_REFRESH_TOKEN_TTL_SECS", default_value_t = 30 * 86_400,
          value_parser = clap::value_parser!(i64).range(300..=365 * 86_400))]
    pub refresh_token_ttl_secs: i64,
    /// `iss` of issued tokens, and the only issuer accepted.
    #[arg(long, env = "IDENTITYD_ISSUER", default_value = "identityd", value_parser = parse_claim)]
    pub issuer: String,
    /// `aud` of issued tokens, and the only audience accepted.
    #[arg(long, env = "IDENTITYD_AUDIENCE", default_value = "identityd", value_parser = parse_claim)]
    pub audience: String,
}

impl Default for TokenConfig {
    fn default() -> Self {
        Self {
            access_token_ttl_secs: 600,
            refresh_token_ttl_secs: 30 * 86_400,
            issuer: "identityd".into(),
            audience: "identityd".into(),
        }
    }
}

/// Guessing limits: after `failures` wrong guesses within a window, attempts are refused
/// unchecked for a block that grows with each trip (from the first delay, doubling, up to
/// the longest) and lasts at least to the end of the window. Two counters: per account
/// (every source) and per account and client address. The defaults allow at most 100
/// failures per account in any hour (OWASP ASVS 2.2.1).
#[derive(Debug, Clone, Args)]
pub struct LimitConfig {
    /// Failures per account (or client id, or Basic username) in one window.
    #[arg(long, env = "IDENTITYD_LIMIT_ACCOUNT_FAILURES", default_value_t = 50,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit_account_failures: u32,
    /// Seconds of the per-account window.
    #[arg(long, env = "IDENTITYD_LIMIT_ACCOUNT_WINDOW_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(i64).range(1..=604_800))]
    pub limit_account_window_secs: i64,
    /// Failures per account and client address in one window.
    #[arg(long, env = "IDENTITYD_LIMIT_SOURCE_FAILURES", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=100_000))]
    pub limit_source_failures: u32,
    /// Seconds of the per-address window.
    #[arg(long, env = "IDENTITYD_LIMIT_SOURCE_WINDOW_SECS", default_value_t = 900,
          value_parser = clap::value_parser!(i64).range(1..=604_800))]
    pub limit_source_window_secs: i64,
    /// Seconds of the first block; each further trip doubles it.
    #[arg(long, env = "IDENTITYD_LIMIT_FIRST_DELAY_SECS", default_value_t = 60,
          value_parser = clap::value_parser!(i64).range(1..=604_800))]
    pub limit_first_delay_secs: i64,
    /// Longest block, in seconds.
    #[arg(long, env = "IDENTITYD_LIMIT_MAX_DELAY_SECS", default_value_t = 3600,
          value_parser = clap::value_parser!(i64).range(1..=604_800))]
    pub limit_max_delay_secs: i64,
}

impl Default for LimitConfig {
    fn default() -> Self {
        Self {
            limit_account_failures: 50,
            limit_account_window_secs: 3600,
            limit_source_failures: 10,
            limit_source_window_secs: 900,
            limit_first_delay_secs: 60,
            limit_max_delay_secs: 3600,
        }
    }
}

impl LimitConfig {
    /// Refuses settings that contradict each other.
    pub fn validate(&self) -> Result<(), String> {
        if self.limit_max_delay_secs < self.limit_first_delay_secs {
            return Err(
                "--limit-max-delay-secs (IDENTITYD_LIMIT_MAX_DELAY_SECS) must be at least \
                 --limit-first-delay-secs (IDENTITYD_LIMIT_FIRST_DELAY_SECS)"
                    .into(),
            );
        }
        Ok(())
    }

    /// The rules of the two counters.
    pub fn settings(&self) -> crate::service::limits::LimitSettings {
        use crate::domain::guessing::Rules;
        let rules = |failures, window| Rules {
            failures,
            window,
            first_delay: self.limit_first_delay_secs,
            max_delay: self.limit_max_delay_secs,
        };
        crate::service::limits::LimitSettings {
            account: rules(self.limit_account_failures, self.limit_account_window_secs),
            source: rules(self.limit_source_failures, self.limit_source_window_secs),
        }
    }
}

/// Where the master key comes from. With neither option, a SQLite database gets a key
/// generated into `<database file>.master-key`; PostgreSQL refuses to start, since every
/// replica must share one key.
#[derive(Debug, Clone, Default, Args)]
pub struct MasterKeyConfig {
    /// The master key: 32 bytes in base64 (`openssl rand -base64 32`). Prefer the
    /// environment variable, or a file: flags are visible to other users of the machine.
    #[arg(long, env = "IDENTITYD_MASTER_KEY", hide_env_values = true)]
    pub master_key: Option<SecretString>,
    /// A file holding the master key in base64 (e.g. a mounted Kubernetes secret).
    #[arg(long, env = "IDENTITYD_MASTER_KEY_FILE", conflicts_with = "master_key")]
    pub master_key_file: Option<std::path::PathBuf>,
}

/// argon2id cost for passwords. The defaults are OWASP's recommendation.
#[derive(Debug, Clone, Args)]
pub struct Argon2Config {
    /// Memory per hash, KiB.
    #[arg(long, env = "IDENTITYD_ARGON2_MEMORY_KIB", default_value_t = 19_456,
          value_parser = clap::value_parser!(u32).range(8..=4_194_304))]
    pub argon2_memory_kib: u32,
    /// Passes over memory.
    #[arg(long, env = "IDENTITYD_ARGON2_ITERATIONS", default_value_t = 2,
          value_parser = clap::value_parser!(u32).range(1..=100))]
    pub argon2_iterations: u32,
    /// Lanes per hash.
    #[arg(long, env = "IDENTITYD_ARGON2_PARALLELISM", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..=16))]
    pub argon2_parallelism: u32,
    /// Hashes computed at once; further logins wait their turn. 0 means one per CPU.
    #[arg(long, env = "IDENTITYD_ARGON2_CONCURRENCY", default_value_t = 0,
          value_parser = clap::value_parser!(u32).range(0..=1024))]
    pub argon2_concurrency: u32,
}

impl Default for Argon2Config {
    fn default() -> Self {
        Self {
            argon2_memory_kib: 19_456,
            argon2_iterations: 2,
            argon2_parallelism: 1,
            argon2_concurrency: 0,
        }
    }
}

impl Argon2Config {
    /// The cost parameters.
    pub fn cost(&self) -> crate::service::passwords::HashCost {
        crate::service::passwords::HashCost {
            memory_kib: self.argon2_memory_kib,
            iterations: self.argon2_iterations,
            parallelism: self.argon2_parallelism,
        }
    }

    /// Hashes at once.
    pub fn concurrency(&self) -> usize {
        match self.argon2_concurrency {
            0 => std::thread::available_parallelism().map_or(2, usize::from),
            n => n as usize,
        }
    }
}

/// Issuer and audience are compared exactly; keep them printable and short.
fn parse_claim(s: &str) -> Result<String, String> {
    if !s.is_empty() && s.len() <= 256 && s.chars().all(|c| c.is_ascii_graphic()) {
        Ok(s.to_owned())
    } else {
        Err("must be 1 to 256 printable ASCII characters without spaces".into())
    }
}

/// How logs are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A database URL. `Debug` and `Display` hide its password.
#[derive(Clone)]
pub struct DatabaseUrl(SecretString);

impl DatabaseUrl {
    /// The full URL, password included: only for connecting.
    pub fn expose(&self) -> &str {
        self.0.expose_secret()
    }
}

/// Parses `--database-url` without ever echoing it: clap's own refusals quote the value,
/// and this one may hold a password.
#[derive(Clone, Copy)]
struct DatabaseUrlParser;

impl clap::builder::TypedValueParser for DatabaseUrlParser {
    type Value = DatabaseUrl;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<DatabaseUrl, clap::Error> {
        let parsed = match value.to_str() {
            Some(text) => text.parse(),
            None => Err("the database URL is not UTF-8".to_owned()),
        };
        parsed.map_err(|reason| {
            let name = arg.map_or_else(|| "--database-url".to_owned(), ToString::to_string);
            clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("invalid value for {name}: {reason}\n"),
            )
            .with_cmd(cmd)
        })
    }
}

impl FromStr for DatabaseUrl {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let scheme = s.split_once(':').map(|(scheme, _)| scheme);
        if !matches!(scheme, Some("sqlite" | "postgres" | "postgresql")) {
            return Err(
                "the database URL must start with sqlite:, postgres: or postgresql:".into(),
            );
        }
        if s.chars().any(char::is_control) {
            return Err("the database URL contains control characters".into());
        }
        Ok(Self(SecretString::from(s)))
    }
}

impl fmt::Display for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match url::Url::parse(self.expose()) {
            Ok(mut u) if u.password().is_some() => {
                // Only fails for URLs that cannot have a password, which this one has.
                let _ = u.set_password(Some("***"));
                write!(f, "{u}")
            }
            Ok(u) => write!(f, "{u}"),
            Err(_) => f.write_str("<unparsable database URL>"),
        }
    }
}

impl fmt::Debug for DatabaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DatabaseUrl({self})")
    }
}

/// A realm is quoted in challenges, so it must not need escaping.
fn parse_realm(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 64
        && s.chars()
            .all(|c| c.is_ascii_graphic() && c != '"' && c != '\\' || c == ' ');
    if ok {
        Ok(s.to_owned())
    } else {
        Err(
            "the realm must be 1 to 64 printable ASCII characters without quotes or backslashes"
                .into(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_url_hides_password() {
        let url: DatabaseUrl = "postgres://app:hunter2@db:5432/identity".parse().unwrap();
        assert!(!format!("{url:?} {url}").contains("hunter2"));
        assert!(format!("{url}").contains("db:5432"));
        assert!("mysql://x".parse::<DatabaseUrl>().is_err());
    }

    #[test]
    fn realms() {
        assert!(parse_realm("identityd prod").is_ok());
        for bad in ["", "a\"b", "a\\b", "é", "a\nb"] {
            assert!(parse_realm(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn flags_and_defaults() {
        let cli = Cli::try_parse_from(["identityd", "serve", "--cache-ttl-secs", "5"]).unwrap();
        let Some(Command::Serve(cfg)) = cli.command else {
            panic!("not serve")
        };
        assert_eq!(cfg.cache_ttl_secs, 5);
        assert!(Cli::try_parse_from(["identityd", "serve", "--cache-ttl-secs", "0"]).is_err());
        assert!(Cli::try_parse_from(["identityd", "serve", "--listen", "nope"]).is_err());
        assert!(
            Cli::try_parse_from(["identityd", "serve", "--database-url", "mysql://x"]).is_err()
        );
    }
}
