//! The one place service errors become gRPC statuses. Internal causes are logged here and
//! answered with a generic message; callers get stable codes and reasons.

use crate::service::ServiceError;
use crate::service::error::OAuthError;
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// `ErrorInfo.domain` of every error identityd sends.
pub const ERROR_DOMAIN: &str = "identityd";

impl From<ServiceError> for Status {
    fn from(e: ServiceError) -> Self {
        let info = |code, message: String, reason: &str| {
            Status::with_error_details(
                code,
                message,
                ErrorDetails::with_error_info(reason, ERROR_DOMAIN, []),
            )
        };
        match e {
            ServiceError::InvalidArgument { field, reason } => Status::with_error_details(
                Code::InvalidArgument,
                format!("{field}: {reason}"),
                ErrorDetails::with_bad_request_violation(field, reason),
            ),
            ServiceError::NotFound(what) => {
                info(Code::NotFound, format!("{what} not found"), "not_found")
            }
            ServiceError::AlreadyExists(what) => info(
                Code::AlreadyExists,
                format!("{what} already exists"),
                "already_exists",
            ),
            ServiceError::FailedPrecondition(why) => {
                info(Code::FailedPrecondition, why, "failed_precondition")
            }
            ServiceError::Unauthenticated(failure) => info(
                Code::Unauthenticated,
                failure.message().into_owned(),
                failure.code(),
            ),
            ServiceError::PermissionDenied(why) => {
                info(Code::PermissionDenied, why, "missing_permission")
            }
            ServiceError::Unimplemented(what) => Status::unimplemented(what),
            ServiceError::OAuth(e) => {
                let code = match e {
                    OAuthError::InvalidClient | OAuthError::InvalidGrant => Code::Unauthenticated,
                    OAuthError::UnauthorizedClient => Code::PermissionDenied,
                    OAuthError::InvalidRequest(_)
                    | OAuthError::UnsupportedGrantType
                    | OAuthError::InvalidScope(_)
                    | OAuthError::UnsupportedTokenType => Code::InvalidArgument,
                };
                info(code, e.message(), e.code())
            }
            ServiceError::Overloaded(why) => {
                info(Code::ResourceExhausted, why.to_owned(), "overloaded")
            }
            ServiceError::Internal(detail) => {
                tracing::error!(error = %detail, "internal failure");
                info(Code::Internal, "internal error".into(), "internal")
            }
            ServiceError::Unavailable(source) => {
                tracing::error!(error = %source, cause = ?std::error::Error::source(&source), "storage failure");
                info(
                    Code::Unavailable,
                    "storage is unavailable; retry later".into(),
                    "unavailable",
                )
            }
        }
    }
}
