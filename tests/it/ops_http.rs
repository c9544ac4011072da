//! The operator HTTP port: liveness, readiness, metrics that move with traffic, and the
//! JWKS, over a plain HTTP/1.1 client.

use crate::on_both_backends;
use crate::support::*;
use identityd::api::pb;
use serde_json::Value;
use sqlx::Connection;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One HTTP response, read to the end of the connection.
struct HttpResponse {
    status: u16,
    /// Header names lower-cased.
    headers: Vec<(String, String)>,
    body: String,
}

impl HttpResponse {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// `METHOD path` on a fresh connection, which the server closes after answering.
async fn request(addr: SocketAddr, method: &str, path: &str) -> HttpResponse {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    let head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    stream.write_all(head.as_bytes()).await.expect("send");
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).await.expect("read");
    let raw = String::from_utf8(raw).expect("UTF-8 response");
    let (head, body) = raw.split_once("\r\n\r\n").expect("head and body");
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    HttpResponse {
        status,
        headers,
        body: body.to_owned(),
    }
}

async fn get(addr: SocketAddr, path: &str) -> HttpResponse {
    request(addr, "GET", path).await
}

/// The value of one series (`name{labels}` exactly as rendered) in a scrape; 0 when
/// absent, as for a counter not yet incremented.
pub(crate) fn sample(scrape: &str, series: &str) -> f64 {
    scrape
        .lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
        .map_or(0.0, |v| v.trim().parse().expect("sample value"))
}

pub(crate) async fn scrape(server: &TestServer) -> String {
    let response = get(server.http_addr, "/metrics").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert!(
        response
            .header("content-type")
            .is_some_and(|t| t.starts_with("text/plain; version=0.0.4")),
        "{:?}",
        response.headers
    );
    response.body
}

async fn liveness_and_routing(backend: Backend) {
    let server = TestServer::start(backend).await;
    let addr = server.http_addr;
    let health = get(addr, "/healthz").await;
    assert_eq!((health.status, health.body.trim()), (200, "ok"));
    let head = request(addr, "HEAD", "/healthz").await;
    assert_eq!((head.status, head.body.as_str()), (200, ""));
    for path in ["/healthz", "/readyz", "/metrics", "/.well-known/jwks.json"] {
        let post = request(addr, "POST", path).await;
        assert_eq!(post.status, 405, "POST {path}");
        assert!(post.header("allow").is_some_and(|a| a.contains("GET")));
    }
    for path in [
        "/",
        "/nope",
        "/metrics/x",
        "/.well-known/openid-configuration",
    ] {
        assert_eq!(get(addr, path).await.status, 404, "GET {path}");
    }
    server.stop().await;
}

async fn readiness_needs_every_migration(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ready = get(server.http_addr, "/readyz").await;
    assert_eq!((ready.status, ready.body.trim()), (200, "ready"));
    // As if the database were older than this build.
    server.db.execute(FORGET_LAST_MIGRATION).await;
    let pending = get(server.http_addr, "/readyz").await;
    assert_eq!(
        (pending.status, pending.body.trim()),
        (503, "database migrations pending")
    );
    // Liveness is not readiness: the process is still up.
    assert_eq!(get(server.http_addr, "/healthz").await.status, 200);
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_fails_when_the_database_is_gone() {
    let server = TestServer::start_with(Backend::Postgres, |c| {
        c.database.db_acquire_timeout_secs = 1;
    })
    .await;
    assert_eq!(get(server.http_addr, "/readyz").await.status, 200);
    let name = server.db.url.rsplit('/').next().expect("database name");
    let mut admin = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .expect("connect");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut admin)
    .await
    .expect("drop the database under the server");
    let gone = get(server.http_addr, "/readyz").await;
    assert_eq!(
        (gone.status, gone.body.trim()),
        (503, "database unreachable")
    );
    assert_eq!(get(server.http_addr, "/healthz").await.status, 200);
    server.stop().await;
}

const CHECK_METHOD: &str = "/identity.v1.Identity/CheckPermission";

