//! The route policy: what an HTTP request needs, by method and path. Operators write it
//! as a text document (see [`document`] for lines, fields and comments):
//!
//! ```text
//! # optional, at most once; the default is `deny`
//! default deny            # a route no rule covers is denied (403)
//! default authenticated   # ... or allowed for any valid credential
//!
//! METHODS  PATH                                  REQUIREMENT
//! GET,HEAD /api/v1/orders/**                     orders:read
//! POST,PUT,PATCH,DELETE /api/v1/orders/**        orders:write
//! POST     /api/v1/email_templates/{id}/send     scope email
//! GET      /api/v1/me                            authenticated
//! *        /api/v1/reports/*/summary             reports:read reports:export
//! ```
//!
//! - METHODS: `*` (any method) or a comma-separated list of methods, each 1 to 16
//!   upper-case ASCII letters, none twice.
//! - PATH: starts with `/`; each segment is a literal (ASCII letters, digits and `-._~`,
//!   but not `.` or `..`; matched ignoring ASCII case), `{name}` (one segment; `name` is
//!   `[a-z_][a-z0-9_]*`, unique in the path), `*` (one segment) or `**` (last segment
//!   only: zero or more segments). No empty segments, except that the root path is `/`.
//!   At most 64 segments and 1024 bytes.
//! - REQUIREMENT: `authenticated` (any valid credential), `scope NAME` (a scope of the
//!   catalog granting at least one permission; the route needs all it grants), or 1 to
//!   16 distinct permissions `resource:action` without wildcards, all of which are
//!   required.
//!
//! At most 2048 rules. Two rules with the same path shape (parameter names and `*` count
//! as the same kind of segment; literals ignore case) whose methods overlap (`*` overlaps
//! every list) are refused as duplicates, so the most specific matching rule is always
//! unique.
//!
//! A request path is matched only in canonical form; anything an upstream might resolve
//! differently from us is refused (fail closed) rather than guessed at. The query (from
//! the first `?`) is cut off and one trailing `/` ignored; then refused are dot segments,
//! empty segments (`//`), `#`, `;` (path parameters, as in `..;`), `\`, whitespace,
//! control characters, raw non-ASCII bytes, `%25`, `%u`, a `%` without two hex digits,
//! an escape of an unreserved character (`%2e`, `%64`), of `/ \ ; # ?` or of a control
//! character, and a path that is not UTF-8 once decoded (overlong `%c0%ae`). So literals
//! only ever meet unencoded segments; an encoded one matches only `{param}`, `*` or `**`.
//! Literals match ignoring ASCII case (`/A/B` takes the `/a/b` rule), as some upstreams
//! route that way.
//!
//! Among the rules that match, the most specific wins: comparing segments from the left,
//! a literal beats `{param}` or `*`, which beats `**`, and a pattern that ends where the
//! path ends beats a `**` that matches nothing. A rule listing methods would beat a `*`
//! rule of the same shape, but such a pair is a duplicate, so that tie-break only keeps
//! the order total.

use super::document::{self, DocumentError, quote};
use super::permissions::{InvalidPermission, Permission};
use super::scopes::Catalog;
use std::collections::HashMap;

/// Most rules a policy may hold.
pub const MAX_RULES: usize = 2048;
/// Most segments in a rule's path pattern.
pub const MAX_SEGMENTS: usize = 64;
/// Longest path pattern, in bytes.
pub const MAX_PATTERN: usize = 1024;
/// Most permissions one rule may require.
pub const MAX_PERMISSIONS: usize = 16;
/// Longest request path, in bytes, once the query is stripped.
pub const MAX_PATH: usize = 2048;
/// Longest method name.
pub const MAX_METHOD: usize = 16;

/// The policy identityd ships with.
const BUILTIN: &str = include_str!("../defaults/route_policy.txt");

/// What a request needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Requirement {
    /// Any valid credential; no permission.
    Authenticated,
    /// The named scope of the catalog.
    Scope(String),
    /// Every one of these permissions (no wildcards, no duplicates).
    Permissions(Vec<Permission>),
}

/// One rule of a policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    /// The 1-based line it was read from.
    pub line: usize,
    /// The methods it covers, as written; `None` for `*` (every method).
    pub methods: Option<Vec<String>>,
    /// The path pattern, as written.
    pub pattern: String,
    /// What a request it covers needs.
    pub requirement: Requirement,
    segments: Vec<Segment>,
    rank: Rank,
}

/// What happens to a request no rule covers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Uncovered {
    /// Refused (403), whatever the credential.
    #[default]
    Deny,
    /// Allowed for any valid credential.
    Authenticated,
}

/// Why a request could not be routed. Never echoes the request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RequestError {
    /// The method is not 1 to 16 upper-case ASCII letters.
    #[error("method is not 1 to {MAX_METHOD} upper-case letters")]
    Method,
    /// The path is not in canonical form.
    #[error("path refused: {0}")]
    Path(&'static str),
}

/// A parsed route policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoutePolicy {
    source: String,
    rules: Vec<Rule>,
    /// Indexes into `rules`, most specific first, so the first match is the winner.
    by_rank: Vec<usize>,
    default: Uncovered,
}

