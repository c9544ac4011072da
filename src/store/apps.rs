//! Storage for custom apps and their named tokens. A supertrait of
//! [`Store`](super::Store), implemented for both backends by the macro below.

use super::StoreResult;
use crate::domain::audit::Event;
use crate::domain::clock::UnixSeconds;
use crate::domain::secret::SecretDigest;
use async_trait::async_trait;

/// An app as the admin surface shows it. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppRecord {
    /// Stable opaque id.
    pub id: String,
    /// Unique name.
    pub name: String,
    /// False when deactivated.
    pub active: bool,
    /// Permission strings, sorted.
    pub permissions: Vec<String>,
    /// Username of the attached user, if any.
    pub attached_user: Option<String>,
    /// Creation time.
    pub created_at: UnixSeconds,
    /// Last change.
    pub updated_at: UnixSeconds,
}

/// An app to create.
#[derive(Debug, Clone)]
pub struct NewApp {
    /// Stable id.
    pub id: String,
    /// Validated name.
    pub name: String,
    /// Canonical permissions.
    pub permissions: Vec<String>,
    /// Username of an existing user to attach (`NotFound` otherwise).
    pub attached_user: Option<String>,
}

/// Changes to an app; `None` leaves a field alone.
#[derive(Debug, Clone, Default)]
pub struct AppPatch {
    /// New unique name.
    pub name: Option<String>,
    /// New canonical permissions, replacing the old.
    pub permissions: Option<Vec<String>>,
    /// `Some(None)` detaches; `Some(Some(username))` attaches that user.
    pub attached_user: Option<Option<String>>,
    /// New active flag.
    pub active: Option<bool>,
}

/// An app token as listed. Holds no secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppTokenRecord {
    /// Stable id.
    pub id: String,
    /// The app it belongs to.
    pub app_id: String,
    /// Name, unique within the app.
    pub name: String,
    /// The token's last four characters.
    pub last4: String,
    /// Creation time.
    pub created_at: UnixSeconds,
    /// Last recorded use, if any.
    pub last_used_at: Option<UnixSeconds>,
}

/// An app token to store.
#[derive(Debug, Clone)]
pub struct NewAppToken {
    /// Stable id.
    pub id: String,
    /// The app (`NotFound` when it does not exist).
    pub app_id: String,
    /// Validated name.
    pub name: String,
    /// The token's last four characters.
    pub last4: String,
    /// Digest of the token.
    pub digest: SecretDigest,
}

/// The state of an app's attached user, as the check path needs it.
#[derive(Debug, Clone)]
pub struct AttachedUserState {
    /// User id.
    pub id: String,
    /// Username.
    pub username: String,
    /// Staff flag.
    pub is_staff: bool,
    /// Active flag.
    pub active: bool,
    /// The user's current permissions (union of its roles').
    pub permissions: Vec<String>,
}

/// What an app token may do: loaded on a check-cache miss, in one round trip.
#[derive(Debug, Clone)]
pub struct AppTokenPrincipal {
    /// Token id.
    pub token_id: String,
    /// The stored digest, compared again in constant time.
    pub digest: SecretDigest,
    /// App id.
    pub app_id: String,
    /// App name.
    pub app_name: String,
    /// App active flag.
    pub app_active: bool,
    /// The app's own permissions.
    pub permissions: Vec<String>,
    /// The attached user, if any.
    pub attached: Option<AttachedUserState>,
}

