//! OAuth scopes and non-expiring tokens: which scopes a grant may obtain, how they are
//! normalised, how a scoped token is narrowed at check time (`insufficient_scope` versus
//! `missing_permission`), narrowing on refresh, `no_expiry` tokens (`idt_nx_`), and the
//! 90-day regeneration deadline of `decrypt`.

use crate::oauth_support::*;
use crate::on_both_backends;
use crate::support::*;
use identityd::api::pb;
use identityd::domain::clock::Clock;
use tonic::{Code, Status};

/// What the order clerks of these tests hold: everything the `orders` scope needs.
const ORDER_CLERK: [&str; 2] = ["orders:*", "order_statuses:*"];
/// How long a `decrypt` non-expiring token lives before it must be regenerated.
const DECRYPT_TTL: i64 = 90 * 86_400;

/// Identity.RefreshToken (public client, no CSRF check) asking for `scope`.
async fn refresh_with_scope(
    server: &TestServer,
    refresh_token: &str,
    scope: &str,
) -> Result<pb::TokenResponse, Status> {
    let request = pb::RefreshTokenRequest {
        refresh_token: refresh_token.into(),
        scope: scope.into(),
        ..Default::default()
    };
    let mut identity = server.identity().await;
    let response = identity.refresh_token(request).await?;
    Ok(response.into_inner())
}

/// Asserts INVALID_ARGUMENT / `invalid_scope` with a message containing every needle.
#[track_caller]
fn assert_invalid_scope<T: std::fmt::Debug>(result: Result<T, Status>, needles: &[&str]) {
    let status = assert_oauth_error(result, Code::InvalidArgument, "invalid_scope");
    for needle in needles {
        assert!(
            status.message().contains(needle),
            "{:?} does not name {needle:?}",
            status.message()
        );
    }
}

