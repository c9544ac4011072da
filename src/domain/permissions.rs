//! The permission algebra: `resource:action` strings, wildcard actions, and which
//! permissions a set grants.

use std::collections::BTreeSet;
use std::fmt;

/// Longest resource or action name.
const MAX_PART: usize = 64;

/// The action that stands for every action on a resource (`orders:*`).
const ANY_ACTION: &str = "*";

/// One permission, `resource:action`. Both parts are lower-case `[a-z][a-z0-9_]*`; the
/// action may also be `*` (every action on the resource).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Permission {
    resource: String,
    action: String,
}

/// Why a permission string was refused. Echoes at most a bounded prefix of the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPermission {
    /// Not `resource:action`.
    #[error(
        "permission {0:?} is not of the form resource:action (lower-case letters, digits and _; action may be *)"
    )]
    Malformed(String),
    /// A wildcard where a concrete action is needed.
    #[error("permission {0:?} is a wildcard; a check must name concrete actions")]
    Wildcard(String),
}

impl Permission {
    /// Parses `resource:action`.
    pub fn parse(s: &str) -> Result<Self, InvalidPermission> {
        let invalid = || InvalidPermission::Malformed(truncate(s));
        let (resource, action) = s.split_once(':').ok_or_else(invalid)?;
        if !is_name(resource) || !(action == ANY_ACTION || is_name(action)) {
            return Err(invalid());
        }
        Ok(Self {
            resource: resource.to_owned(),
            action: action.to_owned(),
        })
    }

    /// Parses a permission that a check asks for: it must name one concrete action.
    pub fn parse_required(s: &str) -> Result<Self, InvalidPermission> {
        let p = Self::parse(s)?;
        if p.is_wildcard() {
            return Err(InvalidPermission::Wildcard(truncate(s)));
        }
        Ok(p)
    }

    /// True for `resource:*`.
    pub fn is_wildcard(&self) -> bool {
        self.action == ANY_ACTION
    }

    /// True when holding `self` grants `required`.
    pub fn grants(&self, required: &Permission) -> bool {
        self.resource == required.resource && (self.action == required.action || self.is_wildcard())
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.resource, self.action)
    }
}

fn is_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    s.len() <= MAX_PART
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// Error messages echo at most this much of a bad input.
fn truncate(s: &str) -> String {
    s.chars().take(2 * MAX_PART + 1).collect()
}

/// A set of held permissions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PermissionSet(BTreeSet<Permission>);

impl PermissionSet {
    /// True when some held permission grants `required`.
    pub fn grants(&self, required: &Permission) -> bool {
        // Exact hit first: the common case is a lookup, not a scan.
        self.0.contains(required) || self.0.iter().any(|p| p.grants(required))
    }

    /// The permissions of `required` that this set does not grant, in the order given.
    pub fn missing<'a>(&self, required: &'a [Permission]) -> Vec<&'a Permission> {
        required.iter().filter(|r| !self.grants(r)).collect()
    }

    /// What holding both sets grants: every permission one set holds that the other
    /// grants (`orders:*` ∩ `orders:read` = `orders:read`).
    pub fn intersect(&self, other: &PermissionSet) -> PermissionSet {
        let mut out = BTreeSet::new();
        for a in &self.0 {
            for b in &other.0 {
                if a.grants(b) {
                    out.insert(b.clone());
                } else if b.grants(a) {
                    out.insert(a.clone());
                }
            }
        }
        Self(out)
    }

    /// The held permissions, sorted.
    pub fn iter(&self) -> impl Iterator<Item = &Permission> {
        self.0.iter()
    }

    /// Number of distinct permissions held.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when nothing is held.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl FromIterator<Permission> for PermissionSet {
    fn from_iter<I: IntoIterator<Item = Permission>>(iter: I) -> Self {
        Self(iter.into_iter().collect())
    }
}

/// Parses a list of permissions to hold (wildcards allowed), refusing the first bad one.
pub fn parse_all(items: &[String]) -> Result<PermissionSet, InvalidPermission> {
    items.iter().map(|s| Permission::parse(s)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> Permission {
        Permission::parse(s).unwrap()
    }

    #[test]
    fn parse_table() {
        for ok in ["orders:read", "order_statuses:write", "a1:b2", "orders:*"] {
            assert!(Permission::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "orders",
            ":read",
            "orders:",
            "Orders:read",
            "orders:Read",
            "orders:read:x",
            "1orders:read",
            "or ders:read",
            "orders:re-ad",
            "*:read",
            "*:*",
            "orders:**",
        ] {
            assert!(Permission::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Permission::parse(&format!("{}:read", "a".repeat(65))).is_err());
        assert!(Permission::parse_required("orders:*").is_err());
    }

    #[test]
    fn grants_exact_and_wildcard() {
        let held: PermissionSet = [p("orders:read"), p("catalog:*")].into_iter().collect();
        assert!(held.grants(&p("orders:read")));
        assert!(!held.grants(&p("orders:write")));
        assert!(held.grants(&p("catalog:write")));
        assert!(!held.grants(&p("catalogs:write")));
        let required = [p("orders:read"), p("orders:write"), p("catalog:read")];
        assert_eq!(held.missing(&required), vec![&p("orders:write")]);
    }

    #[test]
    fn error_does_not_echo_unbounded_input() {
        let err = Permission::parse(&"x".repeat(10_000)).unwrap_err();
        assert!(err.to_string().len() < 400);
    }
}

/// The permissions that guard the Admin service. The built-in `admin` role holds them all.
pub mod admin {
    /// Read users.
    pub const USERS_READ: &str = "users:read";
    /// Create, change and delete users; API access; role assignment; other users' tokens.
    pub const USERS_WRITE: &str = "users:write";
    /// Read roles.
    pub const ROLES_READ: &str = "roles:read";
    /// Create, change and delete roles.
    pub const ROLES_WRITE: &str = "roles:write";

    /// Read integrations.
    pub const INTEGRATIONS_READ: &str = "integrations:read";
    /// Create, change, rotate and delete integrations.
    pub const INTEGRATIONS_WRITE: &str = "integrations:write";
    /// Read signing keys.
    pub const KEYS_READ: &str = "keys:read";
    /// Rotate signing keys.
    pub const KEYS_WRITE: &str = "keys:write";
    /// See the scope catalog and the route policy.
    pub const POLICY_READ: &str = "policy:read";
    /// Replace the scope catalog or the route policy.
    pub const POLICY_WRITE: &str = "policy:write";
    /// Read apps and list their tokens.
    pub const APPS_READ: &str = "apps:read";
    /// Create, change and delete apps; create and revoke their tokens.
    pub const APPS_WRITE: &str = "apps:write";
    /// See guessing limits.
    pub const LIMITS_READ: &str = "limits:read";
    /// Clear guessing limits.
    pub const LIMITS_WRITE: &str = "limits:write";
    /// Read the audit log.
    pub const AUDIT_READ: &str = "audit:read";

    /// Every admin permission.
    pub const ALL: &[&str] = &[
        USERS_READ,
        USERS_WRITE,
        ROLES_READ,
        ROLES_WRITE,
        INTEGRATIONS_READ,
        INTEGRATIONS_WRITE,
        KEYS_READ,
        KEYS_WRITE,
        POLICY_READ,
        POLICY_WRITE,
        APPS_READ,
        APPS_WRITE,
        LIMITS_READ,
        LIMITS_WRITE,
        AUDIT_READ,
    ];
}
