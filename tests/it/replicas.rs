//! Replicas that agree: two servers on one PostgreSQL database, each with its own check
//! cache. A revocation made through one is refused by the other within a second (a
//! `LISTEN/NOTIFY` notice), and a replica whose listener connection dies recovers
//! without keeping a revoked credential alive. In-process servers for the details, two
//! `identityd` processes for the whole. PostgreSQL only: SQLite serves one process.

use crate::oauth_support::*;
use crate::support::*;
use sqlx::Connection;
use std::time::{Duration, Instant};

/// How long a notice may take to reach the other replica.
const WITHIN: Duration = Duration::from_secs(1);

/// Polls `server` until `authorization` is refused with 401; returns how long it took,
/// or panics after `limit`.
async fn refused_within(server: &TestServer, authorization: &str, limit: Duration) -> Duration {
    let start = Instant::now();
    loop {
        let checked = server.check(authorization, &["orders:read"]).await;
        if checked.http_status == 401 {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < limit,
            "still {} after {limit:?}: {checked:?}",
            checked.http_status
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Allowed, and answered from `server`'s cache.
async fn assert_cached(server: &TestServer, authorization: &str) {
    assert_verdict(
        &server.check(authorization, &["orders:read"]).await,
        200,
        "ok",
    );
    let hits = server.cache.stats().hits;
    assert_verdict(
        &server.check(authorization, &["orders:read"]).await,
        200,
        "ok",
    );
    assert!(server.cache.stats().hits > hits, "a warm entry");
}

/// The backends listening for notices on `db` (every replica's listener).
async fn listeners(db: &TestDb) -> Vec<i32> {
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query_scalar(
        "SELECT pid FROM pg_stat_activity \
         WHERE datname = current_database() AND query ILIKE 'LISTEN%'",
    )
    .fetch_all(&mut conn)
    .await
    .unwrap()
}

/// Kills every listener connection on `db`, as a network fault or a DBA would.
async fn kill_listeners(db: &TestDb) {
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    for pid in listeners(db).await {
        sqlx::query("SELECT pg_terminate_backend($1)")
            .bind(pid)
            .execute(&mut conn)
            .await
            .unwrap();
    }
}

/// Waits until both replicas listen again.
async fn both_listening(db: &TestDb) {
    listening(db, 2).await;
}

/// Waits until `n` servers listen on `db`.
async fn listening(db: &TestDb, n: usize) {
    let start = Instant::now();
    while listeners(db).await.len() < n {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "listeners are up"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revocation_on_one_replica_reaches_the_other_within_a_second() {
    let mut a = TestServer::start(Backend::Postgres).await;
    let old = a.user_with_role("reader", "reader", &["orders:read"]).await;
    user_with_password(&a, "bob", &["orders:read"]).await;
    let b = a.replica(Backend::Postgres).await;
    both_listening(&b.db).await;

    // RegenerateApiToken on A; B has the old token cached.
    assert_cached(&b, &old).await;
    regenerate_api_token(&a, "reader")
        .await
        .expect("regenerate");
    let took = refused_within(&b, &old, WITHIN).await;
    eprintln!("B refused the regenerated token after {took:?}");

    // A session revoked on A; a role taken on A.
    let session = login(&a, "bob", PASSWORD).await;
    let token = bearer(&session.access_token);
    assert_cached(&b, &token).await;
    revoke_plain(&a, &session.access_token, "access_token")
        .await
        .expect("revoke");
    refused_within(&b, &token, WITHIN).await;

    let fresh = login(&a, "bob", PASSWORD).await;
    let token = bearer(&fresh.access_token);
    assert_cached(&b, &token).await;
    unassign_role(&a, "bob", "bob-role").await;
    let start = Instant::now();
    loop {
        let checked = b.check(&token, &["orders:read"]).await;
        if checked.reason == "missing_permission" {
            break;
        }
        assert!(start.elapsed() < WITHIN, "B still allows: {checked:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    b.stop().await;
    a.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replica_that_loses_its_listener_recovers_and_keeps_refusing() {
    let mut a = TestServer::start(Backend::Postgres).await;
    let first = a.user_with_role("reader", "reader", &["orders:read"]).await;
    let bystander = a.user_with_roles("bystander", &["reader"], false).await;
    let b = a.replica(Backend::Postgres).await;
    both_listening(&b.db).await;
    assert_cached(&b, &first).await;
    assert_cached(&b, &bystander).await;

    // The listeners die and the token is regenerated at once: B may miss the notice,
    // but it empties its cache when it listens again, so it refuses the old token.
    kill_listeners(&b.db).await;
    let second = regenerate_api_token(&a, "reader")
        .await
        .expect("regenerate")
        .api_token;
    refused_within(&b, &first, Duration::from_secs(5)).await;
    both_listening(&b.db).await;
    // Listening again, B drops its whole cache: even untouched entries are read anew.
    let misses = b.cache.stats().misses;
    let start = Instant::now();
    loop {
        assert_verdict(&b.check(&bystander, &["orders:read"]).await, 200, "ok");
        if b.cache.stats().misses > misses {
            break;
        }
        assert!(start.elapsed() < WITHIN, "the cache was not emptied");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    // Listening again: the next revocation arrives as a notice.
    let second = basic("reader", &second);
    assert_cached(&b, &second).await;
    regenerate_api_token(&a, "reader")
        .await
        .expect("regenerate");
    refused_within(&b, &second, WITHIN).await;
    assert_verdict(
        &b.check(&first, &["orders:read"]).await,
        401,
        "invalid_credentials",
    );
    b.stop().await;
    a.stop().await;
}

/// Gets a connected client of `address` (`127.0.0.1:port`).
async fn channel(address: &str) -> tonic::transport::Channel {
    tonic::transport::Channel::from_shared(format!("http://{address}"))
        .unwrap()
        .connect()
        .await
        .unwrap()
}

/// The same, with two `identityd` processes: a regenerated API token is refused by the
/// other process within a second, also after its listener connection was killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_agree() {
    use crate::binary::RunningBinary;
    use identityd::api::pb::{self, admin_client::AdminClient, identity_client::IdentityClient};

    let db = TestDb::new(Backend::Postgres).await;
    let args = ["--database-url", db.url.as_str()];
    let env = [("IDENTITYD_MASTER_KEY", TEST_MASTER_KEY)];
    let a = RunningBinary::start(&args, &env);
    let b = RunningBinary::start_replica(&args, &env);
    let admin = a
        .admin_header
        .trim_start_matches("authorization: ")
        .to_owned();
    let mut admin_a = AdminClient::new(channel(&a.address).await);
    let mut identity_a = IdentityClient::new(channel(&a.address).await);
    let mut identity_b = IdentityClient::new(channel(&b.address).await);

    admin_a
        .create_role(authed(
            &admin,
            pb::CreateRoleRequest {
                name: "reader".into(),
                permissions: vec!["orders:read".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    admin_a
        .create_user(authed(
            &admin,
            pb::CreateUserRequest {
                username: "reader".into(),
                roles: vec!["reader".into()],
                ..Default::default()
            },
        ))
        .await
        .unwrap();
    let token = admin_a
        .set_api_access(authed(
            &admin,
            pb::SetApiAccessRequest {
                username: "reader".into(),
                enabled: true,
            },
        ))
        .await
        .unwrap()
        .into_inner()
        .api_token;
    let regenerate = async |identity: &mut IdentityClient<_>| {
        let request = pb::RegenerateApiTokenRequest {
            username: "reader".into(),
        };
        identity
            .regenerate_api_token(authed(&admin, request))
            .await
            .unwrap()
            .into_inner()
            .api_token
    };
    // Polls B until `token` is refused; panics after `limit`.
    let refused_by_b = async |identity: &mut IdentityClient<_>, token: &str, limit: Duration| {
        let request = || pb::CheckPermissionRequest {
            authorization: basic("reader", token),
            permissions: vec!["orders:read".into()],
            ..Default::default()
        };
        let start = Instant::now();
        loop {
            let checked = identity.check_permission(request()).await.unwrap();
            if checked.get_ref().http_status == 401 {
                return start.elapsed();
            }
            assert!(start.elapsed() < limit, "B still allows after {limit:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let allowed_by_b = async |identity: &mut IdentityClient<_>, token: &str| {
        for _ in 0..2 {
            let request = pb::CheckPermissionRequest {
                authorization: basic("reader", token),
                permissions: vec!["orders:read".into()],
                ..Default::default()
            };
            let checked = identity.check_permission(request).await.unwrap();
            assert_eq!(checked.get_ref().http_status, 200);
        }
    };

    allowed_by_b(&mut identity_b, &token).await;
    let second = regenerate(&mut identity_a).await;
    let took = refused_by_b(&mut identity_b, &token, WITHIN).await;
    eprintln!("process B refused the regenerated token after {took:?}");

    kill_listeners(&db).await;
    both_listening(&db).await;
    allowed_by_b(&mut identity_b, &second).await;
    regenerate(&mut identity_a).await;
    refused_by_b(&mut identity_b, &second, WITHIN).await;
    refused_by_b(&mut identity_b, &token, WITHIN).await;
    b.stop();
    a.stop();
}

/// `identityd admin regenerate-token` works on the database directly, and tells the
/// running servers as they would tell each other.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_recovery_command_tells_running_servers() {
    let server = TestServer::start(Backend::Postgres).await;
    let old = server
        .user_with_role("reader", "reader", &["orders:read"])
        .await;
    listening(&server.db, 1).await;
    assert_cached(&server, &old).await;
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_identityd"))
        .args(["admin", "--database-url", &server.db.url])
        .args(["regenerate-token", "--username", "reader"])
        .output()
        .expect("run identityd");
    assert!(output.status.success(), "{output:?}");
    refused_within(&server, &old, WITHIN).await;
    server.stop().await;
}
