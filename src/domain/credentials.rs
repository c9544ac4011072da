//! Strict parsing of the HTTP `Authorization` header (RFC 9110 §11.4 and §11.6.2,
//! RFC 7617 for Basic, RFC 6750 for Bearer).
//!
//! The parser never fails open: anything it cannot read exactly is a
//! [`ParseError`], which the caller turns into a 401.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use secrecy::SecretString;

/// Longest `Authorization` value accepted, in bytes. Real credentials are far shorter;
/// the bound keeps hostile input cheap to refuse.
pub const MAX_HEADER_BYTES: usize = 8 * 1024;

/// The authentication schemes identityd understands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    /// `Basic base64(username:api_token)` (RFC 7617).
    Basic,
    /// `Bearer <token>` (RFC 6750).
    Bearer,
    /// `JWT <user token>` (the marketplace origin).
    Jwt,
}

impl Scheme {
    /// The scheme's canonical spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Basic => "Basic",
            Self::Bearer => "Bearer",
            Self::Jwt => "JWT",
        }
    }

    fn from_name(name: &str) -> Option<Self> {
        // Scheme names are case-insensitive (RFC 9110 §11.1).
        [Self::Basic, Self::Bearer, Self::Jwt]
            .into_iter()
            .find(|s| s.as_str().eq_ignore_ascii_case(name))
    }
}

/// A credential read from the header. Secrets are wrapped so they never reach `Debug`.
#[derive(Debug)]
pub enum Credential {
    /// HTTP Basic: a username and its API token.
    Basic {
        /// The user-id part, before the first colon.
        username: String,
        /// The password part: everything after the first colon.
        token: SecretString,
    },
    /// `Bearer` or `JWT` with a token68 value.
    Token {
        /// Which of the two schemes carried it.
        scheme: Scheme,
        /// The token.
        token: SecretString,
    },
}

impl Credential {
    /// The scheme the credential was presented with.
    pub fn scheme(&self) -> Scheme {
        match self {
            Self::Basic { .. } => Scheme::Basic,
            Self::Token { scheme, .. } => *scheme,
        }
    }
}

/// Why a header could not be read. Each maps to one stable reason code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// No header, or only whitespace.
    Missing,
    /// A scheme other than Basic, Bearer or JWT.
    UnsupportedScheme,
    /// The header breaks the grammar; the detail says how (never echoing input).
    Malformed {
        /// The scheme, when it was recognised, so the challenge can name it.
        scheme: Option<Scheme>,
        /// What is wrong, for people.
        detail: &'static str,
    },
}

/// Parses a raw `Authorization` header value.
pub fn parse_authorization(header: &str) -> Result<Credential, ParseError> {
    let malformed = |scheme, detail| ParseError::Malformed { scheme, detail };
    if header.len() > MAX_HEADER_BYTES {
        return Err(malformed(None, "the header is too long"));
    }
    // Surrounding optional whitespace is not part of a field value (RFC 9110 §5.5).
    let value = header.trim_matches([' ', '\t']);
    if value.is_empty() {
        return Err(ParseError::Missing);
    }
    if value.chars().any(|c| c.is_control()) {
        return Err(malformed(None, "the header contains control characters"));
    }
    let (name, rest) = value.split_once(' ').unwrap_or((value, ""));
    if name.is_empty() || !name.bytes().all(is_tchar) {
        return Err(malformed(None, "the scheme is not a valid token"));
    }
    let scheme = Scheme::from_name(name).ok_or(ParseError::UnsupportedScheme)?;
    // 1*SP separates the scheme from its credentials.
    let param = rest.trim_start_matches(' ');
    if param.is_empty() {
        return Err(malformed(Some(scheme), "the scheme has no credentials"));
    }
    if !is_token68(param) {
        return Err(malformed(
            Some(scheme),
            "the credentials are not a single token68 value",
        ));
    }
    match scheme {
        Scheme::Basic => parse_basic(param),
        Scheme::Bearer | Scheme::Jwt => Ok(Credential::Token {
            scheme,
            token: SecretString::from(param),
        }),
    }
}

fn parse_basic(param: &str) -> Result<Credential, ParseError> {
    let malformed = |detail| ParseError::Malformed {
        scheme: Some(Scheme::Basic),
        detail,
    };
    // STANDARD is strict RFC 4648 §4: canonical padding, no stray trailing bits.
    let decoded = STANDARD
        .decode(param)
        .map_err(|_| malformed("the credentials are not valid base64"))?;
    let decoded = String::from_utf8(decoded)
        .map_err(|_| malformed("the decoded credentials are not UTF-8"))?;
    if decoded.chars().any(|c| c.is_control()) {
        return Err(malformed(
            "the decoded credentials contain control characters",
        ));
    }
    // The user-id cannot contain a colon; the password may (RFC 7617 §2).
    let (username, token) = decoded
        .split_once(':')
        .ok_or(malformed("the decoded credentials have no colon"))?;
    if username.is_empty() {
        return Err(malformed("the username is empty"));
    }
    if token.is_empty() {
        return Err(malformed("the token is empty"));
    }
    Ok(Credential::Basic {
        username: username.to_owned(),
        token: SecretString::from(token),
    })
}

