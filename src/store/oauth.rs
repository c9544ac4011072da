//! Storage for OAuth2: integrations, sessions with their refresh tokens, and signing keys.
//! A supertrait of [`Store`](super::Store), implemented for both backends by the macro in
//! `oauth_sql.rs`.

use super::{StoreResult, UserRecord};
use crate::domain::audit::Event;
use crate::domain::clock::UnixSeconds;
use crate::domain::secret::SecretDigest;
use async_trait::async_trait;

/// An integration as the admin surface shows it. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IntegrationRecord {
    /// Stable opaque id; the `sub` of its tokens.
    pub id: String,
    /// Public client id.
    pub client_id: String,
    /// Unique name.
    pub name: String,
    /// False when disabled.
    pub active: bool,
    /// Permission strings, sorted.
    pub permissions: Vec<String>,
    /// When the current secret was made.
    pub secret_created_at: UnixSeconds,
    /// Creation time.
    pub created_at: UnixSeconds,
    /// Last change.
    pub updated_at: UnixSeconds,
}

/// An integration to create.
#[derive(Debug, Clone)]
pub struct NewIntegration {
    /// Stable id.
    pub id: String,
    /// Public client id.
    pub client_id: String,
    /// Validated name.
    pub name: String,
    /// Canonical permissions.
    pub permissions: Vec<String>,
    /// Digest of the secret.
    pub secret_digest: SecretDigest,
}

/// What client authentication needs to know about an integration.
#[derive(Debug, Clone)]
pub struct ClientRecord {
    /// Integration id.
    pub id: String,
    /// Client id.
    pub client_id: String,
    /// Its name.
    pub name: String,
    /// Active flag.
    pub active: bool,
    /// Digest of the current secret.
    pub secret_digest: SecretDigest,
}

/// What the password grant needs to know about a user. `Debug` hides the hash.
#[derive(Clone)]
pub struct LoginRecord {
    /// User id.
    pub id: String,
    /// Canonical username.
    pub username: String,
    /// Active flag.
    pub active: bool,
    /// argon2id PHC string, if a password is set.
    pub password_hash: Option<String>,
}

impl std::fmt::Debug for LoginRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoginRecord")
            .field("id", &self.id)
            .field("username", &self.username)
            .field("active", &self.active)
            .field(
                "password_hash",
                &self.password_hash.as_ref().map(|_| "<redacted>"),
            )
            .finish()
    }
}

/// The credentials a grant checked, which must still hold when its session is created:
/// a password change, secret rotation or disable that commits first wins.
#[derive(Debug, Clone, Default)]
pub struct SessionGuard {
    /// For a user's session: the password hash that was verified.
    pub password_hash: Option<String>,
    /// The integration that authenticated as the client, and its verified secret digest.
    pub client: Option<(String, SecretDigest)>,
}

/// Whom a session belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subject {
    /// A user, by id.
    User(String),
    /// An integration, by id.
    Integration(String),
}

/// A refresh token to store, with the digest of the CSRF token bound to it.
#[derive(Debug, Clone, Copy)]
pub struct NewRefreshToken {
    /// Digest of the refresh token.
    pub digest: SecretDigest,
    /// Digest of its CSRF token.
    pub csrf_digest: SecretDigest,
}

/// A session to create.
#[derive(Debug, Clone)]
pub struct NewSession {
    /// Session id (the `sid` of its access tokens).
    pub id: String,
    /// Its owner.
    pub subject: Subject,
    /// The client it is issued to.
    pub client_id: String,
    /// `password` or `client_credentials`.
    pub grant_type: &'static str,
    /// The absolute end of the session.
    pub expires_at: UnixSeconds,
    /// The first refresh token, for grants that have one.
    pub refresh: Option<NewRefreshToken>,
    /// Granted scopes, normalised and space-separated; empty when unscoped.
    pub scopes: String,
    /// For a non-expiring token: its digest (the session is the token).
    pub token_digest: Option<SecretDigest>,
    /// For a non-expiring token that must be regenerated: when it stops working.
    pub regenerate_at: Option<UnixSeconds>,
}

/// What the credential behind a session may do: loaded on a check-cache miss.
#[derive(Debug, Clone)]
pub struct SessionPrincipal {
    /// Session id.
    pub session_id: String,
    /// The client it was issued to.
    pub client_id: String,
    /// Set once revoked.
    pub revoked: bool,
    /// Absolute end.
    pub expires_at: UnixSeconds,
    /// Granted scopes, space-separated; empty when unscoped.
    pub scopes: String,
    /// For a non-expiring token that must be regenerated: when it stops working.
    pub regenerate_at: Option<UnixSeconds>,
    /// True for an integration, false for a user.
    pub integration: bool,
    /// User or integration id.
    pub principal_id: String,
    /// Username or integration name.
    pub name: String,
    /// Staff flag (users only).
    pub is_staff: bool,
    /// Customer flag (users only).
    pub is_customer: bool,
    /// Active flag of the owner.
    pub active: bool,
    /// The owner's current permissions.
    pub permissions: Vec<String>,
}

