//! OAuth scopes: the catalog of what each scope needs and grants, normalising a request
//! for scopes, and deciding whether a requester may obtain them.
//!
//! A scoped token's effective permissions are computed at check time as the scopes'
//! grants ∩ the principal's current permissions; this module supplies the first half.

use super::clock::UnixSeconds;
use super::permissions::{Permission, PermissionSet};
use std::collections::BTreeMap;

/// Longest scope name.
pub const MAX_SCOPE_NAME: usize = 64;
/// Most scopes one token may carry.
pub const MAX_SCOPES: usize = 32;

/// One scope of the catalog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scope {
    /// Its name, e.g. `read_orders`.
    pub name: String,
    /// Permissions the requester must hold to obtain it.
    pub needs: PermissionSet,
    /// Permissions a token with it may use (always further limited by the principal's
    /// own permissions).
    pub grants: PermissionSet,
    /// A scope this one makes redundant when both are asked for (`orders` supersedes
    /// `read_orders`).
    pub supersedes: Option<String>,
    /// A token with this scope never expires and comes without a refresh token.
    pub no_expiry: bool,
    /// A non-expiring token with this scope must be regenerated this many seconds after
    /// it was issued (`decrypt`: 90 days).
    pub regenerate_after: Option<UnixSeconds>,
}

/// Why a request for scopes was refused. Each maps to OAuth `invalid_scope`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScopeError {
    /// No such scope in the catalog.
    #[error("unknown scope {0:?}")]
    Unknown(String),
    /// Too many scopes asked for.
    #[error("at most {MAX_SCOPES} scopes")]
    TooMany,
    /// The requester lacks a permission the scope needs.
    #[error("scope {scope} needs permission {permission}")]
    NotHeld {
        /// The scope.
        scope: String,
        /// The first permission it needs that the requester lacks.
        permission: String,
    },
}

/// The scopes identityd knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    scopes: BTreeMap<String, Scope>,
}

/// A catalog area: a read scope and a write scope over the same resources.
struct Area {
    read: &'static str,
    write: &'static str,
    resources: &'static [&'static str],
}

/// The origin's areas. The write scope grants read and write.
const AREAS: &[Area] = &[
    Area {
        read: "read_people",
        write: "people",
        resources: &[
            "customers",
            "customer_types",
            "user_accounts",
            "store_settings",
        ],
    },
    Area {
        read: "read_orders",
        write: "orders",
        resources: &["orders", "order_statuses"],
    },
    Area {
        read: "read_catalog",
        write: "catalog",
        resources: &[
            "products",
            "product_statuses",
            "variation_groups",
            "product_attributes",
            "categories",
            "manufacturers",
        ],
    },
    Area {
        read: "read_content",
        write: "content",
        resources: &[
            "blogs",
            "blog_categories",
            "blog_posts",
            "content_management",
            "url_redirects",
        ],
    },
    Area {
        read: "read_marketing",
        write: "marketing",
        resources: &[
            "ad_codes",
            "affiliates",
            "email_editor",
            "mailing_list",
            "discount_methods",
            "gift_certificates",
        ],
    },
];

/// The origin's special scopes: name and the permissions it needs and grants.
const SPECIALS: &[(&str, &[&str])] = &[
    (
        "email",
        &[
            "email_editor:read",
            "email_editor:write",
            "email_templates:send",
        ],
    ),
    (
        "custom_fields",
        &["custom_fields:read", "custom_fields:write"],
    ),
    (
        "settings",
        &[
            "shipping:read",
            "shipping:write",
            "warehouses:read",
            "warehouses:write",
            "tax_rates:read",
            "tax_rates:write",
            "regions:read",
            "regions:write",
            "payment_gateways:read",
            "payment_gateways:write",
            "url_redirects:read",
            "url_redirects:write",
        ],
    ),
    (
        "system",
        &[
            "file_browser:read",
            "file_browser:write",
            "sessions:read",
            "sessions:write",
            "store_settings:read",
            "store_settings:write",
        ],
    ),
    (
        "decrypt",
        &["credit_cards:decrypt", "order_payments:decrypt"],
    ),
];

fn set(permissions: impl IntoIterator<Item = String>) -> PermissionSet {
    permissions
        .into_iter()
        .filter_map(|p| Permission::parse(&p).ok())
        .collect()
}

impl Default for Catalog {
    /// The catalog of the OAuth-scope origin.
    fn default() -> Self {
        let mut scopes = Vec::new();
        for area in AREAS {
            let read = set(area.resources.iter().map(|r| format!("{r}:read")));
            let write = set(area
                .resources
                .iter()
                .flat_map(|r| [format!("{r}:read"), format!("{r}:write")]));
            scopes.push(Scope {
                name: area.read.into(),
                needs: read.clone(),
                grants: read,
                supersedes: None,
                no_expiry: false,
                regenerate_after: None,
            });
            scopes.push(Scope {
                name: area.write.into(),
                needs: write.clone(),
                grants: write,
                supersedes: Some(area.read.into()),
                no_expiry: false,
                regenerate_after: None,
            });
        }
        for (name, permissions) in SPECIALS {
            let granted = set(permissions.iter().map(|p| (*p).to_owned()));
            let regenerate_after = (*name == "decrypt").then_some(90 * 86_400);
            scopes.push(Scope {
                name: (*name).into(),
                needs: granted.clone(),
                grants: granted,
                supersedes: None,
                no_expiry: false,
                regenerate_after,
            });
        }
        scopes.push(Scope {
            name: "no_expiry".into(),
            needs: PermissionSet::default(),
            grants: PermissionSet::default(),
            supersedes: None,
            no_expiry: true,
            regenerate_after: None,
        });
        Self::new(scopes)
    }
}

