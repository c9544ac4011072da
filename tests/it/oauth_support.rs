//! Helpers for the OAuth2 and access-token tests: users with passwords, integrations,
//! the token endpoint, RFC 6749 error reasons, verdict assertions and JWT surgery.

use crate::support::*;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use identityd::api::pb;
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;
use tonic::{Code, Status};
use tonic_types::StatusExt as _;

/// The password every test user gets unless a test says otherwise.
pub const PASSWORD: &str = "correct horse battery staple";
/// Default access-token lifetime, seconds.
pub const ACCESS_TTL: i64 = 600;
/// Default absolute refresh-token lifetime, seconds.
pub const REFRESH_TTL: i64 = 30 * 86_400;
/// Every reason RFC 6749 §5.2 allows on the token endpoint.
pub const OAUTH_REASONS: [&str; 6] = [
    "invalid_request",
    "invalid_client",
    "invalid_grant",
    "unauthorized_client",
    "unsupported_grant_type",
    "invalid_scope",
];

/// `Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// `JWT <token>`.
pub fn jwt(token: &str) -> String {
    format!("JWT {token}")
}

// ---------------------------------------------------------------------------------------
// Users, roles, passwords

/// Creates a role.
pub async fn create_role(server: &TestServer, name: &str, permissions: &[&str]) {
    server
        .admin()
        .await
        .create_role(as_admin(
            server,
            pb::CreateRoleRequest {
                name: name.into(),
                description: String::new(),
                permissions: permissions.iter().map(|p| p.to_string()).collect(),
            },
        ))
        .await
        .expect("create role");
}

/// Replaces a role's permissions.
pub async fn set_role_permissions(server: &TestServer, role: &str, permissions: &[&str]) {
    let request = pb::SetRolePermissionsRequest {
        name: role.into(),
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
    };
    admin_call(server, &server.admin_auth, request, async |a, r| {
        a.set_role_permissions(r).await
    })
    .await
    .expect("set role permissions");
}

/// Takes a role from a user.
pub async fn unassign_role(server: &TestServer, username: &str, role: &str) {
    let request = pb::UnassignRoleRequest {
        username: username.into(),
        role: role.into(),
    };
    admin_call(server, &server.admin_auth, request, async |a, r| {
        a.unassign_role(r).await
    })
    .await
    .expect("unassign role");
}

/// Creates a user (no API access) and returns it.
pub async fn create_user(server: &TestServer, request: pb::CreateUserRequest) -> pb::User {
    server
        .admin()
        .await
        .create_user(as_admin(server, request))
        .await
        .expect("create user")
        .into_inner()
}

