//! Refresh tokens: rotation and reuse detection, the CSRF check, the refresh_token grant,
//! concurrent refreshes, and access and refresh token expiry.

use crate::oauth_support::*;
use crate::on_both_backends;
use crate::support::*;
use identityd::api::pb;
use identityd::domain::clock::Clock;
use tonic::Code;

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
    // Nor is a refresh token an access token: a known kind of secret under a scheme
    // that does not take it.
    assert_refused(
        &server,
        &second.refresh_token,
        "scheme_mismatch",
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
                ..Default::default()
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
                ..Default::default()
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

on_both_backends!(
    refresh_rotates_and_reuse_revokes_session,
    refresh_checks_csrf,
    refresh_grant_and_bad_refresh_tokens,
    parallel_refreshes_at_most_one_wins,
    access_and_refresh_expiry,
);
