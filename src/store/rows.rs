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
    pub is_customer: bool,
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
    pub is_customer: bool,
    pub active: bool,
    pub api_access: bool,
    pub api_token_digest: Vec<u8>,
    pub permission: Option<String>,
}

/// Folds rows of a one-to-many join, ordered by owner, into one record per owner:
/// `new` starts a record from a row, `same` says whether a row belongs to the last
/// record, and `add` adds its joined value to it.
pub(super) fn fold<R, T>(
    rows: Vec<R>,
    new: impl Fn(R) -> T,
    same: impl Fn(&T, &R) -> bool,
    add: impl Fn(&mut T, R),
) -> Vec<T> {
    let mut out: Vec<T> = Vec::new();
    for row in rows {
        match out.last_mut() {
            Some(last) if same(last, &row) => add(last, row),
            _ => out.push(new(row)),
        }
    }
    out
}

/// Folds rows ordered by user into users with their roles.
pub(super) fn users(rows: Vec<UserRoleRow>) -> Vec<UserRecord> {
    fold(
        rows,
        |r| UserRecord {
            id: r.id,
            username: r.username,
            email: r.email,
            is_staff: r.is_staff,
            is_customer: r.is_customer,
            active: r.active,
            api_access: r.api_access,
            roles: r.role_name.into_iter().collect(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        },
        |u, r| u.id == r.id,
        |u, r| u.roles.extend(r.role_name),
    )
}

/// Folds rows ordered by role into roles with their permissions.
pub(super) fn roles(rows: Vec<RolePermissionRow>) -> Vec<RoleRecord> {
    fold(
        rows,
        |r| RoleRecord {
            name: r.name,
            description: r.description,
            permissions: r.permission.into_iter().collect(),
            builtin: r.builtin,
            created_at: r.created_at,
        },
        |role, r| role.name == r.name,
        |role, r| role.permissions.extend(r.permission),
    )
}

/// Folds the rows of one token owner; `None` when there are none.
pub(super) fn token_owner(rows: Vec<TokenOwnerRow>) -> StoreResult<Option<ApiTokenOwner>> {
    let mut rows = rows.into_iter();
    let Some(first) = rows.next() else {
        return Ok(None);
    };
    let digest = digest(&first.api_token_digest)?;
    let mut permissions: Vec<String> = first.permission.into_iter().collect();
    permissions.extend(rows.filter_map(|r| r.permission));
    Ok(Some(ApiTokenOwner {
        user_id: first.id,
        username: first.username,
        is_staff: first.is_staff,
        is_customer: first.is_customer,
        active: first.active,
        api_access: first.api_access,
        digest,
        permissions,
    }))
}

/// A stored digest, or `Corrupt` when it has the wrong length.
pub(super) fn digest(bytes: &[u8]) -> StoreResult<SecretDigest> {
    SecretDigest::from_slice(bytes).ok_or(StoreError::Corrupt("a digest has the wrong length"))
}

/// Exactly one record, or `NotFound` naming `what`.
pub(super) fn one<T>(records: Vec<T>, what: impl FnOnce() -> String) -> StoreResult<T> {
    records
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::NotFound(what()))
}
