//! TLS for the gRPC port, optionally requiring client certificates (mTLS).
//!
//! Connections are accepted and handshaken here, not by tonic, so that the certificate
//! files can be reloaded without a restart: a background task polls them and swaps in a
//! new rustls configuration, and every new connection is handshaken with the one in
//! force. Connections already open keep the certificate they were made with.

use arc_swap::ArcSwap;
use clap::Args;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, SystemTime};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::pki_types::pem::{self, PemObject};
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::{RootCertStore, ServerConfig, crypto};
use tokio_rustls::server::TlsStream;
use zeroize::Zeroizing;

/// How often the certificate files are checked for changes.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);
/// A client that has not finished its handshake by then is dropped, so stalled
/// clients cannot pile up.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshaken connections waiting for the server to take them.
const READY_QUEUE: usize = 64;
/// Pause after a failed accept (e.g. out of file descriptors) instead of spinning.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Most handshakes in progress at once. Beyond it, accepting waits (the kernel's backlog
/// holds new connections), so idle sockets cannot pile up until file descriptors run out.
const MAX_HANDSHAKES: usize = 256;

/// TLS options of `identityd serve`. Without a certificate, gRPC is plaintext.
#[derive(Debug, Clone, Default, Args)]
pub struct TlsConfig {
    /// PEM certificate chain for gRPC, leaf first; turns TLS on. Reloaded when it changes.
    #[arg(long, env = "IDENTITYD_TLS_CERT")]
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the certificate (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "IDENTITYD_TLS_KEY")]
    pub tls_key: Option<PathBuf>,
    /// PEM CA certificates; when set, clients must present a certificate signed by one.
    #[arg(long, env = "IDENTITYD_TLS_CLIENT_CA")]
    pub tls_client_ca: Option<PathBuf>,
}

/// Why TLS could not be set up. Never carries key material.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The options do not fit together.
    #[error("{0}")]
    Options(&'static str),
    /// A file could not be read or used.
    #[error("{}: {reason}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// The certificate files to (re)load.
#[derive(Debug, Clone)]
struct Files {
    cert: PathBuf,
    key: PathBuf,
    client_ca: Option<PathBuf>,
}

/// TLS for a listener: the configuration in force and where it comes from.
pub struct Tls {
    files: Files,
    current: Arc<ArcSwap<ServerConfig>>,
    seen: Vec<Option<Stamp>>,
}

impl Tls {
    /// Loads the certificate (and client CA); `None` when TLS is off.
    pub fn load(options: &TlsConfig) -> Result<Option<Self>, TlsError> {
        let files = match (&options.tls_cert, &options.tls_key) {
            (None, None) if options.tls_client_ca.is_some() => {
                return Err(TlsError::Options(
                    "--tls-client-ca needs --tls-cert and --tls-key",
                ));
            }
            (None, None) => return Ok(None),
            (Some(_), None) => return Err(TlsError::Options("--tls-cert needs --tls-key")),
            (None, Some(_)) => return Err(TlsError::Options("--tls-key needs --tls-cert")),
            (Some(cert), Some(key)) => Files {
                cert: cert.clone(),
                key: key.clone(),
                client_ca: options.tls_client_ca.clone(),
            },
        };
        // Stamped before reading, so a change made while reading is seen next round.
        let seen = files.stamps();
        let config = files.server_config()?;
        tracing::info!(
            certificate = %files.cert.display(),
            client_certificates = if files.client_ca.is_some() { "required" } else { "not requested" },
            "TLS on for gRPC"
        );
        Ok(Some(Self {
            files,
            current: Arc::new(ArcSwap::from_pointee(config)),
            seen,
        }))
    }

    /// Accepts TLS connections on `listener`, handshaking each in its own task, and
    /// reloads the certificate files while the stream lives.
    pub fn incoming(self, listener: TcpListener) -> Incoming {
        let (ready, connections) = mpsc::channel(READY_QUEUE);
        let mut tasks = JoinSet::new();
        tasks.spawn(accept(listener, self.current.clone(), ready));
        tasks.spawn(reload(self.files, self.current, self.seen));
        Incoming {
            connections,
            _tasks: tasks,
        }
    }
}

/// Handshaken connections, for `serve_with_incoming_shutdown`. Dropping it stops
/// accepting and reloading.
pub struct Incoming {
    connections: mpsc::Receiver<TlsStream<TcpStream>>,
    _tasks: JoinSet<()>,
}

impl tokio_stream::Stream for Incoming {
    type Item = std::io::Result<TlsStream<TcpStream>>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.connections.poll_recv(cx).map(|c| c.map(Ok))
    }
}

