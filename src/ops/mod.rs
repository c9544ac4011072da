//! The operator port: an HTTP listener apart from gRPC for Prometheus, probes and the
//! JWKS, so scrapers, kubelets and JWT libraries need no gRPC client.
//!
//! - [`metrics`]: this server's registry, verdict counts and values read at scrape time.
//! - [`grpc`]: the tower layer that counts and times every gRPC call.
//! - [`http`]: the routes and the listener.

pub mod grpc;
pub mod http;
pub mod metrics;

use crate::service::cache::CheckCache;
use crate::service::keys::KeyRing;
use crate::service::limits::GuessLimits;
use crate::service::passwords::Passwords;
use crate::store::Store;
use metrics::{Metrics, Verdicts};
use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;
use tokio::net::TcpListener;

/// Everything the operator port reads, built once per server.
#[derive(Clone)]
pub struct Ops {
    metrics: Metrics,
    store: Arc<dyn Store>,
    keys: Arc<KeyRing>,
}

impl Ops {
    /// Registers this server's metrics over its storage, cache, hasher, keys and
    /// guessing limits.
    pub fn new(
        store: Arc<dyn Store>,
        cache: Arc<CheckCache>,
        passwords: Arc<Passwords>,
        keys: Arc<KeyRing>,
        limits: Arc<GuessLimits>,
    ) -> prometheus::Result<Self> {
        let metrics = Metrics::new(store.clone(), cache, passwords, limits)?;
        Ok(Self {
            metrics,
            store,
            keys,
        })
    }

    /// Where check RPCs (and ext_authz) count their verdicts.
    pub fn verdicts(&self) -> Verdicts {
        self.metrics.verdicts()
    }

    /// The layer to put on the gRPC server, counting and timing every call.
    pub fn grpc_layer(&self) -> grpc::GrpcMetricsLayer {
        grpc::GrpcMetricsLayer::new(self.metrics.grpc_calls())
    }
}

/// Where the operator port listens; `off` (or an empty value) turns it off.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpListen(pub Option<SocketAddr>);

impl FromStr for HttpListen {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "" | "off" => Ok(Self(None)),
            addr => addr.parse().map(|a| Self(Some(a))).map_err(|_| {
                format!("{addr:?} is not an IP address and port (or \"off\" to turn it off)")
            }),
        }
    }
}

impl fmt::Display for HttpListen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(addr) => write!(f, "{addr}"),
            None => f.write_str("off"),
        }
    }
}

impl HttpListen {
    /// Binds the listener, if the port is on.
    pub async fn bind(&self) -> Result<Option<TcpListener>, String> {
        let Some(addr) = self.0 else {
            return Ok(None);
        };
        TcpListener::bind(addr)
            .await
            .map(Some)
            .map_err(|e| format!("cannot listen on {addr} (--http-listen): {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listen_values() {
        assert_eq!(
            "127.0.0.1:9090".parse::<HttpListen>(),
            Ok(HttpListen(Some(SocketAddr::from(([127, 0, 0, 1], 9090)))))
        );
        assert_eq!("".parse::<HttpListen>(), Ok(HttpListen(None)));
        assert_eq!("off".parse::<HttpListen>(), Ok(HttpListen(None)));
        assert!("localhost".parse::<HttpListen>().is_err());
        assert_eq!(HttpListen(None).to_string(), "off");
    }
}
