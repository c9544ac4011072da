//! OAuth scopes: the catalog of what each scope needs and grants, normalising a request
//! for scopes, and deciding whether a requester may obtain them.
//!
//! A scoped token's effective permissions are computed at check time as the scopes'
//! grants ∩ the principal's current permissions; this module supplies the first half.
//!
//! # The catalog document
//!
//! Operators write the catalog as a line-oriented [document](super::document): one scope
//! per line, fields separated by spaces or tabs, `#` starts a comment.
//!
//! ```text
//! NAME [OPTION...] [PERMISSION...]
//!
//! read_orders  orders:read order_statuses:read
//! orders       supersedes=read_orders orders:read orders:write order_statuses:read order_statuses:write
//! decrypt      regenerate_after=90d credit_cards:decrypt order_payments:decrypt
//! no_expiry    no_expiry
//! ```
//!
//! - `NAME`: `[a-z][a-z0-9_]*`, at most [`MAX_SCOPE_NAME`] bytes, unique in the document.
//! - A bare permission `resource:action` (the action may be `*`) is both needed (the
//!   requester must hold it to obtain the scope) and granted (a token with the scope may
//!   use it).
//! - `needs=PERMISSION`: needed to obtain the scope but not granted by it; may repeat.
//! - `supersedes=NAME`: this scope makes `NAME` redundant when both are asked for. At
//!   most once per scope; `NAME` must be another scope of the document (defined before
//!   or after); no cycles. It must grant and need everything `NAME` does, so dropping
//!   `NAME` (or narrowing to it on refresh) never widens a token or skips a need.
//! - `no_expiry`: tokens with this scope never expire and come without a refresh token.
//! - `regenerate_after=DURATION`: a non-expiring token with this scope must be
//!   regenerated this long after it was issued. `DURATION` is a positive whole number
//!   followed by `d`, `h`, `m` or `s` (`90d`), at most `3650d`.
//!
//! A scope without permissions is allowed (`no_expiry` grants nothing by itself). The
//! catalog holds 1 to [`MAX_CATALOG_SCOPES`] scopes. Any error refuses the whole
//! document and names the line at fault. The built-in catalog is such a document,
//! `src/defaults/scope_catalog.txt`.

use super::clock::UnixSeconds;
use super::document::{self, DocumentError, Entry, quote};
use super::permissions::{Permission, PermissionSet};
use std::collections::BTreeMap;

/// Longest scope name.
pub const MAX_SCOPE_NAME: usize = 64;
/// Most scopes one token may carry.
pub const MAX_SCOPES: usize = 32;
/// Most scopes one catalog may define.
pub const MAX_CATALOG_SCOPES: usize = 256;
/// Longest `regenerate_after` a catalog may set: 3650 days.
pub const MAX_REGENERATE_AFTER: UnixSeconds = 3650 * DAY;

const DAY: UnixSeconds = 86_400;

/// The built-in catalog document.
const BUILTIN: &str = include_str!("../defaults/scope_catalog.txt");

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
    /// A scope this grant cannot give: wider than the grant being refreshed, or one a
    /// refresh never gives (`no_expiry`).
    #[error("scope {0} cannot be obtained with this grant")]
    NotGranted(String),
    /// The requester lacks a permission the scope needs.
    #[error("scope {scope} needs permission {permission}")]
    NotHeld {
        /// The scope.
        scope: String,
        /// The first permission it needs that the requester lacks.
        permission: String,
    },
}

/// The scopes identityd knows, and the document they were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Catalog {
    scopes: BTreeMap<String, Scope>,
    source: String,
}

/// The names in a space-separated scope string (RFC 6749 §3.3), as requests send them
/// and sessions and token claims store them.
pub fn names(scope: &str) -> Vec<String> {
    scope.split_ascii_whitespace().map(str::to_owned).collect()
}

impl Catalog {
    /// The built-in catalog, `src/defaults/scope_catalog.txt`. It is compiled in and
    /// covered by tests, so an error here is a build defect, not an operator's.
    pub fn builtin() -> Result<Self, DocumentError> {
        Self::parse(BUILTIN)
    }

