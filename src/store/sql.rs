//! The SQL both backends share.
//!
//! SQLite and PostgreSQL accept the same statements here (`$n` placeholders, `RETURNING`,
//! `ON CONFLICT`), so the [`Store`](super::Store) implementation is written once, as a
//! macro instantiated for each backend's concrete sqlx types. Queries are checked at run
//! time, and the behaviour suite in `tests/` runs against both databases.
//!
//! A backend type using the macro must have a `pool` field and a `begin_write` method that
//! starts a transaction able to write without upgrade deadlocks.

/// True when `e` is a unique-constraint violation mentioning `column`.
pub(super) fn violates_unique(e: &sqlx::Error, column: &str) -> bool {
    match e {
        sqlx::Error::Database(db) => db.is_unique_violation() && db.message().contains(column),
        _ => false,
    }
}

pub(super) const USER_BY_NAME: &str = "\
    SELECT u.id, u.username, u.email, u.is_staff, u.is_customer, u.active, u.api_access, \
           u.created_at, u.updated_at, ur.role_name \
    FROM users u LEFT JOIN user_roles ur ON ur.user_id = u.id \
    WHERE u.username = $1 ORDER BY ur.role_name";

pub(super) const USERS_AFTER: &str = "\
    SELECT u.id, u.username, u.email, u.is_staff, u.is_customer, u.active, u.api_access, \
           u.created_at, u.updated_at, ur.role_name \
    FROM (SELECT * FROM users WHERE username > $1 ORDER BY username LIMIT $2) u \
    LEFT JOIN user_roles ur ON ur.user_id = u.id \
    ORDER BY u.username, ur.role_name";

pub(super) const ROLE_BY_NAME: &str = "\
    SELECT r.name, r.description, r.builtin, r.created_at, rp.permission \
    FROM roles r LEFT JOIN role_permissions rp ON rp.role_name = r.name \
    WHERE r.name = $1 ORDER BY rp.permission";

pub(super) const ALL_ROLES: &str = "\
    SELECT r.name, r.description, r.builtin, r.created_at, rp.permission \
    FROM roles r LEFT JOIN role_permissions rp ON rp.role_name = r.name \
    ORDER BY r.name, rp.permission";

pub(super) const TOKEN_OWNER: &str = "\
    SELECT u.id, u.username, u.is_staff, u.is_customer, u.active, u.api_access, \
           u.api_token_digest, rp.permission \
    FROM users u \
    LEFT JOIN user_roles ur ON ur.user_id = u.id \
    LEFT JOIN role_permissions rp ON rp.role_name = ur.role_name \
    WHERE u.api_token_digest = $1";

pub(super) const INSERT_USER: &str = "\
    INSERT INTO users (id, username, email, is_staff, is_customer, active, api_access, \
                       api_token_digest, api_token_created_at, created_at, updated_at) \
    VALUES ($1, $2, $3, $4, $5, TRUE, $6, $7, $8, $9, $9)";

/// Returns what the caller must check before committing: a user is staff, a customer,
/// or both.
pub(super) const UPDATE_USER: &str = "\
    UPDATE users SET \
        email = CASE WHEN $2 THEN $3 ELSE email END, \
        is_staff = COALESCE($4, is_staff), \
        is_customer = COALESCE($5, is_customer), \
        active = COALESCE($6, active), \
        updated_at = $7 \
    WHERE username = $1 \
    RETURNING id, is_staff, is_customer";

/// Locks a user for the rest of the transaction and returns its id, setting `updated_at`
/// to `$2` unless it is NULL. The update takes the row lock on PostgreSQL (SQLite's write
/// lock is already held), so attaching an app to the user and deleting the user are
/// ordered: an app is never attached, still active, to a user deleted meanwhile.
pub(super) const LOCK_USER: &str = "\
    UPDATE users SET updated_at = COALESCE($2, updated_at) WHERE username = $1 RETURNING id";

/// Deletes the API token; API access stays as it is. Touches a row only when there was
/// a token, so the caller learns whether one was deleted.
pub(super) const DELETE_API_TOKEN: &str = "\
    UPDATE users SET api_token_digest = NULL, api_token_created_at = NULL \
    WHERE id = $1 AND api_token_digest IS NOT NULL";

pub(super) const INSERT_ROLE_PERMISSION: &str = "\
    INSERT INTO role_permissions (role_name, permission) VALUES ($1, $2) \
    ON CONFLICT DO NOTHING";

