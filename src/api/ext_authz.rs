//! `envoy.service.auth.v3.Authorization`: Envoy's ext_authz (and Istio's `CUSTOM` action).
//! Envoy sends each proxied request's method, path and headers; the route policy decides,
//! and the answer tells Envoy what to forward upstream or what to send back.
//!
//! Every decision, denials and failures included, is an `Ok(CheckResponse)`: a gRPC
//! error would make Envoy apply its own `failure_mode_allow`, which may let the request
//! through.

use crate::domain::credentials::MAX_HEADER_BYTES;
use crate::domain::principal::{Principal, PrincipalKind};
use crate::domain::verdict::{AuthFailure, Decision, insufficient_scope_challenge};
use crate::ops::metrics::Verdicts;
use crate::service::ServiceError;
use crate::service::checks::{Checked, Checker, Target};
use envoy_types::ext_authz::v3::pb::{
    Authorization, CheckRequest, CheckResponse, DeniedHttpResponse, HeaderAppendAction,
    HeaderValue, HeaderValueOption, HttpResponse, HttpStatus, HttpStatusCode, OkHttpResponse,
};
use envoy_types::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use envoy_types::pb::google::rpc;
use std::sync::Arc;
use tonic::{Code, Request, Response, Status};

/// Name of the service, for health.
pub const SERVICE_NAME: &str = "envoy.service.auth.v3.Authorization";

/// The header carrying the credential; Envoy lowercases names, other callers may not.
const AUTHORIZATION: &str = "authorization";
/// Longest method and path accepted, as for `CheckPermission`.
const MAX_METHOD: usize = 16;
const MAX_REQUEST_PATH: usize = 8192;

/// Envoy ext_authz settings.
#[derive(Debug, Clone, clap::Args)]
pub struct ExtAuthzConfig {
    /// Prefix of the identity headers set on allowed requests: `<prefix>id`, `kind`,
    /// `name`, `scopes` and `credential-id`.
    #[arg(long, env = "IDENTITYD_EXT_AUTHZ_HEADER_PREFIX", default_value = "x-identity-",
          value_parser = parse_header_prefix)]
    pub ext_authz_header_prefix: String,
    /// Forward the `Authorization` header upstream; by default Envoy removes it once
    /// checked, so upstreams never see credentials.
    #[arg(long, env = "IDENTITYD_EXT_AUTHZ_KEEP_AUTHORIZATION")]
    pub ext_authz_keep_authorization: bool,
}

impl Default for ExtAuthzConfig {
    fn default() -> Self {
        Self {
            ext_authz_header_prefix: "x-identity-".into(),
            ext_authz_keep_authorization: false,
        }
    }
}

/// A prefix of lower-case letters, digits and `-`, short enough for any name built on it;
/// Envoy's own `x-envoy-` headers are not ours to set.
fn parse_header_prefix(s: &str) -> Result<String, String> {
    let ok = !s.is_empty()
        && s.len() <= 48
        && s.starts_with(|c: char| c.is_ascii_lowercase())
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        && !s.starts_with("x-envoy-");
    if ok {
        Ok(s.to_owned())
    } else {
        Err(
            "must be 1 to 48 characters from a-z, 0-9 and -, start with a letter, \
             and not start with x-envoy-"
                .into(),
        )
    }
}

/// Serves `envoy.service.auth.v3.Authorization`.
pub struct ExtAuthzApi {
    checker: Arc<Checker>,
    realm: String,
    /// Identity header names, in the order they are set.
    names: [String; 5],
    /// Their common prefix: any other header with it is the client's invention.
    prefix: String,
    remove_authorization: bool,
    verdicts: Verdicts,
}

/// The RPC's label in logs and metrics.
const RPC: &str = "ext_authz.Check";

/// Why a request is refused, as sent back to the client.
struct Denial {
    status: HttpStatusCode,
    reason: &'static str,
    message: String,
    challenge: Option<String>,
}

impl Denial {
    fn bad_request(message: impl Into<String>) -> Self {
        Self {
            status: HttpStatusCode::BadRequest,
            reason: "invalid_request",
            message: message.into(),
            challenge: None,
        }
    }

    /// Fail closed, and with a denial rather than an `error_response`, which Envoy's
    /// `failure_mode_allow` would turn into an allow.
    fn unavailable() -> Self {
        Self {
            status: HttpStatusCode::ServiceUnavailable,
            reason: "unavailable",
            message: "identityd could not decide; retry later".into(),
            challenge: None,
        }
    }

