//! The Admin service: who may call it, and clear errors for admin mistakes.

use crate::on_both_backends;
use crate::support::*;
use identityd::api::pb;
use identityd::domain::clock::Clock;
use tonic::Code;

fn user(username: &str, roles: &[&str]) -> pb::CreateUserRequest {
    pb::CreateUserRequest {
        username: username.into(),
        roles: roles.iter().map(|r| r.to_string()).collect(),
        ..Default::default()
    }
}

fn role(name: &str, permissions: &[&str]) -> pb::CreateRoleRequest {
    pb::CreateRoleRequest {
        name: name.into(),
        description: String::new(),
        permissions: permissions.iter().map(|p| p.to_string()).collect(),
    }
}

async fn admin_mistakes(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut admin = server.admin().await;

    admin
        .create_role(as_admin(&server, role("reader", &["orders:read"])))
        .await
        .expect("role");
    let created = admin
        .create_user(as_admin(
            &server,
            pb::CreateUserRequest {
                email: "Alice@Example.com".into(),
                ..user("alice", &["reader"])
            },
        ))
        .await
        .expect("user")
        .into_inner();
    assert_eq!(
        (created.email.as_str(), created.active, created.api_access),
        ("alice@example.com", true, false)
    );

    assert_status(
        admin
            .create_user(as_admin(&server, user("alice", &[])))
            .await,
        Code::AlreadyExists,
        "user 'alice'",
    );
    assert_status(
        admin
            .create_user(as_admin(
                &server,
                pb::CreateUserRequest {
                    email: "ALICE@example.com".into(),
                    ..user("alice2", &[])
                },
            ))
            .await,
        Code::AlreadyExists,
        "email",
    );
    assert_status(
        admin.create_user(as_admin(&server, user("", &[]))).await,
        Code::InvalidArgument,
        "username",
    );
    assert_status(
        admin.create_user(as_admin(&server, user("a:b", &[]))).await,
        Code::InvalidArgument,
        "username",
    );
    assert_status(
        admin
            .create_user(as_admin(&server, user("bob", &["nope"])))
            .await,
        Code::NotFound,
        "role 'nope'",
    );
    // Nothing of the failed user was kept.
    assert_status(
        admin
            .get_user(as_admin(
                &server,
                pb::GetUserRequest {
                    username: "bob".into(),
                },
            ))
            .await,
        Code::NotFound,
        "bob",
    );
    assert_status(
        admin
            .create_user(as_admin(
                &server,
                pb::CreateUserRequest {
                    email: "not-an-email".into(),
                    ..user("bob", &[])
                },
            ))
            .await,
        Code::InvalidArgument,
        "email",
    );

    assert_status(
        admin
            .create_role(as_admin(&server, role("reader", &[])))
            .await,
        Code::AlreadyExists,
        "role 'reader'",
    );
    assert_status(
        admin.create_role(as_admin(&server, role("", &[]))).await,
        Code::InvalidArgument,
        "name",
    );
    assert_status(
        admin
            .create_role(as_admin(&server, role("x", &["Orders:Read"])))
            .await,
        Code::InvalidArgument,
        "permissions",
    );
    assert_status(
        admin
            .create_role(as_admin(&server, role("x", &["a:b"; 257])))
            .await,
        Code::InvalidArgument,
        "at most 256",
    );
    assert_status(
        admin
            .set_role_permissions(as_admin(
                &server,
                pb::SetRolePermissionsRequest {
                    name: "admin".into(),
                    permissions: vec![],
                },
            ))
            .await,
        Code::FailedPrecondition,
        "built in",
    );
    assert_status(
        admin
            .delete_role(as_admin(
                &server,
                pb::DeleteRoleRequest {
                    name: "admin".into(),
                },
            ))
            .await,
        Code::FailedPrecondition,
        "built in",
    );
    assert_status(
        admin
            .delete_role(as_admin(
                &server,
                pb::DeleteRoleRequest {
                    name: "ghost".into(),
                },
            ))
            .await,
        Code::NotFound,
        "role 'ghost'",
    );
    assert_status(
        admin
            .assign_role(as_admin(
                &server,
                pb::AssignRoleRequest {
                    username: "alice".into(),
                    role: "ghost".into(),
                },
            ))
            .await,
        Code::NotFound,
        "role 'ghost'",
    );
    assert_status(
        admin
            .assign_role(as_admin(
                &server,
                pb::AssignRoleRequest {
                    username: "ghost".into(),
                    role: "reader".into(),
                },
            ))
            .await,
        Code::NotFound,
        "user 'ghost'",
    );
    assert_status(
        admin
            .set_api_access(as_admin(
                &server,
                pb::SetApiAccessRequest {
                    username: "ghost".into(),
                    enabled: true,
                },
            ))
            .await,
        Code::NotFound,
        "user 'ghost'",
    );
    admin
        .set_api_access(as_admin(
            &server,
            pb::SetApiAccessRequest {
                username: "alice".into(),
                enabled: true,
            },
        ))
        .await
        .expect("on");
    assert_status(
        admin
            .set_api_access(as_admin(
                &server,
                pb::SetApiAccessRequest {
                    username: "alice".into(),
                    enabled: true,
                },
            ))
            .await,
        Code::FailedPrecondition,
        "already on",
    );
    assert_status(
        admin
            .list_users(as_admin(
                &server,
                pb::ListUsersRequest {
                    page_size: 5000,
                    page_token: String::new(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "page_size",
    );
    assert_status(
        admin
            .list_users(as_admin(
                &server,
                pb::ListUsersRequest {
                    page_size: 0,
                    page_token: "!!".into(),
                },
            ))
            .await,
        Code::InvalidArgument,
        "page_token",
    );

    let roles = admin
        .list_roles(as_admin(&server, pb::ListRolesRequest {}))
        .await
        .expect("roles")
        .into_inner()
        .roles;
    let names: Vec<_> = roles.iter().map(|r| (r.name.as_str(), r.builtin)).collect();
    assert_eq!(names, [("admin", true), ("reader", false)]);
    assert!(roles[0].permissions.contains(&"users:write".to_string()));
    server.stop().await;
}

async fn admin_requires_staff_and_permission(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut admin = server.admin().await;
    admin
        .create_role(as_admin(&server, role("user-reader", &["users:read"])))
        .await
        .expect("role");
    let customer = server.user_with_roles("customer", &["admin"], false).await;
    let staff = server
        .user_with_roles("viewer", &["user-reader"], true)
        .await;

    assert_status(
        admin.list_users(pb::ListUsersRequest::default()).await,
        Code::Unauthenticated,
        "no credentials",
    );
    assert_status(
        admin
            .list_users(authed(
                "Basic Zm9vOmJhcg==",
                pb::ListUsersRequest::default(),
            ))
            .await,
        Code::Unauthenticated,
        "not valid",
    );
    assert_status(
        admin
            .list_users(authed(&customer, pb::ListUsersRequest::default()))
            .await,
        Code::PermissionDenied,
        "staff",
    );
    admin
        .list_users(authed(&staff, pb::ListUsersRequest::default()))
        .await
        .expect("staff with users:read");
    assert_status(
        admin.create_user(authed(&staff, user("x", &[]))).await,
        Code::PermissionDenied,
        "users:write",
    );
    assert_status(
        admin
            .list_roles(authed(&staff, pb::ListRolesRequest {}))
            .await,
        Code::PermissionDenied,
        "roles:read",
    );

    // Two authorization values are ambiguous and refused.
    let mut twice = authed(&staff, pb::ListUsersRequest::default());
    twice
        .metadata_mut()
        .append("authorization", server.admin_auth.parse().expect("ascii"));
    assert_status(
        admin.list_users(twice).await,
        Code::Unauthenticated,
        "more than one",
    );
    server.stop().await;
}

async fn list_users_pages(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut admin = server.admin().await;
    for i in 0..7 {
        admin
            .create_user(as_admin(&server, user(&format!("user{i}"), &[])))
            .await
            .expect("user");
    }
    let mut seen = Vec::new();
    let mut token = String::new();
    loop {
        let page = admin
            .list_users(as_admin(
                &server,
                pb::ListUsersRequest {
                    page_size: 3,
                    page_token: token,
                },
            ))
            .await
            .expect("page")
            .into_inner();
        assert!(page.users.len() <= 3);
        seen.extend(page.users.into_iter().map(|u| u.username));
        if page.next_page_token.is_empty() {
            break;
        }
        token = page.next_page_token;
    }
    let mut expected: Vec<String> = (0..7).map(|i| format!("user{i}")).collect();
    expected.insert(0, "admin".into());
    assert_eq!(seen, expected);
    let admin_user = admin
        .get_user(as_admin(
            &server,
            pb::GetUserRequest {
                username: "admin".into(),
            },
        ))
        .await
        .expect("admin")
        .into_inner();
    assert!(admin_user.is_staff && admin_user.api_access);
    // Times come from the injected clock.
    assert_eq!(admin_user.created_at, server.clock.now());
    assert_eq!(admin_user.roles, ["admin"]);
    server.stop().await;
}

/// Whoever hands out administration through a role or an integration must hold it: a
/// staff user with `users:write`, `roles:write` and `integrations:write` cannot mint
/// `keys:write`, nor make himself an admin. Business permissions are theirs to give.
async fn administration_is_not_handed_out_by_those_without_it(backend: Backend) {
    let server = TestServer::start(backend).await;
    let mut admin = server.admin().await;
    let ops_permissions = ["users:write", "roles:write", "integrations:write"];
    admin
        .create_role(as_admin(&server, role("ops", &ops_permissions)))
        .await
        .expect("role");
    let ops = server.user_with_roles("ops", &["ops"], true).await;

    let denied = [
        admin
            .create_integration(authed(
                &ops,
                pb::CreateIntegrationRequest {
                    name: "sneaky".into(),
                    permissions: vec!["keys:write".into()],
                },
            ))
            .await
            .map(|_| ()),
        admin
            .create_role(authed(&ops, role("sneaky", &["integrations:*"])))
            .await
            .map(|_| ()),
        admin
            .set_role_permissions(authed(
                &ops,
                pb::SetRolePermissionsRequest {
                    name: "ops".into(),
                    permissions: vec!["users:read".into()],
                },
            ))
            .await
            .map(|_| ()),
        admin
            .assign_role(authed(
                &ops,
                pb::AssignRoleRequest {
                    username: "ops".into(),
                    role: "admin".into(),
                },
            ))
            .await
            .map(|_| ()),
    ];
    for result in denied {
        assert_status(result, Code::PermissionDenied, "missing permission");
    }
    // What ops holds, and business permissions, it may give.
    admin
        .create_role(authed(&ops, role("clerks", &["orders:*", "users:write"])))
        .await
        .expect("business role");
    admin
        .create_integration(authed(
            &ops,
            pb::CreateIntegrationRequest {
                name: "billing".into(),
                permissions: vec!["orders:read".into()],
            },
        ))
        .await
        .expect("business integration");
    server.stop().await;
}

on_both_backends!(
    admin_mistakes,
    admin_requires_staff_and_permission,
    list_users_pages,
    administration_is_not_handed_out_by_those_without_it
);