/// Apps and app tokens. Every method that changes state is one transaction, which also
/// writes the audit event it is given (whose time is the time of the change).
#[async_trait]
pub trait AppStore: Send + Sync + 'static {
    /// Creates an app. `AlreadyExists` when the name is taken, `NotFound` when the
    /// attached user does not exist.
    async fn create_app(&self, new: &NewApp, event: &Event) -> StoreResult<AppRecord>;
    /// Reads an app by id.
    async fn get_app(&self, id: &str) -> StoreResult<AppRecord>;
    /// All apps by name.
    async fn list_apps(&self) -> StoreResult<Vec<AppRecord>>;
    /// Changes an app. Errors as for `create_app`.
    async fn update_app(&self, id: &str, patch: &AppPatch, event: &Event)
    -> StoreResult<AppRecord>;
    /// Deletes an app and its tokens.
    async fn delete_app(&self, id: &str, event: &Event) -> StoreResult<()>;

    /// Stores a token for an app holding fewer than `max_tokens`; `Precondition` when it
    /// holds that many, `AlreadyExists` when the app has a token of that name.
    async fn create_app_token(
        &self,
        new: &NewAppToken,
        max_tokens: u32,
        event: &Event,
    ) -> StoreResult<AppTokenRecord>;
    /// An app's tokens, oldest first; `NotFound` when the app does not exist.
    async fn list_app_tokens(&self, app_id: &str) -> StoreResult<Vec<AppTokenRecord>>;
    /// Deletes one token of one app and returns what it was.
    async fn revoke_app_token(
        &self,
        app_id: &str,
        token_id: &str,
        event: &Event,
    ) -> StoreResult<AppTokenRecord>;
    /// Deletes the token with this digest, if any, and returns what it was; records
    /// `event`, with the token's id as target, only when there was one.
    async fn revoke_app_token_by_digest(
        &self,
        digest: &SecretDigest,
        event: &Event,
    ) -> StoreResult<Option<AppTokenRecord>>;
    /// The token with this digest, its app and the attached user, with their current
    /// permissions.
    async fn find_app_token(&self, digest: &SecretDigest)
    -> StoreResult<Option<AppTokenPrincipal>>;
    /// Records uses: each token's `last_used_at` moves forward to the time given (never
    /// back). Unknown ids are skipped.
    async fn record_app_token_use(&self, uses: &[(String, UnixSeconds)]) -> StoreResult<()>;
}

/// An app with its attached user's name, joined with one of its permissions (or none);
/// `$tail` adds the condition and the order.
macro_rules! app_select {
    ($tail:literal) => {
        concat!(
            "SELECT a.id, a.name, a.active, u.username AS attached_user, a.created_at, \
                    a.updated_at, ap.permission \
             FROM apps a \
             LEFT JOIN users u ON u.id = a.user_id \
             LEFT JOIN app_permissions ap ON ap.app_id = a.id ",
            $tail
        )
    };
}

/// The columns of an [`AppTokenRow`], for every statement that returns tokens.
macro_rules! token_columns {
    () => {
        "id, app_id, name, last4, created_at, last_used_at"
    };
}

pub(super) const APP_BY_ID: &str = app_select!("WHERE a.id = $1 ORDER BY ap.permission");

pub(super) const ALL_APPS: &str = app_select!("ORDER BY a.name, ap.permission");

pub(super) const INSERT_APP: &str = "\
    INSERT INTO apps (id, name, active, user_id, created_at, updated_at) \
    VALUES ($1, $2, TRUE, $3, $4, $4)";

/// Changes only what is given: `$4` says whether `user_id` changes to `$5`.
pub(super) const UPDATE_APP: &str = "\
    UPDATE apps SET \
        name = COALESCE($2, name), \
        active = COALESCE($3, active), \
        user_id = CASE WHEN $4 THEN $5 ELSE user_id END, \
        updated_at = $6 \
    WHERE id = $1";

pub(super) const INSERT_APP_PERMISSION: &str = "\
    INSERT INTO app_permissions (app_id, permission) VALUES ($1, $2) ON CONFLICT DO NOTHING";

/// Locks the app, so concurrent token creations count its tokens one after the other.
pub(super) const LOCK_APP: &str =
    "UPDATE apps SET updated_at = updated_at WHERE id = $1 RETURNING id";

pub(super) const INSERT_APP_TOKEN: &str = concat!(
    "INSERT INTO app_tokens (id, app_id, name, digest, last4, created_at) \
     VALUES ($1, $2, $3, $4, $5, $6) RETURNING ",
    token_columns!()
);

pub(super) const APP_TOKENS: &str = concat!(
    "SELECT ",
    token_columns!(),
    " FROM app_tokens WHERE app_id = $1 ORDER BY created_at, id"
);

pub(super) const REVOKE_APP_TOKEN: &str = concat!(
    "DELETE FROM app_tokens WHERE id = $1 AND app_id = $2 RETURNING ",
    token_columns!()
);

pub(super) const REVOKE_APP_TOKEN_BY_DIGEST: &str = concat!(
    "DELETE FROM app_tokens WHERE digest = $1 RETURNING ",
    token_columns!()
);

/// Moves `last_used_at` forward only, so batches recorded out of order never undo a
/// later use.
pub(super) const RECORD_APP_TOKEN_USE: &str = "\
    UPDATE app_tokens SET last_used_at = $2 \
    WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < $2)";

