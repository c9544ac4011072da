//! Envoy's ext_authz (`envoy.service.auth.v3.Authorization/Check`) through the real
//! server, with requests shaped as Envoy builds them: allow with identity headers that
//! overwrite the client's, 401 and 403 with challenges and JSON bodies, several
//! credentials, malformed requests, and a storage outage. Every answer must be a
//! `CheckResponse`, never a gRPC error, which Envoy's failure mode could turn into an allow.

use crate::oauth_support::*;
use crate::on_both_backends;
use crate::support::*;
use envoy_types::ext_authz::v3::pb::{
    CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction, HttpResponse,
    HttpStatusCode, OkHttpResponse,
};
use envoy_types::pb::envoy::config::core::v3::{
    Address, HeaderMap, HeaderValue, SocketAddress, address, socket_address,
};
use envoy_types::pb::envoy::service::auth::v3::AttributeContext;
use envoy_types::pb::envoy::service::auth::v3::attribute_context::{HttpRequest, Peer, Request};
use envoy_types::pb::envoy::service::auth::v3::authorization_client::AuthorizationClient;
use envoy_types::pb::google::protobuf::Timestamp;
use identityd::api::pb;
use serde_json::Value;
use std::collections::HashMap;
use tonic::transport::Channel;

/// The identity headers under the default prefix.
const IDENTITY_HEADERS: [&str; 5] = [
    "x-identity-id",
    "x-identity-kind",
    "x-identity-name",
    "x-identity-scopes",
    "x-identity-credential-id",
];

const PERMISSION_DENIED: i32 = 7;

// ---------------------------------------------------------------------------------------
// Helpers

pub(crate) async fn client(server: &TestServer) -> AuthorizationClient<Channel> {
    let channel = Channel::from_shared(server.url())
        .expect("url")
        .connect()
        .await
        .expect("connect");
    AuthorizationClient::new(channel)
}

pub(crate) fn peer(ip: &str, port: u32) -> Peer {
    Peer {
        address: Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: ip.into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(port)),
                ..Default::default()
            })),
        }),
        ..Default::default()
    }
}

