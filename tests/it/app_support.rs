//! Helpers for the tests of apps and app tokens: creating, changing and listing them as
//! the bootstrap admin, and checking an app token.

use crate::oauth_support::*;
use crate::support::*;
use identityd::api::pb;
use tonic::Status;

/// The shape of every app token: the prefix and 43 base64url characters.
pub const APP_TOKEN_PREFIX: &str = "idt_app_";

/// Permissions as the API takes them.
pub fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|p| p.to_string()).collect()
}

/// A CreateApp request; `attached_user` empty for none.
pub fn app_request(name: &str, permissions: &[&str], attached_user: &str) -> pb::CreateAppRequest {
    pb::CreateAppRequest {
        name: name.into(),
        permissions: strings(permissions),
        attached_user: attached_user.into(),
    }
}

/// Admin.CreateApp as the bootstrap admin.
pub async fn try_create_app(
    server: &TestServer,
    request: pb::CreateAppRequest,
) -> Result<pb::App, Status> {
    admin_call(server, &server.admin_auth, request, async |a, r| {
        a.create_app(r).await
    })
    .await
}

/// Creates an app that must be created.
pub async fn create_app(
    server: &TestServer,
    name: &str,
    permissions: &[&str],
    attached_user: &str,
) -> pb::App {
    try_create_app(server, app_request(name, permissions, attached_user))
        .await
        .unwrap_or_else(|status| panic!("create app {name}: {status:?}"))
}

/// Admin.GetApp as the bootstrap admin.
pub async fn get_app(server: &TestServer, app_id: &str) -> Result<pb::App, Status> {
    let request = pb::GetAppRequest {
        app_id: app_id.into(),
    };
    admin_call(server, &server.admin_auth, request, async |a, r| {
        a.get_app(r).await
    })
    .await
}

/// Admin.UpdateApp as the bootstrap admin.
pub async fn update_app(
    server: &TestServer,
    request: pb::UpdateAppRequest,
) -> Result<pb::App, Status> {
    admin_call(server, &server.admin_auth, request, async |a, r| {
        a.update_app(r).await
    })
    .await
}

/// An UpdateApp request for `app_id` changing nothing yet.
pub fn app_update(app_id: &str) -> pb::UpdateAppRequest {
    pb::UpdateAppRequest {
        app_id: app_id.into(),
        ..Default::default()
    }
}

/// Replaces an app's permissions.
pub async fn set_app_permissions(server: &TestServer, app_id: &str, permissions: &[&str]) {
    let request = pb::UpdateAppRequest {
        permissions: Some(pb::PermissionList {
            permissions: strings(permissions),
        }),
        ..app_update(app_id)
    };
    update_app(server, request)
        .await
        .expect("set app permissions");
}

/// Deactivates or reactivates an app.
pub async fn set_app_active(server: &TestServer, app_id: &str, active: bool) -> pb::App {
    let request = pb::UpdateAppRequest {
        active: Some(active),
        ..app_update(app_id)
    };
    update_app(server, request).await.expect("set app active")
}

/// Attaches a user to an app (`""` detaches).
pub async fn attach_user(server: &TestServer, app_id: &str, username: &str) -> pb::App {
    let request = pb::UpdateAppRequest {
        attached_user: Some(username.into()),
        ..app_update(app_id)
    };
    update_app(server, request).await.expect("attach user")
}

/// Admin.DeleteApp as the bootstrap admin.
pub async fn delete_app(server: &TestServer, app_id: &str) {
    let request = pb::DeleteAppRequest {
        app_id: app_id.into(),
    };
    admin_call(server, &server.admin_auth, request, async |a, r| {
        a.delete_app(r).await
    })
    .await
    .expect("delete app");
}

/// Admin.CreateAppToken as the bootstrap admin.
pub async fn try_create_app_token(
    server: &TestServer,
    app_id: &str,
    name: &str,
) -> Result<pb::CreateAppTokenResponse, Status> {
    let request = pb::CreateAppTokenRequest {
        app_id: app_id.into(),
        name: name.into(),
    };
    admin_call(server, &server.admin_auth, request, async |a, r| {
        a.create_app_token(r).await
    })
    .await
}

/// Creates a token that must be created; returns its listing and the token.
pub async fn create_app_token(
    server: &TestServer,
    app_id: &str,
    name: &str,
) -> (pb::AppToken, String) {
    let created = try_create_app_token(server, app_id, name)
        .await
        .unwrap_or_else(|status| panic!("create app token {name}: {status:?}"));
    let listing = created.app_token.expect("app_token in the response");
    (listing, created.token)
}

/// Admin.ListAppTokens as the bootstrap admin: the whole response.
pub async fn list_app_tokens(
    server: &TestServer,
    app_id: &str,
) -> Result<pb::ListAppTokensResponse, Status> {
    let request = pb::ListAppTokensRequest {
        app_id: app_id.into(),
    };
    admin_call(server, &server.admin_auth, request, async |a, r| {
        a.list_app_tokens(r).await
    })
    .await
}

/// Admin.RevokeAppToken as the bootstrap admin.
pub async fn revoke_app_token(server: &TestServer, app_id: &str, token_id: &str) {
    let request = pb::RevokeAppTokenRequest {
        app_id: app_id.into(),
        token_id: token_id.into(),
    };
    admin_call(server, &server.admin_auth, request, async |a, r| {
        a.revoke_app_token(r).await
    })
    .await
    .expect("revoke app token");
}

/// An app with `permissions` (attached to `attached_user` unless empty) and tokens
/// named `token_names`; returns the app and each token's listing and token.
pub async fn app_with_tokens(
    server: &TestServer,
    (name, permissions, attached_user): (&str, &[&str], &str),
    token_names: &[&str],
) -> (pb::App, Vec<(pb::AppToken, String)>) {
    let app = create_app(server, name, permissions, attached_user).await;
    let mut tokens = Vec::new();
    for token_name in token_names {
        tokens.push(create_app_token(server, &app.id, token_name).await);
    }
    (app, tokens)
}

/// An app with one token named `main`; returns the app and the token.
pub async fn app_with_token(
    server: &TestServer,
    name: &str,
    permissions: &[&str],
    attached_user: &str,
) -> (pb::App, String) {
    let (app, mut tokens) =
        app_with_tokens(server, (name, permissions, attached_user), &["main"]).await;
    let (_, token) = tokens.pop().expect("the token");
    (app, token)
}

/// Checks an app token for `permission`: under Bearer it answers `expected`, under JWT it
/// is a `scheme_mismatch`. Returns the Bearer answer.
pub async fn check_app(
    server: &TestServer,
    token: &str,
    permission: &str,
    expected: (u32, &str),
    what: &str,
) -> pb::CheckPermissionResponse {
    assert_bearer_only(server, token, permission, expected, what).await
}

/// Asserts an app token is allowed `permission` (and refused under JWT).
pub async fn assert_app_allowed(server: &TestServer, token: &str, permission: &str, what: &str) {
    check_app(server, token, permission, (200, "ok"), what).await;
}

/// Asserts an app token is denied `permission` with `reason`, naming it as missing.
pub async fn assert_app_denied(
    server: &TestServer,
    token: &str,
    permission: &str,
    reason: &str,
    what: &str,
) -> pb::CheckPermissionResponse {
    let denied = check_app(server, token, permission, (403, reason), what).await;
    assert_eq!(denied.missing, [permission], "{what}: {denied:?}");
    denied
}
