//! The operator port's routes and listener. GET and HEAD only (405 otherwise); any other
//! path is 404.

use super::Ops;
use crate::service::keys::PublicJwk;
use crate::store::Store;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Longest a readiness check waits for the database: a probe that hangs tells the
/// kubelet less than a prompt 503.
const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// The routes, over `ops`.
pub fn router(ops: Ops) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/.well-known/jwks.json", get(jwks))
        .with_state(ops)
}

/// Stops the operator port when dropped (or when [`StopHttp::stop`] is called).
pub struct StopHttp(oneshot::Sender<()>);

impl StopHttp {
    /// Stops accepting, lets requests in flight finish.
    pub fn stop(self) {
        // Fails only when the port already stopped.
        let _ = self.0.send(());
    }
}

/// The operator port's serving task.
pub struct HttpTask(Option<JoinHandle<std::io::Result<()>>>);

impl HttpTask {
    /// Waits until the port has stopped.
    pub async fn join(self) -> std::io::Result<()> {
        match self.0 {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

/// Serves the operator port on `listener` (nothing without one) until the returned
/// [`StopHttp`] is dropped.
pub fn spawn(listener: Option<TcpListener>, ops: &Ops) -> (StopHttp, HttpTask) {
    let (stop, stopped) = oneshot::channel();
    let task = listener.map(|listener| {
        let serve = axum::serve(listener, router(ops.clone())).with_graceful_shutdown(async move {
            // Resolves on `stop` or once the sender is dropped.
            let _ = stopped.await;
        });
        tokio::spawn(async move { serve.await })
    });
    (StopHttp(stop), HttpTask(task))
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(ops): State<Ops>) -> Response {
    let answer = match tokio::time::timeout(READY_TIMEOUT, ready(ops.store.as_ref())).await {
        Ok(answer) => answer,
        Err(_) => Err("database did not answer in time\n"),
    };
    match answer {
        Ok(()) => (StatusCode::OK, "ready\n").into_response(),
        Err(reason) => (StatusCode::SERVICE_UNAVAILABLE, reason).into_response(),
    }
}

/// Ready when the database answers and has every migration this build knows.
async fn ready(store: &dyn Store) -> Result<(), &'static str> {
    if let Err(e) = store.ping().await {
        tracing::debug!(error = %e, "not ready: database unreachable");
        return Err("database unreachable\n");
    }
    match store.migrations_applied().await {
        Ok(true) => Ok(()),
        Ok(false) => Err("database migrations pending\n"),
        Err(e) => {
            tracing::debug!(error = %e, "not ready: migration state unreadable");
            Err("database migration state unreadable\n")
        }
    }
}

async fn metrics(State(ops): State<Ops>) -> Response {
    match ops.metrics.render() {
        Ok(text) => ([(header::CONTENT_TYPE, prometheus::TEXT_FORMAT)], text).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "could not render metrics");
            (StatusCode::INTERNAL_SERVER_ERROR, "metrics unavailable\n").into_response()
        }
    }
}

/// The JWK Set (RFC 7517): the same keys, in the same order, as `Identity.GetJwks`.
#[derive(serde::Serialize)]
struct JwkSet {
    keys: Vec<PublicJwk>,
}

async fn jwks(State(ops): State<Ops>) -> Response {
    match serde_json::to_string(&JwkSet {
        keys: ops.keys.jwks(),
    }) {
        Ok(json) => ([(header::CONTENT_TYPE, "application/json")], json).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "could not encode the JWKS");
            (StatusCode::INTERNAL_SERVER_ERROR, "JWKS unavailable\n").into_response()
        }
    }
}
