//! `RoutePolicy::route` of the built-in policy. The input is `METHOD\nPATH` (split at the
//! first newline); without a newline it is all path, with method GET. Non-UTF-8 bytes
//! become U+FFFD.
//! Invariants: no panic; a request that matches a rule has a valid method (1 to 16
//! upper-case ASCII letters) that the rule covers, and a path whose part before `?` is
//! ASCII, has no `//`, no `.` or `..` segment, no `#`, `;` or `\`, and no `%25`.
#![no_main]

use identityd::domain::route_policy::RoutePolicy;
use identityd::domain::scopes::Catalog;
use libfuzzer_sys::fuzz_target;
use std::sync::OnceLock;

fn policy() -> &'static RoutePolicy {
    static POLICY: OnceLock<RoutePolicy> = OnceLock::new();
    POLICY.get_or_init(|| {
        let catalog = Catalog::builtin().expect("the built-in catalog parses");
        RoutePolicy::builtin(&catalog).expect("the built-in route policy parses")
    })
}

fuzz_target!(|data: &[u8]| {
    let input = String::from_utf8_lossy(data);
    let (method, path) = input.split_once('\n').unwrap_or(("GET", &input));
    let Ok(Some(rule)) = policy().route(method, path) else {
        return;
    };
    assert!(
        (1..=16).contains(&method.len()) && method.bytes().all(|b| b.is_ascii_uppercase()),
        "routed the method {method:?}"
    );
    assert!(
        rule.methods
            .as_ref()
            .is_none_or(|m| m.iter().any(|m| m == method)),
        "{method:?} routed to a rule for {:?}",
        rule.methods
    );
    let path = path.split_once('?').map_or(path, |(path, _)| path);
    assert!(path.is_ascii(), "routed the non-ASCII path {path:?}");
    assert!(
        !path.contains("//"),
        "routed {path:?} with an empty segment"
    );
    assert!(
        !path.split('/').any(|s| s == "." || s == ".."),
        "routed {path:?} with a dot segment"
    );
    assert!(
        !path.contains(['#', ';', '\\']),
        "routed {path:?} with # ; or \\"
    );
    assert!(!path.contains("%25"), "routed {path:?} with an encoded %");
});
