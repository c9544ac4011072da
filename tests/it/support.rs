//! Test support: a real server per test, in-process on `127.0.0.1:0`, over a fresh
//! database of either backend, and small helpers to talk to it.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use identityd::api::pb::{
    self, CheckPermissionResponse, admin_client::AdminClient, identity_client::IdentityClient,
};
use identityd::config::ServeConfig;
use identityd::domain::clock::ManualClock;
use identityd::server;
use identityd::service::cache::CheckCache;
use identityd::service::keys::KeyRing;
use secrecy::ExposeSecret;
use sqlx::Connection;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tonic::transport::Channel;
use tonic::{Code, Request};
pub use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// The database backends every behaviour test runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// Where the PostgreSQL tests create their throw-away databases.
pub fn postgres_admin_url() -> String {
    std::env::var("IDENTITYD_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// A fresh, empty database; dropped (PostgreSQL) or deleted (SQLite) with the guard.
pub struct TestDb {
    pub url: String,
    pg_name: Option<String>,
    _dir: Option<tempfile::TempDir>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("temp dir");
                let url = format!("sqlite://{}", dir.path().join("identityd.db").display());
                Self {
                    url,
                    pg_name: None,
                    _dir: Some(dir),
                }
            }
            Backend::Postgres => {
                let admin = postgres_admin_url();
                // The process id lets a later run tell a leftover (its process gone)
                // from a database another run is using (see `.ci/run`).
                let name = format!(
                    "identityd_t_{}_{}",
                    std::process::id(),
                    uuid::Uuid::new_v4().simple()
                );
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .expect("PostgreSQL must be reachable for the PostgreSQL tests (IDENTITYD_TEST_POSTGRES_URL)");
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .expect("create test database");
                let base = admin.rsplit_once('/').expect("URL with a database").0;
                Self {
                    url: format!("{base}/{name}"),
                    pg_name: Some(name),
                    _dir: None,
                }
            }
        }
    }
}

impl TestDb {
    /// Runs one statement on the database directly, as an operator would.
    pub async fn execute(&self, statement: &str) {
        let statement = sqlx::AssertSqlSafe(statement.to_owned());
        if self.pg_name.is_some() {
            let mut conn = sqlx::PgConnection::connect(&self.url)
                .await
                .expect("connect PostgreSQL");
            sqlx::query(statement).execute(&mut conn).await.map(drop)
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url)
                .await
                .expect("open SQLite");
            sqlx::query(statement).execute(&mut conn).await.map(drop)
        }
        .expect("statement");
    }

    /// Runs one query that answers a single integer (a `COUNT(*)`), directly.
    pub async fn count(&self, query: &str) -> i64 {
        let query = sqlx::AssertSqlSafe(query.to_owned());
        if self.pg_name.is_some() {
            let mut conn = sqlx::PgConnection::connect(&self.url)
                .await
                .expect("connect PostgreSQL");
            sqlx::query_scalar(query).fetch_one(&mut conn).await
        } else {
            let mut conn = sqlx::SqliteConnection::connect(&self.url)
                .await
                .expect("open SQLite");
            sqlx::query_scalar(query).fetch_one(&mut conn).await
        }
        .expect("query")
    }
}

/// Makes the database look one migration older than this build.
pub const FORGET_LAST_MIGRATION: &str =
    "DELETE FROM _sqlx_migrations WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)";

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.pg_name.take() else {
            return;
        };
        // Async work cannot run in Drop; a short-lived runtime on its own thread can.
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            rt.block_on(async {
                let mut conn = sqlx::PgConnection::connect(&postgres_admin_url()).await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
                )))
                .execute(&mut conn)
                .await?;
                Ok::<_, sqlx::Error>(())
            })
            .map_err(std::io::Error::other)
        })
        .join();
    }
}

/// The master key every test server on a database uses (PostgreSQL needs one given).
pub const TEST_MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// The default configuration with cheap password hashing: argon2 at OWASP cost would
/// dominate the run time of the tests.
pub fn test_config(url: &str) -> ServeConfig {
    let mut config = ServeConfig::for_url(url).expect("config");
    config.master_key.master_key = Some(TEST_MASTER_KEY.into());
    config.argon2.argon2_memory_kib = 64;
    config.argon2.argon2_iterations = 1;
    config
}