/// A CheckRequest as Envoy's HTTP filter builds it: peers, time, and the request with
/// its lower-cased headers (pseudo-headers included) in the map.
pub(crate) fn envoy_request(method: &str, path: &str, headers: &[(&str, &str)]) -> CheckRequest {
    let mut map: HashMap<String, String> = [
        (":authority", "shop.example.com"),
        (":method", method),
        (":path", path),
        (":scheme", "https"),
        ("user-agent", "curl/8.5.0"),
        ("x-forwarded-proto", "https"),
        ("x-request-id", "5c1e9f0a-6f0e-4a59-9a57-0d9d0d6c1e2b"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v.to_owned()))
    .collect();
    map.extend(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    CheckRequest {
        attributes: Some(AttributeContext {
            source: Some(peer("203.0.113.7", 52_144)),
            destination: Some(peer("10.0.0.12", 8443)),
            request: Some(Request {
                time: Some(Timestamp {
                    seconds: 1_800_000_000,
                    nanos: 0,
                }),
                http: Some(HttpRequest {
                    id: "12718062390523947233".into(),
                    method: method.into(),
                    headers: map,
                    path: path.into(),
                    host: "shop.example.com".into(),
                    scheme: "https".into(),
                    protocol: "HTTP/1.1".into(),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        }),
    }
}

/// The same request with `encode_raw_headers` on: headers in a list, as bytes.
pub(crate) fn raw_envoy_request(
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> CheckRequest {
    let mut request = envoy_request(method, path, &[]);
    let http = http_mut(&mut request);
    let mut list: Vec<HeaderValue> = std::mem::take(&mut http.headers)
        .into_iter()
        .chain(headers.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .map(|(key, value)| HeaderValue {
            key,
            value: String::new(),
            raw_value: value.into_bytes(),
        })
        .collect();
    list.sort_by(|a, b| a.key.cmp(&b.key));
    http.header_map = Some(HeaderMap { headers: list });
    request
}

pub(crate) fn http_mut(request: &mut CheckRequest) -> &mut HttpRequest {
    request
        .attributes
        .as_mut()
        .and_then(|a| a.request.as_mut())
        .and_then(|r| r.http.as_mut())
        .expect("HTTP attributes")
}

pub(crate) async fn send(server: &TestServer, request: CheckRequest) -> CheckResponse {
    client(server)
        .await
        .check(request)
        .await
        .expect("ext_authz answers every decision in a CheckResponse")
        .into_inner()
}

pub(crate) async fn check(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> CheckResponse {
    send(server, envoy_request(method, path, headers)).await
}

/// The allow, asserting the gRPC status; panics on a denial.
#[track_caller]
pub(crate) fn ok_response(resp: &CheckResponse) -> &OkHttpResponse {
    assert_eq!(resp.status.as_ref().map(|s| s.code), Some(0), "{resp:?}");
    match &resp.http_response {
        Some(HttpResponse::OkResponse(ok)) => ok,
        other => panic!("expected an OkHttpResponse, got {other:?}"),
    }
}

/// The headers an allow sets, asserting each overwrites what the client sent.
#[track_caller]
pub(crate) fn set_headers(ok: &OkHttpResponse) -> HashMap<&str, &str> {
    ok.headers
        .iter()
        .map(|option| {
            #[allow(deprecated)]
            let append = option.append;
            assert_eq!(
                (option.append_action, append),
                (i32::from(HeaderAppendAction::OverwriteIfExistsOrAdd), None),
                "{option:?}"
            );
            let header = option.header.as_ref().expect("a header");
            assert!(header.raw_value.is_empty(), "{header:?}");
            (header.key.as_str(), header.value.as_str())
        })
        .collect()
}

/// A denial: the gRPC status, the HTTP status, the JSON body's reason and message, the
/// content type; returns the response's headers (without the content type).
#[track_caller]
pub(crate) fn denied(
    resp: &CheckResponse,
    status: HttpStatusCode,
    reason: &str,
    message: &str,
) -> HashMap<String, String> {
    let rpc = resp.status.as_ref().expect("a status");
    assert_eq!(
        (rpc.code, rpc.message.as_str()),
        (PERMISSION_DENIED, reason)
    );
    let Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
        status: Some(http_status),
        headers,
        body,
    })) = &resp.http_response
    else {
        panic!("expected a DeniedHttpResponse with a status, got {resp:?}");
    };
    assert_eq!(http_status.code, i32::from(status), "{resp:?}");
    let body: Value = serde_json::from_str(body).expect("a JSON body");
    assert_eq!(
        body,
        serde_json::json!({"error": reason, "message": message}),
        "{resp:?}"
    );
    let mut headers: HashMap<String, String> = headers
        .iter()
        .map(|option| {
            assert_eq!(
                option.append_action,
                i32::from(HeaderAppendAction::OverwriteIfExistsOrAdd)
            );
            let header = option.header.clone().expect("a header");
            (header.key, header.value)
        })
        .collect();
    assert_eq!(
        headers.remove("content-type").as_deref(),
        Some("application/json")
    );
    headers
}

/// Identity.Authenticate of `authorization`: the principal the headers must name.
async fn principal(server: &TestServer, authorization: &str) -> pb::Principal {
    authenticate(server, authorization)
        .await
        .principal
        .expect("a valid credential")
}

// ---------------------------------------------------------------------------------------
// Tests

/// An allowed request goes upstream with the principal in the identity headers and
/// without its credential; the service is known to health.
async fn allow_sets_identity_headers(backend: Backend) {
    let server = TestServer::start(backend).await;
    let reader = server
        .user_with_role("reader", "reader", &["orders:read"])
        .await;
    let expected = principal(&server, &reader).await;

    let resp = check(
        &server,
        "GET",
        "/api/v1/orders/17?expand=lines",
        &[("authorization", &reader)],
    )
    .await;
    let ok = ok_response(&resp);
    assert_eq!(
        set_headers(ok),
        HashMap::from([
            ("x-identity-id", expected.id.as_str()),
            ("x-identity-kind", "user"),
            ("x-identity-name", "reader"),
            ("x-identity-credential-id", expected.credential_id.as_str()),
        ])
    );
    // Unscoped: no scopes header reaches the upstream, whatever the client sent.
    assert_eq!(
        ok.headers_to_remove,
        ["authorization", "x-identity-scopes"],
        "{ok:?}"
    );
    assert!(expected.credential_id.starts_with("api_token:"));
    assert!(
        ok.response_headers_to_add.is_empty()
            && ok.query_parameters_to_set.is_empty()
            && ok.query_parameters_to_remove.is_empty(),
        "{ok:?}"
    );
    assert_eq!(resp.dynamic_metadata, None);

    // `encode_raw_headers`: the same answer from the raw header list.
    let raw = send(
        &server,
        raw_envoy_request("GET", "/api/v1/orders/17", &[("Authorization", &reader)]),
    )
    .await;
    assert_eq!(raw, resp);

    let mut health = tonic_health::pb::health_client::HealthClient::new(
        Channel::from_shared(server.url())
            .expect("url")
            .connect()
            .await
            .expect("connect"),
    );
    health
        .check(tonic_health::pb::HealthCheckRequest {
            service: identityd::api::ext_authz::SERVICE_NAME.into(),
        })
        .await
        .expect("the ext_authz service is known to health");
    server.stop().await;
}

/// Identity headers the client sent never reach the upstream: every one is overwritten
/// or removed, whatever its case. With `--ext-authz-keep-authorization`, the credential
/// stays; a different prefix names other headers.
async fn spoofed_identity_headers_are_overwritten(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "clerk", &["orders:*", "order_statuses:read"]).await;
    let token = bearer(
        &login_with_scope(&server, "clerk", "read_orders")
            .await
            .access_token,
    );
    let expected = principal(&server, &token).await;
    let spoofed: Vec<(&str, &str)> = IDENTITY_HEADERS
        .iter()
        .map(|name| (*name, "admin"))
        .chain([
            ("X-Identity-Kind", "integration"),
            ("x-identity-role", "admin"),
            ("authorization", &token),
        ])
        .collect();

    let resp = check(&server, "GET", "/api/v1/orders/3", &spoofed).await;
    let ok = ok_response(&resp);
    let set = set_headers(ok);
    assert_eq!(
        set,
        HashMap::from([
            ("x-identity-id", expected.id.as_str()),
            ("x-identity-kind", "user"),
            ("x-identity-name", "clerk"),
            ("x-identity-scopes", "read_orders"),
            ("x-identity-credential-id", expected.credential_id.as_str()),
        ])
    );
    // Under the prefix, headers identityd does not set are removed.
    assert_eq!(ok.headers_to_remove, ["authorization", "x-identity-role"]);
    for name in IDENTITY_HEADERS {
        assert!(set.contains_key(name) || ok.headers_to_remove.iter().any(|r| r == name));
    }
    server.stop().await;

    let server = TestServer::start_with(backend, |config| {
        config.ext_authz.ext_authz_header_prefix = "x-auth-".into();
        config.ext_authz.ext_authz_keep_authorization = true;
    })
    .await;
    let reader = server
        .user_with_role("reader", "reader", &["orders:read"])
        .await;
    let resp = check(
        &server,
        "GET",
        "/api/v1/orders/3",
        &[("authorization", &reader)],
    )
    .await;
    let ok = ok_response(&resp);
    let mut names: Vec<&str> = set_headers(ok).into_keys().collect();
    names.sort_unstable();
    assert_eq!(
        names,
        [
            "x-auth-credential-id",
            "x-auth-id",
            "x-auth-kind",
            "x-auth-name"
        ]
    );
    assert_eq!(ok.headers_to_remove, ["x-auth-scopes"]);
    server.stop().await;
}

/// No valid credential: 401 with the scheme's challenge and a JSON body.
async fn unauthenticated_is_401(backend: Backend) {
    let server = TestServer::start(backend).await;
    server
        .user_with_role("reader", "reader", &["orders:read"])
        .await;

    let resp = check(&server, "GET", "/api/v1/orders/17", &[]).await;
    let headers = denied(
        &resp,
        HttpStatusCode::Unauthorized,
        "missing_credentials",
        "no credentials were presented",
    );
    assert_eq!(
        headers,
        HashMap::from([(
            "www-authenticate".to_owned(),
            r#"Basic realm="identityd", charset="UTF-8", Bearer realm="identityd""#.to_owned()
        )])
    );

    let wrong = basic("reader", "idt_api_not-the-token");
    let resp = check(
        &server,
        "GET",
        "/api/v1/orders/17",
        &[("authorization", &wrong)],
    )
    .await;
    let headers = denied(
        &resp,
        HttpStatusCode::Unauthorized,
        "invalid_credentials",
        "the credentials are not valid",
    );
    assert_eq!(
        headers["www-authenticate"],
        r#"Basic realm="identityd", charset="UTF-8""#
    );

    // Authentication comes first, also on routes no rule covers.
    let resp = check(&server, "GET", "/api/v1/reports/daily", &[]).await;
    denied(
        &resp,
        HttpStatusCode::Unauthorized,
        "missing_credentials",
        "no credentials were presented",
    );
    server.stop().await;
}

/// A valid credential that may not: 403 naming what is missing; a scoped token falling
/// short gets the insufficient_scope challenge.
async fn forbidden_is_403(backend: Backend) {
    let server = TestServer::start(backend).await;
    let reader = server
        .user_with_role("reader", "reader", &["orders:read"])
        .await;
    user_with_password(&server, "clerk", &["orders:*", "order_statuses:read"]).await;
    let scoped = bearer(
        &login_with_scope(&server, "clerk", "read_orders")
            .await
            .access_token,
    );

    let resp = check(
        &server,
        "DELETE",
        "/api/v1/orders/17",
        &[("authorization", &reader)],
    )
    .await;
    let headers = denied(
        &resp,
        HttpStatusCode::Forbidden,
        "missing_permission",
        "missing permission orders:write",
    );
    assert!(headers.is_empty(), "{headers:?}");

    let resp = check(
        &server,
        "POST",
        "/api/v1/orders",
        &[("authorization", &scoped)],
    )
    .await;
    let headers = denied(
        &resp,
        HttpStatusCode::Forbidden,
        "insufficient_scope",
        "the token's scopes do not cover orders:write; it needs scope orders",
    );
    assert_eq!(
        headers,
        HashMap::from([(
            "www-authenticate".to_owned(),
            r#"Bearer realm="identityd", error="insufficient_scope", scope="orders""#.to_owned()
        )])
    );

    let resp = check(
        &server,
        "GET",
        "/api/v1/reports/daily",
        &[("authorization", &reader)],
    )
    .await;
    denied(
        &resp,
        HttpStatusCode::Forbidden,
        "uncovered_route",
        "no route-policy rule covers this method and path",
    );
    server.stop().await;
}

/// Several credentials are refused, never picked from: Envoy's comma-joined value,
/// the header twice in the raw list, or in both forms.
async fn several_credentials_are_refused(backend: Backend) {
    let server = TestServer::start(backend).await;
    let reader = server
        .user_with_role("reader", "reader", &["orders:read"])
        .await;
    let (path, message) = ("/api/v1/orders/1", "more than one credential was presented");
    let joined = format!("{reader},{}", server.admin_auth);
    let mut both = envoy_request("GET", path, &[("authorization", &reader)]);
    http_mut(&mut both).header_map = Some(HeaderMap {
        headers: vec![HeaderValue {
            key: "authorization".into(),
            value: String::new(),
            raw_value: reader.clone().into_bytes(),
        }],
    });
    let requests = [
        envoy_request("GET", path, &[("authorization", &joined)]),
        envoy_request(
            "GET",
            path,
            &[("authorization", &format!("{reader}, {reader}"))],
        ),
        envoy_request(
            "GET",
            path,
            &[("authorization", &reader), ("Authorization", &reader)],
        ),
        raw_envoy_request(
            "GET",
            path,
            &[("authorization", &reader), ("authorization", &reader)],
        ),
        both,
    ];
    for request in requests {
        let resp = send(&server, request).await;
        let headers = denied(
            &resp,
            HttpStatusCode::Unauthorized,
            "malformed_credentials",
            message,
        );
        assert!(headers["www-authenticate"].starts_with("Basic realm="));
    }
    server.stop().await;
}

/// Requests the policy cannot read are denied with 400, never answered with an error.
async fn unreadable_requests_are_denied(backend: Backend) {
    let server = TestServer::start(backend).await;
    let reader = server
        .user_with_role("reader", "reader", &["orders:read"])
        .await;
    let auth = [("authorization", reader.as_str())];
    let mut no_path = envoy_request("GET", "/api/v1/orders/1", &auth);
    http_mut(&mut no_path).path.clear();
    let mut no_method = envoy_request("GET", "/api/v1/orders/1", &auth);
    http_mut(&mut no_method).method.clear();
    let long = format!("/api/v1/orders/{}", "1".repeat(8192));
    let cases = [
        (CheckRequest::default(), "the check carries no HTTP request"),
        (no_path, "the request has no method or path"),
        (no_method, "the request has no method or path"),
        (
            envoy_request("GET", &long, &auth),
            "method or path is too long",
        ),
    ];
    for (request, message) in cases {
        let resp = send(&server, request).await;
        denied(
            &resp,
            HttpStatusCode::BadRequest,
            "invalid_request",
            message,
        );
    }
    // A path an upstream might resolve differently is refused, as by CheckPermission.
    let resp = check(&server, "GET", "/api/v1/orders/../credit_cards/1", &auth).await;
    let rpc = resp.status.as_ref().expect("a status");
    assert_eq!(
        (rpc.code, rpc.message.as_str()),
        (PERMISSION_DENIED, "invalid_request")
    );
    assert!(matches!(
        &resp.http_response,
        Some(HttpResponse::DeniedResponse(d)) if d.status.is_some_and(|s| s.code == 400)
    ));
    server.stop().await;
}

on_both_backends!(
    allow_sets_identity_headers,
    spoofed_identity_headers_are_overwritten,
    unauthenticated_is_401,
    forbidden_is_403,
    several_credentials_are_refused,
    unreadable_requests_are_denied,
    identity_headers_in_any_spelling_are_removed,
);

/// With storage gone, a credential that is not cached is denied with 503 `unavailable`:
/// a CheckResponse, never an allow and never a gRPC error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_outage_is_a_denial() {
    use sqlx::Connection;
    let server = TestServer::start_with(Backend::Postgres, |config| {
        config.database.db_acquire_timeout_secs = 1;
    })
    .await;
    let reader = server
        .user_with_role("reader", "reader", &["orders:read"])
        .await;
    let name = server.db.url.rsplit('/').next().expect("a database name");
    let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
        .await
        .expect("PostgreSQL");
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DROP DATABASE {name} WITH (FORCE)"
    )))
    .execute(&mut conn)
    .await
    .expect("drop the server's database");

    let resp = check(
        &server,
        "GET",
        "/api/v1/orders/1",
        &[("authorization", &reader)],
    )
    .await;
    denied(
        &resp,
        HttpStatusCode::ServiceUnavailable,
        "unavailable",
        "identityd could not decide; retry later",
    );
    server.stop().await;
}

