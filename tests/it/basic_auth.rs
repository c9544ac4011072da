//! Basic API tokens end to end: issue, check, regenerate, revoke, narrow.

use crate::on_both_backends;
use crate::support::*;
use identityd::api::pb;
use tonic::Code;

/// The issue's "done when" story, step by step.
async fn token_lifecycle(backend: Backend) {
    let server = TestServer::start(backend).await;
    let t1 = server
        .user_with_role("alice", "orders-reader", &["orders:read"])
        .await;

    let allowed = server.check(&t1, &["orders:read"]).await;
    assert_verdict(&allowed, 200, "ok");
    let principal = allowed.principal.expect("principal on allow");
    assert_eq!(principal.name, "alice");
    assert_eq!(principal.kind, i32::from(pb::PrincipalKind::User));
    assert_eq!(
        (
            principal.scheme.as_str(),
            principal.credential_kind.as_str()
        ),
        ("Basic", "api_token")
    );
    assert!(principal.credential_id.starts_with("api_token:"));
    assert!(allowed.www_authenticate.is_empty());

    let forbidden = server.check(&t1, &["orders:write"]).await;
    assert_verdict(&forbidden, 403, "missing_permission");
    assert_eq!(forbidden.missing, ["orders:write"]);
    assert_eq!(forbidden.principal.expect("principal on 403").name, "alice");

    // Regenerate: T1 dies on the very next call, T2 works.
    let t2 = regenerate_api_token(&server, "alice")
        .await
        .expect("regenerate");
    assert_eq!(t2.username, "alice");
    let t2 = basic("alice", &t2.api_token);
    let dead = server.check(&t1, &["orders:read"]).await;
    assert_verdict(&dead, 401, "invalid_credentials");
    assert_eq!(
        dead.www_authenticate,
        r#"Basic realm="identityd", charset="UTF-8""#
    );
    assert!(dead.principal.is_none());
    assert_verdict(&server.check(&t2, &["orders:read"]).await, 200, "ok");

    // Removing the role narrows on the next check.
    server
        .admin()
        .await
        .unassign_role(as_admin(
            &server,
            pb::UnassignRoleRequest {
                username: "alice".into(),
                role: "orders-reader".into(),
            },
        ))
        .await
        .expect("unassign");
    let narrowed = server.check(&t2, &["orders:read"]).await;
    assert_verdict(&narrowed, 403, "missing_permission");

    // API access off kills T2.
    let off = server
        .admin()
        .await
        .set_api_access(as_admin(
            &server,
            pb::SetApiAccessRequest {
                username: "alice".into(),
                enabled: false,
            },
        ))
        .await
        .expect("off")
        .into_inner();
    assert!(off.api_token.is_empty());
    assert!(!off.user.expect("user").api_access);
    assert_verdict(
        &server.check(&t2, &["orders:read"]).await,
        401,
        "invalid_credentials",
    );
    server.stop().await;
}

/// Authenticate reports the principal and its current permissions.
async fn authenticate_reports_permissions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let auth = server
        .user_with_role("bob", "clerk", &["orders:read", "catalog:*"])
        .await;
    let mut identity = server.identity().await;
    let resp = identity
        .authenticate(pb::AuthenticateRequest {
            authorization: auth,
            ..Default::default()
        })
        .await
        .expect("authenticate")
        .into_inner();
    assert_eq!((resp.http_status, resp.reason.as_str()), (200, "ok"));
    assert_eq!(resp.permissions, ["catalog:*", "orders:read"]);
    assert_eq!(resp.principal.expect("principal").name, "bob");
    let refused = identity
        .authenticate(pb::AuthenticateRequest {
            authorization: String::new(),
            ..Default::default()
        })
        .await
        .expect("authenticate")
        .into_inner();
    assert_eq!(
        (refused.http_status, refused.reason.as_str()),
        (401, "missing_credentials")
    );
    assert!(refused.www_authenticate.contains("Basic realm="));
    server.stop().await;
}

/// A wildcard action grants every action on its resource; several permissions must all hold.
async fn wildcards_and_multiple_permissions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let auth = server
        .user_with_role("carol", "catalog-admin", &["catalog:*", "orders:read"])
        .await;
    assert_verdict(
        &server.check(&auth, &["catalog:write", "orders:read"]).await,
        200,
        "ok",
    );
    let resp = server
        .check(&auth, &["catalog:write", "orders:write", "people:read"])
        .await;
    assert_verdict(&resp, 403, "missing_permission");
    assert_eq!(resp.missing, ["orders:write", "people:read"]);
    server.stop().await;
}

