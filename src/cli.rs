//! Command-line dispatch: serve, migrate, admin tasks, load generation.

use crate::config::{AdminCommand, AdminTask, Command, DatabaseConfig, LogFormat, ServeConfig};
use crate::domain::audit::{Actor, Origin};
use crate::domain::clock::{Clock, SystemClock};
use crate::domain::names;
use crate::server;
use crate::service::bootstrap::{self, BootstrapCredentials};
use crate::service::limits;
use crate::service::replicas::Notice;
use crate::store::{self, Store};
use crate::{
    domain::secret::{SecretDigest, SecretKind},
    loadgen,
};
use std::sync::Arc;
use tokio::net::TcpListener;
use tracing_subscriber::EnvFilter;

/// Logs go to standard error, filtered by `IDENTITYD_LOG` (default `info`).
pub fn init_logging(format: LogFormat) {
    let filter =
        EnvFilter::try_from_env("IDENTITYD_LOG").unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

/// Runs one subcommand to completion.
pub async fn dispatch(command: Command) -> Result<(), Box<dyn std::error::Error>> {
    match command {
        Command::Serve(config) => serve(config).await,
        Command::Migrate(db) => {
            open(&db).await?;
            println!("identityd: migrations applied to {}", db.database_url);
            Ok(())
        }
        Command::Admin(admin) => run_admin(admin).await,
        Command::Loadgen(config) => loadgen::run(&config).await,
    }
}

async fn serve(config: ServeConfig) -> Result<(), Box<dyn std::error::Error>> {
    let shutdown = shutdown_signal()?;
    let listener = TcpListener::bind(config.listen)
        .await
        .map_err(|e| format!("cannot listen on {}: {e}", config.listen))?;
    let http = config.http_listen.bind().await?;
    server::run(&config, Arc::new(SystemClock), listener, http, shutdown).await?;
    Ok(())
}

/// A future resolving on Ctrl-C or SIGTERM. The handlers are installed now, before the
/// server starts, so an early signal still shuts down gracefully.
fn shutdown_signal() -> std::io::Result<impl std::future::Future<Output = ()>> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    Ok(async move {
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
        }
        tracing::info!("shutting down: draining in-flight calls");
    })
}

/// Opens and migrates the database.
async fn open(db: &DatabaseConfig) -> Result<Arc<dyn Store>, Box<dyn std::error::Error>> {
    let store = store::open(db.database_url.expose(), &db.pool_settings()).await?;
    store.migrate().await?;
    Ok(store)
}

async fn run_admin(admin: AdminCommand) -> Result<(), Box<dyn std::error::Error>> {
    let store = open(&admin.database).await?;
    let clock = SystemClock;
    match admin.task {
        AdminTask::Bootstrap { username } => {
            let username =
                names::normalize_username(&username).map_err(|r| format!("username {r}"))?;
            let origin = Origin {
                actor: Actor::cli(),
                ..Origin::default()
            };
            match bootstrap::bootstrap_admin(store.as_ref(), &clock, &origin, &username, None)
                .await?
            {
                Some(creds) => server::print_credentials(&creds),
                None => println!("identityd: users already exist; nothing to bootstrap"),
            }
        }
        AdminTask::RegenerateToken { username } => {
            let username =
                names::normalize_username(&username).map_err(|r| format!("username {r}"))?;
            let token = SecretKind::ApiToken.generate();
            let origin = Origin {
                actor: Actor::cli(),
                ..Origin::default()
            };
            let event = origin.event(
                clock.now(),
                "user.api_token_regenerate",
                format!("user:{username}"),
            );
            let user = store
                .replace_api_token(&username, &SecretDigest::of(&token), &event)
                .await?;
            crate::service::audit::log(&event);
            // The token is replaced either way: a failure here leaves blocks that end
            // by themselves, and the new token must still be shown.
            if let Err(e) =
                limits::clear_api_token(store.as_ref(), clock.now(), &username, &origin).await
            {
                eprintln!(
                    "identityd: warning: could not clear the guessing limits of the old token ({e}); they end by themselves"
                );
            }
            // The running replicas still cache the old token: tell them, as they would.
            tell_servers(store.as_ref(), &[Notice::Principal(user.id)]).await;
            server::print_credentials(&BootstrapCredentials {
                username,
                api_token: token,
            });
        }
        AdminTask::ClearLimit {
            secret,
            subject,
            source,
        } => {
            let key = limits::limit_key(&secret, &subject, &source)?;
            let origin = Origin {
                actor: Actor::cli(),
                ..Origin::default()
            };
            // Running servers hold no blocks in memory: their next attempt reads this.
            if limits::clear_limit(store.as_ref(), clock.now(), &key, &origin).await? {
                println!("identityd: cleared");
            } else {
                println!("identityd: no such limit; nothing to clear");
            }
        }
    }
    Ok(())
}

/// Tells running servers of a change made here, as they tell each other; a failure
/// only delays what they learn until their cache entries expire.
async fn tell_servers(store: &dyn Store, notices: &[Notice]) {
    for notice in notices {
        if let Err(e) = store.publish(&notice.encode("cli")).await {
            eprintln!(
                "identityd: could not tell running servers ({e}); they learn of it as their cache entries expire"
            );
            return;
        }
    }
}
