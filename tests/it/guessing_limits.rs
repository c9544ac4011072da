//! Guessing limits on every secret that can be guessed, through the real server: the
//! password grant (per account, and per client address), client secrets on every grant
//! that checks them, and API tokens under Basic on every check path. A parallel burst
//! gets exactly the tries of a sequential run, a right secret during a block gets the
//! same answer as a wrong one, blocks end by themselves or through Admin, and replicas
//! share the counts.

use crate::ext_authz::{envoy_request, peer, send};
use crate::oauth_support::*;
use crate::on_both_backends;
use crate::ops_http::{sample, scrape};
use crate::support::*;
use envoy_types::ext_authz::v3::pb::{CheckResponse, HttpResponse};
use identityd::api::pb;
use identityd::domain::clock::Clock;
use tonic::{Code, Status};

/// The defaults: 50 failures per account per hour, 10 per account and address per 15
/// minutes, blocks of at least a minute.
const ACCOUNT_FAILURES: usize = 50;
const SOURCE_FAILURES: usize = 10;
const WRONG: &str = "wrong horse battery staple";

/// An API token of the right shape that no user holds.
fn wrong_token(fill: char) -> String {
    format!("idt_api_{}", fill.to_string().repeat(43))
}

fn login_from(username: &str, password: &str, address: &str) -> pb::IssueTokenRequest {
    pb::IssueTokenRequest {
        client_address: address.into(),
        ..password_grant(username, password)
    }
}

async fn clear(server: &TestServer, secret: &str, subject: &str, source: &str) -> bool {
    let request = pb::ClearGuessLimitRequest {
        secret: secret.into(),
        subject: subject.into(),
        source: source.into(),
    };
    admin_call(server, &server.admin_auth, request, async |a, r| {
        a.clear_guess_limit(r).await
    })
    .await
    .expect("clear guess limit")
    .cleared
}

async fn audit_events(server: &TestServer, target: &str, action: &str) -> Vec<pb::AuditEvent> {
    let request = pb::ListAuditEventsRequest {
        target: target.into(),
        action: action.into(),
        page_size: 1000,
        ..Default::default()
    };
    admin_call(server, &server.admin_auth, request, async |a, r| {
        a.list_audit_events(r).await
    })
    .await
    .expect("list audit events")
    .events
}

async fn audit_outcomes(server: &TestServer, target: &str, action: &str) -> Vec<String> {
    audit_events(server, target, action)
        .await
        .into_iter()
        .map(|e| e.outcome)
        .collect()
}

/// Attempts of `secret` refused unchecked, by the metric.
async fn limited_metric(server: &TestServer, secret: &str) -> f64 {
    let metrics = scrape(server).await;
    sample(
        &metrics,
        &format!("identityd_guess_limited_total{{secret=\"{secret}\"}}"),
    )
}

fn count(items: &[String], what: &str) -> usize {
    items.iter().filter(|i| *i == what).count()
}

/// The code, reason and message of a refusal: a right secret during a block must get
/// exactly what a wrong one gets.
fn refusal<T: std::fmt::Debug>(result: Result<T, Status>) -> (Code, String, String) {
    let status = result.expect_err("refused");
    (
        status.code(),
        error_reason(&status),
        status.message().to_owned(),
    )
}