/// On allow, every client header an upstream could read as an identity header is removed,
/// in any spelling: names ignore case, and CGI, WSGI, Rack and PHP read `_` as `-`
/// (`HTTP_X_IDENTITY_NAME`). identityd's exact names are overwritten instead (set, not
/// removed), and names that only look alike reach the upstream. With Envoy's header map
/// and with its raw list (`encode_raw_headers`), under the default prefix and another.
async fn identity_headers_in_any_spelling_are_removed(backend: Backend) {
    /// A prefix, spoofed spellings (removed), look-alikes (kept) and exact names
    /// (overwritten).
    type Row<'a> = (&'a str, &'a [&'a str], &'a [&'a str], [&'a str; 2]);
    let rows: [Row; 2] = [
        (
            "x-identity-",
            &[
                "x_identity_name",
                "X_Identity_Role",
                "x-identity_name",
                "x_identity-id",
                "X-IDENTITY-ROLE",
                "X_IDENTITY_KIND",
                "x_identity_credential_id",
                "x_identity_",
            ],
            &[
                "x_identityx",
                "x-identit",
                "x-identity",
                "x-identityname",
                "y_identity_name",
                "xx-identity-name",
                "x__identity_name",
                "identity-name",
                "x-auth-name",
            ],
            ["x-identity-name", "X-Identity-Kind"],
        ),
        (
            "x-auth-",
            &[
                "x_auth_name",
                "X_Auth_Role",
                "x-auth_id",
                "x_auth-kind",
                "X-AUTH-ROLE",
            ],
            &[
                "x_authx",
                "x-aut",
                "x-authname",
                "y_auth_name",
                "x_identity_name",
                "x-identity-name",
                "x-identity-role",
            ],
            ["x-auth-name", "X-Auth-Kind"],
        ),
    ];
    let path = "/api/v1/orders/3";
    for (prefix, spoofs, kept, exact) in rows {
        let server = TestServer::start_with(backend, |config| {
            config.ext_authz.ext_authz_header_prefix = prefix.into();
        })
        .await;
        let reader = server
            .user_with_role("reader", "reader", &["orders:read"])
            .await;
        let headers: Vec<(&str, &str)> = [("authorization", reader.as_str())]
            .into_iter()
            .chain(spoofs.iter().map(|name| (*name, "admin")))
            .chain(kept.iter().map(|name| (*name, "kept")))
            .chain(exact.into_iter().zip(["admin", "integration"]))
            .collect();
        // The credential, the scopes an unscoped credential does not have, and every
        // spoofed spelling, lower-cased; nothing else.
        let expected: std::collections::BTreeSet<String> =
            ["authorization".to_owned(), format!("{prefix}scopes")]
                .into_iter()
                .chain(spoofs.iter().map(|name| name.to_ascii_lowercase()))
                .collect();
        let forms = [
            ("header map", envoy_request("GET", path, &headers)),
            ("raw list", raw_envoy_request("GET", path, &headers)),
        ];
        for (form, request) in forms {
            let what = format!("prefix {prefix}, {form}");
            let resp = send(&server, request).await;
            let ok = ok_response(&resp);
            let removed: std::collections::BTreeSet<String> =
                ok.headers_to_remove.iter().cloned().collect();
            assert_eq!(
                removed.len(),
                ok.headers_to_remove.len(),
                "{what}: a name removed twice: {:?}",
                ok.headers_to_remove
            );
            for spoof in spoofs {
                let name = spoof.to_ascii_lowercase();
                assert!(removed.contains(&name), "{what}: {spoof} must be removed");
            }
            for name in kept {
                assert!(
                    !removed.iter().any(|r| r.eq_ignore_ascii_case(name)),
                    "{what}: {name} does not read as {prefix}…, so it stays"
                );
            }
            assert_eq!(removed, expected, "{what}");
            let set = set_headers(ok);
            assert_eq!(
                (
                    set.get(format!("{prefix}name").as_str()).copied(),
                    set.get(format!("{prefix}kind").as_str()).copied()
                ),
                (Some("reader"), Some("user")),
                "{what}: the exact names are overwritten"
            );
            for name in exact {
                assert!(
                    !removed.contains(&name.to_ascii_lowercase()),
                    "{what}: {name} is set, not removed"
                );
            }
            for name in set.keys() {
                assert!(
                    !removed.contains(*name),
                    "{what}: {name} both set and removed"
                );
            }
        }
        server.stop().await;
    }
}
