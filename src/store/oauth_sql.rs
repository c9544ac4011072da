//! The SQL of [`OAuthStore`](super::OAuthStore), shared by both backends the same way as
//! `sql.rs`: a macro instantiated per backend, with row shapes and folding here.

use super::StoreResult;
use super::oauth::{
    ClientRecord, IntegrationRecord, LoginRecord, RefreshRecord, SessionPrincipal, SigningKeyRecord,
};
use super::rows::digest;

pub(super) const INTEGRATION_BY_CLIENT: &str = "\
    SELECT i.id, i.client_id, i.name, i.active, i.secret_created_at, i.created_at, \
           i.updated_at, ip.permission \
    FROM integrations i \
    LEFT JOIN integration_permissions ip ON ip.integration_id = i.id \
    WHERE i.client_id = $1 ORDER BY ip.permission";

pub(super) const ALL_INTEGRATIONS: &str = "\
    SELECT i.id, i.client_id, i.name, i.active, i.secret_created_at, i.created_at, \
           i.updated_at, ip.permission \
    FROM integrations i \
    LEFT JOIN integration_permissions ip ON ip.integration_id = i.id \
    ORDER BY i.name, ip.permission";

/// A session with its owner's current state and permissions: a user (through roles) or
/// an integration (directly), selected by `$where` on `s`. One round trip on a
/// check-cache miss.
macro_rules! session_principal {
    ($where:literal) => {
        concat!(
            "SELECT s.id AS session_id, s.client_id, s.revoked_at, s.expires_at, s.scopes, \
                    s.regenerate_at, FALSE AS integration, u.id AS principal_id, \
                    u.username AS name, u.is_staff, u.is_customer, u.active, rp.permission \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             LEFT JOIN user_roles ur ON ur.user_id = u.id \
             LEFT JOIN role_permissions rp ON rp.role_name = ur.role_name \
             WHERE ",
            $where,
            " UNION ALL \
             SELECT s.id, s.client_id, s.revoked_at, s.expires_at, s.scopes, s.regenerate_at, \
                    TRUE, i.id, i.name, FALSE, FALSE, i.active, ip.permission \
             FROM sessions s JOIN integrations i ON i.id = s.integration_id \
             LEFT JOIN integration_permissions ip ON ip.integration_id = i.id \
             WHERE ",
            $where
        )
    };
}

pub(super) const SESSION_PRINCIPAL: &str = session_principal!("s.id = $1");
pub(super) const TOKEN_SESSION_PRINCIPAL: &str = session_principal!("s.token_digest = $1");

pub(super) const USER_PERMISSIONS: &str = "\
    SELECT DISTINCT rp.permission FROM user_roles ur \
    JOIN role_permissions rp ON rp.role_name = ur.role_name \
    WHERE ur.user_id = $1 ORDER BY rp.permission";

pub(super) const INTEGRATION_PERMISSIONS: &str = "\
    SELECT permission FROM integration_permissions WHERE integration_id = $1 \
    ORDER BY permission";

pub(super) const REFRESH_TOKEN: &str = "\
    SELECT r.session_id, r.csrf_digest, r.used_at, s.revoked_at, s.expires_at, s.client_id, \
           s.scopes, u.id AS user_id, u.username, u.active AS user_active \
    FROM refresh_tokens r \
    JOIN sessions s ON s.id = r.session_id \
    JOIN users u ON u.id = s.user_id \
    WHERE r.digest = $1";

/// Locks an active user whose password hash is still the verified one. A no-op update
/// takes the row lock on PostgreSQL (SQLite's write lock is already held), so a
/// concurrent password change or disable is ordered before or after the new session.
pub(super) const LOCK_LOGIN_USER: &str = "\
    UPDATE users SET updated_at = updated_at \
    WHERE id = $1 AND active AND password_hash = $2 RETURNING id";

/// Locks an active integration whose secret is still the verified one.
pub(super) const LOCK_CLIENT: &str = "\
    UPDATE integrations SET updated_at = updated_at \
    WHERE id = $1 AND active AND secret_digest = $2 RETURNING id";