/// One segment of a path pattern. Parameter names do not matter for matching, so
/// `{id}` and `*` are both `One`, and literals are stored lower-case; this is also the
/// path's shape for duplicate checks.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Segment {
    Literal(String),
    One,
    Rest,
}

/// Specificity of a rule; greater is more specific. `segments` holds one of the ranks
/// below per segment, then `END` unless the last segment is `**`, so no key is a prefix
/// of another and plain lexicographic order implements "first differing segment wins".
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Rank {
    segments: Box<[u8]>,
    /// The rule lists its methods (not `*`).
    listed: bool,
}

const REST: u8 = 0;
const END: u8 = 1;
const ONE: u8 = 2;
const LITERAL: u8 = 3;

impl RoutePolicy {
    /// Parses a policy document, checking scope names against `catalog`.
    pub fn parse(text: &str, catalog: &Catalog) -> Result<Self, DocumentError> {
        let mut rules: Vec<Rule> = Vec::new();
        let mut default: Option<(usize, Uncovered)> = None;
        // Rules by path shape: duplicates can only share a shape.
        let mut by_shape: HashMap<Vec<Segment>, Vec<usize>> = HashMap::new();
        for entry in document::entries(text)? {
            let line = entry.line;
            match entry.fields.as_slice() {
                ["default", value @ ..] => {
                    if let Some((first, _)) = default {
                        return Err(DocumentError::at(
                            line,
                            format!("second `default` line (the first is line {first})"),
                        ));
                    }
                    let action = parse_default(value).map_err(|e| DocumentError::at(line, e))?;
                    default = Some((line, action));
                }
                fields => {
                    if rules.len() == MAX_RULES {
                        return Err(DocumentError::at(
                            line,
                            format!("more than {MAX_RULES} rules"),
                        ));
                    }
                    let rule = parse_rule(line, fields, catalog)
                        .map_err(|e| DocumentError::at(line, e))?;
                    let same_shape = by_shape.entry(rule.segments.clone()).or_default();
                    let earlier = same_shape
                        .iter()
                        .filter_map(|&i| rules.get(i))
                        .find(|r| overlap(r.methods.as_deref(), rule.methods.as_deref()));
                    if let Some(earlier) = earlier {
                        return Err(DocumentError::at(
                            line,
                            format!(
                                "duplicates the rule on line {}: same path shape and overlapping methods",
                                earlier.line
                            ),
                        ));
                    }
                    same_shape.push(rules.len());
                    rules.push(rule);
                }
            }
        }
        let mut by_rank: Vec<usize> = (0..rules.len()).collect();
        by_rank.sort_by(|&a, &b| {
            let rank = |i: usize| rules.get(i).map(|r| &r.rank);
            rank(b).cmp(&rank(a))
        });
        Ok(Self {
            source: text.to_owned(),
            rules,
            by_rank,
            default: default.map_or(Uncovered::Deny, |(_, action)| action),
        })
    }

    /// The built-in policy (`src/defaults/route_policy.txt`), checked against `catalog`.
    pub fn builtin(catalog: &Catalog) -> Result<Self, DocumentError> {
        Self::parse(BUILTIN, catalog)
    }

    /// The text the policy was parsed from, verbatim.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// The rules, in document order.
    pub fn rules(&self) -> &[Rule] {
        &self.rules
    }

    /// What happens to a request no rule covers.
    pub fn default_action(&self) -> Uncovered {
        self.default
    }

    /// The most specific rule covering `method` and `path` (a query string is ignored),
    /// or `None` when no rule does and [`Self::default_action`] applies.
    pub fn route(&self, method: &str, path: &str) -> Result<Option<&Rule>, RequestError> {
        if !is_method(method) {
            return Err(RequestError::Method);
        }
        let body = canonical(path)?;
        // Canonical paths have no empty segments, so this only drops the root's.
        let segments = body.split('/').filter(|s| !s.is_empty());
        Ok(self
            .by_rank
            .iter()
            .filter_map(|&i| self.rules.get(i))
            .find(|rule| rule.covers_method(method) && rule.matches(segments.clone())))
    }
}

impl Rule {
    fn covers_method(&self, method: &str) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|listed| listed.iter().any(|m| m == method))
    }

    fn matches<'a>(&self, mut path: impl Iterator<Item = &'a str>) -> bool {
        for segment in &self.segments {
            match segment {
                Segment::Rest => return true,
                Segment::One => {
                    if path.next().is_none() {
                        return false;
                    }
                }
                Segment::Literal(literal) => {
                    // Literals are stored lower-case; upstreams may route either case.
                    if !path.next().is_some_and(|s| s.eq_ignore_ascii_case(literal)) {
                        return false;
                    }
                }
            }
        }
        path.next().is_none()
    }
}

fn parse_default(value: &[&str]) -> Result<Uncovered, String> {
    match value {
        ["deny"] => Ok(Uncovered::Deny),
        ["authenticated"] => Ok(Uncovered::Authenticated),
        [] => Err("`default` needs a value: deny or authenticated".into()),
        [other] => Err(format!(
            "bad default {}: use deny or authenticated",
            quote(other)
        )),
        [_, extra, ..] => Err(format!("unexpected {} after the default", quote(extra))),
    }
}

