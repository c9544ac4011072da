//! The credential dispatcher: which verifier a credential goes to, decided by its scheme
//! and its shape alone (a JWT's structure, or a secret's prefix), never by trying
//! verifiers in turn.
//!
//! | scheme   | takes                                              |
//! |----------|----------------------------------------------------|
//! | `Basic`  | username + API token                               |
//! | `Bearer` | access tokens, app tokens, non-expiring tokens     |
//! | `JWT`    | access tokens of users                             |
//!
//! A credential of a kind we issue, under a scheme that does not take it, is a 401
//! `scheme_mismatch`; one of no known shape is `invalid_credentials`. Whether an access
//! token belongs to a user is known only once its session is read, so that last rule
//! is [`accepts_principal`], applied by the authenticator.

use super::access_token::looks_like_jwt;
use super::credentials::{Credential, Scheme};
use super::principal::PrincipalKind;
use super::secret::SecretKind;
use super::verdict::AuthFailure;
use secrecy::{ExposeSecret, SecretString};

/// A credential routed to its verifier. Secrets stay wrapped.
#[derive(Debug)]
pub enum Presented {
    /// `Basic`: a username and its API token.
    ApiToken {
        /// The user-id part of Basic.
        username: String,
        /// The API token.
        token: SecretString,
    },
    /// A signed access token under `Bearer` or `JWT`.
    AccessToken {
        /// Which of the two.
        scheme: Scheme,
        /// The JWT.
        token: SecretString,
    },
    /// A non-expiring token under `Bearer`.
    NonExpiringToken(SecretString),
    /// An app token under `Bearer`.
    AppToken(SecretString),
}

/// What a presented secret looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    Jwt,
    Secret(SecretKind),
    Unknown,
}

impl Shape {
    fn of(token: &SecretString) -> Self {
        let text = token.expose_secret();
        if looks_like_jwt(text) {
            return Self::Jwt;
        }
        SecretKind::of_shape(text).map_or(Self::Unknown, Self::Secret)
    }

    /// A credential of this shape refused under `scheme`.
    fn refused_under(self, scheme: Scheme) -> AuthFailure {
        let presented = match self {
            Self::Jwt => "signed access tokens",
            Self::Secret(kind) => kind.description(),
            Self::Unknown => return AuthFailure::Invalid { scheme },
        };
        AuthFailure::SchemeMismatch { scheme, presented }
    }
}

/// Routes a parsed credential by scheme and shape.
pub fn dispatch(credential: Credential) -> Result<Presented, AuthFailure> {
    match credential {
        Credential::Basic { username, token } => match Shape::of(&token) {
            Shape::Secret(SecretKind::ApiToken) => Ok(Presented::ApiToken { username, token }),
            other => Err(other.refused_under(Scheme::Basic)),
        },
        Credential::Token { scheme, token } => match (scheme, Shape::of(&token)) {
            (Scheme::Bearer | Scheme::Jwt, Shape::Jwt) => {
                Ok(Presented::AccessToken { scheme, token })
            }
            (Scheme::Bearer, Shape::Secret(SecretKind::NonExpiringToken)) => {
                Ok(Presented::NonExpiringToken(token))
            }
            (Scheme::Bearer, Shape::Secret(SecretKind::AppToken)) => Ok(Presented::AppToken(token)),
            (scheme, other) => Err(other.refused_under(scheme)),
        },
    }
}

/// The rule the shape cannot decide: `JWT` takes only users' access tokens (access
/// tokens belong to users or integrations).
pub fn accepts_principal(scheme: Scheme, kind: PrincipalKind) -> Result<(), AuthFailure> {
    if scheme == Scheme::Jwt && kind != PrincipalKind::User {
        return Err(AuthFailure::SchemeMismatch {
            scheme,
            presented: "access tokens of integrations",
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::credentials::parse_authorization;
    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD;

    const JWT: &str = "eyJhbGciOiJFZERTQSJ9.eyJzdWIiOiJ4In0.c2ln";

    /// The route a header takes: the credential kind, or the refusal's reason code.
    fn route(header: &str) -> &'static str {
        let credential = parse_authorization(header).unwrap();
        match dispatch(credential) {
            Ok(Presented::ApiToken { .. }) => "api_token",
            Ok(Presented::AccessToken { .. }) => "access_token",
            Ok(Presented::NonExpiringToken(_)) => "non_expiring_token",
            Ok(Presented::AppToken(_)) => "app_token",
            Err(failure) => failure.code(),
        }
    }

    fn basic(password: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("alice:{password}")))
    }

    #[test]
    fn every_scheme_and_shape() {
        let secret = |kind: SecretKind| kind.generate().expose_secret().to_owned();
        let api = secret(SecretKind::ApiToken);
        let app = secret(SecretKind::AppToken);
        let nx = secret(SecretKind::NonExpiringToken);
        let rt = secret(SecretKind::RefreshToken);
        let cs = secret(SecretKind::ClientSecret);
        let rows: Vec<(String, &str)> = vec![
            (basic(&api), "api_token"),
            (basic(&app), "scheme_mismatch"),
            (basic(&nx), "scheme_mismatch"),
            (basic(JWT), "scheme_mismatch"),
            (basic("hunter2"), "invalid_credentials"),
            (format!("Bearer {JWT}"), "access_token"),
            (format!("Bearer {app}"), "app_token"),
            (format!("Bearer {nx}"), "non_expiring_token"),
            (format!("Bearer {api}"), "scheme_mismatch"),
            (format!("Bearer {rt}"), "scheme_mismatch"),
            (format!("Bearer {cs}"), "scheme_mismatch"),
            (
                format!("Bearer {}", &app[..app.len() - 1]),
                "invalid_credentials",
            ),
            ("Bearer abc".into(), "invalid_credentials"),
            (format!("JWT {JWT}"), "access_token"),
            (format!("JWT {app}"), "scheme_mismatch"),
            (format!("JWT {nx}"), "scheme_mismatch"),
            (format!("JWT {api}"), "scheme_mismatch"),
            ("JWT abc".into(), "invalid_credentials"),
        ];
        for (header, expected) in rows {
            assert_eq!(route(&header), expected, "{header}");
        }
    }

    #[test]
    fn a_mismatch_says_what_was_presented() {
        let app = SecretKind::AppToken.generate();
        let header = format!("JWT {}", app.expose_secret());
        let failure = dispatch(parse_authorization(&header).unwrap()).unwrap_err();
        assert_eq!(
            failure.message(),
            "the JWT scheme does not accept app tokens"
        );
        assert!(!failure.message().contains(app.expose_secret()));
    }

    #[test]
    fn jwt_takes_only_users() {
        assert!(accepts_principal(Scheme::Jwt, PrincipalKind::User).is_ok());
        assert!(accepts_principal(Scheme::Bearer, PrincipalKind::Integration).is_ok());
        assert_eq!(
            accepts_principal(Scheme::Jwt, PrincipalKind::Integration)
                .unwrap_err()
                .code(),
            "scheme_mismatch"
        );
    }
}
