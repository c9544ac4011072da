//! Verdicts: allow, 401 or 403, with stable reason codes and the `WWW-Authenticate`
//! challenge RFC 7617 / RFC 6750 prescribe.

use super::credentials::{ParseError, Scheme};
use super::permissions::{Permission, PermissionSet};
use super::principal::Authenticated;
use std::borrow::Cow;

/// Why a credential was not accepted (a 401).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No credential was presented.
    Missing,
    /// The header could not be read.
    Malformed {
        /// The scheme, when recognised.
        scheme: Option<Scheme>,
        /// What is wrong (never echoes input).
        detail: &'static str,
    },
    /// A scheme identityd does not accept.
    UnsupportedScheme,
    /// Well-formed, but no such credential is valid now.
    Invalid {
        /// The scheme it was presented with.
        scheme: Scheme,
    },
    /// A genuine credential whose lifetime is over.
    Expired {
        /// The scheme it was presented with.
        scheme: Scheme,
    },
    /// A non-expiring token past the date by which it had to be regenerated (tokens
    /// with `decrypt`: every 90 days).
    RegenerationRequired {
        /// The scheme it was presented with.
        scheme: Scheme,
    },
    /// A genuine credential whose session was ended (revoked, logged out, password
    /// changed, owner disabled or deleted).
    Revoked {
        /// The scheme it was presented with.
        scheme: Scheme,
    },
    /// A credential of a kind the scheme does not take (an app token under `JWT`, an
    /// API token under `Bearer`…). Decided by shape, before any lookup.
    SchemeMismatch {
        /// The scheme it was presented with.
        scheme: Scheme,
        /// What was presented, plural, for the message (e.g. "app tokens").
        presented: &'static str,
    },
    /// A genuine credential whose principal is deactivated for now: an app, or the
    /// user an app is attached to.
    Disabled {
        /// The scheme it was presented with.
        scheme: Scheme,
    },
}

impl From<ParseError> for AuthFailure {
    fn from(e: ParseError) -> Self {
        match e {
            ParseError::Missing => Self::Missing,
            ParseError::UnsupportedScheme => Self::UnsupportedScheme,
            ParseError::Malformed { scheme, detail } => Self::Malformed { scheme, detail },
        }
    }
}

impl AuthFailure {
    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing => "missing_credentials",
            Self::Malformed { .. } => "malformed_credentials",
            Self::UnsupportedScheme => "unsupported_scheme",
            Self::Invalid { .. } => "invalid_credentials",
            Self::Expired { .. } => "expired",
            Self::Revoked { .. } => "revoked",
            Self::RegenerationRequired { .. } => "regeneration_required",
            Self::SchemeMismatch { .. } => "scheme_mismatch",
            Self::Disabled { .. } => "disabled",
        }
    }

    /// A short explanation for people. Never contains input.
    pub fn message(&self) -> Cow<'static, str> {
        Cow::Borrowed(match self {
            Self::Missing => "no credentials were presented",
            Self::Malformed { detail, .. } => detail,
            Self::SchemeMismatch { scheme, presented } => {
                return Cow::Owned(format!(
                    "the {} scheme does not accept {presented}",
                    scheme.as_str()
                ));
            }
            Self::Disabled { .. } => "the app, or the user it is attached to, is deactivated",
            Self::UnsupportedScheme => "the authorization scheme is not supported",
            Self::Invalid { .. } => "the credentials are not valid",
            Self::Expired { .. } => "the credentials have expired",
            Self::Revoked { .. } => "the credentials have been revoked",
            Self::RegenerationRequired { .. } => {
                "the token is past its regeneration date; issue a new one"
            }
        })
    }

    /// The `WWW-Authenticate` value to answer the 401 with.
    pub fn challenge(&self, realm: &str) -> String {
        let basic = format!("Basic realm=\"{realm}\", charset=\"UTF-8\"");
        let bearer = |scheme: Scheme, error: &str| {
            format!("{} realm=\"{realm}\", error=\"{error}\"", scheme.as_str())
        };
        match *self {
            // No usable scheme: offer every scheme (RFC 9110 §11.6.1 allows a list).
            Self::Missing | Self::UnsupportedScheme | Self::Malformed { scheme: None, .. } => {
                format!("{basic}, Bearer realm=\"{realm}\"")
            }
            Self::Malformed {
                scheme: Some(Scheme::Basic),
                ..
            }
            | Self::Invalid {
                scheme: Scheme::Basic,
            }
            | Self::SchemeMismatch {
                scheme: Scheme::Basic,
                ..
            } => basic,
            Self::Malformed {
                scheme: Some(s), ..
            } => bearer(s, "invalid_request"),
            Self::Invalid { scheme }
            | Self::Expired { scheme }
            | Self::Revoked { scheme }
            | Self::RegenerationRequired { scheme }
            | Self::SchemeMismatch { scheme, .. }
            | Self::Disabled { scheme } => bearer(scheme, "invalid_token"),
        }
    }
}

