//! Access tokens: the claims identityd signs (RFC 9068 profile) and the checks every
//! presented token must pass (RFC 8725). Signatures are checked in `service::keys`; this
//! module validates what the signature vouches for, against an injected clock.

use super::clock::UnixSeconds;
use serde::{Deserialize, Serialize};

/// The JOSE `typ` of access tokens (RFC 9068 §2.1).
pub const TOKEN_TYPE: &str = "at+jwt";
/// Largest JWT identityd considers; real ones are about 500 bytes.
pub const MAX_TOKEN_LEN: usize = 4096;
/// Clock skew tolerated between replicas, in seconds.
pub const LEEWAY: UnixSeconds = 30;

/// The claims of an access token. Deserialising is strict about types: a claim of the
/// wrong JSON type makes the whole token invalid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience (one value).
    pub aud: String,
    /// Subject: the user or integration id.
    pub sub: String,
    /// The client the token was issued to.
    pub client_id: String,
    /// Session id: revoking the session ends the token.
    pub sid: String,
    /// Unique token id.
    pub jti: String,
    /// Issued at.
    pub iat: UnixSeconds,
    /// Not before.
    pub nbf: UnixSeconds,
    /// Expiry.
    pub exp: UnixSeconds,
    /// Space-separated scopes (RFC 9068 §2.2.3); absent when the token has none, and
    /// then it carries its principal's full permissions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// Who may accept a token: the issuer and audience identityd signs for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenPolicy {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
}

/// Why a presented token was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRejection {
    /// Not a JWS identityd would issue: structure, header, algorithm, type, key id,
    /// signature or claim types are wrong.
    Invalid,
    /// `exp` has passed.
    Expired,
}

/// True when `token` has the compact JWS shape: three non-empty base64url segments. Lets
/// the authenticator route a credential by its shape, never by trial.
pub fn looks_like_jwt(token: &str) -> bool {
    let mut segments = 0;
    for segment in token.split('.') {
        segments += 1;
        let base64url = segment
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if segment.is_empty() || !base64url {
            return false;
        }
    }
    segments == 3 && token.len() <= MAX_TOKEN_LEN
}

/// True when a JOSE `typ` names an access token (compared as RFC 7515 §4.1.9 says: case
/// insensitive, `application/` optional).
pub fn is_access_token_type(typ: Option<&str>) -> bool {
    typ.is_some_and(|t| {
        let t = t.to_ascii_lowercase();
        t == TOKEN_TYPE || t.strip_prefix("application/") == Some(TOKEN_TYPE)
    })
}

impl AccessClaims {
    /// Checks issuer, audience and times. `now` comes from the service clock.
    pub fn check(&self, policy: &TokenPolicy, now: UnixSeconds) -> Result<(), TokenRejection> {
        let times_sane = self.iat <= self.exp && self.nbf <= self.exp;
        if self.iss != policy.issuer
            || self.aud != policy.audience
            || self.sub.is_empty()
            || self.sid.is_empty()
            || !times_sane
            || self.nbf > now + LEEWAY
            || self.iat > now + LEEWAY
        {
            return Err(TokenRejection::Invalid);
        }
        if now >= self.exp {
            return Err(TokenRejection::Expired);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> TokenPolicy {
        TokenPolicy {
            issuer: "identityd".into(),
            audience: "identityd".into(),
        }
    }

    fn claims(now: UnixSeconds) -> AccessClaims {
        AccessClaims {
            iss: "identityd".into(),
            aud: "identityd".into(),
            sub: "u1".into(),
            client_id: "public".into(),
            sid: "s1".into(),
            jti: "j1".into(),
            iat: now,
            nbf: now,
            exp: now + 600,
            scope: None,
        }
    }

    #[test]
    fn claim_checks() {
        let now = 1_800_000_000;
        let ok = claims(now);
        assert_eq!(ok.check(&policy(), now), Ok(()));
        assert_eq!(ok.check(&policy(), now + 599), Ok(()));
        assert_eq!(ok.check(&policy(), now + 600), Err(TokenRejection::Expired));
        // Scopes narrow what a token may do at check time; they do not invalidate it.
        let scoped = AccessClaims {
            scope: Some("read_orders".into()),
            ..ok.clone()
        };
        assert_eq!(scoped.check(&policy(), now), Ok(()));
        let invalid: Vec<AccessClaims> = vec![
            AccessClaims {
                iss: "evil".into(),
                ..ok.clone()
            },
            AccessClaims {
                aud: "other".into(),
                ..ok.clone()
            },
            AccessClaims {
                sub: String::new(),
                ..ok.clone()
            },
            AccessClaims {
                sid: String::new(),
                ..ok.clone()
            },
            AccessClaims {
                nbf: now + 120,
                ..ok.clone()
            },
            AccessClaims {
                iat: now + 120,
                ..ok.clone()
            },
            AccessClaims {
                iat: ok.exp + 1,
                ..ok.clone()
            },
        ];
        for c in invalid {
            assert_eq!(
                c.check(&policy(), now),
                Err(TokenRejection::Invalid),
                "{c:?}"
            );
        }
    }

    #[test]
    fn wrong_json_types_do_not_deserialize() {
        let good = serde_json::to_value(claims(1)).unwrap();
        assert!(serde_json::from_value::<AccessClaims>(good.clone()).is_ok());
        for (field, value) in [
            ("exp", serde_json::json!("2000000000")),
            ("sub", serde_json::json!(42)),
            ("aud", serde_json::json!(["identityd"])),
            ("iat", serde_json::json!(1.5)),
            ("sid", serde_json::Value::Null),
            ("scope", serde_json::json!(["orders"])),
        ] {
            let mut bad = good.clone();
            bad[field] = value;
            assert!(
                serde_json::from_value::<AccessClaims>(bad).is_err(),
                "{field}"
            );
        }
    }

    #[test]
    fn shapes_and_types() {
        assert!(looks_like_jwt("eyJh.eyJz.c2ln"));
        for bad in ["", "a.b", "a.b.c.d", "a..c", "a.b.c=", "a b.c.d"] {
            assert!(!looks_like_jwt(bad), "{bad}");
        }
        assert!(!looks_like_jwt(&format!(
            "a.{}.c",
            "b".repeat(MAX_TOKEN_LEN)
        )));
        assert!(is_access_token_type(Some("at+jwt")));
        assert!(is_access_token_type(Some("application/AT+JWT")));
        assert!(!is_access_token_type(Some("JWT")));
        assert!(!is_access_token_type(None));
    }
}