/// Turns API access on with a token; only for an active user whose access is off.
pub(super) const ENABLE_API_ACCESS: &str = "\
    UPDATE users SET api_access = TRUE, api_token_digest = $2, api_token_created_at = $3, \
                     updated_at = $3 \
    WHERE username = $1 AND api_access = FALSE AND active = TRUE";

/// Replaces the token; only for an active user whose access is on. The old digest is
/// overwritten in the same statement, so the old token is gone at commit.
pub(super) const REPLACE_API_TOKEN: &str = "\
    UPDATE users SET api_token_digest = $2, api_token_created_at = $3, updated_at = $3 \
    WHERE username = $1 AND api_access = TRUE AND active = TRUE";

/// Every user's names as stored, read while the login-name migration is pending.
pub(super) const STORED_NAMES: &str = "SELECT id, username, email FROM users";

/// The version of the migration that makes one login namespace.
pub(super) const LOGIN_NAMES_MIGRATION: i64 = 5;

/// Login names `$1` (a username) and `$2` (an email, or NULL) that a user other than `$3`
/// holds, and whether each is that user's username or email.
pub(super) const LOGIN_NAMES_TAKEN: &str = "\
    SELECT name, kind FROM login_names WHERE (name = $1 OR name = $2) AND user_id <> $3";

pub(super) const INSERT_LOGIN_NAME: &str =
    "INSERT INTO login_names (name, user_id, kind) VALUES ($1, $2, $3)";

/// A user's names as the previous release stored them: usernames in any case, emails
/// lower-cased but not necessarily NFC.
#[derive(sqlx::FromRow)]
pub(super) struct StoredNames {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
}

/// Two users whose names would share a login key, each named by its username.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Clash {
    /// Two usernames with one key.
    Usernames(String, String),
    /// The first user's username is the second user's email.
    UsernameIsEmail(String, String),
    /// Two emails with one key (the third): distinct as stored, equal once NFC.
    Emails(String, String, String),
}

/// Which of a user's names holds a login key.
#[derive(Clone, Copy)]
enum Held {
    Username,
    Email,
}

/// Every clash among `users`. Computed here with [`login_key`] rather than in SQL,
/// because neither backend's SQL normalises Unicode (NFC), and bytes compared as
/// stored miss emails that differ only in composition.
///
/// [`login_key`]: crate::domain::names::login_key
pub(super) fn login_name_clashes(users: &[StoredNames]) -> Vec<Clash> {
    use crate::domain::names::login_key;
    // Grouped by key, so the work is linear in users, not in pairs of them.
    let mut holders: std::collections::HashMap<String, Vec<(Held, &StoredNames)>> =
        std::collections::HashMap::new();
    for user in users {
        let names = std::iter::once((Held::Username, user.username.as_str()))
            .chain(user.email.as_deref().map(|e| (Held::Email, e)));
        for (held, name) in names {
            holders
                .entry(login_key(name))
                .or_default()
                .push((held, user));
        }
    }
    let mut clashes: Vec<Clash> = holders
        .iter()
        .flat_map(|(key, holders)| clashes_among(key, holders))
        .collect();
    clashes.sort();
    clashes
}

/// The clashes among the holders of one key: one per pair of them.
fn clashes_among(key: &str, holders: &[(Held, &StoredNames)]) -> Vec<Clash> {
    let mut clashes = Vec::new();
    for (i, &a) in holders.iter().enumerate() {
        clashes.extend(holders[i + 1..].iter().filter_map(|&b| clash(key, a, b)));
    }
    clashes
}

/// The clash between two holders of `key`, unless they are one user (whose own username
/// may be its email).
fn clash(key: &str, a: (Held, &StoredNames), b: (Held, &StoredNames)) -> Option<Clash> {
    let ((held_a, a), (held_b, b)) = (a, b);
    if a.id == b.id {
        return None;
    }
    let name = |user: &StoredNames| user.username.clone();
    // Symmetric pairs in name order, so the report does not depend on the read order.
    let (x, y) = if a.username <= b.username {
        (a, b)
    } else {
        (b, a)
    };
    Some(match (held_a, held_b) {
        (Held::Username, Held::Username) => Clash::Usernames(name(x), name(y)),
        (Held::Username, Held::Email) => Clash::UsernameIsEmail(name(a), name(b)),
        (Held::Email, Held::Username) => Clash::UsernameIsEmail(name(b), name(a)),
        (Held::Email, Held::Email) => Clash::Emails(name(x), name(y), key.to_owned()),
    })
}

