//! One unambiguous namespace for login identifiers, through the real server: usernames
//! are canonical (lower case), no username equals another username or any other user's
//! email, look-alikes are refused with their reason, the password grant finds exactly
//! the one user a name or email names, and a database that already holds clashing names
//! is reported by the migration instead of silently picking one.

use crate::oauth_support::*;
use crate::on_both_backends;
use crate::support::*;
use identityd::api::pb;
use identityd::domain::names::login_key;
use identityd::store::{self, Store};
use tonic::Code;

fn user(username: &str, email: &str) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        username: username.into(),
        email: email.into(),
        ..Default::default()
    }
}

async fn try_create(
    server: &TestServer,
    request: pb::CreateUserRequest,
) -> Result<pb::User, tonic::Status> {
    admin_call(server, &server.admin_auth, request, async |a, r| {
        a.create_user(r).await
    })
    .await
}

/// `ADMIN` cannot be created next to `admin`; a name given in any case is stored in lower
/// case and found in any case.
async fn usernames_ignore_case(backend: Backend) {
    let server = TestServer::start(backend).await;
    assert_status(
        try_create(&server, user("ADMIN", "")).await,
        Code::AlreadyExists,
        "user 'admin'",
    );
    let alice = try_create(&server, user("Alice.Smith", ""))
        .await
        .expect("created");
    assert_eq!(alice.username, "alice.smith");
    assert_eq!(
        get_user(&server, "ALICE.SMITH").await.expect("found").id,
        alice.id
    );
    assert_status(
        try_create(&server, user("alice.SMITH", "")).await,
        Code::AlreadyExists,
        "user 'alice.smith'",
    );
    server.stop().await;
}

/// A username can never equal another user's email, nor an email another user's
/// username, on creation or on change; a user's own username may be its email.
async fn usernames_and_emails_share_one_namespace(backend: Backend) {
    let server = TestServer::start(backend).await;
    try_create(&server, user("victim", "victim@example.com"))
        .await
        .expect("victim");
    assert_status(
        try_create(&server, user("Victim@Example.com", "")).await,
        Code::AlreadyExists,
        "email 'victim@example.com'",
    );
    assert_status(
        try_create(&server, user("mallory", "VICTIM@example.com")).await,
        Code::AlreadyExists,
        "a user with this email",
    );
    assert_status(
        try_create(&server, user("mallory", "victim")).await,
        Code::InvalidArgument,
        "email",
    );
    try_create(&server, user("bob@example.com", ""))
        .await
        .expect("a username with @");
    assert_status(
        try_create(&server, user("carol", "Bob@Example.com")).await,
        Code::AlreadyExists,
        "this email as username",
    );
    try_create(&server, user("carol", "")).await.expect("carol");
    assert_status(
        update_user(
            &server,
            pb::UpdateUserRequest {
                username: "carol".into(),
                email: Some("bob@EXAMPLE.com".into()),
                ..Default::default()
            },
        )
        .await,
        Code::AlreadyExists,
        "this email as username",
    );
    // Its own username as its email is no clash, and an email that is given up is free.
    try_create(&server, user("dave@example.com", "Dave@example.com"))
        .await
        .expect("own username as email");
    update_user(
        &server,
        pb::UpdateUserRequest {
            username: "victim".into(),
            email: Some(String::new()),
            ..Default::default()
        },
    )
    .await
    .expect("clear the email");
    try_create(&server, user("victim@example.com", ""))
        .await
        .expect("the freed email as a username");
    server.stop().await;
}

/// The password grant logs in the one user a name or email names, in any case: a
/// username that looks like someone's email can no longer shadow them.
async fn a_login_names_exactly_one_user(backend: Backend) {
    let server = TestServer::start(backend).await;
    let victim = user_with_password(&server, "victim", &["orders:read"]).await;
    update_user(
        &server,
        pb::UpdateUserRequest {
            username: "victim".into(),
            email: Some("Victim@Example.com".into()),
            ..Default::default()
        },
    )
    .await
    .expect("email");
    for typed in [
        "victim",
        "VICTIM",
        "victim@example.com",
        "VICTIM@EXAMPLE.COM",
    ] {
        let tokens = login(&server, typed, PASSWORD).await;
        assert_eq!(
            claims_of(&tokens.access_token)["sub"],
            victim.id.as_str(),
            "{typed}"
        );
    }
    server.stop().await;
}

/// Look-alike and invisible characters are refused at creation, each with its reason.
async fn look_alikes_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let rows = [
        (user("\u{ff41}dmin", ""), "fullwidth"),
        (user("\u{430}dmin", ""), "other scripts"),
        (user("ad\u{200b}min", ""), "invisible"),
        (user("admin\u{202e}", ""), "invisible"),
        (user("ad\u{0}min", ""), "control"),
        (user("ad min", ""), "spaces"),
        (user("zoe", "p\u{430}ypal@example.com"), "scripts"),
        (user("zoe", "zoe\u{200d}@example.com"), "invisible"),
        (user("zoe", "\u{ff5a}oe@example.com"), "fullwidth"),
    ];
    for (request, why) in rows {
        let shown = format!("{:?} {:?}", request.username, request.email);
        let status = try_create(&server, request).await.expect_err(&shown);
        assert_eq!(status.code(), Code::InvalidArgument, "{shown}: {status:?}");
        assert!(
            status.message().contains(why),
            "{shown}: {}",
            status.message()
        );
    }
    server.stop().await;
}

