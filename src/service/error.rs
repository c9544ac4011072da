//! The service layer's one error type. `api::status` maps it to gRPC in one place.

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
