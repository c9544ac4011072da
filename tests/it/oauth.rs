//! OAuth2 end to end: the password, refresh_token and client_credentials grants, refresh
//! rotation and reuse detection, revocation, integrations, the JWKS and signing-key
//! rotation, and the verdicts access tokens get.

use crate::oauth_support::*;
use crate::on_both_backends;
use crate::support::*;
use identityd::api::pb;
use identityd::domain::clock::Clock;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::Value;
use tonic::Code;

// ---------------------------------------------------------------------------------------
// The password grant

/// A login returns a signed access token with the agreed claims, a refresh token and a
/// CSRF token; the access token works under both schemes and reports its session.
async fn password_login_issues_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = user_with_password(&server, "alice", &["orders:read"]).await;
    let now = server.clock.now();
    let tokens = login(&server, "alice", PASSWORD).await;

    assert_eq!(tokens.token_type, "Bearer");
    assert_eq!(tokens.expires_in, ACCESS_TTL);
    assert!(
        tokens.refresh_token.starts_with("idt_rt_"),
        "refresh token prefix"
    );
    assert_eq!(tokens.refresh_expires_in, REFRESH_TTL);
    assert!(
        !tokens.csrf_token.is_empty(),
        "a CSRF token with the refresh token"
    );
    assert!(!tokens.session_id.is_empty(), "a session id");

    let header = header_of(&tokens.access_token);
    assert_eq!(header["alg"], "EdDSA", "{header}");
    assert_eq!(header["typ"], "at+jwt", "{header}");
    assert!(!kid_of(&tokens.access_token).is_empty(), "{header}");
    let claims = claims_of(&tokens.access_token);
    assert_eq!(claims["iss"], "identityd", "{claims}");
    assert_eq!(claims["aud"], "identityd", "{claims}");
    assert_eq!(claims["sub"], alice.id.as_str(), "{claims}");
    assert_eq!(claims["sid"], tokens.session_id.as_str(), "{claims}");
    assert!(claims["client_id"].is_string(), "{claims}");
    assert!(
        claims["jti"].as_str().is_some_and(|j| !j.is_empty()),
        "{claims}"
    );
    assert_eq!(claims["iat"].as_i64(), Some(now), "{claims}");
    assert!(
        claims["nbf"].as_i64().is_some_and(|nbf| nbf <= now),
        "{claims}"
    );
    assert_eq!(claims["exp"].as_i64(), Some(now + ACCESS_TTL), "{claims}");
    assert!(claims.get("scope").is_none_or(Value::is_string), "{claims}");

    let signature = segments(&tokens.access_token).2;
    for (scheme, header) in [
        ("Bearer", bearer(&tokens.access_token)),
        ("JWT", jwt(&tokens.access_token)),
    ] {
        let allowed = server.check(&header, &["orders:read"]).await;
        assert_verdict(&allowed, 200, "ok");
        assert!(allowed.www_authenticate.is_empty());
        let p = allowed.principal.expect("principal on allow");
        assert_eq!(p.kind, i32::from(pb::PrincipalKind::User));
        assert_eq!(
            (
                p.id.as_str(),
                p.name.as_str(),
                p.scheme.as_str(),
                p.credential_kind.as_str()
            ),
            (alice.id.as_str(), "alice", scheme, "access_token")
        );
        assert!(!p.is_staff);
        assert_eq!(p.session_id, tokens.session_id);
        assert_eq!(p.expires_at, now + ACCESS_TTL);
        assert!(
            !p.credential_id.is_empty() && !p.credential_id.contains(&signature),
            "credential_id identifies without revealing: {:?}",
            p.credential_id
        );

        let forbidden = server.check(&header, &["orders:write"]).await;
        assert_verdict(&forbidden, 403, "missing_permission");
        assert_eq!(forbidden.missing, ["orders:write"]);
        assert_eq!(forbidden.principal.expect("principal on 403").name, "alice");
    }

    let authn = authenticate(&server, &bearer(&tokens.access_token)).await;
    assert_eq!((authn.http_status, authn.reason.as_str()), (200, "ok"));
    assert_eq!(authn.permissions, ["orders:read"]);
    let p = authn.principal.expect("principal");
    assert_eq!((p.scheme.as_str(), p.name.as_str()), ("Bearer", "alice"));

    // Every login is a session of its own.
    let again = login(&server, "alice", PASSWORD).await;
    assert_ne!(again.session_id, tokens.session_id);
    assert_ne!(again.refresh_token, tokens.refresh_token);
    assert_ne!(claims_of(&again.access_token)["jti"], claims["jti"]);
    server.stop().await;
}

