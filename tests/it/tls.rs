//! gRPC over TLS and mTLS: trusted clients connect, others are refused, and replaced
//! certificate files are picked up without a restart.

use crate::binary::RunningBinary;
use crate::support::{Backend, TestServer};
use identityd::tls::{RELOAD_INTERVAL, TlsConfig};
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tonic_health::pb::{HealthCheckRequest, health_client::HealthClient};

/// A throw-away certificate authority.
struct Ca(CertifiedIssuer<'static, KeyPair>);

impl Ca {
    fn new(name: &str) -> Self {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        Self(CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap())
    }

    fn pem(&self) -> String {
        self.0.pem()
    }

    /// A certificate for `names` and its key, both PEM.
    fn issue(&self, names: &[&str], usage: ExtendedKeyUsagePurpose) -> (String, String) {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = CertificateParams::new(names).unwrap();
        params.extended_key_usages = vec![usage];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.0).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn server_cert(&self) -> (String, String) {
        self.issue(
            &["localhost", "127.0.0.1"],
            ExtendedKeyUsagePurpose::ServerAuth,
        )
    }

    fn client_identity(&self) -> Identity {
        let (cert, key) = self.issue(&["client.test"], ExtendedKeyUsagePurpose::ClientAuth);
        Identity::from_pem(cert, key)
    }

    /// A client that trusts this CA only.
    fn client(&self) -> ClientTlsConfig {
        ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(self.pem()))
            .domain_name("localhost")
    }
}

/// The server's certificate files in a temporary directory.
struct Files {
    dir: tempfile::TempDir,
}

impl Files {
    fn new(server: &Ca, client_ca: Option<&Ca>) -> Self {
        let files = Self {
            dir: tempfile::tempdir().unwrap(),
        };
        files.install(server.server_cert());
        if let Some(ca) = client_ca {
            std::fs::write(files.path("client-ca.pem"), ca.pem()).unwrap();
        }
        files
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn config(&self, mtls: bool) -> TlsConfig {
        TlsConfig {
            tls_cert: Some(self.path("cert.pem")),
            tls_key: Some(self.path("key.pem")),
            tls_client_ca: mtls.then(|| self.path("client-ca.pem")),
        }
    }

    /// Replaces certificate and key the way a secret mount or cert-manager does: each
    /// file written aside, then renamed over the old one.
    fn install(&self, (cert, key): (String, String)) {
        for (name, pem) in [("cert.pem", cert), ("key.pem", key)] {
            let aside = self.path(&format!(".{name}.new"));
            std::fs::write(&aside, pem).unwrap();
            std::fs::rename(&aside, self.path(name)).unwrap();
        }
    }
}

async fn tls_server(files: &Files, mtls: bool) -> TestServer {
    let tls = files.config(mtls);
    TestServer::start_with(Backend::Sqlite, move |config| config.tls = tls).await
}

/// A connection to `server`, over TLS when `tls` is given.
async fn connect(server: &TestServer, tls: Option<ClientTlsConfig>) -> Result<Channel, String> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let mut endpoint = Channel::from_shared(format!("{scheme}://{}", server.addr))
        .unwrap()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5));
    if let Some(tls) = tls {
        endpoint = endpoint.tls_config(tls).map_err(|e| format!("{e:?}"))?;
    }
    endpoint.connect().await.map_err(|e| format!("{e:?}"))
}

async fn health_on(channel: Channel) -> Result<(), String> {
    HealthClient::new(channel)
        .check(HealthCheckRequest::default())
        .await
        .map(drop)
        .map_err(|e| format!("{e:?}"))
}

