//! Validation of the names people give things: usernames, emails, role names.

/// Longest username.
pub const MAX_USERNAME: usize = 64;
/// Longest role name.
pub const MAX_ROLE_NAME: usize = 64;
/// Longest email address (RFC 5321 path limit).
pub const MAX_EMAIL: usize = 254;
/// Longest role description.
pub const MAX_DESCRIPTION: usize = 256;

/// The canonical form of a username, or why it is refused. Usernames follow RFC 8265's
/// UsernameCaseMapped profile restricted to ASCII: 1 to 64 letters, digits and
/// `. _ @ + -`, case-mapped to lower case, so `Admin` and `admin` are one name. ASCII
/// only because a username travels in HTTP headers (Basic user-ids, identity headers),
/// and because it rules out look-alikes by construction: fullwidth forms, letters of
/// other scripts, invisible and control characters are each refused with their reason.
/// No colon, so it can always be the user-id of HTTP Basic.
pub fn normalize_username(s: &str) -> Result<String, &'static str> {
    check_username(s)?;
    Ok(s.to_ascii_lowercase())
}

/// Whether `s` is some username in any case ([`normalize_username`] without the copy).
pub fn check_username(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > MAX_USERNAME {
        return Err("must be 1 to 64 characters");
    }
    if let Some(c) = s.chars().find(|&c| !is_username_char(c)) {
        return Err(refused_in_name(c));
    }
    Ok(())
}

fn is_username_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._@+-".contains(c)
}

/// Why `c` may not be part of a login name, for the caller to fix it.
fn refused_in_name(c: char) -> &'static str {
    use unicode_security::general_security_profile::{GeneralSecurityProfile, IdentifierType};
    if c.is_control() {
        return "must not contain control characters";
    }
    if is_invisible(c) {
        return "must not contain invisible characters (zero-width, bidirectional or other formatting characters)";
    }
    if c.is_whitespace() {
        return "must not contain spaces";
    }
    if c.identifier_type() == Some(IdentifierType::Not_NFKC) {
        return "must not contain fullwidth or other compatibility forms; type plain ASCII";
    }
    if !c.is_ascii() {
        return "may contain only ASCII letters, digits and . _ @ + - (letters of other scripts can pass for Latin ones)";
    }
    "may contain only letters, digits and . _ @ + -"
}

/// True for characters that render as nothing: formatting characters (zero-width
/// spaces and joiners, bidirectional controls) and every other default-ignorable one.
pub fn is_invisible(c: char) -> bool {
    use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
    use unicode_security::general_security_profile::{GeneralSecurityProfile, IdentifierType};
    c.general_category() == GeneralCategory::Format
        || c.identifier_type() == Some(IdentifierType::Default_Ignorable)
}

/// The key two login identifiers (usernames and emails) are compared by: lower-cased,
/// then NFC, as RFC 8265 maps case before it normalises. Two users can never share a
/// key, whichever of them it is a username or an email of.
pub fn login_key(s: &str) -> String {
    use unicode_normalization::UnicodeNormalization;
    s.to_lowercase().nfc().collect()
}

/// A role name is 1 to 64 characters from `a-z 0-9 _ -`, starting with a letter.
pub fn validate_role_name(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > MAX_ROLE_NAME {
        return Err("must be 1 to 64 characters");
    }
    let mut bytes = s.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_lowercase());
    if !first_ok
        || !bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-".contains(&b))
    {
        return Err("must start with a lower-case letter and contain only a-z, 0-9, _ and -");
    }
    Ok(())
}