fn parse_rule(line: usize, fields: &[&str], catalog: &Catalog) -> Result<Rule, String> {
    let [methods, rest @ ..] = fields else {
        return Err("empty rule".into());
    };
    let methods = parse_methods(methods)?;
    let [pattern, requirement @ ..] = rest else {
        return Err("missing path after the methods".into());
    };
    let segments = parse_pattern(pattern)?;
    let requirement = parse_requirement(requirement, catalog)?;
    let rank = rank(&segments, methods.is_some());
    Ok(Rule {
        line,
        methods,
        pattern: (*pattern).to_owned(),
        requirement,
        segments,
        rank,
    })
}

fn parse_methods(field: &str) -> Result<Option<Vec<String>>, String> {
    if field == "*" {
        return Ok(None);
    }
    // A lower-case word is more likely a misspelt keyword than a method.
    if field.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
        return Err(format!(
            "unknown keyword {}: a line starts with `default`, or with upper-case methods (GET,HEAD) or *",
            quote(field)
        ));
    }
    let mut methods: Vec<String> = Vec::new();
    for method in field.split(',') {
        if !is_method(method) {
            return Err(format!(
                "bad method {}: methods are 1 to {MAX_METHOD} upper-case letters, or * alone",
                quote(method)
            ));
        }
        if methods.iter().any(|m| m == method) {
            return Err(format!("method {} listed twice", quote(method)));
        }
        methods.push(method.to_owned());
    }
    Ok(Some(methods))
}

fn parse_pattern(pattern: &str) -> Result<Vec<Segment>, String> {
    if pattern.len() > MAX_PATTERN {
        return Err(format!("path longer than {MAX_PATTERN} bytes"));
    }
    let Some(body) = pattern.strip_prefix('/') else {
        return Err(format!("path {} must start with /", quote(pattern)));
    };
    let mut segments = Vec::new();
    if body.is_empty() {
        return Ok(segments);
    }
    let mut params: Vec<&str> = Vec::new();
    for (index, segment) in body.split('/').enumerate() {
        if index == MAX_SEGMENTS {
            return Err(format!("path has more than {MAX_SEGMENTS} segments"));
        }
        if segments.last() == Some(&Segment::Rest) {
            return Err("`**` must be the last path segment".into());
        }
        let parsed = match segment {
            "" => {
                return Err(format!(
                    "bad path segment {}: empty (only the root path may end in /)",
                    index + 1
                ));
            }
            "**" => Segment::Rest,
            "*" => Segment::One,
            "." | ".." => {
                return Err(format!(
                    "bad path segment {}: dot segments are not allowed",
                    quote(segment)
                ));
            }
            _ if segment.starts_with('{') => {
                let name = segment
                    .strip_prefix('{')
                    .and_then(|s| s.strip_suffix('}'))
                    .filter(|name| is_param(name))
                    .ok_or_else(|| {
                        format!(
                            "bad path segment {}: a parameter is {{name}}, name in lower-case letters, digits and _",
                            quote(segment)
                        )
                    })?;
                if params.contains(&name) {
                    return Err(format!(
                        "parameter {} appears twice in the path",
                        quote(name)
                    ));
                }
                params.push(name);
                Segment::One
            }
            _ if segment.bytes().all(is_literal_byte) => {
                Segment::Literal(segment.to_ascii_lowercase())
            }
            _ => {
                return Err(format!(
                    "bad path segment {}: use letters, digits and -._~, a {{name}}, * or **",
                    quote(segment)
                ));
            }
        };
        segments.push(parsed);
    }
    Ok(segments)
}

fn parse_requirement(fields: &[&str], catalog: &Catalog) -> Result<Requirement, String> {
    match fields {
        [] => Err(
            "missing requirement: authenticated, scope NAME, or permissions such as orders:read"
                .into(),
        ),
        ["authenticated", rest @ ..] => match rest {
            [] => Ok(Requirement::Authenticated),
            [extra, ..] => Err(format!("unexpected {} after `authenticated`", quote(extra))),
        },
        ["scope", rest @ ..] => match rest {
            [] => Err("missing scope name after `scope`".into()),
            [_, extra, ..] => Err(format!(
                "unexpected {} after the scope name (one scope per rule)",
                quote(extra)
            )),
            // The checker needs every permission the scope grants: with none, nothing.
            [name] => match catalog.get(name) {
                None => Err(unknown_scope(name)),
                Some(scope) if scope.grants.is_empty() => Err(format!(
                    "scope {} grants no permissions, so a route needing it would need nothing",
                    quote(name)
                )),
                Some(_) => Ok(Requirement::Scope((*name).to_owned())),
            },
        },
        permissions => {
            if permissions.len() > MAX_PERMISSIONS {
                return Err(format!("more than {MAX_PERMISSIONS} permissions"));
            }
            let mut out: Vec<Permission> = Vec::with_capacity(permissions.len());
            for field in permissions {
                let permission = Permission::parse_required(field).map_err(|e| {
                    let why = match e {
                        InvalidPermission::Malformed(_) => {
                            "expected resource:action in lower-case letters, digits and _"
                        }
                        InvalidPermission::Wildcard(_) => "a route must name a concrete action",
                    };
                    format!("bad permission {}: {why}", quote(field))
                })?;
                if out.contains(&permission) {
                    return Err(format!("permission {} listed twice", quote(field)));
                }
                out.push(permission);
            }
            Ok(Requirement::Permissions(out))
        }
    }
}

