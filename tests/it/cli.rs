//! The command line as an operator uses it: bootstrap and recovery without a server, bad
//! configuration refused before binding, graceful shutdown on SIGTERM.

use crate::binary::RunningBinary;
use crate::support::*;
use std::process::{Command, Output};

fn identityd(args: &[&str], env: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_identityd"))
        .args(args)
        .envs(env.iter().copied())
        .output()
        .expect("run identityd")
}

fn printed_token(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|l| {
            l.trim()
                .strip_prefix("api_token:")
                .map(|t| t.trim().to_owned())
        })
        .expect("a token was printed")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_bootstrap_and_token_recovery() {
    let db = TestDb::new(Backend::Sqlite).await;
    let url = db.url.clone();
    let migrate = identityd(&["migrate", "--database-url", &url], &[]);
    assert!(migrate.status.success(), "{migrate:?}");

    let first = identityd(
        &[
            "admin",
            "--database-url",
            &url,
            "bootstrap",
            "--username",
            "root",
        ],
        &[],
    );
    assert!(first.status.success(), "{first:?}");
    let old_token = printed_token(&first);
    let again = identityd(&["admin", "--database-url", &url, "bootstrap"], &[]);
    assert!(again.status.success());
    assert!(String::from_utf8_lossy(&again.stdout).contains("nothing to bootstrap"));

    let recovered = identityd(
        &[
            "admin",
            "--database-url",
            &url,
            "regenerate-token",
            "--username",
            "root",
        ],
        &[],
    );
    assert!(recovered.status.success(), "{recovered:?}");
    assert_ne!(old_token, printed_token(&recovered));
    // Clearing the old token's guessing limits fails: the token is replaced all the
    // same, so the new one is shown, with a warning.
    db.execute("ALTER TABLE guess_limits RENAME TO guess_limits_away")
        .await;
    let despite = identityd(
        &[
            "admin",
            "--database-url",
            &url,
            "regenerate-token",
            "--username",
            "root",
        ],
        &[],
    );
    db.execute("ALTER TABLE guess_limits_away RENAME TO guess_limits")
        .await;
    assert!(despite.status.success(), "{despite:?}");
    assert!(
        String::from_utf8_lossy(&despite.stderr).contains("could not clear the guessing limits"),
        "{despite:?}"
    );
    let new_token = printed_token(&despite);
    assert_ne!(old_token, new_token);
    let unknown = identityd(
        &[
            "admin",
            "--database-url",
            &url,
            "regenerate-token",
            "--username",
            "ghost",
        ],
        &[],
    );
    assert!(!unknown.status.success());
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("user 'ghost' not found"));

    let server = TestServer::start_on(db, |_| {}).await;
    assert!(server.admin_auth.is_empty(), "no second bootstrap");
    assert_verdict(
        &server
            .check(&basic("root", &old_token), &["users:read"])
            .await,
        401,
        "invalid_credentials",
    );
    assert_verdict(
        &server
            .check(&basic("root", &new_token), &["users:read"])
            .await,
        200,
        "ok",
    );
    server.stop().await;
}

/// When an attacker keeps the admin's API token blocked, the command line recovers:
/// `regenerate-token` gives a token that is not held back by the guesses at the old one,
/// and `clear-limit` ends any block, naming it as Admin.ClearGuessLimit does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_blocked_admin_is_recovered_from_the_command_line() {
    let server = TestServer::start(Backend::Sqlite).await;
    let wrong = basic("admin", &format!("idt_api_{}", "A".repeat(43)));
    for _ in 0..50 {
        server.check(&wrong, &["users:read"]).await;
    }
    assert_verdict(
        &server.check(&server.admin_auth, &["users:read"]).await,
        401,
        "invalid_credentials",
    );
    for _ in 0..10 {
        let login = crate::oauth_support::password_grant("nobody-at-all", "guess");
        let request = pb_with_address(login, "203.0.113.4");
        crate::oauth_support::issue(&server, request)
            .await
            .unwrap_err();
    }
    let url = server.db.url.clone();
    let admin = |args: &[&str]| {
        let mut all = vec!["admin", "--database-url", url.as_str()];
        all.extend_from_slice(args);
        identityd(&all, &[])
    };

    let recovered = admin(&["regenerate-token", "--username", "Admin"]);
    assert!(recovered.status.success(), "{recovered:?}");
    let token = printed_token(&recovered);
    assert_verdict(
        &server.check(&basic("admin", &token), &["users:read"]).await,
        200,
        "ok",
    );

    let refused = admin(&["clear-limit", "--secret", "pin", "--subject", "x"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("secret"));
    let none = admin(&["clear-limit", "--secret", "password", "--subject", "admin"]);
    assert!(none.status.success(), "{none:?}");
    assert!(String::from_utf8_lossy(&none.stdout).contains("nothing to clear"));
    // The blocked name that is no account's is listed by its pseudonym.
    let listed = server
        .admin()
        .await
        .list_guess_limits(authed(
            &basic("admin", &token),
            identityd::api::pb::ListGuessLimitsRequest {
                secret: "password".into(),
                ..Default::default()
            },
        ))
        .await
        .expect("list")
        .into_inner()
        .limits;
    let pseudonym = listed
        .iter()
        .find(|l| l.source == "203.0.113.4")
        .expect("the blocked address")
        .subject
        .clone();
    let cleared = admin(&[
        "clear-limit",
        "--secret",
        "password",
        "--subject",
        &pseudonym,
        "--source",
        "203.0.113.4",
    ]);
    assert!(cleared.status.success(), "{cleared:?}");
    assert!(String::from_utf8_lossy(&cleared.stdout).contains("cleared"));
    server.stop().await;
}