/// A presented refresh token, with its session, as the refresh grant needs them.
#[derive(Debug, Clone)]
pub struct RefreshRecord {
    /// The session (rotation family).
    pub session_id: String,
    /// Digest of the CSRF token bound to this refresh token.
    pub csrf_digest: SecretDigest,
    /// True once exchanged: presenting it again is reuse.
    pub used: bool,
    /// The session was revoked.
    pub revoked: bool,
    /// The session's absolute end.
    pub expires_at: UnixSeconds,
    /// The client the session was issued to.
    pub client_id: String,
    /// The session's granted scopes, space-separated.
    pub scopes: String,
    /// The user who owns the session (refresh tokens are only issued to users).
    pub user_id: String,
    /// That user's username.
    pub username: String,
    /// Whether that user is active.
    pub user_active: bool,
}

/// A signing key as stored: public half in the clear, private half sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SigningKeyRecord {
    /// Key id.
    pub kid: String,
    /// JOSE algorithm name.
    pub algorithm: String,
    /// Raw public key.
    pub public_key: Vec<u8>,
    /// Private key sealed with the master key.
    pub sealed_private_key: Vec<u8>,
    /// Creation time.
    pub created_at: UnixSeconds,
    /// When it stopped signing.
    pub retired_at: Option<UnixSeconds>,
    /// When it leaves the key set.
    pub published_until: Option<UnixSeconds>,
}

/// OAuth2 state. Every method that changes state is one transaction, which also writes
/// the audit event it is given (whose time is the time of the change).
#[async_trait]
pub trait OAuthStore: Send + Sync + 'static {
    /// Creates an integration.
    async fn create_integration(
        &self,
        new: &NewIntegration,
        event: &Event,
    ) -> StoreResult<IntegrationRecord>;
    /// Reads an integration by client id.
    async fn get_integration(&self, client_id: &str) -> StoreResult<IntegrationRecord>;
    /// All integrations by name.
    async fn list_integrations(&self) -> StoreResult<Vec<IntegrationRecord>>;
    /// Replaces the secret digest and revokes every session of the integration, and
    /// the users' sessions it was the client of.
    async fn rotate_integration_secret(
        &self,
        client_id: &str,
        digest: &SecretDigest,
        event: &Event,
    ) -> StoreResult<IntegrationRecord>;
    /// Enables or disables; disabling revokes sessions as rotation does.
    async fn set_integration_active(
        &self,
        client_id: &str,
        active: bool,
        event: &Event,
    ) -> StoreResult<IntegrationRecord>;
    /// Replaces the permissions.
    async fn set_integration_permissions(
        &self,
        client_id: &str,
        permissions: &[String],
        event: &Event,
    ) -> StoreResult<IntegrationRecord>;
    /// Deletes an integration and its sessions, and revokes the users' sessions it was
    /// the client of; returns its id.
    async fn delete_integration(&self, client_id: &str, event: &Event) -> StoreResult<String>;
    /// The integration a client id names, for client authentication.
    async fn find_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>>;

    /// The user whose username or email has this login key (see
    /// [`login_key`](crate::domain::names::login_key)); at most one does.
    async fn find_login(&self, login_key: &str) -> StoreResult<Option<LoginRecord>>;
    /// Sets a user's password hash and revokes every session of the user.
    async fn set_password(
        &self,
        username: &str,
        password_hash: &str,
        event: &Event,
    ) -> StoreResult<UserRecord>;

    /// Creates a session (and its first refresh token) only while everything `guard`
    /// names still holds: the user is active with the same password hash, the client
    /// integration is active with the same secret. It locks those rows first, so a
    /// concurrent change either commits before (and the session is refused) or waits and
    /// then revokes the new session. Returns false, creating nothing, when refused.
    async fn create_session(
        &self,
        session: &NewSession,
        guard: &SessionGuard,
        event: &Event,
    ) -> StoreResult<bool>;
    /// The session and its owner's current state.
    async fn find_session(&self, session_id: &str) -> StoreResult<Option<SessionPrincipal>>;
    /// The session of a non-expiring token, by the token's digest.
    async fn find_token_session(
        &self,
        digest: &SecretDigest,
    ) -> StoreResult<Option<SessionPrincipal>>;
    /// The current permissions of a user (through roles) or an integration.
    async fn subject_permissions(&self, subject: &Subject) -> StoreResult<Vec<String>>;
    /// A refresh token by digest, with its session.
    async fn find_refresh_token(&self, digest: &SecretDigest)
    -> StoreResult<Option<RefreshRecord>>;
    /// Marks `old` used, stores `new` in the same session and sets the session's scopes
    /// to `scopes` (a refresh may narrow them), only if `old` was unused and its session
    /// is live. Returns false, changing nothing, otherwise: at most one of several
    /// concurrent exchanges of one token wins.
    async fn rotate_refresh_token(
        &self,
        old: &SecretDigest,
        new: &NewRefreshToken,
        scopes: &str,
        event: &Event,
    ) -> StoreResult<bool>;
    /// Revokes a session. Returns false, recording nothing, when it was unknown or
    /// already revoked.
    async fn revoke_session(&self, session_id: &str, event: &Event) -> StoreResult<bool>;
    /// Deletes sessions that expired or were revoked before `before`; returns how many.
    async fn purge_sessions(&self, before: UnixSeconds) -> StoreResult<u64>;

    /// Keys still published at `now` (signing, or retired but not yet past
    /// `published_until`), newest first.
    async fn published_signing_keys(&self, now: UnixSeconds) -> StoreResult<Vec<SigningKeyRecord>>;
    /// Stores `new` as the signing key. Every key that signed until now is retired at
    /// `now` and stays published until `published_until`.
    async fn add_signing_key(
        &self,
        new: &SigningKeyRecord,
        published_until: UnixSeconds,
        event: &Event,
    ) -> StoreResult<()>;
}
