//! The header table through the real server: every malformed or unknown input is a 401
//! with a stable reason and the right challenge, never an error or an allow.

use crate::on_both_backends;
use crate::support::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

const BASIC_CHALLENGE: &str = r#"Basic realm="identityd", charset="UTF-8""#;
const ANY_CHALLENGE: &str = r#"Basic realm="identityd", charset="UTF-8", Bearer realm="identityd""#;

async fn header_table(backend: Backend) {
    let server = TestServer::start(backend).await;
    let good = server
        .user_with_role("alice", "reader", &["orders:read"])
        .await;
    let encoded = good.trim_start_matches("Basic ").to_owned();
    let token = String::from_utf8(STANDARD.decode(&encoded).expect("b64"))
        .expect("utf8")
        .split_once(':')
        .expect("colon")
        .1
        .to_owned();
    let b64 = |raw: &[u8]| format!("Basic {}", STANDARD.encode(raw));

    // (name, header, status, reason, challenge)
    let rows: Vec<(&str, String, u32, &str, &str)> = vec![
        ("valid", good.clone(), 200, "ok", ""),
        (
            "missing",
            String::new(),
            401,
            "missing_credentials",
            ANY_CHALLENGE,
        ),
        (
            "blank",
            "   ".into(),
            401,
            "missing_credentials",
            ANY_CHALLENGE,
        ),
        (
            "scheme only",
            "Basic".into(),
            401,
            "malformed_credentials",
            BASIC_CHALLENGE,
        ),
        (
            "lower-case scheme",
            format!("basic {encoded}"),
            200,
            "ok",
            "",
        ),
        (
            "upper-case scheme",
            format!("BASIC {encoded}"),
            200,
            "ok",
            "",
        ),
        (
            "bad base64",
            "Basic %%%%".into(),
            401,
            "malformed_credentials",
            BASIC_CHALLENGE,
        ),
        (
            "unpadded base64",
            "Basic YWxpY2U6eA".into(),
            401,
            "malformed_credentials",
            BASIC_CHALLENGE,
        ),
        (
            "no colon",
            b64(b"alicetoken"),
            401,
            "malformed_credentials",
            BASIC_CHALLENGE,
        ),
        (
            "empty user",
            b64(format!(":{token}").as_bytes()),
            401,
            "malformed_credentials",
            BASIC_CHALLENGE,
        ),
        (
            "empty token",
            b64(b"alice:"),
            401,
            "malformed_credentials",
            BASIC_CHALLENGE,
        ),
        (
            "colon inside token",
            b64(format!("alice:{token}:x").as_bytes()),
            401,
            "invalid_credentials",
            BASIC_CHALLENGE,
        ),
        (
            "control character",
            format!("Basic\u{1}{encoded}"),
            401,
            "malformed_credentials",
            ANY_CHALLENGE,
        ),
        (
            "control character decoded",
            b64(format!("alice:{token}\u{7}").as_bytes()),
            401,
            "malformed_credentials",
            BASIC_CHALLENGE,
        ),
        (
            "non-UTF-8 decoded",
            b64(b"\xffalice:x"),
            401,
            "malformed_credentials",
            BASIC_CHALLENGE,
        ),
        (
            "oversized",
            format!("Basic {}", "QUFB".repeat(3000)),
            401,
            "malformed_credentials",
            ANY_CHALLENGE,
        ),
        (
            "unknown scheme",
            "Digest username=\"alice\"".into(),
            401,
            "unsupported_scheme",
            ANY_CHALLENGE,
        ),
        (
            "wrong user",
            b64(format!("mallory:{token}").as_bytes()),
            401,
            "invalid_credentials",
            BASIC_CHALLENGE,
        ),
        (
            "unknown bearer",
            "Bearer abc".into(),
            401,
            "invalid_credentials",
            r#"Bearer realm="identityd", error="invalid_token""#,
        ),
    ];
    for (name, header, status, reason, challenge) in rows {
        let resp = server.check(&header, &["orders:read"]).await;
        assert_eq!(
            (
                resp.http_status,
                resp.reason.as_str(),
                resp.www_authenticate.as_str()
            ),
            (status, reason, challenge),
            "{name}"
        );
        assert_eq!(resp.principal.is_some(), status != 401, "{name}");
    }
    server.stop().await;
}

/// Malformed RPCs are gRPC errors, not verdicts.
async fn malformed_requests(backend: Backend) {
    use identityd::api::pb::CheckPermissionRequest;
    use tonic::Code;
    let server = TestServer::start(backend).await;
    let mut identity = server.identity().await;
    let request = |perms: Vec<String>| CheckPermissionRequest {
        authorization: "Basic eDp5".into(),
        permissions: perms,
        ..Default::default()
    };
    assert_status(
        identity.check_permission(request(vec![])).await,
        Code::InvalidArgument,
        "at least one",
    );
    assert_status(
        identity
            .check_permission(request(vec!["orders".into()]))
            .await,
        Code::InvalidArgument,
        "resource:action",
    );
    assert_status(
        identity
            .check_permission(request(vec!["orders:*".into()]))
            .await,
        Code::InvalidArgument,
        "wildcard",
    );
    assert_status(
        identity
            .check_permission(request(vec!["a:b".into(); 65]))
            .await,
        Code::InvalidArgument,
        "at most 64",
    );
    // Route checks: a path not in canonical form, half a route, or a route and
    // permissions at once are refused before any credential is looked at.
    let by_route = |method: &str, path: &str, permissions: Vec<String>| CheckPermissionRequest {
        method: method.into(),
        path: path.into(),
        ..request(permissions)
    };
    for (request, fragment) in [
        (
            by_route("GET", "/api/v1/orders/../credit_cards/1/decrypted", vec![]),
            "path",
        ),
        (by_route("GET", "/api/v1/orders%2f1", vec![]), "path"),
        (by_route("get", "/api/v1/orders", vec![]), "method"),
        (by_route("GET", "", vec![]), "both method and path"),
        (
            by_route("", "/api/v1/orders", vec![]),
            "both method and path",
        ),
        (
            by_route("GET", "/api/v1/orders", vec!["orders:read".into()]),
            "not both",
        ),
        (
            by_route("GET", &format!("/{}", "a".repeat(9000)), vec![]),
            "too long",
        ),
    ] {
        assert_status(
            identity.check_permission(request).await,
            Code::InvalidArgument,
            fragment,
        );
    }
    assert_status(
        identity
            .issue_token(identityd::api::pb::IssueTokenRequest::default())
            .await,
        Code::InvalidArgument,
        "grant_type is required",
    );
    server.stop().await;
}

on_both_backends!(header_table, malformed_requests);
