//! Apps and app tokens: their administration, the principal an app token stands for, an
//! attached user bounding what the app may do at every check, revocation, deactivation
//! and deletion, "last used" bookkeeping, and app tokens calling Admin.

use crate::app_support::*;
use crate::oauth_support::*;
use crate::on_both_backends;
use crate::support::*;
use identityd::api::pb;
use identityd::domain::clock::Clock;
use std::time::Duration;
use tonic::Code;

/// Asserts the shape of a freshly shown app token: the prefix and 43 base64url
/// characters.
#[track_caller]
fn assert_app_token_shape(token: &str) {
    let rest = token.strip_prefix(APP_TOKEN_PREFIX).unwrap_or_default();
    assert!(
        rest.len() == 43
            && rest
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "an app token is {APP_TOKEN_PREFIX} and 43 base64url characters: {token:?}"
    );
}

/// The names of all apps, as ListApps orders them.
async fn app_names(server: &TestServer, authorization: &str) -> Result<Vec<String>, tonic::Status> {
    let request = pb::ListAppsRequest {};
    let listed = admin_call(server, authorization, request, async |a, r| {
        a.list_apps(r).await
    })
    .await?;
    Ok(listed.apps.into_iter().map(|a| a.name).collect())
}

/// The `last_used_at` of an app's only token.
async fn last_used_at(server: &TestServer, app_id: &str) -> i64 {
    let listed = list_app_tokens(server, app_id).await.expect("list tokens");
    assert_eq!(listed.app_tokens.len(), 1, "{listed:?}");
    listed.app_tokens[0].last_used_at
}

/// Polls the `last_used_at` of an app's only token for up to 10 s of wall-clock time
/// (it is written off the request path) until it differs from `old`; returns it.
async fn last_used_at_after(server: &TestServer, app_id: &str, old: i64) -> i64 {
    for _ in 0..50 {
        let seen = last_used_at(server, app_id).await;
        if seen != old {
            return seen;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    old
}

/// App `shop` (`orders:read`) with tokens `one` and `two`, each allowed and then
/// answered from the cache.
async fn shop_with_two_warm_tokens(server: &TestServer) -> (pb::App, [(pb::AppToken, String); 2]) {
    let (app, tokens) =
        app_with_tokens(server, ("shop", &["orders:read"], ""), &["one", "two"]).await;
    for (_, t) in &tokens {
        assert_app_allowed(server, t, "orders:read", "before").await;
        assert_allowed_from_cache(server, &bearer(t), "orders:read").await;
    }
    let tokens = tokens.try_into().expect("two tokens");
    (app, tokens)
}

// ---------------------------------------------------------------------------------------
// Administration

/// CreateApp returns the app as stored; names, permissions and the attached user are
/// validated; GetApp and ListApps show it.
async fn creating_and_listing_apps(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "carol", &["orders:read"]).await;
    let now = server.clock.now();
    let shop = create_app(
        &server,
        "shop-sync_1",
        &["orders:write", "customers:read", "orders:read"],
        "carol",
    )
    .await;
    assert!(!shop.id.is_empty());
    assert_eq!(
        (
            shop.name.as_str(),
            shop.active,
            shop.attached_user.as_str(),
            shop.created_at,
            shop.updated_at
        ),
        ("shop-sync_1", true, "carol", now, now)
    );
    assert_eq!(
        shop.permissions,
        ["customers:read", "orders:read", "orders:write"],
        "sorted"
    );
    let analytics = create_app(&server, "analytics", &[], "").await;
    assert_eq!(analytics.attached_user, "");
    assert_ne!(analytics.id, shop.id);
    let longest = "a".repeat(64);
    create_app(&server, &longest, &["orders:read"], "").await;

    assert_eq!(get_app(&server, &shop.id).await.expect("get app"), shop);
    assert_eq!(
        app_names(&server, &server.admin_auth).await.expect("list"),
        ["a".repeat(64), "analytics".into(), "shop-sync_1".into()]
    );

    for bad in [
        "",
        "Shop",
        "shop sync",
        "shop.sync",
        "shop:1",
        &"a".repeat(65),
    ] {
        assert_status(
            try_create_app(&server, app_request(bad, &[], "")).await,
            Code::InvalidArgument,
            "name",
        );
    }
    assert_status(
        try_create_app(&server, app_request("shop-sync_1", &[], "")).await,
        Code::AlreadyExists,
        "shop-sync_1",
    );
    assert_status(
        try_create_app(&server, app_request("other", &[], "ghost")).await,
        Code::NotFound,
        "ghost",
    );
    for bad in ["Orders:Read", "orders"] {
        assert_status(
            try_create_app(&server, app_request("other", &[bad], "")).await,
            Code::InvalidArgument,
            "permission",
        );
    }
    // Nothing of the refused apps was kept.
    assert_eq!(
        app_names(&server, &server.admin_auth)
            .await
            .expect("list")
            .len(),
        3
    );
    server.stop().await;
}

/// Reading apps needs `apps:read`, changing them `apps:write`.
async fn app_administration_needs_its_permissions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let app = create_app(&server, "shop", &["orders:read"], "").await;
    create_role(&server, "app-reader", &["apps:read"]).await;
    create_role(&server, "user-reader", &["users:read"]).await;
    let reader = server
        .user_with_roles("reader", &["app-reader"], true)
        .await;
    let outsider = server
        .user_with_roles("outsider", &["user-reader"], true)
        .await;
    let mut admin = server.admin().await;

    assert_eq!(app_names(&server, &reader).await.expect("list"), ["shop"]);
    admin
        .get_app(authed(
            &reader,
            pb::GetAppRequest {
                app_id: app.id.clone(),
            },
        ))
        .await
        .expect("get with apps:read");
    admin
        .list_app_tokens(authed(
            &reader,
            pb::ListAppTokensRequest {
                app_id: app.id.clone(),
            },
        ))
        .await
        .expect("list tokens with apps:read");
    assert_status(
        admin
            .create_app(authed(&reader, app_request("mine", &[], "")))
            .await,
        Code::PermissionDenied,
        "apps:write",
    );
    assert_status(
        admin
            .create_app_token(authed(
                &reader,
                pb::CreateAppTokenRequest {
                    app_id: app.id.clone(),
                    name: "mine".into(),
                },
            ))
            .await,
        Code::PermissionDenied,
        "apps:write",
    );
    assert_status(
        admin
            .delete_app(authed(
                &reader,
                pb::DeleteAppRequest {
                    app_id: app.id.clone(),
                },
            ))
            .await,
        Code::PermissionDenied,
        "apps:write",
    );
    assert_status(
        app_names(&server, &outsider).await,
        Code::PermissionDenied,
        "apps:read",
    );
    assert_eq!(get_app(&server, &app.id).await.expect("still there"), app);
    server.stop().await;
}