/// Disabling kills the token for good; re-enabling does not revive it.
async fn disabling_and_deleting_users(backend: Backend) {
    let server = TestServer::start(backend).await;
    let auth = server
        .user_with_role("dave", "reader", &["orders:read"])
        .await;
    let mut admin = server.admin().await;
    assert_verdict(&server.check(&auth, &["orders:read"]).await, 200, "ok");
    let disabled = admin
        .update_user(as_admin(
            &server,
            pb::UpdateUserRequest {
                username: "dave".into(),
                active: Some(false),
                ..Default::default()
            },
        ))
        .await
        .expect("disable")
        .into_inner();
    assert!(!disabled.active);
    assert_verdict(
        &server.check(&auth, &["orders:read"]).await,
        401,
        "invalid_credentials",
    );
    // A disabled user cannot get a new token either.
    assert_status(
        regenerate_api_token(&server, "dave").await,
        Code::FailedPrecondition,
        "disabled",
    );
    admin
        .update_user(as_admin(
            &server,
            pb::UpdateUserRequest {
                username: "dave".into(),
                active: Some(true),
                ..Default::default()
            },
        ))
        .await
        .expect("enable");
    assert_verdict(
        &server.check(&auth, &["orders:read"]).await,
        401,
        "invalid_credentials",
    );
    let fresh = regenerate_api_token(&server, "dave")
        .await
        .expect("regenerate after re-enable");
    let fresh = basic("dave", &fresh.api_token);
    assert_verdict(&server.check(&fresh, &["orders:read"]).await, 200, "ok");

    admin
        .delete_user(as_admin(
            &server,
            pb::DeleteUserRequest {
                username: "dave".into(),
            },
        ))
        .await
        .expect("delete");
    assert_verdict(
        &server.check(&fresh, &["orders:read"]).await,
        401,
        "invalid_credentials",
    );
    assert_status(
        admin
            .get_user(as_admin(
                &server,
                pb::GetUserRequest {
                    username: "dave".into(),
                },
            ))
            .await,
        Code::NotFound,
        "user 'dave'",
    );
    server.stop().await;
}

