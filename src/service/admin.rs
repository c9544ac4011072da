//! Administration use cases: users, roles, API access. Each validates its input, makes
//! one store call (one transaction, which also records the change's audit event), and
//! drops from the check cache whatever the change may have revoked or narrowed before it
//! returns.

use super::ServiceError;
use super::audit;
use super::authenticator::Authenticator;
use super::cache::CheckCache;
use super::keys::KeyRing;
use super::limits::GuessLimits;
use super::passwords::Passwords;
use crate::domain::audit::{Event, Origin};
use crate::domain::clock::Clock;
use crate::domain::names;
use crate::domain::permissions::{self, Permission};
use crate::domain::principal::{Authenticated, PrincipalKind};
use crate::domain::secret::{SecretDigest, SecretKind};
use crate::store::{NewUser, RoleRecord, Store, Subject, UserPatch, UserRecord, UserRevocation};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::SecretString;
use std::sync::Arc;

/// Most permissions one role may hold.
pub const MAX_ROLE_PERMISSIONS: usize = 256;
/// Most roles given at user creation.
pub const MAX_USER_ROLES: usize = 64;
/// Default and largest page of every listing that pages.
const DEFAULT_PAGE: u32 = 100;
const MAX_PAGE: u32 = 1000;

/// The page size asked for: 0 means the default, more than the largest is refused.
pub(super) fn page_size(requested: u32) -> Result<u32, ServiceError> {
    match requested {
        0 => Ok(DEFAULT_PAGE),
        n if n > MAX_PAGE => Err(ServiceError::invalid("page_size", "must be at most 1000")),
        n => Ok(n),
    }
}

/// A user to create, as asked for.
#[derive(Debug, Clone, Default)]
pub struct CreateUser {
    /// Username.
    pub username: String,
    /// Email; empty for none.
    pub email: String,
    /// Staff flag.
    pub is_staff: bool,
    /// Customer flag; `None` means the opposite of `is_staff`.
    pub is_customer: Option<bool>,
    /// Role names.
    pub roles: Vec<String>,
}

/// A user change, as asked for.
#[derive(Debug, Clone, Default)]
pub struct UpdateUser {
    /// The user.
    pub username: String,
    /// New email; `Some("")` clears it.
    pub email: Option<String>,
    /// New staff flag.
    pub is_staff: Option<bool>,
    /// New customer flag.
    pub is_customer: Option<bool>,
    /// New active flag.
    pub active: Option<bool>,
}

