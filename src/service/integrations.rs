//! Administration of integrations (machine clients) and signing keys. Like every admin use
//! case: validate, one store call, then drop from the check cache whatever the change may
//! have revoked or narrowed.

use super::ServiceError;
use super::admin::{AdminService, canonical_permissions, check_issued_id, check_name};
use super::audit;
use crate::domain::audit::Origin;
use crate::domain::secret::{SecretDigest, SecretKind};
use crate::store::{IntegrationRecord, NewIntegration, SigningKeyRecord};
use secrecy::SecretString;

impl AdminService {
    /// Creates an integration; returns it with its secret, shown only now.
    pub async fn create_integration(
        &self,
        origin: &Origin,
        name: String,
        permissions: &[String],
    ) -> Result<(IntegrationRecord, SecretString), ServiceError> {
        // Integration names follow the role-name rules: short, lower-case, URL-safe.
        check_name("name", &name)?;
        let secret = SecretKind::ClientSecret.generate();
        let new = NewIntegration {
            id: uuid::Uuid::now_v7().to_string(),
            client_id: format!("idc_{}", uuid::Uuid::new_v4().simple()),
            name,
            permissions: canonical_permissions(permissions)?,
            secret_digest: SecretDigest::of(&secret),
        };
        let event = self
            .event(
                origin,
                "integration.create",
                integration_target(&new.client_id),
            )
            .with("name", new.name.as_str())
            .with("permissions", new.permissions.clone());
        let created = self.store.create_integration(&new, &event).await?;
        audit::log(&event);
        Ok((created, secret))
    }

    /// Reads an integration.
    pub async fn get_integration(
        &self,
        client_id: &str,
    ) -> Result<IntegrationRecord, ServiceError> {
        check_issued_id("client_id", client_id)?;
        Ok(self.store.get_integration(client_id).await?)
    }

    /// Lists all integrations.
    pub async fn list_integrations(&self) -> Result<Vec<IntegrationRecord>, ServiceError> {
        Ok(self.store.list_integrations().await?)
    }

    /// Replaces the secret; the old one and every token issued with it die now.
    pub async fn rotate_integration_secret(
        &self,
        origin: &Origin,
        client_id: &str,
    ) -> Result<(IntegrationRecord, SecretString), ServiceError> {
        check_issued_id("client_id", client_id)?;
        let secret = SecretKind::ClientSecret.generate();
        let event = self.event(
            origin,
            "integration.rotate_secret",
            integration_target(client_id),
        );
        let integration = self
            .store
            .rotate_integration_secret(client_id, &SecretDigest::of(&secret), &event)
            .await?;
        audit::log(&event);
        // Users' sessions it was the client of are cached under the users.
        self.cache.invalidate_all();
        Ok((integration, secret))
    }

    /// Disables (ending every token) or re-enables an integration.
    pub async fn set_integration_active(
        &self,
        origin: &Origin,
        client_id: &str,
        active: bool,
    ) -> Result<IntegrationRecord, ServiceError> {
        check_issued_id("client_id", client_id)?;
        let action = if active {
            "integration.enable"
        } else {
            "integration.disable"
        };
        let event = self.event(origin, action, integration_target(client_id));
        let integration = self
            .store
            .set_integration_active(client_id, active, &event)
            .await?;
        audit::log(&event);
        // Users' sessions it was the client of are cached under the users.
        self.cache.invalidate_all();
        Ok(integration)
    }

    /// Replaces an integration's permissions.
    pub async fn set_integration_permissions(
        &self,
        origin: &Origin,
        client_id: &str,
        permissions: &[String],
    ) -> Result<IntegrationRecord, ServiceError> {
        check_issued_id("client_id", client_id)?;
        let permissions = canonical_permissions(permissions)?;
        let event = self
            .event(
                origin,
                "integration.set_permissions",
                integration_target(client_id),
            )
            .with("permissions", permissions.clone());
        let integration = self
            .store
            .set_integration_permissions(client_id, &permissions, &event)
            .await?;
        audit::log(&event);
        self.cache.invalidate_principal(&integration.id);
        Ok(integration)
    }

    /// Deletes an integration and every token issued to it.
    pub async fn delete_integration(
        &self,
        origin: &Origin,
        client_id: &str,
    ) -> Result<(), ServiceError> {
        check_issued_id("client_id", client_id)?;
        let event = self.event(origin, "integration.delete", integration_target(client_id));
        self.store.delete_integration(client_id, &event).await?;
        audit::log(&event);
        // Users' sessions it was the client of are cached under the users.
        self.cache.invalidate_all();
        Ok(())
    }

    /// The published signing keys, newest first.
    pub async fn list_signing_keys(&self) -> Result<Vec<SigningKeyRecord>, ServiceError> {
        self.keys.reload().await.map_err(key_error)?;
        Ok(self.keys.records())
    }

    /// Makes a new key the signer.
    pub async fn rotate_signing_key(
        &self,
        origin: &Origin,
    ) -> Result<SigningKeyRecord, ServiceError> {
        self.keys.rotate(origin).await.map_err(key_error)
    }
}

fn key_error(e: super::keys::KeyError) -> ServiceError {
    match e {
        super::keys::KeyError::Store(e) => e.into(),
        other => ServiceError::Internal(other.to_string()),
    }
}

/// How the audit log names an integration.
pub(super) fn integration_target(client_id: &str) -> String {
    format!("integration:{client_id}")
}
