//! Parse, then `dispatch`. The first byte picks how the rest becomes a header, so every
//! scheme is reached without the fuzzer having to find it: 0 raw, 1 `Basic base64(rest)`,
//! 2 `Bearer rest`, 3 `JWT rest` (the byte modulo 4).
//! Invariants: no panic; an `ApiToken` only comes from Basic with an API-token-shaped
//! token and the username unchanged; an `AccessToken` only from Bearer or JWT, with the
//! same scheme and a JWT-shaped token; a `NonExpiringToken` or `AppToken` only from
//! Bearer with a token of that shape; a refusal is `scheme_mismatch` for a token of a
//! known shape and `invalid_credentials` otherwise, names the presented scheme, and its
//! message never contains the token.
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use identityd::domain::access_token::looks_like_jwt;
use identityd::domain::credentials::{Credential, Scheme};
use identityd::domain::dispatch::{Presented, dispatch};
use identityd::domain::secret::SecretKind;
use identityd::domain::verdict::AuthFailure;
use libfuzzer_sys::fuzz_target;
use secrecy::ExposeSecret;

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let text = String::from_utf8_lossy(rest);
    let header = match mode % 4 {
        0 => text.into_owned(),
        1 => format!("Basic {}", STANDARD.encode(rest)),
        2 => format!("Bearer {text}"),
        _ => format!("JWT {text}"),
    };
    let Ok(credential) = identityd_fuzz::parse_checked(&header) else {
        return;
    };
    let scheme = credential.scheme();
    let (username, token) = match &credential {
        Credential::Basic { username, token } => {
            (Some(username.clone()), token.expose_secret().to_owned())
        }
        Credential::Token { token, .. } => (None, token.expose_secret().to_owned()),
    };
    let is = |kind: SecretKind| kind.matches_shape(&token);
    match dispatch(credential) {
        Ok(Presented::ApiToken {
            username: user,
            token: t,
        }) => {
            assert_eq!(scheme, Scheme::Basic, "an API token from {scheme:?}");
            assert_eq!(Some(user), username, "the username changed");
            assert!(t.expose_secret() == token, "the token changed");
            assert!(is(SecretKind::ApiToken), "an API token of another shape");
        }
        Ok(Presented::AccessToken {
            scheme: s,
            token: t,
        }) => {
            assert!(
                matches!(scheme, Scheme::Bearer | Scheme::Jwt),
                "an access token from {scheme:?}"
            );
            assert_eq!(s, scheme, "the scheme changed");
            assert!(t.expose_secret() == token, "the token changed");
            assert!(
                looks_like_jwt(&token),
                "an access token that does not look like a JWT"
            );
        }
        Ok(Presented::NonExpiringToken(t)) => {
            assert_eq!(
                scheme,
                Scheme::Bearer,
                "a non-expiring token from {scheme:?}"
            );
            assert!(t.expose_secret() == token, "the token changed");
            assert!(
                is(SecretKind::NonExpiringToken),
                "a non-expiring token of another shape"
            );
        }
        Ok(Presented::AppToken(t)) => {
            assert_eq!(scheme, Scheme::Bearer, "an app token from {scheme:?}");
            assert!(t.expose_secret() == token, "the token changed");
            assert!(is(SecretKind::AppToken), "an app token of another shape");
        }
        Err(failure) => {
            let shaped = looks_like_jwt(&token) || SecretKind::of_shape(&token).is_some();
            match failure {
                AuthFailure::SchemeMismatch { scheme: s, .. } => {
                    assert_eq!(s, scheme, "a mismatch naming another scheme");
                    assert!(shaped, "scheme_mismatch for a token of no known shape");
                }
                AuthFailure::Invalid { scheme: s } => {
                    assert_eq!(s, scheme, "a refusal naming another scheme");
                    assert!(!shaped, "invalid_credentials for a token of a known shape");
                }
                other => panic!("dispatch refused with {:?}", other.code()),
            }
            // Shaped tokens hold `_` or `.`, which no message has, so a short
            // coincidental substring cannot trip this.
            if shaped {
                assert!(
                    !failure.message().contains(&token),
                    "the message echoes the token"
                );
            }
        }
    }
});