/// Normalises and checks an email address: lower-cased and NFC ([`login_key`]), one `@`
/// with text on both sides, no whitespace, control or invisible characters, no
/// fullwidth or other compatibility forms, and each side written in one script (so a
/// Cyrillic `а` cannot stand in for a Latin `a`), at most 254 bytes. Deliverability is
/// not checked.
pub fn normalize_email(s: &str) -> Result<String, &'static str> {
    use unicode_security::MixedScript;
    use unicode_security::general_security_profile::GeneralSecurityProfile;
    if s.len() > MAX_EMAIL {
        return Err("must be at most 254 characters");
    }
    let (local, domain) = s.split_once('@').ok_or("must contain @")?;
    if local.is_empty() || domain.is_empty() || domain.contains('@') {
        return Err("must look like name@domain");
    }
    let bad = |c: char| {
        c.is_whitespace()
            || c.is_control()
            || is_invisible(c)
            || !(c.is_ascii() || c.identifier_allowed())
    };
    if let Some(c) = s.chars().find(|&c| bad(c)) {
        return Err(refused_in_name(c));
    }
    if !local.is_single_script() || !domain.is_single_script() {
        return Err("must not mix letters of different scripts in the name or the domain");
    }
    let key = login_key(s);
    if key.len() > MAX_EMAIL {
        return Err("must be at most 254 characters");
    }
    Ok(key)
}

/// A description is free text without control or invisible characters (a
/// bidirectional override would make it read otherwise in a listing), at most 256
/// characters.
pub fn validate_description(s: &str) -> Result<(), &'static str> {
    if s.chars().count() > MAX_DESCRIPTION {
        return Err("must be at most 256 characters");
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    if s.chars().any(is_invisible) {
        return Err("must not contain invisible characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames_are_canonical() {
        for (given, canonical) in [
            ("admin", "admin"),
            ("ADMIN", "admin"),
            ("Alice.Smith+api@shop-1", "alice.smith+api@shop-1"),
            ("a", "a"),
        ] {
            assert_eq!(normalize_username(given).unwrap(), canonical, "{given}");
        }
        assert!(normalize_username(&"x".repeat(64)).is_ok());
    }

    #[test]
    fn usernames_refuse_look_alikes_with_their_reason() {
        let rows = [
            ("", "1 to 64"),
            (&*"x".repeat(65), "1 to 64"),
            ("a:b", "only letters, digits"),
            ("a b", "spaces"),
            ("tab\t", "control"),
            ("nul\u{0}", "control"),
            ("ad\u{200b}min", "invisible"),
            ("admin\u{202e}", "invisible"),
            ("\u{feff}admin", "invisible"),
            ("\u{ff41}dmin", "fullwidth"),
            ("\u{430}dmin", "other scripts"),
            ("ünï", "other scripts"),
            ("a\u{a0}b", "spaces"),
        ];
        for (bad, why) in rows {
            let err = normalize_username(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
    }

    #[test]
    fn login_keys_ignore_case_and_composition() {
        assert_eq!(login_key("Admin"), "admin");
        // Composed and decomposed spellings, in any case, are one key.
        assert_eq!(login_key("Ren\u{e9}@X.de"), "ren\u{e9}@x.de");
        assert_eq!(login_key("RE\u{301}N\u{c9}@x.DE"), "r\u{e9}n\u{e9}@x.de");
        assert_eq!(login_key("e\u{301}"), "\u{e9}");
    }

    #[test]
    fn role_names() {
        assert!(validate_role_name("orders-reader_2").is_ok());
        for bad in ["", "Orders", "1x", "a b", "a:b", &"r".repeat(65)] {
            assert!(validate_role_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn emails() {
        assert_eq!(
            normalize_email("Alice@Example.COM").unwrap(),
            "alice@example.com"
        );
        assert_eq!(
            normalize_email("Re\u{301}n\u{e9}@Example.de").unwrap(),
            "r\u{e9}n\u{e9}@example.de"
        );
        for bad in ["", "alice", "@x", "a@", "a@b@c", "a b@c", "a@b\n"] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
        let rows = [
            ("p\u{430}ypal@example.com", "scripts"),
            ("ad\u{200b}min@example.com", "invisible"),
            ("\u{ff41}@example.com", "fullwidth"),
            ("a@ex\u{202e}ample.com", "invisible"),
            ("a\u{0}@example.com", "control"),
        ];
        for (bad, why) in rows {
            let err = normalize_email(bad).unwrap_err();
            assert!(err.contains(why), "{bad:?}: {err}");
        }
        // One script per side is fine, whichever it is.
        assert!(normalize_email("\u{43f}\u{440}\u{438}\u{432}\u{435}\u{442}@example.com").is_ok());
    }
}