/// A token is shown once, with an id and its last four characters; the listing, oldest
/// first, never contains a token. Token names are unique within an app.
async fn app_tokens_are_shown_once_and_never_listed(backend: Backend) {
    let server = TestServer::start(backend).await;
    let app = create_app(&server, "shop", &["orders:read"], "").await;
    let other = create_app(&server, "other", &["orders:read"], "").await;
    let created_at = server.clock.now();
    let (first, token) = create_app_token(&server, &app.id, "ci").await;
    assert_app_token_shape(&token);
    assert!(!first.id.is_empty());
    assert_eq!(
        (
            first.app_id.as_str(),
            first.name.as_str(),
            first.last4.as_str(),
            first.created_at,
            first.last_used_at
        ),
        (
            app.id.as_str(),
            "ci",
            &token[token.len() - 4..],
            created_at,
            0
        )
    );
    server.clock.advance(10);
    let (second, token2) = create_app_token(&server, &app.id, "deploy").await;
    assert_app_token_shape(&token2);
    assert_ne!(token, token2);
    assert_ne!(first.id, second.id);
    assert_eq!(second.created_at, created_at + 10);

    assert_status(
        try_create_app_token(&server, &app.id, "ci").await,
        Code::AlreadyExists,
        "ci",
    );
    // The same name in another app is another token.
    create_app_token(&server, &other.id, "ci").await;
    assert_status(
        try_create_app_token(&server, &app.id, "Not A Name").await,
        Code::InvalidArgument,
        "name",
    );

    let listed = list_app_tokens(&server, &app.id).await.expect("list");
    assert_eq!(listed.app_tokens, [first, second], "oldest first");
    let shown = format!("{listed:?}");
    for t in [&token, &token2] {
        assert!(
            !shown.contains(t.as_str()) && !shown.contains(&t[APP_TOKEN_PREFIX.len()..]),
            "the listing reveals a token: {shown}"
        );
    }
    for t in [&token, &token2] {
        assert_app_allowed(&server, t, "orders:read", "a new token").await;
    }

    // Tokens of an app that does not exist.
    delete_app(&server, &other.id).await;
    assert_status(
        try_create_app_token(&server, &other.id, "late").await,
        Code::NotFound,
        "",
    );
    server.stop().await;
}