async fn metrics_move_with_checks(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = server
        .user_with_role("alice", "orders-reader", &["orders:read"])
        .await;
    let verdict = r#"identityd_verdicts_total{reason="missing_permission",rpc="CheckPermission"}"#;
    let calls = format!(r#"identityd_grpc_requests_total{{code="OK",method="{CHECK_METHOD}"}}"#);
    let timed =
        format!(r#"identityd_grpc_request_duration_seconds_count{{method="{CHECK_METHOD}"}}"#);
    // Warm: wait until alice's entry outlives the invalidations that setting her up
    // caused (on PostgreSQL they also come back as notices, a moment later).
    for _ in 0..100 {
        let hits = server.cache.stats().hits;
        server.check(&alice, &["orders:read"]).await;
        if server.cache.stats().hits > hits {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let before = scrape(&server).await;

    const N: u32 = 5;
    for _ in 0..N {
        let denied = server.check(&alice, &["orders:write"]).await;
        assert_verdict(&denied, 403, "missing_permission");
    }
    let after = scrape(&server).await;
    let grew = |series: &str| sample(&after, series) - sample(&before, series);
    assert_eq!(grew(verdict), f64::from(N), "{after}");
    assert_eq!(grew(&calls), f64::from(N), "{after}");
    assert_eq!(grew(&timed), f64::from(N), "{after}");
    // One cache lookup per check, answered from memory.
    let (hits, misses) = (
        grew("identityd_cache_hits_total"),
        grew("identityd_cache_misses_total"),
    );
    assert_eq!(hits + misses, f64::from(N), "{after}");
    assert!(hits >= 1.0, "{after}");
    assert!(sample(&after, "identityd_cache_entries") >= 1.0, "{after}");
    assert_eq!(
        sample(&after, "identityd_db_pool_max_connections"),
        16.0,
        "{after}"
    );
    assert!(sample(&after, "identityd_db_pool_connections") >= 1.0);
    for gauge in [
        "identityd_db_pool_idle_connections",
        "identityd_argon2_running",
        "identityd_argon2_waiting",
    ] {
        assert!(
            after.contains(&format!("\n{gauge} ")),
            "{gauge} in\n{after}"
        );
    }

    // Authenticate counts its verdicts too.
    let authenticated = server
        .identity()
        .await
        .authenticate(pb::AuthenticateRequest {
            authorization: alice.clone(),
            ..Default::default()
        })
        .await
        .expect("authenticate");
    assert_eq!(authenticated.into_inner().reason, "ok");
    let later = scrape(&server).await;
    assert_eq!(
        sample(
            &later,
            r#"identityd_verdicts_total{reason="ok",rpc="Authenticate"}"#
        ),
        1.0,
        "{later}"
    );
    server.stop().await;
}

async fn unknown_methods_share_one_label(backend: Backend) {
    let server = TestServer::start(backend).await;
    let channel = tonic::transport::Channel::from_shared(server.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    let mut grpc = tonic::client::Grpc::new(channel);
    for path in ["/identity.v1.Identity/Nope", "/no.Such/Service"] {
        grpc.ready().await.expect("ready");
        let answer = grpc
            .unary(
                tonic::Request::new(pb::GetJwksRequest {}),
                http::uri::PathAndQuery::from_static(path),
                tonic_prost::ProstCodec::<pb::GetJwksRequest, pb::GetJwksResponse>::default(),
            )
            .await;
        assert_eq!(
            answer.expect_err("no such method").code(),
            tonic::Code::Unimplemented
        );
    }
    let metrics = scrape(&server).await;
    assert_eq!(
        sample(
            &metrics,
            r#"identityd_grpc_requests_total{code="UNIMPLEMENTED",method="unknown"}"#
        ),
        2.0,
        "{metrics}"
    );
    assert!(!metrics.contains("Nope") && !metrics.contains("no.Such"));
    server.stop().await;
}

/// The keys as `Identity.GetJwks` lists them, as JSON.
async fn grpc_jwks(server: &TestServer) -> Value {
    let keys = server
        .identity()
        .await
        .get_jwks(pb::GetJwksRequest {})
        .await
        .expect("GetJwks")
        .into_inner()
        .keys;
    keys.into_iter()
        .map(|k| {
            serde_json::json!({
                "kty": k.kty, "crv": k.crv, "x": k.x, "kid": k.kid, "alg": k.alg, "use": k.r#use,
            })
        })
        .collect()
}

async fn http_jwks(server: &TestServer) -> Value {
    let response = get(server.http_addr, "/.well-known/jwks.json").await;
    assert_eq!(response.status, 200, "{}", response.body);
    assert_eq!(response.header("content-type"), Some("application/json"));
    let set: Value = serde_json::from_str(&response.body).expect("JSON");
    let keys = set["keys"].clone();
    assert!(keys.as_array().is_some_and(|k| !k.is_empty()), "{set}");
    for key in keys.as_array().into_iter().flatten() {
        assert_eq!(key["kty"], "OKP", "{key}");
        assert_eq!(key["crv"], "Ed25519", "{key}");
        assert_eq!(key["alg"], "EdDSA", "{key}");
        assert_eq!(key["use"], "sig", "{key}");
        assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()), "{key}");
        assert_eq!(key["x"].as_str().map(str::len), Some(43), "{key}");
    }
    keys
}

async fn jwks_is_get_jwks(backend: Backend) {
    let server = TestServer::start(backend).await;
    let first = http_jwks(&server).await;
    assert_eq!(first, grpc_jwks(&server).await);
    assert_eq!(first.as_array().map(Vec::len), Some(1));
    server
        .admin()
        .await
        .rotate_signing_key(as_admin(&server, pb::RotateSigningKeyRequest {}))
        .await
        .expect("rotate");
    let rotated = http_jwks(&server).await;
    assert_eq!(rotated, grpc_jwks(&server).await);
    assert_eq!(rotated.as_array().map(Vec::len), Some(2));
    server.stop().await;
}

on_both_backends!(
    liveness_and_routing,
    readiness_needs_every_migration,
    metrics_move_with_checks,
    unknown_methods_share_one_label,
    jwks_is_get_jwks,
);
