//! Ending everything that carries a user's authority: Admin.RevokeUserCredentials, and
//! disabling or deleting the user, refuse from the next check its API token, every
//! session (access, refresh and non-expiring tokens) and the tokens of apps attached to
//! it.

use crate::app_support::*;
use crate::oauth_support::*;
use crate::on_both_backends;
use crate::support::*;
use identityd::api::pb;
use tonic::{Code, Status};

/// Everything carol holds, each checked (and cached) once before.
struct Armed {
    basic: String,
    login: pb::TokenResponse,
    non_expiring: String,
    app: pb::App,
    app_token: String,
}

/// Carol with an API token, a password login, a non-expiring token and an attached
/// app with a token, every one of them working; and bob, with a login of his own.
async fn armed_carol(server: &TestServer) -> (Armed, pb::TokenResponse) {
    user_with_password(server, "carol", &["orders:read", "order_statuses:read"]).await;
    user_with_password(server, "bob", &["orders:read"]).await;
    let basic = basic("carol", &server.enable_api_access("carol").await);
    let carols_login = login(server, "carol", PASSWORD).await;
    let non_expiring = login_with_scope(server, "carol", "read_orders no_expiry")
        .await
        .access_token;
    let (app, app_token) = app_with_token(server, "carols-app", &["orders:read"], "carol").await;
    let armed = Armed {
        basic,
        login: carols_login,
        non_expiring,
        app,
        app_token,
    };
    for authorization in [
        armed.basic.clone(),
        bearer(&armed.login.access_token),
        bearer(&armed.non_expiring),
        bearer(&armed.app_token),
    ] {
        assert_verdict(
            &server.check(&authorization, &["orders:read"]).await,
            200,
            "ok",
        );
        assert_allowed_from_cache(server, &authorization, "orders:read").await;
    }
    let bob = login(server, "bob", PASSWORD).await;
    (armed, bob)
}

/// Every credential of `armed` is refused on the next check; bob's login still works.
/// `non_expiring` is the reason its non-expiring token gets: `revoked`, or, once the user
/// is deleted (its sessions go with it), `invalid_credentials`, as for any unknown token.
async fn assert_all_refused(
    server: &TestServer,
    armed: &Armed,
    bob: &pb::TokenResponse,
    non_expiring: &str,
    what: &str,
) {
    let basic = server.check(&armed.basic, &["orders:read"]).await;
    assert_eq!(
        (basic.http_status, basic.reason.as_str()),
        (401, "invalid_credentials"),
        "{what}, API token: {basic:?}"
    );
    assert_refused(server, &armed.login.access_token, "revoked", what).await;
    let refreshed = refresh(server, &armed.login.refresh_token, &armed.login.csrf_token).await;
    assert_oauth_error(refreshed, Code::Unauthenticated, "invalid_grant");
    assert_bearer_refused(server, &armed.non_expiring, non_expiring, what).await;
    assert_bearer_refused(server, &armed.app_token, "invalid_credentials", what).await;
    assert_allowed(server, &bob.access_token, "orders:read", "bob untouched").await;
}

/// Admin.RevokeUserCredentials as `authorization`.
async fn revoke_user_credentials(
    server: &TestServer,
    authorization: &str,
    username: &str,
) -> Result<pb::RevokeUserCredentialsResponse, Status> {
    let request = pb::RevokeUserCredentialsRequest {
        username: username.into(),
    };
    admin_call(server, authorization, request, async |a, r| {
        a.revoke_user_credentials(r).await
    })
    .await
}

/// The user can start again: a password login, and a new API token from
/// RegenerateApiToken (API access stayed on).
async fn assert_can_start_again(server: &TestServer) {
    let fresh = login(server, "carol", PASSWORD).await;
    assert_allowed(server, &fresh.access_token, "orders:read", "new login").await;
    let regenerated = regenerate_api_token(server, "carol")
        .await
        .expect("regenerate API token");
    let basic = basic("carol", &regenerated.api_token);
    assert_verdict(&server.check(&basic, &["orders:read"]).await, 200, "ok");
}

/// RevokeUserCredentials ends every credential of the user at once and says what it
/// ended; the user can log in again and get a new API token.
async fn revoke_user_credentials_ends_everything(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (armed, bob) = armed_carol(&server).await;

    let revoked = revoke_user_credentials(&server, &server.admin_auth, "carol")
        .await
        .expect("RevokeUserCredentials");
    assert!(revoked.sessions_revoked >= 2, "{revoked:?}");
    assert_eq!(
        (revoked.api_token_revoked, revoked.app_tokens_revoked),
        (true, 1),
        "{revoked:?}"
    );
    let user = revoked.user.expect("user");
    assert_eq!(
        (user.username.as_str(), user.active, user.api_access),
        ("carol", true, true)
    );
    assert_all_refused(&server, &armed, &bob, "revoked", "credentials revoked").await;

    // Nothing is left to revoke.
    let again = revoke_user_credentials(&server, &server.admin_auth, "carol")
        .await
        .expect("again");
    assert_eq!(
        (
            again.sessions_revoked,
            again.api_token_revoked,
            again.app_tokens_revoked
        ),
        (0, false, 0),
        "{again:?}"
    );
    // The app stays, attached, to be given new tokens.
    let app = get_app(&server, &armed.app.id).await.expect("app kept");
    assert_eq!((app.active, app.attached_user.as_str()), (true, "carol"));
    assert_can_start_again(&server).await;
    server.stop().await;
}

/// RevokeUserCredentials needs `users:write` and an existing user.
async fn revoke_user_credentials_needs_users_write(backend: Backend) {
    let server = TestServer::start(backend).await;
    create_role(&server, "user-reader", &["users:read"]).await;
    let reader = server
        .user_with_roles("reader", &["user-reader"], true)
        .await;
    let (armed, _) = armed_carol(&server).await;
    assert_status(
        revoke_user_credentials(&server, &reader, "carol").await,
        Code::PermissionDenied,
        "users:write",
    );
    assert_status(
        revoke_user_credentials(&server, &server.admin_auth, "ghost").await,
        Code::NotFound,
        "ghost",
    );
    assert_verdict(
        &server.check(&armed.basic, &["orders:read"]).await,
        200,
        "ok",
    );
    assert_app_allowed(&server, &armed.app_token, "orders:read", "kept").await;
    server.stop().await;
}

/// Disabling the user does the same, and enabling it again revives nothing.
async fn disabling_a_user_ends_everything(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (armed, bob) = armed_carol(&server).await;
    set_user_active(&server, "carol", false).await;
    assert_all_refused(&server, &armed, &bob, "revoked", "user disabled").await;
    set_user_active(&server, "carol", true).await;
    assert_all_refused(&server, &armed, &bob, "revoked", "user enabled again").await;
    assert_can_start_again(&server).await;
    server.stop().await;
}

/// Deleting the user does the same; its apps are kept, deactivated and detached.
async fn deleting_a_user_ends_everything_and_detaches_its_apps(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (armed, bob) = armed_carol(&server).await;
    delete_user(&server, "carol").await;
    assert_all_refused(&server, &armed, &bob, "invalid_credentials", "user deleted").await;
    let app = get_app(&server, &armed.app.id).await.expect("app kept");
    assert_eq!(
        (app.active, app.attached_user.as_str()),
        (false, ""),
        "{app:?}"
    );
    server.stop().await;
}

on_both_backends!(
    revoke_user_credentials_ends_everything,
    revoke_user_credentials_needs_users_write,
    disabling_a_user_ends_everything,
    deleting_a_user_ends_everything_and_detaches_its_apps,
);