    fn forbidden(reason: &'static str, message: String) -> Self {
        Self {
            status: HttpStatusCode::Forbidden,
            reason,
            message,
            challenge: None,
        }
    }
}

impl ExtAuthzApi {
    /// Builds the service; `realm` goes into every challenge.
    pub fn new(checker: Arc<Checker>, realm: String, config: &ExtAuthzConfig) -> Self {
        let prefix = &config.ext_authz_header_prefix;
        Self {
            checker,
            realm,
            names: ["id", "kind", "name", "scopes", "credential-id"]
                .map(|n| format!("{prefix}{n}")),
            prefix: prefix.to_ascii_lowercase(),
            remove_authorization: !config.ext_authz_keep_authorization,
            verdicts: Verdicts::default(),
        }
    }

    /// Counts every verdict in `verdicts` (none are counted otherwise).
    pub fn with_verdicts(mut self, verdicts: Verdicts) -> Self {
        self.verdicts = verdicts;
        self
    }

    /// The principal if the request may go on, else why not.
    async fn decide(&self, request: &CheckRequest) -> Result<Principal, Denial> {
        let http = request
            .attributes
            .as_ref()
            .and_then(|a| a.request.as_ref())
            .and_then(|r| r.http.as_ref())
            .ok_or_else(|| Denial::bad_request("the check carries no HTTP request"))?;
        if http.method.is_empty() || http.path.is_empty() {
            return Err(Denial::bad_request("the request has no method or path"));
        }
        if http.method.len() > MAX_METHOD || http.path.len() > MAX_REQUEST_PATH {
            return Err(Denial::bad_request("method or path is too long"));
        }
        let header = credential(http).map_err(|failure| self.unauthenticated(&failure))?;
        // The path keeps its query: the route policy ignores it, as for CheckPermission.
        let target = Target::Route {
            method: http.method.clone(),
            path: http.path.clone(),
        };
        let checked = match self.checker.check(header, &target).await {
            Ok(checked) => checked,
            Err(ServiceError::InvalidArgument { reason, .. }) => {
                return Err(Denial::bad_request(reason));
            }
            Err(e) => {
                tracing::error!(error = %e, "ext_authz check could not be decided; denied");
                return Err(Denial::unavailable());
            }
        };
        self.answer(checked)
    }

    /// The principal of an allowed check, else the denial the client gets: the same
    /// reasons and messages as `CheckPermission`.
    fn answer(&self, checked: Checked) -> Result<Principal, Denial> {
        let (outcome, decision) = (checked.outcome, checked.decision);
        let authenticated = outcome.as_ref().ok();
        if let Some(a) = authenticated {
            tracing::debug!(
                rpc = RPC,
                principal = %a.principal.id,
                credential = %a.principal.credential_id,
                reason = decision.code(),
                "checked"
            );
        } else {
            tracing::debug!(rpc = RPC, reason = decision.code(), "refused");
        }
        let forbidden = Denial::forbidden(decision.code(), decision.message().into_owned());
        Err(match &decision {
            Decision::Allow => {
                return authenticated
                    .map(|a| a.principal.clone())
                    .ok_or_else(Denial::unavailable);
            }
            Decision::Unauthenticated(failure) => self.unauthenticated(failure),
            Decision::InsufficientScope { scopes, .. } => Denial {
                challenge: authenticated
                    .map(|a| insufficient_scope_challenge(a.principal.scheme, &self.realm, scopes)),
                ..forbidden
            },
            _ => forbidden,
        })
    }

    fn unauthenticated(&self, failure: &AuthFailure) -> Denial {
        Denial {
            status: HttpStatusCode::Unauthorized,
            reason: failure.code(),
            message: failure.message().into_owned(),
            challenge: Some(failure.challenge(&self.realm)),
        }
    }