impl Catalog {
    /// A catalog of `scopes` (a later scope of the same name replaces an earlier one).
    pub fn new(scopes: impl IntoIterator<Item = Scope>) -> Self {
        Self {
            scopes: scopes.into_iter().map(|s| (s.name.clone(), s)).collect(),
        }
    }

    /// A scope by name.
    pub fn get(&self, name: &str) -> Option<&Scope> {
        self.scopes.get(name)
    }

    /// Every scope, by name.
    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.scopes.values()
    }

    /// The scopes asked for, known, deduplicated, without those a write scope in the same
    /// request supersedes, sorted. `read_orders orders` becomes `orders`.
    pub fn normalize(&self, requested: &[String]) -> Result<Vec<String>, ScopeError> {
        if requested.len() > MAX_SCOPES {
            return Err(ScopeError::TooMany);
        }
        let mut named = std::collections::BTreeSet::new();
        for name in requested {
            if !self.scopes.contains_key(name) {
                return Err(ScopeError::Unknown(
                    name.chars().take(MAX_SCOPE_NAME).collect(),
                ));
            }
            named.insert(name.as_str());
        }
        let superseded: Vec<&str> = named
            .iter()
            .filter_map(|n| self.scopes.get(*n)?.supersedes.as_deref())
            .collect();
        Ok(named
            .into_iter()
            .filter(|n| !superseded.contains(n))
            .map(str::to_owned)
            .collect())
    }

    /// Refuses, naming the first gap, unless `held` grants every permission each of
    /// `scopes` needs. `scopes` must be known (normalised) names.
    pub fn check_obtainable(
        &self,
        scopes: &[String],
        held: &PermissionSet,
    ) -> Result<(), ScopeError> {
        for name in scopes {
            let scope = self
                .scopes
                .get(name)
                .ok_or_else(|| ScopeError::Unknown(name.clone()))?;
            if let Some(missing) = scope.needs.iter().find(|p| !held.grants(p)) {
                return Err(ScopeError::NotHeld {
                    scope: name.clone(),
                    permission: missing.to_string(),
                });
            }
        }
        Ok(())
    }

    /// What a token with `scopes` may use at most. Unknown names (a scope removed from
    /// the catalog since the token was issued) grant nothing.
    pub fn grants(&self, scopes: &[String]) -> PermissionSet {
        scopes
            .iter()
            .filter_map(|name| self.scopes.get(name))
            .flat_map(|s| s.grants.iter().cloned())
            .collect()
    }

    /// True when a token with `scopes` never expires.
    pub fn is_no_expiry(&self, scopes: &[String]) -> bool {
        scopes
            .iter()
            .any(|name| self.scopes.get(name).is_some_and(|s| s.no_expiry))
    }

    /// How long a non-expiring token with `scopes` may live before it must be
    /// regenerated: the shortest limit among them, if any has one.
    pub fn regenerate_after(&self, scopes: &[String]) -> Option<UnixSeconds> {
        scopes
            .iter()
            .filter_map(|name| self.scopes.get(name)?.regenerate_after)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn held(items: &[&str]) -> PermissionSet {
        set(items.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn the_default_catalog_has_the_origin_scopes() {
        let catalog = Catalog::default();
        for name in [
            "read_people",
            "people",
            "read_orders",
            "orders",
            "read_catalog",
            "catalog",
            "read_content",
            "content",
            "read_marketing",
            "marketing",
            "email",
            "custom_fields",
            "settings",
            "system",
            "decrypt",
            "no_expiry",
        ] {
            assert!(catalog.get(name).is_some(), "{name}");
        }
        let orders = catalog.grants(&names(&["orders"]));
        for p in ["orders:read", "orders:write", "order_statuses:write"] {
            assert!(orders.grants(&Permission::parse(p).unwrap()), "{p}");
        }
        let read = catalog.grants(&names(&["read_orders"]));
        assert!(!read.grants(&Permission::parse("orders:write").unwrap()));
    }

    #[test]
    fn normalising_drops_superseded_and_duplicates() {
        let catalog = Catalog::default();
        assert_eq!(
            catalog
                .normalize(&names(&["read_orders", "orders", "orders", "email"]))
                .unwrap(),
            names(&["email", "orders"])
        );
        assert_eq!(
            catalog
                .normalize(&names(&["read_orders", "catalog"]))
                .unwrap(),
            names(&["catalog", "read_orders"])
        );
        assert_eq!(
            catalog.normalize(&names(&["bogus"])),
            Err(ScopeError::Unknown("bogus".into()))
        );
        let many: Vec<String> = (0..=MAX_SCOPES).map(|_| "orders".to_owned()).collect();
        assert_eq!(catalog.normalize(&many), Err(ScopeError::TooMany));
    }

    #[test]
    fn obtaining_needs_every_permission() {
        let catalog = Catalog::default();
        let order_clerk = held(&["orders:*", "order_statuses:*"]);
        assert!(
            catalog
                .check_obtainable(&names(&["orders", "no_expiry"]), &order_clerk)
                .is_ok()
        );
        assert_eq!(
            catalog.check_obtainable(&names(&["catalog"]), &order_clerk),
            Err(ScopeError::NotHeld {
                scope: "catalog".into(),
                permission: "categories:read".into(),
            })
        );
        assert!(catalog.is_no_expiry(&names(&["orders", "no_expiry"])));
        assert!(!catalog.is_no_expiry(&names(&["orders"])));
    }
}
