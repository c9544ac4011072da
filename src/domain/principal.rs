//! Who is behind a credential, and what they may do right now.

use super::clock::UnixSeconds;
use super::credentials::Scheme;
use super::permissions::PermissionSet;
use std::sync::Arc;

/// The kinds of principal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PrincipalKind {
    /// A person: staff user or customer.
    User,
    /// A machine client holding a client id and secret.
    Integration,
}

/// The kinds of credential, as reported to callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CredentialKind {
    /// A user's API token presented with HTTP Basic.
    ApiToken,
    /// A signed access token (JWT) presented with `Bearer` or `JWT`.
    AccessToken,
}

impl CredentialKind {
    /// Stable name reported in `Principal.credential_kind`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ApiToken => "api_token",
            Self::AccessToken => "access_token",
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
    /// Scheme the credential was presented with.
    pub scheme: Scheme,
    /// Kind of credential presented.
    pub credential_kind: CredentialKind,
    /// Identifies the credential without revealing it.
    pub credential_id: String,
    /// The session an access token belongs to.
    pub session_id: Option<String>,
    /// When the credential expires, if it does.
    pub expires_at: Option<UnixSeconds>,
}

/// A successfully authenticated credential: the principal and its effective permissions,
/// computed from current state when the entry was loaded.
#[derive(Debug, Clone)]
pub struct Authenticated {
    /// Who.
    pub principal: Principal,
    /// What they may do.
    pub permissions: Arc<PermissionSet>,
}
