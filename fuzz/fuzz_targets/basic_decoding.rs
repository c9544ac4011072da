//! `Basic <base64(data)>`: every input is valid base64, so the fuzzer spends its time on
//! the decoded `user:token` part (UTF-8, control characters, colons, empty parts).
//! Invariants: those of `authorization_header`, plus: an accepted header is a Basic
//! credential whose username and token are exactly the decoded text split at its first
//! `:` (so a colon can only ever be in the token).
#![no_main]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use identityd::domain::credentials::Credential;
use libfuzzer_sys::fuzz_target;
use secrecy::ExposeSecret;

fuzz_target!(|data: &[u8]| {
    let header = format!("Basic {}", STANDARD.encode(data));
    match identityd_fuzz::parse_checked(&header) {
        Ok(Credential::Basic { username, token }) => {
            let decoded = std::str::from_utf8(data).expect("accepted non-UTF-8 credentials");
            let (user, secret) = decoded
                .split_once(':')
                .expect("accepted credentials without a colon");
            assert_eq!(
                username, user,
                "the username is not the part before the first colon"
            );
            assert!(
                token.expose_secret() == secret,
                "the token is not the part after the first colon"
            );
        }
        Ok(other) => panic!("a Basic header parsed as {other:?}"),
        Err(_) => {}
    }
});