/// A running server and the bootstrap admin's `authorization` value.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The operator HTTP port.
    pub http_addr: SocketAddr,
    pub admin_auth: String,
    pub cache: Arc<CheckCache>,
    pub keys: Arc<KeyRing>,
    pub clock: ManualClock,
    pub db: TestDb,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(backend: Backend) -> Self {
        Self::start_with(backend, |_| {}).await
    }

    /// Starts a server after `tweak` has adjusted the default test configuration.
    pub async fn start_with(backend: Backend, tweak: impl FnOnce(&mut ServeConfig)) -> Self {
        let server = Self::start_on(TestDb::new(backend).await, tweak).await;
        assert!(
            !server.admin_auth.is_empty(),
            "bootstrap admin on an empty database"
        );
        server
    }

    /// Starts a server on an existing database; `admin_auth` is empty unless this start
    /// bootstrapped the first admin.
    pub async fn start_on(db: TestDb, tweak: impl FnOnce(&mut ServeConfig)) -> Self {
        let mut config = test_config(&db.url);
        tweak(&mut config);
        let clock = ManualClock::at(1_800_000_000);
        let mut prepared = server::prepare(&config, Arc::new(clock.clone()))
            .await
            .expect("prepare");
        let admin_auth = prepared
            .bootstrap
            .take()
            .map(|creds| basic(&creds.username, creds.api_token.expose_secret()))
            .unwrap_or_default();
        let cache = prepared.cache();
        let keys = prepared.keys();
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind HTTP");
        let http_addr = http.local_addr().expect("HTTP addr");
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            prepared
                .serve_with_http(listener, Some(http), async {
                    let _ = rx.await;
                })
                .await
                .expect("serve");
        });
        Self {
            addr,
            http_addr,
            admin_auth,
            cache,
            keys,
            clock,
            db,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn channel(&self) -> Channel {
        Channel::from_shared(self.url())
            .expect("url")
            .connect()
            .await
            .expect("connect")
    }

    pub async fn identity(&self) -> IdentityClient<Channel> {
        IdentityClient::new(self.channel().await)
    }

    pub async fn admin(&self) -> AdminClient<Channel> {
        AdminClient::new(self.channel().await)
    }

    /// Starts a second server on this server's database, which this one keeps using; it
    /// acts with the same admin credentials. The database now goes with the new one.
    pub async fn replica(&mut self, backend: Backend) -> TestServer {
        let db = std::mem::replace(&mut self.db, TestDb::new(backend).await);
        let mut other = Self::start_on(db, |_| {}).await;
        other.admin_auth = self.admin_auth.clone();
        other
    }

    /// Stops the server, waiting for in-flight calls to drain.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.expect("server task");
        }
    }

    /// Creates a role, a user holding it, turns API access on and returns the user's
    /// Basic `authorization` value.
    pub async fn user_with_role(&self, username: &str, role: &str, permissions: &[&str]) -> String {
        let mut admin = self.admin().await;
        let perms = permissions.iter().map(|p| p.to_string()).collect();
        admin
            .create_role(as_admin(
                self,
                pb::CreateRoleRequest {
                    name: role.into(),
                    description: String::new(),
                    permissions: perms,
                },
            ))
            .await
            .expect("create role");
        self.user_with_roles(username, &[role], false).await
    }

    /// Creates a user with existing roles and API access; returns its Basic value.
    pub async fn user_with_roles(&self, username: &str, roles: &[&str], is_staff: bool) -> String {
        let mut admin = self.admin().await;
        admin
            .create_user(as_admin(
                self,
                pb::CreateUserRequest {
                    username: username.into(),
                    email: String::new(),
                    is_staff,
                    roles: roles.iter().map(|r| r.to_string()).collect(),
                    ..Default::default()
                },
            ))
            .await
            .expect("create user");
        basic(username, &self.enable_api_access(username).await)
    }

    /// Turns a user's API access on; returns its new API token.
    pub async fn enable_api_access(&self, username: &str) -> String {
        self.admin()
            .await
            .set_api_access(as_admin(
                self,
                pb::SetApiAccessRequest {
                    username: username.into(),
                    enabled: true,
                },
            ))
            .await
            .expect("API access on")
            .into_inner()
            .api_token
    }

    /// CheckPermission with one credential and some permissions.
    pub async fn check(
        &self,
        authorization: &str,
        permissions: &[&str],
    ) -> CheckPermissionResponse {
        self.identity()
            .await
            .check_permission(pb::CheckPermissionRequest {
                authorization: authorization.into(),
                permissions: permissions.iter().map(|p| p.to_string()).collect(),
                ..Default::default()
            })
            .await
            .expect("CheckPermission answers denials in the body")
            .into_inner()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Polls `grpc.health.v1` at `url` for `service` until it reports `expected` or
/// `within` has passed; returns the last status seen.
pub async fn await_health(
    url: &str,
    service: &str,
    expected: ServingStatus,
    within: std::time::Duration,
) -> ServingStatus {
    let channel = Channel::from_shared(url.to_owned())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut health = HealthClient::new(channel);
    let deadline = tokio::time::Instant::now() + within;
    loop {
        let status = health
            .check(HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health")
            .into_inner()
            .status();
        if status == expected || tokio::time::Instant::now() >= deadline {
            return status;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

/// `Basic base64(user:token)`.
pub fn basic(user: &str, token: &str) -> String {
    format!("Basic {}", STANDARD.encode(format!("{user}:{token}")))
}

/// A request carrying `authorization` metadata.
pub fn authed<T>(authorization: &str, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request.metadata_mut().insert(
        "authorization",
        authorization.parse().expect("ASCII metadata"),
    );
    request
}

/// A request carrying the bootstrap admin's credentials.
pub fn as_admin<T>(server: &TestServer, message: T) -> Request<T> {
    authed(&server.admin_auth, message)
}

/// Calls one Admin RPC with `authorization` (`&server.admin_auth` for the bootstrap
/// admin); returns the response's message. `call` picks the RPC:
/// `async |admin, request| admin.get_user(request).await`.
pub async fn admin_call<Req, Resp>(
    server: &TestServer,
    authorization: &str,
    request: Req,
    call: impl AsyncFnOnce(
        &mut AdminClient<Channel>,
        Request<Req>,
    ) -> Result<tonic::Response<Resp>, tonic::Status>,
) -> Result<Resp, tonic::Status> {
    let mut admin = server.admin().await;
    let response = call(&mut admin, authed(authorization, request)).await?;
    Ok(response.into_inner())
}

/// Admin.ListGuessLimits of `secret` and `subject` (empty: every subject), as the
/// bootstrap admin.
pub async fn guess_limits(server: &TestServer, secret: &str, subject: &str) -> Vec<pb::GuessLimit> {
    let request = pb::ListGuessLimitsRequest {
        secret: secret.into(),
        subject: subject.into(),
        page_size: 1000,
    };
    admin_call(server, &server.admin_auth, request, async |a, r| {
        a.list_guess_limits(r).await
    })
    .await
    .expect("ListGuessLimits")
    .limits
}

/// Identity.RegenerateApiToken of `username` as the bootstrap admin.
pub async fn regenerate_api_token(
    server: &TestServer,
    username: &str,
) -> Result<pb::RegenerateApiTokenResponse, tonic::Status> {
    let request = pb::RegenerateApiTokenRequest {
        username: username.into(),
    };
    let mut identity = server.identity().await;
    let response = identity
        .regenerate_api_token(as_admin(server, request))
        .await?;
    Ok(response.into_inner())
}

/// Asserts a gRPC error's code and that its message contains `needle`.
#[track_caller]
pub fn assert_status<T: std::fmt::Debug>(
    result: Result<T, tonic::Status>,
    code: Code,
    needle: &str,
) {
    match result {
        Ok(v) => panic!("expected {code:?}, got Ok({v:?})"),
        Err(s) => {
            assert_eq!(s.code(), code, "message: {}", s.message());
            assert!(
                s.message().contains(needle),
                "{:?} does not contain {needle:?}",
                s.message()
            );
        }
    }
}

/// Asserts verdict, HTTP status and reason of a check.
#[track_caller]
pub fn assert_verdict(resp: &CheckPermissionResponse, status: u32, reason: &str) {
    assert_eq!(
        (resp.http_status, resp.reason.as_str()),
        (status, reason),
        "{resp:?}"
    );
    let verdict = match status {
        200 => pb::Verdict::Allow,
        401 => pb::Verdict::Unauthenticated,
        _ => pb::Verdict::Forbidden,
    };
    assert_eq!(resp.verdict, i32::from(verdict), "{resp:?}");
}

/// Instantiates async behaviour tests `fn(Backend)` once per backend, in modules
/// `sqlite` and `postgres`.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Sqlite).await
                }
            )*
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name($crate::support::Backend::Postgres).await
                }
            )*
        }
    };
}
