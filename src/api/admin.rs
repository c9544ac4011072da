//! `identity.v1.Admin`: users, roles, API access, passwords, integrations, keys, the
//! scope catalog and route policy, and apps with their tokens. Every RPC authenticates the caller from its
//! `authorization` metadata and requires one permission before doing anything.

use super::metadata::authorization;
use super::pb::{self, admin_server};
use crate::domain::permissions::admin::{
    APPS_READ, APPS_WRITE, INTEGRATIONS_READ, INTEGRATIONS_WRITE, KEYS_READ, KEYS_WRITE,
    POLICY_READ, POLICY_WRITE, ROLES_READ, ROLES_WRITE, USERS_READ, USERS_WRITE,
};
use crate::domain::principal::Authenticated;
use crate::service::admin::{ActAs, AdminService, CreateUser, UpdateUser};
use crate::service::apps::UpdateApp;
use crate::service::documents::Documents;
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Serves `identity.v1.Admin`.
pub struct AdminApi {
    service: Arc<AdminService>,
    documents: Arc<Documents>,
}

impl AdminApi {
    /// Builds the service.
    pub fn new(service: Arc<AdminService>, documents: Arc<Documents>) -> Self {
        Self { service, documents }
    }

    /// Authenticates the caller and requires `permission`.
    async fn guard<T>(
        &self,
        request: &Request<T>,
        permission: &str,
    ) -> Result<Arc<Authenticated>, Status> {
        Ok(self
            .service
            .authorize(authorization(request)?, permission)
            .await?)
    }
}

type Reply<T> = Result<Response<T>, Status>;

/// Records who changed what; never a secret.
fn audit(caller: &Authenticated, action: &'static str, target: &str) {
    tracing::info!(by = %caller.principal.id, action, target, "admin change");
}

