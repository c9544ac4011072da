//! `identity.v1.Admin`: users, roles, API access, passwords, integrations, keys, the
//! scope catalog and route policy, and apps with their tokens. Every RPC authenticates the caller from its
//! `authorization` metadata and requires one permission before doing anything.

use super::metadata::{authorization, origin};
use super::pb::{self, admin_server};
use crate::domain::audit::{Actor, Origin};
use crate::domain::permissions::admin::{
    APPS_READ, APPS_WRITE, AUDIT_READ, INTEGRATIONS_READ, INTEGRATIONS_WRITE, KEYS_READ,
    KEYS_WRITE, LIMITS_READ, LIMITS_WRITE, POLICY_READ, POLICY_WRITE, ROLES_READ, ROLES_WRITE,
    USERS_READ, USERS_WRITE,
};
use crate::domain::principal::Authenticated;
use crate::service::admin::{ActAs, AdminService, CreateUser, UpdateUser};
use crate::service::apps::UpdateApp;
use crate::service::audit::AuditQuery;
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

    /// Authenticates the caller and requires `permission`; returns the caller and the
    /// origin its changes are recorded with. The caller is the client here, so its
    /// address counts for guessing limits.
    async fn guard<T>(
        &self,
        request: &Request<T>,
        permission: &str,
    ) -> Result<(Arc<Authenticated>, Origin), Status> {
        let origin = origin(request, "", true)?;
        let caller = self
            .service
            .authorize(authorization(request)?, &origin, permission)
            .await?;
        let origin = origin.acting(Actor::of(&caller.principal));
        Ok((caller, origin))
    }
}

type Reply<T> = Result<Response<T>, Status>;