/// The decision on one check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Every required permission is granted.
    Allow,
    /// No valid credential.
    Unauthenticated(AuthFailure),
    /// Valid credential, but the principal does not hold these required permissions.
    MissingPermission(Vec<Permission>),
    /// The principal is an app that holds these required permissions, but the user it
    /// is attached to does not.
    AttachedUserMissingPermission {
        /// The attached user's username, for the message.
        username: String,
        /// The required permissions the user lacks.
        missing: Vec<Permission>,
    },
    /// The principal holds every required permission, but the credential's scopes do
    /// not cover these.
    InsufficientScope {
        /// The required permissions the scopes do not cover.
        missing: Vec<Permission>,
        /// Scopes that would cover them, for the challenge.
        scopes: Vec<String>,
    },
    /// Valid credential, but no route-policy rule covers the request and uncovered
    /// routes are denied.
    UncoveredRoute,
}

impl Decision {
    /// The HTTP status the caller should answer with.
    pub fn http_status(&self) -> u16 {
        match self {
            Self::Allow => 200,
            Self::Unauthenticated(_) => 401,
            Self::MissingPermission(_)
            | Self::AttachedUserMissingPermission { .. }
            | Self::InsufficientScope { .. }
            | Self::UncoveredRoute => 403,
        }
    }

    /// The stable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Allow => "ok",
            Self::Unauthenticated(f) => f.code(),
            Self::MissingPermission(_) => "missing_permission",
            Self::AttachedUserMissingPermission { .. } => "attached_user_missing_permission",
            Self::InsufficientScope { .. } => "insufficient_scope",
            Self::UncoveredRoute => "uncovered_route",
        }
    }

    /// The required permissions that are not granted, as the decision names them.
    pub fn missing(&self) -> &[Permission] {
        match self {
            Self::MissingPermission(missing)
            | Self::AttachedUserMissingPermission { missing, .. }
            | Self::InsufficientScope { missing, .. } => missing,
            Self::Allow | Self::Unauthenticated(_) | Self::UncoveredRoute => &[],
        }
    }

    /// A short explanation for people; empty when allowed. Never contains input.
    pub fn message(&self) -> Cow<'static, str> {
        let missing = || {
            let names: Vec<String> = self.missing().iter().map(ToString::to_string).collect();
            names.join(", ")
        };
        match self {
            Self::Allow => Cow::Borrowed(""),
            Self::Unauthenticated(failure) => failure.message(),
            Self::MissingPermission(_) => format!("missing permission {}", missing()).into(),
            Self::AttachedUserMissingPermission { username, .. } => format!(
                "the app's attached user {username} lacks permission {}",
                missing()
            )
            .into(),
            Self::InsufficientScope { scopes, .. } => format!(
                "the token's scopes do not cover {}; it needs scope {}",
                missing(),
                scopes.join(" ")
            )
            .into(),
            Self::UncoveredRoute => {
                Cow::Borrowed("no route-policy rule covers this method and path")
            }
        }
    }
}

