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

impl fmt::Debug for pb::CreateAppTokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateAppTokenResponse")
            .field("app_token", &self.app_token)
            .field("token", &redacted(&self.token))
            .finish()
    }
}

impl fmt::Debug for pb::IssueTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("IssueTokenRequest")
            .field("grant_type", &self.grant_type)
            .field("client_id", &self.client_id)
            .field("client_secret", &redacted(&self.client_secret))
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
            .field("refresh_token", &redacted(&self.refresh_token))
            .field("csrf_token", &redacted(&self.csrf_token))
            .field("scope", &self.scope)
            .finish()
    }
}

impl fmt::Debug for pb::RefreshTokenRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RefreshTokenRequest")
            .field("refresh_token", &redacted(&self.refresh_token))
            .field("client_id", &self.client_id)
            .field("client_secret", &redacted(&self.client_secret))
            .field("csrf_token", &redacted(&self.csrf_token))
            .field("scope", &self.scope)
            .finish()
    }
}

impl fmt::Debug for pb::TokenResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenResponse")
            .field("access_token", &redacted(&self.access_token))
            .field("token_type", &self.token_type)
            .field("expires_in", &self.expires_in)
            .field("refresh_token", &redacted(&self.refresh_token))
            .field("refresh_expires_in", &self.refresh_expires_in)
            .field("csrf_token", &redacted(&self.csrf_token))
            .field("session_id", &self.session_id)
            .field("scope", &self.scope)
            .finish()
    }
}

impl fmt::Debug for pb::CreateIntegrationResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CreateIntegrationResponse")
            .field("integration", &self.integration)
            .field("client_secret", &redacted(&self.client_secret))
            .finish()
    }
}

impl fmt::Debug for pb::RotateIntegrationSecretResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RotateIntegrationSecretResponse")
            .field("integration", &self.integration)
            .field("client_secret", &redacted(&self.client_secret))
            .finish()
    }
}

impl fmt::Debug for pb::SetUserPasswordRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SetUserPasswordRequest")
            .field("username", &self.username)
            .field("password", &redacted(&self.password))
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
            .field("token_type_hint", &self.token_type_hint)
            .field("client_id", &self.client_id)
            .field("client_secret", &redacted(&self.client_secret))
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
        let login = pb::IssueTokenRequest {
            grant_type: "password".into(),
            username: "alice".into(),
            password: "hunter22-secret".into(),
            ..Default::default()
        };
        let shown = format!("{login:?}");
        assert!(
            !shown.contains("hunter22") && shown.contains("alice"),
            "{shown}"
        );
        let tokens = pb::TokenResponse {
            access_token: "eyJsecret".into(),
            refresh_token: "idt_rt_secret".into(),
            csrf_token: "idt_csrf_secret".into(),
            ..Default::default()
        };
        assert!(!format!("{tokens:?}").contains("secret"));
    }
}