async fn accept(
    listener: TcpListener,
    current: Arc<ArcSwap<ServerConfig>>,
    ready: mpsc::Sender<TlsStream<TcpStream>>,
) {
    let handshakes = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    loop {
        // Never closed, so acquiring only waits.
        let Ok(slot) = handshakes.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                tracing::warn!(error = %e, "could not accept a connection");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let acceptor = TlsAcceptor::from(current.load_full());
        let ready = ready.clone();
        // Its own task: a slow client must not hold up the others.
        tokio::spawn(async move {
            let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            drop(slot);
            match handshake {
                Ok(Ok(tls)) => {
                    // Fails only once the server has stopped taking connections.
                    let _ = ready.send(tls).await;
                }
                Ok(Err(e)) => tracing::debug!(%peer, error = %e, "TLS handshake failed"),
                Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
            }
        });
    }
}

/// Polls the files and swaps in a new configuration when they change. A change that
/// does not load (half-written files, a key that does not match) is logged and the
/// configuration in force stays; the next change is tried again.
async fn reload(files: Files, current: Arc<ArcSwap<ServerConfig>>, mut seen: Vec<Option<Stamp>>) {
    loop {
        tokio::time::sleep(RELOAD_INTERVAL).await;
        // A few small local files: reading them inline is cheaper than a blocking task.
        let stamps = files.stamps();
        if stamps == seen {
            continue;
        }
        seen = stamps;
        match files.server_config() {
            Ok(config) => {
                current.store(Arc::new(config));
                tracing::info!(certificate = %files.cert.display(), "reloaded the TLS certificate");
            }
            Err(e) => tracing::warn!(
                error = %e,
                "the TLS files changed but cannot be used; keeping the previous certificate"
            ),
        }
    }
}

/// What identifies a file's version: replacing it (rename, a Kubernetes secret's
/// symlink swap) changes the inode, rewriting it changes time or length.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
    dev: u64,
    ino: u64,
}

impl Files {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }

    fn stamps(&self) -> Vec<Option<Stamp>> {
        use std::os::unix::fs::MetadataExt as _;
        self.paths()
            .map(|path| {
                let meta = std::fs::metadata(path).ok()?;
                Some(Stamp {
                    modified: meta.modified().ok(),
                    len: meta.len(),
                    dev: meta.dev(),
                    ino: meta.ino(),
                })
            })
            .collect()
    }

    fn server_config(&self) -> Result<ServerConfig, TlsError> {
        // Chosen explicitly: ring is the provider the tree already builds (for sqlx), and
        // an explicit provider does not depend on a process-wide default.
        let provider = Arc::new(crypto::ring::default_provider());
        let chain = read_certificates(&self.cert)?;
        let key = read_key(&self.key)?;
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| file_error(&self.cert, e))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(path) => {
                let mut roots = RootCertStore::empty();
                for ca in read_certificates(path)? {
                    roots.add(ca).map_err(|e| file_error(path, e))?;
                }
                // Requires a client certificate: anonymous clients are refused.
                let verifier = WebPkiClientVerifier::builder_with_provider(roots.into(), provider)
                    .build()
                    .map_err(|e| file_error(path, e))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder
            .with_single_cert(chain, key)
            .map_err(|e| TlsError::File {
                path: self.cert.clone(),
                reason: format!("does not fit the key in {}: {e}", self.key.display()),
            })?;
        // gRPC is HTTP/2 only.
        config.alpn_protocols = vec![b"h2".to_vec()];
        Ok(config)
    }
}

fn read_certificates(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = std::fs::read(path).map_err(|e| file_error(path, e))?;
    let certificates = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| file_error(path, pem_reason(&e)))?;
    if certificates.is_empty() {
        return Err(file_error(path, "no PEM CERTIFICATE found"));
    }
    Ok(certificates)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = Zeroizing::new(std::fs::read(path).map_err(|e| file_error(path, e))?);
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| match e {
        pem::Error::NoItemsFound => file_error(path, "no PEM private key found"),
        e => file_error(path, pem_reason(&e)),
    })
}

/// Some PEM errors quote the offending line; for a key file that could be key material.
fn pem_reason(e: &pem::Error) -> &'static str {
    match e {
        pem::Error::SectionTooLarge => "a PEM section is too large",
        _ => "not valid PEM",
    }
}

fn file_error(path: &Path, reason: impl std::fmt::Display) -> TlsError {
    TlsError::File {
        path: path.to_owned(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_must_fit_together() {
        let path = || Some(PathBuf::from("/nonexistent"));
        let off = TlsConfig::default();
        assert!(Tls::load(&off).unwrap().is_none());
        for (cert, key, ca) in [
            (path(), None, None),
            (None, path(), None),
            (None, None, path()),
        ] {
            let options = TlsConfig {
                tls_cert: cert,
                tls_key: key,
                tls_client_ca: ca,
            };
            assert!(matches!(Tls::load(&options), Err(TlsError::Options(_))));
        }
    }

    #[test]
    fn a_missing_file_is_named() {
        let options = TlsConfig {
            tls_cert: Some("/nonexistent/cert.pem".into()),
            tls_key: Some("/nonexistent/key.pem".into()),
            tls_client_ca: None,
        };
        let Err(e) = Tls::load(&options) else {
            panic!("loaded a missing file")
        };
        assert!(e.to_string().starts_with("/nonexistent/cert.pem: "), "{e}");
    }
}