/// Admin.SetUserPassword as the bootstrap admin.
pub async fn set_password(
    server: &TestServer,
    username: &str,
    password: &str,
) -> Result<pb::SetUserPasswordResponse, Status> {
    server
        .admin()
        .await
        .set_user_password(as_admin(
            server,
            pb::SetUserPasswordRequest {
                username: username.into(),
                password: password.into(),
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}

/// A customer holding a role `<username>-role` with `permissions`, and [`PASSWORD`].
/// No API access: the password grant does not need it.
pub async fn user_with_password(
    server: &TestServer,
    username: &str,
    permissions: &[&str],
) -> pb::User {
    let role = format!("{username}-role");
    create_role(server, &role, permissions).await;
    let user = create_user(
        server,
        pb::CreateUserRequest {
            username: username.into(),
            roles: vec![role],
            ..Default::default()
        },
    )
    .await;
    set_password(server, username, PASSWORD)
        .await
        .expect("set password");
    user
}

/// Admin.UpdateUser as the bootstrap admin.
pub async fn update_user(
    server: &TestServer,
    request: pb::UpdateUserRequest,
) -> Result<pb::User, Status> {
    admin_call(server, &server.admin_auth, request, async |a, r| {
        a.update_user(r).await
    })
    .await
}

/// Admin.UpdateUser active flag.
pub async fn set_user_active(server: &TestServer, username: &str, active: bool) {
    update_user(
        server,
        pb::UpdateUserRequest {
            username: username.into(),
            active: Some(active),
            ..Default::default()
        },
    )
    .await
    .expect("update user");
}

/// Admin.DeleteUser as the bootstrap admin.
pub async fn delete_user(server: &TestServer, username: &str) {
    let request = pb::DeleteUserRequest {
        username: username.into(),
    };
    admin_call(server, &server.admin_auth, request, async |a, r| {
        a.delete_user(r).await
    })
    .await
    .expect("delete user");
}

/// Admin.GetUser as the bootstrap admin.
pub async fn get_user(server: &TestServer, username: &str) -> Result<pb::User, Status> {
    let request = pb::GetUserRequest {
        username: username.into(),
    };
    admin_call(server, &server.admin_auth, request, async |a, r| {
        a.get_user(r).await
    })
    .await
}

/// The bootstrap admin's user id.
pub async fn admin_user_id(server: &TestServer) -> String {
    get_user(server, "admin").await.expect("get admin").id
}

// ---------------------------------------------------------------------------------------
// The token endpoint

/// A `password` grant for the public client.
pub fn password_grant(username: &str, password: &str) -> pb::IssueTokenRequest {
    pb::IssueTokenRequest {
        grant_type: "password".into(),
        username: username.into(),
        password: password.into(),
        ..Default::default()
    }
}

/// A `client_credentials` grant.
pub fn client_grant(client_id: &str, client_secret: &str) -> pb::IssueTokenRequest {
    pb::IssueTokenRequest {
        grant_type: "client_credentials".into(),
        client_id: client_id.into(),
        client_secret: client_secret.into(),
        ..Default::default()
    }
}

/// Identity.IssueToken.
pub async fn issue(
    server: &TestServer,
    request: pb::IssueTokenRequest,
) -> Result<pb::TokenResponse, Status> {
    server
        .identity()
        .await
        .issue_token(request)
        .await
        .map(tonic::Response::into_inner)
}

/// A password login of the public client.
pub async fn try_login(
    server: &TestServer,
    username: &str,
    password: &str,
) -> Result<pb::TokenResponse, Status> {
    issue(server, password_grant(username, password)).await
}

/// A password login that must succeed.
pub async fn login(server: &TestServer, username: &str, password: &str) -> pb::TokenResponse {
    match try_login(server, username, password).await {
        Ok(tokens) => tokens,
        Err(status) => panic!("login of {username} failed: {status:?}"),
    }
}

/// A password login of the public client asking for `scope`.
pub async fn try_login_with_scope(
    server: &TestServer,
    username: &str,
    scope: &str,
) -> Result<pb::TokenResponse, Status> {
    let request = pb::IssueTokenRequest {
        scope: scope.into(),
        ..password_grant(username, PASSWORD)
    };
    issue(server, request).await
}

/// A password login asking for `scope` that must succeed.
pub async fn login_with_scope(
    server: &TestServer,
    username: &str,
    scope: &str,
) -> pb::TokenResponse {
    match try_login_with_scope(server, username, scope).await {
        Ok(tokens) => tokens,
        Err(status) => panic!("login of {username} with scope {scope:?} failed: {status:?}"),
    }
}

/// Identity.RefreshToken for the public client.
pub async fn refresh(
    server: &TestServer,
    refresh_token: &str,
    csrf_token: &str,
) -> Result<pb::TokenResponse, Status> {
    server
        .identity()
        .await
        .refresh_token(pb::RefreshTokenRequest {
            refresh_token: refresh_token.into(),
            csrf_token: csrf_token.into(),
            ..Default::default()
        })
        .await
        .map(tonic::Response::into_inner)
}

/// Identity.RevokeToken.
pub async fn revoke(server: &TestServer, request: pb::RevokeTokenRequest) -> Result<(), Status> {
    server
        .identity()
        .await
        .revoke_token(request)
        .await
        .map(|_| ())
}

/// Revokes `token` with a hint and no client credentials.
pub async fn revoke_plain(server: &TestServer, token: &str, hint: &str) -> Result<(), Status> {
    revoke(
        server,
        pb::RevokeTokenRequest {
            token: token.into(),
            token_type_hint: hint.into(),
            ..Default::default()
        },
    )
    .await
}

// ---------------------------------------------------------------------------------------
// Integrations

/// Creates an integration; returns it and its secret.
pub async fn integration(
    server: &TestServer,
    name: &str,
    permissions: &[&str],
) -> (pb::Integration, String) {
    let created = server
        .admin()
        .await
        .create_integration(as_admin(
            server,
            pb::CreateIntegrationRequest {
                name: name.into(),
                permissions: permissions.iter().map(|p| p.to_string()).collect(),
            },
        ))
        .await
        .expect("create integration")
        .into_inner();
    let integration = created.integration.expect("integration in the response");
    assert!(!created.client_secret.is_empty(), "a client secret");
    (integration, created.client_secret)
}

/// A `client_credentials` token.
pub async fn client_token(
    server: &TestServer,
    client_id: &str,
    client_secret: &str,
) -> Result<pb::TokenResponse, Status> {
    issue(server, client_grant(client_id, client_secret)).await
}

// ---------------------------------------------------------------------------------------
// Errors

/// The `ErrorInfo.reason` of an identityd error (whose domain must be `identityd`).
#[track_caller]
pub fn error_reason(status: &Status) -> String {
    let info = status.get_details_error_info().unwrap_or_else(|| {
        panic!(
            "no ErrorInfo in {:?}: {:?}",
            status.code(),
            status.message()
        )
    });
    assert_eq!(info.domain, "identityd", "ErrorInfo domain of {status:?}");
    info.reason
}

/// Asserts an error's gRPC code and `ErrorInfo` reason; returns the status.
#[track_caller]
pub fn assert_oauth_error<T: std::fmt::Debug>(
    result: Result<T, Status>,
    code: Code,
    reason: &str,
) -> Status {
    match result {
        Ok(v) => panic!("expected {code:?} / {reason}, got Ok({v:?})"),
        Err(status) => {
            assert_eq!(
                (status.code(), error_reason(&status).as_str()),
                (code, reason),
                "message: {:?}",
                status.message()
            );
            status
        }
    }
}

/// Asserts the call failed with one of RFC 6749's reasons; returns the reason.
#[track_caller]
pub fn assert_some_oauth_error<T: std::fmt::Debug>(result: Result<T, Status>) -> String {
    match result {
        Ok(v) => panic!("expected an OAuth2 error, got Ok({v:?})"),
        Err(status) => {
            let reason = error_reason(&status);
            assert!(
                OAUTH_REASONS.contains(&reason.as_str()),
                "{reason:?} is not an RFC 6749 reason ({status:?})"
            );
            reason
        }
    }
}

// ---------------------------------------------------------------------------------------
// Verdicts on access tokens

/// The `WWW-Authenticate` challenge expected for a refused token under `scheme`.
#[track_caller]
pub fn assert_token_challenge(challenge: &str, scheme: &str) {
    assert!(
        challenge.starts_with(&format!(r#"{scheme} realm="identityd""#))
            && challenge.contains(r#"error="invalid_token""#),
        "challenge for a refused {scheme} token: {challenge:?}"
    );
}

/// Checks `token` for `permission` under `scheme` (`Bearer` or `JWT`): it must answer
/// `status` with `reason`. A 401 must carry the scheme's `invalid_token` challenge and no
/// principal; 200 and 403 a principal presented with the scheme used. Returns the answer.
pub async fn assert_token_under(
    server: &TestServer,
    scheme: &str,
    token: &str,
    permission: &str,
    (status, reason): (u32, &str),
    what: &str,
) -> pb::CheckPermissionResponse {
    let resp = server
        .check(&format!("{scheme} {token}"), &[permission])
        .await;
    assert_eq!(
        (resp.http_status, resp.reason.as_str()),
        (status, reason),
        "{what} ({scheme}): {resp:?}"
    );
    if status == 401 {
        assert_eq!(
            resp.verdict,
            i32::from(pb::Verdict::Unauthenticated),
            "{what} ({scheme})"
        );
        assert!(resp.principal.is_none(), "{what} ({scheme}): {resp:?}");
        assert_token_challenge(&resp.www_authenticate, scheme);
    } else {
        let principal = resp.principal.as_ref().expect("principal on 200 and 403");
        assert_eq!(principal.scheme, scheme, "{what}");
        assert!(
            resp.www_authenticate.is_empty(),
            "{what} ({scheme}): {resp:?}"
        );
    }
    resp
}

/// Checks `token` for `permission` under both `Bearer` and `JWT`; both must answer
/// `status` with `reason` (see [`assert_token_under`]).
pub async fn assert_token(
    server: &TestServer,
    token: &str,
    permission: &str,
    status: u32,
    reason: &str,
    what: &str,
) {
    for scheme in ["Bearer", "JWT"] {
        assert_token_under(server, scheme, token, permission, (status, reason), what).await;
    }
}

/// Checks a token only `Bearer` takes (an integration's access token, an app token, a
/// non-expiring token): under `Bearer` it answers `status` with `reason`, under `JWT` it
/// is refused with `scheme_mismatch`. Returns the `Bearer` answer.
pub async fn assert_bearer_only(
    server: &TestServer,
    token: &str,
    permission: &str,
    expected: (u32, &str),
    what: &str,
) -> pb::CheckPermissionResponse {
    let mismatch = (401, "scheme_mismatch");
    assert_token_under(server, "JWT", token, permission, mismatch, what).await;
    assert_token_under(server, "Bearer", token, permission, expected, what).await
}

/// A token only `Bearer` takes is refused there with `reason`.
pub async fn assert_bearer_refused(server: &TestServer, token: &str, reason: &str, what: &str) {
    assert_token_under(server, "Bearer", token, "orders:read", (401, reason), what).await;
}

/// The token is accepted for `permission`.
pub async fn assert_allowed(server: &TestServer, token: &str, permission: &str, what: &str) {
    assert_token(server, token, permission, 200, "ok", what).await;
}

/// The token is refused (401) with `reason`.
pub async fn assert_refused(server: &TestServer, token: &str, reason: &str, what: &str) {
    assert_token(server, token, "orders:read", 401, reason, what).await;
}

/// Checks `authorization` for `permission` again: allowed, and answered from the cache.
pub async fn assert_allowed_from_cache(server: &TestServer, authorization: &str, permission: &str) {
    let hits = server.cache.stats().hits;
    assert_verdict(&server.check(authorization, &[permission]).await, 200, "ok");
    assert_eq!(
        server.cache.stats().hits,
        hits + 1,
        "answered from the cache"
    );
}

/// Identity.Authenticate.
pub async fn authenticate(server: &TestServer, authorization: &str) -> pb::AuthenticateResponse {
    server
        .identity()
        .await
        .authenticate(pb::AuthenticateRequest {
            authorization: authorization.into(),
            ..Default::default()
        })
        .await
        .expect("Authenticate answers refusals in the body")
        .into_inner()
}

// ---------------------------------------------------------------------------------------
// JWT surgery

/// base64url without padding.
pub fn b64(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes base64url without padding.
pub fn unb64(s: &str) -> Option<Vec<u8>> {
    URL_SAFE_NO_PAD.decode(s).ok()
}

/// A JSON value as a JWT segment.
pub fn b64_json(value: &Value) -> String {
    b64(serde_json::to_vec(value).expect("JSON"))
}

/// The three segments of a compact JWS.
#[track_caller]
pub fn segments(token: &str) -> (String, String, String) {
    let parts: Vec<&str> = token.split('.').collect();
    assert_eq!(parts.len(), 3, "a compact JWS has three segments");
    (parts[0].into(), parts[1].into(), parts[2].into())
}

fn decode_segment(segment: &str) -> Value {
    let bytes = URL_SAFE_NO_PAD
        .decode(segment)
        .expect("base64url without padding");
    serde_json::from_slice(&bytes).expect("a JSON segment")
}

/// The decoded JOSE header.
#[track_caller]
pub fn header_of(token: &str) -> Value {
    decode_segment(&segments(token).0)
}

/// The decoded claims.
#[track_caller]
pub fn claims_of(token: &str) -> Value {
    decode_segment(&segments(token).1)
}

/// A copy of `value` (a JSON object) changed by `edit`.
pub fn edited(value: &Value, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut copy = value.clone();
    edit(copy.as_object_mut().expect("a JSON object"));
    copy
}

/// Claims signed with the server's current key, as an access token (`typ` `at+jwt`).
pub fn sign_claims(server: &TestServer, claims: &Value) -> String {
    sign_typ(server, "at+jwt", claims)
}

/// Claims signed with the server's current key under header `typ`.
pub fn sign_typ(server: &TestServer, typ: &str, claims: &Value) -> String {
    server.keys.sign_json(typ, claims).expect("sign_json")
}

/// Whether `token`'s signature verifies with the Ed25519 public key `x` (a JWK's `x`).
pub fn verifies(token: &str, x: &str) -> bool {
    let (h, p, s) = segments(token);
    let key = DecodingKey::from_ed_components(x).expect("an Ed25519 x");
    jsonwebtoken::crypto::verify(&s, format!("{h}.{p}").as_bytes(), &key, Algorithm::EdDSA)
        .unwrap_or(false)
}

/// Identity.GetJwks.
pub async fn jwks(server: &TestServer) -> Vec<pb::Jwk> {
    server
        .identity()
        .await
        .get_jwks(pb::GetJwksRequest {})
        .await
        .expect("GetJwks")
        .into_inner()
        .keys
}

/// The published key with `kid`.
pub async fn jwk(server: &TestServer, kid: &str) -> pb::Jwk {
    jwks(server)
        .await
        .into_iter()
        .find(|k| k.kid == kid)
        .unwrap_or_else(|| panic!("no key {kid:?} in the JWKS"))
}

/// The `kid` in a token's header.
#[track_caller]
pub fn kid_of(token: &str) -> String {
    header_of(token)["kid"]
        .as_str()
        .expect("a string kid in the header")
        .to_owned()
}

/// ReplaceScopeCatalog as the bootstrap admin.
pub async fn replace_catalog(
    server: &TestServer,
    text: &str,
    validate_only: bool,
) -> Result<pb::ScopeCatalog, Status> {
    server
        .admin()
        .await
        .replace_scope_catalog(as_admin(
            server,
            pb::ReplaceScopeCatalogRequest {
                text: text.into(),
                validate_only,
            },
        ))
        .await
        .map(tonic::Response::into_inner)
}
