//! Administration of custom apps and their named tokens. Like every admin use case:
//! validate, one store call, then drop from the check cache whatever the change may have
//! revoked or narrowed.

use super::ServiceError;
use super::admin::{AdminService, canonical_permissions, check_issued_id, check_name, username_in};
use super::audit;
use crate::domain::audit::Origin;
use crate::domain::secret::{SecretDigest, SecretKind};
use crate::store::{AppPatch, AppRecord, AppTokenRecord, NewApp, NewAppToken};
use secrecy::{ExposeSecret, SecretString};

/// Most tokens one app may hold: enough for every environment and rotation overlap,
/// few enough that a leaked admin credential cannot mint without bound.
pub const MAX_APP_TOKENS: u32 = 100;
/// Characters of a token shown in listings, to recognise it.
const SHOWN_CHARS: usize = 4;

/// An app change, as asked for; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct UpdateApp {
    /// The app.
    pub app_id: String,
    /// New name.
    pub name: Option<String>,
    /// New permissions, replacing the old.
    pub permissions: Option<Vec<String>>,
    /// Username to attach; `Some("")` detaches.
    pub attached_user: Option<String>,
    /// New active flag.
    pub active: Option<bool>,
}

impl AdminService {
    /// Creates an app, optionally attached to the user named `attached_user`.
    pub async fn create_app(
        &self,
        origin: &Origin,
        name: String,
        permissions: &[String],
        attached_user: &str,
    ) -> Result<AppRecord, ServiceError> {
        check_name("name", &name)?;
        let new = NewApp {
            id: uuid::Uuid::now_v7().to_string(),
            name,
            permissions: canonical_permissions(permissions)?,
            attached_user: optional_username(attached_user)?,
        };
        let event = self
            .event(origin, "app.create", app_target(&new.id))
            .with("name", new.name.as_str())
            .with("permissions", new.permissions.clone())
            .with("attached_user", new.attached_user.clone());
        let app = self.store.create_app(&new, &event).await?;
        audit::log(&event);
        Ok(app)
    }

    /// Reads an app.
    pub async fn get_app(&self, app_id: &str) -> Result<AppRecord, ServiceError> {
        check_issued_id("app_id", app_id)?;
        Ok(self.store.get_app(app_id).await?)
    }

    /// Lists all apps.
    pub async fn list_apps(&self) -> Result<Vec<AppRecord>, ServiceError> {
        Ok(self.store.list_apps().await?)
    }

    /// Changes an app; what it may no longer do is refused from the next check.
    pub async fn update_app(
        &self,
        origin: &Origin,
        req: UpdateApp,
    ) -> Result<AppRecord, ServiceError> {
        check_issued_id("app_id", &req.app_id)?;
        if let Some(name) = &req.name {
            check_name("name", name)?;
        }
        let patch = AppPatch {
            name: req.name,
            permissions: req
                .permissions
                .as_deref()
                .map(canonical_permissions)
                .transpose()?,
            attached_user: req
                .attached_user
                .as_deref()
                .map(optional_username)
                .transpose()?,
            active: req.active,
        };
        let mut event = self.event(origin, "app.update", app_target(&req.app_id));
        if let Some(name) = &patch.name {
            event = event.with("name", name.as_str());
        }
        if let Some(permissions) = &patch.permissions {
            event = event.with("permissions", permissions.clone());
        }
        if let Some(attached) = &patch.attached_user {
            event = event.with("attached_user", attached.clone());
        }
        if let Some(active) = patch.active {
            event = event.with("active", active);
        }
        let app = self.store.update_app(&req.app_id, &patch, &event).await?;
        audit::log(&event);
        self.cache.invalidate_principal(&app.id);
        Ok(app)
    }

    /// Deletes an app and its tokens.
    pub async fn delete_app(&self, origin: &Origin, app_id: &str) -> Result<(), ServiceError> {
        check_issued_id("app_id", app_id)?;
        let event = self.event(origin, "app.delete", app_target(app_id));
        self.store.delete_app(app_id, &event).await?;
        audit::log(&event);
        self.cache.invalidate_principal(app_id);
        Ok(())
    }

    /// Creates a named token for an app; returns it with the token, shown only now.
    pub async fn create_app_token(
        &self,
        origin: &Origin,
        app_id: &str,
        name: String,
    ) -> Result<(AppTokenRecord, SecretString), ServiceError> {
        check_issued_id("app_id", app_id)?;
        check_name("name", &name)?;
        let token = SecretKind::AppToken.generate();
        let text = token.expose_secret();
        let new = NewAppToken {
            id: uuid::Uuid::now_v7().to_string(),
            app_id: app_id.to_owned(),
            name,
            // Generated tokens are ASCII, so this slices on a character boundary.
            last4: text[text.len() - SHOWN_CHARS..].to_owned(),
            digest: SecretDigest::of(&token),
        };
        let event = self
            .event(origin, "app_token.create", app_token_target(&new.id))
            .with("app_id", app_id)
            .with("name", new.name.as_str())
            .with("last4", new.last4.as_str());
        let created = self
            .store
            .create_app_token(&new, MAX_APP_TOKENS, &event)
            .await?;
        audit::log(&event);
        Ok((created, token))
    }

    /// An app's tokens, without the tokens themselves.
    pub async fn list_app_tokens(&self, app_id: &str) -> Result<Vec<AppTokenRecord>, ServiceError> {
        check_issued_id("app_id", app_id)?;
        Ok(self.store.list_app_tokens(app_id).await?)
    }

    /// Revokes one app token: refused from the next check.
    pub async fn revoke_app_token(
        &self,
        origin: &Origin,
        app_id: &str,
        token_id: &str,
    ) -> Result<AppTokenRecord, ServiceError> {
        check_issued_id("app_id", app_id)?;
        check_issued_id("token_id", token_id)?;
        let event = self
            .event(origin, "app_token.revoke", app_token_target(token_id))
            .with("app_id", app_id);
        let revoked = self
            .store
            .revoke_app_token(app_id, token_id, &event)
            .await?;
        audit::log(&event);
        self.cache
            .invalidate_credential(&app_token_credential_id(&revoked.id));
        Ok(revoked)
    }
}

/// How an app token's credential id starts; the token id follows.
const CREDENTIAL_ID_PREFIX: &str = "app_token:";

/// The credential id a principal reports for the app token `token_id`.
pub fn app_token_credential_id(token_id: &str) -> String {
    format!("{CREDENTIAL_ID_PREFIX}{token_id}")
}

/// The app token id in a credential id, if it is an app token's.
pub fn app_token_id(credential_id: &str) -> Option<&str> {
    credential_id.strip_prefix(CREDENTIAL_ID_PREFIX)
}

fn optional_username(given: &str) -> Result<Option<String>, ServiceError> {
    if given.is_empty() {
        return Ok(None);
    }
    username_in("attached_user", given).map(Some)
}

/// How the audit log names an app.
fn app_target(app_id: &str) -> String {
    format!("app:{app_id}")
}

/// How the audit log names an app token.
pub(super) fn app_token_target(token_id: &str) -> String {
    format!("app_token:{token_id}")
}