#[tonic::async_trait]
impl admin_server::Admin for AdminApi {
    #[tracing::instrument(skip_all)]
    async fn create_user(&self, request: Request<pb::CreateUserRequest>) -> Reply<pb::User> {
        let caller = self.guard(&request, USERS_WRITE).await?;
        let r = request.into_inner();
        let user = self
            .service
            .create_user(CreateUser {
                username: r.username,
                email: r.email,
                is_staff: r.is_staff,
                is_customer: r.is_customer,
                roles: r.roles,
            })
            .await?;
        audit(&caller, "create_user", &user.id);
        Ok(Response::new(user.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn get_user(&self, request: Request<pb::GetUserRequest>) -> Reply<pb::User> {
        self.guard(&request, USERS_READ).await?;
        let user = self.service.get_user(&request.get_ref().username).await?;
        Ok(Response::new(user.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn list_users(
        &self,
        request: Request<pb::ListUsersRequest>,
    ) -> Reply<pb::ListUsersResponse> {
        self.guard(&request, USERS_READ).await?;
        let r = request.get_ref();
        let page = self.service.list_users(r.page_size, &r.page_token).await?;
        Ok(Response::new(pb::ListUsersResponse {
            users: page.users.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_user(&self, request: Request<pb::UpdateUserRequest>) -> Reply<pb::User> {
        let caller = self.guard(&request, USERS_WRITE).await?;
        let r = request.into_inner();
        let user = self
            .service
            .update_user(UpdateUser {
                username: r.username,
                email: r.email,
                is_staff: r.is_staff,
                is_customer: r.is_customer,
                active: r.active,
            })
            .await?;
        audit(&caller, "update_user", &user.id);
        Ok(Response::new(user.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Reply<pb::DeleteUserResponse> {
        let caller = self.guard(&request, USERS_WRITE).await?;
        let username = &request.get_ref().username;
        self.service.delete_user(username).await?;
        audit(&caller, "delete_user", username);
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn set_api_access(
        &self,
        request: Request<pb::SetApiAccessRequest>,
    ) -> Reply<pb::SetApiAccessResponse> {
        let caller = self.guard(&request, USERS_WRITE).await?;
        let r = request.get_ref();
        if r.enabled {
            self.service
                .require_may_act_as(&caller, ActAs::User(&r.username))
                .await?;
        }
        let (user, token) = self.service.set_api_access(&r.username, r.enabled).await?;
        audit(
            &caller,
            if r.enabled {
                "api_access_on"
            } else {
                "api_access_off"
            },
            &user.id,
        );
        Ok(Response::new(pb::SetApiAccessResponse {
            user: Some(user.into()),
            api_token: token
                .map(|t| t.expose_secret().to_owned())
                .unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn assign_role(&self, request: Request<pb::AssignRoleRequest>) -> Reply<pb::User> {
        let caller = self.guard(&request, USERS_WRITE).await?;
        let r = request.get_ref();
        let role = self.service.get_role(&r.role).await?;
        AdminService::require_grantable(&caller, &role.permissions)?;
        let user = self
            .service
            .set_user_role(&r.username, &r.role, true)
            .await?;
        audit(&caller, "assign_role", &user.id);
        Ok(Response::new(user.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn unassign_role(&self, request: Request<pb::UnassignRoleRequest>) -> Reply<pb::User> {
        let caller = self.guard(&request, USERS_WRITE).await?;
        let r = request.get_ref();
        let user = self
            .service
            .set_user_role(&r.username, &r.role, false)
            .await?;
        audit(&caller, "unassign_role", &user.id);
        Ok(Response::new(user.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn create_role(&self, request: Request<pb::CreateRoleRequest>) -> Reply<pb::Role> {
        let caller = self.guard(&request, ROLES_WRITE).await?;
        let r = request.into_inner();
        AdminService::require_grantable(&caller, &r.permissions)?;
        let role = self
            .service
            .create_role(r.name, r.description, &r.permissions)
            .await?;
        audit(&caller, "create_role", &role.name);
        Ok(Response::new(role.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn get_role(&self, request: Request<pb::GetRoleRequest>) -> Reply<pb::Role> {
        self.guard(&request, ROLES_READ).await?;
        let role = self.service.get_role(&request.get_ref().name).await?;
        Ok(Response::new(role.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn list_roles(
        &self,
        request: Request<pb::ListRolesRequest>,
    ) -> Reply<pb::ListRolesResponse> {
        self.guard(&request, ROLES_READ).await?;
        let roles = self.service.list_roles().await?;
        Ok(Response::new(pb::ListRolesResponse {
            roles: roles.into_iter().map(Into::into).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn set_role_permissions(
        &self,
        request: Request<pb::SetRolePermissionsRequest>,
    ) -> Reply<pb::Role> {
        let caller = self.guard(&request, ROLES_WRITE).await?;
        let r = request.get_ref();
        AdminService::require_grantable(&caller, &r.permissions)?;
        let role = self
            .service
            .set_role_permissions(&r.name, &r.permissions)
            .await?;
        audit(&caller, "set_role_permissions", &role.name);
        Ok(Response::new(role.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_role(
        &self,
        request: Request<pb::DeleteRoleRequest>,
    ) -> Reply<pb::DeleteRoleResponse> {
        let caller = self.guard(&request, ROLES_WRITE).await?;
        let name = &request.get_ref().name;
        self.service.delete_role(name).await?;
        audit(&caller, "delete_role", name);
        Ok(Response::new(pb::DeleteRoleResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn set_user_password(
        &self,
        request: Request<pb::SetUserPasswordRequest>,
    ) -> Reply<pb::SetUserPasswordResponse> {
        let caller = self.guard(&request, USERS_WRITE).await?;
        let r = request.into_inner();
        self.service
            .require_may_act_as(&caller, ActAs::User(&r.username))
            .await?;
        let user = self
            .service
            .set_user_password(&r.username, SecretString::from(r.password))
            .await?;
        audit(&caller, "set_password", &user.id);
        Ok(Response::new(pb::SetUserPasswordResponse {
            user: Some(user.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_integration(
        &self,
        request: Request<pb::CreateIntegrationRequest>,
    ) -> Reply<pb::CreateIntegrationResponse> {
        let caller = self.guard(&request, INTEGRATIONS_WRITE).await?;
        let r = request.into_inner();
        AdminService::require_grantable(&caller, &r.permissions)?;
        let (integration, secret) = self
            .service
            .create_integration(r.name, &r.permissions)
            .await?;
        audit(&caller, "create_integration", &integration.id);
        Ok(Response::new(pb::CreateIntegrationResponse {
            integration: Some(integration.into()),
            client_secret: secret.expose_secret().to_owned(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn get_integration(
        &self,
        request: Request<pb::GetIntegrationRequest>,
    ) -> Reply<pb::Integration> {
        self.guard(&request, INTEGRATIONS_READ).await?;
        let integration = self
            .service
            .get_integration(&request.get_ref().client_id)
            .await?;
        Ok(Response::new(integration.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn list_integrations(
        &self,
        request: Request<pb::ListIntegrationsRequest>,
    ) -> Reply<pb::ListIntegrationsResponse> {
        self.guard(&request, INTEGRATIONS_READ).await?;
        let integrations = self.service.list_integrations().await?;
        Ok(Response::new(pb::ListIntegrationsResponse {
            integrations: integrations.into_iter().map(Into::into).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn rotate_integration_secret(
        &self,
        request: Request<pb::RotateIntegrationSecretRequest>,
    ) -> Reply<pb::RotateIntegrationSecretResponse> {
        let caller = self.guard(&request, INTEGRATIONS_WRITE).await?;
        let client_id = &request.get_ref().client_id;
        self.service
            .require_may_act_as(&caller, ActAs::Integration(client_id))
            .await?;
        let (integration, secret) = self.service.rotate_integration_secret(client_id).await?;
        audit(&caller, "rotate_integration_secret", &integration.id);
        Ok(Response::new(pb::RotateIntegrationSecretResponse {
            integration: Some(integration.into()),
            client_secret: secret.expose_secret().to_owned(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn set_integration_active(
        &self,
        request: Request<pb::SetIntegrationActiveRequest>,
    ) -> Reply<pb::Integration> {
        let caller = self.guard(&request, INTEGRATIONS_WRITE).await?;
        let r = request.get_ref();
        let integration = self
            .service
            .set_integration_active(&r.client_id, r.active)
            .await?;
        let action = if r.active {
            "enable_integration"
        } else {
            "disable_integration"
        };
        audit(&caller, action, &integration.id);
        Ok(Response::new(integration.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn set_integration_permissions(
        &self,
        request: Request<pb::SetIntegrationPermissionsRequest>,
    ) -> Reply<pb::Integration> {
        let caller = self.guard(&request, INTEGRATIONS_WRITE).await?;
        let r = request.get_ref();
        AdminService::require_grantable(&caller, &r.permissions)?;
        let integration = self
            .service
            .set_integration_permissions(&r.client_id, &r.permissions)
            .await?;
        audit(&caller, "set_integration_permissions", &integration.id);
        Ok(Response::new(integration.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_integration(
        &self,
        request: Request<pb::DeleteIntegrationRequest>,
    ) -> Reply<pb::DeleteIntegrationResponse> {
        let caller = self.guard(&request, INTEGRATIONS_WRITE).await?;
        let client_id = &request.get_ref().client_id;
        self.service.delete_integration(client_id).await?;
        audit(&caller, "delete_integration", client_id);
        Ok(Response::new(pb::DeleteIntegrationResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_signing_keys(
        &self,
        request: Request<pb::ListSigningKeysRequest>,
    ) -> Reply<pb::ListSigningKeysResponse> {
        self.guard(&request, KEYS_READ).await?;
        let keys = self.service.list_signing_keys().await?;
        Ok(Response::new(pb::ListSigningKeysResponse {
            keys: keys.into_iter().map(Into::into).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn rotate_signing_key(
        &self,
        request: Request<pb::RotateSigningKeyRequest>,
    ) -> Reply<pb::SigningKey> {
        let caller = self.guard(&request, KEYS_WRITE).await?;
        let key = self.service.rotate_signing_key().await?;
        audit(&caller, "rotate_signing_key", &key.kid);
        Ok(Response::new(key.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn get_scope_catalog(
        &self,
        request: Request<pb::GetScopeCatalogRequest>,
    ) -> Reply<pb::ScopeCatalog> {
        self.guard(&request, POLICY_READ).await?;
        Ok(Response::new(self.documents.current().as_ref().into()))
    }

    #[tracing::instrument(skip_all)]
    async fn replace_scope_catalog(
        &self,
        request: Request<pb::ReplaceScopeCatalogRequest>,
    ) -> Reply<pb::ScopeCatalog> {
        let caller = self.guard(&request, POLICY_WRITE).await?;
        let r = request.into_inner();
        let next = self
            .documents
            .replace_catalog(&r.text, r.validate_only)
            .await?;
        if !r.validate_only {
            audit(
                &caller,
                "replace_scope_catalog",
                &next.catalog_version.to_string(),
            );
        }
        Ok(Response::new(next.as_ref().into()))
    }

    #[tracing::instrument(skip_all)]
    async fn get_route_policy(
        &self,
        request: Request<pb::GetRoutePolicyRequest>,
    ) -> Reply<pb::RoutePolicy> {
        self.guard(&request, POLICY_READ).await?;
        Ok(Response::new(self.documents.current().as_ref().into()))
    }

    #[tracing::instrument(skip_all)]
    async fn replace_route_policy(
        &self,
        request: Request<pb::ReplaceRoutePolicyRequest>,
    ) -> Reply<pb::RoutePolicy> {
        let caller = self.guard(&request, POLICY_WRITE).await?;
        let r = request.into_inner();
        let next = self
            .documents
            .replace_policy(&r.text, r.validate_only)
            .await?;
        if !r.validate_only {
            audit(
                &caller,
                "replace_route_policy",
                &next.policy_version.to_string(),
            );
        }
        Ok(Response::new(next.as_ref().into()))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_user_credentials(
        &self,
        request: Request<pb::RevokeUserCredentialsRequest>,
    ) -> Reply<pb::RevokeUserCredentialsResponse> {
        let caller = self.guard(&request, USERS_WRITE).await?;
        let revoked = self
            .service
            .revoke_user_credentials(&request.get_ref().username)
            .await?;
        audit(&caller, "revoke_user_credentials", &revoked.user.id);
        let count = |n: u64| u32::try_from(n).unwrap_or(u32::MAX);
        Ok(Response::new(pb::RevokeUserCredentialsResponse {
            sessions_revoked: count(revoked.sessions),
            api_token_revoked: revoked.api_token,
            app_tokens_revoked: count(revoked.app_tokens),
            user: Some(revoked.user.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_app(&self, request: Request<pb::CreateAppRequest>) -> Reply<pb::App> {
        let caller = self.guard(&request, APPS_WRITE).await?;
        let r = request.into_inner();
        AdminService::require_grantable(&caller, &r.permissions)?;
        let app = self
            .service
            .create_app(r.name, &r.permissions, &r.attached_user)
            .await?;
        audit(&caller, "create_app", &app.id);
        Ok(Response::new(app.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn get_app(&self, request: Request<pb::GetAppRequest>) -> Reply<pb::App> {
        self.guard(&request, APPS_READ).await?;
        let app = self.service.get_app(&request.get_ref().app_id).await?;
        Ok(Response::new(app.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn list_apps(
        &self,
        request: Request<pb::ListAppsRequest>,
    ) -> Reply<pb::ListAppsResponse> {
        self.guard(&request, APPS_READ).await?;
        let apps = self.service.list_apps().await?;
        Ok(Response::new(pb::ListAppsResponse {
            apps: apps.into_iter().map(Into::into).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn update_app(&self, request: Request<pb::UpdateAppRequest>) -> Reply<pb::App> {
        let caller = self.guard(&request, APPS_WRITE).await?;
        let r = request.into_inner();
        // Any change may widen what the app's tokens do (reactivating, detaching its
        // user), so the caller must hold the administration it holds, and will hold.
        self.service
            .require_may_act_as(&caller, ActAs::App(&r.app_id))
            .await?;
        let permissions = r.permissions.map(|list| list.permissions);
        if let Some(permissions) = &permissions {
            AdminService::require_grantable(&caller, permissions)?;
        }
        let app = self
            .service
            .update_app(UpdateApp {
                app_id: r.app_id,
                name: r.name,
                permissions,
                attached_user: r.attached_user,
                active: r.active,
            })
            .await?;
        audit(&caller, "update_app", &app.id);
        Ok(Response::new(app.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_app(
        &self,
        request: Request<pb::DeleteAppRequest>,
    ) -> Reply<pb::DeleteAppResponse> {
        let caller = self.guard(&request, APPS_WRITE).await?;
        let app_id = &request.get_ref().app_id;
        self.service.delete_app(app_id).await?;
        audit(&caller, "delete_app", app_id);
        Ok(Response::new(pb::DeleteAppResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn create_app_token(
        &self,
        request: Request<pb::CreateAppTokenRequest>,
    ) -> Reply<pb::CreateAppTokenResponse> {
        let caller = self.guard(&request, APPS_WRITE).await?;
        let r = request.into_inner();
        self.service
            .require_may_act_as(&caller, ActAs::App(&r.app_id))
            .await?;
        let (record, token) = self.service.create_app_token(&r.app_id, r.name).await?;
        audit(
            &caller,
            "create_app_token",
            &format!("{}/{}", record.app_id, record.id),
        );
        Ok(Response::new(pb::CreateAppTokenResponse {
            app_token: Some(record.into()),
            token: token.expose_secret().to_owned(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_app_tokens(
        &self,
        request: Request<pb::ListAppTokensRequest>,
    ) -> Reply<pb::ListAppTokensResponse> {
        self.guard(&request, APPS_READ).await?;
        let tokens = self
            .service
            .list_app_tokens(&request.get_ref().app_id)
            .await?;
        Ok(Response::new(pb::ListAppTokensResponse {
            app_tokens: tokens.into_iter().map(Into::into).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_app_token(
        &self,
        request: Request<pb::RevokeAppTokenRequest>,
    ) -> Reply<pb::RevokeAppTokenResponse> {
        let caller = self.guard(&request, APPS_WRITE).await?;
        let r = request.get_ref();
        let revoked = self
            .service
            .revoke_app_token(&r.app_id, &r.token_id)
            .await?;
        audit(
            &caller,
            "revoke_app_token",
            &format!("{}/{}", revoked.app_id, revoked.id),
        );
        Ok(Response::new(pb::RevokeAppTokenResponse {}))
    }
}