/// The clash report, one clause per pair.
pub(super) fn clash_report(clashes: &[Clash]) -> String {
    let pairs: Vec<String> = clashes
        .iter()
        .map(|clash| match clash {
            Clash::Usernames(a, b) => format!("usernames '{a}' and '{b}' differ only in case"),
            Clash::UsernameIsEmail(a, b) => format!("username '{a}' is the email of user '{b}'"),
            Clash::Emails(a, b, key) => {
                format!("users '{a}' and '{b}' have the same email once normalised ('{key}')")
            }
        })
        .collect();
    format!(
        "{}. Delete one user of each pair, or change the email, with the release running \
         now; then migrate again",
        pairs.join("; ")
    )
}

/// The stored emails that are not their login key, by user id, with that key: the
/// migration copies emails into the namespace as they are, and lookups use the key.
pub(super) fn email_rewrites(users: &[StoredNames]) -> Vec<(&str, String)> {
    users
        .iter()
        .filter_map(|user| {
            let email = user.email.as_deref()?;
            let key = crate::domain::names::login_key(email);
            (key != email).then_some((user.id.as_str(), key))
        })
        .collect()
}

/// What revoking everything of a user ended.
pub(super) struct Revoked {
    pub sessions: u64,
    pub api_token: bool,
    pub app_tokens: u64,
}

