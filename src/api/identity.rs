//! `identity.v1.Identity`: checks, and the credentials it issues.

use super::convert::verdict;
use super::metadata::{authorization, origin};
use super::pb::{self, identity_server};
use crate::domain::audit::Actor;
use crate::domain::permissions::{Permission, admin};
use crate::domain::principal::PrincipalKind;
use crate::domain::verdict::{AuthFailure, Decision, insufficient_scope_challenge};
use crate::ops::metrics::Verdicts;
use crate::service::ServiceError;
use crate::service::admin::{ActAs, AdminService};
use crate::service::authenticator::{Authenticator, Outcome};
use crate::service::checks::{Checker, Target};
use crate::service::error::OAuthError;
use crate::service::keys::KeyRing;
use crate::service::tokens::{ClientCredentials, GrantRequest, Issued, RefreshGrant, Tokens};
use secrecy::{ExposeSecret, SecretString};
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// Most permissions one check may ask for.
pub const MAX_CHECK_PERMISSIONS: usize = 64;

/// Serves `identity.v1.Identity`.
pub struct IdentityApi {
    authenticator: Arc<Authenticator>,
    checker: Arc<Checker>,
    admin: Arc<AdminService>,
    tokens: Arc<Tokens>,
    keys: Arc<KeyRing>,
    realm: String,
    verdicts: Verdicts,
}

impl IdentityApi {
    /// Builds the service; `realm` goes into every challenge.
    pub fn new(
        authenticator: Arc<Authenticator>,
        checker: Arc<Checker>,
        admin: Arc<AdminService>,
        tokens: Arc<Tokens>,
        keys: Arc<KeyRing>,
        realm: String,
    ) -> Self {
        Self {
            authenticator,
            checker,
            admin,
            tokens,
            keys,
            realm,
            verdicts: Verdicts::default(),
        }
    }

    /// Counts every verdict in `verdicts` (none are counted otherwise).
    pub fn with_verdicts(mut self, verdicts: Verdicts) -> Self {
        self.verdicts = verdicts;
        self
    }

    fn challenge(&self, failure: &AuthFailure) -> String {
        failure.challenge(&self.realm)
    }
}

/// Permissions a check asks for: 1 to 64 concrete `resource:action` values.
fn required_permissions(items: &[String]) -> Result<Vec<Permission>, ServiceError> {
    if items.is_empty() {
        return Err(ServiceError::invalid(
            "permissions",
            "name at least one permission",
        ));
    }
    if items.len() > MAX_CHECK_PERMISSIONS {
        return Err(ServiceError::invalid(
            "permissions",
            "at most 64 permissions",
        ));
    }
    items
        .iter()
        .map(|s| Permission::parse_required(s))
        .collect::<Result<_, _>>()
        .map_err(|e| ServiceError::invalid("permissions", e.to_string()))
}

/// Longest HTTP method a check accepts (the route policy refuses odd ones itself).
const MAX_METHOD: usize = 16;
/// Longest HTTP path a check accepts, query included (the route policy bounds the path
/// itself more tightly).
const MAX_REQUEST_PATH: usize = 8192;

/// What a check asks for: permissions, or a method and path for the route policy.
fn check_target(req: &pb::CheckPermissionRequest) -> Result<Target, ServiceError> {
    let by_route = !req.method.is_empty() || !req.path.is_empty();
    match (by_route, req.permissions.is_empty()) {
        (false, _) => Ok(Target::Permissions(required_permissions(&req.permissions)?)),
        (true, false) => Err(ServiceError::invalid(
            "permissions",
            "name either permissions or method and path, not both",
        )),
        (true, true) if req.method.is_empty() || req.path.is_empty() => Err(ServiceError::invalid(
            "path",
            "a route check needs both method and path",
        )),
        (true, true) if req.method.len() > MAX_METHOD || req.path.len() > MAX_REQUEST_PATH => {
            Err(ServiceError::invalid("path", "method or path is too long"))
        }
        (true, true) => Ok(Target::Route {
            method: req.method.clone(),
            path: req.path.clone(),
        }),
    }
}

/// Longest value accepted in any OAuth2 request field.
const MAX_FIELD: usize = 4096;

/// Moves a secret-bearing field out of a request, bounded in size.
fn secret(field: &mut String) -> Result<SecretString, ServiceError> {
    if field.len() > MAX_FIELD {
        return Err(OAuthError::InvalidRequest("a parameter is too long").into());
    }
    Ok(SecretString::from(std::mem::take(field)))
}

