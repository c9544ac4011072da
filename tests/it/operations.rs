//! Operating the service: health, bootstrap, fail-closed on storage outage, load generator.

use crate::on_both_backends;
use crate::support::*;
use identityd::api::pb;
use identityd::domain::clock::SystemClock;
use identityd::loadgen::{LoadRpc, LoadgenConfig, TokenScheme};
use identityd::server;
use sqlx::Connection;
use std::sync::Arc;
use tonic::Code;

async fn health_reports_serving(backend: Backend) {
    let server = TestServer::start(backend).await;
    for service in ["", "identity.v1.Identity", "identity.v1.Admin", "liveness"] {
        // The storage watcher reports within moments of start.
        let status = await_health(
            &server.url(),
            service,
            ServingStatus::Serving,
            std::time::Duration::from_millis(2500),
        )
        .await;
        assert_eq!(status, ServingStatus::Serving, "{service:?}");
    }
    server.stop().await;
}

/// Bootstrap happens once: a second start on the same database creates nothing.
async fn bootstrap_only_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    let config = test_config(&server.db.url);
    let again = server::prepare(&config, Arc::new(SystemClock))
        .await
        .expect("second prepare");
    assert!(again.bootstrap.is_none());
    // The first admin's token still works.
    assert_verdict(
        &server.check(&server.admin_auth, &["users:write"]).await,
        200,
        "ok",
    );
    server.stop().await;
}

async fn load_generator_reports(backend: Backend) {
    let server = TestServer::start(backend).await;
    let auth = server
        .user_with_role("loader", "reader", &["orders:read", "order_statuses:read"])
        .await;
    let mut config = LoadgenConfig {
        target: server.url(),
        rpc: LoadRpc::Check,
        authorization: auth,
        permissions: vec!["orders:read".into()],
        route: None,
        scope: String::new(),
        login: None,
        password: String::new(),
        login_scheme: TokenScheme::Jwt,
        concurrency: 4,
        connections: 2,
        duration_secs: 1,
    };
    let report = identityd::loadgen::drive(&config).await.expect("drive");
    assert!(
        report.ok > 0 && report.allowed == report.ok && report.errors == 0,
        "{report}"
    );
    assert!(
        report.p50 <= report.p99 && report.p99 <= report.max,
        "{report}"
    );
    // The same with a JWT access token from a password login.
    server
        .admin()
        .await
        .set_user_password(as_admin(
            &server,
            pb::SetUserPasswordRequest {
                username: "loader".into(),
                password: "load generator password".into(),
            },
        ))
        .await
        .expect("set password");
    // With a scoped token, checking a route of the policy.
    let jwt = LoadgenConfig {
        login: Some("loader".into()),
        password: "load generator password".into(),
        authorization: String::new(),
        scope: "read_orders".into(),
        route: Some("GET /api/v1/orders/17".into()),
        ..config.clone()
    };
    let report = identityd::loadgen::drive(&jwt)
        .await
        .expect("drive with JWT");
    assert!(
        report.ok > 0 && report.allowed == report.ok && report.errors == 0,
        "{report}"
    );
    let wrong = LoadgenConfig {
        password: "wrong password".into(),
        ..jwt
    };
    let refused = identityd::loadgen::drive(&wrong)
        .await
        .expect_err("bad login");
    assert!(refused.to_string().contains("login failed"), "{refused}");
    config.rpc = LoadRpc::Health;
    let baseline = identityd::loadgen::drive(&config)
        .await
        .expect("drive health");
    assert!(baseline.ok > 0 && baseline.errors == 0, "{baseline}");
    config.target = "http://192.0.2.1:50051".into();
    assert!(
        identityd::loadgen::drive(&config).await.is_err(),
        "non-loopback targets are refused"
    );
    server.stop().await;
}

on_both_backends!(
    health_reports_serving,
    bootstrap_only_once,
    load_generator_reports
);

/// With the database gone, cold credentials get UNAVAILABLE (never an allow), warm ones
/// are still answered from memory, and service resumes when the database returns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_fails_closed() {
    let server = TestServer::start_with(Backend::Postgres, |c| {
        c.database.db_acquire_timeout_secs = 1
    })
    .await;
    let warm = server
        .user_with_role("warm", "reader", &["orders:read"])
        .await;
    let cold = server.user_with_roles("cold", &["reader"], false).await;
    assert_verdict(&server.check(&warm, &["orders:read"]).await, 200, "ok");

    let db_name = server.db.url.rsplit('/').next().expect("name").to_owned();
    let mut pg = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .expect("pg");
    let set_connections = |allow: bool| {
        sqlx::AssertSqlSafe(format!(
            "ALTER DATABASE {db_name} ALLOW_CONNECTIONS {allow}"
        ))
    };
    sqlx::query(set_connections(false))
        .execute(&mut pg)
        .await
        .expect("block");
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&db_name)
        .execute(&mut pg)
        .await
        .expect("terminate");

    let mut identity = server.identity().await;
    let request = |auth: &str| pb::CheckPermissionRequest {
        authorization: auth.into(),
        permissions: vec!["orders:read".into()],
        ..Default::default()
    };
    let status = identity
        .check_permission(request(&cold))
        .await
        .expect_err("cold check must fail closed");
    assert_eq!(status.code(), Code::Unavailable);
    assert!(
        !status.message().contains("sqlx") && !status.message().contains(&db_name),
        "{}",
        status.message()
    );
    assert_verdict(&server.check(&warm, &["orders:read"]).await, 200, "ok");
    // Readiness follows the database; liveness does not, so probes never restart
    // replicas that are waiting for it.
    let wait = std::time::Duration::from_secs(12);
    let ready = await_health(&server.url(), "", ServingStatus::NotServing, wait).await;
    assert_eq!(ready, ServingStatus::NotServing);
    let alive = await_health(&server.url(), "liveness", ServingStatus::Serving, wait).await;
    assert_eq!(alive, ServingStatus::Serving);
    assert_status(
        server
            .admin()
            .await
            .list_users(as_admin(&server, pb::ListUsersRequest::default()))
            .await,
        Code::Unavailable,
        "retry",
    );

    sqlx::query(set_connections(true))
        .execute(&mut pg)
        .await
        .expect("unblock");
    assert_verdict(&server.check(&cold, &["orders:read"]).await, 200, "ok");
    server.stop().await;
}