/// An app holds at most 100 tokens.
async fn at_most_100_tokens_per_app(backend: Backend) {
    let server = TestServer::start(backend).await;
    let app = create_app(&server, "busy", &["orders:read"], "").await;
    for i in 0..100 {
        create_app_token(&server, &app.id, &format!("t{i}")).await;
    }
    assert_status(
        try_create_app_token(&server, &app.id, "t100").await,
        Code::FailedPrecondition,
        "100",
    );
    let listed = list_app_tokens(&server, &app.id).await.expect("list");
    assert_eq!(listed.app_tokens.len(), 100);
    // The limit is per app.
    let calm = create_app(&server, "calm", &["orders:read"], "").await;
    create_app_token(&server, &calm.id, "t100").await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Checking app tokens

/// An app token authenticates as its app under Bearer; with an attached user the
/// principal names that user and the permissions are the app's ∩ the user's.
async fn app_token_authenticates_as_its_app(backend: Backend) {
    let server = TestServer::start(backend).await;
    let carol = user_with_password(&server, "carol", &["orders:read", "customers:read"]).await;
    let app = create_app(&server, "shop", &["orders:*"], "carol").await;
    let (listing, token) = create_app_token(&server, &app.id, "main").await;

    let authn = authenticate(&server, &bearer(&token)).await;
    assert_eq!((authn.http_status, authn.reason.as_str()), (200, "ok"));
    let p = authn.principal.expect("principal");
    assert_eq!(
        (
            p.kind,
            p.id.as_str(),
            p.name.as_str(),
            p.is_staff,
            p.scheme.as_str(),
            p.credential_kind.as_str(),
            p.credential_id.clone(),
        ),
        (
            i32::from(pb::PrincipalKind::App),
            app.id.as_str(),
            "shop",
            false,
            "Bearer",
            "app_token",
            format!("app_token:{}", listing.id),
        )
    );
    assert_eq!(
        (p.attached_user_id.as_str(), p.attached_username.as_str()),
        (carol.id.as_str(), "carol")
    );
    assert_eq!(authn.permissions, ["orders:read"]);

    // Without an attached user: the app's own permissions.
    let (_, alone) = app_with_token(&server, "alone", &["orders:read", "orders:write"], "").await;
    let authn = authenticate(&server, &bearer(&alone)).await;
    assert_eq!((authn.http_status, authn.reason.as_str()), (200, "ok"));
    let p = authn.principal.expect("principal");
    assert_eq!(
        (
            p.kind,
            p.name.as_str(),
            p.attached_user_id.as_str(),
            p.attached_username.as_str()
        ),
        (i32::from(pb::PrincipalKind::App), "alone", "", "")
    );
    assert_eq!(authn.permissions, ["orders:read", "orders:write"]);
    let checked = check_app(&server, &alone, "orders:write", (200, "ok"), "alone").await;
    let p = checked.principal.expect("principal");
    assert_eq!(
        (p.kind, p.credential_kind.as_str()),
        (i32::from(pb::PrincipalKind::App), "app_token")
    );
    server.stop().await;
}

/// An app attached to a user may do only what both may do: what the app lacks is
/// `missing_permission`, what only the user lacks `attached_user_missing_permission`
/// naming the user. The user losing a permission takes it from the app on the very next
/// check, even a warm one.
async fn attached_user_bounds_the_app(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "carol", &["orders:read"]).await;
    let (_, token) = app_with_token(&server, "shop", &["orders:*"], "carol").await;

    assert_app_allowed(&server, &token, "orders:read", "both hold it").await;
    let denied = assert_app_denied(
        &server,
        &token,
        "orders:write",
        "attached_user_missing_permission",
        "only the app holds it",
    )
    .await;
    assert!(denied.message.contains("carol"), "{denied:?}");
    assert_app_denied(
        &server,
        &token,
        "customers:read",
        "missing_permission",
        "the app lacks it",
    )
    .await;

    // The role loses the permission.
    assert_allowed_from_cache(&server, &bearer(&token), "orders:read").await;
    set_role_permissions(&server, "carol-role", &[]).await;
    let denied = assert_app_denied(
        &server,
        &token,
        "orders:read",
        "attached_user_missing_permission",
        "role emptied",
    )
    .await;
    assert!(denied.message.contains("carol"), "{denied:?}");

    // The user loses the role.
    set_role_permissions(&server, "carol-role", &["orders:read"]).await;
    assert_app_allowed(&server, &token, "orders:read", "role restored").await;
    assert_allowed_from_cache(&server, &bearer(&token), "orders:read").await;
    unassign_role(&server, "carol", "carol-role").await;
    assert_app_denied(
        &server,
        &token,
        "orders:read",
        "attached_user_missing_permission",
        "role taken away",
    )
    .await;
    let authn = authenticate(&server, &bearer(&token)).await;
    assert!(authn.permissions.is_empty(), "{authn:?}");
    server.stop().await;
}