fn unknown_scope(name: &str) -> String {
    format!("unknown scope {}", quote(name))
}

fn rank(segments: &[Segment], listed: bool) -> Rank {
    let mut key: Vec<u8> = segments
        .iter()
        .map(|s| match s {
            Segment::Literal(_) => LITERAL,
            Segment::One => ONE,
            Segment::Rest => REST,
        })
        .collect();
    if segments.last() != Some(&Segment::Rest) {
        key.push(END);
    }
    Rank {
        segments: key.into_boxed_slice(),
        listed,
    }
}

/// True when two method lists share a method; `None` (`*`) shares every one.
fn overlap(a: Option<&[String]>, b: Option<&[String]>) -> bool {
    match (a, b) {
        (Some(a), Some(b)) => a.iter().any(|m| b.contains(m)),
        _ => true,
    }
}

fn is_method(s: &str) -> bool {
    (1..=MAX_METHOD).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_uppercase())
}

fn is_param(s: &str) -> bool {
    let mut bytes = s.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b == b'_')
        && bytes.all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// RFC 3986 unreserved characters: never percent-encoded in canonical form, so a literal
/// only ever matches an unencoded request segment.
fn is_literal_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// The path without query, leading `/` and one trailing `/` (`""` for the root), or why
/// it is not canonical. Fails closed on anything an upstream might resolve differently.
fn canonical(path: &str) -> Result<&str, RequestError> {
    // `?` starts the query, whatever follows it (a `#` in the query is its business).
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    if path.len() > MAX_PATH {
        return Err(RequestError::Path("too long"));
    }
    let Some(body) = path.strip_prefix('/') else {
        return Err(RequestError::Path("does not start with /"));
    };
    // Every raw byte is ASCII, so only escapes can make the decoded path non-ASCII.
    let mut non_ascii = false;
    let mut bytes = path.bytes();
    while let Some(b) = bytes.next() {
        if b == b'%' {
            let byte = unescape(bytes.next(), bytes.next())?;
            non_ascii |= !byte.is_ascii();
        } else {
            check_raw(b)?;
        }
    }
    if non_ascii {
        check_decoded(path)?;
    }
    if body.is_empty() {
        return Ok(body);
    }
    let body = body.strip_suffix('/').unwrap_or(body);
    for segment in body.split('/') {
        match segment {
            "" => return Err(RequestError::Path("empty segment")),
            "." | ".." => return Err(RequestError::Path("dot segment")),
            _ => {}
        }
    }
    Ok(body)
}

/// Refuses a raw (not percent-encoded) byte of a request path that is not canonical.
fn check_raw(b: u8) -> Result<(), RequestError> {
    match b {
        b'#' => Err(RequestError::Path("fragment")),
        b';' => Err(RequestError::Path("path parameter (;)")),
        b'\\' => Err(RequestError::Path("backslash")),
        _ if !b.is_ascii() => Err(RequestError::Path("non-ASCII byte")),
        _ if b.is_ascii_control() || b.is_ascii_whitespace() => {
            Err(RequestError::Path("control character or whitespace"))
        }
        _ => Ok(()),
    }
}

/// The byte a percent-escape `%` `hi` `lo` stands for, unless the escape is malformed,
/// double-encoded, or stands for a byte that must not be encoded in canonical form.
fn unescape(hi: Option<u8>, lo: Option<u8>) -> Result<u8, RequestError> {
    let byte = match (hi, lo) {
        (Some(b'u' | b'U'), _) => return Err(RequestError::Path("%u escape")),
        (Some(b'2'), Some(b'5')) => return Err(RequestError::Path("encoded % (%25)")),
        (Some(hi), Some(lo)) => hex(hi).zip(hex(lo)).map(|(hi, lo)| hi << 4 | lo),
        _ => None,
    };
    let Some(byte) = byte else {
        return Err(RequestError::Path("% not followed by two hex digits"));
    };
    if is_literal_byte(byte) {
        return Err(RequestError::Path("encoded unreserved character"));
    }
    if matches!(byte, b'/' | b'\\' | b';' | b'#' | b'?') || byte.is_ascii_control() {
        return Err(RequestError::Path(
            "encoded /, \\, ;, #, ? or control character",
        ));
    }
    Ok(byte)
}

fn hex(b: u8) -> Option<u8> {
    char::from(b)
        .to_digit(16)
        .and_then(|d| u8::try_from(d).ok())
}