/// The username field takes an email address too.
async fn login_by_email(backend: Backend) {
    let server = TestServer::start(backend).await;
    create_role(&server, "reader", &["orders:read"]).await;
    let dana = create_user(
        &server,
        pb::CreateUserRequest {
            username: "dana".into(),
            email: "Dana@Example.com".into(),
            roles: vec!["reader".into()],
            ..Default::default()
        },
    )
    .await;
    set_password(&server, "dana", PASSWORD)
        .await
        .expect("set password");

    let tokens = login(&server, "dana@example.com", PASSWORD).await;
    assert_eq!(claims_of(&tokens.access_token)["sub"], dana.id.as_str());
    let allowed = server
        .check(&bearer(&tokens.access_token), &["orders:read"])
        .await;
    assert_verdict(&allowed, 200, "ok");
    assert_eq!(allowed.principal.expect("principal").name, "dana");
    assert_oauth_error(
        try_login(&server, "dana@example.com", "not the password").await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    server.stop().await;
}

/// RFC 6749 §5.2 errors; a wrong password and an unknown user are indistinguishable.
async fn password_login_errors(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "alice", &["orders:read"]).await;

    let wrong = assert_oauth_error(
        try_login(&server, "alice", "not the password").await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    let unknown = assert_oauth_error(
        try_login(&server, "mallory", PASSWORD).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    assert_eq!(
        wrong.message(),
        unknown.message(),
        "wrong password and unknown user must read the same"
    );
    assert!(!wrong.message().contains("alice") && !unknown.message().contains("mallory"));

    // Byte for byte: no trimming, no case folding.
    for near_miss in [format!("{PASSWORD} "), PASSWORD.to_uppercase()] {
        assert_oauth_error(
            try_login(&server, "alice", &near_miss).await,
            Code::Unauthenticated,
            "invalid_grant",
        );
    }
    // A user who never had a password cannot log in with one.
    create_user(
        &server,
        pb::CreateUserRequest {
            username: "nopass".into(),
            ..Default::default()
        },
    )
    .await;
    assert_oauth_error(
        try_login(&server, "nopass", PASSWORD).await,
        Code::Unauthenticated,
        "invalid_grant",
    );

    // Missing parameters.
    assert_oauth_error(
        try_login(&server, "", PASSWORD).await,
        Code::InvalidArgument,
        "invalid_request",
    );
    assert_oauth_error(
        try_login(&server, "alice", "").await,
        Code::InvalidArgument,
        "invalid_request",
    );
    assert_oauth_error(
        issue(
            &server,
            pb::IssueTokenRequest {
                grant_type: String::new(),
                ..password_grant("alice", PASSWORD)
            },
        )
        .await,
        Code::InvalidArgument,
        "invalid_request",
    );
    // Grant types identityd does not offer.
    for grant_type in [
        "authorization_code",
        "implicit",
        "urn:ietf:params:oauth:grant-type:jwt-bearer",
    ] {
        assert_oauth_error(
            issue(
                &server,
                pb::IssueTokenRequest {
                    grant_type: grant_type.into(),
                    ..password_grant("alice", PASSWORD)
                },
            )
            .await,
            Code::InvalidArgument,
            "unsupported_grant_type",
        );
    }
    // The public client cannot use client_credentials.
    assert_some_oauth_error(issue(&server, client_grant("", "")).await);
    // A client_id that names no integration.
    assert_oauth_error(
        issue(
            &server,
            pb::IssueTokenRequest {
                client_id: "no-such-client".into(),
                client_secret: "idt_cs_nope".into(),
                ..password_grant("alice", PASSWORD)
            },
        )
        .await,
        Code::Unauthenticated,
        "invalid_client",
    );

    // None of that locked alice out.
    login(&server, "alice", PASSWORD).await;
    server.stop().await;
}

/// SetUserPassword: 8 to 1024 bytes (bytes, not characters), users:write, known users.
async fn set_user_password_rules(backend: Backend) {
    let server = TestServer::start(backend).await;
    create_user(
        &server,
        pb::CreateUserRequest {
            username: "erin".into(),
            ..Default::default()
        },
    )
    .await;

    for bad in ["".to_string(), "1234567".into(), "x".repeat(1025)] {
        assert_status(
            set_password(&server, "erin", &bad).await,
            Code::InvalidArgument,
            "password",
        );
    }
    // Four two-byte characters are eight bytes.
    for good in ["12345678".to_string(), "y".repeat(1024), "éééé".into()] {
        set_password(&server, "erin", &good)
            .await
            .unwrap_or_else(|s| panic!("{} bytes: {s:?}", good.len()));
        login(&server, "erin", &good).await;
    }
    assert_oauth_error(
        try_login(&server, "erin", "12345678").await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    assert_status(
        set_password(&server, "ghost", PASSWORD).await,
        Code::NotFound,
        "",
    );

    create_role(&server, "user-reader", &["users:read"]).await;
    let viewer = server
        .user_with_roles("viewer", &["user-reader"], true)
        .await;
    assert_status(
        server
            .admin()
            .await
            .set_user_password(authed(
                &viewer,
                pb::SetUserPasswordRequest {
                    username: "erin".into(),
                    password: PASSWORD.into(),
                },
            ))
            .await,
        Code::PermissionDenied,
        "users:write",
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Refresh tokens

/// Refreshing rotates; presenting a used refresh token revokes the whole session.
async fn refresh_rotates_and_reuse_revokes_session(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "alice", &["orders:read"]).await;
    let first = login(&server, "alice", PASSWORD).await;

    server.clock.advance(100);
    let second = refresh(&server, &first.refresh_token, &first.csrf_token)
        .await
        .expect("refresh");
    assert_eq!(second.session_id, first.session_id);
    assert_eq!(
        (second.token_type.as_str(), second.expires_in),
        ("Bearer", ACCESS_TTL)
    );
    assert!(second.refresh_token.starts_with("idt_rt_"));
    assert_ne!(second.refresh_token, first.refresh_token);
    assert!(!second.csrf_token.is_empty());
    assert_ne!(second.csrf_token, first.csrf_token);
    assert_ne!(second.access_token, first.access_token);
    // The refresh lifetime is absolute: rotation does not extend it.
    assert_eq!(second.refresh_expires_in, REFRESH_TTL - 100);
    let claims = claims_of(&second.access_token);
    assert_eq!(claims["sid"], first.session_id.as_str());
    assert_eq!(claims["iat"].as_i64(), Some(server.clock.now()));
    assert_allowed(&server, &first.access_token, "orders:read", "login token").await;
    assert_allowed(&server, &second.access_token, "orders:read", "refreshed").await;

    // Reuse of the first refresh token: refused, and the session ends.
    assert_oauth_error(
        refresh(&server, &first.refresh_token, &first.csrf_token).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    assert_refused(
        &server,
        &first.access_token,
        "revoked",
        "login token after reuse",
    )
    .await;
    assert_refused(
        &server,
        &second.access_token,
        "revoked",
        "refreshed after reuse",
    )
    .await;
    assert_oauth_error(
        refresh(&server, &second.refresh_token, &second.csrf_token).await,
        Code::Unauthenticated,
        "invalid_grant",
    );

    // A new login is a new, working session.
    let third = login(&server, "alice", PASSWORD).await;
    assert_ne!(third.session_id, first.session_id);
    assert_allowed(&server, &third.access_token, "orders:read", "new session").await;
    server.stop().await;
}

/// A CSRF token that does not match refuses the refresh without consuming the refresh
/// token; an empty one skips the check.
async fn refresh_checks_csrf(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "alice", &["orders:read"]).await;
    let first = login(&server, "alice", PASSWORD).await;
    let other = login(&server, "alice", PASSWORD).await;

    for wrong in [
        format!("idt_csrf_{}", "A".repeat(43)),
        "nonsense".into(),
        other.csrf_token.clone(),
        first.refresh_token.clone(),
    ] {
        assert_oauth_error(
            refresh(&server, &first.refresh_token, &wrong).await,
            Code::Unauthenticated,
            "invalid_grant",
        );
    }
    let second = refresh(&server, &first.refresh_token, &first.csrf_token)
        .await
        .expect("a retry with the right CSRF token works");
    assert_eq!(second.session_id, first.session_id);
    assert_ne!(second.csrf_token, first.csrf_token, "a new CSRF token");
    assert_allowed(&server, &second.access_token, "orders:read", "after retry").await;

    // The CSRF token of the previous refresh token does not match the new one.
    assert_oauth_error(
        refresh(&server, &second.refresh_token, &first.csrf_token).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    let third = refresh(&server, &second.refresh_token, "")
        .await
        .expect("an empty CSRF token skips the check");
    assert_eq!(third.session_id, first.session_id);
    assert_allowed(&server, &third.access_token, "orders:read", "empty CSRF").await;
    // The other session was never touched.
    assert_allowed(&server, &other.access_token, "orders:read", "other session").await;
    server.stop().await;
}

/// The refresh_token grant of IssueToken, and refresh tokens that are not.
async fn refresh_grant_and_bad_refresh_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "alice", &["orders:read"]).await;
    let first = login(&server, "alice", PASSWORD).await;
    let refresh_grant = |refresh_token: &str, csrf_token: &str| pb::IssueTokenRequest {
        grant_type: "refresh_token".into(),
        refresh_token: refresh_token.into(),
        csrf_token: csrf_token.into(),
        ..Default::default()
    };

    assert_oauth_error(
        issue(&server, refresh_grant(&first.refresh_token, "nonsense")).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    let second = issue(
        &server,
        refresh_grant(&first.refresh_token, &first.csrf_token),
    )
    .await
    .expect("refresh_token grant");
    assert_eq!(second.session_id, first.session_id);
    assert!(second.refresh_token.starts_with("idt_rt_"));
    assert_ne!(second.refresh_token, first.refresh_token);
    assert!(!second.csrf_token.is_empty());
    assert_allowed(
        &server,
        &second.access_token,
        "orders:read",
        "via IssueToken",
    )
    .await;

    // Missing refresh token.
    assert_oauth_error(
        refresh(&server, "", "").await,
        Code::InvalidArgument,
        "invalid_request",
    );
    assert_oauth_error(
        issue(&server, refresh_grant("", "")).await,
        Code::InvalidArgument,
        "invalid_request",
    );
    // Refresh tokens that are not.
    for bogus in [
        "garbage".to_string(),
        format!("idt_rt_{}", "A".repeat(43)),
        second.access_token.clone(),
        second.csrf_token.clone(),
    ] {
        assert_oauth_error(
            refresh(&server, &bogus, "").await,
            Code::Unauthenticated,
            "invalid_grant",
        );
    }
    // Nor is a refresh token an access token.
    assert_refused(
        &server,
        &second.refresh_token,
        "invalid_credentials",
        "refresh token as access token",
    )
    .await;

    // A client that names no integration.
    assert_oauth_error(
        server
            .identity()
            .await
            .refresh_token(pb::RefreshTokenRequest {
                refresh_token: second.refresh_token.clone(),
                client_id: "no-such-client".into(),
                client_secret: "idt_cs_nope".into(),
                csrf_token: String::new(),
            })
            .await,
        Code::Unauthenticated,
        "invalid_client",
    );
    // A refresh token of the public client, presented by an integration.
    let (billing, secret) = integration(&server, "billing", &["orders:read"]).await;
    let fresh = login(&server, "alice", PASSWORD).await;
    assert_oauth_error(
        server
            .identity()
            .await
            .refresh_token(pb::RefreshTokenRequest {
                refresh_token: fresh.refresh_token.clone(),
                client_id: billing.client_id.clone(),
                client_secret: secret,
                csrf_token: String::new(),
            })
            .await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    server.stop().await;
}

/// Eight concurrent refreshes of one refresh token: at most one wins, the rest are reuse.
async fn parallel_refreshes_at_most_one_wins(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "alice", &["orders:read"]).await;
    let first = login(&server, "alice", PASSWORD).await;

    let mut clients = Vec::new();
    for _ in 0..8 {
        clients.push(server.identity().await);
    }
    let mut tasks = tokio::task::JoinSet::new();
    for mut client in clients {
        let request = pb::RefreshTokenRequest {
            refresh_token: first.refresh_token.clone(),
            csrf_token: first.csrf_token.clone(),
            ..Default::default()
        };
        tasks.spawn(async move {
            client
                .refresh_token(request)
                .await
                .map(tonic::Response::into_inner)
        });
    }
    let results = tasks.join_all().await;
    let winners: Vec<&pb::TokenResponse> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    eprintln!("{} of 8 concurrent refreshes won", winners.len());
    assert!(
        winners.len() <= 1,
        "{} refreshes of one token won",
        winners.len()
    );
    for status in results.iter().filter_map(|r| r.as_ref().err()) {
        assert_eq!(
            (status.code(), error_reason(status).as_str()),
            (Code::Unauthenticated, "invalid_grant"),
            "{status:?}"
        );
    }
    // The losers were reuse of a used token, which ends the session.
    assert_refused(&server, &first.access_token, "revoked", "after the race").await;
    for winner in winners {
        assert_refused(&server, &winner.access_token, "revoked", "the winner").await;
        assert_oauth_error(
            refresh(&server, &winner.refresh_token, "").await,
            Code::Unauthenticated,
            "invalid_grant",
        );
    }
    server.stop().await;
}

/// Access tokens expire after 600 s; refresh tokens 30 days after login, however often
/// they are rotated.
async fn access_and_refresh_expiry(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "alice", &["orders:read"]).await;
    let first = login(&server, "alice", PASSWORD).await;
    let untouched = login(&server, "alice", PASSWORD).await;

    server.clock.advance(ACCESS_TTL - 1);
    assert_allowed(
        &server,
        &first.access_token,
        "orders:read",
        "1 s before exp",
    )
    .await;
    server.clock.advance(2);
    assert_refused(&server, &first.access_token, "expired", "1 s after exp").await;
    let authn = authenticate(&server, &bearer(&first.access_token)).await;
    assert_eq!((authn.http_status, authn.reason.as_str()), (401, "expired"));
    assert_token_challenge(&authn.www_authenticate, "Bearer");

    // An expired access token does not end the session: refreshing still works.
    let second = refresh(&server, &first.refresh_token, &first.csrf_token)
        .await
        .expect("refresh after the access token expired");
    assert_eq!(second.refresh_expires_in, REFRESH_TTL - ACCESS_TTL - 1);
    assert_allowed(&server, &second.access_token, "orders:read", "refreshed").await;

    // Ten seconds before the absolute expiry: still refreshable.
    server.clock.advance(REFRESH_TTL - ACCESS_TTL - 1 - 10);
    let third = refresh(&server, &second.refresh_token, &second.csrf_token)
        .await
        .expect("refresh 10 s before the absolute expiry");
    assert_eq!(third.refresh_expires_in, 10);

    // One second after it: neither the rotated nor the never-used refresh token works.
    server.clock.advance(11);
    assert_oauth_error(
        refresh(&server, &third.refresh_token, &third.csrf_token).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    assert_oauth_error(
        refresh(&server, &untouched.refresh_token, &untouched.csrf_token).await,
        Code::Unauthenticated,
        "invalid_grant",
    );
    // Logging in again works.
    let fresh = login(&server, "alice", PASSWORD).await;
    assert_eq!(fresh.refresh_expires_in, REFRESH_TTL);
    assert_allowed(&server, &fresh.access_token, "orders:read", "fresh login").await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// What ends a session

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

    server
        .admin()
        .await
        .delete_user(as_admin(
            &server,
            pb::DeleteUserRequest {
                username: "bob".into(),
            },
        ))
        .await
        .expect("delete bob");
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

/// The password grant through an integration (a confidential client): its sessions are
/// refreshed and revoked only with that integration's credentials.
async fn password_grant_through_an_integration(backend: Backend) {
    let server = TestServer::start(backend).await;
    let alice = user_with_password(&server, "alice", &["orders:read"]).await;
    let (billing, secret) = integration(&server, "billing", &["catalog:read"]).await;
    let (_, shipping_secret) = integration(&server, "shipping", &[]).await;
    let through_billing = || pb::IssueTokenRequest {
        client_id: billing.client_id.clone(),
        client_secret: secret.clone(),
        ..password_grant("alice", PASSWORD)
    };
    let refresh_as =
        |refresh_token: &str, client_id: &str, client_secret: &str| pb::RefreshTokenRequest {
            refresh_token: refresh_token.into(),
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            csrf_token: String::new(),
        };

    assert_oauth_error(
        issue(
            &server,
            pb::IssueTokenRequest {
                client_secret: shipping_secret.clone(),
                ..through_billing()
            },
        )
        .await,
        Code::Unauthenticated,
        "invalid_client",
    );
    let t = issue(&server, through_billing())
        .await
        .expect("password grant through billing");
    let claims = claims_of(&t.access_token);
    assert_eq!(
        (claims["sub"].as_str(), claims["client_id"].as_str()),
        (Some(alice.id.as_str()), Some(billing.client_id.as_str()))
    );
    // The user's permissions, not the integration's.
    let allowed = server
        .check(&bearer(&t.access_token), &["orders:read"])
        .await;
    assert_verdict(&allowed, 200, "ok");
    let p = allowed.principal.expect("principal");
    assert_eq!(
        (p.kind, p.name.as_str()),
        (i32::from(pb::PrincipalKind::User), "alice")
    );
    assert_token(
        &server,
        &t.access_token,
        "catalog:read",
        403,
        "missing_permission",
        "integration's permission",
    )
    .await;

    let mut identity = server.identity().await;
    assert_oauth_error(
        identity
            .refresh_token(refresh_as(
                &t.refresh_token,
                &billing.client_id,
                &shipping_secret,
            ))
            .await,
        Code::Unauthenticated,
        "invalid_client",
    );
    let r = identity
        .refresh_token(refresh_as(&t.refresh_token, &billing.client_id, &secret))
        .await
        .expect("refresh by its client")
        .into_inner();
    assert_eq!(r.session_id, t.session_id);
    assert_oauth_error(
        refresh(&server, &r.refresh_token, "").await,
        Code::Unauthenticated,
        "invalid_grant",
    );

    // Revocation needs the client too.
    let s = issue(&server, through_billing())
        .await
        .expect("second session");
    assert_oauth_error(
        revoke_plain(&server, &s.refresh_token, "").await,
        Code::Unauthenticated,
        "invalid_client",
    );
    assert_allowed(
        &server,
        &s.access_token,
        "orders:read",
        "refused revocation",
    )
    .await;
    revoke(
        &server,
        pb::RevokeTokenRequest {
            token: s.refresh_token.clone(),
            token_type_hint: String::new(),
            client_id: billing.client_id.clone(),
            client_secret: secret.clone(),
        },
    )
    .await
    .expect("revoke with the client");
    assert_refused(&server, &s.access_token, "revoked", "revoked by its client").await;

    // Rotating the secret, disabling and deleting the integration each end every token
    // issued to it, user sessions included.
    let mut admin = server.admin().await;
    let mut survivors = Vec::new();
    let u = issue(&server, through_billing())
        .await
        .expect("third session");
    let new_secret = admin
        .rotate_integration_secret(as_admin(
            &server,
            pb::RotateIntegrationSecretRequest {
                client_id: billing.client_id.clone(),
            },
        ))
        .await
        .expect("rotate")
        .into_inner()
        .client_secret;
    let through_billing = || pb::IssueTokenRequest {
        client_id: billing.client_id.clone(),
        client_secret: new_secret.clone(),
        ..password_grant("alice", PASSWORD)
    };
    let still = |resp: pb::CheckPermissionResponse| resp.http_status != 401;
    if still(
        server
            .check(&bearer(&u.access_token), &["orders:read"])
            .await,
    ) {
        survivors.push("secret rotated");
    }
    let v = issue(&server, through_billing())
        .await
        .expect("fourth session");
    let active = |active: bool| {
        as_admin(
            &server,
            pb::SetIntegrationActiveRequest {
                client_id: billing.client_id.clone(),
                active,
            },
        )
    };
    admin
        .set_integration_active(active(false))
        .await
        .expect("disable");
    if still(
        server
            .check(&bearer(&v.access_token), &["orders:read"])
            .await,
    ) {
        survivors.push("integration disabled");
    }
    admin
        .set_integration_active(active(true))
        .await
        .expect("enable");
    let w = issue(&server, through_billing())
        .await
        .expect("fifth session");
    admin
        .delete_integration(as_admin(
            &server,
            pb::DeleteIntegrationRequest {
                client_id: billing.client_id.clone(),
            },
        ))
        .await
        .expect("delete");
    if still(
        server
            .check(&bearer(&w.access_token), &["orders:read"])
            .await,
    ) {
        survivors.push("integration deleted");
    }
    assert!(
        survivors.is_empty(),
        "user access tokens issued through the integration still allowed after: {survivors:?}"
    );
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
    assert_allowed(
        &second,
        &machine.access_token,
        "orders:read",
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

// ---------------------------------------------------------------------------------------
// Integrations and client_credentials

/// An integration's token: claims, principal, its permissions deciding, live narrowing.
async fn client_credentials_flow(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (billing, secret) = integration(&server, "billing", &["orders:read"]).await;
    assert_eq!((billing.name.as_str(), billing.active), ("billing", true));
    assert_eq!(billing.permissions, ["orders:read"]);
    assert!(!billing.id.is_empty() && !billing.client_id.is_empty());

    let now = server.clock.now();
    let t = client_token(&server, &billing.client_id, &secret)
        .await
        .expect("client_credentials");
    assert_eq!(
        (t.token_type.as_str(), t.expires_in),
        ("Bearer", ACCESS_TTL)
    );
    assert!(
        t.refresh_token.is_empty() && t.csrf_token.is_empty() && t.refresh_expires_in == 0,
        "no refresh token for client_credentials"
    );
    let header = header_of(&t.access_token);
    assert_eq!(
        (header["alg"].as_str(), header["typ"].as_str()),
        (Some("EdDSA"), Some("at+jwt"))
    );
    let claims = claims_of(&t.access_token);
    assert_eq!(claims["sub"], billing.id.as_str(), "{claims}");
    assert_eq!(claims["client_id"], billing.client_id.as_str(), "{claims}");
    assert_eq!(
        (claims["iss"].as_str(), claims["aud"].as_str()),
        (Some("identityd"), Some("identityd"))
    );
    assert_eq!(claims["exp"].as_i64(), Some(now + ACCESS_TTL));
    let sid = claims["sid"].as_str().expect("a sid").to_owned();
    assert!(!sid.is_empty());
    assert_eq!(t.session_id, sid);

    for (scheme, header) in [
        ("Bearer", bearer(&t.access_token)),
        ("JWT", jwt(&t.access_token)),
    ] {
        let allowed = server.check(&header, &["orders:read"]).await;
        assert_verdict(&allowed, 200, "ok");
        let p = allowed.principal.expect("principal");
        assert_eq!(p.kind, i32::from(pb::PrincipalKind::Integration));
        assert_eq!(
            (
                p.id.as_str(),
                p.name.as_str(),
                p.scheme.as_str(),
                p.credential_kind.as_str(),
                p.session_id.as_str(),
                p.expires_at
            ),
            (
                billing.id.as_str(),
                "billing",
                scheme,
                "access_token",
                sid.as_str(),
                now + ACCESS_TTL
            )
        );
        assert!(!p.is_staff);
    }
    let forbidden = server
        .check(&bearer(&t.access_token), &["orders:write"])
        .await;
    assert_verdict(&forbidden, 403, "missing_permission");
    assert_eq!(forbidden.missing, ["orders:write"]);
    let authn = authenticate(&server, &bearer(&t.access_token)).await;
    assert_eq!(authn.permissions, ["orders:read"]);

    // New permissions apply to the token already issued, on the next check.
    let changed = server
        .admin()
        .await
        .set_integration_permissions(as_admin(
            &server,
            pb::SetIntegrationPermissionsRequest {
                client_id: billing.client_id.clone(),
                permissions: vec!["catalog:read".into()],
            },
        ))
        .await
        .expect("set permissions")
        .into_inner();
    assert_eq!(changed.permissions, ["catalog:read"]);
    assert_token(
        &server,
        &t.access_token,
        "orders:read",
        403,
        "missing_permission",
        "narrowed",
    )
    .await;
    assert_allowed(&server, &t.access_token, "catalog:read", "granted").await;

    // Client authentication failures read the same whatever was wrong.
    let (shipping, shipping_secret) = integration(&server, "shipping", &[]).await;
    let wrong_secret = assert_oauth_error(
        client_token(&server, &billing.client_id, &shipping_secret).await,
        Code::Unauthenticated,
        "invalid_client",
    );
    let unknown_client = assert_oauth_error(
        client_token(&server, "no-such-client", &secret).await,
        Code::Unauthenticated,
        "invalid_client",
    );
    assert_eq!(wrong_secret.message(), unknown_client.message());
    assert_some_oauth_error(client_token(&server, &billing.client_id, "").await);
    client_token(&server, &shipping.client_id, &shipping_secret)
        .await
        .expect("shipping's own secret");

    let fetched = server
        .admin()
        .await
        .get_integration(as_admin(
            &server,
            pb::GetIntegrationRequest {
                client_id: billing.client_id.clone(),
            },
        ))
        .await
        .expect("get integration")
        .into_inner();
    assert_eq!(
        (fetched.id.as_str(), fetched.name.as_str()),
        (billing.id.as_str(), "billing")
    );
    let listed = server
        .admin()
        .await
        .list_integrations(as_admin(&server, pb::ListIntegrationsRequest {}))
        .await
        .expect("list integrations")
        .into_inner()
        .integrations;
    let names: Vec<&str> = listed.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names, ["billing", "shipping"]);
    server.stop().await;
}

/// Rotating the secret, disabling and deleting each end the integration's tokens.
async fn integration_secret_rotation_disable_delete(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (billing, secret) = integration(&server, "billing", &["orders:read"]).await;
    let client_id = billing.client_id.clone();
    let mut admin = server.admin().await;
    let old = client_token(&server, &client_id, &secret)
        .await
        .expect("token");

    let rotated = admin
        .rotate_integration_secret(as_admin(
            &server,
            pb::RotateIntegrationSecretRequest {
                client_id: client_id.clone(),
            },
        ))
        .await
        .expect("rotate secret")
        .into_inner();
    let new_secret = rotated.client_secret;
    assert!(!new_secret.is_empty() && new_secret != secret);
    assert_oauth_error(
        client_token(&server, &client_id, &secret).await,
        Code::Unauthenticated,
        "invalid_client",
    );
    assert_refused(
        &server,
        &old.access_token,
        "revoked",
        "issued before rotation",
    )
    .await;
    let current = client_token(&server, &client_id, &new_secret)
        .await
        .expect("the new secret works");
    assert_allowed(
        &server,
        &current.access_token,
        "orders:read",
        "after rotation",
    )
    .await;

    let disabled = admin
        .set_integration_active(as_admin(
            &server,
            pb::SetIntegrationActiveRequest {
                client_id: client_id.clone(),
                active: false,
            },
        ))
        .await
        .expect("disable")
        .into_inner();
    assert!(!disabled.active);
    assert_refused(&server, &current.access_token, "revoked", "disabled").await;
    assert_oauth_error(
        client_token(&server, &client_id, &new_secret).await,
        Code::Unauthenticated,
        "invalid_client",
    );

    admin
        .set_integration_active(as_admin(
            &server,
            pb::SetIntegrationActiveRequest {
                client_id: client_id.clone(),
                active: true,
            },
        ))
        .await
        .expect("enable");
    let again = client_token(&server, &client_id, &new_secret)
        .await
        .expect("re-enabled");
    assert_allowed(&server, &again.access_token, "orders:read", "re-enabled").await;

    admin
        .delete_integration(as_admin(
            &server,
            pb::DeleteIntegrationRequest {
                client_id: client_id.clone(),
            },
        ))
        .await
        .expect("delete");
    assert_refused(&server, &again.access_token, "revoked", "deleted").await;
    assert_oauth_error(
        client_token(&server, &client_id, &new_secret).await,
        Code::Unauthenticated,
        "invalid_client",
    );
    assert_status(
        admin
            .get_integration(as_admin(&server, pb::GetIntegrationRequest { client_id }))
            .await,
        Code::NotFound,
        "",
    );
    server.stop().await;
}

/// An integration's token can only be revoked with that integration's credentials.
async fn revoke_integration_token_needs_its_client(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (billing, secret) = integration(&server, "billing", &["orders:read"]).await;
    let (shipping, shipping_secret) = integration(&server, "shipping", &["orders:read"]).await;
    let t = client_token(&server, &billing.client_id, &secret)
        .await
        .expect("token");
    let request = |client_id: &str, client_secret: &str| pb::RevokeTokenRequest {
        token: t.access_token.clone(),
        token_type_hint: "access_token".into(),
        client_id: client_id.into(),
        client_secret: client_secret.into(),
    };

    for (what, client_id, client_secret) in [
        ("no client", "", ""),
        (
            "wrong secret",
            billing.client_id.as_str(),
            shipping_secret.as_str(),
        ),
        ("no secret", billing.client_id.as_str(), ""),
        (
            "another integration",
            shipping.client_id.as_str(),
            shipping_secret.as_str(),
        ),
    ] {
        let refused = revoke(&server, request(client_id, client_secret))
            .await
            .expect_err(what);
        assert_eq!(
            (refused.code(), error_reason(&refused).as_str()),
            (Code::Unauthenticated, "invalid_client"),
            "{what}: {refused:?}"
        );
    }
    assert_allowed(
        &server,
        &t.access_token,
        "orders:read",
        "after refused revocations",
    )
    .await;

    revoke(&server, request(&billing.client_id, &secret))
        .await
        .expect("revoke with the integration's credentials");
    assert_refused(&server, &t.access_token, "revoked", "revoked").await;
    let next = client_token(&server, &billing.client_id, &secret)
        .await
        .expect("a new token");
    assert_allowed(&server, &next.access_token, "orders:read", "new token").await;
    server.stop().await;
}

/// Integration and key administration need their permissions; an access token of a
/// staff user authenticates Admin calls like any other credential.
async fn integration_admin_needs_permissions(backend: Backend) {
    let server = TestServer::start(backend).await;
    create_role(&server, "user-reader", &["users:read"]).await;
    create_role(&server, "integration-reader", &["integrations:read"]).await;
    let viewer = server
        .user_with_roles("viewer", &["user-reader"], true)
        .await;
    let auditor = server
        .user_with_roles("auditor", &["integration-reader"], true)
        .await;
    let (billing, _) = integration(&server, "billing", &["orders:read"]).await;
    let client_id = || billing.client_id.clone();
    let mut admin = server.admin().await;
    let create = || pb::CreateIntegrationRequest {
        name: "shipping".into(),
        permissions: vec![],
    };

    assert_status(
        admin.create_integration(authed(&viewer, create())).await,
        Code::PermissionDenied,
        "integrations:write",
    );
    assert_status(
        admin
            .list_integrations(authed(&viewer, pb::ListIntegrationsRequest {}))
            .await,
        Code::PermissionDenied,
        "integrations:read",
    );
    assert_status(
        admin
            .get_integration(authed(
                &viewer,
                pb::GetIntegrationRequest {
                    client_id: client_id(),
                },
            ))
            .await,
        Code::PermissionDenied,
        "integrations:read",
    );
    let listed = admin
        .list_integrations(authed(&auditor, pb::ListIntegrationsRequest {}))
        .await
        .expect("integrations:read lists")
        .into_inner();
    assert_eq!(listed.integrations.len(), 1);
    admin
        .get_integration(authed(
            &auditor,
            pb::GetIntegrationRequest {
                client_id: client_id(),
            },
        ))
        .await
        .expect("integrations:read gets");
    assert_status(
        admin.create_integration(authed(&auditor, create())).await,
        Code::PermissionDenied,
        "integrations:write",
    );
    assert_status(
        admin
            .rotate_integration_secret(authed(
                &auditor,
                pb::RotateIntegrationSecretRequest {
                    client_id: client_id(),
                },
            ))
            .await,
        Code::PermissionDenied,
        "integrations:write",
    );
    assert_status(
        admin
            .set_integration_active(authed(
                &auditor,
                pb::SetIntegrationActiveRequest {
                    client_id: client_id(),
                    active: false,
                },
            ))
            .await,
        Code::PermissionDenied,
        "integrations:write",
    );
    assert_status(
        admin
            .set_integration_permissions(authed(
                &auditor,
                pb::SetIntegrationPermissionsRequest {
                    client_id: client_id(),
                    permissions: vec!["users:write".into()],
                },
            ))
            .await,
        Code::PermissionDenied,
        "integrations:write",
    );
    assert_status(
        admin
            .delete_integration(authed(
                &auditor,
                pb::DeleteIntegrationRequest {
                    client_id: client_id(),
                },
            ))
            .await,
        Code::PermissionDenied,
        "integrations:write",
    );
    assert_status(
        admin
            .list_signing_keys(authed(&viewer, pb::ListSigningKeysRequest {}))
            .await,
        Code::PermissionDenied,
        "keys:read",
    );
    assert_status(
        admin
            .rotate_signing_key(authed(&auditor, pb::RotateSigningKeyRequest {}))
            .await,
        Code::PermissionDenied,
        "keys:write",
    );
    // The refused calls changed nothing.
    let still = admin
        .get_integration(as_admin(
            &server,
            pb::GetIntegrationRequest {
                client_id: client_id(),
            },
        ))
        .await
        .expect("get")
        .into_inner();
    assert_eq!(
        (still.active, still.permissions.as_slice()),
        (true, &["orders:read".to_string()][..])
    );

    // The auditor logs in with a password and uses the access token on Admin.
    set_password(&server, "auditor", PASSWORD)
        .await
        .expect("password");
    let t = login(&server, "auditor", PASSWORD).await.access_token;
    admin
        .list_integrations(authed(&bearer(&t), pb::ListIntegrationsRequest {}))
        .await
        .expect("a staff access token on Admin");
    assert_status(
        admin
            .create_integration(authed(&bearer(&t), create()))
            .await,
        Code::PermissionDenied,
        "integrations:write",
    );
    revoke_plain(&server, &t, "access_token")
        .await
        .expect("revoke");
    assert_status(
        admin
            .list_integrations(authed(&bearer(&t), pb::ListIntegrationsRequest {}))
            .await,
        Code::Unauthenticated,
        "",
    );
    server.stop().await;
}

/// Admin mistakes with integrations get the usual codes.
async fn integration_admin_mistakes(backend: Backend) {
    let server = TestServer::start(backend).await;
    integration(&server, "billing", &["orders:read"]).await;
    let mut admin = server.admin().await;
    let create = |name: &str, permissions: &[&str]| {
        as_admin(
            &server,
            pb::CreateIntegrationRequest {
                name: name.into(),
                permissions: permissions.iter().map(|p| p.to_string()).collect(),
            },
        )
    };
    assert_status(
        admin.create_integration(create("billing", &[])).await,
        Code::AlreadyExists,
        "",
    );
    for bad_name in ["", "Billing", "bill ing", "b".repeat(65).as_str()] {
        assert_status(
            admin.create_integration(create(bad_name, &[])).await,
            Code::InvalidArgument,
            "name",
        );
    }
    assert_status(
        admin
            .create_integration(create("shipping", &["orders"]))
            .await,
        Code::InvalidArgument,
        "",
    );
    let unknown = || "no-such-client".to_string();
    assert_status(
        admin
            .get_integration(as_admin(
                &server,
                pb::GetIntegrationRequest {
                    client_id: unknown(),
                },
            ))
            .await,
        Code::NotFound,
        "",
    );
    assert_status(
        admin
            .rotate_integration_secret(as_admin(
                &server,
                pb::RotateIntegrationSecretRequest {
                    client_id: unknown(),
                },
            ))
            .await,
        Code::NotFound,
        "",
    );
    assert_status(
        admin
            .delete_integration(as_admin(
                &server,
                pb::DeleteIntegrationRequest {
                    client_id: unknown(),
                },
            ))
            .await,
        Code::NotFound,
        "",
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Keys

/// The JWKS publishes the key that verifies issued tokens, and a standard JWT library
/// accepts them with it.
async fn jwks_verifies_tokens(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "alice", &["orders:read"]).await;
    let (billing, secret) = integration(&server, "billing", &["orders:read"]).await;
    let user_token = login(&server, "alice", PASSWORD).await.access_token;
    let client = client_token(&server, &billing.client_id, &secret)
        .await
        .expect("token")
        .access_token;

    let keys = jwks(&server).await;
    assert_eq!(keys.len(), 1, "{keys:?}");
    let key = &keys[0];
    assert_eq!(
        (
            key.kty.as_str(),
            key.crv.as_str(),
            key.alg.as_str(),
            key.r#use.as_str()
        ),
        ("OKP", "Ed25519", "EdDSA", "sig")
    );
    assert_eq!(
        unb64(&key.x).map(|b| b.len()),
        Some(32),
        "an Ed25519 public key in base64url"
    );
    for token in [&user_token, &client] {
        assert_eq!(kid_of(token), key.kid);
        assert!(verifies(token, &key.x), "the JWKS key verifies the token");
    }
    let (h, p, s) = segments(&user_token);
    let mut tampered_sig = s.into_bytes();
    tampered_sig[0] = if tampered_sig[0] == b'A' { b'B' } else { b'A' };
    let tampered = format!(
        "{h}.{p}.{}",
        String::from_utf8(tampered_sig).expect("ascii")
    );
    assert!(!verifies(&tampered, &key.x), "the helper really verifies");

    let mut validation = Validation::new(Algorithm::EdDSA);
    validation.set_audience(&["identityd"]);
    validation.set_issuer(&["identityd"]);
    validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
    // The server's clock is not the wall clock.
    validation.validate_exp = false;
    let decoded = jsonwebtoken::decode::<Value>(
        &user_token,
        &DecodingKey::from_ed_components(&key.x).expect("x"),
        &validation,
    )
    .expect("a standard JWT library accepts the token");
    assert_eq!(decoded.header.kid.as_deref(), Some(key.kid.as_str()));
    server.stop().await;
}

/// A rotated key signs new tokens; the old one keeps verifying until its tokens expire.
async fn signing_key_rotation(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "alice", &["orders:read"]).await;
    let mut admin = server.admin().await;
    let before = login(&server, "alice", PASSWORD).await.access_token;
    let old_kid = kid_of(&before);

    let listed = admin
        .list_signing_keys(as_admin(&server, pb::ListSigningKeysRequest {}))
        .await
        .expect("list keys")
        .into_inner()
        .keys;
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(
        (
            listed[0].kid.as_str(),
            listed[0].algorithm.as_str(),
            listed[0].signing,
            listed[0].retired_at,
            listed[0].published_until
        ),
        (old_kid.as_str(), "EdDSA", true, 0, 0)
    );

    server.clock.advance(10);
    let rotated_at = server.clock.now();
    let new_key = admin
        .rotate_signing_key(as_admin(&server, pb::RotateSigningKeyRequest {}))
        .await
        .expect("rotate")
        .into_inner();
    assert_ne!(new_key.kid, old_kid);
    assert_eq!(
        (
            new_key.algorithm.as_str(),
            new_key.signing,
            new_key.created_at
        ),
        ("EdDSA", true, rotated_at)
    );

    let after = login(&server, "alice", PASSWORD).await.access_token;
    assert_eq!(kid_of(&after), new_key.kid);
    let (billing, secret) = integration(&server, "billing", &["orders:read"]).await;
    let client = client_token(&server, &billing.client_id, &secret)
        .await
        .expect("token")
        .access_token;
    assert_eq!(kid_of(&client), new_key.kid);
    assert_allowed(&server, &before, "orders:read", "signed by the old key").await;
    assert_allowed(&server, &after, "orders:read", "signed by the new key").await;

    let keys = jwks(&server).await;
    let kids: Vec<&str> = keys.iter().map(|k| k.kid.as_str()).collect();
    assert_eq!(
        kids,
        [new_key.kid.as_str(), old_kid.as_str()],
        "newest first"
    );
    assert!(verifies(&before, &keys[1].x) && !verifies(&before, &keys[0].x));
    assert!(verifies(&after, &keys[0].x) && !verifies(&after, &keys[1].x));

    let listed = admin
        .list_signing_keys(as_admin(&server, pb::ListSigningKeysRequest {}))
        .await
        .expect("list keys")
        .into_inner()
        .keys;
    let signing: Vec<&str> = listed
        .iter()
        .filter(|k| k.signing)
        .map(|k| k.kid.as_str())
        .collect();
    assert_eq!(signing, [new_key.kid.as_str()], "{listed:?}");
    let old = listed
        .iter()
        .find(|k| k.kid == old_kid)
        .expect("the old key is still listed");
    assert_eq!(old.retired_at, rotated_at, "{old:?}");
    let before_exp = claims_of(&before)["exp"].as_i64().expect("exp");
    assert!(old.published_until >= before_exp, "{old:?}");

    // Once the last token the old key signed has expired, the key is no longer
    // published. (GetJwks serves a key set reloaded every 30 s of wall-clock time, so it
    // cannot follow the test's manual clock; ListSigningKeys reads storage.)
    server
        .clock
        .advance(old.published_until - server.clock.now() + 1);
    let listed = admin
        .list_signing_keys(as_admin(&server, pb::ListSigningKeysRequest {}))
        .await
        .expect("list keys")
        .into_inner()
        .keys;
    assert_eq!(listed.len(), 1, "{listed:?}");
    let later = login(&server, "alice", PASSWORD).await.access_token;
    assert_allowed(&server, &later, "orders:read", "the new key still signs").await;
    server.stop().await;
}

on_both_backends!(
    password_login_issues_tokens,
    login_by_email,
    password_login_errors,
    set_user_password_rules,
    refresh_rotates_and_reuse_revokes_session,
    refresh_checks_csrf,
    refresh_grant_and_bad_refresh_tokens,
    parallel_refreshes_at_most_one_wins,
    access_and_refresh_expiry,
    disabling_or_deleting_user_ends_sessions,
    password_change_ends_sessions,
    revoke_token_ends_session,
    revoke_token_rules,
    user_roles_decide_token_permissions,
    password_grant_through_an_integration,
    tokens_survive_restart,
    client_credentials_flow,
    integration_secret_rotation_disable_delete,
    revoke_integration_token_needs_its_client,
    integration_admin_needs_permissions,
    integration_admin_mistakes,
    jwks_verifies_tokens,
    signing_key_rotation,
);
