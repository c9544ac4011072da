//! Invariants shared by the fuzz targets. A broken invariant panics, which libFuzzer
//! reports as a crash and saves the input under `fuzz/artifacts/<target>/`.

use identityd::domain::credentials::{
    Credential, MAX_HEADER_BYTES, ParseError, parse_authorization,
};
use secrecy::ExposeSecret;

/// Parses `header` and checks what any successful parse must satisfy. Returns the
/// credential so callers can go on with it.
pub fn parse_checked(header: &str) -> Result<Credential, ParseError> {
    let parsed = parse_authorization(header);
    if let Ok(credential) = &parsed {
        assert!(
            header.len() <= MAX_HEADER_BYTES,
            "accepted a header of {} bytes",
            header.len()
        );
        check_credential(credential);
    }
    parsed
}

/// What every credential the parser returns must look like.
pub fn check_credential(credential: &Credential) {
    match credential {
        Credential::Basic { username, token } => {
            assert!(!username.is_empty(), "Basic with an empty username");
            assert!(
                !username.contains(':'),
                "Basic username {username:?} has a colon"
            );
            assert!(
                !username.chars().any(char::is_control),
                "Basic username {username:?} has a control character"
            );
            let token = token.expose_secret();
            assert!(!token.is_empty(), "Basic with an empty token");
            assert!(
                !token.chars().any(char::is_control),
                "Basic token has a control character"
            );
        }
        Credential::Token { token, .. } => {
            // token68: 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
            let token = token.expose_secret();
            let body = token.trim_end_matches('=');
            assert!(!body.is_empty(), "token68 with an empty body: {token:?}");
            assert!(
                body.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b)),
                "token {token:?} is not token68"
            );
        }
    }
}
