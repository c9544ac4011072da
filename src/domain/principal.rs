//! Who is behind a credential, and what they may do right now.

use super::clock::UnixSeconds;
use super::credentials::Scheme;
use super::permissions::{Permission, PermissionSet};
use std::sync::Arc;

/// The kinds of principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A person: staff user or customer.
    User,
    /// A machine client holding a client id and secret.
    Integration,
    /// A custom app holding named app tokens.
    App,
}

/// The kinds of credential, as reported to callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A user's API token presented with HTTP Basic.
    ApiToken,
    /// A signed access token (JWT) presented with `Bearer` or `JWT`.
    AccessToken,
    /// An opaque non-expiring token (scope `no_expiry`) presented with `Bearer`.
    NonExpiringToken,
    /// An app's named token presented with `Bearer`.
    AppToken,
}

impl CredentialKind {
    /// Stable name reported in `Principal.credential_kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiToken => "api_token",
            Self::AccessToken => "access_token",
            Self::NonExpiringToken => "non_expiring_token",
            Self::AppToken => "app_token",
        }
    }
}

/// The principal behind a credential. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// Kind of principal.
    pub kind: PrincipalKind,
    /// Stable opaque id.
    pub id: String,
    /// Human-readable name (the username for users).
    pub name: String,
    /// True for staff users.
    pub is_staff: bool,
    /// True for customer users.
    pub is_customer: bool,
    /// For an app with an attached user: that user.
    pub attached_user: Option<AttachedUser>,
    /// Scheme the credential was presented with.
    pub scheme: Scheme,
    /// Kind of credential presented.
    pub credential_kind: CredentialKind,
    /// Identifies the credential without revealing it.
    pub credential_id: String,
    /// The session an access token belongs to.
    pub session_id: Option<String>,
    /// When the credential stops working, if it does: expiry, or for a non-expiring
    /// token that must be regenerated, the deadline.
    pub expires_at: Option<UnixSeconds>,
    /// Scopes the credential was issued with; empty when unscoped.
    pub scopes: Vec<String>,
}

/// The user an app is attached to: the app acts within that user's permissions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttachedUser {
    /// User id.
    pub id: String,
    /// Username.
    pub username: String,
    /// Staff flag: an app acting for a customer never administers.
    pub is_staff: bool,
}

/// A successfully authenticated credential: the principal and its effective permissions,
/// computed from current state when the entry was loaded.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Who.
    pub principal: Principal,
    /// What the principal itself may do.
    pub permissions: Arc<PermissionSet>,
    /// For a scoped credential: the most its scopes allow. What it may do is this ∩
    /// `permissions`; `None` means unscoped (all of `permissions`).
    pub scope_ceiling: Option<Arc<PermissionSet>>,
    /// For an app with an attached user: that user's current permissions, which bound
    /// the app's.
    pub attached_permissions: Option<Arc<PermissionSet>>,
}

impl Authenticated {
    /// The bounds on the principal's own permissions: the attached user's, then the
    /// scopes'.
    fn bounds(&self) -> impl Iterator<Item = &PermissionSet> {
        self.attached_permissions
            .iter()
            .chain(self.scope_ceiling.iter())
            .map(|b| b.as_ref())
    }

    /// True when the credential may use `required`: the principal holds it, and every
    /// bound (attached user, scopes) allows it.
    pub fn may(&self, required: &Permission) -> bool {
        self.permissions.grants(required) && self.bounds().all(|b| b.grants(required))
    }

    /// What the credential may do: the principal's permissions, narrowed by every bound.
    pub fn effective_permissions(&self) -> PermissionSet {
        self.bounds()
            .fold((*self.permissions).clone(), |held, bound| {
                held.intersect(bound)
            })
    }
}