    /// Sets every identity header, overwriting what the client sent. A header with no
    /// value (an unscoped credential has no scopes) is removed instead: Envoy applies
    /// removals after sets, so a name is never both set and removed.
    fn allowed(&self, principal: &Principal, request: &CheckRequest) -> CheckResponse {
        let kind = match principal.kind {
            PrincipalKind::User => "user",
            PrincipalKind::Integration => "integration",
            PrincipalKind::App => "app",
        };
        let values = [
            principal.id.clone(),
            kind.to_owned(),
            principal.name.clone(),
            principal.scopes.join(" "),
            principal.credential_id.clone(),
        ];
        let mut headers = Vec::new();
        let mut headers_to_remove = Vec::new();
        if self.remove_authorization {
            headers_to_remove.push(AUTHORIZATION.to_owned());
        }
        for (name, value) in self.names.iter().zip(values) {
            // Names and ids are validated, so this only guards against a future change.
            if value.is_empty() || !value.bytes().all(|b| (b' '..=b'~').contains(&b)) {
                headers_to_remove.push(name.clone());
            } else {
                headers.push(overwrite(name, value));
            }
        }
        // A client's own header under the identity prefix (`x-identity-role`) must not
        // reach the upstream looking like ours.
        for name in request_header_names(request) {
            let name = name.to_ascii_lowercase();
            let ours = self.names.iter().any(|n| n.eq_ignore_ascii_case(&name));
            if name.starts_with(&self.prefix) && !ours && !headers_to_remove.contains(&name) {
                headers_to_remove.push(name);
            }
        }
        CheckResponse {
            status: Some(rpc::Status {
                code: Code::Ok as i32,
                ..Default::default()
            }),
            http_response: Some(HttpResponse::OkResponse(OkHttpResponse {
                headers,
                headers_to_remove,
                ..Default::default()
            })),
            dynamic_metadata: None,
        }
    }
}

/// The status and headers of a denial, with a JSON body naming the reason.
fn denied(denial: Denial) -> CheckResponse {
    let body = serde_json::json!({"error": denial.reason, "message": denial.message});
    let mut headers = vec![overwrite("content-type", "application/json".into())];
    if let Some(challenge) = denial.challenge {
        headers.push(overwrite("www-authenticate", challenge));
    }
    CheckResponse {
        status: Some(rpc::Status {
            code: Code::PermissionDenied as i32,
            message: denial.reason.into(),
            details: Vec::new(),
        }),
        http_response: Some(HttpResponse::DeniedResponse(DeniedHttpResponse {
            status: Some(HttpStatus {
                code: denial.status.into(),
            }),
            headers,
            body: body.to_string(),
        })),
        dynamic_metadata: None,
    }
}

/// A header that replaces any of the same name. `append_action` says so to Envoys that
/// read it; older ones read the unset `append` as false, which also replaces. Setting
/// both is refused by some Envoy versions.
fn overwrite(name: &str, value: String) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(HeaderValue {
            key: name.to_owned(),
            value,
            raw_value: Vec::new(),
        }),
        append_action: HeaderAppendAction::OverwriteIfExistsOrAdd.into(),
        ..Default::default()
    }
}

/// The request's one credential: `""` when there is none. Several (repeated headers,
/// in the map or the raw list, or values Envoy joined with `,`) are refused, never
/// picked from.
fn credential(http: &HttpRequest) -> Result<&str, AuthFailure> {
    let malformed = |detail| AuthFailure::Malformed {
        scheme: None,
        detail,
    };
    let in_map = http
        .headers
        .iter()
        .filter(|(key, _)| key.eq_ignore_ascii_case(AUTHORIZATION))
        .map(|(_, value)| Ok(value.as_str()));
    // With `encode_raw_headers`, Envoy sends this list instead of the map.
    let in_list = http
        .header_map
        .iter()
        .flat_map(|map| &map.headers)
        .filter(|h| h.key.eq_ignore_ascii_case(AUTHORIZATION))
        .map(raw_value);
    let mut values = in_map.chain(in_list);
    let Some(first) = values.next() else {
        return Ok("");
    };
    if values.next().is_some() {
        return Err(malformed("more than one credential was presented"));
    }
    let value = first?;
    if value.len() > MAX_HEADER_BYTES {
        return Err(malformed("the header is too long"));
    }
    // A credential never contains a comma, so each comma-separated part that starts
    // with a scheme is a credential of its own.
    let schemes = value
        .split(',')
        .filter(|part| {
            let mut words = part.split_whitespace();
            let (first, second) = (words.next(), words.next());
            matches!((first, second), (Some(scheme), Some(_)) if !scheme.contains('='))
        })
        .count();
    if schemes > 1 {
        return Err(malformed("more than one credential was presented"));
    }
    Ok(value)
}

