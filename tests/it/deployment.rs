//! What a deployment relies on: replicas that serve without migrating (a migration job
//! does that once per release), a first admin whose API token comes from a secret instead
//! of the log, and start-up refusals that never echo the secret.

use crate::on_both_backends;
use crate::support::*;
use identityd::domain::clock::SystemClock;
use identityd::server;
use secrecy::SecretString;
use std::sync::Arc;

/// A well-formed API token, as a chart would generate it (`idt_api_` + 43 of A-Za-z0-9).
const GIVEN_TOKEN: &str = "idt_api_Q8ypKZ3x7mWn2RtV5bLc9HdJ4fGs6AeYu1NkPo0Xi2T";

async fn refusal(config: &identityd::config::ServeConfig) -> String {
    match server::prepare(config, Arc::new(SystemClock)).await {
        Ok(_) => panic!("the start was accepted"),
        Err(e) => e.to_string(),
    }
}

async fn serving_without_migrating_needs_every_migration(backend: Backend) {
    let db = TestDb::new(backend).await;
    let mut config = test_config(&db.url);
    config.no_migrate = true;
    // Never migrated: refused, and nothing was created.
    let message = refusal(&config).await;
    assert!(
        message.starts_with(
            "the database lacks migrations of this release (it has never been migrated); \
             run `identityd migrate` first"
        ),
        "{message}"
    );

    // Migrated by someone else (the release's migration job), then served as is.
    let store = identityd::store::open(&db.url, &config.database.pool_settings())
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    // A database whose last migration did not complete is refused too.
    let last = "WHERE version = (SELECT MAX(version) FROM _sqlx_migrations)";
    db.execute(&format!(
        "UPDATE _sqlx_migrations SET success = FALSE {last}"
    ))
    .await;
    let message = refusal(&config).await;
    assert!(
        message.starts_with("the database lacks migrations of this release;"),
        "{message}"
    );
    db.execute(&format!(
        "UPDATE _sqlx_migrations SET success = TRUE {last}"
    ))
    .await;
    // A database a newer release migrated further (a rolling upgrade) is still served.
    db.execute(&format!(
        "INSERT INTO _sqlx_migrations \
         (version, description, installed_on, success, checksum, execution_time) \
         SELECT version + 1000000, 'from a newer release', installed_on, success, checksum, \
         execution_time FROM _sqlx_migrations {last}"
    ))
    .await;
    // `identityd migrate` of this older release leaves the newer migration alone.
    store
        .migrate()
        .await
        .expect("migrate a database that is ahead");
    let server = TestServer::start_on(db, |c| c.no_migrate = true).await;
    assert!(
        !server.admin_auth.is_empty(),
        "bootstrapped without migrating"
    );
    assert_verdict(
        &server.check(&server.admin_auth, &["users:read"]).await,
        200,
        "ok",
    );
    server.stop().await;
}

async fn first_admin_token_from_the_configuration(backend: Backend) {
    let db = TestDb::new(backend).await;
    let server = TestServer::start_on(db, |c| {
        c.bootstrap_api_token = Some(SecretString::from(GIVEN_TOKEN));
    })
    .await;
    assert_eq!(server.admin_auth, basic("admin", GIVEN_TOKEN));
    assert_verdict(
        &server
            .check(&basic("admin", GIVEN_TOKEN), &["users:write"])
            .await,
        200,
        "ok",
    );
    // Users exist now: another replica given another token creates nothing, and that
    // token opens nothing.
    let other = "idt_api_zzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzzz";
    let mut config = test_config(&server.db.url);
    config.bootstrap_api_token = Some(SecretString::from(other));
    let again = server::prepare(&config, Arc::new(SystemClock))
        .await
        .expect("second start");
    assert!(again.bootstrap.is_none());
    assert_verdict(
        &server.check(&basic("admin", other), &["users:read"]).await,
        401,
        "invalid_credentials",
    );
    server.stop().await;
}

on_both_backends!(
    serving_without_migrating_needs_every_migration,
    first_admin_token_from_the_configuration
);

/// A token that is not shaped like an API token is refused before anything is stored, and
/// the refusal does not repeat it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bootstrap_tokens_are_refused() {
    let db = TestDb::new(Backend::Sqlite).await;
    for bad in [
        "correct-horse-battery-staple",
        "idt_api_short",
        "idt_app_Q8ypKZ3x7mWn2RtV5bLc9HdJ4fGs6AeYu1NkPo0Xi2T",
        "idt_api_Q8ypKZ3x7mWn2RtV5bLc9HdJ4fGs6AeYu1NkPo0Xi2+",
        "idt_api_Q8ypKZ3x7mWn2RtV5bLc9HdJ4fGs6AeYu1NkPo0Xi2T\n",
        "",
    ] {
        let mut config = test_config(&db.url);
        config.bootstrap_api_token = Some(SecretString::from(bad));
        let message = refusal(&config).await;
        assert!(
            message.starts_with("IDENTITYD_BOOTSTRAP_API_TOKEN must be `idt_api_`"),
            "{bad:?}: {message}"
        );
        assert!(bad.is_empty() || !message.contains(bad), "{message}");
    }
    // Refused before the database was touched: a later start still bootstraps.
    let server = TestServer::start_on(db, |_| {}).await;
    assert!(!server.admin_auth.is_empty());
    server.stop().await;
}
