//! What ends a session (disabling or deleting a user, a new password, RevokeToken), roles
//! deciding token permissions, and tokens surviving a restart.

use crate::oauth_support::*;
use crate::on_both_backends;
use crate::support::*;
use identityd::api::pb;
use tonic::Code;

/// Disabling or deleting a user ends its sessions at once; other users are untouched.
async fn disabling_or_deleting_user_ends_sessions(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "alice", &["orders:read"]).await;
    user_with_password(&server, "bob", &["orders:read"]).await;
    let a = login(&server, "alice", PASSWORD).await;
    let b = login(&server, "bob", PASSWORD).await;

    set_user_active(&server, "alice", false).await;
    assert_refused(&server, &a.access_token, "revoked", "disabled user").await;
    assert_oauth_error(
        refresh(&server, &a.refresh_token, &a.csrf_token).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    assert_oauth_error(
        try_login(&server, "alice", PASSWORD).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    assert_allowed(&server, &b.access_token, "orders:read", "bob untouched").await;

    delete_user(&server, "bob").await;
    assert_refused(&server, &b.access_token, "revoked", "deleted user").await;
    assert_oauth_error(
        refresh(&server, &b.refresh_token, &b.csrf_token).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    assert_oauth_error(
        try_login(&server, "bob", PASSWORD).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    server.stop().await;
}

/// A new password ends every session of the user; the old password stops working.
async fn password_change_ends_sessions(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "alice", &["orders:read"]).await;
    user_with_password(&server, "bob", &["orders:read"]).await;
    let a1 = login(&server, "alice", PASSWORD).await;
    let a2 = login(&server, "alice", PASSWORD).await;
    let b = login(&server, "bob", PASSWORD).await;

    let new_password = "a brand new password";
    set_password(&server, "alice", new_password)
        .await
        .expect("new password");
    for (what, tokens) in [("session 1", &a1), ("session 2", &a2)] {
        assert_refused(&server, &tokens.access_token, "revoked", what).await;
        assert_oauth_error(
            refresh(&server, &tokens.refresh_token, &tokens.csrf_token).await,
            Code::Unauthenticated,
            "invalid_grant",
        );
    }
    assert_oauth_error(
        try_login(&server, "alice", PASSWORD).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    let fresh = login(&server, "alice", new_password).await;
    assert_allowed(&server, &fresh.access_token, "orders:read", "new password").await;
    refresh(&server, &fresh.refresh_token, &fresh.csrf_token)
        .await
        .expect("refresh of the new session");
    assert_allowed(&server, &b.access_token, "orders:read", "bob untouched").await;
    server.stop().await;
}

/// RevokeToken with a refresh or an access token ends that session, and only that one.
async fn revoke_token_ends_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "alice", &["orders:read"]).await;
    let other = login(&server, "alice", PASSWORD).await;

    // By refresh token, after a rotation: both access tokens of the session die.
    let s1 = login(&server, "alice", PASSWORD).await;
    let s1b = refresh(&server, &s1.refresh_token, &s1.csrf_token)
        .await
        .expect("refresh");
    revoke_plain(&server, &s1b.refresh_token, "refresh_token")
        .await
        .expect("revoke refresh token");
    assert_refused(&server, &s1.access_token, "revoked", "s1 login token").await;
    assert_refused(&server, &s1b.access_token, "revoked", "s1 refreshed token").await;
    assert_oauth_error(
        refresh(&server, &s1b.refresh_token, &s1b.csrf_token).await,
        Code::Unauthenticated,
        "invalid_grant",
    );

    // By access token.
    let s2 = login(&server, "alice", PASSWORD).await;
    revoke_plain(&server, &s2.access_token, "access_token")
        .await
        .expect("revoke access token");
    assert_refused(&server, &s2.access_token, "revoked", "s2").await;
    assert_oauth_error(
        refresh(&server, &s2.refresh_token, &s2.csrf_token).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    // Again: nothing to do, still fine.
    revoke_plain(&server, &s2.access_token, "access_token")
        .await
        .expect("revoke twice");

    // Without a hint.
    let s3 = login(&server, "alice", PASSWORD).await;
    revoke_plain(&server, &s3.refresh_token, "")
        .await
        .expect("revoke without hint");
    assert_refused(&server, &s3.access_token, "revoked", "s3").await;

    // A wrong hint only slows the search down (RFC 7009 §2.1).
    let s4 = login(&server, "alice", PASSWORD).await;
    revoke_plain(&server, &s4.refresh_token, "access_token")
        .await
        .expect("revoke with the wrong hint");
    assert_refused(&server, &s4.access_token, "revoked", "s4").await;
    assert_oauth_error(
        refresh(&server, &s4.refresh_token, &s4.csrf_token).await,
        Code::Unauthenticated,
        "invalid_grant",
    );

    assert_allowed(&server, &other.access_token, "orders:read", "other session").await;
    refresh(&server, &other.refresh_token, &other.csrf_token)
        .await
        .expect("other session refreshes");
    server.stop().await;
}

/// RFC 7009: unknown tokens succeed silently; unknown hints are refused.
async fn revoke_token_rules(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "alice", &["orders:read"]).await;
    let s = login(&server, "alice", PASSWORD).await;
    let other = login(&server, "alice", PASSWORD).await;
    let (h, p, _) = segments(&s.access_token);

    for (token, hint) in [
        ("garbage".to_string(), ""),
        (format!("idt_rt_{}", "A".repeat(43)), "refresh_token"),
        ("a.b.c".into(), "access_token"),
        (format!("{}x", s.access_token), "access_token"),
        // The session's claims without a valid signature: not a token of it.
        (format!("{h}.{p}."), "access_token"),
        (format!("{h}.{p}.{}", segments(&other.access_token).2), ""),
    ] {
        revoke_plain(&server, &token, hint)
            .await
            .unwrap_or_else(|e| panic!("revoking {token:?} must succeed: {e:?}"));
    }
    for hint in ["id_token", "ACCESS_TOKEN", "refresh"] {
        let refused = revoke_plain(&server, &s.access_token, hint)
            .await
            .expect_err("an unknown hint");
        assert_eq!(error_reason(&refused), "unsupported_token_type", "{hint}");
    }
    // None of that touched the session.
    assert_allowed(
        &server,
        &s.access_token,
        "orders:read",
        "after refused revocations",
    )
    .await;
    assert_allowed(&server, &other.access_token, "orders:read", "other session").await;

    // An expired access token: success, changing nothing.
    server.clock.advance(ACCESS_TTL + 1);
    revoke_plain(&server, &s.access_token, "access_token")
        .await
        .expect("revoking an expired token");
    refresh(&server, &s.refresh_token, &s.csrf_token)
        .await
        .expect("revoking an expired access token changes nothing");
    server.stop().await;
}

/// Roles decide what a user's access token grants, on every check.
async fn user_roles_decide_token_permissions(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "alice", &["orders:read"]).await;
    create_role(&server, "writer", &["orders:write"]).await;
    let t = login(&server, "alice", PASSWORD).await.access_token;
    let mut admin = server.admin().await;

    assert_allowed(&server, &t, "orders:read", "held").await;
    assert_token(
        &server,
        &t,
        "orders:write",
        403,
        "missing_permission",
        "not held",
    )
    .await;
    admin
        .assign_role(as_admin(
            &server,
            pb::AssignRoleRequest {
                username: "alice".into(),
                role: "writer".into(),
            },
        ))
        .await
        .expect("assign");
    assert_allowed(&server, &t, "orders:write", "role assigned").await;
    admin
        .unassign_role(as_admin(
            &server,
            pb::UnassignRoleRequest {
                username: "alice".into(),
                role: "alice-role".into(),
            },
        ))
        .await
        .expect("unassign");
    assert_token(
        &server,
        &t,
        "orders:read",
        403,
        "missing_permission",
        "role taken",
    )
    .await;
    admin
        .set_role_permissions(as_admin(
            &server,
            pb::SetRolePermissionsRequest {
                name: "writer".into(),
                permissions: vec!["orders:read".into(), "orders:write".into()],
            },
        ))
        .await
        .expect("widen writer");
    assert_allowed(&server, &t, "orders:read", "role widened").await;
    server.stop().await;
}