/// Checks `token` for `permission` under `Bearer` and `JWT`: both must be 403
/// `insufficient_scope`, name the permission as missing, and carry the scheme's RFC 6750
/// challenge suggesting `scope`.
async fn assert_insufficient_scope(
    server: &TestServer,
    token: &str,
    permission: &str,
    scope: &str,
    what: &str,
) {
    for (scheme, header) in [("Bearer", bearer(token)), ("JWT", jwt(token))] {
        let resp = server.check(&header, &[permission]).await;
        assert_verdict(&resp, 403, "insufficient_scope");
        assert_eq!(resp.missing, [permission], "{what} ({scheme})");
        assert_eq!(
            resp.www_authenticate,
            format!(r#"{scheme} realm="identityd", error="insufficient_scope", scope="{scope}""#),
            "{what} ({scheme})"
        );
        let principal = resp.principal.expect("principal on 403");
        assert_eq!(principal.scheme, scheme, "{what}");
    }
}

/// A non-expiring token is checked under `Bearer` only.
async fn check_nx(
    server: &TestServer,
    token: &str,
    permission: &str,
) -> pb::CheckPermissionResponse {
    server.check(&bearer(token), &[permission]).await
}

/// Asserts a refused non-expiring token: 401 `reason` with the Bearer `invalid_token`
/// challenge, from both CheckPermission and Authenticate.
async fn assert_nx_refused(server: &TestServer, token: &str, reason: &str, what: &str) {
    let checked = check_nx(server, token, "orders:read").await;
    assert_verdict(&checked, 401, reason);
    assert!(checked.principal.is_none(), "{what}: {checked:?}");
    let authn = authenticate(server, &bearer(token)).await;
    assert_eq!(
        (authn.http_status, authn.reason.as_str()),
        (401, reason),
        "{what}: {authn:?}"
    );
    for challenge in [&checked.www_authenticate, &authn.www_authenticate] {
        assert_eq!(
            challenge, r#"Bearer realm="identityd", error="invalid_token""#,
            "{what}"
        );
    }
}

/// Asserts the shape of a `no_expiry` grant's response: an opaque token, no refresh
/// token, and the normalised scope.
#[track_caller]
fn assert_non_expiring(tokens: &pb::TokenResponse, expires_in: i64, scope: &str) {
    assert!(
        tokens.access_token.starts_with("idt_nx_"),
        "{:?}",
        tokens.access_token
    );
    assert_eq!(
        (
            tokens.refresh_token.as_str(),
            tokens.csrf_token.as_str(),
            tokens.refresh_expires_in
        ),
        ("", "", 0),
        "no refresh token with a non-expiring token"
    );
    assert_eq!(
        (tokens.token_type.as_str(), tokens.expires_in),
        ("Bearer", expires_in)
    );
    assert_eq!(tokens.scope, scope);
    assert!(!tokens.session_id.is_empty());
}

// ---------------------------------------------------------------------------------------
// Obtaining scopes

/// A scope is refused with `invalid_scope` naming it when it is unknown, when the user
/// lacks what it needs, when there are too many or when it is not a scope name at all;
/// a scope parameter over 4 KiB is an `invalid_request`.
async fn invalid_scopes_are_refused_by_name(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "carol", &ORDER_CLERK).await;

    // `catalog` needs products:*, categories:* …; the first she lacks is named.
    assert_invalid_scope(
        try_login_with_scope(&server, "carol", "catalog").await,
        &["catalog", "categories:read"],
    );
    assert_invalid_scope(
        try_login_with_scope(&server, "carol", "orders catalog").await,
        &["catalog"],
    );
    assert_invalid_scope(
        try_login_with_scope(&server, "carol", "bogus").await,
        &["bogus"],
    );
    assert_invalid_scope(
        try_login_with_scope(&server, "carol", "orders bogus").await,
        &["bogus"],
    );
    assert_invalid_scope(
        try_login_with_scope(&server, "carol", "orders;drop").await,
        &["orders;drop"],
    );
    // 32 names (duplicates count) are fine; 33 are not.
    let names = |n: usize| vec!["read_orders"; n].join(" ");
    let at_limit = login_with_scope(&server, "carol", &names(32)).await;
    assert_eq!(at_limit.scope, "read_orders");
    assert_invalid_scope(
        try_login_with_scope(&server, "carol", &names(33)).await,
        &["32"],
    );
    // A long unknown name is refused without being echoed in full.
    let status = assert_oauth_error(
        try_login_with_scope(&server, "carol", &"x".repeat(4000)).await,
        Code::InvalidArgument,
        "invalid_scope",
    );
    assert!(status.message().len() < 200, "{:?}", status.message());
    // Too long to read at all.
    let long = "a".repeat(5000);
    assert_oauth_error(
        try_login_with_scope(&server, "carol", &long).await,
        Code::InvalidArgument,
        "invalid_request",
    );
    // Refusals open no session: a plain login still works.
    assert_allowed(
        &server,
        &login(&server, "carol", PASSWORD).await.access_token,
        "orders:write",
        "after refusals",
    )
    .await;
    server.stop().await;
}

/// Granted scopes are normalised (deduplicated, superseded read scopes dropped, sorted)
/// in the response and in the token's `scope` claim; an empty or blank scope parameter
/// is an unscoped token without a `scope` claim.
async fn scopes_are_normalised_and_carried_in_the_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "carol", &ORDER_CLERK).await;

    for (asked, granted) in [
        ("read_orders orders", "orders"),
        ("orders read_orders orders", "orders"),
        ("  orders\tread_orders ", "orders"),
        ("read_orders", "read_orders"),
        ("no_expiry orders", "no_expiry orders"),
    ] {
        let tokens = login_with_scope(&server, "carol", asked).await;
        assert_eq!(tokens.scope, granted, "asked {asked:?}");
    }

    let scoped = login_with_scope(&server, "carol", "read_orders").await;
    assert_eq!(
        (scoped.expires_in, scoped.refresh_expires_in),
        (ACCESS_TTL, REFRESH_TTL),
        "a scoped login is an ordinary login"
    );
    assert!(scoped.refresh_token.starts_with("idt_rt_"));
    let claims = claims_of(&scoped.access_token);
    assert_eq!(claims["scope"], "read_orders", "{claims}");

    for blank in ["", " ", "\t "] {
        let unscoped = login_with_scope(&server, "carol", blank).await;
        assert_eq!(unscoped.scope, "", "asked {blank:?}");
        let claims = claims_of(&unscoped.access_token);
        assert!(claims.get("scope").is_none(), "asked {blank:?}: {claims}");
        assert_allowed(&server, &unscoped.access_token, "orders:write", "unscoped").await;
    }
    server.stop().await;
}