/// After 50 wrong passwords the right one is refused exactly like a wrong one, the
/// block shows in ListGuessLimits and the audit log, it ends by itself, and the count
/// starts again after it.
async fn password_guessing_is_limited(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "alice", &["orders:read"]).await;
    let wrong = refusal(try_login(&server, "alice", WRONG).await);
    assert_eq!(wrong.1, "invalid_grant");
    for _ in 1..ACCOUNT_FAILURES {
        assert_eq!(refusal(try_login(&server, "alice", WRONG).await), wrong);
    }
    // The 51st attempt is refused unchecked, the right password too, and identically.
    assert_eq!(refusal(try_login(&server, "alice", PASSWORD).await), wrong);
    // Typed as the email or in another case, it is the same account and the same count.
    assert_eq!(refusal(try_login(&server, "ALICE", PASSWORD).await), wrong);

    let listed = guess_limits(&server, "password", "alice").await;
    let now = server.clock.now();
    let account = listed
        .iter()
        .find(|l| l.source.is_empty())
        .expect("the account's counter");
    assert!(account.blocked_until > now, "{account:?}");
    let outcomes = audit_outcomes(&server, "user:alice", "login").await;
    assert_eq!(
        count(&outcomes, "failure"),
        ACCOUNT_FAILURES,
        "{outcomes:?}"
    );
    // Refused attempts are recorded once a minute per counter; the metric counts both.
    assert_eq!(count(&outcomes, "limited"), 1, "{outcomes:?}");
    assert_eq!(limited_metric(&server, "password").await, 2.0);
    assert_eq!(
        audit_outcomes(&server, "password:alice", "limit.set").await,
        ["success"]
    );

    // The block ends by itself; then the right password works again.
    server.clock.advance(account.blocked_until - now);
    login(&server, "alice", PASSWORD).await;
    server.stop().await;
}

