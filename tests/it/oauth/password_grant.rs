//! The password grant: tokens it issues, login by email, its RFC 6749 errors, and the
//! password rules of SetUserPassword.

use crate::oauth_support::*;
use crate::on_both_backends;
use crate::support::*;
use identityd::api::pb;
use identityd::domain::clock::Clock;
use serde_json::Value;
use tonic::Code;

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

on_both_backends!(
    password_login_issues_tokens,
    login_by_email,
    password_login_errors,
    set_user_password_rules,
);