/// An integration obtains scopes by its own permissions: every permission a scope
/// names is needed to obtain it.
async fn integration_scopes_follow_its_permissions(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (reader, reader_secret) =
        integration(&server, "reader", &["orders:read", "order_statuses:read"]).await;
    let (partial, partial_secret) = integration(&server, "partial", &["orders:read"]).await;
    let with_scope = |client_id: &str, secret: &str, scope: &str| pb::IssueTokenRequest {
        scope: scope.into(),
        ..client_grant(client_id, secret)
    };

    let tokens = issue(
        &server,
        with_scope(&reader.client_id, &reader_secret, "read_orders"),
    )
    .await
    .expect("read_orders for an integration holding what it needs");
    assert_eq!(tokens.scope, "read_orders");
    assert_eq!(claims_of(&tokens.access_token)["scope"], "read_orders");
    assert_bearer_only(
        &server,
        &tokens.access_token,
        "orders:read",
        (200, "ok"),
        "integration",
    )
    .await;
    // `orders` needs the write permissions too; the first it lacks is named.
    assert_invalid_scope(
        issue(
            &server,
            with_scope(&reader.client_id, &reader_secret, "orders"),
        )
        .await,
        &["orders", "order_statuses:write"],
    );
    // `read_orders` needs order_statuses:read as well as orders:read.
    assert_invalid_scope(
        issue(
            &server,
            with_scope(&partial.client_id, &partial_secret, "read_orders"),
        )
        .await,
        &["read_orders", "order_statuses:read"],
    );
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Checking scoped tokens

/// A `read_orders` token may do what both its scope and its user allow: more than the
/// scope is `insufficient_scope` with an RFC 6750 challenge, more than the user holds is
/// `missing_permission`. The same user's unscoped token has all of the user's
/// permissions.
async fn scoped_token_is_narrowed_to_its_scopes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let carol = user_with_password(&server, "carol", &ORDER_CLERK).await;
    let scoped = login_with_scope(&server, "carol", "read_orders").await;
    let unscoped = login(&server, "carol", PASSWORD).await;
    let t = &scoped.access_token;

    assert_allowed(&server, t, "orders:read", "in scope and held").await;
    assert_allowed(&server, t, "order_statuses:read", "in scope and held").await;
    assert_insufficient_scope(&server, t, "orders:write", "orders", "held, out of scope").await;
    assert_token(
        &server,
        t,
        "customers:read",
        403,
        "missing_permission",
        "neither held nor in scope",
    )
    .await;
    // One permission the user lacks among several: the user's shortfall comes first.
    let both = server
        .check(&bearer(t), &["orders:write", "customers:read"])
        .await;
    assert_verdict(&both, 403, "missing_permission");
    assert_eq!(both.missing, ["customers:read"]);
    assert!(both.www_authenticate.is_empty(), "{both:?}");

    assert_allowed(&server, &unscoped.access_token, "orders:write", "unscoped").await;

    for header in [bearer(t), jwt(t)] {
        let authn = authenticate(&server, &header).await;
        assert_eq!((authn.http_status, authn.reason.as_str()), (200, "ok"));
        let p = authn.principal.expect("principal");
        assert_eq!(
            (p.id.as_str(), p.credential_kind.as_str(), p.scopes.clone()),
            (
                carol.id.as_str(),
                "access_token",
                vec!["read_orders".into()]
            )
        );
        assert_eq!(authn.permissions, ["order_statuses:read", "orders:read"]);
    }
    let authn = authenticate(&server, &bearer(&unscoped.access_token)).await;
    let p = authn.principal.expect("principal");
    assert!(p.scopes.is_empty(), "{p:?}");
    assert_eq!(authn.permissions, ["order_statuses:*", "orders:*"]);
    server.stop().await;
}

