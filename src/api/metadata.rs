//! Reading the caller's credential from gRPC metadata.

use crate::domain::verdict::AuthFailure;
use crate::service::ServiceError;

/// The caller's `authorization` metadata value; empty when absent. Several values, or a
/// value that is not visible ASCII, are refused rather than guessed at.
pub fn authorization<T>(request: &tonic::Request<T>) -> Result<&str, ServiceError> {
    let malformed = |detail| {
        ServiceError::Unauthenticated(AuthFailure::Malformed {
            scheme: None,
            detail,
        })
    };
    let mut values = request.metadata().get_all("authorization").iter();
    let Some(first) = values.next() else {
        return Ok("");
    };
    if values.next().is_some() {
        return Err(malformed("more than one authorization value was sent"));
    }
    first
        .to_str()
        .map_err(|_| malformed("the authorization value is not visible ASCII"))
}