pub(super) const INSERT_SESSION: &str = "\
    INSERT INTO sessions (id, user_id, integration_id, client_id, grant_type, created_at, \
                          expires_at, scopes, token_digest, regenerate_at) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";

/// Live sessions only: an expired one needs no revoking, and is not counted.
pub(super) const REVOKE_USER_SESSIONS: &str = "\
    UPDATE sessions SET revoked_at = $2 \
    WHERE user_id = $1 AND revoked_at IS NULL AND expires_at > $2";

/// The integration's own sessions, and users' sessions it obtained as their client.
pub(super) const REVOKE_INTEGRATION_SESSIONS: &str = "\
    UPDATE sessions SET revoked_at = $2 \
    WHERE (integration_id = (SELECT id FROM integrations WHERE client_id = $1) \
           OR client_id = $1) \
      AND revoked_at IS NULL";

pub(super) const PUBLISHED_KEYS: &str = "\
    SELECT kid, algorithm, public_key, sealed_private_key, created_at, retired_at, \
           published_until \
    FROM signing_keys \
    WHERE retired_at IS NULL OR published_until > $1 \
    ORDER BY created_at DESC, kid DESC";

/// An integration joined with one of its permissions (or none).
#[derive(sqlx::FromRow)]
pub(super) struct IntegrationRow {
    pub id: String,
    pub client_id: String,
    pub name: String,
    pub active: bool,
    pub secret_created_at: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub permission: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(super) struct ClientRow {
    pub id: String,
    pub client_id: String,
    pub name: String,
    pub active: bool,
    pub secret_digest: Vec<u8>,
}

#[derive(sqlx::FromRow)]
pub(super) struct LoginRow {
    pub id: String,
    pub username: String,
    pub active: bool,
    pub password_hash: Option<String>,
}

/// A session's owner joined with one of its permissions (or none).
#[derive(sqlx::FromRow)]
pub(super) struct SessionPrincipalRow {
    pub session_id: String,
    pub client_id: String,
    pub revoked_at: Option<i64>,
    pub expires_at: i64,
    pub scopes: String,
    pub regenerate_at: Option<i64>,
    pub integration: bool,
    pub principal_id: String,
    pub name: String,
    pub is_staff: bool,
    pub is_customer: bool,
    pub active: bool,
    pub permission: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(super) struct RefreshRow {
    pub session_id: String,
    pub csrf_digest: Vec<u8>,
    pub used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    pub expires_at: i64,
    pub client_id: String,
    pub scopes: String,
    pub user_id: String,
    pub username: String,
    pub user_active: bool,
}

#[derive(sqlx::FromRow)]
pub(super) struct SigningKeyRow {
    pub kid: String,
    pub algorithm: String,
    pub public_key: Vec<u8>,
    pub sealed_private_key: Vec<u8>,
    pub created_at: i64,
    pub retired_at: Option<i64>,
    pub published_until: Option<i64>,
}

/// Folds rows ordered by integration into integrations with their permissions.
pub(super) fn integrations(rows: Vec<IntegrationRow>) -> Vec<IntegrationRecord> {
    super::rows::fold(
        rows,
        |r| IntegrationRecord {
            id: r.id,
            client_id: r.client_id,
            name: r.name,
            active: r.active,
            permissions: r.permission.into_iter().collect(),
            secret_created_at: r.secret_created_at,
            created_at: r.created_at,
            updated_at: r.updated_at,
        },
        |i, r| i.id == r.id,
        |i, r| i.permissions.extend(r.permission),
    )
}

pub(super) fn client(row: ClientRow) -> StoreResult<ClientRecord> {
    Ok(ClientRecord {
        id: row.id,
        client_id: row.client_id,
        name: row.name,
        active: row.active,
        secret_digest: digest(&row.secret_digest)?,
    })
}

pub(super) fn login(row: LoginRow) -> LoginRecord {
    LoginRecord {
        id: row.id,
        username: row.username,
        active: row.active,
        password_hash: row.password_hash,
    }
}

/// Folds the rows of one session; `None` when there are none.
pub(super) fn session_principal(rows: Vec<SessionPrincipalRow>) -> Option<SessionPrincipal> {
    let mut rows = rows.into_iter();
    let first = rows.next()?;
    let mut permissions: Vec<String> = first.permission.into_iter().collect();
    permissions.extend(rows.filter_map(|r| r.permission));
    Some(SessionPrincipal {
        session_id: first.session_id,
        client_id: first.client_id,
        revoked: first.revoked_at.is_some(),
        expires_at: first.expires_at,
        scopes: first.scopes,
        regenerate_at: first.regenerate_at,
        integration: first.integration,
        principal_id: first.principal_id,
        name: first.name,
        is_staff: first.is_staff,
        is_customer: first.is_customer,
        active: first.active,
        permissions,
    })
}

pub(super) fn refresh(row: RefreshRow) -> StoreResult<RefreshRecord> {
    Ok(RefreshRecord {
        session_id: row.session_id,
        csrf_digest: digest(&row.csrf_digest)?,
        used: row.used_at.is_some(),
        revoked: row.revoked_at.is_some(),
        expires_at: row.expires_at,
        client_id: row.client_id,
        scopes: row.scopes,
        user_id: row.user_id,
        username: row.username,
        user_active: row.user_active,
    })
}

pub(super) fn signing_key(row: SigningKeyRow) -> SigningKeyRecord {
    SigningKeyRecord {
        kid: row.kid,
        algorithm: row.algorithm,
        public_key: row.public_key,
        sealed_private_key: row.sealed_private_key,
        created_at: row.created_at,
        retired_at: row.retired_at,
        published_until: row.published_until,
    }
}

/// Implements [`OAuthStore`](super::OAuthStore) for `$store` (see `sql.rs`).
macro_rules! impl_oauth_store {
    ($store:ty, $db:ty) => {
        impl $store {
            async fn fetch_integration(
                conn: &mut Conn,
                client_id: &str,
            ) -> StoreResult<IntegrationRecord> {
                let rows = sqlx::query_as::<_, oauth_sql::IntegrationRow>(
                    oauth_sql::INTEGRATION_BY_CLIENT,
                )
                .bind(client_id)
                .fetch_all(&mut *conn)
                .await?;
                rows::one(oauth_sql::integrations(rows), || {
                    format!("integration '{client_id}'")
                })
            }

            async fn insert_integration_permissions(
                conn: &mut Conn,
                id: &str,
                permissions: &[String],
            ) -> StoreResult<()> {
                Self::insert_each(
                    conn,
                    "INSERT INTO integration_permissions (integration_id, permission) \
                     VALUES ($1, $2) ON CONFLICT DO NOTHING",
                    id,
                    permissions,
                )
                .await
            }

            /// Runs `statement` (binding client id, then `value`, then now) on one
            /// integration, optionally revoking its sessions, and returns it.
            async fn change_integration<'q, V>(
                &self,
                statement: &'static str,
                client_id: &str,
                value: V,
                revoke_sessions: bool,
                event: &Event,
            ) -> StoreResult<IntegrationRecord>
            where
                V: 'q + Send + sqlx::Encode<'q, $db> + sqlx::Type<$db>,
            {
                let now = event.at;
                let mut tx = self.begin_write().await?;
                let updated = sqlx::query(statement)
                    .bind(client_id)
                    .bind(value)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                if updated.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("integration '{client_id}'")));
                }
                if revoke_sessions {
                    sqlx::query(oauth_sql::REVOKE_INTEGRATION_SESSIONS)
                        .bind(client_id)
                        .bind(now)
                        .execute(&mut *tx)
                        .await?;
                }
                let integration = Self::fetch_integration(&mut tx, client_id).await?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(integration)
            }
        }

        #[async_trait::async_trait]
        impl OAuthStore for $store {
            async fn create_integration(
                &self,
                new: &NewIntegration,
                event: &Event,
            ) -> StoreResult<IntegrationRecord> {
                let now = event.at;
                let mut tx = self.begin_write().await?;
                let inserted = sqlx::query(
                    "INSERT INTO integrations (id, client_id, name, active, secret_digest, \
                         secret_created_at, created_at, updated_at) \
                     VALUES ($1, $2, $3, TRUE, $4, $5, $5, $5)",
                )
                .bind(&new.id)
                .bind(&new.client_id)
                .bind(&new.name)
                .bind(new.secret_digest.as_bytes())
                .bind(now)
                .execute(&mut *tx)
                .await;
                match inserted {
                    Err(e) if sql::violates_unique(&e, "name") => {
                        return Err(StoreError::AlreadyExists(format!(
                            "integration '{}'",
                            new.name
                        )));
                    }
                    other => other?,
                };
                Self::insert_integration_permissions(&mut tx, &new.id, &new.permissions).await?;
                let created = Self::fetch_integration(&mut tx, &new.client_id).await?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(created)
            }

            async fn get_integration(&self, client_id: &str) -> StoreResult<IntegrationRecord> {
                let mut conn = self.pool.acquire().await?;
                Self::fetch_integration(&mut conn, client_id).await
            }

            async fn list_integrations(&self) -> StoreResult<Vec<IntegrationRecord>> {
                let rows =
                    sqlx::query_as::<_, oauth_sql::IntegrationRow>(oauth_sql::ALL_INTEGRATIONS)
                        .fetch_all(&self.pool)
                        .await?;
                Ok(oauth_sql::integrations(rows))
            }

            async fn rotate_integration_secret(
                &self,
                client_id: &str,
                digest: &SecretDigest,
                event: &Event,
            ) -> StoreResult<IntegrationRecord> {
                self.change_integration(
                    "UPDATE integrations SET secret_digest = $2, secret_created_at = $3, \
                         updated_at = $3 WHERE client_id = $1",
                    client_id,
                    digest.as_bytes().to_vec(),
                    true,
                    event,
                )
                .await
            }

            async fn set_integration_active(
                &self,
                client_id: &str,
                active: bool,
                event: &Event,
            ) -> StoreResult<IntegrationRecord> {
                self.change_integration(
                    "UPDATE integrations SET active = $2, updated_at = $3 WHERE client_id = $1",
                    client_id,
                    active,
                    !active,
                    event,
                )
                .await
            }

            async fn set_integration_permissions(
                &self,
                client_id: &str,
                permissions: &[String],
                event: &Event,
            ) -> StoreResult<IntegrationRecord> {
                let mut tx = self.begin_write().await?;
                let id = sqlx::query_scalar::<_, String>(
                    "UPDATE integrations SET updated_at = $2 WHERE client_id = $1 RETURNING id",
                )
                .bind(client_id)
                .bind(event.at)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("integration '{client_id}'")))?;
                sqlx::query("DELETE FROM integration_permissions WHERE integration_id = $1")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                Self::insert_integration_permissions(&mut tx, &id, permissions).await?;
                let integration = Self::fetch_integration(&mut tx, client_id).await?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(integration)
            }

            async fn delete_integration(
                &self,
                client_id: &str,
                event: &Event,
            ) -> StoreResult<String> {
                let mut tx = self.begin_write().await?;
                // Its own sessions go with it (cascade); users' sessions it was the
                // client of must end too.
                sqlx::query(oauth_sql::REVOKE_INTEGRATION_SESSIONS)
                    .bind(client_id)
                    .bind(event.at)
                    .execute(&mut *tx)
                    .await?;
                let id = sqlx::query_scalar::<_, String>(
                    "DELETE FROM integrations WHERE client_id = $1 RETURNING id",
                )
                .bind(client_id)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("integration '{client_id}'")))?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(id)
            }

            async fn find_client(&self, client_id: &str) -> StoreResult<Option<ClientRecord>> {
                let row = sqlx::query_as::<_, oauth_sql::ClientRow>(
                    "SELECT id, client_id, name, active, secret_digest FROM integrations \
                     WHERE client_id = $1",
                )
                .bind(client_id)
                .fetch_optional(&self.pool)
                .await?;
                row.map(oauth_sql::client).transpose()
            }

            async fn find_login(&self, login_key: &str) -> StoreResult<Option<LoginRecord>> {
                // One namespace: a key names at most one user, by username or email.
                let row = sqlx::query_as::<_, oauth_sql::LoginRow>(
                    "SELECT u.id, u.username, u.active, u.password_hash \
                     FROM login_names l JOIN users u ON u.id = l.user_id WHERE l.name = $1",
                )
                .bind(login_key)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row.map(oauth_sql::login))
            }

            async fn set_password(
                &self,
                username: &str,
                password_hash: &str,
                event: &Event,
            ) -> StoreResult<UserRecord> {
                let now = event.at;
                let mut tx = self.begin_write().await?;
                let id = sqlx::query_scalar::<_, String>(
                    "UPDATE users SET password_hash = $2, password_changed_at = $3, \
                         updated_at = $3 WHERE username = $1 RETURNING id",
                )
                .bind(username)
                .bind(password_hash)
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?
                .ok_or_else(|| StoreError::NotFound(format!("user '{username}'")))?;
                sqlx::query(oauth_sql::REVOKE_USER_SESSIONS)
                    .bind(&id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                let user = Self::fetch_user(&mut tx, username).await?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(user)
            }

            async fn create_session(
                &self,
                session: &NewSession,
                guard: &SessionGuard,
                event: &Event,
            ) -> StoreResult<bool> {
                let now = event.at;
                let mut tx = self.begin_write().await?;
                if let Some((id, digest)) = &guard.client {
                    let locked = sqlx::query_scalar::<_, String>(oauth_sql::LOCK_CLIENT)
                        .bind(id)
                        .bind(digest.as_bytes())
                        .fetch_optional(&mut *tx)
                        .await?;
                    if locked.is_none() {
                        return Ok(false);
                    }
                }
                let (user, integration) = match &session.subject {
                    Subject::User(id) => {
                        let Some(hash) = &guard.password_hash else {
                            return Ok(false);
                        };
                        let locked = sqlx::query_scalar::<_, String>(oauth_sql::LOCK_LOGIN_USER)
                            .bind(id)
                            .bind(hash)
                            .fetch_optional(&mut *tx)
                            .await?;
                        if locked.is_none() {
                            return Ok(false);
                        }
                        (Some(id), None)
                    }
                    // Its own client: locked above, or refused.
                    Subject::Integration(id)
                        if guard.client.as_ref().is_some_and(|c| &c.0 == id) =>
                    {
                        (None, Some(id))
                    }
                    Subject::Integration(_) => return Ok(false),
                };
                sqlx::query(oauth_sql::INSERT_SESSION)
                    .bind(&session.id)
                    .bind(user)
                    .bind(integration)
                    .bind(&session.client_id)
                    .bind(session.grant_type)
                    .bind(now)
                    .bind(session.expires_at)
                    .bind(&session.scopes)
                    .bind(session.token_digest.as_ref().map(|d| d.as_bytes().to_vec()))
                    .bind(session.regenerate_at)
                    .execute(&mut *tx)
                    .await?;
                if let Some(refresh) = &session.refresh {
                    Self::insert_refresh_token(&mut tx, &session.id, refresh, now).await?;
                }
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn find_session(
                &self,
                session_id: &str,
            ) -> StoreResult<Option<SessionPrincipal>> {
                let rows = sqlx::query_as::<_, oauth_sql::SessionPrincipalRow>(
                    oauth_sql::SESSION_PRINCIPAL,
                )
                .bind(session_id)
                .fetch_all(&self.pool)
                .await?;
                Ok(oauth_sql::session_principal(rows))
            }

            async fn find_token_session(
                &self,
                digest: &SecretDigest,
            ) -> StoreResult<Option<SessionPrincipal>> {
                let rows = sqlx::query_as::<_, oauth_sql::SessionPrincipalRow>(
                    oauth_sql::TOKEN_SESSION_PRINCIPAL,
                )
                .bind(digest.as_bytes())
                .fetch_all(&self.pool)
                .await?;
                Ok(oauth_sql::session_principal(rows))
            }

            async fn subject_permissions(&self, subject: &Subject) -> StoreResult<Vec<String>> {
                let (sql, id) = match subject {
                    Subject::User(id) => (oauth_sql::USER_PERMISSIONS, id),
                    Subject::Integration(id) => (oauth_sql::INTEGRATION_PERMISSIONS, id),
                };
                Ok(sqlx::query_scalar::<_, String>(sql)
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?)
            }

            async fn find_refresh_token(
                &self,
                digest: &SecretDigest,
            ) -> StoreResult<Option<RefreshRecord>> {
                let row = sqlx::query_as::<_, oauth_sql::RefreshRow>(oauth_sql::REFRESH_TOKEN)
                    .bind(digest.as_bytes())
                    .fetch_optional(&self.pool)
                    .await?;
                row.map(oauth_sql::refresh).transpose()
            }

            async fn rotate_refresh_token(
                &self,
                old: &SecretDigest,
                new: &NewRefreshToken,
                scopes: &str,
                event: &Event,
            ) -> StoreResult<bool> {
                let now = event.at;
                let mut tx = self.begin_write().await?;
                // The condition is re-checked under the row lock, so of two concurrent
                // exchanges exactly one sees the token unused.
                let session = sqlx::query_scalar::<_, String>(
                    "UPDATE refresh_tokens SET used_at = $2 \
                     WHERE digest = $1 AND used_at IS NULL \
                       AND session_id IN (SELECT id FROM sessions \
                                          WHERE revoked_at IS NULL AND expires_at > $2) \
                     RETURNING session_id",
                )
                .bind(old.as_bytes())
                .bind(now)
                .fetch_optional(&mut *tx)
                .await?;
                let Some(session) = session else {
                    return Ok(false);
                };
                Self::insert_refresh_token(&mut tx, &session, new, now).await?;
                sqlx::query("UPDATE sessions SET scopes = $2 WHERE id = $1")
                    .bind(&session)
                    .bind(scopes)
                    .execute(&mut *tx)
                    .await?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn revoke_session(&self, session_id: &str, event: &Event) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let revoked = sqlx::query(
                    "UPDATE sessions SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL",
                )
                .bind(session_id)
                .bind(event.at)
                .execute(&mut *tx)
                .await?;
                if revoked.rows_affected() == 0 {
                    return Ok(false);
                }
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn purge_sessions(&self, before: UnixSeconds) -> StoreResult<u64> {
                let mut tx = self.begin_write().await?;
                let purged =
                    sqlx::query("DELETE FROM sessions WHERE expires_at < $1 OR revoked_at < $1")
                        .bind(before)
                        .execute(&mut *tx)
                        .await?;
                tx.commit().await?;
                Ok(purged.rows_affected())
            }

            async fn published_signing_keys(
                &self,
                now: UnixSeconds,
            ) -> StoreResult<Vec<SigningKeyRecord>> {
                let rows = sqlx::query_as::<_, oauth_sql::SigningKeyRow>(oauth_sql::PUBLISHED_KEYS)
                    .bind(now)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows.into_iter().map(oauth_sql::signing_key).collect())
            }

            async fn add_signing_key(
                &self,
                new: &SigningKeyRecord,
                published_until: UnixSeconds,
                event: &Event,
            ) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "UPDATE signing_keys SET retired_at = $1, published_until = $2 \
                     WHERE retired_at IS NULL",
                )
                .bind(new.created_at)
                .bind(published_until)
                .execute(&mut *tx)
                .await?;
                sqlx::query(
                    "INSERT INTO signing_keys (kid, algorithm, public_key, sealed_private_key, \
                         created_at) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(&new.kid)
                .bind(&new.algorithm)
                .bind(&new.public_key)
                .bind(&new.sealed_private_key)
                .bind(new.created_at)
                .execute(&mut *tx)
                .await?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(())
            }
        }

        impl $store {
            async fn insert_refresh_token(
                conn: &mut Conn,
                session_id: &str,
                token: &NewRefreshToken,
                now: UnixSeconds,
            ) -> StoreResult<()> {
                sqlx::query(
                    "INSERT INTO refresh_tokens (digest, session_id, csrf_digest, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(token.digest.as_bytes())
                .bind(session_id)
                .bind(token.csrf_digest.as_bytes())
                .bind(now)
                .execute(&mut *conn)
                .await?;
                Ok(())
            }
        }
    };
}

pub(super) use impl_oauth_store;