/// Refuses `path` unless, percent-decoded once, it is UTF-8 (so no overlong encodings)
/// without control characters. Call only after every escape was checked by [`unescape`].
fn check_decoded(path: &str) -> Result<(), RequestError> {
    let mut decoded = Vec::with_capacity(path.len());
    let mut bytes = path.bytes();
    while let Some(b) = bytes.next() {
        let byte = if b == b'%' {
            let hi = bytes.next().and_then(hex);
            let lo = bytes.next().and_then(hex);
            match hi.zip(lo) {
                Some((hi, lo)) => hi << 4 | lo,
                None => return Err(RequestError::Path("% not followed by two hex digits")),
            }
        } else {
            b
        };
        decoded.push(byte);
    }
    let decoded = std::str::from_utf8(&decoded)
        .map_err(|_| RequestError::Path("percent-decodes to invalid UTF-8"))?;
    if decoded.chars().any(char::is_control) {
        return Err(RequestError::Path("encoded control character"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn catalog() -> Catalog {
        Catalog::builtin().unwrap()
    }

    fn policy(text: &str) -> RoutePolicy {
        RoutePolicy::parse(text, &catalog()).unwrap()
    }

    /// The requirement of the winning rule, written as in the document.
    fn routed(policy: &RoutePolicy, method: &str, path: &str) -> Option<String> {
        let rule = policy.route(method, path).unwrap()?;
        Some(match &rule.requirement {
            Requirement::Authenticated => "authenticated".to_owned(),
            Requirement::Scope(name) => format!("scope {name}"),
            Requirement::Permissions(ps) => ps
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(" "),
        })
    }

    #[test]
    fn builtin_routes_the_origin_api() {
        let builtin = RoutePolicy::builtin(&catalog()).unwrap();
        assert_eq!(builtin.default_action(), Uncovered::Deny);
        assert_eq!(builtin.source(), BUILTIN);
        let rows = [
            ("GET", "/api/v1/orders/17", Some("orders:read")),
            ("HEAD", "/api/v1/orders/17", Some("orders:read")),
            ("DELETE", "/api/v1/orders/17", Some("orders:write")),
            ("GET", "/api/v1/orders", Some("orders:read")),
            ("POST", "/api/v1/orders", Some("orders:write")),
            ("GET", "/api/v1/sessions/a/b/c", Some("sessions:read")),
            (
                "POST",
                "/api/v1/email_templates/3/send",
                Some("scope email"),
            ),
            (
                "GET",
                "/api/v1/credit_cards/9/decrypted",
                Some("scope decrypt"),
            ),
            (
                "GET",
                "/api/v1/order_payments/9/decrypted",
                Some("scope decrypt"),
            ),
            // Literals ignore case, so the stricter rule still applies.
            (
                "GET",
                "/api/v1/credit_cards/1/DECRYPTED",
                Some("scope decrypt"),
            ),
            (
                "GET",
                "/API/V1/Credit_Cards/1/decrypted",
                Some("scope decrypt"),
            ),
            ("GET", "/Api/V1/Orders/17", Some("orders:read")),
            ("GET", "/api/v1/orders/17?x=%zz#frag", Some("orders:read")),
            ("GET", "/api/v1/orders/a%20b", Some("orders:read")),
            ("GET", "/api/v1/customers/%E2%82%AC", Some("customers:read")),
            ("GET", "/api/v1/email_templates/3/send", None),
            ("OPTIONS", "/api/v1/orders/17", None),
            ("GET", "/api/v1/nothing", None),
            ("GET", "/", None),
        ];
        for (method, path, want) in rows {
            assert_eq!(
                routed(&builtin, method, path).as_deref(),
                want,
                "{method} {path}"
            );
        }
    }

    #[test]
    fn most_specific_rule_wins() {
        let p = policy(
            "GET /a/**       a:rest\n\
             GET /a/{id}/c   a:param\n\
             GET /a/b/c      a:literal\n\
             GET /a/*/d      a:star\n\
             GET /x/b/**     x:deep\n\
             GET /x/{id}/c   x:param\n\
             GET /y          y:exact\n\
             *   /y/**       y:rest\n\
             GET /           root:read\n\
             *   /**         any:read\n",
        );
        let rows = [
            ("/a/b/c", Some("a:literal")),
            ("/a/q/c", Some("a:param")),
            ("/a/q/d", Some("a:star")),
            ("/a/q/e", Some("a:rest")),
            ("/a", Some("a:rest")),
            // Literal `b` at the first differing segment beats {id}, though ** is fuzzier.
            ("/x/b/c", Some("x:deep")),
            ("/x/q/c", Some("x:param")),
            ("/y", Some("y:exact")),
            ("/y/1", Some("y:rest")),
            ("/", Some("root:read")),
            ("/zzz", Some("any:read")),
            ("/a/b/c/", Some("a:literal")),
            ("/a/b/c?next=/y#top", Some("a:literal")),
            ("/A/b/C", Some("a:literal")),
            ("/A/Q/c", Some("a:param")),
        ];
        for (path, want) in rows {
            assert_eq!(routed(&p, "GET", path).as_deref(), want, "{path}");
        }
        // Rules for other methods do not count: POST falls through to the `*` rules.
        assert_eq!(routed(&p, "POST", "/y").as_deref(), Some("y:rest"));
        assert_eq!(routed(&p, "POST", "/a/b/c").as_deref(), Some("any:read"));
    }

    #[test]
    fn a_listed_method_ranks_above_any_method() {
        // Same shapes with overlapping methods are refused at load, so this order only
        // makes the ranking total; check it directly.
        let segments = [Segment::Literal("a".into()), Segment::One];
        assert!(rank(&segments, true) > rank(&segments, false));
        // Across shapes the path decides first: {id} beats ** even for a `*` rule.
        let p = policy("* /m/{id} m:any\nGET /m/**  m:get\n");
        assert_eq!(routed(&p, "GET", "/m/1").as_deref(), Some("m:any"));
        assert_eq!(routed(&p, "GET", "/m/1/2").as_deref(), Some("m:get"));
    }

    #[test]
    fn non_canonical_requests_are_refused() {
        let p = policy("* /** any:read\n");
        let long = format!("/{}", "a".repeat(MAX_PATH));
        for path in [
            "/api/v1/orders/../credit_cards",
            "/api/v1/./orders",
            "/..",
            "/a//b",
            "//",
            "/a//",
            "/a/%2e%2e/b",
            "/a/%2E%2e/b",
            "/a%2Fb",
            "/a%2fb",
            "/a%5Cb",
            "a/b",
            "",
            "?/a",
            "/a\\b",
            "/a b",
            "/a\tb",
            "/a\u{0}b",
            "/a\u{85}b",
            "/a\u{a0}b",
            "/a#/../b",
            long.as_str(),
        ] {
            let err = p.route("GET", path).unwrap_err();
            assert!(matches!(err, RequestError::Path(_)), "{path:?}");
            assert!(
                !err.to_string().contains(path) || path.is_empty(),
                "{path:?}"
            );
        }
        for method in ["get", "", "G3T", "GET ", &"G".repeat(MAX_METHOD + 1)] {
            assert_eq!(
                p.route(method, "/a"),
                Err(RequestError::Method),
                "{method:?}"
            );
        }
        // Other encodings, a query, and the longest path are fine.
        let longest = format!("/{}", "a".repeat(MAX_PATH - 1));
        for path in [
            "/",
            "/a/",
            "/a%20b",
            "/a?x=../..",
            "/a?x=#/../b",
            "/a%20b",
            "/%E2%82%ac",
            "/a%22%3C%3e%7B%7c%40",
            "/a%c3%a9%5b",
            longest.as_str(),
        ] {
            assert!(p.route("GET", path).unwrap().is_some(), "{path:?}");
        }
        assert!(p.route(&"G".repeat(MAX_METHOD), "/").unwrap().is_some());
    }

    #[test]
    fn paths_an_upstream_may_resolve_differently_are_refused() {
        let builtin = RoutePolicy::builtin(&catalog()).unwrap();
        let rows: &[(&str, &str)] = &[
            // Tomcat/Spring read `..;` as `..` and drop `;x=1`.
            (
                "/api/v1/orders/..;/..;/credit_cards/1/decrypted",
                "path parameter",
            ),
            ("/api/v1/credit_cards/1/decrypted;x=1", "path parameter"),
            ("/api/v1/credit_cards/1/decrypted%3B", "encoded /"),
            // Double decoding.
            (
                "/api/v1/orders/%252e%252e/credit_cards/1/decrypted",
                "encoded % (%25)",
            ),
            // IIS.
            ("/api/v1/orders/%u002e%u002e/x", "%u escape"),
            ("/api/v1/orders/%U002e/x", "%u escape"),
            // Overlong UTF-8 for `.`.
            ("/api/v1/orders/%c0%ae%c0%ae/x", "invalid UTF-8"),
            ("/a/%c3", "invalid UTF-8"),
            ("/a/%c3a", "invalid UTF-8"),
            ("/a/%ed%a0%80", "invalid UTF-8"),
            (
                "/api/v1/orders/1#/../../credit_cards/1/decrypted",
                "fragment",
            ),
            ("/a#", "fragment"),
            // Unreserved characters are never encoded in normal form.
            ("/api/v1/credit_cards/1/%64ecrypted", "unreserved"),
            ("/a/%7e", "unreserved"),
            ("/a/%2e%2e/b", "unreserved"),
            ("/a/%5F", "unreserved"),
            ("/a/%30", "unreserved"),
            ("/a/%2D", "unreserved"),
            ("/a%2Fb", "encoded /"),
            ("/a%5cb", "encoded /"),
            ("/a%23b", "encoded /"),
            ("/a%3fb", "encoded /"),
            ("/a%00b", "control"),
            ("/a%0Ab", "control"),
            ("/a%7fb", "control"),
            ("/a%c2%85b", "encoded control"),
            ("/a/%zz", "two hex digits"),
            ("/a/%4", "two hex digits"),
            ("/a/%", "two hex digits"),
            ("/a/%g0", "two hex digits"),
            ("/a/%4?x", "two hex digits"),
            ("/a/\u{e9}", "non-ASCII"),
            ("/a/\u{20ac}", "non-ASCII"),
            ("/a\\b", "backslash"),
            ("/a\u{b}b", "control"),
        ];
        for (path, want) in rows {
            match builtin.route("GET", path) {
                Err(RequestError::Path(why)) => assert!(why.contains(want), "{path:?}: {why}"),
                other => panic!("{path:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn defaults_and_empty_policies() {
        let empty = policy("# nothing yet\n\n");
        assert!(empty.rules().is_empty());
        assert_eq!(empty.default_action(), Uncovered::Deny);
        assert_eq!(empty.route("GET", "/a").unwrap(), None);
        let open = policy("GET /a x:read\ndefault authenticated\n");
        assert_eq!(open.default_action(), Uncovered::Authenticated);
        assert_eq!(open.rules().len(), 1);
        assert_eq!(policy("default deny").default_action(), Uncovered::Deny);
    }

    #[test]
    fn rules_keep_what_was_written() {
        let p = policy(
            "\n# c\nGET,HEAD /a/{id}  a:read a:export\n*  /b  scope email\nPOST / authenticated\n",
        );
        let rules = p.rules();
        assert_eq!(rules.len(), 3);
        assert_eq!(rules[0].line, 3);
        assert_eq!(
            rules[0].methods,
            Some(vec!["GET".to_owned(), "HEAD".to_owned()])
        );
        assert_eq!(rules[0].pattern, "/a/{id}");
        assert_eq!(
            rules[0].requirement,
            Requirement::Permissions(vec![
                Permission::parse("a:read").unwrap(),
                Permission::parse("a:export").unwrap()
            ])
        );
        assert_eq!(rules[1].methods, None);
        assert_eq!(rules[1].requirement, Requirement::Scope("email".into()));
        assert_eq!(rules[2].requirement, Requirement::Authenticated);
    }

    #[test]
    fn parse_errors_name_the_line_and_the_fault() {
        let many_segments = format!("GET {} x:read", "/a".repeat(MAX_SEGMENTS + 1));
        let long_pattern = format!("GET /{} x:read", "a".repeat(MAX_PATTERN));
        let many_permissions = format!(
            "GET /a {}",
            (0..=MAX_PERMISSIONS)
                .map(|i| format!("x:a{i}"))
                .collect::<Vec<_>>()
                .join(" ")
        );
        let rows: &[(&str, &str, &str)] = &[
            (
                "unknown keyword",
                "allow /a x:read",
                "unknown keyword \"allow\"",
            ),
            (
                "lower-case method",
                "get /a x:read",
                "unknown keyword \"get\"",
            ),
            ("mixed-case method", "Get /a x:read", "bad method \"Get\""),
            ("digit in method", "G3T /a x:read", "bad method \"G3T\""),
            ("empty method", "GET,,POST /a x:read", "bad method \"\""),
            ("star in a list", "GET,* /a x:read", "bad method \"*\""),
            (
                "duplicate method",
                "GET,POST,GET /a x:read",
                "method \"GET\" listed twice",
            ),
            ("missing path", "GET", "missing path"),
            ("relative path", "GET a/b x:read", "must start with /"),
            (
                "empty segment",
                "GET /a//b x:read",
                "bad path segment 2: empty",
            ),
            (
                "trailing slash",
                "GET /a/ x:read",
                "bad path segment 2: empty",
            ),
            (
                "dot segment",
                "GET /a/../b x:read",
                "bad path segment \"..\"",
            ),
            (
                "percent in literal",
                "GET /a%2Fb x:read",
                "bad path segment \"a%2Fb\"",
            ),
            (
                "star in literal",
                "GET /a* x:read",
                "bad path segment \"a*\"",
            ),
            (
                "upper-case param",
                "GET /{Id} x:read",
                "bad path segment \"{Id}\"",
            ),
            (
                "unclosed param",
                "GET /{id x:read",
                "bad path segment \"{id\"",
            ),
            ("empty param", "GET /{} x:read", "bad path segment \"{}\""),
            (
                "repeated param",
                "GET /{id}/x/{id} x:read",
                "parameter \"id\" appears twice",
            ),
            ("** not last", "GET /a/**/b x:read", "`**` must be the last"),
            ("too many segments", &many_segments, "more than 64 segments"),
            ("pattern too long", &long_pattern, "longer than 1024 bytes"),
            ("missing requirement", "GET /a", "missing requirement"),
            (
                "unknown scope",
                "GET /a scope nope",
                "unknown scope \"nope\"",
            ),
            ("missing scope name", "GET /a scope", "missing scope name"),
            (
                "two scopes",
                "GET /a scope email decrypt",
                "unexpected \"decrypt\" after the scope name",
            ),
            (
                "after authenticated",
                "GET /a authenticated x:read",
                "unexpected \"x:read\" after `authenticated`",
            ),
            (
                "malformed permission",
                "GET /a orders",
                "bad permission \"orders\": expected resource:action",
            ),
            (
                "wildcard permission",
                "GET /a orders:*",
                "bad permission \"orders:*\": a route must name a concrete action",
            ),
            (
                "duplicate permission",
                "GET /a x:read x:read",
                "permission \"x:read\" listed twice",
            ),
            (
                "too many permissions",
                &many_permissions,
                "more than 16 permissions",
            ),
            ("bad default", "default allow", "bad default \"allow\""),
            ("bare default", "default", "`default` needs a value"),
            (
                "default with extra",
                "default deny now",
                "unexpected \"now\" after the default",
            ),
            (
                "second default",
                "default deny\ndefault authenticated",
                "second `default` line (the first is line 5)",
            ),
            (
                "duplicate rule",
                "GET,POST /z/* y:read",
                "duplicates the rule on line 2",
            ),
            (
                "duplicate any-method",
                "* /z/{id} y:read",
                "duplicates the rule on line 2",
            ),
            (
                "duplicate of any-method",
                "DELETE /w/** y:read",
                "duplicates the rule on line 3",
            ),
            (
                "duplicate in another case",
                "GET /Z/{name} y:read",
                "duplicates the rule on line 2",
            ),
            (
                "scope granting nothing",
                "GET /x scope no_expiry",
                "scope \"no_expiry\" grants no permissions, so a route needing it would need nothing",
            ),
        ];
        // Lines 1-4 are valid, so each fault is on the last line of the row.
        let prelude = "# comment\nGET /z/{id} x:read\n* /w/** x:read\n\n";
        for (name, row, want) in rows {
            let text = format!("{prelude}{row}\n");
            let err = RoutePolicy::parse(&text, &catalog()).unwrap_err();
            assert_eq!(err.line, Some(text.lines().count()), "{name}: {err}");
            assert!(err.reason.contains(want), "{name}: {err}");
        }
    }

    #[test]
    fn literals_ignore_case() {
        let err = RoutePolicy::parse(
            "GET,POST /api/Orders x:read\nPOST,PUT /api/orders x:write\n",
            &catalog(),
        )
        .unwrap_err();
        assert_eq!(err.line, Some(2));
        assert!(
            err.reason.contains("duplicates the rule on line 1"),
            "{err}"
        );
        let p = policy("GET /api/Orders/{id} x:read\nGET /api/orders/x x:write\n");
        // The pattern is kept as written; matching ignores case either way.
        assert_eq!(p.rules()[0].pattern, "/api/Orders/{id}");
        assert_eq!(
            routed(&p, "GET", "/api/orders/1").as_deref(),
            Some("x:read")
        );
        assert_eq!(
            routed(&p, "GET", "/API/ORDERS/1").as_deref(),
            Some("x:read")
        );
        assert_eq!(
            routed(&p, "GET", "/api/ORDERS/X").as_deref(),
            Some("x:write")
        );
        // An encoded segment is never a literal, only a parameter.
        assert_eq!(
            routed(&p, "GET", "/api/orders/%c3%a9").as_deref(),
            Some("x:read")
        );
    }

    #[test]
    fn a_scope_must_grant_something() {
        let needs_only = Catalog::parse("export needs=orders:read\nfull orders:read\n").unwrap();
        let err = RoutePolicy::parse("GET /a scope full\nGET /b scope export\n", &needs_only)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "line 2: scope \"export\" grants no permissions, so a route needing it would need nothing"
        );
    }

    #[test]
    fn same_shape_with_disjoint_methods_is_not_a_duplicate() {
        let p = policy(
            "GET /a/{id} x:read\nPOST /a/* x:write\nGET /a/b x:read\nGET /a/** x:read\nGET /a x:read\n",
        );
        assert_eq!(p.rules().len(), 5);
    }

    #[test]
    fn at_most_max_rules() {
        let rules = |n: usize| {
            (0..n)
                .map(|i| format!("GET /r{i} x:read\n"))
                .collect::<String>()
        };
        assert_eq!(policy(&rules(MAX_RULES)).rules().len(), MAX_RULES);
        let err = RoutePolicy::parse(&rules(MAX_RULES + 1), &catalog()).unwrap_err();
        assert_eq!(err.line, Some(MAX_RULES + 1));
        assert!(err.reason.contains("more than 2048 rules"), "{err}");
    }

    #[test]
    fn document_level_errors_pass_through() {
        let err =
            RoutePolicy::parse("GET /a x:read\nGET /b\u{7} x:read\n", &catalog()).unwrap_err();
        assert_eq!(err.to_string(), "line 2: control character");
    }

    #[test]
    fn scopes_are_checked_against_the_catalog() {
        let builtin_catalog = catalog();
        let text: Vec<&str> = builtin_catalog
            .source()
            .lines()
            .filter(|l| l.split_whitespace().next() != Some("email"))
            .collect();
        let without_email = Catalog::parse(&text.join("\n")).unwrap();
        assert!(without_email.get("email").is_none());
        let email_line = BUILTIN
            .lines()
            .position(|l| l.ends_with("scope email"))
            .unwrap()
            + 1;
        let err = RoutePolicy::builtin(&without_email).unwrap_err();
        assert_eq!(err.line, Some(email_line));
        assert!(err.reason.contains("unknown scope \"email\""), "{err}");

        assert_eq!(
            err.to_string(),
            format!("line {email_line}: unknown scope \"email\"")
        );
    }

    proptest::proptest! {
        #[test]
        fn routing_never_panics(method in "[A-Za-z]{0,3}", path in proptest::prelude::any::<String>()) {
            let p = policy("* /** any:read\nGET /a/{id}/b x:read\n");
            if let Ok(Some(_)) = p.route(&method, &path) {
                let path = path.split('?').next().unwrap();
                proptest::prop_assert!(!path.contains("//"));
                proptest::prop_assert!(!path.split('/').any(|s| s == "." || s == ".."));
                proptest::prop_assert!(path.is_ascii());
                proptest::prop_assert!(!path.contains(['#', ';', '\\']));
                proptest::prop_assert!(!path.to_ascii_lowercase().contains("%25"));
            }
        }

        #[test]
        fn parsing_never_panics(text in "[ -~\n]{0,200}") {
            let _ = RoutePolicy::parse(&text, &catalog());
        }
    }
}