/// Wrong guesses from one address block that address after 10, while the account's
/// owner logs in from another; clearing the counter ends the block at once; a right
/// password forgives its address the failures before it.
async fn one_address_is_stopped_without_locking_the_owner_out(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "bob", &["orders:read"]).await;
    let attacker = "203.0.113.66";
    for _ in 0..SOURCE_FAILURES {
        assert_oauth_error(
            issue(&server, login_from("bob", WRONG, attacker)).await,
            Code::Unauthenticated,
            "invalid_grant",
        );
    }
    assert_oauth_error(
        issue(&server, login_from("bob", PASSWORD, attacker)).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    // IPv6 clients are counted by their /64: another address in it is the same source.
    issue(&server, login_from("bob", PASSWORD, "2001:db8:1:2::10"))
        .await
        .expect("the owner, elsewhere");
    issue(&server, login_from("bob", PASSWORD, "198.51.100.1"))
        .await
        .expect("the owner, elsewhere again");
    try_login(&server, "bob", PASSWORD)
        .await
        .expect("a caller passing no address is not that source");

    let listed = guess_limits(&server, "password", "bob").await;
    let source = listed
        .iter()
        .find(|l| l.source == attacker)
        .expect("the attacker's counter");
    assert!(source.blocked_until > server.clock.now(), "{source:?}");
    assert!(clear(&server, "password", "bob", attacker).await);
    assert!(!clear(&server, "password", "bob", attacker).await, "gone");
    issue(&server, login_from("bob", PASSWORD, attacker))
        .await
        .expect("cleared");
    let cleared = audit_events(&server, "password:bob", "limit.clear").await;
    assert_eq!(cleared.len(), 1);
    assert_eq!(cleared[0].details, format!(r#"{{"source":"{attacker}"}}"#));

    // An owner's typos: nine wrong, then right, forgive the address its failures, so
    // nine more typos still do not block it.
    let home = "192.0.2.44";
    for _ in 0..2 {
        for _ in 1..SOURCE_FAILURES {
            issue(&server, login_from("bob", WRONG, home))
                .await
                .unwrap_err();
        }
        issue(&server, login_from("bob", PASSWORD, home))
            .await
            .expect("the owner at home, after typos");
    }
    server.stop().await;
}

/// 150 wrong passwords at once are checked exactly 50 times, and the right one after
/// them is refused: concurrency buys no extra tries.
async fn a_parallel_burst_gets_no_more_tries(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "carol", &["orders:read"]).await;
    let burst: Vec<_> = (0..150)
        .map(|_| {
            let channel = server.url();
            tokio::spawn(async move {
                let mut identity =
                    identityd::api::pb::identity_client::IdentityClient::connect(channel)
                        .await
                        .expect("connect");
                identity
                    .issue_token(password_grant("carol", WRONG))
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    for attempt in burst {
        let refused = attempt.await.expect("task");
        assert_oauth_error(refused, Code::Unauthenticated, "invalid_grant");
    }
    let outcomes = audit_outcomes(&server, "user:carol", "login").await;
    assert_eq!(count(&outcomes, "failure"), ACCOUNT_FAILURES, "checked");
    assert_eq!(
        limited_metric(&server, "password").await,
        100.0,
        "refused unchecked"
    );
    assert_oauth_error(
        try_login(&server, "carol", PASSWORD).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    server.stop().await;
}

/// An account that does not exist is limited like one that does, so the limit tells
/// nobody which names exist.
async fn unknown_accounts_are_limited_alike(backend: Backend) {
    let server = TestServer::start(backend).await;
    for _ in 0..ACCOUNT_FAILURES {
        assert_oauth_error(
            try_login(&server, "nobody", WRONG).await,
            Code::Unauthenticated,
            "invalid_grant",
        );
    }
    try_login(&server, "nobody", WRONG).await.unwrap_err();
    // Counted and recorded under a pseudonym: a name that is no account's may be a
    // password typed into the wrong field, so it is never stored as typed.
    let listed = guess_limits(&server, "password", "").await;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let pseudonym = &listed[0].subject;
    assert!(
        pseudonym.starts_with('#') && pseudonym.len() == 25,
        "{pseudonym}"
    );
    assert!(listed[0].blocked_until > server.clock.now());
    let target = format!("login:{pseudonym}");
    let outcomes = audit_outcomes(&server, &target, "login").await;
    assert_eq!(
        count(&outcomes, "failure"),
        ACCOUNT_FAILURES,
        "{outcomes:?}"
    );
    assert_eq!(count(&outcomes, "limited"), 1, "{outcomes:?}");
    let everything = audit_events(&server, "", "").await;
    assert!(!format!("{everything:?}").contains("nobody"));
    server.stop().await;
}

/// A client secret is limited on every grant that checks it: wrong secrets through
/// client_credentials, the password grant and RevokeToken share one count, and then the
/// right secret is refused on each of them.
async fn client_secrets_are_limited_on_every_path(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (billing, secret) = integration(&server, "billing", &["orders:read"]).await;
    user_with_password(&server, "dave", &["orders:read"]).await;
    let id = billing.client_id.as_str();
    let wrong_secret = format!("{}x", &secret[..secret.len() - 1]);
    for i in 0..ACCOUNT_FAILURES {
        let result = match i % 3 {
            0 => client_token(&server, id, &wrong_secret).await.map(drop),
            1 => issue(
                &server,
                pb::IssueTokenRequest {
                    client_id: id.into(),
                    client_secret: wrong_secret.clone(),
                    ..password_grant("dave", PASSWORD)
                },
            )
            .await
            .map(drop),
            _ => {
                revoke(
                    &server,
                    pb::RevokeTokenRequest {
                        token: "idt_rt_unknown".into(),
                        client_id: id.into(),
                        client_secret: wrong_secret.clone(),
                        ..Default::default()
                    },
                )
                .await
            }
        };
        assert_oauth_error(result, Code::Unauthenticated, "invalid_client");
    }
    assert_oauth_error(
        client_token(&server, id, &secret).await,
        Code::Unauthenticated,
        "invalid_client",
    );
    let with_client = pb::IssueTokenRequest {
        client_id: id.into(),
        client_secret: secret.clone(),
        ..password_grant("dave", PASSWORD)
    };
    assert_oauth_error(
        issue(&server, with_client.clone()).await,
        Code::Unauthenticated,
        "invalid_client",
    );
    assert!(clear(&server, "client_secret", id, "").await);
    client_token(&server, id, &secret).await.expect("cleared");
    issue(&server, with_client).await.expect("cleared");
    server.stop().await;
}

fn allowed(response: &CheckResponse) -> bool {
    matches!(response.http_response, Some(HttpResponse::OkResponse(_)))
}

/// An ext_authz check of `authorization` from `address`.
async fn envoy_check(server: &TestServer, authorization: &str, address: &str) -> CheckResponse {
    let mut request = envoy_request("GET", "/api/v1/orders", &[("authorization", authorization)]);
    if let Some(source) = request.attributes.as_mut().and_then(|a| a.source.as_mut()) {
        *source = peer(address, 40_000);
    }
    send(server, request).await
}

/// An API token is limited per Basic username on every check path: wrong tokens through
/// CheckPermission, Authenticate, ext_authz and Admin metadata share one count; then the
/// right token is refused everywhere, even though it sits warm in the check cache. (Each
/// ext_authz attempt comes from its own address, and Admin is called ten times from
/// 127.0.0.1, so no per-address block holds attempts back from the account's count.)
async fn api_tokens_are_limited_on_every_path(backend: Backend) {
    let server = TestServer::start(backend).await;
    let erin = server
        .user_with_role("erin", "erin-reader", &["orders:read"])
        .await;
    // Warm: the right token is in the cache before the attack.
    assert_verdict(&server.check(&erin, &["orders:read"]).await, 200, "ok");
    assert!(allowed(&envoy_check(&server, &erin, "192.0.2.5").await));
    let wrong = basic("erin", &wrong_token('A'));
    for i in 0..ACCOUNT_FAILURES {
        match i % 5 {
            0 | 1 => assert_verdict(
                &server.check(&wrong, &["orders:read"]).await,
                401,
                "invalid_credentials",
            ),
            2 => assert_eq!(
                authenticate(&server, &wrong).await.reason,
                "invalid_credentials"
            ),
            3 => {
                let address = format!("192.0.2.{}", 100 + i);
                assert!(!allowed(&envoy_check(&server, &wrong, &address).await));
            }
            _ => assert_status(
                admin_call(&server, &wrong, pb::ListRolesRequest {}, async |a, r| {
                    a.list_roles(r).await
                })
                .await,
                Code::Unauthenticated,
                "",
            ),
        }
    }
    // Tripped: the right token is refused from the cache, on every path, as a wrong one.
    assert_verdict(
        &server.check(&erin, &["orders:read"]).await,
        401,
        "invalid_credentials",
    );
    assert_eq!(
        authenticate(&server, &erin).await.reason,
        "invalid_credentials"
    );
    assert!(!allowed(&envoy_check(&server, &erin, "198.51.100.9").await));
    // Another user's token is unaffected.
    assert_verdict(
        &server.check(&server.admin_auth, &["users:read"]).await,
        200,
        "ok",
    );
    assert!(clear(&server, "api_token", "erin", "").await);
    assert_verdict(&server.check(&erin, &["orders:read"]).await, 200, "ok");
    server.stop().await;
}

/// Through ext_authz the client's address counts per source (an IPv6 address by its
/// /64): ten wrong tokens from one address refuse even the right token from there, warm
/// in the cache, while the same token from another address is allowed. Once the
/// account's own counter is blocked too and then cleared behind the server's back (as
/// `identityd admin clear-limit` does), the address is still refused.
async fn api_tokens_are_limited_per_address(backend: Backend) {
    let server = TestServer::start(backend).await;
    let frank = server
        .user_with_role("frank", "frank-reader", &["orders:read"])
        .await;
    let (attacker, neighbour, elsewhere) = ("2001:db8:7::9", "2001:db8:7::1:2", "192.0.2.77");
    for address in [attacker, neighbour, elsewhere] {
        assert!(allowed(&envoy_check(&server, &frank, address).await));
    }
    let wrong = basic("frank", &wrong_token('B'));
    for _ in 0..SOURCE_FAILURES {
        assert!(!allowed(&envoy_check(&server, &wrong, attacker).await));
    }
    let refused_from = async |address: &str| !allowed(&envoy_check(&server, &frank, address).await);
    assert!(refused_from(attacker).await);
    assert!(refused_from(neighbour).await, "the same /64");
    assert!(!refused_from(elsewhere).await);
    // The rest of the account's allowance, ten from each of four more addresses.
    for i in 0..(ACCOUNT_FAILURES - SOURCE_FAILURES) {
        let address = format!("198.51.100.{}", i / SOURCE_FAILURES);
        assert!(!allowed(&envoy_check(&server, &wrong, &address).await));
    }
    assert!(refused_from(elsewhere).await, "the account is blocked");
    server
        .db
        .execute("DELETE FROM guess_limits WHERE subject = 'frank' AND source = ''")
        .await;
    assert!(!refused_from(elsewhere).await);
    assert!(refused_from(attacker).await, "the address is still blocked");
    server.stop().await;
}

/// Two replicas on one PostgreSQL share the counts: wrong guesses on both add up, and a
/// block tripped on one refuses a right token the other holds warm in its cache.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replicas_share_the_counts() {
    let mut a = TestServer::start(Backend::Postgres).await;
    let b = a.replica(Backend::Postgres).await;
    user_with_password(&a, "gina", &["orders:read"]).await;
    let gina = a
        .user_with_role("gina-api", "gina-reader", &["orders:read"])
        .await;
    assert_verdict(&b.check(&gina, &["orders:read"]).await, 200, "ok");
    for i in 0..ACCOUNT_FAILURES {
        let server = if i % 2 == 0 { &a } else { &b };
        try_login(server, "gina", WRONG).await.unwrap_err();
        let wrong = basic("gina-api", &wrong_token('C'));
        assert_verdict(
            &server.check(&wrong, &["orders:read"]).await,
            401,
            "invalid_credentials",
        );
    }
    for server in [&a, &b] {
        assert_oauth_error(
            try_login(server, "gina", PASSWORD).await,
            Code::Unauthenticated,
            "invalid_grant",
        );
    }
    // The trip happened on one of them; the other learns of it within moments.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let a_refuses = a.check(&gina, &["orders:read"]).await.http_status == 401;
        let b_refuses = b.check(&gina, &["orders:read"]).await.http_status == 401;
        if a_refuses && b_refuses {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "both replicas refuse");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    b.stop().await;
    a.stop().await;
}

/// Refused attempts and trips are counted in the metrics, by secret kind.
async fn limited_attempts_are_counted_in_metrics(backend: Backend) {
    let server = TestServer::start(backend).await;
    for _ in 0..=ACCOUNT_FAILURES {
        try_login(&server, "henry", WRONG).await.unwrap_err();
    }
    let metrics = scrape(&server).await;
    let series =
        |name: &str, secret: &str| sample(&metrics, &format!("{name}{{secret=\"{secret}\"}}"));
    assert_eq!(series("identityd_guess_limited_total", "password"), 1.0);
    assert_eq!(series("identityd_guess_limit_trips_total", "password"), 1.0);
    assert_eq!(series("identityd_guess_limited_total", "api_token"), 0.0);
    assert!(metrics.contains("identityd_guess_limited_total{secret=\"client_secret\"} 0"));
    server.stop().await;
}

/// Listing needs `limits:read`, clearing `limits:write`; bad requests are refused.
async fn limits_need_their_permissions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let staff = server.user_with_roles("ivy", &[], true).await;
    let list = pb::ListGuessLimitsRequest::default();
    assert_status(
        admin_call(&server, &staff, list, async |a, r| {
            a.list_guess_limits(r).await
        })
        .await,
        Code::PermissionDenied,
        "limits:read",
    );
    let clear_request = pb::ClearGuessLimitRequest {
        secret: "password".into(),
        subject: "ivy".into(),
        source: String::new(),
    };
    assert_status(
        admin_call(&server, &staff, clear_request.clone(), async |a, r| {
            a.clear_guess_limit(r).await
        })
        .await,
        Code::PermissionDenied,
        "limits:write",
    );
    let bad = [
        pb::ClearGuessLimitRequest {
            secret: "pin".into(),
            ..clear_request.clone()
        },
        pb::ClearGuessLimitRequest {
            subject: String::new(),
            ..clear_request.clone()
        },
        pb::ClearGuessLimitRequest {
            source: "not an address".into(),
            ..clear_request.clone()
        },
        pb::ClearGuessLimitRequest {
            subject: "a\0b".into(),
            ..clear_request.clone()
        },
        pb::ClearGuessLimitRequest {
            source: "a\0b/64".into(),
            ..clear_request.clone()
        },
        pb::ClearGuessLimitRequest {
            source: "2001:db8::1/64".into(),
            ..clear_request.clone()
        },
        pb::ClearGuessLimitRequest {
            source: format!("{}/64", "1".repeat(100_000)),
            ..clear_request
        },
    ];
    for request in bad {
        assert_status(
            admin_call(&server, &server.admin_auth, request, async |a, r| {
                a.clear_guess_limit(r).await
            })
            .await,
            Code::InvalidArgument,
            "",
        );
    }
    server.stop().await;
}

/// Wrong client secrets and API tokens in a burst are decided one after the other as
/// passwords are: 150 at once give exactly 50 checked failures and 100 refusals, and
/// once blocked nothing more is checked, right or wrong.
async fn cheap_secrets_are_exact_under_a_burst(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (billing, secret) = integration(&server, "billing", &["orders:read"]).await;
    let id = billing.client_id.clone();
    let wrong_secret = format!("{}x", &secret[..secret.len() - 1]);
    let burst: Vec<_> = (0..150)
        .map(|_| {
            let (url, id, wrong) = (server.url(), id.clone(), wrong_secret.clone());
            tokio::spawn(async move {
                let mut identity = pb::identity_client::IdentityClient::connect(url)
                    .await
                    .expect("connect");
                identity
                    .issue_token(client_grant(&id, &wrong))
                    .await
                    .map(drop)
            })
        })
        .collect();
    for attempt in burst {
        assert_oauth_error(
            attempt.await.expect("task"),
            Code::Unauthenticated,
            "invalid_client",
        );
    }
    let target = format!("integration:{id}");
    let failures = audit_events(&server, &target, "login").await;
    assert_eq!(
        failures
            .iter()
            .filter(|e| e.reason == "wrong_client_secret")
            .count(),
        50
    );
    assert_eq!(limited_metric(&server, "client_secret").await, 100.0);
    // Blocked: the right secret and more wrong ones are refused alike, and unchecked.
    for attempt in [&secret, &wrong_secret, &secret] {
        assert_oauth_error(
            client_token(&server, &id, attempt).await,
            Code::Unauthenticated,
            "invalid_client",
        );
    }
    let failures = audit_events(&server, &target, "login").await;
    assert_eq!(
        failures.iter().filter(|e| e.outcome == "failure").count(),
        50
    );

    let erin = server
        .user_with_role("erin", "erin-reader", &["orders:read"])
        .await;
    assert_verdict(&server.check(&erin, &["orders:read"]).await, 200, "ok");
    let wrong = basic("erin", &wrong_token('E'));
    let burst: Vec<_> = (0..150)
        .map(|_| {
            let (url, wrong) = (server.url(), wrong.clone());
            tokio::spawn(async move {
                let mut identity = pb::identity_client::IdentityClient::connect(url)
                    .await
                    .expect("connect");
                identity
                    .authenticate(pb::AuthenticateRequest {
                        authorization: wrong,
                        ..Default::default()
                    })
                    .await
                    .expect("answered")
                    .into_inner()
                    .reason
            })
        })
        .collect();
    for attempt in burst {
        assert_eq!(attempt.await.expect("task"), "invalid_credentials");
    }
    assert_eq!(limited_metric(&server, "api_token").await, 100.0);
    assert_verdict(
        &server.check(&erin, &["orders:read"]).await,
        401,
        "invalid_credentials",
    );
    server.stop().await;
}

/// One address alone never locks a client id or a Basic username out for everyone: its
/// attempts after its own block are refused without being counted against the account.
async fn one_address_never_locks_a_client_or_a_token_out(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (billing, secret) = integration(&server, "billing", &["orders:read"]).await;
    let id = billing.client_id.as_str();
    let wrong_secret = format!("{}x", &secret[..secret.len() - 1]);
    let from = |address: &str, client_secret: &str| pb::IssueTokenRequest {
        client_address: address.into(),
        ..client_grant(id, client_secret)
    };
    for _ in 0..3 * ACCOUNT_FAILURES {
        issue(&server, from("203.0.113.9", &wrong_secret))
            .await
            .unwrap_err();
    }
    issue(&server, from("198.51.100.1", &secret))
        .await
        .expect("the integration, from elsewhere");

    let frank = server
        .user_with_role("frank", "frank-reader", &["orders:read"])
        .await;
    let wrong = basic("frank", &wrong_token('F'));
    for _ in 0..3 * ACCOUNT_FAILURES {
        assert!(!allowed(&envoy_check(&server, &wrong, "203.0.113.9").await));
    }
    assert!(allowed(&envoy_check(&server, &frank, "198.51.100.1").await));
    server.stop().await;
}

/// While an attack keeps an account blocked, the owner's own attempts are refused but
/// counted nowhere: once the account's block ends, the owner's address is not blocked.
async fn a_blocked_account_does_not_charge_the_owners_address(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "vic", &["orders:read"]).await;
    // Ten addresses, five wrong guesses each: no address is blocked, the account is.
    for i in 0..ACCOUNT_FAILURES {
        let address = format!("203.0.113.{}", i % 10);
        issue(&server, login_from("vic", WRONG, &address))
            .await
            .unwrap_err();
    }
    let home = "198.51.100.7";
    for _ in 0..=SOURCE_FAILURES {
        assert_oauth_error(
            issue(&server, login_from("vic", PASSWORD, home)).await,
            Code::Unauthenticated,
            "invalid_grant",
        );
    }
    assert!(
        guess_limits(&server, "password", "vic")
            .await
            .iter()
            .all(|l| l.source != home),
        "the owner's address holds nothing"
    );
    let account = guess_limits(&server, "password", "vic").await;
    let until = account
        .iter()
        .find(|l| l.source.is_empty())
        .expect("the account's counter")
        .blocked_until;
    server.clock.advance(until - server.clock.now());
    issue(&server, login_from("vic", PASSWORD, home))
        .await
        .expect("the owner, once the block ended");
    server.stop().await;
}

/// A regenerated API token is not held back by the guesses at the old one, and a
/// cleared limit is found in any spelling of the name.
async fn a_new_token_starts_unblocked(backend: Backend) {
    let server = TestServer::start(backend).await;
    server
        .user_with_role("gus", "gus-reader", &["orders:read"])
        .await;
    let wrong = basic("gus", &wrong_token('G'));
    for _ in 0..ACCOUNT_FAILURES {
        assert_verdict(
            &server.check(&wrong, &["orders:read"]).await,
            401,
            "invalid_credentials",
        );
    }
    let fresh = regenerate_api_token(&server, "GUS")
        .await
        .expect("regenerate");
    assert_verdict(
        &server
            .check(&basic("gus", &fresh.api_token), &["orders:read"])
            .await,
        200,
        "ok",
    );
    assert!(guess_limits(&server, "api_token", "Gus").await.is_empty());
    let cleared = audit_events(&server, "api_token:gus", "limit.clear").await;
    assert_eq!(cleared.len(), 1, "{cleared:?}");
    // Names of limits are canonical: clearing `GUS` is clearing `gus`.
    user_with_password(&server, "hal", &["orders:read"]).await;
    for _ in 0..SOURCE_FAILURES {
        issue(&server, login_from("hal", WRONG, "203.0.113.1"))
            .await
            .unwrap_err();
    }
    assert!(clear(&server, "password", "HAL", "203.0.113.1").await);
    server.stop().await;
}

on_both_backends!(
    cheap_secrets_are_exact_under_a_burst,
    one_address_never_locks_a_client_or_a_token_out,
    a_blocked_account_does_not_charge_the_owners_address,
    a_new_token_starts_unblocked,
    password_guessing_is_limited,
    one_address_is_stopped_without_locking_the_owner_out,
    a_parallel_burst_gets_no_more_tries,
    unknown_accounts_are_limited_alike,
    client_secrets_are_limited_on_every_path,
    api_tokens_are_limited_on_every_path,
    api_tokens_are_limited_per_address,
    limited_attempts_are_counted_in_metrics,
    limits_need_their_permissions,
);