    /// Reads a catalog document (see the module documentation), or names the first
    /// line at fault.
    pub fn parse(text: &str) -> Result<Self, DocumentError> {
        let entries = document::entries(text)?;
        if entries.is_empty() {
            return Err(DocumentError::whole("the catalog defines no scopes"));
        }
        if entries.len() > MAX_CATALOG_SCOPES {
            return Err(DocumentError::whole(format!(
                "the catalog defines more than {MAX_CATALOG_SCOPES} scopes"
            )));
        }
        // Kept in document order with their lines, so later checks can name the line.
        let mut parsed: Vec<(usize, Scope)> = Vec::with_capacity(entries.len());
        let mut first_line: BTreeMap<String, usize> = BTreeMap::new();
        for entry in &entries {
            let scope = parse_scope(entry)?;
            if let Some(first) = first_line.get(&scope.name) {
                return Err(DocumentError::at(
                    entry.line,
                    format!(
                        "duplicate scope {}, first defined on line {first}",
                        quote(&scope.name)
                    ),
                ));
            }
            first_line.insert(scope.name.clone(), entry.line);
            parsed.push((entry.line, scope));
        }
        // Targets may be defined after the scope naming them, so these checks wait for
        // the whole document.
        for (line, scope) in &parsed {
            if let Some(target) = &scope.supersedes
                && !first_line.contains_key(target)
            {
                return Err(DocumentError::at(
                    *line,
                    format!("supersedes unknown scope {}", quote(target)),
                ));
            }
        }
        let scopes: BTreeMap<String, Scope> = parsed
            .iter()
            .map(|(_, s)| (s.name.clone(), s.clone()))
            .collect();
        for (line, scope) in &parsed {
            if let Some(cycle) = cycle_from(&scopes, &scope.name) {
                return Err(DocumentError::at(
                    *line,
                    format!("supersedes cycle: {cycle}"),
                ));
            }
            // Dropping a superseded scope, or narrowing to it on refresh, must never
            // widen what a token may use or skip a need.
            let target = scope.supersedes.as_ref().and_then(|t| scopes.get(t));
            if let Some(target) = target {
                let gap = |kind: &str, mine: &PermissionSet, theirs: &PermissionSet| {
                    theirs.iter().find(|p| !mine.grants(p)).map(|p| {
                        DocumentError::at(
                            *line,
                            format!(
                                "supersedes {} but does not {kind} {p}, which {} does",
                                quote(&target.name),
                                quote(&target.name)
                            ),
                        )
                    })
                };
                if let Some(e) = gap("grant", &scope.grants, &target.grants)
                    .or_else(|| gap("need", &scope.needs, &target.needs))
                {
                    return Err(e);
                }
            }
        }
        Ok(Self {
            scopes,
            source: text.to_owned(),
        })
    }