/// Connects and calls Health/Check: the handshake or the call fails for a refused client.
async fn health(server: &TestServer, tls: Option<ClientTlsConfig>) -> Result<(), String> {
    health_on(connect(server, tls).await?).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_serves_clients_that_trust_the_certificate() {
    let ca = Ca::new("server CA");
    let files = Files::new(&ca, None);
    let server = tls_server(&files, false).await;

    health(&server, Some(ca.client())).await.unwrap();
    // An authenticated call works as over plaintext.
    let admin = server.admin_auth.clone();
    let channel = connect(&server, Some(ca.client())).await.unwrap();
    let mut identity = identityd::api::pb::identity_client::IdentityClient::new(channel);
    let who = identity
        .authenticate(identityd::api::pb::AuthenticateRequest {
            authorization: admin,
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(who.principal.unwrap().name, "admin");

    let other = Ca::new("someone else");
    let untrusted = health(&server, Some(other.client())).await;
    assert!(untrusted.is_err(), "a client trusting another CA connected");
    let plaintext = health(&server, None).await;
    assert!(plaintext.is_err(), "a plaintext client was served");
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_refuses_clients_without_a_certificate_from_the_client_ca() {
    let server_ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let files = Files::new(&server_ca, Some(&client_ca));
    let server = tls_server(&files, true).await;

    let with_cert = server_ca.client().identity(client_ca.client_identity());
    health(&server, Some(with_cert)).await.unwrap();

    let without = health(&server, Some(server_ca.client())).await;
    assert!(
        without.is_err(),
        "a client without a certificate was served"
    );
    let stranger = Ca::new("stranger");
    let foreign = server_ca.client().identity(stranger.client_identity());
    let foreign = health(&server, Some(foreign)).await;
    assert!(
        foreign.is_err(),
        "a certificate from another CA was accepted"
    );
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replaced_certificates_are_served_without_a_restart() {
    let old_ca = Ca::new("old CA");
    let files = Files::new(&old_ca, None);
    let server = tls_server(&files, false).await;
    let open = connect(&server, Some(old_ca.client())).await.unwrap();
    health_on(open.clone()).await.unwrap();

    // A broken replacement is refused; the certificate in force stays.
    std::fs::write(files.path("key.pem"), "not a key").unwrap();
    tokio::time::sleep(RELOAD_INTERVAL * 2 + Duration::from_millis(500)).await;
    health(&server, Some(old_ca.client())).await.unwrap();

    let new_ca = Ca::new("new CA");
    files.install(new_ca.server_cert());
    let mut reloaded = false;
    for _ in 0..40 {
        if health(&server, Some(new_ca.client())).await.is_ok() {
            reloaded = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert!(reloaded, "the new certificate was not served within 10 s");
    let old = health(&server, Some(old_ca.client())).await;
    assert!(
        old.is_err(),
        "new connections still get the old certificate"
    );
    // A connection made before keeps working.
    health_on(open).await.unwrap();
    server.stop().await;
}

fn identityd(args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_identityd"))
        .args(args)
        .output()
        .unwrap()
}

fn arg(path: &Path) -> &str {
    path.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_tls_from_its_flags_and_refuses_bad_options() {
    let ca = Ca::new("server CA");
    let client_ca = Ca::new("client CA");
    let files = Files::new(&ca, Some(&client_ca));
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let (cert, key, client) = (
        files.path("cert.pem"),
        files.path("key.pem"),
        files.path("client-ca.pem"),
    );

    let partial = identityd(&["serve", "--database-url", &url, "--tls-key", arg(&key)]);
    assert!(!partial.status.success());
    let stderr = String::from_utf8_lossy(&partial.stderr);
    assert!(stderr.contains("--tls-key needs --tls-cert"), "{stderr}");

    let secret = "c2VjcmV0IGtleSBtYXRlcmlhbA";
    let bad_key = dir.path().join("bad-key.pem");
    std::fs::write(
        &bad_key,
        format!("-----BEGIN PRIVATE KEY-----\n{secret}!!\n-----END PRIVATE KEY-----\n"),
    )
    .unwrap();
    let bad = identityd(&[
        "serve",
        "--database-url",
        &url,
        "--tls-cert",
        arg(&cert),
        "--tls-key",
        arg(&bad_key),
    ]);
    assert!(!bad.status.success());
    let stderr = String::from_utf8_lossy(&bad.stderr);
    assert!(stderr.contains(arg(&bad_key)), "{stderr}");
    assert!(!stderr.contains(secret), "key material printed: {stderr}");

    let running = RunningBinary::start(
        &[
            "--database-url",
            &url,
            "--tls-cert",
            arg(&cert),
            "--tls-key",
            arg(&key),
            "--tls-client-ca",
            arg(&client),
        ],
        &[],
    );
    let endpoint = Channel::from_shared(format!("https://{}", running.address))
        .unwrap()
        .tls_config(ca.client().identity(client_ca.client_identity()))
        .unwrap();
    health_on(endpoint.connect().await.unwrap()).await.unwrap();
    let log = running.stop();
    assert!(log.contains("TLS on for gRPC"), "{log}");
}
