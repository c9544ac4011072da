//! Integrations: the password grant through a confidential client, the client_credentials
//! grant, secret rotation, disabling and deleting, revocation, and their administration.

use crate::oauth_support::*;
use crate::on_both_backends;
use crate::support::*;
use identityd::api::pb;
use identityd::domain::clock::Clock;
use tonic::Code;

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
            ..Default::default()
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
            ..Default::default()
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

    // Only Bearer takes an integration's token; JWT is for users' tokens.
    let allowed = assert_bearer_only(
        &server,
        &t.access_token,
        "orders:read",
        (200, "ok"),
        "integration token",
    )
    .await;
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
            "Bearer",
            "access_token",
            sid.as_str(),
            now + ACCESS_TTL
        )
    );
    assert!(!p.is_staff);
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
    assert_bearer_only(
        &server,
        &t.access_token,
        "orders:read",
        (403, "missing_permission"),
        "narrowed",
    )
    .await;
    assert_bearer_only(
        &server,
        &t.access_token,
        "catalog:read",
        (200, "ok"),
        "granted",
    )
    .await;

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
    assert_bearer_refused(
        &server,
        &old.access_token,
        "revoked",
        "issued before rotation",
    )
    .await;
    let current = client_token(&server, &client_id, &new_secret)
        .await
        .expect("the new secret works");
    assert_bearer_only(
        &server,
        &current.access_token,
        "orders:read",
        (200, "ok"),
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
    assert_bearer_refused(&server, &current.access_token, "revoked", "disabled").await;
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
    assert_bearer_only(
        &server,
        &again.access_token,
        "orders:read",
        (200, "ok"),
        "re-enabled",
    )
    .await;

    admin
        .delete_integration(as_admin(
            &server,
            pb::DeleteIntegrationRequest {
                client_id: client_id.clone(),
            },
        ))
        .await
        .expect("delete");
    assert_bearer_refused(&server, &again.access_token, "revoked", "deleted").await;
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
        ..Default::default()
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
    assert_bearer_only(
        &server,
        &t.access_token,
        "orders:read",
        (200, "ok"),
        "after refused revocations",
    )
    .await;

    revoke(&server, request(&billing.client_id, &secret))
        .await
        .expect("revoke with the integration's credentials");
    assert_bearer_refused(&server, &t.access_token, "revoked", "revoked").await;
    let next = client_token(&server, &billing.client_id, &secret)
        .await
        .expect("a new token");
    assert_bearer_only(
        &server,
        &next.access_token,
        "orders:read",
        (200, "ok"),
        "new token",
    )
    .await;
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

on_both_backends!(
    password_grant_through_an_integration,
    client_credentials_flow,
    integration_secret_rotation_disable_delete,
    revoke_integration_token_needs_its_client,
    integration_admin_needs_permissions,
    integration_admin_mistakes,
);