/// Simulates a database migrated by the previous release: the login-name migration and
/// those after it are undone, so users can be inserted as that release allowed.
async fn previous_release_database(backend: Backend) -> TestDb {
    let db = TestDb::new(backend).await;
    let store = store::open(&db.url, &test_config(&db.url).database.pool_settings())
        .await
        .expect("open");
    store.migrate().await.expect("migrate");
    drop(store);
    for statement in [
        "DROP TABLE guess_limits",
        "DROP TABLE audit_events",
        "DROP TABLE login_names",
        "DELETE FROM _sqlx_migrations WHERE version >= 5",
    ] {
        db.execute(statement).await;
    }
    db
}

async fn insert_user(db: &TestDb, id: &str, username: &str, email: Option<&str>) {
    let email = email.map_or("NULL".to_owned(), |e| format!("'{e}'"));
    db.execute(&format!(
        "INSERT INTO users (id, username, email, is_staff, is_customer, active, api_access, \
                            created_at, updated_at) \
         VALUES ('{id}', '{username}', {email}, FALSE, TRUE, TRUE, FALSE, 1, 1)"
    ))
    .await;
}

async fn migrate(db: &TestDb) -> Result<(), String> {
    let store: std::sync::Arc<dyn Store> =
        store::open(&db.url, &test_config(&db.url).database.pool_settings())
            .await
            .expect("open");
    store.migrate().await.map_err(|e| e.to_string())
}

/// Clashing names are reported by the migration, naming every pair, and nothing is
/// changed; once they are resolved, the migration applies and names become canonical.
/// Emails are compared once normalised: the previous release lower-cased them but kept
/// their composition, so `rene\u{301}` and `ren\u{e9}` were two emails there.
async fn the_migration_reports_clashing_names(backend: Backend) {
    let db = previous_release_database(backend).await;
    insert_user(&db, "u1", "Admin2", None).await;
    insert_user(&db, "u2", "admin2", None).await;
    insert_user(&db, "u3", "alice", Some("bob@example.com")).await;
    insert_user(&db, "u4", "Bob@Example.com", None).await;
    insert_user(&db, "u5", "Carol", Some("carol@example.com")).await;
    insert_user(&db, "u6", "rene", Some("rene\u{301}@example.com")).await;
    insert_user(&db, "u7", "rene2", Some("ren\u{e9}@example.com")).await;
    let report = migrate(&db).await.expect_err("clashes are refused");
    for needle in [
        "usernames 'Admin2' and 'admin2' differ only in case",
        "username 'Bob@Example.com' is the email of user 'alice'",
        "users 'rene' and 'rene2' have the same email once normalised ('ren\u{e9}@example.com')",
        "migrate again",
    ] {
        assert!(report.contains(needle), "{report}");
    }
    // Refused whole: still the previous release's schema.
    assert!(migrate(&db).await.is_err());
    db.execute("DELETE FROM users WHERE id IN ('u1', 'u4', 'u7')")
        .await;
    migrate(&db).await.expect("no clash left");
    let server = TestServer::start_on(db, |_| {}).await;
    let admin = server.admin_auth.clone();
    assert!(admin.is_empty(), "users exist: no bootstrap");
    drop(server);
}

/// After the migration, old mixed-case names log in and are listed in canonical form,
/// and an email the previous release stored decomposed (NFD) is stored composed (NFC),
/// so it is found however it is typed.
async fn migrated_names_are_canonical(backend: Backend) {
    let db = previous_release_database(backend).await;
    insert_user(&db, "u1", "Carol", Some("carol@example.com")).await;
    insert_user(&db, "u2", "rene", Some("rene\u{301}@example.com")).await;
    migrate(&db).await.expect("migrate");
    let store = store::open(&db.url, &test_config(&db.url).database.pool_settings())
        .await
        .expect("open");
    let carol = store.get_user("carol").await.expect("canonical");
    assert_eq!(carol.username, "carol");
    let by_email = store
        .find_login("carol@example.com")
        .await
        .expect("lookup")
        .expect("found by email");
    assert_eq!(by_email.id, "u1");
    let rene = store.get_user("rene").await.expect("rene");
    assert_eq!(rene.email.as_deref(), Some("ren\u{e9}@example.com"));
    for typed in [
        "Ren\u{e9}@example.com",
        "REN\u{c9}@EXAMPLE.COM",
        "rene\u{301}@example.com",
    ] {
        let found = store
            .find_login(&login_key(typed))
            .await
            .expect("lookup")
            .unwrap_or_else(|| panic!("found by {typed:?}"));
        assert_eq!(found.id, "u2", "{typed:?}");
    }
}

on_both_backends!(
    usernames_ignore_case,
    usernames_and_emails_share_one_namespace,
    a_login_names_exactly_one_user,
    look_alikes_are_refused,
    the_migration_reports_clashing_names,
    migrated_names_are_canonical,
);