/// A scoped token never grants more than its user holds now: taking the role away, or
/// changing the role's permissions, shows on the very next check although the token's
/// entry was cached.
async fn losing_a_role_narrows_a_scoped_token_at_once(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "carol", &ORDER_CLERK).await;
    user_with_password(&server, "dave", &ORDER_CLERK).await;
    let carols = login_with_scope(&server, "carol", "read_orders").await;
    let daves = login_with_scope(&server, "dave", "read_orders").await;

    for t in [&carols.access_token, &daves.access_token] {
        assert_allowed(&server, t, "orders:read", "warm").await;
    }
    assert_allowed_from_cache(&server, &bearer(&carols.access_token), "orders:read").await;

    unassign_role(&server, "carol", "carol-role").await;
    assert_token(
        &server,
        &carols.access_token,
        "orders:read",
        403,
        "missing_permission",
        "role taken away",
    )
    .await;
    let authn = authenticate(&server, &bearer(&carols.access_token)).await;
    assert!(authn.permissions.is_empty(), "{authn:?}");

    set_role_permissions(&server, "dave-role", &["customers:read"]).await;
    assert_token(
        &server,
        &daves.access_token,
        "orders:read",
        403,
        "missing_permission",
        "role changed",
    )
    .await;
    // What the role now grants is outside the token's scope.
    assert_insufficient_scope(
        &server,
        &daves.access_token,
        "customers:read",
        "read_people",
        "held, out of scope",
    )
    .await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Refreshing scoped sessions

/// A refresh may narrow the session's scopes (and the narrowing sticks), never widen
/// them, and never turn the session into a non-expiring token. A refused refresh does
/// not use up the refresh token.
async fn refresh_narrows_scopes_and_never_widens(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "carol", &ORDER_CLERK).await;
    let first = login_with_scope(&server, "carol", "orders").await;
    assert_eq!(first.scope, "orders");
    // Checked once, so it is cached with its wider scope.
    assert_allowed(
        &server,
        &first.access_token,
        "orders:write",
        "before narrowing",
    )
    .await;

    let narrowed = refresh_with_scope(&server, &first.refresh_token, "read_orders")
        .await
        .expect("narrow to read_orders");
    assert_eq!(narrowed.scope, "read_orders");
    assert_eq!(narrowed.session_id, first.session_id);
    assert_eq!(claims_of(&narrowed.access_token)["scope"], "read_orders");
    assert_allowed(&server, &narrowed.access_token, "orders:read", "narrowed").await;
    assert_insufficient_scope(
        &server,
        &narrowed.access_token,
        "orders:write",
        "orders",
        "narrowed",
    )
    .await;

    let kept = refresh_with_scope(&server, &narrowed.refresh_token, "")
        .await
        .expect("refresh keeping the scopes");
    assert_eq!(kept.scope, "read_orders", "narrowing is kept");
    assert_eq!(claims_of(&kept.access_token)["scope"], "read_orders");

    for (wider, named) in [
        ("orders", "orders"),
        ("catalog", "catalog"),
        ("read_orders orders", "orders"),
        ("no_expiry", "no_expiry"),
        ("read_orders no_expiry", "no_expiry"),
        ("bogus", "bogus"),
    ] {
        assert_invalid_scope(
            refresh_with_scope(&server, &kept.refresh_token, wider).await,
            &[named],
        );
    }
    // The same through IssueToken's refresh_token grant.
    let grant = pb::IssueTokenRequest {
        grant_type: "refresh_token".into(),
        refresh_token: kept.refresh_token.clone(),
        scope: "orders".into(),
        ..Default::default()
    };
    assert_invalid_scope(issue(&server, grant).await, &["orders"]);
    assert_oauth_error(
        refresh_with_scope(&server, &kept.refresh_token, &"a".repeat(5000)).await,
        Code::InvalidArgument,
        "invalid_request",
    );
    let after = refresh_with_scope(&server, &kept.refresh_token, "read_orders")
        .await
        .expect("the refused refreshes did not use up the refresh token");
    assert_eq!(after.scope, "read_orders");
    // The session's scopes bound every token of it, the earlier wider one included,
    // from the next check on (cached or not).
    assert_allowed(
        &server,
        &first.access_token,
        "orders:read",
        "the session lives",
    )
    .await;
    assert_insufficient_scope(
        &server,
        &first.access_token,
        "orders:write",
        "orders",
        "narrowed with its session",
    )
    .await;

    // An unscoped session may narrow to what the user could obtain, but not to
    // `no_expiry` or to scopes the user cannot obtain.
    let unscoped = login(&server, "carol", PASSWORD).await;
    assert_invalid_scope(
        refresh_with_scope(&server, &unscoped.refresh_token, "no_expiry").await,
        &["no_expiry"],
    );
    assert_invalid_scope(
        refresh_with_scope(&server, &unscoped.refresh_token, "catalog").await,
        &["catalog"],
    );
    let narrowed = refresh_with_scope(&server, &unscoped.refresh_token, "read_orders")
        .await
        .expect("an unscoped session narrows");
    assert_eq!(narrowed.scope, "read_orders");
    assert!(narrowed.refresh_token.starts_with("idt_rt_"));
    assert_insufficient_scope(
        &server,
        &narrowed.access_token,
        "orders:write",
        "orders",
        "narrowed from unscoped",
    )
    .await;
    server.stop().await;
}

