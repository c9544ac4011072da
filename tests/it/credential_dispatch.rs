//! The credential dispatcher: which schemes take which kinds of credential. A kind
//! identityd issues, under a scheme that does not take it, is a 401 `scheme_mismatch`
//! with that scheme's challenge; a credential of no known shape stays
//! `invalid_credentials`. Each accepted pairing reports its principal kind, scheme and a
//! credential id that does not reveal the secret.

use crate::app_support::*;
use crate::oauth_support::*;
use crate::on_both_backends;
use crate::support::*;
use identityd::api::pb::{self, PrincipalKind};

/// One credential of every kind identityd issues: carol's, her session's, an app's and
/// an integration's.
struct Kinds {
    api_token: String,
    login: pb::TokenResponse,
    non_expiring: String,
    app_token: String,
    integration_token: String,
    client_secret: String,
}

async fn every_kind(server: &TestServer) -> Kinds {
    user_with_password(server, "carol", &["orders:read", "order_statuses:read"]).await;
    let api_token = server.enable_api_access("carol").await;
    let login = login(server, "carol", PASSWORD).await;
    let non_expiring = login_with_scope(server, "carol", "read_orders no_expiry")
        .await
        .access_token;
    let (_, app_token) = app_with_token(server, "shop", &["orders:read"], "").await;
    let (billing, client_secret) = integration(server, "billing", &["orders:read"]).await;
    let integration_token = client_token(server, &billing.client_id, &client_secret)
        .await
        .expect("client_credentials")
        .access_token;
    Kinds {
        api_token,
        login,
        non_expiring,
        app_token,
        integration_token,
        client_secret,
    }
}

/// Whether `text` shows any 12 consecutive characters of `secret`.
fn reveals(text: &str, secret: &str) -> bool {
    secret
        .as_bytes()
        .windows(12)
        .any(|w| text.as_bytes().windows(12).any(|t| t == w))
}

/// Asserts the challenge of a refusal under `scheme`.
#[track_caller]
fn assert_challenge(challenge: &str, scheme: &str, what: &str) {
    if scheme == "Basic" {
        assert!(
            challenge.starts_with("Basic realm="),
            "{what}: Basic challenge expected, got {challenge:?}"
        );
    } else {
        assert_token_challenge(challenge, scheme);
    }
}

/// `authorization` (holding `secret`, presented under `scheme`) is refused with
/// `reason` by CheckPermission and Authenticate, with the scheme's challenge, no
/// principal and a message that does not repeat the secret.
async fn assert_refused_as(
    server: &TestServer,
    authorization: &str,
    (scheme, secret): (&str, &str),
    reason: &str,
    what: &str,
) {
    let checked = server.check(authorization, &["orders:read"]).await;
    let authn = authenticate(server, authorization).await;
    assert_eq!(
        (checked.http_status, checked.reason.as_str()),
        (401, reason),
        "{what}: {checked:?}"
    );
    assert_eq!(
        (authn.http_status, authn.reason.as_str()),
        (401, reason),
        "{what}: {authn:?}"
    );
    assert!(
        checked.principal.is_none() && authn.principal.is_none(),
        "{what}: no principal"
    );
    assert!(
        !reveals(&authn.message, secret) && !reveals(&checked.message, secret),
        "{what}: the message repeats the secret: {:?}",
        authn.message
    );
    for challenge in [&checked.www_authenticate, &authn.www_authenticate] {
        assert_challenge(challenge, scheme, what);
    }
}

/// `<scheme> <secret>` is a `scheme_mismatch`.
async fn assert_mismatch(server: &TestServer, scheme: &str, secret: &str, what: &str) {
    let authorization = format!("{scheme} {secret}");
    assert_refused_as(
        server,
        &authorization,
        (scheme, secret),
        "scheme_mismatch",
        what,
    )
    .await;
}

/// `Basic carol:<secret>` is a `scheme_mismatch`.
async fn assert_basic_mismatch(server: &TestServer, secret: &str, what: &str) {
    let authorization = basic("carol", secret);
    let presented = ("Basic", secret);
    assert_refused_as(server, &authorization, presented, "scheme_mismatch", what).await;
}

/// `authorization` (holding `secret`) is accepted as a principal of `kind` presented
/// with `scheme` as a `credential_kind`, with a credential id that hides the secret.
async fn assert_accepted(
    server: &TestServer,
    authorization: &str,
    secret: &str,
    expected: (PrincipalKind, &str, &str),
    what: &str,
) -> pb::Principal {
    let (kind, scheme, credential_kind) = expected;
    assert_verdict(
        &server.check(authorization, &["orders:read"]).await,
        200,
        "ok",
    );
    let authn = authenticate(server, authorization).await;
    assert_eq!(
        (authn.http_status, authn.reason.as_str()),
        (200, "ok"),
        "{what}: {authn:?}"
    );
    let p = authn.principal.expect("principal");
    assert_eq!(
        (p.kind, p.scheme.as_str(), p.credential_kind.as_str()),
        (i32::from(kind), scheme, credential_kind),
        "{what}: {p:?}"
    );
    assert!(
        !p.credential_id.is_empty() && !reveals(&p.credential_id, secret),
        "{what}: credential_id {:?}",
        p.credential_id
    );
    p
}

