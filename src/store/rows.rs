//! Row shapes shared by both backends, and folding joined rows into records.

use super::{ApiTokenOwner, RoleRecord, StoreError, StoreResult, UserRecord};
use crate::domain::secret::SecretDigest;

/// A user joined with one of its roles (or none).
#[derive(sqlx::FromRow)]
pub(super) struct UserRoleRow {
    pub id: String,
    pub username: String,
    pub email: Option<String>,
    pub is_staff: bool,
    pub active: bool,
    pub api_access: bool,
    pub created_at: i64,
    pub updated_at: i64,
    pub role_name: Option<String>,
}

/// A role joined with one of its permissions (or none).
#[derive(sqlx::FromRow)]
pub(super) struct RolePermissionRow {
    pub name: String,
    pub description: String,
    pub builtin: bool,
    pub created_at: i64,
    pub permission: Option<String>,
}

/// A token's owner joined with one of its permissions (or none).
#[derive(sqlx::FromRow)]
pub(super) struct TokenOwnerRow {
    pub id: String,
    pub username: String,
    pub is_staff: bool,
    pub active: bool,
    pub api_access: bool,
    pub api_token_digest: Vec<u8>,
    pub permission: Option<String>,
}

/// Folds rows ordered by user into users with their roles.
pub(super) fn users(rows: Vec<UserRoleRow>) -> Vec<UserRecord> {
    let mut out: Vec<UserRecord> = Vec::new();
    for row in rows {
        match out.last_mut() {
            Some(last) if last.id == row.id => last.roles.extend(row.role_name),
            _ => out.push(UserRecord {
                id: row.id,
                username: row.username,
                email: row.email,
                is_staff: row.is_staff,
                active: row.active,
                api_access: row.api_access,
                roles: row.role_name.into_iter().collect(),
                created_at: row.created_at,
                updated_at: row.updated_at,
            }),
        }
    }
    out
}

/// Folds rows ordered by role into roles with their permissions.
pub(super) fn roles(rows: Vec<RolePermissionRow>) -> Vec<RoleRecord> {
    let mut out: Vec<RoleRecord> = Vec::new();
    for row in rows {
        match out.last_mut() {
            Some(last) if last.name == row.name => last.permissions.extend(row.permission),
            _ => out.push(RoleRecord {
                name: row.name,
                description: row.description,
                permissions: row.permission.into_iter().collect(),
                builtin: row.builtin,
                created_at: row.created_at,
            }),
        }
    }
    out
}

/// Folds the rows of one token owner; `None` when there are none.
pub(super) fn token_owner(rows: Vec<TokenOwnerRow>) -> StoreResult<Option<ApiTokenOwner>> {
    let mut rows = rows.into_iter();
    let Some(first) = rows.next() else {
        return Ok(None);
    };
    let digest = SecretDigest::from_slice(&first.api_token_digest)
        .ok_or(StoreError::Corrupt("API token digest has the wrong length"))?;
    let mut permissions: Vec<String> = first.permission.into_iter().collect();
    permissions.extend(rows.filter_map(|r| r.permission));
    Ok(Some(ApiTokenOwner {
        user_id: first.id,
        username: first.username,
        is_staff: first.is_staff,
        active: first.active,
        api_access: first.api_access,
        digest,
        permissions,
    }))
}

/// Exactly one record, or `NotFound` naming `what`.
pub(super) fn one<T>(records: Vec<T>, what: impl FnOnce() -> String) -> StoreResult<T> {
    records
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::NotFound(what()))
}