/// `tchar` of RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// `token68` of RFC 9110 §11.2: `1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`.
fn is_token68(s: &str) -> bool {
    let body = s.trim_end_matches('=');
    !body.is_empty()
        && body
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~+/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn basic(raw: &[u8]) -> String {
        format!("Basic {}", STANDARD.encode(raw))
    }

    /// What the parser must make of one input.
    #[derive(Debug, PartialEq)]
    enum Want {
        Basic(&'static str, &'static str),
        Token(Scheme, &'static str),
        Err(ParseError),
        Malformed(Option<Scheme>),
    }

    fn outcome(input: &str) -> Want {
        match parse_authorization(input) {
            Ok(Credential::Basic { username, token }) => {
                Want::Basic(username.leak(), token.expose_secret().to_owned().leak())
            }
            Ok(Credential::Token { scheme, token }) => {
                Want::Token(scheme, token.expose_secret().to_owned().leak())
            }
            Err(ParseError::Malformed { scheme, .. }) => Want::Malformed(scheme),
            Err(e) => Want::Err(e),
        }
    }

    /// One row per input: its name, the header, and what the parser must make of it.
    #[test]
    fn header_table() {
        use Want::*;
        let b = Some(Scheme::Basic);
        let rows: Vec<(&str, String, Want)> = vec![
            ("empty", String::new(), Err(ParseError::Missing)),
            ("whitespace", " \t ".into(), Err(ParseError::Missing)),
            ("scheme only", "Basic".into(), Malformed(b)),
            ("scheme and spaces", "Basic   ".into(), Malformed(b)),
            (
                "canonical scheme",
                basic(b"alice:tok"),
                Basic("alice", "tok"),
            ),
            (
                "lower-case scheme",
                basic(b"alice:tok").replace("Basic", "basic"),
                Basic("alice", "tok"),
            ),
            (
                "upper-case scheme",
                basic(b"alice:tok").replace("Basic", "BASIC"),
                Basic("alice", "tok"),
            ),
            (
                "several spaces",
                basic(b"alice:tok").replace(' ', "   "),
                Basic("alice", "tok"),
            ),
            (
                "surrounding whitespace",
                format!(" \t{} ", basic(b"alice:tok")),
                Basic("alice", "tok"),
            ),
            ("bad base64", "Basic !!!!".into(), Malformed(b)),
            (
                "base64 missing padding",
                "Basic YWxpY2U6dG9".into(),
                Malformed(b),
            ),
            ("base64 url alphabet", "Basic _-_-".into(), Malformed(b)),
            (
                "non-canonical trailing bits",
                "Basic YR==".into(),
                Malformed(b),
            ),
            (
                "two values",
                format!("{} x", basic(b"alice:tok")),
                Malformed(b),
            ),
            ("no colon", basic(b"alicetok"), Malformed(b)),
            ("empty user", basic(b":tok"), Malformed(b)),
            ("empty token", basic(b"alice:"), Malformed(b)),
            (
                "colon inside token",
                basic(b"alice:to:k"),
                Basic("alice", "to:k"),
            ),
            (
                "control char in header",
                "Basic\u{0}YWxpY2U6dG9r".into(),
                Malformed(None),
            ),
            (
                "newline in header",
                format!("{}\r\n", basic(b"alice:tok")),
                Malformed(None),
            ),
            (
                "control char decoded",
                basic(b"alice:t\x07ok"),
                Malformed(b),
            ),
            ("control char in user", basic(b"al\nice:tok"), Malformed(b)),
            ("non-UTF-8 decoded", basic(b"al\xffice:tok"), Malformed(b)),
            (
                "oversized",
                format!("Basic {}", "A".repeat(MAX_HEADER_BYTES)),
                Malformed(None),
            ),
            (
                "unknown scheme",
                "Digest username=\"a\"".into(),
                Err(ParseError::UnsupportedScheme),
            ),
            (
                "bad scheme token",
                "Ba(sic YWxpY2U6dG9r".into(),
                Malformed(None),
            ),
            (
                "bearer",
                "Bearer abc.def-ghi".into(),
                Token(Scheme::Bearer, "abc.def-ghi"),
            ),
            (
                "bearer with auth-params",
                "Bearer a=b, c=d".into(),
                Malformed(Some(Scheme::Bearer)),
            ),
            (
                "jwt any case",
                "jwt a.b.c".into(),
                Token(Scheme::Jwt, "a.b.c"),
            ),
        ];
        for (name, input, want) in rows {
            assert_eq!(outcome(&input), want, "{name}");
        }
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let cred = parse_authorization(&basic(b"alice:s3cret-value")).unwrap();
        let shown = format!("{cred:?}");
        assert!(!shown.contains("s3cret-value"), "{shown}");
    }

    proptest::proptest! {
        #[test]
        fn never_panics(input in proptest::prelude::any::<String>()) {
            let _ = parse_authorization(&input);
        }

        #[test]
        fn basic_round_trips(user in "[A-Za-z0-9._@+-]{1,64}", token in "[ -~]{1,200}") {
            let header = basic(format!("{user}:{token}").as_bytes());
            match parse_authorization(&header) {
                Ok(Credential::Basic { username, token: t }) => {
                    proptest::prop_assert_eq!(username, user);
                    proptest::prop_assert_eq!(t.expose_secret(), token.as_str());
                }
                other => proptest::prop_assert!(false, "{:?}", other),
            }
        }
    }
}