fn pb_with_address(
    request: identityd::api::pb::IssueTokenRequest,
    address: &str,
) -> identityd::api::pb::IssueTokenRequest {
    identityd::api::pb::IssueTokenRequest {
        client_address: address.into(),
        ..request
    }
}

/// Arguments, environment, and what the refusal must mention.
type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);

#[test]
fn bad_configuration_is_refused_with_one_clear_line() {
    let cases: [Case; 10] = [
        (
            &["serve", "--database-url", "mysql://x/y"],
            &[],
            "database URL",
        ),
        (
            &["serve"],
            &[("IDENTITYD_CACHE_TTL_SECS", "0")],
            "cache-ttl-secs",
        ),
        (&["serve", "--realm", "a\"b"], &[], "realm"),
        (&["serve", "--listen", "localhost"], &[], "listen"),
        // Replicas must share the master key: PostgreSQL without one is refused.
        (
            &["serve", "--database-url", "postgres://nobody@127.0.0.1:1/x"],
            &[],
            "IDENTITYD_MASTER_KEY",
        ),
        (
            &["serve"],
            &[("IDENTITYD_MASTER_KEY", "too-short")],
            "32 bytes in base64",
        ),
        (
            &["serve", "--access-token-ttl-secs", "5"],
            &[],
            "access-token-ttl-secs",
        ),
        (
            &["serve", "--listen", "127.0.0.1:0"],
            &[("IDENTITYD_BOOTSTRAP_API_TOKEN", "hunter2-hunter2")],
            "IDENTITYD_BOOTSTRAP_API_TOKEN must be",
        ),
        (
            &["serve", "--listen", "127.0.0.1:0", "--no-bootstrap"],
            &[("IDENTITYD_BOOTSTRAP_API_TOKEN", "hunter2-hunter2")],
            "set only one",
        ),
        // A URL clap refuses is not quoted back: it may hold a password.
        (
            &["migrate"],
            &[(
                "IDENTITYD_DATABASE_URL",
                "postgres://identityd:hunter2@127.0.0.1:5432/x\n",
            )],
            "invalid value for --database-url <DATABASE_URL>: the database URL contains control characters",
        ),
    ];
    for (args, env, needle) in cases {
        let out = identityd(args, env);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} {env:?} was accepted");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(!stderr.contains("hunter2"), "a secret was echoed: {stderr}");
        assert!(out.stdout.is_empty(), "nothing served or printed: {args:?}");
    }
    let unreachable = identityd(
        &[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--database-url",
            "postgres://nobody@127.0.0.1:1/x",
            "--db-acquire-timeout-secs",
            "1",
        ],
        &[("IDENTITYD_MASTER_KEY", TEST_MASTER_KEY)],
    );
    assert!(!unreachable.status.success());
    let stderr = String::from_utf8_lossy(&unreachable.stderr);
    assert!(
        stderr
            .lines()
            .last()
            .is_some_and(|l| l.starts_with("identityd: storage")),
        "{stderr}"
    );
}

#[test]
fn sigterm_drains_and_exits_cleanly() {
    let dir = tempfile::tempdir().expect("dir");
    let url = format!("sqlite://{}", dir.path().join("db.sqlite").display());
    let server = RunningBinary::start(&["--database-url", &url], &[]);
    assert!(server.address.starts_with("127.0.0.1:"));
    let (clean, log) = server.terminate();
    assert!(clean, "exit status after SIGTERM\n{log}");
    assert!(log.contains("server stopped"), "{log}");
}
