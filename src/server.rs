//! Wiring: storage, caches and services into one gRPC server, with health, reflection
//! and graceful shutdown.

use crate::api::admin::AdminApi;
use crate::api::ext_authz::server::authorization_server::AuthorizationServer;
use crate::api::ext_authz::{self, ExtAuthzApi};
use crate::api::identity::IdentityApi;
use crate::api::pb::{self, admin_server::AdminServer, identity_server::IdentityServer};
use crate::config::ServeConfig;
use crate::domain::access_token::TokenPolicy;
use crate::domain::audit::Pseudonyms;
use crate::domain::clock::Clock;
use crate::master_key::{self, MasterKeyError};
use crate::ops::{self, Ops};
use crate::service::admin::AdminService;
use crate::service::authenticator::Authenticator;
use crate::service::bootstrap::{self, BootstrapCredentials, DEFAULT_ADMIN_USERNAME};
use crate::service::cache::CheckCache;
use crate::service::checks::Checker;
use crate::service::documents::{DocumentFiles, DocumentLoadError, Documents, reload_documents};
use crate::service::keys::{KeyError, KeyRing, RELOAD_INTERVAL};
use crate::service::limits::GuessLimits;
use crate::service::passwords::{PasswordError, Passwords};
use crate::service::replicas;
use crate::service::tokens::{TokenSettings, Tokens};
use crate::service::usage::{UsageRecorder, record_usage};
use crate::store::{self, Store, StoreError};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::ExposeSecret;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

/// How often health re-checks that storage is reachable.
const HEALTH_INTERVAL: Duration = Duration::from_secs(5);

/// Services reported by `grpc.health.v1`; "" stands for the whole server.
const HEALTH_SERVICES: [&str; 4] = [
    "",
    "identity.v1.Identity",
    "identity.v1.Admin",
    ext_authz::SERVICE_NAME,
];