    /// The document this catalog was read from, verbatim.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The narrowest scope (fewest grants; ties by name) whose grants cover
    /// `permission`: the scope to name when a token lacks it
    /// (`error="insufficient_scope", scope="…"`).
    pub fn covering(&self, permission: &Permission) -> Option<&str> {
        self.scopes
            .values()
            .filter(|s| s.grants.grants(permission))
            .min_by_key(|s| (s.grants.len(), s.name.as_str()))
            .map(|s| s.name.as_str())
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

/// One line of the catalog: `NAME [OPTION...] [PERMISSION...]`.
fn parse_scope(entry: &Entry<'_>) -> Result<Scope, DocumentError> {
    let line = entry.line;
    // `entries` never yields an entry without fields; refuse rather than panic anyway.
    let Some((name, fields)) = entry.fields.split_first() else {
        return Err(DocumentError::at(line, "empty entry"));
    };
    if !is_scope_name(name) {
        return Err(DocumentError::at(
            line,
            format!(
                "bad scope name {}: expected a lower-case letter, then lower-case letters, \
                 digits or _, at most {MAX_SCOPE_NAME} in all",
                quote(name)
            ),
        ));
    }
    let duplicate = |option: &str| DocumentError::at(line, format!("duplicate option {option}"));
    let mut needs = Vec::new();
    let mut grants = Vec::new();
    let mut supersedes = None;
    let mut no_expiry = false;
    let mut regenerate_after = None;
    for field in fields {
        match field.split_once('=') {
            Some(("needs", value)) => needs.push(parse_permission(line, value)?),
            Some(("supersedes", value)) => {
                if supersedes.is_some() {
                    return Err(duplicate("supersedes"));
                }
                if value == *name {
                    return Err(DocumentError::at(
                        line,
                        format!("scope {} cannot supersede itself", quote(name)),
                    ));
                }
                supersedes = Some(value.to_owned());
            }
            Some(("regenerate_after", value)) => {
                if regenerate_after.is_some() {
                    return Err(duplicate("regenerate_after"));
                }
                regenerate_after = Some(parse_duration(value).ok_or_else(|| {
                    DocumentError::at(
                        line,
                        format!(
                            "bad duration {} for regenerate_after: expected a positive whole \
                             number followed by d, h, m or s, at most 3650d",
                            quote(value)
                        ),
                    )
                })?);
            }
            None if *field == "no_expiry" => {
                if no_expiry {
                    return Err(duplicate("no_expiry"));
                }
                no_expiry = true;
            }
            // Anything with a colon is meant as a permission, so report it as one.
            None if field.contains(':') => {
                let permission = parse_permission(line, field)?;
                needs.push(permission.clone());
                grants.push(permission);
            }
            _ => {
                return Err(DocumentError::at(
                    line,
                    format!(
                        "unknown option {}: expected a permission resource:action, \
                         needs=PERMISSION, supersedes=NAME, no_expiry or regenerate_after=DURATION",
                        quote(field)
                    ),
                ));
            }
        }
    }
    Ok(Scope {
        name: (*name).to_owned(),
        needs: needs.into_iter().collect(),
        grants: grants.into_iter().collect(),
        supersedes,
        no_expiry,
        regenerate_after,
    })
}

fn parse_permission(line: usize, field: &str) -> Result<Permission, DocumentError> {
    // The parser's own error echoes the input unbounded by `quote`; say it here instead.
    Permission::parse(field).map_err(|_| {
        DocumentError::at(
            line,
            format!(
                "bad permission {}: expected resource:action (lower-case letters, digits \
                 and _; the action may be *)",
                quote(field)
            ),
        )
    })
}

fn is_scope_name(s: &str) -> bool {
    let mut bytes = s.bytes();
    s.len() <= MAX_SCOPE_NAME
        && bytes.next().is_some_and(|b| b.is_ascii_lowercase())
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// `90d`, `12h`, `30m`, `45s` in seconds; `None` unless positive and at most
/// [`MAX_REGENERATE_AFTER`].
fn parse_duration(s: &str) -> Option<UnixSeconds> {
    let (digits, unit) = s.split_at_checked(s.len().checked_sub(1)?)?;
    let unit = match unit {
        "d" => DAY,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return None,
    };
    // `parse` alone would also take a sign.
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let seconds = digits.parse::<UnixSeconds>().ok()?.checked_mul(unit)?;
    (1..=MAX_REGENERATE_AFTER)
        .contains(&seconds)
        .then_some(seconds)
}

/// The cycle of `supersedes` leading from `start` back to it, written out for an error
/// (`"a" -> "b" -> "a"`), if there is one. Targets are known to exist.
fn cycle_from(scopes: &BTreeMap<String, Scope>, start: &str) -> Option<String> {
    // Each scope supersedes at most one other, so a walk is a single path; one longer
    // than the catalog has entered a cycle that `start` is not on.
    let mut path = vec![start];
    let mut next = scopes.get(start)?.supersedes.as_deref();
    while let Some(name) = next {
        if name == start {
            path.push(name);
            // Keep the message short however long the cycle.
            const SHOWN: usize = 8;
            let mut shown: Vec<String> = path.iter().take(SHOWN).map(|n| quote(n)).collect();
            if path.len() > SHOWN {
                shown.push("…".to_owned());
                shown.push(quote(start));
            }
            return Some(shown.join(" -> "));
        }
        if path.len() > scopes.len() {
            return None;
        }
        path.push(name);
        next = scopes.get(name)?.supersedes.as_deref();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    fn held(items: &[&str]) -> PermissionSet {
        items
            .iter()
            .map(|s| Permission::parse(s).unwrap())
            .collect()
    }

    fn p(s: &str) -> Permission {
        Permission::parse(s).unwrap()
    }

    /// A scope that needs and grants `permissions`.
    fn plain(name: &str, permissions: &[String]) -> Scope {
        let set: PermissionSet = permissions.iter().map(|s| p(s)).collect();
        Scope {
            name: name.into(),
            needs: set.clone(),
            grants: set,
            supersedes: None,
            no_expiry: false,
            regenerate_after: None,
        }
    }

    /// The origin's catalog as it was defined in code before it became a document.
    fn expected_builtin() -> Vec<Scope> {
        let areas: &[(&str, &str, &[&str])] = &[
            (
                "read_people",
                "people",
                &[
                    "customers",
                    "customer_types",
                    "user_accounts",
                    "store_settings",
                ],
            ),
            ("read_orders", "orders", &["orders", "order_statuses"]),
            (
                "read_catalog",
                "catalog",
                &[
                    "products",
                    "product_statuses",
                    "variation_groups",
                    "product_attributes",
                    "categories",
                    "manufacturers",
                ],
            ),
            (
                "read_content",
                "content",
                &[
                    "blogs",
                    "blog_categories",
                    "blog_posts",
                    "content_management",
                    "url_redirects",
                ],
            ),
            (
                "read_marketing",
                "marketing",
                &[
                    "ad_codes",
                    "affiliates",
                    "email_editor",
                    "mailing_list",
                    "discount_methods",
                    "gift_certificates",
                ],
            ),
        ];
        let read_write = |resources: &[&str]| -> Vec<String> {
            resources
                .iter()
                .flat_map(|r| [format!("{r}:read"), format!("{r}:write")])
                .collect()
        };
        let mut scopes = Vec::new();
        for (read, write, resources) in areas {
            let reads: Vec<String> = resources.iter().map(|r| format!("{r}:read")).collect();
            scopes.push(plain(read, &reads));
            let mut w = plain(write, &read_write(resources));
            w.supersedes = Some((*read).into());
            scopes.push(w);
        }
        scopes.push(plain(
            "email",
            &names(&[
                "email_editor:read",
                "email_editor:write",
                "email_templates:send",
            ]),
        ));
        scopes.push(plain("custom_fields", &read_write(&["custom_fields"])));
        scopes.push(plain(
            "settings",
            &read_write(&[
                "shipping",
                "warehouses",
                "tax_rates",
                "regions",
                "payment_gateways",
                "url_redirects",
            ]),
        ));
        scopes.push(plain(
            "system",
            &read_write(&["file_browser", "sessions", "store_settings"]),
        ));
        let mut decrypt = plain(
            "decrypt",
            &names(&["credit_cards:decrypt", "order_payments:decrypt"]),
        );
        decrypt.regenerate_after = Some(90 * 86_400);
        scopes.push(decrypt);
        let mut no_expiry = plain("no_expiry", &[]);
        no_expiry.no_expiry = true;
        scopes.push(no_expiry);
        scopes.sort_by(|a, b| a.name.cmp(&b.name));
        scopes
    }

    #[test]
    fn the_builtin_catalog_is_exactly_the_origin_scopes() {
        let catalog = Catalog::builtin().unwrap();
        let got: Vec<Scope> = catalog.iter().cloned().collect();
        assert_eq!(got.len(), 16);
        assert_eq!(got, expected_builtin());
        assert_eq!(
            catalog.get("decrypt").unwrap().regenerate_after,
            Some(90 * 86_400)
        );
        assert!(catalog.get("no_expiry").unwrap().no_expiry);
        assert_eq!(catalog.source(), BUILTIN);
    }

    #[test]
    fn the_builtin_catalog_grants_by_area() {
        let catalog = Catalog::builtin().unwrap();
        let orders = catalog.grants(&names(&["orders"]));
        for p in ["orders:read", "orders:write", "order_statuses:write"] {
            assert!(orders.grants(&Permission::parse(p).unwrap()), "{p}");
        }
        let read = catalog.grants(&names(&["read_orders"]));
        assert!(!read.grants(&Permission::parse("orders:write").unwrap()));
    }

    #[test]
    fn normalising_drops_superseded_and_duplicates() {
        let catalog = Catalog::builtin().unwrap();
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
        let catalog = Catalog::builtin().unwrap();
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

    #[test]
    fn a_document_reads_options_and_keeps_its_source() {
        // Comments, tabs, a forward `supersedes`, wildcards and every duration unit.
        let text = "# mine\n\
                    write\tsupersedes=read  x:*  # all of x\n\
                    read x:read\n\
                    a regenerate_after=12h\n\
                    b regenerate_after=30m no_expiry\n\
                    c regenerate_after=45s\n";
        let catalog = Catalog::parse(text).unwrap();
        assert_eq!(catalog.source(), text);
        assert_eq!(
            catalog.get("write").unwrap().supersedes.as_deref(),
            Some("read")
        );
        assert!(catalog.get("write").unwrap().grants.grants(&p("x:delete")));
        assert_eq!(catalog.regenerate_after(&names(&["a", "b", "c"])), Some(45));
        assert_eq!(catalog.regenerate_after(&names(&["a"])), Some(12 * 3_600));
        assert_eq!(catalog.regenerate_after(&names(&["b"])), Some(30 * 60));
        assert!(catalog.is_no_expiry(&names(&["b"])));
        assert_eq!(
            catalog.normalize(&names(&["read", "write"])).unwrap(),
            names(&["write"])
        );
        let longest = format!("{} regenerate_after=3650d", "a".repeat(MAX_SCOPE_NAME));
        assert!(Catalog::parse(&longest).is_ok());
    }

    #[test]
    fn needs_is_needed_but_not_granted() {
        let catalog =
            Catalog::parse("export needs=orders:read needs=orders:write exports:run\n").unwrap();
        let scope = catalog.get("export").unwrap();
        assert_eq!(
            scope.needs,
            held(&["orders:read", "orders:write", "exports:run"])
        );
        assert_eq!(scope.grants, held(&["exports:run"]));
        assert_eq!(
            catalog.check_obtainable(&names(&["export"]), &held(&["exports:run"])),
            Err(ScopeError::NotHeld {
                scope: "export".into(),
                permission: "orders:read".into(),
            })
        );
        assert!(
            catalog
                .check_obtainable(&names(&["export"]), &held(&["orders:*", "exports:run"]))
                .is_ok()
        );
        assert!(
            !catalog
                .grants(&names(&["export"]))
                .grants(&p("orders:read"))
        );
    }

    #[test]
    fn covering_names_the_narrowest_scope() {
        let catalog = Catalog::builtin().unwrap();
        assert_eq!(catalog.covering(&p("orders:write")), Some("orders"));
        assert_eq!(catalog.covering(&p("orders:read")), Some("read_orders"));
        assert_eq!(catalog.covering(&p("nothing:read")), None);
        // url_redirects:write is in `content` (10 grants) and `settings` (12).
        assert_eq!(catalog.covering(&p("url_redirects:write")), Some("content"));
        // Equal size: the first by name.
        let tie = Catalog::parse("b x:read\na x:read\n").unwrap();
        assert_eq!(tie.covering(&p("x:read")), Some("a"));
    }

    #[test]
    fn bad_documents_name_the_line_and_the_fault() {
        let long_name = "a".repeat(MAX_SCOPE_NAME + 1);
        let too_many: String = (0..=MAX_CATALOG_SCOPES)
            .map(|i| format!("s{i}\n"))
            .collect();
        let cases: &[(&str, Option<usize>, &str)] = &[
            ("", None, "no scopes"),
            ("# only a comment\n\n", None, "no scopes"),
            (&too_many, None, "more than 256 scopes"),
            ("ok\nBad x:read\n", Some(2), "bad scope name \"Bad\""),
            ("1st", Some(1), "bad scope name"),
            ("a-b", Some(1), "bad scope name"),
            (&long_name, Some(1), "bad scope name"),
            (
                "a x:read\nb\n\na y:read\n",
                Some(4),
                "duplicate scope \"a\", first defined on line 1",
            ),
            ("a frobnicate", Some(1), "unknown option \"frobnicate\""),
            ("a colour=red", Some(1), "unknown option \"colour=red\""),
            ("a no_expiry=yes", Some(1), "unknown option"),
            ("a x:Read", Some(1), "bad permission \"x:Read\""),
            ("a x:read:y", Some(1), "bad permission"),
            ("a needs=orders", Some(1), "bad permission \"orders\""),
            ("a needs=", Some(1), "bad permission"),
            ("a regenerate_after=90", Some(1), "bad duration \"90\""),
            ("a regenerate_after=0d", Some(1), "bad duration"),
            ("a regenerate_after=-1d", Some(1), "bad duration"),
            ("a regenerate_after=+1d", Some(1), "bad duration"),
            ("a regenerate_after=d", Some(1), "bad duration"),
            ("a regenerate_after=", Some(1), "bad duration"),
            ("a regenerate_after=1w", Some(1), "bad duration"),
            ("a regenerate_after=3651d", Some(1), "bad duration"),
            (
                "a regenerate_after=99999999999999999999s",
                Some(1),
                "bad duration",
            ),
            ("a regenerate_after=1é", Some(1), "bad duration"),
            (
                "a no_expiry no_expiry",
                Some(1),
                "duplicate option no_expiry",
            ),
            (
                "a regenerate_after=1d regenerate_after=1d",
                Some(1),
                "duplicate option regenerate_after",
            ),
            (
                "a supersedes=b supersedes=b\nb",
                Some(1),
                "duplicate option supersedes",
            ),
            (
                "a\nb supersedes=zzz\n",
                Some(2),
                "supersedes unknown scope \"zzz\"",
            ),
            ("a supersedes=", Some(1), "supersedes unknown scope \"\""),
            ("a supersedes=a", Some(1), "cannot supersede itself"),
            (
                "big supersedes=small x:read\nsmall x:read x:write",
                Some(1),
                "supersedes \"small\" but does not grant x:write, which \"small\" does",
            ),
            (
                "big supersedes=small x:read\nsmall needs=secret:admin x:read",
                Some(1),
                "does not need secret:admin",
            ),
            (
                "a supersedes=b\nb supersedes=a\n",
                Some(1),
                "supersedes cycle: \"a\" -> \"b\" -> \"a\"",
            ),
            // The cycle is reported on its first line, not on the scope leading into it.
            (
                "x supersedes=b\nc\nb supersedes=d\nd supersedes=b\n",
                Some(3),
                "cycle",
            ),
            ("a\u{7}", Some(1), "control character"),
        ];
        for (text, line, fragment) in cases {
            let err = Catalog::parse(text).unwrap_err();
            assert_eq!(err.line, *line, "{text:?}: {err}");
            assert!(err.reason.contains(fragment), "{text:?}: {err}");
        }
    }

    #[test]
    fn long_cycles_and_bad_fields_keep_errors_short() {
        let n = 200;
        let text: String = (0..n)
            .map(|i| format!("s{i} supersedes=s{}\n", (i + 1) % n))
            .collect();
        let err = Catalog::parse(&text).unwrap_err();
        assert_eq!(err.line, Some(1));
        assert!(err.reason.len() < 200, "{err}");
        let err = Catalog::parse(&format!("a needs={}", "x".repeat(10_000))).unwrap_err();
        assert!(err.reason.len() < 200, "{err}");
    }
}
