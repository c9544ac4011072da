//! Staff and customers: a user is staff, a customer, or both; the principal says which;
//! only staff call Admin, while customers log in and are checked like anyone else.

use crate::oauth_support::*;
use crate::on_both_backends;
use crate::support::*;
use identityd::api::pb;
use tonic::Code;

/// A CreateUser request with the two flags.
fn flagged(username: &str, is_staff: bool, is_customer: Option<bool>) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        username: username.into(),
        is_staff,
        is_customer,
        ..Default::default()
    }
}

/// The (is_staff, is_customer) flags of a user as GetUser shows them.
async fn flags(server: &TestServer, username: &str) -> (bool, bool) {
    let user = get_user(server, username).await.expect("get user");
    (user.is_staff, user.is_customer)
}

/// An UpdateUser request changing the two flags.
fn reflag(
    username: &str,
    is_staff: Option<bool>,
    is_customer: Option<bool>,
) -> pb::UpdateUserRequest {
    pb::UpdateUserRequest {
        username: username.into(),
        is_staff,
        is_customer,
        ..Default::default()
    }
}

/// ListUsers as `authorization`.
async fn list_users_as(
    server: &TestServer,
    authorization: &str,
) -> Result<pb::ListUsersResponse, tonic::Status> {
    let request = pb::ListUsersRequest::default();
    admin_call(server, authorization, request, async |a, r| {
        a.list_users(r).await
    })
    .await
}

/// CreateUser: an unset customer flag is the opposite of the staff flag; staff may be
/// customers too; a user who is neither is refused. UpdateUser may not leave a user
/// neither, and then changes nothing.
async fn every_user_is_staff_or_customer(backend: Backend) {
    let server = TestServer::start(backend).await;
    let created = [
        ("cust", false, None, (false, true)),
        ("staff", true, None, (true, false)),
        ("both", true, Some(true), (true, true)),
        ("cust2", false, Some(true), (false, true)),
        ("staff2", true, Some(false), (true, false)),
    ];
    for (username, is_staff, is_customer, expected) in created {
        let user = create_user(&server, flagged(username, is_staff, is_customer)).await;
        assert_eq!((user.is_staff, user.is_customer), expected, "{username}");
        assert_eq!(flags(&server, username).await, expected, "{username}");
    }
    let neither = server
        .admin()
        .await
        .create_user(as_admin(&server, flagged("neither", false, Some(false))))
        .await;
    assert_status(neither, Code::InvalidArgument, "");
    assert_status(get_user(&server, "neither").await, Code::NotFound, "");

    // Leaving a user neither staff nor customer is refused, and changes nothing.
    let refused = [
        reflag("cust", None, Some(false)),
        reflag("staff", Some(false), None),
        reflag("both", Some(false), Some(false)),
        pb::UpdateUserRequest {
            email: Some("cust@example.com".into()),
            ..reflag("cust", Some(false), Some(false))
        },
    ];
    for request in refused {
        let username = request.username.clone();
        let before = get_user(&server, &username).await.expect("before");
        assert_status(
            update_user(&server, request).await,
            Code::FailedPrecondition,
            "",
        );
        assert_eq!(get_user(&server, &username).await.expect("after"), before);
    }
    // Either flag may go while the other stays.
    let changed = update_user(&server, reflag("both", Some(false), None))
        .await
        .expect("both becomes a customer");
    assert_eq!((changed.is_staff, changed.is_customer), (false, true));
    let swapped = update_user(&server, reflag("staff", Some(false), Some(true)))
        .await
        .expect("staff becomes a customer");
    assert_eq!((swapped.is_staff, swapped.is_customer), (false, true));
    assert_eq!(flags(&server, "staff").await, (false, true));
    let listed = list_users_as(&server, &server.admin_auth)
        .await
        .expect("list users");
    let cust = listed
        .users
        .iter()
        .find(|u| u.username == "cust")
        .expect("cust listed");
    assert_eq!((cust.is_staff, cust.is_customer), (false, true));
    server.stop().await;
}

/// The principal reports both flags, from an API token and from an access token; a
/// customer logs in with a password and is checked like anyone else.
async fn principal_reports_staff_and_customer(backend: Backend) {
    let server = TestServer::start(backend).await;
    create_role(&server, "reader", &["orders:read"]).await;
    for (username, is_staff, is_customer) in [
        ("cust", false, None),
        ("staff", true, None),
        ("both", true, Some(true)),
    ] {
        create_user(
            &server,
            pb::CreateUserRequest {
                roles: vec!["reader".into()],
                ..flagged(username, is_staff, is_customer)
            },
        )
        .await;
        set_password(&server, username, PASSWORD)
            .await
            .expect("password");
    }
    let expected = [
        ("cust", (false, true)),
        ("staff", (true, false)),
        ("both", (true, true)),
    ];
    for (username, flags) in expected {
        let api = basic(username, &server.enable_api_access(username).await);
        let tokens = login(&server, username, PASSWORD).await;
        for authorization in [api, jwt(&tokens.access_token)] {
            let authn = authenticate(&server, &authorization).await;
            assert_eq!((authn.http_status, authn.reason.as_str()), (200, "ok"));
            let p = authn.principal.expect("principal");
            assert_eq!((p.is_staff, p.is_customer), flags, "{username}: {p:?}");
            assert_verdict(
                &server.check(&authorization, &["orders:read"]).await,
                200,
                "ok",
            );
            let denied = server.check(&authorization, &["orders:write"]).await;
            assert_verdict(&denied, 403, "missing_permission");
            let p = denied.principal.expect("principal on 403");
            assert_eq!((p.is_staff, p.is_customer), flags, "{username}: {p:?}");
        }
    }
    server.stop().await;
}

/// Only staff call Admin: a customer holding the admin role is refused, becomes able
/// on the next call once made staff, and is refused again once it is not; staff who are
/// customers too are let in.
async fn only_staff_call_admin(backend: Backend) {
    let server = TestServer::start(backend).await;
    let customer = server.user_with_roles("cust", &["admin"], false).await;
    set_password(&server, "cust", PASSWORD)
        .await
        .expect("password");
    let access = jwt(&login(&server, "cust", PASSWORD).await.access_token);
    for authorization in [&customer, &access] {
        assert_status(
            list_users_as(&server, authorization).await,
            Code::PermissionDenied,
            "staff",
        );
        // A customer's credential is checked like any other.
        assert_verdict(
            &server.check(authorization, &["users:read"]).await,
            200,
            "ok",
        );
    }

    update_user(&server, reflag("cust", Some(true), None))
        .await
        .expect("make staff");
    for authorization in [&customer, &access] {
        list_users_as(&server, authorization)
            .await
            .expect("staff and customer with the admin role");
    }
    update_user(&server, reflag("cust", Some(false), None))
        .await
        .expect("no longer staff");
    for authorization in [&customer, &access] {
        assert_status(
            list_users_as(&server, authorization).await,
            Code::PermissionDenied,
            "staff",
        );
    }

    // Created staff and customer at once.
    create_role(&server, "user-reader", &["users:read"]).await;
    create_user(
        &server,
        pb::CreateUserRequest {
            roles: vec!["user-reader".into()],
            ..flagged("both", true, Some(true))
        },
    )
    .await;
    let both = basic("both", &server.enable_api_access("both").await);
    list_users_as(&server, &both)
        .await
        .expect("staff who is a customer too");
    server.stop().await;
}

on_both_backends!(
    every_user_is_staff_or_customer,
    principal_reports_staff_and_customer,
    only_staff_call_admin,
);