/// The tokens of every app attached to user `$1`.
/// Locks the apps attached to user `$1`, so a token created for one of them meanwhile
/// either commits first (and is deleted with the rest) or waits until the revocation
/// has committed.
pub(super) const LOCK_USER_APPS: &str = "\
    UPDATE apps SET updated_at = updated_at WHERE user_id = $1";

pub(super) const DELETE_USER_APP_TOKENS: &str = "\
    DELETE FROM app_tokens WHERE app_id IN (SELECT id FROM apps WHERE user_id = $1)";

/// Deactivates the apps of user `$1` before it is deleted (its foreign key then detaches
/// them): an app attached to nobody is bound by its own permissions only, which would
/// widen it. Taking their row locks first also makes a concurrent token creation finish
/// before the user's app tokens are deleted.
pub(super) const DEACTIVATE_USER_APPS: &str = "\
    UPDATE apps SET active = FALSE, updated_at = $2 WHERE user_id = $1";

/// A token with its app and attached user, in one round trip: rows with `source` 'app'
/// carry the app's permissions (one row with none when it has none), rows with 'user'
/// the attached user's permissions through its roles (none without a user). Every row
/// repeats the token, app and user columns.
pub(super) const APP_TOKEN_PRINCIPAL: &str = "\
    SELECT t.id AS token_id, t.digest, a.id AS app_id, a.name AS app_name, \
           a.active AS app_active, u.id AS user_id, u.username, u.is_staff, \
           u.active AS user_active, 'app' AS source, ap.permission \
    FROM app_tokens t JOIN apps a ON a.id = t.app_id \
    LEFT JOIN users u ON u.id = a.user_id \
    LEFT JOIN app_permissions ap ON ap.app_id = a.id \
    WHERE t.digest = $1 \
    UNION ALL \
    SELECT t.id, t.digest, a.id, a.name, a.active, u.id, u.username, u.is_staff, u.active, \
           'user', rp.permission \
    FROM app_tokens t JOIN apps a ON a.id = t.app_id \
    JOIN users u ON u.id = a.user_id \
    JOIN user_roles ur ON ur.user_id = u.id \
    JOIN role_permissions rp ON rp.role_name = ur.role_name \
    WHERE t.digest = $1";

/// An app joined with one of its permissions (or none).
#[derive(sqlx::FromRow)]
pub(super) struct AppRow {
    pub id: String,
    pub name: String,
    pub active: bool,
    pub attached_user: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub permission: Option<String>,
}

#[derive(sqlx::FromRow)]
pub(super) struct AppTokenRow {
    pub id: String,
    pub app_id: String,
    pub name: String,
    pub last4: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
}

/// One row of [`APP_TOKEN_PRINCIPAL`]; the user columns are NULL without a user.
#[derive(sqlx::FromRow)]
pub(super) struct AppTokenPrincipalRow {
    pub token_id: String,
    pub digest: Vec<u8>,
    pub app_id: String,
    pub app_name: String,
    pub app_active: bool,
    pub user_id: Option<String>,
    pub username: Option<String>,
    pub is_staff: Option<bool>,
    pub user_active: Option<bool>,
    pub source: String,
    pub permission: Option<String>,
}

/// Folds rows ordered by app into apps with their permissions.
pub(super) fn apps(rows: Vec<AppRow>) -> Vec<AppRecord> {
    super::rows::fold(
        rows,
        |r| AppRecord {
            id: r.id,
            name: r.name,
            active: r.active,
            permissions: r.permission.into_iter().collect(),
            attached_user: r.attached_user,
            created_at: r.created_at,
            updated_at: r.updated_at,
        },
        |a, r| a.id == r.id,
        |a, r| a.permissions.extend(r.permission),
    )
}

impl From<AppTokenRow> for AppTokenRecord {
    fn from(r: AppTokenRow) -> Self {
        Self {
            id: r.id,
            app_id: r.app_id,
            name: r.name,
            last4: r.last4,
            created_at: r.created_at,
            last_used_at: r.last_used_at,
        }
    }
}

