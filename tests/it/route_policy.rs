//! The route policy and the scope catalog through the real server: method-and-path
//! checks under the built-in policy, the Admin RPCs that read and replace both documents,
//! replicas and restarts on one database, and the startup files.

use crate::oauth_support::*;
use crate::on_both_backends;
use crate::support::*;
use identityd::api::pb;
use identityd::config::ServeConfig;
use identityd::domain::clock::ManualClock;
use identityd::server;
use identityd::service::documents::RELOAD_INTERVAL;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tonic::{Code, Request, Status};

const BUILTIN_POLICY: &str = include_str!("../../src/defaults/route_policy.txt");
const BUILTIN_CATALOG: &str = include_str!("../../src/defaults/scope_catalog.txt");

/// Permissions of the `email` scope, which the email send route requires.
const EMAIL: [&str; 3] = [
    "email_editor:read",
    "email_editor:write",
    "email_templates:send",
];

/// A small replacement policy: every valid credential may use routes it does not cover.
const OPEN_POLICY: &str =
    "# replaced through Admin\ndefault authenticated\nGET /api/v1/orders/** orders:read\n";

// ---------------------------------------------------------------------------------------
// Helpers

/// A request with `authorization` metadata, or none when it is empty.
fn request<T>(authorization: &str, message: T) -> Request<T> {
    if authorization.is_empty() {
        Request::new(message)
    } else {
        authed(authorization, message)
    }
}

/// CheckPermission for a method and path.
async fn route(
    server: &TestServer,
    authorization: &str,
    method: &str,
    path: &str,
) -> pb::CheckPermissionResponse {
    server
        .identity()
        .await
        .check_permission(pb::CheckPermissionRequest {
            authorization: authorization.into(),
            method: method.into(),
            path: path.into(),
            ..Default::default()
        })
        .await
        .expect("CheckPermission answers denials in the body")
        .into_inner()
}

/// A route check and what it must answer: credential, `METHOD /path`, HTTP status,
/// reason, and the permissions reported missing.
type RouteRow<'a> = (&'a str, &'a str, u32, &'a str, &'a [&'a str]);

/// Checks a route as `row` says and asserts the answer, including that a principal is
/// reported exactly when the credential is valid; returns the response.
async fn check_route(server: &TestServer, row: RouteRow<'_>) -> pb::CheckPermissionResponse {
    let (authorization, request, status, reason, missing) = row;
    let (method, path) = request.split_once(' ').expect("METHOD /path");
    let resp = route(server, authorization, method, path).await;
    let answered: Vec<&str> = resp.missing.iter().map(String::as_str).collect();
    assert_eq!(
        (
            resp.http_status,
            resp.reason.as_str(),
            answered.as_slice(),
            resp.principal.is_some()
        ),
        (status, reason, missing, status != 401),
        "{request}: {resp:?}"
    );
    assert_verdict(&resp, status, reason);
    resp
}