/// Reported SERVING for as long as the server answers, whatever storage does: for
/// liveness probes, so that a database outage never restarts every replica.
pub const LIVENESS_SERVICE: &str = "liveness";

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Storage could not be opened, migrated or bootstrapped.
    #[error("storage: {0}")]
    Store(#[from] StoreError),
    /// The gRPC transport failed.
    #[error("transport: {0}")]
    Transport(#[from] tonic::transport::Error),
    /// A socket operation failed.
    #[error("socket: {0}")]
    Io(#[from] std::io::Error),
    /// The reflection service could not be built from the descriptors.
    #[error("reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// No usable master key.
    #[error("master key: {0}")]
    MasterKey(#[from] MasterKeyError),
    /// The signing keys could not be loaded.
    #[error("signing keys: {0}")]
    Keys(#[from] KeyError),
    /// The password hasher could not be set up.
    #[error("passwords: {0}")]
    Passwords(#[from] PasswordError),
    /// The metrics registry could not be set up.
    #[error("metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The scope catalog or route policy could not be loaded.
    #[error("{0}")]
    Documents(#[from] DocumentLoadError),
    /// The TLS options or certificate files are unusable.
    #[error("TLS: {0}")]
    Tls(#[from] crate::tls::TlsError),
    /// The bootstrap API token given has the wrong shape.
    #[error("{0}")]
    BootstrapToken(#[from] bootstrap::GivenTokenError),
    /// A first-admin token given, and told never to create the first admin.
    #[error(
        "IDENTITYD_BOOTSTRAP_API_TOKEN is set, and so is --no-bootstrap \
         (IDENTITYD_NO_BOOTSTRAP): set only one"
    )]
    BootstrapConflict,
    /// The guessing-limit settings contradict each other.
    #[error("{0}")]
    Limits(String),
    /// Told not to migrate, and the database lacks migrations of this release.
    #[error(
        "the database lacks migrations of this release{0}; run `identityd migrate` first, \
         or serve without --no-migrate"
    )]
    MigrationsPending(String),
}

/// How often sessions that ended are deleted.
const PURGE_INTERVAL: Duration = Duration::from_secs(3600);
/// How long ended sessions are kept before deletion: a reused refresh token of a
/// recently ended session is still recognised as reuse.
const PURGE_AFTER_SECS: i64 = 86_400;

/// A server with storage migrated and bootstrapped, ready to serve.
pub struct Prepared {
    store: Arc<dyn Store>,
    cache: Arc<CheckCache>,
    keys: Arc<KeyRing>,
    clock: Arc<dyn Clock>,
    authenticator: Arc<Authenticator>,
    checker: Arc<Checker>,
    documents: Arc<Documents>,
    admin: Arc<AdminService>,
    tokens: Arc<Tokens>,
    ops: Ops,
    usage: Arc<UsageRecorder>,
    replicas: Option<replicas::Link>,
    /// Days audit events are kept; 0 for ever.
    audit_retention: u32,
    /// Seconds after which an unchanged guessing-limit counter holds nothing.
    limits_window: i64,
    realm: String,
    ext_authz: ExtAuthzApi,
    tls: Option<crate::tls::Tls>,
    /// Credentials of the admin created on an empty database; shown once by the caller.
    pub bootstrap: Option<BootstrapCredentials>,
}

/// Opens storage, migrates it, and bootstraps the first admin on an empty database.
pub async fn prepare(config: &ServeConfig, clock: Arc<dyn Clock>) -> Result<Prepared, ServerError> {
    // First: a bad certificate fails the start before anything is created.
    let tls = crate::tls::Tls::load(&config.tls)?;
    config.limits.validate().map_err(ServerError::Limits)?;
    if let Some(token) = &config.bootstrap_api_token {
        if config.no_bootstrap {
            return Err(ServerError::BootstrapConflict);
        }
        bootstrap::check_given_token(token)?;
    }
    let master = master_key::resolve(&config.master_key, config.database.database_url.expose())?;
    let pseudonyms = Pseudonyms::new(master.derive("identityd login-name pseudonyms"));
    let passwords = Passwords::new(config.argon2.cost(), config.argon2.concurrency())?;
    let store = store::open(
        config.database.database_url.expose(),
        &config.database.pool_settings(),
    )
    .await?;
    if config.no_migrate {
        require_migrations(store.as_ref()).await?;
    } else {
        store.migrate().await?;
    }
    let bootstrap = if config.no_bootstrap {
        bootstrap::ensure_admin_role(store.as_ref(), clock.as_ref()).await?;
        None
    } else {
        bootstrap::bootstrap_admin(
            store.as_ref(),
            clock.as_ref(),
            &crate::domain::audit::Origin::system(),
            DEFAULT_ADMIN_USERNAME,
            config.bootstrap_api_token.as_ref(),
        )
        .await?
    };
    let cache = Arc::new(CheckCache::new(
        config.cache_capacity,
        Duration::from_secs(config.cache_ttl_secs),
    ));
    let keys = Arc::new(
        KeyRing::load(
            store.clone(),
            master,
            clock.clone(),
            config.tokens.access_token_ttl_secs,
        )
        .await?,
    );
    let policy = TokenPolicy {
        issuer: config.tokens.issuer.clone(),
        audience: config.tokens.audience.clone(),
    };
    let files = DocumentFiles {
        catalog: config.scope_catalog.clone(),
        policy: config.route_policy.clone(),
    };
    let documents =
        Arc::new(Documents::load(store.clone(), cache.clone(), clock.clone(), &files).await?);
    let usage = Arc::new(UsageRecorder::new());
    // Before any request can change anything, so no change goes unannounced. Startup
    // files may have replaced the documents already: the other replicas reload them.
    let replicas = replicas::connect(store.as_ref(), &cache).await;
    cache.announce(replicas::Notice::Documents);
    let limits = Arc::new(GuessLimits::new(
        store.clone(),
        clock.clone(),
        cache.clone(),
        config.limits.settings(),
    ));
    let authenticator = Arc::new(Authenticator::new(
        store.clone(),
        cache.clone(),
        limits.clone(),
        keys.clone(),
        policy.clone(),
        clock.clone(),
        documents.clone(),
        usage.clone(),
    ));
    let checker = Arc::new(Checker::new(authenticator.clone(), documents.clone()));
    let admin = Arc::new(AdminService::new(
        store.clone(),
        cache.clone(),
        clock.clone(),
        authenticator.clone(),
        passwords.clone(),
        keys.clone(),
        limits.clone(),
    ));
    let ops = Ops::new(
        store.clone(),
        cache.clone(),
        passwords.clone(),
        keys.clone(),
        limits.clone(),
    )?;
    let tokens = Arc::new(Tokens::new(
        store.clone(),
        limits.clone(),
        keys.clone(),
        passwords,
        cache.clone(),
        clock.clone(),
        documents.clone(),
        TokenSettings {
            access_ttl: config.tokens.access_token_ttl_secs,
            refresh_ttl: config.tokens.refresh_token_ttl_secs,
            policy,
            pseudonyms,
        },
    ));
    let ext_authz = ExtAuthzApi::new(checker.clone(), config.realm.clone(), &config.ext_authz)
        .with_verdicts(ops.verdicts());
    Ok(Prepared {
        store,
        cache,
        keys,
        clock,
        authenticator,
        checker,
        documents,
        admin,
        tokens,
        ops,
        usage,
        replicas,
        audit_retention: config.audit_retention_days,
        limits_window: config.limits.settings().longest_window(),
        realm: config.realm.clone(),
        ext_authz,
        tls,
        bootstrap,
    })
}

/// Serving without migrating: every migration this build knows must be applied already.
async fn require_migrations(store: &dyn Store) -> Result<(), ServerError> {
    match store.migrations_applied().await {
        Ok(true) => Ok(()),
        Ok(false) => Err(ServerError::MigrationsPending(String::new())),
        // The database answers but has no migration record: it was never migrated.
        Err(_) if store.ping().await.is_ok() => Err(ServerError::MigrationsPending(
            " (it has never been migrated)".into(),
        )),
        Err(e) => Err(e.into()),
    }
}

impl Prepared {
    /// The check cache, for observing hit rates.
    pub fn cache(&self) -> Arc<CheckCache> {
        self.cache.clone()
    }

    /// The signing key ring.
    pub fn keys(&self) -> Arc<KeyRing> {
        self.keys.clone()
    }

    /// Serves gRPC on `listener` until `shutdown` resolves, then drains in-flight calls.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        self.serve_with_http(listener, None, shutdown).await
    }

    /// [`Prepared::serve`], and the operator HTTP port on `http` (if given), which stops
    /// with gRPC: on `shutdown`, or when gRPC fails.
    pub async fn serve_with_http(
        self,
        listener: TcpListener,
        http: Option<TcpListener>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServerError> {
        let (health, health_service) = tonic_health::server::health_reporter();
        // v1alpha too: older grpcurl releases only speak that.
        let reflection_v1 = reflection().build_v1()?;
        let reflection_v1alpha = reflection().build_v1alpha()?;
        // Known to health from the first call, NOT_SERVING until storage answers.
        for service in HEALTH_SERVICES {
            health
                .set_service_status(service, ServingStatus::NotServing)
                .await;
        }
        health
            .set_service_status(LIVENESS_SERVICE, ServingStatus::Serving)
            .await;
        let mut background = vec![
            tokio::spawn(watch_storage(self.store.clone(), health)),
            tokio::spawn(reload_keys(self.keys.clone())),
            tokio::spawn(purge_sessions(self.store.clone(), self.clock.clone())),
            tokio::spawn(purge_audit_and_limits(
                self.store.clone(),
                self.clock.clone(),
                self.audit_retention,
                self.limits_window,
            )),
            tokio::spawn(reload_documents(self.documents.clone())),
            tokio::spawn(record_usage(self.usage.clone(), self.store.clone())),
        ];
        if let Some(link) = self.replicas {
            let followers = replicas::Followers {
                cache: self.cache.clone(),
                documents: self.documents.clone(),
            };
            background.push(tokio::spawn(link.run(self.store.clone(), followers)));
        }

        let identity = IdentityApi::new(
            self.authenticator,
            self.checker,
            self.admin.clone(),
            self.tokens,
            self.keys,
            self.realm,
        )
        .with_verdicts(self.ops.verdicts());
        let (stop_http, http) = ops::http::spawn(http, &self.ops);
        // Dropped with the future when gRPC returns early, which stops the port too.
        let shutdown = async move {
            shutdown.await;
            stop_http.stop();
        };
        let router = tonic::transport::Server::builder()
            .layer(self.ops.grpc_layer())
            .add_service(health_service)
            .add_service(reflection_v1)
            .add_service(reflection_v1alpha)
            .add_service(IdentityServer::new(identity))
            .add_service(AdminServer::new(AdminApi::new(self.admin, self.documents)))
            .add_service(AuthorizationServer::new(self.ext_authz));
        let served = match self.tls {
            None => {
                router
                    .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
                    .await
            }
            Some(tls) => {
                router
                    .serve_with_incoming_shutdown(tls.incoming(listener), shutdown)
                    .await
            }
        };
        for task in background {
            task.abort();
        }
        if let Err(e) = http.join().await {
            tracing::warn!(error = %e, "the operator HTTP port failed");
        }
        // Uses noted since the last round would otherwise be lost.
        self.usage.flush(self.store.as_ref()).await;
        tracing::info!("server stopped");
        Ok(served?)
    }
}

fn reflection() -> tonic_reflection::server::Builder<'static> {
    tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(pb::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
}

/// Reports SERVING only while storage answers, so probes route traffic away otherwise.
async fn watch_storage(store: Arc<dyn Store>, health: HealthReporter) {
    let mut last = None;
    loop {
        let status = match store.ping().await {
            Ok(()) => ServingStatus::Serving,
            Err(e) => {
                tracing::warn!(error = %e, "storage unreachable; reporting NOT_SERVING");
                ServingStatus::NotServing
            }
        };
        if last != Some(status) {
            for service in HEALTH_SERVICES {
                health.set_service_status(service, status).await;
            }
            last = Some(status);
        }
        tokio::time::sleep(HEALTH_INTERVAL).await;
    }
}

/// Picks up signing keys rotated by other replicas.
async fn reload_keys(keys: Arc<KeyRing>) {
    loop {
        tokio::time::sleep(RELOAD_INTERVAL).await;
        if let Err(e) = keys.reload().await {
            tracing::warn!(error = %e, "could not reload signing keys");
        }
    }
}

/// Deletes sessions that ended a while ago, so the table does not grow without bound.
async fn purge_sessions(store: Arc<dyn Store>, clock: Arc<dyn Clock>) {
    loop {
        match store.purge_sessions(clock.now() - PURGE_AFTER_SECS).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(sessions = n, "purged ended sessions"),
            Err(e) => tracing::warn!(error = %e, "could not purge ended sessions"),
        }
        tokio::time::sleep(PURGE_INTERVAL).await;
    }
}

/// Deletes audit events past their retention (`retention_days`, 0 for never) and
/// guessing-limit counters that hold nothing any more (unchanged for longer than any
/// window, and not blocking), once per purge interval.
async fn purge_audit_and_limits(
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    retention_days: u32,
    longest_window: i64,
) {
    loop {
        let now = clock.now();
        if retention_days > 0 {
            let before = now - i64::from(retention_days) * 86_400;
            match store.purge_audit_events(before).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(events = n, retention_days, "purged old audit events"),
                Err(e) => tracing::warn!(error = %e, "could not purge old audit events"),
            }
        }
        if let Err(e) = store.purge_limits(now - longest_window, now).await {
            tracing::warn!(error = %e, "could not purge quiet guessing-limit counters");
        }
        tokio::time::sleep(PURGE_INTERVAL).await;
    }
}

/// Prepares, prints any bootstrap credentials once on standard output (never to the
/// log), and serves until `shutdown`.
pub async fn run(
    config: &ServeConfig,
    clock: Arc<dyn Clock>,
    listener: TcpListener,
    http: Option<TcpListener>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ServerError> {
    let mut prepared = prepare(config, clock).await?;
    if let Some(creds) = prepared.bootstrap.take() {
        if config.bootstrap_api_token.is_some() {
            tracing::info!(username = %creds.username, "created the first admin with the API token given in IDENTITYD_BOOTSTRAP_API_TOKEN");
        } else {
            tracing::info!(username = %creds.username, "created the first admin; its credentials are on standard output");
            print_credentials(&creds);
        }
    }
    tracing::info!(address = %listener.local_addr()?, database = %config.database.database_url, "serving gRPC");
    if let Some(http) = &http {
        tracing::info!(address = %http.local_addr()?, "serving operator HTTP: /metrics /healthz /readyz /.well-known/jwks.json");
    }
    prepared.serve_with_http(listener, http, shutdown).await
}

/// Shows freshly created admin credentials, with a ready-made Basic header.
pub fn print_credentials(creds: &BootstrapCredentials) {
    let token = creds.api_token.expose_secret();
    let basic = STANDARD.encode(format!("{}:{token}", creds.username));
    println!("identityd: new API credentials. They are shown only now; keep them safe.");
    println!("  username:  {}", creds.username);
    println!("  api_token: {token}");
    println!("  header:    authorization: Basic {basic}");
}