/// Revoking one token (RevokeAppToken) refuses it from the next check and leaves the
/// app's other tokens working; Identity.RevokeToken takes an app token too.
async fn revoking_one_app_token_leaves_the_others(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (app, [(first, one), (_, two)]) = shop_with_two_warm_tokens(&server).await;

    revoke_app_token(&server, &app.id, &first.id).await;
    assert_bearer_refused(&server, &one, "invalid_credentials", "revoked").await;
    assert_app_allowed(&server, &two, "orders:read", "the other token").await;

    revoke_plain(&server, &two, "")
        .await
        .expect("RevokeToken takes an app token");
    let refused = server.check(&bearer(&two), &["orders:read"]).await;
    assert_eq!(
        refused.verdict,
        i32::from(pb::Verdict::Unauthenticated),
        "after RevokeToken: {refused:?}"
    );
    server.stop().await;
}

/// UpdateApp takes effect on the next check: permissions removed, the app deactivated
/// (`disabled`) and reactivated, a user attached (narrowing) and detached (widening),
/// a new name.
async fn changing_an_app_applies_on_the_next_check(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "carol", &["orders:read"]).await;
    let (app, token) = app_with_token(&server, "shop", &["orders:read", "orders:write"], "").await;
    assert_app_allowed(&server, &token, "orders:write", "held").await;
    assert_allowed_from_cache(&server, &bearer(&token), "orders:write").await;

    server.clock.advance(5);
    set_app_permissions(&server, &app.id, &["orders:read"]).await;
    assert_app_denied(
        &server,
        &token,
        "orders:write",
        "missing_permission",
        "permission removed",
    )
    .await;
    assert_app_allowed(&server, &token, "orders:read", "kept").await;
    let changed = get_app(&server, &app.id).await.expect("get app");
    assert_eq!(
        (
            changed.permissions.clone(),
            changed.created_at,
            changed.updated_at
        ),
        (
            vec!["orders:read".to_string()],
            app.created_at,
            server.clock.now()
        )
    );

    let off = set_app_active(&server, &app.id, false).await;
    assert!(!off.active);
    assert_bearer_refused(&server, &token, "disabled", "deactivated").await;
    let authn = authenticate(&server, &bearer(&token)).await;
    assert_eq!(
        (authn.http_status, authn.reason.as_str()),
        (401, "disabled")
    );
    let on = set_app_active(&server, &app.id, true).await;
    assert!(on.active);
    assert_app_allowed(&server, &token, "orders:read", "reactivated").await;

    set_app_permissions(&server, &app.id, &["orders:*"]).await;
    assert_app_allowed(&server, &token, "orders:write", "widened").await;
    assert_allowed_from_cache(&server, &bearer(&token), "orders:write").await;
    let attached = attach_user(&server, &app.id, "carol").await;
    assert_eq!(attached.attached_user, "carol");
    assert_app_denied(
        &server,
        &token,
        "orders:write",
        "attached_user_missing_permission",
        "user attached",
    )
    .await;
    assert_app_allowed(&server, &token, "orders:read", "both hold it").await;
    let detached = attach_user(&server, &app.id, "").await;
    assert_eq!(detached.attached_user, "");
    assert_app_allowed(&server, &token, "orders:write", "user detached").await;

    let renamed = update_app(
        &server,
        pb::UpdateAppRequest {
            name: Some("shop-v2".into()),
            ..app_update(&app.id)
        },
    )
    .await
    .expect("rename");
    assert_eq!(
        (renamed.id.as_str(), renamed.name.as_str()),
        (app.id.as_str(), "shop-v2")
    );
    let authn = authenticate(&server, &bearer(&token)).await;
    assert_eq!(authn.principal.expect("principal").name, "shop-v2");

    // Mistakes change nothing.
    let bad_name = pb::UpdateAppRequest {
        name: Some("Shop V3".into()),
        ..app_update(&app.id)
    };
    assert_status(
        update_app(&server, bad_name).await,
        Code::InvalidArgument,
        "name",
    );
    let ghost = pb::UpdateAppRequest {
        attached_user: Some("ghost".into()),
        ..app_update(&app.id)
    };
    assert_status(update_app(&server, ghost).await, Code::NotFound, "ghost");
    let bad_permission = pb::UpdateAppRequest {
        permissions: Some(pb::PermissionList {
            permissions: vec!["Orders".into()],
        }),
        ..app_update(&app.id)
    };
    assert_status(
        update_app(&server, bad_permission).await,
        Code::InvalidArgument,
        "permission",
    );
    assert_eq!(
        get_app(&server, &app.id).await.expect("get app").name,
        "shop-v2"
    );
    server.stop().await;
}

