//! Machine-generated secrets: generation, shape and digest.
//!
//! Each secret is 256 random bits behind a prefix naming its kind (`idt_api_…`), so the
//! authenticator can route a credential by its shape and secret scanners can find leaks.
//! High-entropy secrets need no slow hash: they are stored as SHA-256 digests.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest as _, Sha256};
use std::fmt;
use subtle::ConstantTimeEq;

/// Random bytes in every generated secret.
const SECRET_BYTES: usize = 32;
/// Length of 32 bytes in unpadded base64url.
const ENCODED_LEN: usize = 43;

/// The kinds of generated secret, each with its own prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    /// A user's API token, used as the password of HTTP Basic.
    ApiToken,
    /// An integration's client secret (`client_credentials` grant).
    ClientSecret,
    /// A refresh token: works once, in `RefreshToken`.
    RefreshToken,
    /// A CSRF token bound to a refresh token.
    CsrfToken,
    /// A non-expiring access token (scope `no_expiry`): opaque and stored, under Bearer.
    NonExpiringToken,
    /// A named token of an app, under Bearer.
    AppToken,
}

impl SecretKind {
    /// The prefix every secret of this kind starts with.
    pub fn prefix(self) -> &'static str {
        match self {
            Self::ApiToken => "idt_api_",
            Self::ClientSecret => "idt_cs_",
            Self::RefreshToken => "idt_rt_",
            Self::CsrfToken => "idt_csrf_",
            Self::NonExpiringToken => "idt_nx_",
            Self::AppToken => "idt_app_",
        }
    }

    /// Every kind, for recognising a secret by its shape.
    pub const ALL: [Self; 6] = [
        Self::ApiToken,
        Self::ClientSecret,
        Self::RefreshToken,
        Self::CsrfToken,
        Self::NonExpiringToken,
        Self::AppToken,
    ];

    /// The kind `candidate` has the exact shape of, if any.
    pub fn of_shape(candidate: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|k| k.matches_shape(candidate))
    }

    /// What people call a secret of this kind, for messages.
    pub fn description(self) -> &'static str {
        match self {
            Self::ApiToken => "API tokens",
            Self::ClientSecret => "client secrets",
            Self::RefreshToken => "refresh tokens",
            Self::CsrfToken => "CSRF tokens",
            Self::NonExpiringToken => "non-expiring tokens",
            Self::AppToken => "app tokens",
        }
    }

    /// Generates a fresh secret of this kind.
    pub fn generate(self) -> SecretString {
        let mut bytes = [0u8; SECRET_BYTES];
        rand::fill(&mut bytes);
        SecretString::from(format!(
            "{}{}",
            self.prefix(),
            URL_SAFE_NO_PAD.encode(bytes)
        ))
    }

    /// True when `candidate` has exactly the shape of a secret of this kind. Checked before
    /// any lookup, so garbage never costs a database round trip.
    pub fn matches_shape(self, candidate: &str) -> bool {
        candidate.strip_prefix(self.prefix()).is_some_and(|body| {
            body.len() == ENCODED_LEN
                && body
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
    }
}

/// SHA-256 of a secret: what is stored and what caches are keyed by.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct SecretDigest([u8; 32]);

impl SecretDigest {
    /// Digests a secret.
    pub fn of(secret: &SecretString) -> Self {
        Self(Sha256::digest(secret.expose_secret().as_bytes()).into())
    }

    /// Digests several parts as one, without joining them in memory first. Each part
    /// goes in after its length, so no two lists of parts share a digest (`["ab", "c"]`
    /// is not `["a", "bc"]`): parts need no separators.
    pub fn of_parts(parts: &[&[u8]]) -> Self {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part);
        }
        Self(hasher.finalize().into())
    }

    /// Rebuilds a digest read from storage; `None` if it has the wrong length.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok().map(Self)
    }

    /// The raw bytes, for storage.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Constant-time equality, for comparing a presented secret with a stored one.
    pub fn ct_eq(&self, other: &Self) -> bool {
        self.0.ct_eq(&other.0).into()
    }

    /// A short, non-secret handle for logs and credential ids: the first 8 hex digits.
    pub fn short_id(&self) -> String {
        hex::encode(&self.0[..4])
    }
}

impl fmt::Debug for SecretDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretDigest({}…)", self.short_id())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parts_are_digested_unambiguously() {
        let digest = |parts: &[&str]| {
            let parts: Vec<&[u8]> = parts.iter().map(|p| p.as_bytes()).collect();
            SecretDigest::of_parts(&parts)
        };
        assert_eq!(digest(&["bob", "1.2.3.4"]), digest(&["bob", "1.2.3.4"]));
        assert_ne!(digest(&["bob1", ".2.3.4"]), digest(&["bob", "1.2.3.4"]));
        assert_ne!(digest(&["ab", ""]), digest(&["a", "b"]));
        assert_ne!(digest(&["ab"]), digest(&["ab", ""]));
    }

    #[test]
    fn generated_tokens_have_the_shape_and_differ() {
        let a = SecretKind::ApiToken.generate();
        let b = SecretKind::ApiToken.generate();
        assert!(SecretKind::ApiToken.matches_shape(a.expose_secret()));
        assert_ne!(a.expose_secret(), b.expose_secret());
        assert_eq!(a.expose_secret().len(), "idt_api_".len() + ENCODED_LEN);
    }

    #[test]
    fn every_kind_has_its_own_prefix() {
        for a in SecretKind::ALL {
            let secret = a.generate();
            assert_eq!(SecretKind::of_shape(secret.expose_secret()), Some(a));
            for b in SecretKind::ALL {
                assert_eq!(
                    b.matches_shape(secret.expose_secret()),
                    a == b,
                    "{a:?} {b:?}"
                );
            }
        }
    }

    #[test]
    fn shape_rejects_near_misses() {
        let good = SecretKind::ApiToken.generate();
        let good = good.expose_secret();
        let shape = |s: &str| SecretKind::ApiToken.matches_shape(s);
        assert!(!shape(&good[1..]));
        assert!(!shape(&format!("{good}A")));
        assert!(!shape(&good.replace("idt_api_", "idt_xyz_")));
        assert!(!shape(&format!("{}+", &good[..good.len() - 1])));
        assert!(!shape(""));
    }

    #[test]
    fn digest_is_stable_and_compares() {
        let s = SecretString::from("idt_api_x");
        let d = SecretDigest::of(&s);
        assert!(d.ct_eq(&SecretDigest::of(&SecretString::from("idt_api_x"))));
        assert!(!d.ct_eq(&SecretDigest::of(&SecretString::from("idt_api_y"))));
        assert_eq!(SecretDigest::from_slice(d.as_bytes()), Some(d));
        assert_eq!(SecretDigest::from_slice(&[1, 2]), None);
        assert!(!format!("{d:?}").contains(&hex::encode(d.as_bytes())));
    }
}