// ---------------------------------------------------------------------------------------
// Non-expiring tokens

/// `no_expiry` yields an opaque `idt_nx_` token without refresh token that works under
/// Bearer (not JWT), for its scopes, for ever, until it is revoked.
async fn no_expiry_token_never_expires_and_is_revocable(backend: Backend) {
    let server = TestServer::start(backend).await;
    let carol = user_with_password(&server, "carol", &ORDER_CLERK).await;
    let tokens = login_with_scope(&server, "carol", "orders no_expiry").await;
    assert_non_expiring(&tokens, 0, "no_expiry orders");
    let t = &tokens.access_token;

    let allowed = check_nx(&server, t, "orders:write").await;
    assert_verdict(&allowed, 200, "ok");
    let p = allowed.principal.expect("principal");
    assert_eq!(
        (p.scheme.as_str(), p.credential_kind.as_str()),
        ("Bearer", "non_expiring_token")
    );
    assert!(
        !p.credential_id.is_empty() && !p.credential_id.contains(&t["idt_nx_".len()..]),
        "credential_id identifies without revealing: {:?}",
        p.credential_id
    );
    let out_of_scope = check_nx(&server, t, "customers:read").await;
    assert_verdict(&out_of_scope, 403, "missing_permission");

    let as_jwt = server.check(&jwt(t), &["orders:read"]).await;
    assert_verdict(&as_jwt, 401, "scheme_mismatch");
    assert_eq!(
        as_jwt.www_authenticate,
        r#"JWT realm="identityd", error="invalid_token""#
    );
    // A token of the right shape that was never issued.
    let forged = format!("idt_nx_{}", "A".repeat(43));
    assert_verdict(
        &check_nx(&server, &forged, "orders:read").await,
        401,
        "invalid_credentials",
    );

    // Well past every access and refresh lifetime.
    server.clock.advance(400 * 86_400);
    assert_verdict(&check_nx(&server, t, "orders:write").await, 200, "ok");
    let authn = authenticate(&server, &bearer(t)).await;
    assert_eq!((authn.http_status, authn.reason.as_str()), (200, "ok"));
    let p = authn.principal.expect("principal");
    assert_eq!(
        (
            p.id.as_str(),
            p.credential_kind.as_str(),
            p.expires_at,
            p.session_id.as_str()
        ),
        (
            carol.id.as_str(),
            "non_expiring_token",
            0,
            tokens.session_id.as_str()
        )
    );
    assert_eq!(p.scopes, ["no_expiry", "orders"]);
    assert_eq!(
        authn.permissions,
        [
            "order_statuses:read",
            "order_statuses:write",
            "orders:read",
            "orders:write"
        ]
    );

    revoke_plain(&server, t, "access_token")
        .await
        .expect("revoke");
    assert_nx_refused(&server, t, "revoked", "after RevokeToken").await;
    server.stop().await;
}