/// Implements [`Store`](super::Store) for `$store`, whose pool is a `sqlx::Pool<$db>`.
macro_rules! impl_sql_store {
    ($store:ty, $db:ty, $migrator:expr) => {
        type Conn = <$db as sqlx::Database>::Connection;

        impl $store {
            /// Writes the audit event of a change, inside the change's transaction.
            async fn write_event(conn: &mut Conn, event: &Event) -> StoreResult<()> {
                sqlx::query(super::audit::INSERT)
                    .bind(event.at)
                    .bind(event.actor.id.as_ref())
                    .bind(&event.actor.name)
                    .bind(&event.actor.credential)
                    .bind(event.action)
                    .bind(&event.target)
                    .bind(event.outcome.as_str())
                    .bind(&event.reason)
                    .bind(&event.source)
                    .bind(&event.peer)
                    .bind(&event.request_id)
                    .bind(event.details_json())
                    .execute(&mut *conn)
                    .await?;
                Ok(())
            }

            /// Whether the migration that makes the login namespace is still to run on a
            /// database that has been migrated before (a fresh one has no users to check).
            async fn login_names_pending(&self) -> bool {
                let applied = sqlx::query_scalar::<_, i64>(
                    "SELECT version FROM _sqlx_migrations WHERE version = $1 AND success",
                )
                .bind(sql::LOGIN_NAMES_MIGRATION)
                .fetch_optional(&self.pool)
                .await;
                // An error means no migrations table: never migrated at all.
                matches!(applied, Ok(None))
            }

            /// Readies the previous release's names for the login namespace, while its
            /// migration is pending: refuses clashes, naming them, and otherwise stores
            /// every email as its login key, since the migration's SQL copies emails as
            /// they are and cannot normalise them (NFC) itself.
            async fn prepare_login_names(&self) -> StoreResult<()> {
                if !self.login_names_pending().await {
                    return Ok(());
                }
                // One transaction holding the users (an older release may still be
                // serving): no email changes between the check and the rewrite.
                let mut tx = self.begin_write().await?;
                sqlx::query(Self::HOLD_USERS).execute(&mut *tx).await?;
                let users = sqlx::query_as::<_, sql::StoredNames>(sql::STORED_NAMES)
                    .fetch_all(&mut *tx)
                    .await?;
                let clashes = sql::login_name_clashes(&users);
                if !clashes.is_empty() {
                    return Err(StoreError::LoginNameClashes(sql::clash_report(&clashes)));
                }
                let rewrites = sql::email_rewrites(&users);
                for (id, key) in &rewrites {
                    sqlx::query("UPDATE users SET email = $1 WHERE id = $2")
                        .bind(key)
                        .bind(id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await?;
                tracing::info!(
                    rewritten = rewrites.len(),
                    "stored emails normalised (lower case, NFC) for the login namespace"
                );
                Ok(())
            }

            /// Refuses login names another user holds, naming which: a username is
            /// refused if it is anyone's username or email, an email likewise.
            async fn check_login_names(
                conn: &mut Conn,
                user_id: &str,
                username: &str,
                email: Option<&str>,
            ) -> StoreResult<()> {
                let taken = sqlx::query_as::<_, (String, String)>(sql::LOGIN_NAMES_TAKEN)
                    .bind(username)
                    .bind(email)
                    .bind(user_id)
                    .fetch_all(&mut *conn)
                    .await?;
                let Some((name, kind)) = taken.into_iter().next() else {
                    return Ok(());
                };
                Err(StoreError::AlreadyExists(
                    match (name == username, kind.as_str()) {
                        (true, "username") => format!("user '{username}'"),
                        (true, _) => format!("a user with the email '{username}'"),
                        (false, "username") => "a user with this email as username".into(),
                        (false, _) => "a user with this email".into(),
                    },
                ))
            }

            /// Enters a user's email in the login namespace, unless it is its own
            /// username (which is entered already).
            async fn insert_email_name(
                conn: &mut Conn,
                user_id: &str,
                username: &str,
                email: Option<&str>,
            ) -> StoreResult<()> {
                let Some(email) = email.filter(|e| *e != username) else {
                    return Ok(());
                };
                sqlx::query(sql::INSERT_LOGIN_NAME)
                    .bind(email)
                    .bind(user_id)
                    .bind("email")
                    .execute(&mut *conn)
                    .await
                    .map_err(Self::login_name_taken)?;
                Ok(())
            }

            /// A login name entered meanwhile by a concurrent change.
            fn login_name_taken(e: sqlx::Error) -> StoreError {
                match &e {
                    sqlx::Error::Database(db) if db.is_unique_violation() => {
                        StoreError::AlreadyExists("a user with this username or email".into())
                    }
                    _ => e.into(),
                }
            }

            async fn fetch_user(conn: &mut Conn, username: &str) -> StoreResult<UserRecord> {
                let rows = sqlx::query_as::<_, rows::UserRoleRow>(sql::USER_BY_NAME)
                    .bind(username)
                    .fetch_all(&mut *conn)
                    .await?;
                rows::one(rows::users(rows), || format!("user '{username}'"))
            }

            async fn fetch_role(conn: &mut Conn, name: &str) -> StoreResult<RoleRecord> {
                let rows = sqlx::query_as::<_, rows::RolePermissionRow>(sql::ROLE_BY_NAME)
                    .bind(name)
                    .fetch_all(&mut *conn)
                    .await?;
                rows::one(rows::roles(rows), || format!("role '{name}'"))
            }

            /// Fails with `NotFound` unless the role exists; returns its built-in flag.
            async fn role_builtin(conn: &mut Conn, name: &str) -> StoreResult<bool> {
                sqlx::query_scalar::<_, bool>("SELECT builtin FROM roles WHERE name = $1")
                    .bind(name)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("role '{name}'")))
            }

            /// Fails with `Precondition` when the role is built in.
            async fn mutable_role(conn: &mut Conn, name: &str) -> StoreResult<()> {
                if Self::role_builtin(conn, name).await? {
                    return Err(StoreError::Precondition(format!(
                        "role '{name}' is built in and cannot be changed"
                    )));
                }
                Ok(())
            }

            async fn user_id(conn: &mut Conn, username: &str) -> StoreResult<String> {
                sqlx::query_scalar::<_, String>("SELECT id FROM users WHERE username = $1")
                    .bind(username)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("user '{username}'")))
            }

            /// Locks the user (see `sql::LOCK_USER`) and returns its id; with `now`, also
            /// records a change.
            async fn lock_user(
                conn: &mut Conn,
                username: &str,
                now: Option<UnixSeconds>,
            ) -> StoreResult<String> {
                sqlx::query_scalar::<_, String>(sql::LOCK_USER)
                    .bind(username)
                    .bind(now)
                    .fetch_optional(&mut *conn)
                    .await?
                    .ok_or_else(|| StoreError::NotFound(format!("user '{username}'")))
            }

            /// Ends every credential of a user: its live sessions, its API token (access
            /// stays on) and the tokens of the apps attached to it.
            async fn revoke_user(
                conn: &mut Conn,
                user_id: &str,
                now: UnixSeconds,
            ) -> StoreResult<sql::Revoked> {
                let sessions = sqlx::query(super::oauth_sql::REVOKE_USER_SESSIONS)
                    .bind(user_id)
                    .bind(now)
                    .execute(&mut *conn)
                    .await?;
                let api_token = sqlx::query(sql::DELETE_API_TOKEN)
                    .bind(user_id)
                    .execute(&mut *conn)
                    .await?;
                sqlx::query(apps::LOCK_USER_APPS)
                    .bind(user_id)
                    .execute(&mut *conn)
                    .await?;
                let app_tokens = sqlx::query(apps::DELETE_USER_APP_TOKENS)
                    .bind(user_id)
                    .execute(&mut *conn)
                    .await?;
                Ok(sql::Revoked {
                    sessions: sessions.rows_affected(),
                    api_token: api_token.rows_affected() > 0,
                    app_tokens: app_tokens.rows_affected(),
                })
            }

            async fn insert_user(
                conn: &mut Conn,
                user: &NewUser,
                token: Option<&SecretDigest>,
                now: UnixSeconds,
            ) -> StoreResult<()> {
                let id = uuid::Uuid::now_v7().to_string();
                let email = user.email.as_deref();
                Self::check_login_names(conn, &id, &user.username, email).await?;
                let inserted = sqlx::query(sql::INSERT_USER)
                    .bind(&id)
                    .bind(&user.username)
                    .bind(&user.email)
                    .bind(user.is_staff)
                    .bind(user.is_customer)
                    .bind(token.is_some())
                    .bind(token.map(|d| d.as_bytes().to_vec()))
                    .bind(token.map(|_| now))
                    .bind(now)
                    .execute(&mut *conn)
                    .await;
                match inserted {
                    Err(e) => return Err(Self::login_name_taken(e)),
                    Ok(_) => {}
                };
                sqlx::query(sql::INSERT_LOGIN_NAME)
                    .bind(&user.username)
                    .bind(&id)
                    .bind("username")
                    .execute(&mut *conn)
                    .await
                    .map_err(Self::login_name_taken)?;
                Self::insert_email_name(conn, &id, &user.username, email).await?;
                for role in &user.roles {
                    Self::role_builtin(conn, role).await?;
                    sqlx::query(
                        "INSERT INTO user_roles (user_id, role_name) VALUES ($1, $2) \
                         ON CONFLICT DO NOTHING",
                    )
                    .bind(&id)
                    .bind(role)
                    .execute(&mut *conn)
                    .await?;
                }
                Ok(())
            }

            async fn insert_permissions(
                conn: &mut Conn,
                role: &str,
                permissions: &[String],
            ) -> StoreResult<()> {
                Self::insert_each(conn, sql::INSERT_ROLE_PERMISSION, role, permissions).await
            }

            /// Runs `statement` binding `owner` and each of `values` in turn.
            async fn insert_each(
                conn: &mut Conn,
                statement: &'static str,
                owner: &str,
                values: &[String],
            ) -> StoreResult<()> {
                for value in values {
                    sqlx::query(statement)
                        .bind(owner)
                        .bind(value)
                        .execute(&mut *conn)
                        .await?;
                }
                Ok(())
            }

            /// Explains why a conditional update on API access touched no row.
            async fn api_access_refusal(conn: &mut Conn, username: &str) -> StoreError {
                match Self::fetch_user(conn, username).await {
                    Err(e) => e,
                    Ok(u) if !u.active => {
                        StoreError::Precondition(format!("user '{username}' is disabled"))
                    }
                    Ok(u) if u.api_access => StoreError::Precondition(format!(
                        "API access is already on for user '{username}'; \
                         call RegenerateApiToken for a new token"
                    )),
                    Ok(_) => StoreError::Precondition(format!(
                        "API access is off for user '{username}'; turn it on with SetApiAccess"
                    )),
                }
            }

            /// Runs `statement` (binding username, digest, now), which sets the token
            /// only when the user's state allows it, and explains a refusal.
            async fn set_api_token(
                &self,
                statement: &'static str,
                username: &str,
                digest: &SecretDigest,
                event: &Event,
            ) -> StoreResult<UserRecord> {
                let mut tx = self.begin_write().await?;
                let updated = sqlx::query(statement)
                    .bind(username)
                    .bind(digest.as_bytes())
                    .bind(event.at)
                    .execute(&mut *tx)
                    .await?;
                if updated.rows_affected() == 0 {
                    return Err(Self::api_access_refusal(&mut tx, username).await);
                }
                let user = Self::fetch_user(&mut tx, username).await?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(user)
            }

            async fn set_user_role(
                &self,
                username: &str,
                role: &str,
                assign: bool,
                event: &Event,
            ) -> StoreResult<UserRecord> {
                let mut tx = self.begin_write().await?;
                let id = Self::user_id(&mut tx, username).await?;
                Self::role_builtin(&mut tx, role).await?;
                let statement = if assign {
                    "INSERT INTO user_roles (user_id, role_name) VALUES ($1, $2) \
                     ON CONFLICT DO NOTHING"
                } else {
                    "DELETE FROM user_roles WHERE user_id = $1 AND role_name = $2"
                };
                sqlx::query(statement)
                    .bind(&id)
                    .bind(role)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE users SET updated_at = $2 WHERE id = $1")
                    .bind(&id)
                    .bind(event.at)
                    .execute(&mut *tx)
                    .await?;
                let user = Self::fetch_user(&mut tx, username).await?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(user)
            }
        }

        #[async_trait::async_trait]
        impl Store for $store {
            async fn migrate(&self) -> StoreResult<()> {
                self.prepare_login_names().await?;
                let mut migrator = $migrator;
                // Migrations this build does not know are a newer release's, applied while
                // this one still serves (a rolling upgrade, a rollback): they are not ours.
                migrator.set_ignore_missing(true);
                migrator.run(&self.pool).await?;
                Ok(())
            }

            async fn ping(&self) -> StoreResult<()> {
                sqlx::query("SELECT 1").execute(&self.pool).await?;
                Ok(())
            }

            async fn migrations_applied(&self) -> StoreResult<bool> {
                let applied: Vec<i64> =
                    sqlx::query_scalar("SELECT version FROM _sqlx_migrations WHERE success")
                        .fetch_all(&self.pool)
                        .await?;
                Ok($migrator
                    .iter()
                    .filter(|m| !m.migration_type.is_down_migration())
                    .all(|m| applied.contains(&m.version)))
            }

            fn pool_status(&self) -> $crate::store::PoolStatus {
                $crate::store::PoolStatus {
                    open: self.pool.size(),
                    idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX),
                    max: self.pool.options().get_max_connections(),
                }
            }

            async fn ensure_builtin_role(
                &self,
                role: &BuiltinRole,
                now: UnixSeconds,
            ) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                sqlx::query(
                    "INSERT INTO roles (name, description, builtin, created_at) \
                     VALUES ($1, $2, TRUE, $3) \
                     ON CONFLICT (name) DO UPDATE SET description = $2, builtin = TRUE",
                )
                .bind(role.name)
                .bind(role.description)
                .bind(now)
                .execute(&mut *tx)
                .await?;
                sqlx::query("DELETE FROM role_permissions WHERE role_name = $1")
                    .bind(role.name)
                    .execute(&mut *tx)
                    .await?;
                Self::insert_permissions(&mut tx, role.name, &role.permissions).await?;
                tx.commit().await?;
                Ok(())
            }

            async fn bootstrap_user(
                &self,
                user: &NewUser,
                digest: &SecretDigest,
                event: &Event,
            ) -> StoreResult<bool> {
                let mut tx = self.begin_write().await?;
                let users: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM users")
                    .fetch_one(&mut *tx)
                    .await?;
                if users > 0 {
                    return Ok(false);
                }
                match Self::insert_user(&mut tx, user, Some(digest), event.at).await {
                    // Another replica bootstrapped at the same moment.
                    Err(StoreError::AlreadyExists(_)) => return Ok(false),
                    other => other?,
                }
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(true)
            }

            async fn create_user(&self, user: &NewUser, event: &Event) -> StoreResult<UserRecord> {
                let mut tx = self.begin_write().await?;
                Self::insert_user(&mut tx, user, None, event.at).await?;
                let created = Self::fetch_user(&mut tx, &user.username).await?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(created)
            }

            async fn get_user(&self, username: &str) -> StoreResult<UserRecord> {
                let mut conn = self.pool.acquire().await?;
                Self::fetch_user(&mut conn, username).await
            }

            async fn list_users(&self, after: &str, limit: u32) -> StoreResult<Vec<UserRecord>> {
                let rows = sqlx::query_as::<_, rows::UserRoleRow>(sql::USERS_AFTER)
                    .bind(after)
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows::users(rows))
            }

            async fn update_user(
                &self,
                username: &str,
                patch: &UserPatch,
                event: &Event,
            ) -> StoreResult<UserRecord> {
                let now = event.at;
                let mut tx = self.begin_write().await?;
                let id = Self::lock_user(&mut tx, username, None).await?;
                let new_email = patch.email.as_ref().map(Option::as_deref);
                if let Some(email) = new_email {
                    Self::check_login_names(&mut tx, &id, username, email).await?;
                }
                let (id, is_staff, is_customer) =
                    sqlx::query_as::<_, (String, bool, bool)>(sql::UPDATE_USER)
                        .bind(username)
                        .bind(patch.email.is_some())
                        .bind(patch.email.clone().flatten())
                        .bind(patch.is_staff)
                        .bind(patch.is_customer)
                        .bind(patch.active)
                        .bind(now)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(Self::login_name_taken)?
                        .ok_or_else(|| StoreError::NotFound(format!("user '{username}'")))?;
                if let Some(email) = new_email {
                    sqlx::query("DELETE FROM login_names WHERE user_id = $1 AND kind = 'email'")
                        .bind(&id)
                        .execute(&mut *tx)
                        .await?;
                    Self::insert_email_name(&mut tx, &id, username, email).await?;
                }
                if !is_staff && !is_customer {
                    // Dropping the transaction rolls the update back.
                    return Err(StoreError::Precondition(
                        "a user must be staff, a customer, or both".into(),
                    ));
                }
                if patch.active == Some(false) {
                    // Disabling ends every credential, so re-enabling revives none.
                    Self::revoke_user(&mut tx, &id, now).await?;
                }
                let user = Self::fetch_user(&mut tx, username).await?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(user)
            }

            async fn delete_user(&self, username: &str, event: &Event) -> StoreResult<String> {
                let now = event.at;
                let mut tx = self.begin_write().await?;
                let id = Self::lock_user(&mut tx, username, None).await?;
                // Sessions and the API token would go with the row, but the apps must be
                // deactivated and their tokens deleted while they are still attached;
                // the delete then detaches them (ON DELETE SET NULL).
                sqlx::query(apps::DEACTIVATE_USER_APPS)
                    .bind(&id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                Self::revoke_user(&mut tx, &id, now).await?;
                sqlx::query("DELETE FROM users WHERE id = $1")
                    .bind(&id)
                    .execute(&mut *tx)
                    .await?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(id)
            }

            async fn revoke_user_credentials(
                &self,
                username: &str,
                event: &Event,
            ) -> StoreResult<UserRevocation> {
                let now = event.at;
                let mut tx = self.begin_write().await?;
                let id = Self::lock_user(&mut tx, username, Some(now)).await?;
                let revoked = Self::revoke_user(&mut tx, &id, now).await?;
                let user = Self::fetch_user(&mut tx, username).await?;
                let event = event
                    .clone()
                    .with("sessions_revoked", revoked.sessions)
                    .with("api_token_revoked", revoked.api_token)
                    .with("app_tokens_revoked", revoked.app_tokens);
                Self::write_event(&mut tx, &event).await?;
                tx.commit().await?;
                Ok(UserRevocation {
                    user,
                    sessions: revoked.sessions,
                    api_token: revoked.api_token,
                    app_tokens: revoked.app_tokens,
                })
            }

            async fn enable_api_access(
                &self,
                username: &str,
                digest: &SecretDigest,
                event: &Event,
            ) -> StoreResult<UserRecord> {
                self.set_api_token(sql::ENABLE_API_ACCESS, username, digest, event)
                    .await
            }

            async fn disable_api_access(
                &self,
                username: &str,
                event: &Event,
            ) -> StoreResult<UserRecord> {
                let mut tx = self.begin_write().await?;
                let updated = sqlx::query(
                    "UPDATE users SET api_access = FALSE, api_token_digest = NULL, \
                         api_token_created_at = NULL, updated_at = $2 \
                     WHERE username = $1",
                )
                .bind(username)
                .bind(event.at)
                .execute(&mut *tx)
                .await?;
                if updated.rows_affected() == 0 {
                    return Err(StoreError::NotFound(format!("user '{username}'")));
                }
                let user = Self::fetch_user(&mut tx, username).await?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(user)
            }

            async fn replace_api_token(
                &self,
                username: &str,
                digest: &SecretDigest,
                event: &Event,
            ) -> StoreResult<UserRecord> {
                self.set_api_token(sql::REPLACE_API_TOKEN, username, digest, event)
                    .await
            }

            async fn find_api_token(
                &self,
                digest: &SecretDigest,
            ) -> StoreResult<Option<ApiTokenOwner>> {
                let rows = sqlx::query_as::<_, rows::TokenOwnerRow>(sql::TOKEN_OWNER)
                    .bind(digest.as_bytes())
                    .fetch_all(&self.pool)
                    .await?;
                rows::token_owner(rows)
            }

            async fn assign_role(
                &self,
                username: &str,
                role: &str,
                event: &Event,
            ) -> StoreResult<UserRecord> {
                self.set_user_role(username, role, true, event).await
            }

            async fn unassign_role(
                &self,
                username: &str,
                role: &str,
                event: &Event,
            ) -> StoreResult<UserRecord> {
                self.set_user_role(username, role, false, event).await
            }

            async fn create_role(
                &self,
                role: &RoleRecord,
                event: &Event,
            ) -> StoreResult<RoleRecord> {
                let mut tx = self.begin_write().await?;
                let inserted = sqlx::query(
                    "INSERT INTO roles (name, description, builtin, created_at) \
                     VALUES ($1, $2, $3, $4)",
                )
                .bind(&role.name)
                .bind(&role.description)
                .bind(role.builtin)
                .bind(role.created_at)
                .execute(&mut *tx)
                .await;
                match inserted {
                    // The name is the table's only unique key.
                    Err(sqlx::Error::Database(db)) if db.is_unique_violation() => {
                        return Err(StoreError::AlreadyExists(format!("role '{}'", role.name)));
                    }
                    other => other?,
                };
                Self::insert_permissions(&mut tx, &role.name, &role.permissions).await?;
                let created = Self::fetch_role(&mut tx, &role.name).await?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(created)
            }

            async fn get_role(&self, name: &str) -> StoreResult<RoleRecord> {
                let mut conn = self.pool.acquire().await?;
                Self::fetch_role(&mut conn, name).await
            }

            async fn list_roles(&self) -> StoreResult<Vec<RoleRecord>> {
                let rows = sqlx::query_as::<_, rows::RolePermissionRow>(sql::ALL_ROLES)
                    .fetch_all(&self.pool)
                    .await?;
                Ok(rows::roles(rows))
            }

            async fn set_role_permissions(
                &self,
                name: &str,
                permissions: &[String],
                event: &Event,
            ) -> StoreResult<RoleRecord> {
                let mut tx = self.begin_write().await?;
                Self::mutable_role(&mut tx, name).await?;
                sqlx::query("DELETE FROM role_permissions WHERE role_name = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                Self::insert_permissions(&mut tx, name, permissions).await?;
                let role = Self::fetch_role(&mut tx, name).await?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(role)
            }

            async fn delete_role(&self, name: &str, event: &Event) -> StoreResult<()> {
                let mut tx = self.begin_write().await?;
                Self::mutable_role(&mut tx, name).await?;
                sqlx::query("DELETE FROM roles WHERE name = $1")
                    .bind(name)
                    .execute(&mut *tx)
                    .await?;
                Self::write_event(&mut tx, event).await?;
                tx.commit().await?;
                Ok(())
            }
        }
    };
}