/// `JWT` takes users' access tokens only: app, non-expiring, API and integration
/// tokens are `scheme_mismatch`. A user's access token works under `JWT` and `Bearer`.
async fn jwt_takes_only_users_access_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let k = every_kind(&server).await;
    let access = &k.login.access_token;
    const USER_ACCESS: &str = "access_token";
    for (scheme, header) in [("JWT", jwt(access)), ("Bearer", bearer(access))] {
        let p = assert_accepted(
            &server,
            &header,
            access,
            (PrincipalKind::User, scheme, USER_ACCESS),
            "a user's access token",
        )
        .await;
        assert_eq!(p.name, "carol");
    }
    assert_mismatch(&server, "JWT", &k.app_token, "app token").await;
    assert_mismatch(&server, "JWT", &k.non_expiring, "non-expiring token").await;
    assert_mismatch(&server, "JWT", &k.api_token, "API token").await;
    assert_mismatch(&server, "JWT", &k.integration_token, "integration token").await;
    // Refused before anything else: the app token still works under Bearer.
    assert_app_allowed(&server, &k.app_token, "orders:read", "Bearer").await;
    server.stop().await;
}

/// `Bearer` takes access tokens (users' and integrations'), app tokens and
/// non-expiring tokens; API tokens, refresh tokens and client secrets are
/// `scheme_mismatch`.
async fn bearer_takes_access_app_and_non_expiring_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let k = every_kind(&server).await;
    let accepted = [
        (
            &k.login.access_token,
            PrincipalKind::User,
            "access_token",
            "user's access token",
        ),
        (
            &k.integration_token,
            PrincipalKind::Integration,
            "access_token",
            "integration's access token",
        ),
        (
            &k.non_expiring,
            PrincipalKind::User,
            "non_expiring_token",
            "non-expiring token",
        ),
        (&k.app_token, PrincipalKind::App, "app_token", "app token"),
    ];
    for (secret, kind, credential_kind, what) in accepted {
        let expected = (kind, "Bearer", credential_kind);
        assert_accepted(&server, &bearer(secret), secret, expected, what).await;
    }
    assert_mismatch(&server, "Bearer", &k.api_token, "API token").await;
    assert_mismatch(&server, "Bearer", &k.login.refresh_token, "refresh token").await;
    assert_mismatch(&server, "Bearer", &k.client_secret, "client secret").await;
    server.stop().await;
}

/// `Basic` takes a username and API token only: an app token, an access token or a
/// non-expiring token as the password is `scheme_mismatch`.
async fn basic_takes_only_api_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let k = every_kind(&server).await;
    let p = assert_accepted(
        &server,
        &basic("carol", &k.api_token),
        &k.api_token,
        (PrincipalKind::User, "Basic", "api_token"),
        "API token",
    )
    .await;
    assert_eq!(p.name, "carol");
    assert_basic_mismatch(&server, &k.app_token, "app token").await;
    assert_basic_mismatch(&server, &k.login.access_token, "access token").await;
    assert_basic_mismatch(&server, &k.non_expiring, "non-expiring token").await;
    server.stop().await;
}

/// Credentials of no known shape, and well-shaped app tokens never issued, stay
/// `invalid_credentials`.
async fn unknown_shapes_stay_invalid_credentials(backend: Backend) {
    let server = TestServer::start(backend).await;
    every_kind(&server).await;
    let forged_app = format!("{APP_TOKEN_PREFIX}{}", "A".repeat(43));
    for (scheme, secret) in [
        ("Bearer", "abc"),
        ("JWT", "abc"),
        ("Bearer", forged_app.as_str()),
    ] {
        let authorization = format!("{scheme} {secret}");
        let presented = (scheme, secret);
        let what = authorization.as_str();
        assert_refused_as(&server, what, presented, "invalid_credentials", what).await;
    }
    let authorization = basic("carol", "hunter2-not-a-token");
    let presented = ("Basic", "hunter2-not-a-token");
    let what = "Basic with an unknown password";
    assert_refused_as(
        &server,
        &authorization,
        presented,
        "invalid_credentials",
        what,
    )
    .await;
    server.stop().await;
}

on_both_backends!(
    jwt_takes_only_users_access_tokens,
    bearer_takes_access_app_and_non_expiring_tokens,
    basic_takes_only_api_tokens,
    unknown_shapes_stay_invalid_credentials,
);