/// The names of the headers the client sent, from the map or the raw list.
fn request_header_names(request: &CheckRequest) -> impl Iterator<Item = &str> {
    let http = request
        .attributes
        .as_ref()
        .and_then(|a| a.request.as_ref())
        .and_then(|r| r.http.as_ref());
    let in_map = http
        .into_iter()
        .flat_map(|h| h.headers.keys().map(String::as_str));
    let in_list = http
        .into_iter()
        .flat_map(|h| &h.header_map)
        .flat_map(|m| &m.headers)
        .map(|h| h.key.as_str());
    in_map.chain(in_list)
}

fn raw_value(header: &HeaderValue) -> Result<&str, AuthFailure> {
    let malformed = |detail| AuthFailure::Malformed {
        scheme: None,
        detail,
    };
    if header.raw_value.is_empty() {
        return Ok(&header.value);
    }
    if header.raw_value.len() > MAX_HEADER_BYTES {
        return Err(malformed("the header is too long"));
    }
    let raw = std::str::from_utf8(&header.raw_value)
        .map_err(|_| malformed("the authorization value is not visible ASCII"))?;
    if !header.value.is_empty() && header.value != raw {
        return Err(malformed("more than one credential was presented"));
    }
    Ok(raw)
}

#[tonic::async_trait]
impl Authorization for ExtAuthzApi {
    // `skip_all`: the request carries the credential.
    #[tracing::instrument(skip_all)]
    async fn check(
        &self,
        request: Request<CheckRequest>,
    ) -> Result<Response<CheckResponse>, Status> {
        let response = match self.decide(request.get_ref()).await {
            Ok(principal) => {
                self.verdicts.record(RPC, "ok");
                self.allowed(&principal, request.get_ref())
            }
            Err(denial) => {
                self.verdicts.record(RPC, denial.reason);
                denied(denial)
            }
        };
        Ok(Response::new(response))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::config::core::v3::HeaderMap;

    fn http(headers: &[(&str, &str)], list: &[(&str, &[u8])]) -> HttpRequest {
        HttpRequest {
            headers: headers
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            header_map: (!list.is_empty()).then(|| HeaderMap {
                headers: list
                    .iter()
                    .map(|(k, v)| HeaderValue {
                        key: (*k).to_owned(),
                        value: String::new(),
                        raw_value: v.to_vec(),
                    })
                    .collect(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn one_credential_or_none() {
        assert_eq!(credential(&http(&[], &[])), Ok(""));
        assert_eq!(
            credential(&http(&[("Authorization", "Basic YTpi")], &[])),
            Ok("Basic YTpi")
        );
        assert_eq!(
            credential(&http(&[], &[("authorization", b"Bearer x.y.z")])),
            Ok("Bearer x.y.z")
        );
        // A comma inside one credential is the parser's to refuse, not a second one.
        assert_eq!(
            credential(&http(&[("authorization", "Basic a,b")], &[])),
            Ok("Basic a,b")
        );
    }

    #[test]
    fn several_credentials_are_refused() {
        let refused = [
            http(&[("authorization", "Basic YTpi,Bearer x")], &[]),
            http(&[("authorization", "Basic YTpi, Bearer x")], &[]),
            http(
                &[
                    ("authorization", "Basic YTpi"),
                    ("AUTHORIZATION", "Basic YTpi"),
                ],
                &[],
            ),
            http(
                &[],
                &[
                    ("authorization", b"Basic YTpi"),
                    ("Authorization", b"Basic YTpi"),
                ],
            ),
            http(
                &[("authorization", "Basic YTpi")],
                &[("authorization", b"Basic YTpi")],
            ),
        ];
        for request in refused {
            let failure = credential(&request).unwrap_err();
            assert_eq!(failure.code(), "malformed_credentials");
            assert_eq!(failure.message(), "more than one credential was presented");
        }
        assert!(credential(&http(&[], &[("authorization", b"\xff\xfe")])).is_err());
        let long = format!("Basic {}", "A".repeat(MAX_HEADER_BYTES));
        assert!(credential(&http(&[("authorization", &long)], &[])).is_err());
    }

    #[test]
    fn header_prefixes() {
        assert!(parse_header_prefix("x-identity-").is_ok());
        assert!(parse_header_prefix("x-auth-").is_ok());
        for bad in [
            "",
            "X-Identity-",
            "x_identity_",
            "x-envoy-id-",
            "-x",
            ":x",
            "x y",
        ] {
            assert!(parse_header_prefix(bad).is_err(), "{bad:?}");
        }
    }
}
