//! Validation of the names people give things: usernames, emails, role names.

/// Longest username.
pub const MAX_USERNAME: usize = 64;
/// Longest role name.
pub const MAX_ROLE_NAME: usize = 64;
/// Longest email address (RFC 5321 path limit).
pub const MAX_EMAIL: usize = 254;
/// Longest role description.
pub const MAX_DESCRIPTION: usize = 256;

/// A username is 1 to 64 characters from `A-Z a-z 0-9 . _ @ + -`. No colon, so it can
/// always be the user-id of HTTP Basic.
pub fn validate_username(s: &str) -> Result<(), &'static str> {
    if s.is_empty() || s.len() > MAX_USERNAME {
        return Err("must be 1 to 64 characters");
    }
    if !s
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"._@+-".contains(&b))
    {
        return Err("may contain only letters, digits and . _ @ + -");
    }
    Ok(())
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

/// Normalises and checks an email address: lower-cased, one `@` with text on both sides,
/// no whitespace or control characters, at most 254 bytes. Deliverability is not checked.
pub fn normalize_email(s: &str) -> Result<String, &'static str> {
    if s.len() > MAX_EMAIL {
        return Err("must be at most 254 characters");
    }
    let (local, domain) = s.split_once('@').ok_or("must contain @")?;
    let bad = |c: char| c.is_whitespace() || c.is_control() || c == '@';
    if local.is_empty() || domain.is_empty() || local.chars().any(bad) || domain.chars().any(bad) {
        return Err("must look like name@domain");
    }
    Ok(s.to_lowercase())
}

/// A description is free text without control characters, at most 256 characters.
pub fn validate_description(s: &str) -> Result<(), &'static str> {
    if s.chars().count() > MAX_DESCRIPTION {
        return Err("must be at most 256 characters");
    }
    if s.chars().any(char::is_control) {
        return Err("must not contain control characters");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usernames() {
        for ok in ["admin", "a", "Alice.Smith+api@shop-1", &"x".repeat(64)] {
            assert!(validate_username(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a:b", "a b", "ünï", "tab\t", &"x".repeat(65)] {
            assert!(validate_username(bad).is_err(), "{bad:?}");
        }
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
        for bad in ["", "alice", "@x", "a@", "a@b@c", "a b@c", "a@b\n"] {
            assert!(normalize_email(bad).is_err(), "{bad:?}");
        }
    }
}
