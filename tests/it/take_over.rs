//! No path from one Admin permission to the others through someone else's credentials:
//! `users:write`, `apps:write` and `integrations:write` hand out credentials (passwords,
//! API tokens, app tokens, client secrets), so they work only on principals that hold no
//! administration the caller lacks.

use crate::app_support::*;
use crate::oauth_support::*;
use crate::support::*;
use identityd::api::pb;
use tonic::Code;

/// A staff user who may write users, apps and integrations, but not roles.
async fn delegate(server: &TestServer) -> String {
    create_role(
        server,
        "delegate",
        &["users:write", "apps:write", "integrations:write"],
    )
    .await;
    server.user_with_roles("mallory", &["delegate"], true).await
}

/// Asserts an Admin or Identity call was refused for lack of administration.
#[track_caller]
fn assert_denied<T: std::fmt::Debug>(result: Result<T, tonic::Status>, what: &str) {
    match result {
        Err(status) => assert_eq!(status.code(), Code::PermissionDenied, "{what}: {status:?}"),
        Ok(v) => panic!("{what}: allowed: {v:?}"),
    }
}

/// `users:write` may not set the password or mint an API token of a user who holds
/// administration the caller lacks; of a user holding business permissions, it may.
async fn users_write_cannot_take_over_an_admin(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mallory = delegate(&server).await;
    user_with_password(&server, "bob", &["orders:read"]).await;

    let password = |username: &str| pb::SetUserPasswordRequest {
        username: username.into(),
        password: "a new password, long enough".into(),
    };
    let set_password = async |request| {
        admin_call(&server, &mallory, request, async |a, r| {
            a.set_user_password(r).await
        })
        .await
    };
    assert_denied(set_password(password("admin")).await, "admin's password");
    set_password(password("bob"))
        .await
        .expect("bob holds nothing mallory lacks");

    // A second administrator without API access: turning it on would return the token.
    create_user(
        &server,
        pb::CreateUserRequest {
            username: "root2".into(),
            is_staff: true,
            roles: vec!["admin".into()],
            ..Default::default()
        },
    )
    .await;
    let access = pb::SetApiAccessRequest {
        username: "root2".into(),
        enabled: true,
    };
    assert_denied(
        admin_call(&server, &mallory, access, async |a, r| {
            a.set_api_access(r).await
        })
        .await,
        "root2's API access",
    );

    let regenerate = |username: &str| {
        authed(
            &mallory,
            pb::RegenerateApiTokenRequest {
                username: username.into(),
            },
        )
    };
    let mut identity = server.identity().await;
    assert_denied(
        identity.regenerate_api_token(regenerate("admin")).await,
        "admin's API token",
    );
    identity
        .regenerate_api_token(regenerate("mallory"))
        .await
        .expect("her own token");
    // The bootstrap admin's credential still works.
    assert_verdict(
        &server.check(&server.admin_auth, &["roles:write"]).await,
        200,
        "ok",
    );
    server.stop().await;
}

/// `apps:write` may not mint a token for, or change, an app holding administration the
/// caller lacks: a new token, reactivation or detaching the user would each hand it over.
async fn apps_write_cannot_take_over_an_admin_app(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mallory = delegate(&server).await;
    let ops = create_app(&server, "ops", &["roles:write"], "").await;
    let shop = create_app(&server, "shop", &["orders:read"], "").await;

    let token_for = |app_id: &str| pb::CreateAppTokenRequest {
        app_id: app_id.into(),
        name: "mine".into(),
    };
    let create_token = async |request| {
        admin_call(&server, &mallory, request, async |a, r| {
            a.create_app_token(r).await
        })
        .await
    };
    assert_denied(create_token(token_for(&ops.id)).await, "token of ops");
    create_token(token_for(&shop.id))
        .await
        .expect("shop holds nothing mallory lacks");

    let mut update = app_update(&ops.id);
    update.active = Some(false);
    assert_denied(
        admin_call(&server, &mallory, update, async |a, r| {
            a.update_app(r).await
        })
        .await,
        "changing ops",
    );
    assert!(get_app(&server, &ops.id).await.unwrap().active, "unchanged");
    server.stop().await;
}

/// `integrations:write` may not rotate (and so receive) the secret of an integration
/// holding administration the caller lacks.
async fn integrations_write_cannot_take_over_an_admin_integration(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mallory = delegate(&server).await;
    let (provisioner, _) = integration(&server, "provisioner", &["roles:write"]).await;
    let (billing, _) = integration(&server, "billing", &["orders:read"]).await;
    let rotate = async |client_id: &str| {
        let request = pb::RotateIntegrationSecretRequest {
            client_id: client_id.into(),
        };
        admin_call(&server, &mallory, request, async |a, r| {
            a.rotate_integration_secret(r).await
        })
        .await
    };
    assert_denied(rotate(&provisioner.client_id).await, "provisioner's secret");
    rotate(&billing.client_id)
        .await
        .expect("billing holds nothing mallory lacks");
    server.stop().await;
}

/// An app (or integration) is not a user: RegenerateApiToken without a username must
/// not take the caller's name for one, even when an app is named like the admin.
async fn an_app_named_like_a_user_does_not_stand_for_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, token) = app_with_token(&server, "admin", &["users:write"], "").await;
    let refused = server
        .identity()
        .await
        .regenerate_api_token(authed(
            &bearer(&token),
            pb::RegenerateApiTokenRequest::default(),
        ))
        .await;
    assert_status(refused, Code::InvalidArgument, "username");
    assert_verdict(
        &server.check(&server.admin_auth, &["users:read"]).await,
        200,
        "ok",
    );
    server.stop().await;
}

crate::on_both_backends!(
    users_write_cannot_take_over_an_admin,
    apps_write_cannot_take_over_an_admin_app,
    integrations_write_cannot_take_over_an_admin_integration,
    an_app_named_like_a_user_does_not_stand_for_it,
);