/// Refuses a field with control or invisible characters (NUL, bidirectional overrides,
/// zero-width spaces) before it reaches a lookup: no name or id identityd stores has one,
/// PostgreSQL refuses NUL outright, and such text would mislead whoever reads the audit
/// log it would otherwise be recorded in.
fn plain_text(name: &'static str, value: &str) -> Result<(), ServiceError> {
    if value
        .chars()
        .any(|c| c.is_control() || crate::domain::names::is_invisible(c))
    {
        return Err(OAuthError::InvalidRequest(match name {
            "username" => "username contains control or invisible characters",
            "client_id" => "client_id contains control or invisible characters",
            "grant_type" => "grant_type contains control or invisible characters",
            _ => "a parameter contains control or invisible characters",
        })
        .into());
    }
    Ok(())
}

fn client(
    client_id: String,
    client_secret: &mut String,
) -> Result<ClientCredentials, ServiceError> {
    if client_id.len() > MAX_FIELD {
        return Err(OAuthError::InvalidRequest("client_id is too long").into());
    }
    plain_text("client_id", &client_id)?;
    Ok(ClientCredentials {
        client_id,
        client_secret: secret(client_secret)?,
    })
}

fn token_response(issued: Issued) -> pb::TokenResponse {
    let (refresh_token, csrf_token, refresh_expires_in) = match issued.refresh {
        Some(r) => (
            r.refresh_token.expose_secret().to_owned(),
            r.csrf_token.expose_secret().to_owned(),
            r.expires_in,
        ),
        None => (String::new(), String::new(), 0),
    };
    pb::TokenResponse {
        access_token: issued.access_token.expose_secret().to_owned(),
        token_type: "Bearer".into(),
        expires_in: issued.expires_in,
        refresh_token,
        refresh_expires_in,
        csrf_token,
        session_id: issued.session_id,
        scope: issued.scope,
    }
}

fn log_outcome(rpc: &'static str, outcome: &Outcome, reason: &str) {
    match outcome {
        Ok(a) => {
            tracing::debug!(rpc, principal = %a.principal.id, credential = %a.principal.credential_id, reason, "checked")
        }
        Err(_) => tracing::debug!(rpc, reason, "refused"),
    }
}