/// Signing keys, sessions and revocations live in the database: a restarted server (same
/// database, same master key) accepts what the first issued and refuses what it revoked.
async fn tokens_survive_restart(backend: Backend) {
    let mut first = TestServer::start_on(TestDb::new(backend).await, |_| {}).await;
    let admin_auth = first.admin_auth.clone();
    user_with_password(&first, "alice", &["orders:read"]).await;
    let (billing, secret) = integration(&first, "billing", &["orders:read"]).await;
    let live = login(&first, "alice", PASSWORD).await;
    let dead = login(&first, "alice", PASSWORD).await;
    revoke_plain(&first, &dead.access_token, "access_token")
        .await
        .expect("revoke");
    let machine = client_token(&first, &billing.client_id, &secret)
        .await
        .expect("client token");
    let kid = kid_of(&live.access_token);

    let db = std::mem::replace(&mut first.db, TestDb::new(backend).await);
    first.stop().await;
    let mut second = TestServer::start_on(db, |_| {}).await;
    second.admin_auth = admin_auth;

    assert_eq!(
        jwks(&second)
            .await
            .iter()
            .map(|k| k.kid.as_str())
            .collect::<Vec<_>>(),
        [kid.as_str()]
    );
    assert_allowed(&second, &live.access_token, "orders:read", "after restart").await;
    assert_bearer_only(
        &second,
        &machine.access_token,
        "orders:read",
        (200, "ok"),
        "client token",
    )
    .await;
    assert_refused(
        &second,
        &dead.access_token,
        "revoked",
        "revoked before restart",
    )
    .await;
    let refreshed = refresh(&second, &live.refresh_token, &live.csrf_token)
        .await
        .expect("refresh after restart");
    assert_eq!(kid_of(&refreshed.access_token), kid, "the same signing key");
    assert_oauth_error(
        refresh(&second, &dead.refresh_token, &dead.csrf_token).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    login(&second, "alice", PASSWORD).await;
    second.stop().await;
}

on_both_backends!(
    disabling_or_deleting_user_ends_sessions,
    password_change_ends_sessions,
    revoke_token_ends_session,
    revoke_token_rules,
    user_roles_decide_token_permissions,
    tokens_survive_restart,
);