/// A principal whose credentials an Admin call would hand to the caller.
#[derive(Debug, Clone, Copy)]
pub enum ActAs<'a> {
    /// A user, by username (a new API token or password).
    User(&'a str),
    /// An app, by id (a new token, or a change that widens its tokens).
    App(&'a str),
    /// An integration, by client id (a new secret).
    Integration(&'a str),
}

/// A page of users.
#[derive(Debug, Clone)]
pub struct UserPage {
    /// The users.
    pub users: Vec<UserRecord>,
    /// Token for the next page; empty on the last.
    pub next_page_token: String,
}

/// The administration use cases.
pub struct AdminService {
    pub(super) store: Arc<dyn Store>,
    pub(super) cache: Arc<CheckCache>,
    pub(super) clock: Arc<dyn Clock>,
    authenticator: Arc<Authenticator>,
    passwords: Arc<Passwords>,
    pub(super) keys: Arc<KeyRing>,
    pub(super) limits: Arc<GuessLimits>,
}

impl AdminService {
    /// Builds the service.
    pub fn new(
        store: Arc<dyn Store>,
        cache: Arc<CheckCache>,
        clock: Arc<dyn Clock>,
        authenticator: Arc<Authenticator>,
        passwords: Arc<Passwords>,
        keys: Arc<KeyRing>,
        limits: Arc<GuessLimits>,
    ) -> Self {
        Self {
            store,
            cache,
            clock,
            authenticator,
            passwords,
            keys,
            limits,
        }
    }

    /// Authenticates the caller's `authorization` value and requires `permission`.
    pub async fn authorize(
        &self,
        authorization: &str,
        origin: &Origin,
        permission: &str,
    ) -> Result<Arc<Authenticated>, ServiceError> {
        let caller = self.authenticate(authorization, origin).await?;
        Self::require(&caller, permission)?;
        Ok(caller)
    }

    /// The principal behind a caller's `authorization` value, or UNAUTHENTICATED.
    pub async fn authenticate(
        &self,
        authorization: &str,
        origin: &Origin,
    ) -> Result<Arc<Authenticated>, ServiceError> {
        self.authenticator
            .authenticate(authorization, origin)
            .await?
            .map_err(ServiceError::Unauthenticated)
    }

    /// Requires an authenticated caller to hold `permission`, within its credential's
    /// scopes. Users must also be staff, and so must an app's attached user: customers
    /// never administer, directly or through an app.
    pub fn require(caller: &Authenticated, permission: &str) -> Result<(), ServiceError> {
        let principal = &caller.principal;
        if principal.kind == PrincipalKind::User && !principal.is_staff {
            return Err(ServiceError::PermissionDenied(
                "only staff users may call the Admin service".into(),
            ));
        }
        if principal
            .attached_user
            .as_ref()
            .is_some_and(|u| !u.is_staff)
        {
            return Err(ServiceError::PermissionDenied(
                "an app attached to a user who is not staff may not call the Admin service".into(),
            ));
        }
        let required = Permission::parse_required(permission).map_err(|_| {
            ServiceError::PermissionDenied(format!("missing permission {permission}"))
        })?;
        if !caller.may(&required) {
            return Err(ServiceError::PermissionDenied(format!(
                "missing permission {permission}"
            )));
        }
        Ok(())
    }

    /// The event of a change the caller makes now.
    pub(super) fn event(
        &self,
        origin: &Origin,
        action: &'static str,
        target: impl Into<String>,
    ) -> Event {
        origin.event(self.clock.now(), action, target)
    }

    /// Refuses to hand out administration the caller does not have: every Admin
    /// permission that `permissions` would grant (through a role or an integration) must
    /// be the caller's own. Business permissions are the administrator's to give.
    pub fn require_grantable(
        caller: &Authenticated,
        permissions: &[String],
    ) -> Result<(), ServiceError> {
        for given in permissions.iter().filter_map(|p| Permission::parse(p).ok()) {
            for admin_permission in permissions::admin::ALL {
                let granted =
                    Permission::parse_required(admin_permission).is_ok_and(|a| given.grants(&a));
                if granted {
                    Self::require(caller, admin_permission)?;
                }
            }
        }
        Ok(())
    }

    /// Refuses to hand the caller the means to act as `target` when the target holds
    /// administration the caller lacks: otherwise `users:write`, `apps:write` or
    /// `integrations:write` would each be a path to every other Admin permission.
    pub async fn require_may_act_as(
        &self,
        caller: &Authenticated,
        target: ActAs<'_>,
    ) -> Result<(), ServiceError> {
        let held = match target {
            ActAs::User(username) => {
                let user = self.get_user(username).await?;
                self.store
                    .subject_permissions(&Subject::User(user.id))
                    .await?
            }
            ActAs::App(id) => self.get_app(id).await?.permissions,
            ActAs::Integration(client_id) => self.get_integration(client_id).await?.permissions,
        };
        Self::require_grantable(caller, &held)
    }

    /// Creates a user.
    pub async fn create_user(
        &self,
        origin: &Origin,
        req: CreateUser,
    ) -> Result<UserRecord, ServiceError> {
        let username = username(&req.username)?;
        let email = optional_email(&req.email)?;
        if req.roles.len() > MAX_USER_ROLES {
            return Err(ServiceError::invalid("roles", "at most 64 roles"));
        }
        for role in &req.roles {
            names::validate_role_name(role).map_err(|r| ServiceError::invalid("roles", r))?;
        }
        let is_customer = req.is_customer.unwrap_or(!req.is_staff);
        if !req.is_staff && !is_customer {
            return Err(ServiceError::invalid(
                "is_customer",
                "a user must be staff, a customer, or both",
            ));
        }
        let event = self
            .event(origin, "user.create", user_target(&username))
            .with("email", email.clone())
            .with("is_staff", req.is_staff)
            .with("is_customer", is_customer)
            .with("roles", req.roles.clone());
        let user = NewUser {
            username,
            email,
            is_staff: req.is_staff,
            is_customer,
            roles: req.roles,
        };
        let created = self.store.create_user(&user, &event).await?;
        audit::log(&event);
        Ok(created)
    }

    /// Reads a user.
    pub async fn get_user(&self, username: &str) -> Result<UserRecord, ServiceError> {
        Ok(self.store.get_user(&self::username(username)?).await?)
    }

    /// Lists users a page at a time.
    pub async fn list_users(
        &self,
        page_size: u32,
        page_token: &str,
    ) -> Result<UserPage, ServiceError> {
        let limit = self::page_size(page_size)?;
        let after = decode_page_token(page_token)?;
        let users = self.store.list_users(&after, limit).await?;
        let full_page = users.len() == limit as usize;
        let next_page_token = match users.last() {
            Some(last) if full_page => URL_SAFE_NO_PAD.encode(&last.username),
            _ => String::new(),
        };
        Ok(UserPage {
            users,
            next_page_token,
        })
    }

    /// Changes a user. Disabling kills its credentials at once.
    pub async fn update_user(
        &self,
        origin: &Origin,
        req: UpdateUser,
    ) -> Result<UserRecord, ServiceError> {
        let username = username(&req.username)?;
        let email = req.email.as_deref().map(optional_email).transpose()?;
        let mut event = self.event(origin, "user.update", user_target(&username));
        if let Some(email) = &email {
            event = event.with("email", email.clone());
        }
        for (field, value) in [
            ("is_staff", req.is_staff),
            ("is_customer", req.is_customer),
            ("active", req.active),
        ] {
            if let Some(value) = value {
                event = event.with(field, value);
            }
        }
        let patch = UserPatch {
            email,
            is_staff: req.is_staff,
            is_customer: req.is_customer,
            active: req.active,
        };
        let user = self.store.update_user(&username, &patch, &event).await?;
        audit::log(&event);
        // Staff or active changes alter what cached entries say.
        self.cache.invalidate_principal(&user.id);
        Ok(user)
    }

    /// Deletes a user and every credential it holds; apps attached to it are
    /// deactivated and detached.
    pub async fn delete_user(&self, origin: &Origin, username: &str) -> Result<(), ServiceError> {
        let username = self::username(username)?;
        let event = self.event(origin, "user.delete", user_target(&username));
        let id = self.store.delete_user(&username, &event).await?;
        audit::log(&event);
        self.cache.invalidate_principal(&id);
        Ok(())
    }

    /// Ends everything carrying a user's authority: sessions, API token, and the tokens
    /// of apps attached to it.
    pub async fn revoke_user_credentials(
        &self,
        origin: &Origin,
        username: &str,
    ) -> Result<UserRevocation, ServiceError> {
        let username = self::username(username)?;
        let event = self.event(origin, "user.revoke_credentials", user_target(&username));
        let revoked = self
            .store
            .revoke_user_credentials(&username, &event)
            .await?;
        audit::log(&event);
        // Also drops the entries of apps attached to the user.
        self.cache.invalidate_principal(&revoked.user.id);
        Ok(revoked)
    }

    /// Turns API access on (returning the new token, once) or off.
    pub async fn set_api_access(
        &self,
        origin: &Origin,
        username: &str,
        enabled: bool,
    ) -> Result<(UserRecord, Option<SecretString>), ServiceError> {
        let username = self::username(username)?;
        let target = user_target(&username);
        if enabled {
            let token = SecretKind::ApiToken.generate();
            let event = self.event(origin, "user.api_access_on", target);
            let user = self
                .store
                .enable_api_access(&username, &SecretDigest::of(&token), &event)
                .await?;
            audit::log(&event);
            Ok((user, Some(token)))
        } else {
            let event = self.event(origin, "user.api_access_off", target);
            let user = self.store.disable_api_access(&username, &event).await?;
            audit::log(&event);
            self.cache.invalidate_principal(&user.id);
            Ok((user, None))
        }
    }

    /// Replaces a user's API token; the old one is dead when this returns.
    pub async fn regenerate_api_token(
        &self,
        origin: &Origin,
        username: &str,
    ) -> Result<(UserRecord, SecretString), ServiceError> {
        let username = self::username(username)?;
        let token = SecretKind::ApiToken.generate();
        let event = self.event(origin, "user.api_token_regenerate", user_target(&username));
        let user = self
            .store
            .replace_api_token(&username, &SecretDigest::of(&token), &event)
            .await?;
        audit::log(&event);
        self.cache.invalidate_principal(&user.id);
        // Nobody has guessed at the new token: blocks on the name would only keep its
        // owner out. The token is replaced either way; a failure here leaves blocks that
        // end by themselves.
        if let Err(e) = self.limits.clear_api_token(&username, origin).await {
            tracing::warn!(error = %e, "could not clear the guessing limits of a regenerated API token");
        }
        Ok((user, token))
    }

    /// Sets a user's password; every session of the user ends.
    pub async fn set_user_password(
        &self,
        origin: &Origin,
        username: &str,
        password: SecretString,
    ) -> Result<UserRecord, ServiceError> {
        let username = self::username(username)?;
        let hash = self.passwords.hash(password).await?;
        let event = self.event(origin, "user.set_password", user_target(&username));
        let user = self.store.set_password(&username, &hash, &event).await?;
        audit::log(&event);
        self.cache.invalidate_principal(&user.id);
        Ok(user)
    }

    /// Gives a user a role (`assign`) or takes it away.
    pub async fn set_user_role(
        &self,
        origin: &Origin,
        username: &str,
        role: &str,
        assign: bool,
    ) -> Result<UserRecord, ServiceError> {
        let username = self::username(username)?;
        check_name("role", role)?;
        let action = if assign {
            "user.assign_role"
        } else {
            "user.unassign_role"
        };
        let event = self
            .event(origin, action, user_target(&username))
            .with("role", role);
        let user = if assign {
            self.store.assign_role(&username, role, &event).await?
        } else {
            self.store.unassign_role(&username, role, &event).await?
        };
        audit::log(&event);
        // Taking a role narrows; giving one must not stay hidden behind the cache.
        self.cache.invalidate_principal(&user.id);
        Ok(user)
    }

    /// Creates a role.
    pub async fn create_role(
        &self,
        origin: &Origin,
        name: String,
        description: String,
        permissions: &[String],
    ) -> Result<RoleRecord, ServiceError> {
        check_name("name", &name)?;
        names::validate_description(&description)
            .map_err(|r| ServiceError::invalid("description", r))?;
        let role = RoleRecord {
            name,
            description,
            permissions: canonical_permissions(permissions)?,
            builtin: false,
            created_at: self.clock.now(),
        };
        let event = self
            .event(origin, "role.create", role_target(&role.name))
            .with("permissions", role.permissions.clone());
        let created = self.store.create_role(&role, &event).await?;
        audit::log(&event);
        Ok(created)
    }

    /// Reads a role.
    pub async fn get_role(&self, name: &str) -> Result<RoleRecord, ServiceError> {
        check_name("name", name)?;
        Ok(self.store.get_role(name).await?)
    }

    /// Lists all roles.
    pub async fn list_roles(&self) -> Result<Vec<RoleRecord>, ServiceError> {
        Ok(self.store.list_roles().await?)
    }

    /// Replaces a role's permissions.
    pub async fn set_role_permissions(
        &self,
        origin: &Origin,
        name: &str,
        permissions: &[String],
    ) -> Result<RoleRecord, ServiceError> {
        check_name("name", name)?;
        let permissions = canonical_permissions(permissions)?;
        let event = self
            .event(origin, "role.set_permissions", role_target(name))
            .with("permissions", permissions.clone());
        let role = self
            .store
            .set_role_permissions(name, &permissions, &event)
            .await?;
        audit::log(&event);
        // Any holder may be cached; finding them all costs more than refilling.
        self.cache.invalidate_all();
        Ok(role)
    }

    /// Deletes a role.
    pub async fn delete_role(&self, origin: &Origin, name: &str) -> Result<(), ServiceError> {
        check_name("name", name)?;
        let event = self.event(origin, "role.delete", role_target(name));
        self.store.delete_role(name, &event).await?;
        audit::log(&event);
        self.cache.invalidate_all();
        Ok(())
    }
}

/// How the audit log names a user.
pub(super) fn user_target(username: &str) -> String {
    format!("user:{username}")
}

fn role_target(name: &str) -> String {
    format!("role:{name}")
}

/// The canonical form of a username given in a request, or INVALID_ARGUMENT saying why
/// it can be no user's.
pub(super) fn username(given: &str) -> Result<String, ServiceError> {
    username_in("username", given)
}

/// [`username`], for a request field with another name.
pub(super) fn username_in(field: &'static str, given: &str) -> Result<String, ServiceError> {
    names::normalize_username(given).map_err(|r| ServiceError::invalid(field, r))
}

/// Longest id identityd issues (UUIDs, client ids), with room to spare.
const MAX_ISSUED_ID: usize = 64;

/// An id identityd issued (app and token ids, client ids): short and URL-safe, so
/// anything else is refused before any lookup.
pub(super) fn check_issued_id(field: &'static str, id: &str) -> Result<(), ServiceError> {
    let ok = !id.is_empty()
        && id.len() <= MAX_ISSUED_ID
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(ServiceError::invalid(
            field,
            "is not an id identityd issued",
        ))
    }
}

/// Names of roles, integrations, apps and app tokens: short, lower-case, URL-safe.
pub(super) fn check_name(field: &'static str, name: &str) -> Result<(), ServiceError> {
    names::validate_role_name(name).map_err(|r| ServiceError::invalid(field, r))
}

fn optional_email(email: &str) -> Result<Option<String>, ServiceError> {
    if email.is_empty() {
        return Ok(None);
    }
    names::normalize_email(email)
        .map(Some)
        .map_err(|r| ServiceError::invalid("email", r))
}

/// Validates permissions and returns them sorted, deduplicated and canonically spelled.
pub(super) fn canonical_permissions(items: &[String]) -> Result<Vec<String>, ServiceError> {
    if items.len() > MAX_ROLE_PERMISSIONS {
        return Err(ServiceError::invalid(
            "permissions",
            "at most 256 permissions",
        ));
    }
    let set = permissions::parse_all(items)
        .map_err(|e| ServiceError::invalid("permissions", e.to_string()))?;
    Ok(set.iter().map(ToString::to_string).collect())
}

/// The username a page token continues after: one this service issued is the base64
/// of a canonical username, so anything else is refused before it reaches a query.
fn decode_page_token(token: &str) -> Result<String, ServiceError> {
    if token.is_empty() {
        return Ok(String::new());
    }
    let invalid = || ServiceError::invalid("page_token", "is not a token this service issued");
    if token.len() > 2 * names::MAX_USERNAME {
        return Err(invalid());
    }
    let bytes = URL_SAFE_NO_PAD.decode(token).map_err(|_| invalid())?;
    let after = String::from_utf8(bytes).map_err(|_| invalid())?;
    match names::normalize_username(&after) {
        Ok(canonical) if canonical == after => Ok(after),
        _ => Err(invalid()),
    }
}
