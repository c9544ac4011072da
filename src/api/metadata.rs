//! Reading the caller's credential and origin from gRPC metadata.

use crate::domain::audit::{Actor, Origin};
use crate::domain::guessing::source_key;
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

/// Where a request comes from, for the audit log and guessing limits: the caller's
/// `x-request-id`, and the end client's address. `client_address` is the address the
/// calling service passed in the request (empty for none); without one, the request's
/// own peer is recorded as the source but not counted as a client, since a service
/// calling for many clients must not lock them out together. `peer_is_client` says the
/// peer is the client itself (an operator calling Admin), so it is counted.
pub fn origin<T>(
    request: &tonic::Request<T>,
    client_address: &str,
    peer_is_client: bool,
) -> Result<Origin, ServiceError> {
    let request_id = match request.metadata().get("x-request-id") {
        None => String::new(),
        Some(value) => value
            .to_str()
            .ok()
            .filter(|v| !v.is_empty() && v.len() <= MAX_REQUEST_ID)
            .filter(|v| v.bytes().all(|b| b.is_ascii_graphic()))
            .ok_or_else(|| {
                ServiceError::invalid("x-request-id", "must be 1 to 128 visible ASCII characters")
            })?
            .to_owned(),
    };
    let peer = request.remote_addr().map(|a| a.ip().to_string());
    let (source, counted) = if client_address.is_empty() {
        let counted = peer.clone().filter(|_| peer_is_client);
        (peer.unwrap_or_default(), counted)
    } else {
        (client_address.to_owned(), Some(client_address.to_owned()))
    };
    let client_address = match counted {
        None => None,
        Some(address) => Some(source_key(&address).ok_or_else(|| {
            ServiceError::invalid("client_address", "must be an IPv4 or IPv6 address")
        })?),
    };
    Ok(Origin {
        actor: Actor::anonymous(),
        source,
        client_address,
        request_id,
    })
}
