//! Replicas that agree: two servers on one PostgreSQL database, each with its own check
//! cache. A revocation made through one is refused by the other within a second (a
//! `LISTEN/NOTIFY` notice), and a replica whose listener connection dies recovers
//! without keeping a revoked credential alive. PostgreSQL only: SQLite serves one
//! process.

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
    let start = Instant::now();
    while listeners(db).await.len() < 2 {
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "listeners are back"
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