#[tonic::async_trait]
impl identity_server::Identity for IdentityApi {
    #[tracing::instrument(skip_all)]
    async fn authenticate(
        &self,
        request: Request<pb::AuthenticateRequest>,
    ) -> Result<Response<pb::AuthenticateResponse>, Status> {
        let req = request.get_ref();
        let origin = origin(&request, &req.client_address, false)?;
        let outcome = self
            .authenticator
            .authenticate(&req.authorization, &origin)
            .await
            .map_err(ServiceError::from)?;
        let reason = outcome.as_ref().map_or_else(AuthFailure::code, |_| "ok");
        log_outcome("Authenticate", &outcome, reason);
        self.verdicts.record("Authenticate", reason);
        let response = match &outcome {
            Ok(a) => pb::AuthenticateResponse {
                verdict: pb::Verdict::Allow.into(),
                http_status: 200,
                principal: Some((&a.principal).into()),
                reason: reason.into(),
                permissions: a
                    .effective_permissions()
                    .iter()
                    .map(ToString::to_string)
                    .collect(),
                ..Default::default()
            },
            Err(failure) => pb::AuthenticateResponse {
                verdict: pb::Verdict::Unauthenticated.into(),
                http_status: 401,
                reason: failure.code().into(),
                www_authenticate: self.challenge(failure),
                message: failure.message().into(),
                ..Default::default()
            },
        };
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all)]
    async fn check_permission(
        &self,
        request: Request<pb::CheckPermissionRequest>,
    ) -> Result<Response<pb::CheckPermissionResponse>, Status> {
        let req = request.get_ref();
        let target = check_target(req)?;
        let origin = origin(&request, &req.client_address, false)?;
        let checked = self
            .checker
            .check(&req.authorization, &target, &origin)
            .await?;
        let (outcome, decision) = (checked.outcome, checked.decision);
        log_outcome("CheckPermission", &outcome, decision.code());
        self.verdicts.record("CheckPermission", decision.code());
        let principal = outcome.as_ref().ok().map(|a| (&a.principal).into());
        let mut response = pb::CheckPermissionResponse {
            verdict: verdict(&decision).into(),
            http_status: decision.http_status().into(),
            principal,
            reason: decision.code().into(),
            ..Default::default()
        };
        response.missing = decision.missing().iter().map(ToString::to_string).collect();
        response.message = decision.message().into_owned();
        match &decision {
            Decision::Unauthenticated(failure) => {
                response.www_authenticate = self.challenge(failure);
            }
            Decision::InsufficientScope { scopes, .. } => {
                if let Ok(a) = &outcome {
                    response.www_authenticate =
                        insufficient_scope_challenge(a.principal.scheme, &self.realm, scopes);
                }
            }
            _ => {}
        }
        Ok(Response::new(response))
    }

    #[tracing::instrument(skip_all, fields(grant_type))]
    async fn issue_token(
        &self,
        request: Request<pb::IssueTokenRequest>,
    ) -> Result<Response<pb::TokenResponse>, Status> {
        let origin = origin(&request, &request.get_ref().client_address, false)?;
        let mut r = request.into_inner();
        tracing::Span::current().record("grant_type", r.grant_type.as_str());
        if r.grant_type.len() > 64 || r.scope.len() > MAX_FIELD {
            return Err(
                ServiceError::from(OAuthError::InvalidRequest("a parameter is too long")).into(),
            );
        }
        // Scopes are read by the catalog, which names an unknown one; they never reach
        // storage as given.
        for (name, value) in [("grant_type", &r.grant_type), ("username", &r.username)] {
            plain_text(name, value)?;
        }
        let grant = GrantRequest {
            origin,
            client: client(r.client_id, &mut r.client_secret)?,
            grant_type: r.grant_type,
            username: r.username,
            password: secret(&mut r.password)?,
            refresh: RefreshGrant {
                refresh_token: secret(&mut r.refresh_token)?,
                csrf_token: secret(&mut r.csrf_token)?,
            },
            scope: r.scope,
        };
        let issued = self.tokens.grant(grant).await?;
        Ok(Response::new(token_response(issued)))
    }

    #[tracing::instrument(skip_all)]
    async fn refresh_token(
        &self,
        request: Request<pb::RefreshTokenRequest>,
    ) -> Result<Response<pb::TokenResponse>, Status> {
        let origin = origin(&request, &request.get_ref().client_address, false)?;
        let mut r = request.into_inner();
        if r.scope.len() > MAX_FIELD {
            return Err(ServiceError::from(OAuthError::InvalidRequest("scope is too long")).into());
        }
        let client = client(r.client_id, &mut r.client_secret)?;
        let grant = RefreshGrant {
            refresh_token: secret(&mut r.refresh_token)?,
            csrf_token: secret(&mut r.csrf_token)?,
        };
        let issued = self
            .tokens
            .refresh(&origin, &client, &grant, &r.scope)
            .await?;
        Ok(Response::new(token_response(issued)))
    }

    #[tracing::instrument(skip_all)]
    async fn regenerate_api_token(
        &self,
        request: Request<pb::RegenerateApiTokenRequest>,
    ) -> Result<Response<pb::RegenerateApiTokenResponse>, Status> {
        let origin = origin(&request, "", true)?;
        let caller = self
            .admin
            .authenticate(authorization(&request)?, &origin)
            .await?;
        let origin = origin.acting(Actor::of(&caller.principal));
        let target = match request.get_ref().username.as_str() {
            // Only a user has a token of its own; an app or integration named like a
            // user must not stand for that user.
            "" if caller.principal.kind == PrincipalKind::User => caller.principal.name.clone(),
            "" => {
                return Err(ServiceError::invalid(
                    "username",
                    "is required when the caller is not a user",
                )
                .into());
            }
            name => crate::domain::names::normalize_username(name)
                .map_err(|r| ServiceError::invalid("username", r))?,
        };
        // A scoped credential must not mint an unscoped one with all of the user's
        // permissions.
        if caller.scope_ceiling.is_some() {
            return Err(ServiceError::PermissionDenied(
                "a scoped token cannot regenerate an API token; use an unscoped credential".into(),
            )
            .into());
        }
        let own = caller.principal.kind == PrincipalKind::User && caller.principal.name == target;
        if !own {
            // Someone else's token: an administrator's job.
            AdminService::require(&caller, admin::USERS_WRITE)?;
            self.admin
                .require_may_act_as(&caller, ActAs::User(&target))
                .await?;
        }
        let (user, token) = self.admin.regenerate_api_token(&origin, &target).await?;
        Ok(Response::new(pb::RegenerateApiTokenResponse {
            username: user.username,
            api_token: token.expose_secret().to_owned(),
        }))
    }

    #[tracing::instrument(skip_all)]
    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let origin = origin(&request, &request.get_ref().client_address, false)?;
        let mut r = request.into_inner();
        plain_text("token_type_hint", &r.token_type_hint)?;
        let client = client(r.client_id, &mut r.client_secret)?;
        let token = secret(&mut r.token)?;
        self.tokens
            .revoke(&origin, &token, &r.token_type_hint, &client)
            .await?;
        Ok(Response::new(pb::RevokeTokenResponse {}))
    }

    async fn get_jwks(
        &self,
        _request: Request<pb::GetJwksRequest>,
    ) -> Result<Response<pb::GetJwksResponse>, Status> {
        Ok(Response::new(pb::GetJwksResponse {
            keys: self.keys.jwks().into_iter().map(Into::into).collect(),
        }))
    }
}