pub(super) use impl_sql_store;

#[cfg(test)]
mod tests {
    use super::*;

    fn user(id: &str, username: &str, email: Option<&str>) -> StoredNames {
        StoredNames {
            id: id.into(),
            username: username.into(),
            email: email.map(Into::into),
        }
    }

    #[test]
    fn clashes_are_found_in_login_keys() {
        let users = [
            user("u2", "admin2", None),
            user("u1", "Admin2", None),
            user("u3", "alice", Some("bob@example.com")),
            user("u4", "Bob@Example.com", None),
            user("u5", "rene", Some("rene\u{301}@example.com")),
            user("u6", "rene2", Some("ren\u{e9}@example.com")),
            // Its own username as its email is no clash.
            user("u7", "dave@example.com", Some("dave@example.com")),
        ];
        assert_eq!(
            login_name_clashes(&users),
            [
                Clash::Usernames("Admin2".into(), "admin2".into()),
                Clash::UsernameIsEmail("Bob@Example.com".into(), "alice".into()),
                Clash::Emails(
                    "rene".into(),
                    "rene2".into(),
                    "ren\u{e9}@example.com".into()
                ),
            ]
        );
    }

    #[test]
    fn the_report_names_every_pair() {
        let report = clash_report(&[
            Clash::Usernames("Admin2".into(), "admin2".into()),
            Clash::Emails("u1".into(), "u2".into(), "x@y".into()),
        ]);
        assert_eq!(
            report,
            "usernames 'Admin2' and 'admin2' differ only in case; users 'u1' and 'u2' have \
             the same email once normalised ('x@y'). Delete one user of each pair, or change \
             the email, with the release running now; then migrate again"
        );
    }

    #[test]
    fn only_emails_that_are_not_their_key_are_rewritten() {
        let users = [
            user("u1", "a", Some("rene\u{301}@example.com")),
            user("u2", "b", Some("ren\u{e9}@example.org")),
            user("u3", "c", None),
        ];
        assert_eq!(
            email_rewrites(&users),
            [("u1", "ren\u{e9}@example.com".to_owned())]
        );
    }
}