/// DeleteApp ends every token of the app at once.
async fn deleting_an_app_ends_its_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (app, [(_, one), (_, two)]) = shop_with_two_warm_tokens(&server).await;
    let (_, survivor) = app_with_token(&server, "other", &["orders:read"], "").await;

    delete_app(&server, &app.id).await;
    for t in [&one, &two] {
        assert_bearer_refused(&server, t, "invalid_credentials", "app deleted").await;
    }
    assert_status(get_app(&server, &app.id).await, Code::NotFound, "");
    assert_eq!(
        app_names(&server, &server.admin_auth).await.expect("list"),
        ["other"]
    );
    assert_app_allowed(&server, &survivor, "orders:read", "another app").await;
    server.stop().await;
}

/// `last_used_at` is written off the request path with the server's time of the check,
/// at most about once a minute per token.
async fn last_used_at_is_recorded_about_once_a_minute(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (app, token) = app_with_token(&server, "shop", &["orders:read"], "").await;
    assert_eq!(last_used_at(&server, &app.id).await, 0, "never used");

    server.clock.advance(100);
    let first_use = server.clock.now();
    assert_app_allowed(&server, &token, "orders:read", "first use").await;
    assert_eq!(last_used_at_after(&server, &app.id, 0).await, first_use);

    server.clock.advance(30);
    assert_app_allowed(&server, &token, "orders:read", "30 s later").await;
    // Several flushes later, still the first use.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(last_used_at(&server, &app.id).await, first_use);

    server.clock.advance(31);
    let later_use = server.clock.now();
    assert_app_allowed(&server, &token, "orders:read", "61 s later").await;
    assert_eq!(
        last_used_at_after(&server, &app.id, first_use).await,
        later_use
    );
    server.stop().await;
}

/// An app token calls Admin with the app's effective permissions; an app attached to a
/// user who is not staff may not call Admin at all.
async fn app_tokens_call_admin_within_their_permissions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (_, auditor) = app_with_token(&server, "auditor", &["apps:read"], "").await;
    let auditor = bearer(&auditor);
    assert_eq!(
        app_names(&server, &auditor)
            .await
            .expect("ListApps with apps:read"),
        ["auditor"]
    );
    let mut admin = server.admin().await;
    assert_status(
        admin
            .list_users(authed(&auditor, pb::ListUsersRequest::default()))
            .await,
        Code::PermissionDenied,
        "users:read",
    );
    assert_status(
        admin
            .create_app(authed(&auditor, app_request("mine", &[], "")))
            .await,
        Code::PermissionDenied,
        "apps:write",
    );

    // Attached to a customer: both hold apps:read, but customers do not administer.
    user_with_password(&server, "carol", &["apps:read"]).await;
    let (_, carols) = app_with_token(&server, "carols", &["apps:read"], "carol").await;
    assert_app_allowed(&server, &carols, "apps:read", "held by both").await;
    assert_status(
        app_names(&server, &bearer(&carols)).await,
        Code::PermissionDenied,
        "",
    );

    // Attached to staff holding apps:read: allowed.
    create_role(&server, "app-reader", &["apps:read"]).await;
    server.user_with_roles("sam", &["app-reader"], true).await;
    let (_, sams) = app_with_token(&server, "sams", &["apps:read"], "sam").await;
    assert_eq!(
        app_names(&server, &bearer(&sams))
            .await
            .expect("staff-attached app"),
        ["auditor", "carols", "sams"]
    );
    server.stop().await;
}

on_both_backends!(
    creating_and_listing_apps,
    app_administration_needs_its_permissions,
    app_tokens_are_shown_once_and_never_listed,
    at_most_100_tokens_per_app,
    app_token_authenticates_as_its_app,
    attached_user_bounds_the_app,
    revoking_one_app_token_leaves_the_others,
    changing_an_app_applies_on_the_next_check,
    deleting_an_app_ends_its_tokens,
    last_used_at_is_recorded_about_once_a_minute,
    app_tokens_call_admin_within_their_permissions,
);