#[tonic::async_trait]
impl admin_server::Admin for AdminApi {
    #[tracing::instrument(skip_all)]
    async fn create_user(&self, request: Request<pb::CreateUserRequest>) -> Reply<pb::User> {
        let (_, origin) = self.guard(&request, USERS_WRITE).await?;
        let r = request.into_inner();
        let user = self
            .service
            .create_user(
                &origin,
                CreateUser {
                    username: r.username,
                    email: r.email,
                    is_staff: r.is_staff,
                    is_customer: r.is_customer,
                    roles: r.roles,
                },
            )
            .await?;
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
        let (_, origin) = self.guard(&request, USERS_WRITE).await?;
        let r = request.into_inner();
        let user = self
            .service
            .update_user(
                &origin,
                UpdateUser {
                    username: r.username,
                    email: r.email,
                    is_staff: r.is_staff,
                    is_customer: r.is_customer,
                    active: r.active,
                },
            )
            .await?;
        Ok(Response::new(user.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_user(
        &self,
        request: Request<pb::DeleteUserRequest>,
    ) -> Reply<pb::DeleteUserResponse> {
        let (_, origin) = self.guard(&request, USERS_WRITE).await?;
        let username = &request.get_ref().username;
        self.service.delete_user(&origin, username).await?;
        Ok(Response::new(pb::DeleteUserResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn set_api_access(
        &self,
        request: Request<pb::SetApiAccessRequest>,
    ) -> Reply<pb::SetApiAccessResponse> {
        let (caller, origin) = self.guard(&request, USERS_WRITE).await?;
        let r = request.get_ref();
        if r.enabled {
            self.service
                .require_may_act_as(&caller, ActAs::User(&r.username))
                .await?;
        }
        let (user, token) = self
            .service
            .set_api_access(&origin, &r.username, r.enabled)
            .await?;
        Ok(Response::new(pb::SetApiAccessResponse {
            user: Some(user.into()),
            api_token: token
                .map(|t| t.expose_secret().to_owned())
                .unwrap_or_default(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn assign_role(&self, request: Request<pb::AssignRoleRequest>) -> Reply<pb::User> {
        let (caller, origin) = self.guard(&request, USERS_WRITE).await?;
        let r = request.get_ref();
        let role = self.service.get_role(&r.role).await?;
        AdminService::require_grantable(&caller, &role.permissions)?;
        let user = self
            .service
            .set_user_role(&origin, &r.username, &r.role, true)
            .await?;
        Ok(Response::new(user.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn unassign_role(&self, request: Request<pb::UnassignRoleRequest>) -> Reply<pb::User> {
        let (_, origin) = self.guard(&request, USERS_WRITE).await?;
        let r = request.get_ref();
        let user = self
            .service
            .set_user_role(&origin, &r.username, &r.role, false)
            .await?;
        Ok(Response::new(user.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn create_role(&self, request: Request<pb::CreateRoleRequest>) -> Reply<pb::Role> {
        let (caller, origin) = self.guard(&request, ROLES_WRITE).await?;
        let r = request.into_inner();
        AdminService::require_grantable(&caller, &r.permissions)?;
        let role = self
            .service
            .create_role(&origin, r.name, r.description, &r.permissions)
            .await?;
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
        let (caller, origin) = self.guard(&request, ROLES_WRITE).await?;
        let r = request.get_ref();
        AdminService::require_grantable(&caller, &r.permissions)?;
        let role = self
            .service
            .set_role_permissions(&origin, &r.name, &r.permissions)
            .await?;
        Ok(Response::new(role.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_role(
        &self,
        request: Request<pb::DeleteRoleRequest>,
    ) -> Reply<pb::DeleteRoleResponse> {
        let (_, origin) = self.guard(&request, ROLES_WRITE).await?;
        let name = &request.get_ref().name;
        self.service.delete_role(&origin, name).await?;
        Ok(Response::new(pb::DeleteRoleResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn set_user_password(
        &self,
        request: Request<pb::SetUserPasswordRequest>,
    ) -> Reply<pb::SetUserPasswordResponse> {
        let (caller, origin) = self.guard(&request, USERS_WRITE).await?;
        let r = request.into_inner();
        self.service
            .require_may_act_as(&caller, ActAs::User(&r.username))
            .await?;
        let user = self
            .service
            .set_user_password(&origin, &r.username, SecretString::from(r.password))
            .await?;
        Ok(Response::new(pb::SetUserPasswordResponse {
            user: Some(user.into()),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn create_integration(
        &self,
        request: Request<pb::CreateIntegrationRequest>,
    ) -> Reply<pb::CreateIntegrationResponse> {
        let (caller, origin) = self.guard(&request, INTEGRATIONS_WRITE).await?;
        let r = request.into_inner();
        AdminService::require_grantable(&caller, &r.permissions)?;
        let (integration, secret) = self
            .service
            .create_integration(&origin, r.name, &r.permissions)
            .await?;
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
        let (caller, origin) = self.guard(&request, INTEGRATIONS_WRITE).await?;
        let client_id = &request.get_ref().client_id;
        self.service
            .require_may_act_as(&caller, ActAs::Integration(client_id))
            .await?;
        let (integration, secret) = self
            .service
            .rotate_integration_secret(&origin, client_id)
            .await?;
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
        let (_, origin) = self.guard(&request, INTEGRATIONS_WRITE).await?;
        let r = request.get_ref();
        let integration = self
            .service
            .set_integration_active(&origin, &r.client_id, r.active)
            .await?;
        Ok(Response::new(integration.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn set_integration_permissions(
        &self,
        request: Request<pb::SetIntegrationPermissionsRequest>,
    ) -> Reply<pb::Integration> {
        let (caller, origin) = self.guard(&request, INTEGRATIONS_WRITE).await?;
        let r = request.get_ref();
        AdminService::require_grantable(&caller, &r.permissions)?;
        let integration = self
            .service
            .set_integration_permissions(&origin, &r.client_id, &r.permissions)
            .await?;
        Ok(Response::new(integration.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_integration(
        &self,
        request: Request<pb::DeleteIntegrationRequest>,
    ) -> Reply<pb::DeleteIntegrationResponse> {
        let (_, origin) = self.guard(&request, INTEGRATIONS_WRITE).await?;
        let client_id = &request.get_ref().client_id;
        self.service.delete_integration(&origin, client_id).await?;
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
        let (_, origin) = self.guard(&request, KEYS_WRITE).await?;
        let key = self.service.rotate_signing_key(&origin).await?;
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
        let (_, origin) = self.guard(&request, POLICY_WRITE).await?;
        let r = request.into_inner();
        let next = self
            .documents
            .replace_catalog(&origin, &r.text, r.validate_only)
            .await?;
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
        let (_, origin) = self.guard(&request, POLICY_WRITE).await?;
        let r = request.into_inner();
        let next = self
            .documents
            .replace_policy(&origin, &r.text, r.validate_only)
            .await?;
        Ok(Response::new(next.as_ref().into()))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_user_credentials(
        &self,
        request: Request<pb::RevokeUserCredentialsRequest>,
    ) -> Reply<pb::RevokeUserCredentialsResponse> {
        let (_, origin) = self.guard(&request, USERS_WRITE).await?;
        let revoked = self
            .service
            .revoke_user_credentials(&origin, &request.get_ref().username)
            .await?;
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
        let (caller, origin) = self.guard(&request, APPS_WRITE).await?;
        let r = request.into_inner();
        AdminService::require_grantable(&caller, &r.permissions)?;
        let app = self
            .service
            .create_app(&origin, r.name, &r.permissions, &r.attached_user)
            .await?;
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
        let (caller, origin) = self.guard(&request, APPS_WRITE).await?;
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
            .update_app(
                &origin,
                UpdateApp {
                    app_id: r.app_id,
                    name: r.name,
                    permissions,
                    attached_user: r.attached_user,
                    active: r.active,
                },
            )
            .await?;
        Ok(Response::new(app.into()))
    }

    #[tracing::instrument(skip_all)]
    async fn delete_app(
        &self,
        request: Request<pb::DeleteAppRequest>,
    ) -> Reply<pb::DeleteAppResponse> {
        let (_, origin) = self.guard(&request, APPS_WRITE).await?;
        let app_id = &request.get_ref().app_id;
        self.service.delete_app(&origin, app_id).await?;
        Ok(Response::new(pb::DeleteAppResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn create_app_token(
        &self,
        request: Request<pb::CreateAppTokenRequest>,
    ) -> Reply<pb::CreateAppTokenResponse> {
        let (caller, origin) = self.guard(&request, APPS_WRITE).await?;
        let r = request.into_inner();
        self.service
            .require_may_act_as(&caller, ActAs::App(&r.app_id))
            .await?;
        let (record, token) = self
            .service
            .create_app_token(&origin, &r.app_id, r.name)
            .await?;
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
        let (_, origin) = self.guard(&request, APPS_WRITE).await?;
        let r = request.get_ref();
        self.service
            .revoke_app_token(&origin, &r.app_id, &r.token_id)
            .await?;
        Ok(Response::new(pb::RevokeAppTokenResponse {}))
    }

    #[tracing::instrument(skip_all)]
    async fn list_guess_limits(
        &self,
        request: Request<pb::ListGuessLimitsRequest>,
    ) -> Reply<pb::ListGuessLimitsResponse> {
        self.guard(&request, LIMITS_READ).await?;
        let r = request.get_ref();
        let limits = self
            .service
            .list_guess_limits(&r.secret, &r.subject, r.page_size)
            .await?;
        Ok(Response::new(pb::ListGuessLimitsResponse {
            limits: limits.into_iter().map(Into::into).collect(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn clear_guess_limit(
        &self,
        request: Request<pb::ClearGuessLimitRequest>,
    ) -> Reply<pb::ClearGuessLimitResponse> {
        let (_, origin) = self.guard(&request, LIMITS_WRITE).await?;
        let r = request.get_ref();
        let cleared = self
            .service
            .clear_guess_limit(&origin, &r.secret, &r.subject, &r.source)
            .await?;
        Ok(Response::new(pb::ClearGuessLimitResponse { cleared }))
    }

    #[tracing::instrument(skip_all)]
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Reply<pb::ListAuditEventsResponse> {
        self.guard(&request, AUDIT_READ).await?;
        let r = request.into_inner();
        let page = self
            .service
            .list_audit_events(AuditQuery {
                actor: r.actor,
                target: r.target,
                action: r.action,
                outcome: r.outcome,
                since: r.since,
                until: r.until,
                page_size: r.page_size,
                page_token: r.page_token,
            })
            .await?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            events: page.events.into_iter().map(Into::into).collect(),
            next_page_token: page.next_page_token,
        }))
    }
}
