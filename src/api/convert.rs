//! Domain and store types to wire types.

use super::pb;
use crate::domain::principal::{Principal, PrincipalKind};
use crate::domain::route_policy::{Requirement, Uncovered};
use crate::domain::verdict::Decision;
use crate::service::documents::Snapshot;
use crate::service::keys::PublicJwk;
use crate::store::{
    AppRecord, AppTokenRecord, AuditRecord, IntegrationRecord, LimitRecord, RoleRecord,
    SigningKeyRecord, UserRecord,
};

impl From<UserRecord> for pb::User {
    fn from(u: UserRecord) -> Self {
        Self {
            id: u.id,
            username: u.username,
            email: u.email.unwrap_or_default(),
            is_staff: u.is_staff,
            is_customer: u.is_customer,
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

impl From<IntegrationRecord> for pb::Integration {
    fn from(i: IntegrationRecord) -> Self {
        Self {
            id: i.id,
            client_id: i.client_id,
            name: i.name,
            active: i.active,
            permissions: i.permissions,
            secret_created_at: i.secret_created_at,
            created_at: i.created_at,
            updated_at: i.updated_at,
        }
    }
}

impl From<AppRecord> for pb::App {
    fn from(a: AppRecord) -> Self {
        Self {
            id: a.id,
            name: a.name,
            active: a.active,
            permissions: a.permissions,
            attached_user: a.attached_user.unwrap_or_default(),
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

impl From<AppTokenRecord> for pb::AppToken {
    fn from(t: AppTokenRecord) -> Self {
        Self {
            id: t.id,
            app_id: t.app_id,
            name: t.name,
            last4: t.last4,
            created_at: t.created_at,
            last_used_at: t.last_used_at.unwrap_or_default(),
        }
    }
}

impl From<SigningKeyRecord> for pb::SigningKey {
    fn from(k: SigningKeyRecord) -> Self {
        Self {
            kid: k.kid,
            algorithm: k.algorithm,
            signing: k.retired_at.is_none(),
            created_at: k.created_at,
            retired_at: k.retired_at.unwrap_or_default(),
            published_until: k.published_until.unwrap_or_default(),
        }
    }
}

impl From<LimitRecord> for pb::GuessLimit {
    fn from(l: LimitRecord) -> Self {
        Self {
            secret: l.key.secret.as_str().to_owned(),
            subject: l.key.subject,
            source: l.key.source,
            failures: l.counter.failures,
            window_start: l.counter.window_start,
            blocked_until: l.counter.blocked_until,
            next_delay_seconds: l.counter.next_delay,
            updated_at: l.updated_at,
        }
    }
}

impl From<AuditRecord> for pb::AuditEvent {
    fn from(e: AuditRecord) -> Self {
        Self {
            id: e.id,
            time: e.at,
            actor: e.actor,
            actor_name: e.actor_name,
            credential: e.credential,
            action: e.action,
            target: e.target,
            outcome: e.outcome,
            reason: e.reason,
            source: e.source,
            peer: e.peer,
            request_id: e.request_id,
            details: e.details,
        }
    }
}

impl From<PublicJwk> for pb::Jwk {
    fn from(k: PublicJwk) -> Self {
        use crate::service::keys::{ALGORITHM, CURVE, KEY_TYPE, KEY_USE};
        Self {
            kty: KEY_TYPE.into(),
            crv: CURVE.into(),
            x: k.x,
            kid: k.kid,
            alg: ALGORITHM.into(),
            r#use: KEY_USE.into(),
        }
    }
}

impl From<&Principal> for pb::Principal {
    fn from(p: &Principal) -> Self {
        let kind = match p.kind {
            PrincipalKind::User => pb::PrincipalKind::User,
            PrincipalKind::Integration => pb::PrincipalKind::Integration,
            PrincipalKind::App => pb::PrincipalKind::App,
        };
        let (attached_user_id, attached_username) = p
            .attached_user
            .as_ref()
            .map(|u| (u.id.clone(), u.username.clone()))
            .unwrap_or_default();
        Self {
            kind: kind.into(),
            id: p.id.clone(),
            name: p.name.clone(),
            is_staff: p.is_staff,
            is_customer: p.is_customer,
            attached_user_id,
            attached_username,
            scheme: p.scheme.as_str().to_owned(),
            credential_kind: p.credential_kind.as_str().to_owned(),
            credential_id: p.credential_id.clone(),
            scopes: p.scopes.clone(),
            session_id: p.session_id.clone().unwrap_or_default(),
            expires_at: p.expires_at.unwrap_or_default(),
        }
    }
}

/// The wire verdict of a decision.
pub fn verdict(d: &Decision) -> pb::Verdict {
    match d.http_status() {
        200 => pb::Verdict::Allow,
        401 => pb::Verdict::Unauthenticated,
        _ => pb::Verdict::Forbidden,
    }
}

impl From<&Snapshot> for pb::ScopeCatalog {
    fn from(s: &Snapshot) -> Self {
        let names = |set: &crate::domain::permissions::PermissionSet| {
            set.iter().map(ToString::to_string).collect()
        };
        Self {
            text: s.catalog.source().to_owned(),
            scopes: s
                .catalog
                .iter()
                .map(|scope| pb::ScopeDefinition {
                    name: scope.name.clone(),
                    grants: names(&scope.grants),
                    needs: names(&scope.needs),
                    supersedes: scope.supersedes.clone().unwrap_or_default(),
                    no_expiry: scope.no_expiry,
                    regenerate_after_seconds: scope.regenerate_after.unwrap_or_default(),
                })
                .collect(),
            version: s.catalog_version,
        }
    }
}

impl From<&Snapshot> for pb::RoutePolicy {
    fn from(s: &Snapshot) -> Self {
        Self {
            text: s.policy.source().to_owned(),
            rules: s
                .policy
                .rules()
                .iter()
                .map(|rule| pb::RouteRule {
                    line: u32::try_from(rule.line).unwrap_or(u32::MAX),
                    methods: rule.methods.clone().unwrap_or_default(),
                    path: rule.pattern.clone(),
                    requires: match &rule.requirement {
                        Requirement::Authenticated => "authenticated".into(),
                        Requirement::Scope(name) => format!("scope {name}"),
                        Requirement::Permissions(required) => required
                            .iter()
                            .map(ToString::to_string)
                            .collect::<Vec<_>>()
                            .join(" "),
                    },
                })
                .collect(),
            uncovered: match s.policy.default_action() {
                Uncovered::Deny => "deny",
                Uncovered::Authenticated => "authenticated",
            }
            .into(),
            version: s.policy_version,
        }
    }
}
