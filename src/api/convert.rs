//! Domain and store types to wire types.

use super::pb;
use crate::domain::principal::{Principal, PrincipalKind};
use crate::domain::verdict::Decision;
use crate::store::{RoleRecord, UserRecord};

impl From<UserRecord> for pb::User {
    fn from(u: UserRecord) -> Self {
        Self {
            id: u.id,
            username: u.username,
            email: u.email.unwrap_or_default(),
            is_staff: u.is_staff,
            active: u.active,
            api_access: u.api_access,
            roles: u.roles,
            created_at: u.created_at,
            updated_at: u.updated_at,
        }
    }
}

impl From<RoleRecord> for pb::Role {
    fn from(r: RoleRecord) -> Self {
        Self {
            name: r.name,
            description: r.description,
            permissions: r.permissions,
            builtin: r.builtin,
            created_at: r.created_at,
        }
    }
}

impl From<&Principal> for pb::Principal {
    fn from(p: &Principal) -> Self {
        let kind = match p.kind {
            PrincipalKind::User => pb::PrincipalKind::User,
        };
        Self {
            kind: kind.into(),
            id: p.id.clone(),
            name: p.name.clone(),
            is_staff: p.is_staff,
            scheme: p.scheme.as_str().to_owned(),
            credential_kind: p.credential_kind.as_str().to_owned(),
            credential_id: p.credential_id.clone(),
            scopes: Vec::new(),
        }
    }
}

/// The wire verdict of a decision.
pub fn verdict(d: &Decision) -> pb::Verdict {
    match d {
        Decision::Allow => pb::Verdict::Allow,
        Decision::Unauthenticated(_) => pb::Verdict::Unauthenticated,
        Decision::MissingPermission(_) => pb::Verdict::Forbidden,
    }
}
