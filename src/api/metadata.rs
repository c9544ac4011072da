//! Reading the caller's credential and origin from gRPC metadata.

use crate::domain::audit::{Actor, Origin, RequestId};
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

/// Longest `x-request-id` kept.
const MAX_REQUEST_ID: usize = 128;

/// Where a request comes from, for the audit log and guessing limits. `client_address`
/// is the end client's address the calling service passed in the request (empty for
/// none): anything but an IP address is INVALID_ARGUMENT. Without one, the request's own
/// peer counts as the client only when `peer_is_client` (an operator calling Admin): a
/// service calling for many clients must not have them locked out together. The
/// caller's `x-request-id` is kept when it is 1 to 128 visible ASCII characters, else
/// ignored (identityd makes one), so a forwarded junk header never fails a check.
pub fn origin<T>(
    request: &tonic::Request<T>,
    client_address: &str,
    peer_is_client: bool,
) -> Result<Origin, ServiceError> {
    let request_id = request
        .metadata()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID)
        .filter(|v| v.bytes().all(|b| b.is_ascii_graphic()))
        .map_or_else(RequestId::default, |v| RequestId::given(v.to_owned()));
    let peer = request.remote_addr().map(|a| a.ip());
    let client = match client_address {
        "" => peer.filter(|_| peer_is_client),
        given => Some(given.parse().map_err(|_| {
            ServiceError::invalid("client_address", "must be an IPv4 or IPv6 address")
        })?),
    };
    Ok(Origin {
        actor: Actor::anonymous(),
        client,
        peer,
        request_id,
    })
}