/// Folds the rows of one token (in any order); `None` when there are none.
pub(super) fn app_token_principal(
    rows: Vec<AppTokenPrincipalRow>,
) -> StoreResult<Option<AppTokenPrincipal>> {
    let mut rows = rows.into_iter().peekable();
    let Some(first) = rows.peek() else {
        return Ok(None);
    };
    let attached = match (
        &first.user_id,
        &first.username,
        first.is_staff,
        first.user_active,
    ) {
        (Some(id), Some(username), Some(is_staff), Some(active)) => Some(AttachedUserState {
            id: id.clone(),
            username: username.clone(),
            is_staff,
            active,
            permissions: Vec::new(),
        }),
        _ => None,
    };
    let mut principal = AppTokenPrincipal {
        token_id: first.token_id.clone(),
        digest: super::rows::digest(&first.digest)?,
        app_id: first.app_id.clone(),
        app_name: first.app_name.clone(),
        app_active: first.app_active,
        permissions: Vec::new(),
        attached,
    };
    for row in rows {
        match (row.source.as_str(), principal.attached.as_mut()) {
            ("app", _) => principal.permissions.extend(row.permission),
            (_, Some(user)) => user.permissions.extend(row.permission),
            // 'user' rows come only with a user.
            (_, None) => {}
        }
    }
    Ok(Some(principal))
}

