//! The service layer's one error type. `api::status` maps it to gRPC in one place.

use crate::domain::scopes::ScopeError;
use crate::domain::verdict::AuthFailure;
use crate::store::StoreError;

/// Why a service call did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// A request field is malformed.
    #[error("{field}: {reason}")]
    InvalidArgument {
        /// The offending field, as named in the proto.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
    /// The named thing does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The named thing already exists.
    #[error("{0} already exists")]
    AlreadyExists(String),
    /// Not allowed in the current state.
    #[error("{0}")]
    FailedPrecondition(String),
    /// The caller presented no valid credential.
    #[error("{}", .0.message())]
    Unauthenticated(AuthFailure),
    /// The caller lacks a permission, or is not staff.
    #[error("{0}")]
    PermissionDenied(String),
    /// The feature is not built yet.
    #[error("{0}")]
    Unimplemented(&'static str),
    /// Storage failed; details are logged, never shown.
    #[error("storage unavailable")]
    Unavailable(#[source] StoreError),
    /// An OAuth2 request was refused (RFC 6749 §5.2, RFC 7009 §2.2.1).
    #[error("{}", .0.message())]
    OAuth(OAuthError),
    /// Too much work is queued; the caller should retry shortly.
    #[error("{0}")]
    Overloaded(&'static str),
    /// Something that should not fail did; details are logged, never shown.
    #[error("internal error")]
    Internal(String),
}

/// The OAuth2 error codes. Messages are generic on purpose: they never tell which part
/// of a credential was wrong, or whether a user or client exists.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OAuthError {
    /// A parameter is missing, repeated or malformed; the text names it.
    InvalidRequest(&'static str),
    /// Client authentication failed.
    InvalidClient,
    /// The password, refresh token or other grant is invalid, expired or revoked, or was
    /// issued to another client.
    InvalidGrant,
    /// The client may not use this grant type.
    UnauthorizedClient,
    /// The grant type is not supported.
    UnsupportedGrantType,
    /// A requested scope is unknown, or needs a permission the requester lacks. Names
    /// the scope: which scopes exist is no secret, and the requester knows what it holds.
    InvalidScope(ScopeError),
    /// RevokeToken was given a token type hint it does not know.
    UnsupportedTokenType,
}

impl OAuthError {
    /// The RFC's error code, sent as the `ErrorInfo` reason.
    pub fn code(&self) -> &'static str {
        match self {
            Self::InvalidRequest(_) => "invalid_request",
            Self::InvalidClient => "invalid_client",
            Self::InvalidGrant => "invalid_grant",
            Self::UnauthorizedClient => "unauthorized_client",
            Self::UnsupportedGrantType => "unsupported_grant_type",
            Self::InvalidScope(_) => "invalid_scope",
            Self::UnsupportedTokenType => "unsupported_token_type",
        }
    }

    /// The message sent with it.
    pub fn message(&self) -> String {
        let text = match self {
            Self::InvalidRequest(detail) => detail,
            Self::InvalidClient => "client authentication failed",
            Self::InvalidGrant => "the grant is invalid, expired or revoked",
            Self::UnauthorizedClient => "the client may not use this grant type",
            Self::UnsupportedGrantType => {
                "grant_type must be client_credentials, password or refresh_token"
            }
            Self::InvalidScope(e) => return e.to_string(),
            Self::UnsupportedTokenType => {
                "token_type_hint must be access_token, refresh_token or empty"
            }
        };
        text.to_owned()
    }
}

impl From<OAuthError> for ServiceError {
    fn from(e: OAuthError) -> Self {
        Self::OAuth(e)
    }
}

impl ServiceError {
    /// Shorthand for [`ServiceError::InvalidArgument`].
    pub fn invalid(field: &'static str, reason: impl Into<String>) -> Self {
        Self::InvalidArgument {
            field,
            reason: reason.into(),
        }
    }
}

impl From<StoreError> for ServiceError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => Self::NotFound(what),
            StoreError::AlreadyExists(what) => Self::AlreadyExists(what),
            StoreError::Precondition(why) => Self::FailedPrecondition(why),
            other => Self::Unavailable(other),
        }
    }
}