/// An integration's client_credentials grant with `no_expiry` yields a non-expiring
/// token too.
async fn client_credentials_no_expiry_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    let (reader, secret) =
        integration(&server, "reader", &["orders:read", "order_statuses:read"]).await;
    let request = pb::IssueTokenRequest {
        scope: "read_orders no_expiry".into(),
        ..client_grant(&reader.client_id, &secret)
    };
    let tokens = issue(&server, request).await.expect("client_credentials");
    assert_non_expiring(&tokens, 0, "no_expiry read_orders");

    server.clock.advance(400 * 86_400);
    let allowed = check_nx(&server, &tokens.access_token, "orders:read").await;
    assert_verdict(&allowed, 200, "ok");
    let p = allowed.principal.expect("principal");
    assert_eq!(
        (p.kind, p.id.as_str(), p.credential_kind.as_str()),
        (
            i32::from(pb::PrincipalKind::Integration),
            reader.id.as_str(),
            "non_expiring_token"
        )
    );
    assert_eq!(p.expires_at, 0);
    assert_verdict(
        &check_nx(&server, &tokens.access_token, "orders:write").await,
        403,
        "missing_permission",
    );
    server.stop().await;
}

/// `decrypt no_expiry`: the token must be regenerated 90 days after it was issued. It
/// works until the second before, and from the deadline on it is refused with
/// `regeneration_required`, even though its entry was cached a second earlier.
async fn decrypt_token_must_be_regenerated_after_90_days(backend: Backend) {
    let server = TestServer::start(backend).await;
    const DECRYPTER: [&str; 2] = ["credit_cards:decrypt", "order_payments:decrypt"];
    user_with_password(&server, "erin", &DECRYPTER).await;
    let issued_at = server.clock.now();
    let tokens = login_with_scope(&server, "erin", "decrypt no_expiry").await;
    assert_non_expiring(&tokens, DECRYPT_TTL, "decrypt no_expiry");
    let t = &tokens.access_token;

    let authn = authenticate(&server, &bearer(t)).await;
    assert_eq!((authn.http_status, authn.reason.as_str()), (200, "ok"));
    let p = authn.principal.expect("principal");
    assert_eq!(
        (p.credential_kind.as_str(), p.expires_at),
        ("non_expiring_token", issued_at + DECRYPT_TTL)
    );
    assert_eq!(p.scopes, ["decrypt", "no_expiry"]);
    assert_eq!(authn.permissions, DECRYPTER);

    server.clock.advance(DECRYPT_TTL - 1);
    assert_verdict(
        &check_nx(&server, t, "credit_cards:decrypt").await,
        200,
        "ok",
    );
    assert_allowed_from_cache(&server, &bearer(t), "order_payments:decrypt").await;

    server.clock.advance(1);
    assert_nx_refused(&server, t, "regeneration_required", "at the deadline").await;
    server.clock.advance(1);
    assert_nx_refused(&server, t, "regeneration_required", "after the deadline").await;

    // Regenerating means obtaining a new one.
    let fresh = login_with_scope(&server, "erin", "decrypt no_expiry").await;
    assert_non_expiring(&fresh, DECRYPT_TTL, "decrypt no_expiry");
    assert_verdict(
        &check_nx(&server, &fresh.access_token, "credit_cards:decrypt").await,
        200,
        "ok",
    );
    server.stop().await;
}

/// Disabling the owner ends a non-expiring token on the next check, cached or not, and
/// enabling the owner again does not bring it back.
async fn disabling_the_user_ends_a_non_expiring_token(backend: Backend) {
    let server = TestServer::start(backend).await;
    user_with_password(&server, "carol", &ORDER_CLERK).await;
    let tokens = login_with_scope(&server, "carol", "orders no_expiry").await;
    let t = &tokens.access_token;
    assert_verdict(&check_nx(&server, t, "orders:read").await, 200, "ok");

    set_user_active(&server, "carol", false).await;
    assert_nx_refused(&server, t, "revoked", "owner disabled").await;
    set_user_active(&server, "carol", true).await;
    assert_nx_refused(&server, t, "revoked", "owner enabled again").await;
    server.stop().await;
}