/// Implements [`AppStore`] for `$store` (see `sql.rs`).
macro_rules! impl_app_store {
    ($store:ty) => {
        impl $store {
            async fn fetch_app(conn: &mut Conn, id: &str) -> StoreResult<AppRecord> {
                let rows = sqlx::query_as::<_, apps::AppRow>(apps::APP_BY_ID)
                    .bind(id)
                    .fetch_all(&mut *conn)
                    .await?;
                rows::one(apps::apps(rows), || format!("app '{id}'"))
            }

            /// The id of the user to attach, locked (see `sql::LOCK_USER`).
            async fn attached_user_id(
                conn: &mut Conn,
                username: Option<&str>,
            ) -> StoreResult<Option<String>> {
                match username {
                    Some(username) => Ok(Some(Self::lock_user(conn, username, None).await?)),
                    None => Ok(None),
                }
            }

            /// Maps a taken app name to `AlreadyExists`.
            fn app_name_taken(e: sqlx::Error, name: &str) -> StoreError {
                if sql::violates_unique(&e, "name") {
                    StoreError::AlreadyExists(format!("app '{name}'"))
                } else {
                    e.into()
                }
            }
        }

        #[async_trait::async_trait]
        impl AppStore for $store {
            async fn create_app(&self, new: &NewApp, event: &Event) -> StoreResult<AppRecord> {
                let now = event.at;
                let mut tx = self.begin_write().await?;
                let user_id = Self::attached_user_id(&mut tx, new.attached_user.as_deref()).await?;
                sqlx::query(apps::INSERT_APP)
                    .bind(&new.id)
                    .bind(&new.name)
                    .bind(user_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| Self::app_name_taken(e, &new.name))?;
                Self::insert_each(
                    &mut tx,
                    apps::INSERT_APP_PERMISSION,
                    &new.id,
                    &new.permissions,
                )
                .await?;
                let app = Self::fetch_app(&mut tx, &new.id).await?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(app)
            }

            async fn get_app(&self, id: &str) -> StoreResult<AppRecord> {
                let mut conn = self.pool.acquire().await?;
                Self::fetch_app(&mut conn, id).await
            }

            async fn list_apps(&self) -> StoreResult<Vec<AppRecord>> {
                let rows = sqlx::query_as::<_, apps::AppRow>(apps::ALL_APPS)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(apps::apps(rows))
            }

            async fn update_app(
                &self,
                id: &str,
                patch: &AppPatch,
                event: &Event,
            ) -> StoreResult<AppRecord> {
                let now = event.at;
                let mut tx = self.begin_write().await?;
                let user_id = match &patch.attached_user {
                    Some(username) => Self::attached_user_id(&mut tx, username.as_deref()).await?,
                    None => None,
                };
                let updated = sqlx::query(apps::UPDATE_APP)
                    .bind(id)
                    .bind(&patch.name)
                    .bind(patch.active)
                    .bind(patch.attached_user.is_some())
                    .bind(user_id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| match &patch.name {
                        Some(name) => Self::app_name_taken(e, name),
                        None => e.into(),
                    })?;
                if updated.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("app '{id}'")));
                }
                if let Some(permissions) = &patch.permissions {
                    sqlx::query("DELETE FROM app_permissions WHERE app_id = $1")
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                    Self::insert_each(&mut tx, apps::INSERT_APP_PERMISSION, id, permissions)
                        .await?;
                }
                let app = Self::fetch_app(&mut tx, id).await?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(app)
            }

            async fn delete_app(&self, id: &str, event: &Event) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                let deleted = sqlx::query("DELETE FROM apps WHERE id = $1")
                    .bind(id)
                    .execute(&mut *tx)
                    .await?;
                if deleted.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("app '{id}'")));
                }
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn create_app_token(
                &self,
                new: &NewAppToken,
                max_tokens: u32,
                event: &Event,
            ) -> StoreResult<AppTokenRecord> {
                let now = event.at;
                let mut tx = self.begin_write().await?;
                sqlx::query_scalar::<_, String>(apps::LOCK_APP)
                    .bind(&new.app_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("app '{}'", new.app_id)))?;
                let held: i64 =
                    sqlx::query_scalar("SELECT COUNT(*) FROM app_tokens WHERE app_id = $1")
                        .bind(&new.app_id)
                        .fetch_one(&mut *tx)
                        .await?;
                if held >= i64::from(max_tokens) {
                    return Err(StoreError::Precondition(format!(
                        "an app holds at most {max_tokens} tokens"
                    )));
                }
                let inserted = sqlx::query_as::<_, apps::AppTokenRow>(apps::INSERT_APP_TOKEN)
                    .bind(&new.id)
                    .bind(&new.app_id)
                    .bind(&new.name)
                    .bind(new.digest.as_bytes())
                    .bind(&new.last4)
                    .bind(now)
                    .fetch_one(&mut *tx)
                    .await;
                let token = match inserted {
                    Err(e) if sql::violates_unique(&e, "name") => {
                        return Err(StoreError::AlreadyExists(format!(
                            "app token '{}'",
                            new.name
                        )));
                    }
                    other => other?,
                };
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(token.into())
            }

            async fn list_app_tokens(&self, app_id: &str) -> StoreResult<Vec<AppTokenRecord>> {
                let mut conn = self.pool.acquire().await?;
                sqlx::query_scalar::<_, String>("SELECT id FROM apps WHERE id = $1")
                    .bind(app_id)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("app '{app_id}'")))?;
                let rows = sqlx::query_as::<_, apps::AppTokenRow>(apps::APP_TOKENS)
                    .bind(app_id)
                    .fetch_all(&mut *conn)
                    .await?;
                Ok(rows.into_iter().map(AppTokenRecord::from).collect())
            }

            async fn revoke_app_token(
                &self,
                app_id: &str,
                token_id: &str,
                event: &Event,
            ) -> StoreResult<AppTokenRecord> {
                let mut tx = self.begin_write().await?;
                let token = sqlx::query_as::<_, apps::AppTokenRow>(apps::REVOKE_APP_TOKEN)
                    .bind(token_id)
                    .bind(app_id)
                    .fetch_optional(&mut *tx)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("app token '{token_id}'")))?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(token.into())
            }

            async fn revoke_app_token_by_digest(
                &self,
                digest: &SecretDigest,
                event: &Event,
            ) -> StoreResult<Option<AppTokenRecord>> {
                let mut tx = self.begin_write().await?;
                let token =
                    sqlx::query_as::<_, apps::AppTokenRow>(apps::REVOKE_APP_TOKEN_BY_DIGEST)
                        .bind(digest.as_bytes())
                        .fetch_optional(&mut *tx)
                        .await?;
                let Some(token) = token else {
                    return Ok(None);
                };
                let mut event = event.clone();
                event.target = format!("app_token:{}", token.id);
                let event = event.with("app_id", token.app_id.as_str());
                Self::write_event(&mut tx, &event).await?;
                tx.commit().await?;
                Ok(Some(token.into()))
            }

            async fn find_app_token(
                &self,
                digest: &SecretDigest,
            ) -> StoreResult<Option<AppTokenPrincipal>> {
                let rows =
                    sqlx::query_as::<_, apps::AppTokenPrincipalRow>(apps::APP_TOKEN_PRINCIPAL)
                        .bind(digest.as_bytes())
                        .fetch_all(&self.pool)
                        .await?;
                apps::app_token_principal(rows)
            }

            async fn record_app_token_use(
                &self,
                uses: &[(String, UnixSeconds)],
            ) -> StoreResult<()> {
                if uses.is_empty() {
                    return Ok(());
                }
                let mut tx = self.begin_write().await?;
                for (id, at) in uses {
                    sqlx::query(apps::RECORD_APP_TOKEN_USE)
                        .bind(id)
                        .bind(at)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                Ok(())
            }
        }
    };
}
pub(super) use impl_app_store;