/// Role permission changes and role deletion take effect on the next check.
async fn role_changes_apply_on_next_check(backend: Backend) {
    let server = TestServer::start(backend).await;
    let auth = server
        .user_with_role("erin", "writer", &["orders:read", "orders:write"])
        .await;
    let mut admin = server.admin().await;
    assert_verdict(&server.check(&auth, &["orders:write"]).await, 200, "ok");
    admin
        .set_role_permissions(as_admin(
            &server,
            pb::SetRolePermissionsRequest {
                name: "writer".into(),
                permissions: vec!["orders:read".into()],
            },
        ))
        .await
        .expect("narrow role");
    assert_verdict(
        &server.check(&auth, &["orders:write"]).await,
        403,
        "missing_permission",
    );
    assert_verdict(&server.check(&auth, &["orders:read"]).await, 200, "ok");
    admin
        .assign_role(as_admin(
            &server,
            pb::AssignRoleRequest {
                username: "erin".into(),
                role: "admin".into(),
            },
        ))
        .await
        .expect("assign admin");
    assert_verdict(&server.check(&auth, &["users:write"]).await, 200, "ok");
    admin
        .delete_role(as_admin(
            &server,
            pb::DeleteRoleRequest {
                name: "writer".into(),
            },
        ))
        .await
        .expect("delete role");
    assert_verdict(
        &server.check(&auth, &["orders:read"]).await,
        403,
        "missing_permission",
    );
    let user = admin
        .get_user(as_admin(
            &server,
            pb::GetUserRequest {
                username: "erin".into(),
            },
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(user.roles, ["admin"]);
    server.stop().await;
}

/// A user may regenerate their own token with it; someone else's needs users:write.
async fn self_service_regeneration(backend: Backend) {
    let server = TestServer::start(backend).await;
    let frank = server
        .user_with_role("frank", "reader", &["orders:read"])
        .await;
    let grace = server.user_with_roles("grace", &["reader"], false).await;
    let mut identity = server.identity().await;
    let own = identity
        .regenerate_api_token(authed(&frank, pb::RegenerateApiTokenRequest::default()))
        .await
        .expect("own token")
        .into_inner();
    assert_eq!(own.username, "frank");
    assert_verdict(
        &server.check(&frank, &["orders:read"]).await,
        401,
        "invalid_credentials",
    );
    let frank = basic("frank", &own.api_token);
    assert_status(
        identity
            .regenerate_api_token(authed(
                &frank,
                pb::RegenerateApiTokenRequest {
                    username: "grace".into(),
                },
            ))
            .await,
        Code::PermissionDenied,
        "",
    );
    assert_verdict(&server.check(&grace, &["orders:read"]).await, 200, "ok");
    assert_status(
        identity
            .regenerate_api_token(pb::RegenerateApiTokenRequest::default())
            .await,
        Code::Unauthenticated,
        "no credentials",
    );
    server.stop().await;
}

/// The check cache: warm checks are hits, and a revocation racing busy checks never
/// lets the old token through once the revoking call has returned.
async fn cache_hits_and_revocation_races(backend: Backend) {
    // The hammer presents the old token hundreds of times: as wrong guesses, they would
    // trip heidi's guessing limit, which is not what this test is about.
    let server =
        TestServer::start_with(backend, |c| c.limits.limit_account_failures = 100_000).await;
    let mut auth = server
        .user_with_role("heidi", "reader", &["orders:read"])
        .await;
    assert_verdict(&server.check(&auth, &["orders:read"]).await, 200, "ok");
    let before = server.cache.stats();
    for _ in 0..20 {
        assert_verdict(&server.check(&auth, &["orders:read"]).await, 200, "ok");
    }
    let after = server.cache.stats();
    assert_eq!(after.misses, before.misses, "warm checks must not miss");
    assert_eq!(after.hits - before.hits, 20);

    let mut identity = server.identity().await;
    for _ in 0..10 {
        // Hammer the old token while it is being replaced.
        let old = auth.clone();
        let addr = server.url();
        let hammer = tokio::spawn(async move {
            let mut client = pb::identity_client::IdentityClient::connect(addr)
                .await
                .expect("connect");
            for _ in 0..30 {
                let _ = client
                    .check_permission(pb::CheckPermissionRequest {
                        authorization: old.clone(),
                        permissions: vec!["orders:read".into()],
                        ..Default::default()
                    })
                    .await;
            }
        });
        let fresh = identity
            .regenerate_api_token(authed(&auth, pb::RegenerateApiTokenRequest::default()))
            .await
            .expect("regenerate")
            .into_inner();
        let old = std::mem::replace(&mut auth, basic("heidi", &fresh.api_token));
        for _ in 0..5 {
            assert_verdict(
                &server.check(&old, &["orders:read"]).await,
                401,
                "invalid_credentials",
            );
        }
        hammer.await.expect("hammer");
        assert_verdict(
            &server.check(&old, &["orders:read"]).await,
            401,
            "invalid_credentials",
        );
        assert_verdict(&server.check(&auth, &["orders:read"]).await, 200, "ok");
    }
    server.stop().await;
}

/// A token presented with another user's name, or garbage of the right shape, is refused.
async fn token_must_match_its_user(backend: Backend) {
    let server = TestServer::start(backend).await;
    let ivan = server
        .user_with_role("ivan", "reader", &["orders:read"])
        .await;
    server.user_with_roles("judy", &["reader"], false).await;
    let token = {
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::STANDARD
            .decode(ivan.trim_start_matches("Basic "))
            .expect("base64");
        String::from_utf8(raw)
            .expect("utf8")
            .split_once(':')
            .expect("colon")
            .1
            .to_owned()
    };
    assert_verdict(
        &server.check(&basic("judy", &token), &["orders:read"]).await,
        401,
        "invalid_credentials",
    );
    let forged = format!("idt_api_{}", "A".repeat(43));
    assert_verdict(
        &server
            .check(&basic("ivan", &forged), &["orders:read"])
            .await,
        401,
        "invalid_credentials",
    );
    assert_verdict(
        &server.check(&basic("ivan", &token), &["orders:read"]).await,
        200,
        "ok",
    );
    server.stop().await;
}

on_both_backends!(
    token_lifecycle,
    authenticate_reports_permissions,
    wildcards_and_multiple_permissions,
    disabling_and_deleting_users,
    role_changes_apply_on_next_check,
    self_service_regeneration,
    cache_hits_and_revocation_races,
    token_must_match_its_user,
);