/// Checks every row.
async fn check_routes(server: &TestServer, rows: &[RouteRow<'_>]) {
    for row in rows {
        check_route(server, *row).await;
    }
}

/// GetRoutePolicy as `authorization` (none when empty).
async fn get_policy(server: &TestServer, authorization: &str) -> Result<pb::RoutePolicy, Status> {
    server
        .admin()
        .await
        .get_route_policy(request(authorization, pb::GetRoutePolicyRequest {}))
        .await
        .map(tonic::Response::into_inner)
}

/// ReplaceRoutePolicy as `authorization` (none when empty).
async fn replace_policy_as(
    server: &TestServer,
    authorization: &str,
    text: &str,
    validate_only: bool,
) -> Result<pb::RoutePolicy, Status> {
    server
        .admin()
        .await
        .replace_route_policy(request(
            authorization,
            pb::ReplaceRoutePolicyRequest {
                text: text.into(),
                validate_only,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// ReplaceRoutePolicy as the bootstrap admin.
async fn replace_policy(
    server: &TestServer,
    text: &str,
    validate_only: bool,
) -> Result<pb::RoutePolicy, Status> {
    replace_policy_as(server, &server.admin_auth, text, validate_only).await
}

/// GetRoutePolicy as the bootstrap admin.
async fn policy(server: &TestServer) -> pb::RoutePolicy {
    get_policy(server, &server.admin_auth)
        .await
        .expect("GetRoutePolicy")
}

/// GetScopeCatalog as `authorization` (none when empty).
async fn get_catalog(server: &TestServer, authorization: &str) -> Result<pb::ScopeCatalog, Status> {
    server
        .admin()
        .await
        .get_scope_catalog(request(authorization, pb::GetScopeCatalogRequest {}))
        .await
        .map(tonic::Response::into_inner)
}

/// GetScopeCatalog as the bootstrap admin.
async fn catalog(server: &TestServer) -> pb::ScopeCatalog {
    get_catalog(server, &server.admin_auth)
        .await
        .expect("GetScopeCatalog")
}

/// The built-in catalog with `read_orders` narrowed to `orders:read`.
fn narrowed_catalog() -> String {
    let narrowed = BUILTIN_CATALOG.replace(
        "read_orders     orders:read order_statuses:read",
        "read_orders     orders:read",
    );
    assert_ne!(narrowed, BUILTIN_CATALOG, "the built-in read_orders line");
    narrowed
}

/// The built-in catalog without its `email` scope.
fn catalog_without_email() -> String {
    BUILTIN_CATALOG
        .lines()
        .filter(|l| !l.starts_with("email "))
        .map(|l| format!("{l}\n"))
        .collect()
}

/// A password login asking for `scope`; returns the access token.
async fn scoped_token(server: &TestServer, username: &str, scope: &str) -> String {
    issue(
        server,
        pb::IssueTokenRequest {
            scope: scope.into(),
            ..password_grant(username, PASSWORD)
        },
    )
    .await
    .unwrap_or_else(|status| panic!("login of {username} with scope {scope:?}: {status:?}"))
    .access_token
}

/// Takes the database from `server`, which keeps running on it (its guard now holds a
/// throw-away database), so another server can be started on it.
async fn take_db(server: &mut TestServer, backend: Backend) -> TestDb {
    std::mem::replace(&mut server.db, TestDb::new(backend).await)
}

/// A server on `db`, an existing database, acting with the admin credentials `admin_auth`.
async fn start_again(
    db: TestDb,
    admin_auth: String,
    tweak: impl FnOnce(&mut ServeConfig),
) -> TestServer {
    let mut server = TestServer::start_on(db, tweak).await;
    server.admin_auth = admin_auth;
    server
}

/// Stops `server`; returns its database and admin credentials.
async fn shut_down(mut server: TestServer, backend: Backend) -> (TestDb, String) {
    let db = take_db(&mut server, backend).await;
    let admin_auth = server.admin_auth.clone();
    server.stop().await;
    (db, admin_auth)
}

/// Stops `server` and starts a new one on its database.
async fn restart(
    server: TestServer,
    backend: Backend,
    tweak: impl FnOnce(&mut ServeConfig),
) -> TestServer {
    let (db, admin_auth) = shut_down(server, backend).await;
    start_again(db, admin_auth, tweak).await
}

/// Writes `text` to `path` and returns the path.
fn write_file(path: &Path, text: &str) -> PathBuf {
    std::fs::write(path, text).expect("write document file");
    path.to_owned()
}

/// Prepares (without serving) a server on `db` under `tweak`; the error as text.
async fn try_prepare(db: &TestDb, tweak: impl FnOnce(&mut ServeConfig)) -> Result<(), String> {
    let mut config = test_config(&db.url);
    tweak(&mut config);
    server::prepare(&config, Arc::new(ManualClock::at(1_800_000_000)))
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

// ---------------------------------------------------------------------------------------
// Checks under the built-in policy

/// Method and path decide what a request needs, as the built-in policy says;
/// authentication comes first, also on routes no rule covers.
async fn builtin_policy_table(backend: Backend) {
    let server = TestServer::start(backend).await;
    let reader = server
        .user_with_role("reader", "reader", &["orders:read", "order_statuses:read"])
        .await;
    let mailer = server.user_with_role("mailer", "mailer", &EMAIL).await;
    let editor = server.user_with_role("editor", "editor", &EMAIL[..2]).await;
    let decrypt = ["credit_cards:decrypt", "order_payments:decrypt"];
    let decrypter = server
        .user_with_role("decrypter", "decrypter", &decrypt)
        .await;
    let wrong = basic("reader", "not-the-token");
    let send = "POST /api/v1/email_templates/3/send";
    let card = "GET /api/v1/credit_cards/9/decrypted";

    check_routes(
        &server,
        &[
            (&reader, "GET /api/v1/orders/17", 200, "ok", &[]),
            (&reader, "GET /api/v1/orders?limit=5", 200, "ok", &[]),
            (&reader, "HEAD /api/v1/order_statuses/2", 200, "ok", &[]),
            (
                &reader,
                "DELETE /api/v1/orders/17",
                403,
                "missing_permission",
                &["orders:write"],
            ),
            (
                &reader,
                "GET /api/v1/products/1",
                403,
                "missing_permission",
                &["products:read"],
            ),
            (
                &reader,
                "GET /api/v1/unknown/thing",
                403,
                "uncovered_route",
                &[],
            ),
            ("", "GET /api/v1/orders/17", 401, "missing_credentials", &[]),
            (
                "",
                "GET /api/v1/unknown/thing",
                401,
                "missing_credentials",
                &[],
            ),
            (
                &wrong,
                "GET /api/v1/unknown/thing",
                401,
                "invalid_credentials",
                &[],
            ),
            (&mailer, send, 200, "ok", &[]),
            (
                &editor,
                send,
                403,
                "missing_permission",
                &["email_templates:send"],
            ),
            // Only POST is covered on the send route.
            (
                &mailer,
                "GET /api/v1/email_templates/3/send",
                403,
                "uncovered_route",
                &[],
            ),
            (&decrypter, card, 200, "ok", &[]),
            (
                &decrypter,
                "GET /api/v1/order_payments/9/decrypted",
                200,
                "ok",
                &[],
            ),
            (&reader, card, 403, "missing_permission", &decrypt),
        ],
    )
    .await;
    let refused = check_route(
        &server,
        (
            &wrong,
            "GET /api/v1/unknown",
            401,
            "invalid_credentials",
            &[],
        ),
    )
    .await;
    assert!(
        refused.www_authenticate.starts_with("Basic realm="),
        "{refused:?}"
    );
    server.stop().await;
}

/// A scoped token is held to its scopes on routes; the challenge names the scope that
/// would cover the request.
async fn scoped_tokens_on_routes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut held = vec!["orders:*", "order_statuses:*"];
    held.extend(EMAIL);
    user_with_password(&server, "scoped", &held).await;
    let read_orders = bearer(&scoped_token(&server, "scoped", "read_orders").await);
    let with_email = bearer(&scoped_token(&server, "scoped", "read_orders email").await);
    let unscoped = bearer(&login(&server, "scoped", PASSWORD).await.access_token);
    let send = "POST /api/v1/email_templates/3/send";

    let resp = check_route(
        &server,
        (
            &read_orders,
            "POST /api/v1/orders",
            403,
            "insufficient_scope",
            &["orders:write"],
        ),
    )
    .await;
    assert!(
        resp.www_authenticate.starts_with("Bearer realm=")
            && resp
                .www_authenticate
                .contains(r#"error="insufficient_scope""#)
            && resp.www_authenticate.contains(r#"scope="orders""#),
        "{resp:?}"
    );
    let resp = check_route(
        &server,
        (&read_orders, send, 403, "insufficient_scope", &EMAIL),
    )
    .await;
    assert!(
        resp.www_authenticate.contains(r#"scope="email""#),
        "{resp:?}"
    );
    check_routes(
        &server,
        &[
            (&read_orders, "GET /api/v1/orders/1", 200, "ok", &[]),
            // What the principal itself lacks is missing_permission, whatever the scopes.
            (
                &read_orders,
                "GET /api/v1/products/1",
                403,
                "missing_permission",
                &["products:read"],
            ),
            (
                &read_orders,
                "GET /api/v1/unknown",
                403,
                "uncovered_route",
                &[],
            ),
            (&with_email, send, 200, "ok", &[]),
            (&unscoped, send, 200, "ok", &[]),
            (&unscoped, "POST /api/v1/orders", 200, "ok", &[]),
        ],
    )
    .await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Reading the documents

/// GetRoutePolicy and GetScopeCatalog show the built-in documents (version 0); both need
/// `policy:read`.
async fn builtin_documents(backend: Backend) {
    let server = TestServer::start(backend).await;
    create_role(&server, "auditor", &["policy:read"]).await;
    let auditor = server.user_with_roles("auditor", &["auditor"], true).await;

    let p = get_policy(&server, &auditor).await.expect("GetRoutePolicy");
    assert_eq!(
        (p.text.as_str(), p.version, p.uncovered.as_str()),
        (BUILTIN_POLICY, 0, "deny")
    );
    let rule_lines = BUILTIN_POLICY
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with("default"))
        .count();
    assert_eq!(p.rules.len(), rule_lines);
    let send = pb::RouteRule {
        line: email_rule_line(),
        methods: vec!["POST".into()],
        path: "/api/v1/email_templates/{id}/send".into(),
        requires: "scope email".into(),
    };
    assert!(p.rules.contains(&send), "{:?}", p.rules);
    let orders = p
        .rules
        .iter()
        .find(|r| r.path == "/api/v1/orders/**" && r.requires == "orders:read")
        .expect("the orders read rule");
    assert_eq!(orders.methods, ["GET", "HEAD"]);

    let c = get_catalog(&server, &auditor)
        .await
        .expect("GetScopeCatalog");
    assert_eq!((c.text.as_str(), c.version), (BUILTIN_CATALOG, 0));
    assert_eq!(c.scopes.len(), 16, "{:?}", c.scopes);
    let scope = |name: &str| {
        c.scopes
            .iter()
            .find(|s| s.name == name)
            .unwrap_or_else(|| panic!("scope {name} in {:?}", c.scopes))
    };
    let decrypt = scope("decrypt");
    assert_eq!(
        (decrypt.regenerate_after_seconds, decrypt.no_expiry),
        (7_776_000, false)
    );
    let mut grants = decrypt.grants.clone();
    grants.sort();
    assert_eq!(grants, ["credit_cards:decrypt", "order_payments:decrypt"]);
    let no_expiry = scope("no_expiry");
    assert!(
        no_expiry.no_expiry && no_expiry.grants.is_empty(),
        "{no_expiry:?}"
    );
    assert_eq!(scope("orders").supersedes, "read_orders");

    // Without policy:read, or without credentials, neither document is shown.
    let reader = server
        .user_with_role("reader", "reader", &["orders:read"])
        .await;
    for (caller, code) in [
        (reader.as_str(), Code::PermissionDenied),
        ("", Code::Unauthenticated),
    ] {
        assert_status(get_policy(&server, caller).await, code, "");
        assert_status(get_catalog(&server, caller).await, code, "");
    }
    server.stop().await;
}

/// The line of the built-in policy's email send rule.
fn email_rule_line() -> u32 {
    let index = BUILTIN_POLICY
        .lines()
        .position(|l| l.ends_with("scope email"))
        .expect("the email send rule");
    u32::try_from(index + 1).expect("line")
}

// ---------------------------------------------------------------------------------------
// Replacing the route policy

/// A malformed policy is refused whole, naming the line; validate_only changes nothing;
/// a valid replacement governs the next check; only `policy:write` may replace.
async fn replace_route_policy(backend: Backend) {
    let server = TestServer::start(backend).await;
    let reader = server
        .user_with_role("reader", "reader", &["orders:read", "order_statuses:read"])
        .await;
    let uncovered = "GET /api/v1/unknown/thing";
    let assert_builtin_in_force = || async {
        let p = policy(&server).await;
        assert_eq!((p.version, p.text.as_str()), (0, BUILTIN_POLICY));
        check_route(&server, (&reader, uncovered, 403, "uncovered_route", &[])).await;
    };

    for (text, fault) in [
        (
            "default authenticated\nGET /api/v1/orders/** orders:read\nGET /api/v1/x scope nope\n",
            "line 3: unknown scope \"nope\"",
        ),
        (
            "# bad method below\n\nG3T /api/v1/x orders:read\n",
            "line 3: bad method \"G3T\"",
        ),
    ] {
        for validate_only in [false, true] {
            let result = replace_policy(&server, text, validate_only).await;
            assert_status(result, Code::InvalidArgument, fault);
        }
        assert_builtin_in_force().await;
    }

    // validate_only answers as if replaced, and replaces nothing.
    let checked = replace_policy(&server, OPEN_POLICY, true)
        .await
        .expect("valid");
    assert_eq!(
        (
            checked.text.as_str(),
            checked.uncovered.as_str(),
            checked.version,
            checked.rules.len()
        ),
        (OPEN_POLICY, "authenticated", 0, 1)
    );
    assert_builtin_in_force().await;

    // Callers without policy:write are refused, and nothing changes.
    create_role(&server, "auditor", &["policy:read"]).await;
    let auditor = server.user_with_roles("auditor", &["auditor"], true).await;
    for (caller, code, needle) in [
        (auditor.as_str(), Code::PermissionDenied, "policy:write"),
        (reader.as_str(), Code::PermissionDenied, ""),
        ("", Code::Unauthenticated, ""),
    ] {
        let result = replace_policy_as(&server, caller, OPEN_POLICY, false).await;
        assert_status(result, code, needle);
    }
    assert_builtin_in_force().await;

    let replaced = replace_policy(&server, OPEN_POLICY, false)
        .await
        .expect("replace");
    assert_eq!((replaced.version, replaced.text.as_str()), (1, OPEN_POLICY));
    let p = policy(&server).await;
    assert_eq!(
        (p.version, p.text.as_str(), p.uncovered.as_str()),
        (1, OPEN_POLICY, "authenticated")
    );
    assert_eq!(
        p.rules,
        [pb::RouteRule {
            line: 3,
            methods: vec!["GET".into()],
            path: "/api/v1/orders/**".into(),
            requires: "orders:read".into(),
        }]
    );
    // The next check follows it: uncovered routes are open to any valid credential (but
    // not to none), and the remaining rule still holds.
    check_routes(
        &server,
        &[
            (&reader, uncovered, 200, "ok", &[]),
            (&reader, "GET /api/v1/products/1", 200, "ok", &[]),
            (&reader, "DELETE /api/v1/orders/17", 200, "ok", &[]),
            ("", uncovered, 401, "missing_credentials", &[]),
            (&auditor, uncovered, 200, "ok", &[]),
            (
                &auditor,
                "GET /api/v1/orders/17",
                403,
                "missing_permission",
                &["orders:read"],
            ),
        ],
    )
    .await;

    let again = replace_policy(&server, BUILTIN_POLICY, false)
        .await
        .expect("replace back");
    assert_eq!(again.version, 2);
    check_route(&server, (&reader, uncovered, 403, "uncovered_route", &[])).await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Replacing the scope catalog

/// A malformed catalog, or one the policy does not fit, is refused whole; a valid one
/// governs the next check, also of a token already in the cache.
async fn replace_scope_catalog(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "scoped", &["orders:read", "order_statuses:read"]).await;
    let token = bearer(&scoped_token(&server, "scoped", "read_orders").await);
    let statuses = "GET /api/v1/order_statuses/1";
    check_route(&server, (&token, statuses, 200, "ok", &[])).await;
    let before = server.cache.stats();
    assert_eq!(
        authenticate(&server, &token).await.permissions,
        ["order_statuses:read", "orders:read"]
    );
    assert_eq!(
        server.cache.stats().hits - before.hits,
        1,
        "the token is cached"
    );

    let malformed = "read_orders orders:read\n# again:\nread_orders orders:write\n";
    let unfit = format!("line {}: unknown scope \"email\"", email_rule_line());
    for validate_only in [false, true] {
        assert_status(
            replace_catalog(&server, malformed, validate_only).await,
            Code::InvalidArgument,
            "line 3: duplicate scope \"read_orders\"",
        );
        assert_status(
            replace_catalog(&server, &catalog_without_email(), validate_only).await,
            Code::FailedPrecondition,
            &unfit,
        );
    }
    let checked = replace_catalog(&server, &narrowed_catalog(), true)
        .await
        .expect("validate");
    assert_eq!((checked.version, checked.text), (0, narrowed_catalog()));
    let c = catalog(&server).await;
    assert_eq!((c.version, c.text.as_str()), (0, BUILTIN_CATALOG));
    check_route(&server, (&token, statuses, 200, "ok", &[])).await;

    let replaced = replace_catalog(&server, &narrowed_catalog(), false)
        .await
        .expect("replace");
    assert_eq!(replaced.version, 1);
    let c = catalog(&server).await;
    assert_eq!((c.version, c.text), (1, narrowed_catalog()));
    let read_orders = c
        .scopes
        .iter()
        .find(|s| s.name == "read_orders")
        .expect("read_orders");
    assert_eq!(read_orders.grants, ["orders:read"]);

    // The token keeps its scope name; what it grants follows the new catalog at once.
    assert_eq!(
        authenticate(&server, &token).await.permissions,
        ["orders:read"]
    );
    let missing: &[&str] = &["order_statuses:read"];
    let resp = check_route(
        &server,
        (&token, statuses, 403, "insufficient_scope", missing),
    )
    .await;
    assert!(
        resp.www_authenticate.contains(r#"scope="orders""#),
        "{resp:?}"
    );
    check_route(&server, (&token, "GET /api/v1/orders/1", 200, "ok", &[])).await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Replicas and restarts

/// Replacements are stored: a server started later on the database serves them, a
/// running replica picks them up within its reload interval (a new catalog also for the
/// tokens it has cached), and a restart keeps them.
async fn replicas_and_restarts(backend: Backend) {
    let mut a = TestServer::start(backend).await;
    let reader = a.user_with_role("reader", "reader", &["orders:read"]).await;
    user_with_password(&a, "scoped", &["orders:read", "order_statuses:read"]).await;
    let token = bearer(&scoped_token(&a, "scoped", "read_orders").await);
    let uncovered = "GET /api/v1/unknown/thing";
    replace_policy(&a, OPEN_POLICY, false)
        .await
        .expect("replace on A");

    // A keeps running on the database B starts on.
    let b = a.replica(backend).await;
    let p = policy(&b).await;
    assert_eq!((p.version, p.text.as_str()), (1, OPEN_POLICY));
    check_route(&b, (&reader, uncovered, 200, "ok", &[])).await;

    // Replaced on B, both documents reach A with its reload, and the scoped token A has
    // cached is narrowed by the new catalog.
    assert_eq!(
        authenticate(&a, &token).await.permissions,
        ["order_statuses:read", "orders:read"]
    );
    let narrowed = "default deny\nGET /api/v1/orders/** orders:read\n";
    replace_catalog(&b, &narrowed_catalog(), false)
        .await
        .expect("replace catalog on B");
    let replaced = replace_policy(&b, narrowed, false)
        .await
        .expect("replace policy on B");
    assert_eq!(replaced.version, 2);
    // Two intervals: a reload may fall between the two replacements.
    let deadline = Instant::now() + 2 * RELOAD_INTERVAL + Duration::from_secs(5);
    while (catalog(&a).await.version, policy(&a).await.version) != (1, 2) {
        assert!(Instant::now() < deadline, "A never reloaded the documents");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(policy(&a).await.text, narrowed);
    check_route(&a, (&reader, uncovered, 403, "uncovered_route", &[])).await;
    assert_eq!(authenticate(&a, &token).await.permissions, ["orders:read"]);
    a.stop().await;

    let c = restart(b, backend, |_| {}).await;
    let p = policy(&c).await;
    assert_eq!((p.version, p.text.as_str()), (2, narrowed));
    assert_eq!(catalog(&c).await.text, narrowed_catalog());
    c.stop().await;
}

// ---------------------------------------------------------------------------------------
// Startup files

/// A policy file is applied at startup when it changed since last applied: an unchanged
/// file does not undo a replacement made through Admin; a changed one wins; a malformed
/// one stops the server from starting.
async fn route_policy_file(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let first = "# from the file\nGET,HEAD /api/v1/orders/** orders:read\n";
    let path = write_file(&dir.path().join("policy.txt"), first);
    let with_file = |config: &mut ServeConfig| config.route_policy = Some(path.clone());
    let products = "GET /api/v1/products/1";

    let server = TestServer::start_with(backend, with_file).await;
    let reader = server
        .user_with_role("reader", "reader", &["orders:read", "products:read"])
        .await;
    let p = policy(&server).await;
    assert_eq!((p.text.as_str(), p.version), (first, 1));
    check_route(&server, (&reader, products, 403, "uncovered_route", &[])).await;

    replace_policy(&server, OPEN_POLICY, false)
        .await
        .expect("replace");
    let server = restart(server, backend, with_file).await;
    let p = policy(&server).await;
    assert_eq!(
        (p.text.as_str(), p.version),
        (OPEN_POLICY, 2),
        "the unchanged file does not undo the Admin replacement"
    );

    let second = "default deny\nGET /api/v1/products/** products:read\n";
    write_file(&path, second);
    let server = restart(server, backend, with_file).await;
    let p = policy(&server).await;
    assert_eq!(
        (p.text.as_str(), p.version),
        (second, 3),
        "the changed file wins"
    );
    check_route(&server, (&reader, products, 200, "ok", &[])).await;

    // A malformed file: no start, and the stored policy stays.
    let (db, admin_auth) = shut_down(server, backend).await;
    write_file(&path, "default deny\nGET /api/v1/orders/** scope nope\n");
    let error = try_prepare(&db, with_file)
        .await
        .expect_err("a malformed policy file");
    for needle in ["policy.txt", "line 2: unknown scope \"nope\""] {
        assert!(error.contains(needle), "{needle:?} not in {error:?}");
    }
    let server = start_again(db, admin_auth, |_| {}).await;
    let p = policy(&server).await;
    assert_eq!((p.text.as_str(), p.version), (second, 3));
    server.stop().await;
}

/// A scope catalog file is applied at startup; one the route policy does not fit stops
/// the server from starting and is not stored, so the database still starts without it.
async fn scope_catalog_file(backend: Backend) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = write_file(&dir.path().join("catalog.txt"), &narrowed_catalog());
    let with_file = |config: &mut ServeConfig| config.scope_catalog = Some(path.clone());

    let server = TestServer::start_with(backend, with_file).await;
    let c = catalog(&server).await;
    assert_eq!((c.text, c.version), (narrowed_catalog(), 1));

    let (db, admin_auth) = shut_down(server, backend).await;
    write_file(&path, &catalog_without_email());
    let refused = try_prepare(&db, with_file)
        .await
        .expect_err("a catalog the route policy does not fit");
    assert!(
        refused.contains("unknown scope \"email\""),
        "names the scope the policy needs: {refused:?}"
    );
    // The refused file must not have been stored: the database still starts without it,
    // on the catalog it had.
    let without_file = try_prepare(&db, |_| {}).await;
    assert!(
        without_file.is_ok(),
        "after the refused catalog file, a start without it fails: {without_file:?}"
    );
    assert!(
        refused.contains("catalog.txt"),
        "the error names the file at fault: {refused:?}"
    );
    let server = start_again(db, admin_auth, |_| {}).await;
    let c = catalog(&server).await;
    assert_eq!((c.text, c.version), (narrowed_catalog(), 1));
    server.stop().await;
}

/// Spellings an upstream may resolve to a stricter route are refused, not matched to a
/// looser rule; a route can only need a scope that grants something.
async fn ambiguous_paths_and_empty_scopes_fail_closed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let cards = server
        .user_with_role("cards", "cards", &["credit_cards:read", "orders:read"])
        .await;
    let policy = format!("{BUILTIN_POLICY}\nGET,HEAD /api/v1/credit_cards/** credit_cards:read\n");
    replace_policy(&server, &policy, false)
        .await
        .expect("replace");
    let honest = route(&server, &cards, "GET", "/api/v1/credit_cards/1/decrypted").await;
    assert_verdict(&honest, 403, "missing_permission");
    // Case is ignored, so this reaches the stricter rule too.
    let shouting = route(&server, &cards, "GET", "/api/v1/credit_cards/1/DECRYPTED").await;
    assert_verdict(&shouting, 403, "missing_permission");
    for path in [
        "/api/v1/credit_cards/1/%64ecrypted",
        "/api/v1/credit_cards/1/decrypted;x=1",
        "/api/v1/credit_cards/1/decrypted%3B",
        "/api/v1/orders/..;/..;/credit_cards/1/decrypted",
        "/api/v1/orders/%252e%252e/%252e%252e/credit_cards/1/decrypted",
        "/api/v1/orders/%c0%ae%c0%ae/credit_cards/1/decrypted",
        "/api/v1/orders/1#/../../credit_cards/1/decrypted",
    ] {
        let refused = server
            .identity()
            .await
            .check_permission(pb::CheckPermissionRequest {
                authorization: cards.clone(),
                method: "GET".into(),
                path: path.into(),
                ..Default::default()
            })
            .await;
        assert_status(refused, Code::InvalidArgument, "path");
    }
    let open_vault = format!("{BUILTIN_POLICY}\nGET /api/v1/vault/** scope no_expiry\n");
    assert_status(
        replace_policy(&server, &open_vault, false).await,
        Code::InvalidArgument,
        "grants no permissions",
    );
    server.stop().await;
}

/// Two replicas replacing the catalog and the policy at once never store a pair that
/// does not fit: one of them is told to retry, and a new replica still starts.
async fn concurrent_replacements_keep_a_fitting_pair(backend: Backend) {
    let mut a = TestServer::start(backend).await;
    let db = take_db(&mut a, backend).await;
    let b = start_again(db, a.admin_auth.clone(), |_| {}).await;
    let with_extra = format!("{BUILTIN_CATALOG}\nextra x:read\n");
    let using_extra = format!("{BUILTIN_POLICY}\nGET /extra scope extra\n");
    for _ in 0..20 {
        replace_catalog(&a, &with_extra, false)
            .await
            .expect("catalog with extra");
        replace_policy(&a, BUILTIN_POLICY, false)
            .await
            .expect("policy without it");
        let (dropped, used) = tokio::join!(
            replace_catalog(&a, BUILTIN_CATALOG, false),
            replace_policy(&b, &using_extra, false),
        );
        assert!(
            dropped.is_err() || used.is_err(),
            "both replacements committed: the stored pair does not fit"
        );
        if used.is_ok() {
            replace_policy(&a, BUILTIN_POLICY, false)
                .await
                .expect("undo");
        }
    }
    let (db, _) = shut_down(b, backend).await;
    try_prepare(&db, |_| {})
        .await
        .expect("a new replica starts");
    a.stop().await;
}

on_both_backends!(
    ambiguous_paths_and_empty_scopes_fail_closed,
    concurrent_replacements_keep_a_fitting_pair,
    builtin_policy_table,
    scoped_tokens_on_routes,
    builtin_documents,
    replace_route_policy,
    replace_scope_catalog,
    replicas_and_restarts,
    route_policy_file,
    scope_catalog_file,
);