/// A scoped credential administers only within its scopes: an admin's `no_expiry`
/// token (which grants nothing) cannot call Admin, nor mint an unscoped API token.
async fn scoped_tokens_stay_within_their_scopes_everywhere(backend: Backend) {
    let server = TestServer::start(backend).await;
    set_password(&server, "admin", PASSWORD)
        .await
        .expect("admin password");
    let nx = login_with_scope(&server, "admin", "no_expiry").await;
    let auth = bearer(&nx.access_token);
    assert_verdict(
        &server.check(&auth, &["users:write"]).await,
        403,
        "insufficient_scope",
    );
    let created = server
        .admin()
        .await
        .create_user(authed(
            &auth,
            pb::CreateUserRequest {
                username: "mallory".into(),
                is_staff: true,
                roles: vec!["admin".into()],
                ..Default::default()
            },
        ))
        .await;
    assert_status(
        created,
        Code::PermissionDenied,
        "missing permission users:write",
    );
    let listed = server
        .admin()
        .await
        .get_route_policy(authed(&auth, pb::GetRoutePolicyRequest {}))
        .await;
    assert_status(
        listed,
        Code::PermissionDenied,
        "missing permission policy:read",
    );
    // Nor may a scoped token trade itself for an unscoped API token.
    server.user_with_role("clerk", "clerk", &ORDER_CLERK).await;
    set_password(&server, "clerk", PASSWORD)
        .await
        .expect("password");
    let read_orders = login_with_scope(&server, "clerk", "read_orders").await;
    let regenerated = server
        .identity()
        .await
        .regenerate_api_token(authed(
            &bearer(&read_orders.access_token),
            pb::RegenerateApiTokenRequest::default(),
        ))
        .await;
    assert_status(regenerated, Code::PermissionDenied, "scoped token");
    server.stop().await;
}

/// Narrowing on refresh through `supersedes` still needs what the narrower scope needs,
/// and a catalog whose superseding scope does not cover the superseded one is refused.
async fn narrowing_never_skips_what_a_scope_needs(backend: Backend) {
    let server = TestServer::start(backend).await;
    let builtin = include_str!("../../src/defaults/scope_catalog.txt");
    let widening = format!("{builtin}\nbig supersedes=small x:read\nsmall x:read x:write\n");
    assert_status(
        replace_catalog(&server, &widening, false).await,
        Code::InvalidArgument,
        "does not grant x:write",
    );
    let needy = format!(
        "{builtin}\nbig supersedes=small needs=secret:admin x:read\nsmall needs=secret:admin x:read\n"
    );
    replace_catalog(&server, &needy, false)
        .await
        .expect("catalog");
    user_with_password(&server, "u", &["x:read", "secret:admin"]).await;
    let big = login_with_scope(&server, "u", "big").await;
    // The user loses secret:admin: narrowing to `small` is refused, naming the need.
    set_role_permissions(&server, "u-role", &["x:read"]).await;
    assert_invalid_scope(
        refresh_with_scope(&server, &big.refresh_token, "small").await,
        &["small", "secret:admin"],
    );
    server.stop().await;
}

on_both_backends!(
    scoped_tokens_stay_within_their_scopes_everywhere,
    narrowing_never_skips_what_a_scope_needs,
    invalid_scopes_are_refused_by_name,
    scopes_are_normalised_and_carried_in_the_token,
    integration_scopes_follow_its_permissions,
    scoped_token_is_narrowed_to_its_scopes,
    losing_a_role_narrows_a_scoped_token_at_once,
    refresh_narrows_scopes_and_never_widens,
    no_expiry_token_never_expires_and_is_revocable,
    client_credentials_no_expiry_token,
    decrypt_token_must_be_regenerated_after_90_days,
    disabling_the_user_ends_a_non_expiring_token,
);
