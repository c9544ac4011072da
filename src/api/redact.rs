//! `Debug` for generated messages that carry secrets (build.rs skips deriving it), so a
//! stray `{:?}` shows field names and lengths, never a credential.

use super::pb;
use std::fmt;

/// Formats a secret as its length only.
struct Redacted(usize);

impl fmt::Debug for Redacted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "<redacted {} bytes>", self.0)
    }
}

fn redacted(s: &str) -> Redacted {
    Redacted(s.len())
}

impl fmt::Debug for pb::AuthenticateRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthenticateRequest")
            .field("authorization", &redacted(&self.authorization))
            .finish()
    }
}

impl fmt::Debug for pb::CheckPermissionRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CheckPermissionRequest")
            .field("authorization", &redacted(&self.authorization))
            .field("permissions", &self.permissions)
            .field("method", &self.method)
            .field("path", &self.path)
            .finish()
    }
}

impl fmt::Debug for pb::IssueTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssueTokenResponse")
            .field("access_token", &redacted(&self.access_token))
            .finish()
    }
}

impl fmt::Debug for pb::RefreshTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokenRequest")
            .field("refresh_token", &redacted(&self.refresh_token))
            .finish()
    }
}

impl fmt::Debug for pb::RefreshTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokenResponse")
            .field("access_token", &redacted(&self.access_token))
            .finish()
    }
}

impl fmt::Debug for pb::RegenerateApiTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RegenerateApiTokenResponse")
            .field("username", &self.username)
            .field("api_token", &redacted(&self.api_token))
            .finish()
    }
}

impl fmt::Debug for pb::RevokeTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RevokeTokenRequest")
            .field("token", &redacted(&self.token))
            .finish()
    }
}

impl fmt::Debug for pb::SetApiAccessResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetApiAccessResponse")
            .field("user", &self.user)
            .field("api_token", &redacted(&self.api_token))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_not_shown() {
        let req = pb::CheckPermissionRequest {
            authorization: "Basic c2VjcmV0LXZhbHVl".into(),
            permissions: vec!["orders:read".into()],
            ..Default::default()
        };
        let shown = format!("{req:?}");
        assert!(
            !shown.contains("c2VjcmV0LXZhbHVl") && shown.contains("orders:read"),
            "{shown}"
        );
        let resp = pb::SetApiAccessResponse {
            user: None,
            api_token: "idt_api_abc".into(),
        };
        assert!(!format!("{resp:?}").contains("idt_api_abc"));
    }
}