/// The `WWW-Authenticate` value for a 403 `insufficient_scope` (RFC 6750 §3.1). The
/// `scope` attribute is left out when no scope would help.
pub fn insufficient_scope_challenge(scheme: Scheme, realm: &str, scopes: &[String]) -> String {
    let challenge = format!(
        "{} realm=\"{realm}\", error=\"insufficient_scope\"",
        scheme.as_str()
    );
    if scopes.is_empty() {
        return challenge;
    }
    format!("{challenge}, scope=\"{}\"", scopes.join(" "))
}

/// Decides a check from the authentication outcome and the permissions required. What
/// the principal lacks is `missing_permission`; what it holds but the credential's scopes
/// do not cover is `insufficient_scope`, naming the scopes `scopes_for` suggests.
pub fn decide(
    authn: Result<&Authenticated, AuthFailure>,
    required: &[Permission],
    scopes_for: impl FnOnce(&[Permission]) -> Vec<String>,
) -> Decision {
    let a = match authn {
        Err(failure) => return Decision::Unauthenticated(failure),
        Ok(a) => a,
    };
    let lacking = |held: &PermissionSet| -> Vec<Permission> {
        held.missing(required).into_iter().cloned().collect()
    };
    let missing = lacking(&a.permissions);
    if !missing.is_empty() {
        return Decision::MissingPermission(missing);
    }
    if let (Some(held), Some(user)) = (&a.attached_permissions, &a.principal.attached_user) {
        let missing = lacking(held);
        if !missing.is_empty() {
            return Decision::AttachedUserMissingPermission {
                username: user.username.clone(),
                missing,
            };
        }
    }
    match &a.scope_ceiling {
        Some(ceiling) => {
            let missing = lacking(ceiling);
            if missing.is_empty() {
                Decision::Allow
            } else {
                let scopes = scopes_for(&missing);
                Decision::InsufficientScope { missing, scopes }
            }
        }
        None => Decision::Allow,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::principal::{AttachedUser, CredentialKind, Principal, PrincipalKind};
    use std::sync::Arc;

    fn p(s: &str) -> Permission {
        Permission::parse(s).unwrap()
    }

    fn user_with(perms: &[&str]) -> Authenticated {
        Authenticated {
            principal: Principal {
                kind: PrincipalKind::User,
                id: "u1".into(),
                name: "alice".into(),
                is_staff: false,
                is_customer: true,
                attached_user: None,
                scheme: Scheme::Basic,
                credential_kind: CredentialKind::ApiToken,
                credential_id: "api_token:u1".into(),
                session_id: None,
                expires_at: None,
                scopes: Vec::new(),
            },
            permissions: Arc::new(perms.iter().map(|s| p(s)).collect::<PermissionSet>()),
            scope_ceiling: None,
            attached_permissions: None,
        }
    }

    /// Authentication outcome, permissions asked for, expected status and reason.
    type Row<'a> = (
        Result<&'a Authenticated, AuthFailure>,
        Vec<Permission>,
        u16,
        &'a str,
    );

    #[test]
    fn decision_table() {
        let reader = user_with(&["orders:read"]);
        let rows: Vec<Row> = vec![
            (Ok(&reader), vec![p("orders:read")], 200, "ok"),
            (
                Ok(&reader),
                vec![p("orders:read"), p("orders:write")],
                403,
                "missing_permission",
            ),
            (
                Err(AuthFailure::Missing),
                vec![p("orders:read")],
                401,
                "missing_credentials",
            ),
            (
                Err(AuthFailure::UnsupportedScheme),
                vec![],
                401,
                "unsupported_scheme",
            ),
            (
                Err(AuthFailure::Invalid {
                    scheme: Scheme::Basic,
                }),
                vec![],
                401,
                "invalid_credentials",
            ),
        ];
        for (authn, required, status, code) in rows {
            let d = decide(authn, &required, |_| Vec::new());
            assert_eq!((d.http_status(), d.code()), (status, code), "{d:?}");
        }
        assert_eq!(
            decide(Ok(&reader), &[p("orders:write")], |_| Vec::new()),
            Decision::MissingPermission(vec![p("orders:write")])
        );
    }

    #[test]
    fn scopes_narrow_what_the_principal_holds() {
        let mut clerk = user_with(&["orders:*", "products:read"]);
        clerk.scope_ceiling = Some(Arc::new(
            [p("orders:read"), p("order_statuses:read")]
                .into_iter()
                .collect(),
        ));
        let suggest = |missing: &[Permission]| missing.iter().map(|m| format!("for {m}")).collect();
        assert_eq!(
            decide(Ok(&clerk), &[p("orders:read")], suggest),
            Decision::Allow
        );
        assert_eq!(
            decide(Ok(&clerk), &[p("orders:read"), p("orders:write")], suggest),
            Decision::InsufficientScope {
                missing: vec![p("orders:write")],
                scopes: vec!["for orders:write".into()],
            }
        );
        // What the principal itself lacks is reported as such, whatever the scopes.
        assert_eq!(
            decide(Ok(&clerk), &[p("customers:read")], suggest),
            Decision::MissingPermission(vec![p("customers:read")])
        );
        assert_eq!(
            clerk
                .effective_permissions()
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>(),
            ["orders:read"]
        );
        assert_eq!(
            insufficient_scope_challenge(Scheme::Bearer, "identityd", &["orders".into()]),
            r#"Bearer realm="identityd", error="insufficient_scope", scope="orders""#
        );
    }

    #[test]
    fn an_attached_user_bounds_an_app() {
        let mut app = user_with(&["orders:*"]);
        app.principal.kind = PrincipalKind::App;
        app.principal.attached_user = Some(AttachedUser {
            id: "u2".into(),
            username: "bob".into(),
            is_staff: false,
        });
        app.attached_permissions = Some(Arc::new([p("orders:read")].into_iter().collect()));
        let none = |_: &[Permission]| Vec::new();
        assert_eq!(decide(Ok(&app), &[p("orders:read")], none), Decision::Allow);
        assert!(app.may(&p("orders:read")) && !app.may(&p("orders:write")));
        // What the user lacks is told apart from what the app itself lacks.
        assert_eq!(
            decide(Ok(&app), &[p("orders:write")], none),
            Decision::AttachedUserMissingPermission {
                username: "bob".into(),
                missing: vec![p("orders:write")],
            }
        );
        assert_eq!(
            decide(Ok(&app), &[p("products:read")], none),
            Decision::MissingPermission(vec![p("products:read")])
        );
        let effective: Vec<String> = app
            .effective_permissions()
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(effective, ["orders:read"]);
    }

    #[test]
    fn scheme_mismatch_names_both_sides() {
        let jwt = AuthFailure::SchemeMismatch {
            scheme: Scheme::Jwt,
            presented: "app tokens",
        };
        assert_eq!(jwt.code(), "scheme_mismatch");
        assert_eq!(jwt.message(), "the JWT scheme does not accept app tokens");
        assert_eq!(
            jwt.challenge("r"),
            r#"JWT realm="r", error="invalid_token""#
        );
        let basic = AuthFailure::SchemeMismatch {
            scheme: Scheme::Basic,
            presented: "app tokens",
        };
        assert!(basic.challenge("r").starts_with("Basic realm="));
    }

    #[test]
    fn challenges() {
        let r = "identityd";
        assert_eq!(
            AuthFailure::Invalid {
                scheme: Scheme::Basic
            }
            .challenge(r),
            r#"Basic realm="identityd", charset="UTF-8""#
        );
        assert_eq!(
            AuthFailure::Missing.challenge(r),
            r#"Basic realm="identityd", charset="UTF-8", Bearer realm="identityd""#
        );
        assert_eq!(
            AuthFailure::Invalid {
                scheme: Scheme::Bearer
            }
            .challenge(r),
            r#"Bearer realm="identityd", error="invalid_token""#
        );
        let malformed_bearer = AuthFailure::Malformed {
            scheme: Some(Scheme::Bearer),
            detail: "x",
        };
        assert_eq!(
            malformed_bearer.challenge(r),
            r#"Bearer realm="identityd", error="invalid_request""#
        );
    }
}
