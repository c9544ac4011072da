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
//! differently from us is refused (400, fail closed) rather than guessed at. The query
//! (from the first `?`) is cut off and one trailing `/` ignored; then refused are dot
//! segments, segments of only `.` and `+` (`...`, `+`, `%2B`), empty segments (`//`),
//! `#`, `;` (path parameters, as in `..;`), `\`, whitespace, control characters, raw
//! non-ASCII bytes, `%25`, `%u`, a `%` without two hex digits, an escape of an unreserved
//! character (`%2e`, `%64`), of `/ \ ; # ?`, of a space or of a control character, and a
//! path that is not UTF-8 once decoded (overlong `%c0%ae`). Decoded, a path must also
//! hold no character an upstream may trim, drop or turn into ASCII: no whitespace of any
//! kind (`%c2%a0`, `%e3%80%80`, `%e2%80%a8`), no format character (`%e2%80%8b`,
//! `%e2%80%ae`, `%ef%bb%bf`, `%c2%ad`), other default-ignorable (variation selectors) or
//! unassigned one, nothing NFKC would change (fullwidth `%ef%bd%84`, ligatures, a base
//! letter followed by a combining mark), no letter whose upper or lower case is one ASCII
//! letter (dotless `%c4%b1`), and no look-alike of path syntax: a symbol, punctuation
//! mark or modifier letter (not a letter or digit of words: Katakana `ノ` is fine) whose UTS 39
//! confusable skeleton holds one of `/ \ . ; # ? %` (division slash `%e2%88%95`, set minus
//! `%e2%88%96`; `%`'s own skeleton is `°/₀`, so its look-alikes count by the `/`), `¥` or
//! `₩` (`\` in Japanese and Korean code pages). So literals only ever meet unencoded
//! segments: an encoded one matches only `{param}`, `*` or `**`, though its ASCII fold
//! (below) may count as an alternate.
//! Literals match ignoring ASCII case (`/A/B` takes the `/a/b` rule), as some upstreams
//! route that way.
//!
//! Upstreams also route some other spellings of a path to the handler of a literal:
//! `/x/done.json` or `/x/done.v2.json` (Spring suffix patterns, Rails `(.:format)`),
//! `/x/done.` (trailing dots dropped, as on Windows), `/x/done+` or `/x/done%2B` (`+` read
//! as a space and trimmed, by some after decoding), `/x/d%C3%B3ne` (IIS "best fit" and the
//! like turn `ó` into `o`). So a path is also read with segments replaced by an alternate:
//! any segment without its trailing `.` and `+` and leading `+` (`%2B` counts as `+`), the
//! last segment cut before any of its `.` (then trimmed likewise), and the ASCII fold of
//! each of these (the segment included) that has an escape decoding to non-ASCII. The
//! fold reads each non-ASCII character as its NFKD without combining marks if that is
//! ASCII (`é` as `e`, a lone mark as nothing), else as its UTS 39 skeleton without
//! combining marks if that is ASCII (Cyrillic `а` as `a`), a skeleton `l` standing for `i`
//! and `1` too, `O` for `0` and `rn` for `m` (whose skeletons they are); ASCII stays as it
//! is, and a character with neither reading matches nothing. An alternate counts only
//! where it reads, ignoring ASCII case, as a literal that some rule has at that position.
//! If any combination of counted alternates routes to a rule with another requirement
//! than the path as sent (permissions in another order are the same), or one of the two
//! to a rule and the other to none, the request is refused as ambiguous (400); so is a
//! path needing more than 64 combinations. For example, with
//! `GET /x/{id}/done scope decrypt` and `GET /x/** x:read`, `/x/1/done.json`,
//! `/x/1/done.` and `/x/1/d%C3%B3ne` are refused rather than read as `x:read`, while
//! `/files/report.pdf` under `GET /files/{name}` routes as usual. This refuses
//! `/files/report.pdf` even when `GET /files/report.pdf` exists, if `GET /files/report`
//! has another requirement (Rails would route it to the latter): give the two the same
//! requirement.
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
use unicode_normalization::{UnicodeNormalization, is_nfkc};
use unicode_properties::{GeneralCategory, UnicodeGeneralCategory};
use unicode_security::GeneralSecurityProfile;
use unicode_security::general_security_profile::IdentifierType;

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
/// Most readings of a path with alternate segments (suffixes, trailing characters,
/// ASCII folds: see the module doc) checked before the request is refused as ambiguous.
pub const MAX_READINGS: usize = 64;

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
    /// By segment position, the literals any rule has there: lower-case, sorted, unique.
    /// Only an alternate reading equal to one of these can change a route.
    literals: Vec<Vec<String>>,
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
        let literals = literals_by_position(&rules);
        Ok(Self {
            source: text.to_owned(),
            rules,
            by_rank,
            literals,
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
        let winner = self.winner(method, segments.clone());
        // Only `.`, `+` and escapes (`%2B`, non-ASCII) make alternate readings, so most
        // paths stop here.
        if body.contains(['.', '+', '%']) {
            self.check_unambiguous(method, segments, winner)?;
        }
        Ok(winner)
    }

    fn winner<'p>(
        &self,
        method: &str,
        segments: impl Iterator<Item = &'p str> + Clone,
    ) -> Option<&Rule> {
        self.by_rank
            .iter()
            .filter_map(|&i| self.rules.get(i))
            .find(|rule| rule.covers_method(method) && rule.matches(segments.clone()))
    }

    /// Refuses the request unless every combination of counted alternate segments (see
    /// the module doc) routes like the path as sent, whose route is `winner`: an upstream
    /// may route any of them to its handler.
    fn check_unambiguous<'p>(
        &self,
        method: &str,
        segments: impl Iterator<Item = &'p str> + Clone,
        winner: Option<&Rule>,
    ) -> Result<(), RequestError> {
        let last = segments.clone().count().saturating_sub(1);
        let choices = |(index, segment): (usize, &'p str)| {
            let mut choices = vec![Alternate {
                text: segment,
                folded: false,
            }];
            for alternate in self.alternates(index, segment, index == last) {
                if !choices.iter().any(|c| c.text == alternate.text) {
                    choices.push(alternate);
                }
            }
            (choices.len() > 1).then_some((index, choices))
        };
        // Checked without allocating first: a `.` rarely leaves a literal behind (a fold
        // allocates, but only for a segment with an escape decoding to non-ASCII).
        if !segments.clone().enumerate().any(|(index, segment)| {
            self.alternates(index, segment, index == last)
                .next()
                .is_some()
        }) {
            return Ok(());
        }
        let choices: Vec<(usize, Vec<Alternate<'_>>)> =
            segments.clone().enumerate().filter_map(choices).collect();
        let readings = choices
            .iter()
            .try_fold(1_usize, |n, (_, c)| n.checked_mul(c.len()))
            .filter(|&n| n <= MAX_READINGS)
            .ok_or(RequestError::Path("ambiguous: too many alternate readings"))?;
        let mut reading: Vec<&str> = segments.collect();
        // Reading 0 is the path as sent; the others count through every combination.
        for mut n in 1..readings {
            let mut folded = false;
            for (index, choices) in &choices {
                let (pick, rest) = (n % choices.len(), n / choices.len());
                n = rest;
                if let (Some(slot), Some(choice)) = (reading.get_mut(*index), choices.get(pick)) {
                    *slot = choice.text;
                    folded |= choice.folded;
                }
            }
            if !same_verdict(winner, self.winner(method, reading.iter().copied())) {
                return Err(RequestError::Path(if folded {
                    "ambiguous: an accented or look-alike character could route it elsewhere"
                } else {
                    "ambiguous: a suffix or trailing character could route it elsewhere"
                }));
            }
        }
        Ok(())
    }

    /// The alternate readings of the segment at `index` that are a literal of some rule
    /// there (possibly repeated): trimmed of trailing `.` and `+` and leading `+` (Windows
    /// drops trailing dots; `+` or `%2B` may be read as a space and trimmed), and if it is
    /// the `last`, cut before any `.` (suffix patterns, Rails `(.:format)`), then trimmed;
    /// then, only if the segment has an escape decoding to non-ASCII, the ASCII folds of
    /// all these (see [`Fold`]). The folds are found last, so a caller stopping at the
    /// first alternate rarely computes them.
    fn alternates<'s>(
        &'s self,
        index: usize,
        segment: &'s str,
        last: bool,
    ) -> impl Iterator<Item = Alternate<'s>> {
        let cuts = segment
            .match_indices('.')
            .filter(move |_| last)
            .filter_map(|(at, _)| segment.get(..at));
        let plain = std::iter::once(segment)
            .chain(cuts)
            .flat_map(|cut| [cut, trim_trailing(cut)])
            .filter(move |alternate| *alternate != segment && self.is_literal_at(index, alternate))
            .map(|text| Alternate {
                text,
                folded: false,
            });
        let folds = std::iter::once(())
            .flat_map(move |()| self.folded_alternates(index, segment, last))
            .map(|text| Alternate { text, folded: true });
        plain.chain(folds)
    }

    /// The literals at `index` that an ASCII fold of `segment`, or of a cut or trimmed
    /// reading of it (as in [`Self::alternates`]), reads as; none unless the segment has an
    /// escape decoding to non-ASCII. A reading without a non-ASCII character is left to
    /// the plain alternates. Each literal is walked along the fold once (twice when the
    /// segment starts with `+`), not once per reading, so a segment with many `.` costs no
    /// more than the literals' length.
    fn folded_alternates<'s>(&'s self, index: usize, segment: &str, last: bool) -> Vec<&'s str> {
        let mut found: Vec<&'s str> = Vec::new();
        let Some(literals) = self.literals.get(index).filter(|l| !l.is_empty()) else {
            return found;
        };
        let Some(fold) = Fold::of(segment) else {
            return found;
        };
        let units = fold.units.as_slice();
        let Some(first) = units.iter().position(|unit| unit.source != Source::Ascii) else {
            return found;
        };
        // Where a reading may end (before it is trimmed): the end of the segment, or of
        // the last one a cut before a `.`; ascending.
        let ends: Vec<usize> = units
            .iter()
            .enumerate()
            .filter(|(at, unit)| last && *at > first && fold.reading(unit) == Some("."))
            .map(|(at, _)| at)
            .chain([units.len()])
            .collect();
        let lead = units
            .iter()
            .take_while(|unit| fold.reads_in(unit, LEADING_TRIM))
            .count();
        for literal in literals {
            let as_is = fold
                .walk(units, 0, literal)
                .is_some_and(|at| fold.may_end(units, at, &ends, &[""]));
            // Trimmed, the literal must not end in what the trim took off.
            let trimmed = || {
                fold.walk(units, lead, literal).is_some_and(|at| {
                    (at == lead
                        || units
                            .get(at.saturating_sub(1))
                            .is_none_or(|unit| !fold.reads_in(unit, &["+", "."])))
                        && fold.may_end(units, at, &ends, TRAILING_TRIM)
                })
            };
            if as_is || trimmed() {
                found.push(literal);
            }
        }
        found
    }

    fn is_literal_at(&self, index: usize, candidate: &str) -> bool {
        self.literals.get(index).is_some_and(|literals| {
            let lower = || candidate.bytes().map(|b| b.to_ascii_lowercase());
            literals
                .binary_search_by(|literal| literal.bytes().cmp(lower()))
                .is_ok()
        })
    }
}

/// `segment` without trailing `.` and `+` and leading `+`, `%2B` counting as `+`.
fn trim_trailing(mut segment: &str) -> &str {
    loop {
        let trimmed = segment.trim_start_matches('+');
        let trimmed = strip_prefix_ignore_ascii_case(trimmed, "%2B").unwrap_or(trimmed);
        if trimmed.len() == segment.len() {
            break;
        }
        segment = trimmed;
    }
    loop {
        let trimmed = segment.trim_end_matches(['.', '+']);
        let trimmed = strip_suffix_ignore_ascii_case(trimmed, "%2B").unwrap_or(trimmed);
        if trimmed.len() == segment.len() {
            return segment;
        }
        segment = trimmed;
    }
}

fn strip_prefix_ignore_ascii_case<'a>(s: &'a str, prefix: &str) -> Option<&'a str> {
    let at = prefix.len();
    s.get(..at)
        .filter(|head| head.eq_ignore_ascii_case(prefix))
        .and_then(|_| s.get(at..))
}

fn strip_suffix_ignore_ascii_case<'a>(s: &'a str, suffix: &str) -> Option<&'a str> {
    let at = s.len().checked_sub(suffix.len())?;
    s.get(at..)
        .filter(|tail| tail.eq_ignore_ascii_case(suffix))
        .and_then(|_| s.get(..at))
}

/// An alternate reading of a segment; `folded` when it is an ASCII fold.
#[derive(Debug, Clone, Copy)]
struct Alternate<'a> {
    text: &'a str,
    folded: bool,
}

/// A segment percent-decoded, each character with its ASCII reading (see the module doc):
/// what an upstream that folds non-ASCII to ASCII ("best fit") may make of it.
struct Fold {
    /// The readings, one after the other.
    text: String,
    units: Vec<Unit>,
}

/// One decoded character of a [`Fold`]: its reading is `text[start..end]`.
#[derive(Debug, Clone, Copy)]
struct Unit {
    start: usize,
    end: usize,
    source: Source,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    /// An ASCII character, read as itself.
    Ascii,
    /// A non-ASCII character read as its NFKD without combining marks (`é` as `e`).
    Stripped,
    /// A non-ASCII character read as its confusable skeleton without combining marks
    /// (Cyrillic `а` as `a`): a prototype that also stands for other ASCII.
    Skeleton,
    /// A non-ASCII character with no ASCII reading.
    Foreign,
}

impl Fold {
    /// The fold of a canonical segment, if it has an escape decoding to non-ASCII.
    fn of(segment: &str) -> Option<Self> {
        if !has_non_ascii_escape(segment) {
            return None;
        }
        let decoded = String::from_utf8(percent_decode(segment).ok()?).ok()?;
        let mut fold = Self {
            text: String::with_capacity(decoded.len()),
            units: Vec::with_capacity(decoded.len()),
        };
        for c in decoded.chars() {
            let start = fold.text.len();
            let source = if c.is_ascii() {
                fold.text.push(c);
                Source::Ascii
            } else {
                let stripped: String = without_marks(std::iter::once(c).nfkd());
                if stripped.is_ascii() {
                    fold.text.push_str(&stripped);
                    Source::Stripped
                } else {
                    let prototype = without_marks(unicode_security::skeleton(&stripped));
                    if prototype.is_ascii() {
                        fold.text.push_str(&prototype);
                        Source::Skeleton
                    } else {
                        Source::Foreign
                    }
                }
            };
            fold.units.push(Unit {
                start,
                end: fold.text.len(),
                source,
            });
        }
        Some(fold)
    }

    /// The ASCII reading of `unit`; `None` for a character with none.
    fn reading(&self, unit: &Unit) -> Option<&str> {
        (unit.source != Source::Foreign)
            .then(|| self.text.get(unit.start..unit.end))
            .flatten()
    }

    /// True when `unit` reads as one of `readings`.
    fn reads_in(&self, unit: &Unit, readings: &[&str]) -> bool {
        self.reading(unit).is_some_and(|r| readings.contains(&r))
    }

    /// Where in `units`, read from `start`, `literal` (lower-case) has been read, ignoring
    /// ASCII case: just after the unit that completes it; `None` if they part before.
    fn walk(&self, units: &[Unit], start: usize, literal: &str) -> Option<usize> {
        let mut rest = literal.as_bytes();
        for (at, unit) in units.iter().enumerate().skip(start) {
            if rest.is_empty() {
                return Some(at);
            }
            let reading = self.reading(unit)?;
            rest = if unit.source == Source::Skeleton {
                strip_confusable(reading.as_bytes(), rest)?
            } else {
                rest.get(..reading.len())
                    .filter(|head| head.eq_ignore_ascii_case(reading.as_bytes()))
                    .and_then(|_| rest.get(reading.len()..))?
            };
        }
        rest.is_empty().then_some(units.len())
    }

    /// True when some end in `ends` (ascending) is at or after `at`, with only units read
    /// as one of `skipped` in between.
    fn may_end(&self, units: &[Unit], at: usize, ends: &[usize], skipped: &[&str]) -> bool {
        let run = units.get(at..).map_or(0, |after| {
            after
                .iter()
                .take_while(|unit| self.reads_in(unit, skipped))
                .count()
        });
        ends.get(ends.partition_point(|&end| end < at))
            .is_some_and(|&end| end <= at + run)
    }
}

/// What [`trim_trailing`] takes off the start and the end of a segment, as [`Fold`]
/// readings; a character read as nothing (a lone combining mark) goes along.
const LEADING_TRIM: &[&str] = &["+", ""];
const TRAILING_TRIM: &[&str] = &["+", ".", ""];

/// `rest` after a prefix whose skeleton is `prototype` (ASCII), ignoring ASCII case. Of
/// the characters a literal may hold, only `0` (`O`), `1` and `I` (`l`) and `m` (`rn`)
/// have a skeleton other than themselves; `rn` and `m` never start alike, so no
/// backtracking is needed.
fn strip_confusable<'l>(mut prototype: &[u8], mut rest: &'l [u8]) -> Option<&'l [u8]> {
    while let Some((&p, more)) = prototype.split_first() {
        let (&b, after) = rest.split_first()?;
        let b = b.to_ascii_lowercase();
        prototype = if p == b'r' && b == b'm' && more.first() == Some(&b'n') {
            more.get(1..).unwrap_or_default()
        } else if p.to_ascii_lowercase() == b
            || (p == b'l' && matches!(b, b'i' | b'1'))
            || (p == b'O' && b == b'0')
        {
            more
        } else {
            return None;
        };
        rest = after;
    }
    Some(rest)
}

/// `chars` without nonspacing (combining) marks.
fn without_marks(chars: impl Iterator<Item = char>) -> String {
    chars
        .filter(|c| c.general_category() != GeneralCategory::NonspacingMark)
        .collect()
}

/// True when `segment` (canonical, so every `%` starts an escape) has an escape of a
/// non-ASCII byte.
fn has_non_ascii_escape(segment: &str) -> bool {
    segment.split('%').skip(1).any(|escape| {
        escape
            .bytes()
            .next()
            .and_then(hex)
            .is_some_and(|hi| hi >= 8)
    })
}

/// True when two routes need the same: both no rule (the default), or rules with the
/// same requirement (permissions in any order).
fn same_verdict(a: Option<&Rule>, b: Option<&Rule>) -> bool {
    match (a.map(|r| &r.requirement), b.map(|r| &r.requirement)) {
        (None, None) => true,
        (Some(Requirement::Permissions(a)), Some(Requirement::Permissions(b))) => {
            a.len() == b.len() && a.iter().all(|p| b.contains(p))
        }
        (Some(a), Some(b)) => a == b,
        _ => false,
    }
}

/// By segment position, the literals rules have there; see [`RoutePolicy::literals`].
fn literals_by_position(rules: &[Rule]) -> Vec<Vec<String>> {
    let mut out: Vec<Vec<String>> = Vec::new();
    for rule in rules {
        for (index, segment) in rule.segments.iter().enumerate() {
            if let Segment::Literal(literal) = segment {
                if out.len() <= index {
                    out.resize_with(index + 1, Vec::new);
                }
                if let Some(at) = out.get_mut(index) {
                    at.push(literal.clone());
                }
            }
        }
    }
    for at in &mut out {
        at.sort_unstable();
        at.dedup();
    }
    out
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
            // `...` is `..` to some Windows APIs, and each may trim to nothing (`%2B` is a
            // `+` to some).
            _ if trim_trailing(segment).is_empty() => {
                return Err(RequestError::Path("segment of only . and +"));
            }
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
    // Upstreams may trim it, so a literal could match there.
    if byte == b' ' {
        return Err(RequestError::Path("encoded whitespace"));
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

/// `s` percent-decoded once.
fn percent_decode(s: &str) -> Result<Vec<u8>, RequestError> {
    let mut decoded = Vec::with_capacity(s.len());
    let mut bytes = s.bytes();
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
    Ok(decoded)
}

/// Refuses `path` unless, percent-decoded once, it is UTF-8 (so no overlong encodings),
/// in NFKC, and without a character an upstream may trim, drop or turn into ASCII (see
/// [`check_char`]) or a look-alike of path syntax (see [`looks_like_syntax`]). Call only
/// after every escape was checked by [`unescape`].
fn check_decoded(path: &str) -> Result<(), RequestError> {
    let decoded = percent_decode(path)?;
    let decoded = std::str::from_utf8(&decoded)
        .map_err(|_| RequestError::Path("percent-decodes to invalid UTF-8"))?;
    decoded.chars().try_for_each(check_char)?;
    // Fullwidth forms, ligatures and the like: IIS "best fit" and NFKC-normalising
    // frameworks turn them into the ASCII a literal matches.
    if !is_nfkc(decoded) {
        return Err(RequestError::Path("encoded character NFKC would change"));
    }
    if decoded.chars().any(cases_to_ascii) {
        return Err(RequestError::Path("encoded letter whose case is ASCII"));
    }
    // After the NFKC check, so fullwidth `／` and the like keep their reason.
    if decoded.chars().any(looks_like_syntax) {
        return Err(RequestError::Path(
            "encoded look-alike of / \\ . ; # ? or %",
        ));
    }
    Ok(())
}

/// Path syntax that a look-alike must not stand for once folded to ASCII.
const SYNTAX: [char; 7] = ['/', '\\', '.', ';', '#', '?', '%'];

/// Look-alikes of [`SYNTAX`] that [`unicode_security::skeleton`] does not map to it.
const SYNTAX_LOOK_ALIKES: [char; 2] = [
    // YEN SIGN: `\` in Japanese code pages (Shift_JIS 0x5C), so best fit maps it there;
    // its skeleton is `Y` with a stroke.
    '\u{a5}',
    // WON SIGN: likewise in Korean ones (EUC-KR 0x5C); its skeleton is `W` with a stroke.
    '\u{20a9}',
];

/// True when a non-ASCII `c` may be taken for path syntax: its skeleton holds one of
/// [`SYNTAX`] (`∕` U+2215 is `/`; `﹪`, whose skeleton is `%`'s own `°/₀`, holds a `/`), or
/// it is in [`SYNTAX_LOOK_ALIKES`]. Letters and digits of words are exempt (Katakana `ノ`
/// has the skeleton `/`, yet `/wiki/ノート` is ordinary text no upstream reads as a
/// separator); modifier letters are not (Lisu `ꓸ` is a tone mark drawn as a dot), nor
/// symbols and punctuation, which best-fit tables map to syntax.
fn looks_like_syntax(c: char) -> bool {
    use unicode_properties::{GeneralCategory, GeneralCategoryGroup, UnicodeGeneralCategory};
    let text = matches!(
        c.general_category_group(),
        GeneralCategoryGroup::Letter | GeneralCategoryGroup::Number
    ) && c.general_category() != GeneralCategory::ModifierLetter;
    !c.is_ascii()
        && !text
        && (SYNTAX_LOOK_ALIKES.contains(&c)
            || unicode_security::skeleton(c.encode_utf8(&mut [0; 4])).any(|s| SYNTAX.contains(&s)))
}

/// Refuses a decoded character that an upstream may trim or drop, leaving a literal
/// behind.
fn check_char(c: char) -> Result<(), RequestError> {
    if c.is_ascii() {
        // Escapes of ASCII were checked by `unescape`; unescaped ASCII by `check_raw`.
        return Ok(());
    }
    if c.is_control() {
        return Err(RequestError::Path("encoded control character"));
    }
    if c.is_whitespace() {
        return Err(RequestError::Path("encoded whitespace"));
    }
    // Unassigned: an upstream with newer Unicode data may drop, normalise or case-map it.
    if matches!(
        c.general_category(),
        GeneralCategory::Format | GeneralCategory::Unassigned
    ) || c.identifier_type() == Some(IdentifierType::Default_Ignorable)
    {
        return Err(RequestError::Path(
            "encoded format, ignorable or unassigned character",
        ));
    }
    Ok(())
}

/// True when a non-ASCII `c` maps in some case to one ASCII letter, perhaps with
/// combining marks (`ı` to `I`, `İ` to `i̇`): Unicode case-insensitive matching (Java's
/// `equalsIgnoreCase`, .NET's `OrdinalIgnoreCase`) takes it for that letter. Mappings to
/// several letters (`ß` to `SS`) only come from full case folding, so they are kept.
fn cases_to_ascii(c: char) -> bool {
    !c.is_ascii() && (one_ascii_letter(c.to_lowercase()) || one_ascii_letter(c.to_uppercase()))
}

fn one_ascii_letter(mut mapped: impl Iterator<Item = char>) -> bool {
    mapped.next().is_some_and(|first| first.is_ascii()) && mapped.all(|rest| !rest.is_ascii())
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
            ("GET", "/api/v1/orders/a+b", Some("orders:read")),
            ("GET", "/api/v1/orders/17.json", Some("orders:read")),
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
            "/a%20b",
            "/a/%c2%a0",
            "/a/...",
            "/a/+",
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
            "/a?x=../..",
            "/a?x=#/../b",
            "/a+b",
            "/a.b.",
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
            // Windows reads `...` as `..`; `+` and `.` may be trimmed to nothing.
            (
                "/api/v1/orders/.../credit_cards/1/decrypted",
                "only . and +",
            ),
            ("/api/v1/orders/+/x", "only . and +"),
            ("/api/v1/orders/.+./x", "only . and +"),
            // Some decode `%2B` before trimming.
            ("/api/v1/orders/%2B/x", "only . and +"),
            ("/api/v1/orders/.%2b./x", "only . and +"),
            ("/api/v1/orders/%2B+%2b/x", "only . and +"),
            // Encoded whitespace of any kind: upstreams may trim it.
            ("/api/v1/orders/a%20b", "whitespace"),
            ("/api/v1/credit_cards/1/decrypted%20", "whitespace"),
            ("/api/v1/credit_cards/1/decrypted%09", "control"),
            ("/api/v1/credit_cards/1/decrypted%c2%a0", "whitespace"),
            ("/api/v1/credit_cards/1/decrypted%e3%80%80", "whitespace"),
            ("/api/v1/credit_cards/1/decrypted%e2%80%a8", "whitespace"),
            ("/api/v1/credit_cards/1/decrypted%e2%80%a9", "whitespace"),
            ("/api/v1/credit_cards/1/decrypted%e1%9a%80", "whitespace"),
            ("/api/v1/credit_cards/1/decrypted%e2%80%af", "whitespace"),
            ("/api/v1/credit_cards/1/%e2%80%83decrypted", "whitespace"),
            // Format and other default-ignorable characters: upstreams may drop them.
            ("/api/v1/credit_cards/1/decrypted%e2%80%8b", "format"),
            ("/api/v1/credit_cards/1/decr%e2%80%8dypted", "format"),
            ("/api/v1/credit_cards/1/decrypted%e2%80%ae", "format"),
            ("/api/v1/credit_cards/1/%ef%bb%bfdecrypted", "format"),
            ("/api/v1/credit_cards/1/decry%c2%adpted", "format"),
            ("/api/v1/credit_cards/1/decrypted%e2%81%a0", "format"),
            ("/api/v1/credit_cards/1/decrypted%f3%a0%80%81", "format"),
            ("/api/v1/credit_cards/1/decrypted%ef%b8%8f", "ignorable"),
            ("/api/v1/credit_cards/1/decrypted%cd%8f", "ignorable"),
            ("/api/v1/credit_cards/1/decrypted%e1%85%9f", "ignorable"),
            // What NFKC changes may come out as the ASCII a literal matches.
            ("/api/v1/credit_cards/1/%ef%bd%84ecrypted", "NFKC"),
            ("/api/v1/credit_cards/1/decrypted%ef%bc%8e", "NFKC"),
            ("/api/v1/%ef%ac%81les/1", "NFKC"),
            ("/api/v1/credit_cards/1/%e2%84%aa", "NFKC"),
            ("/api/v1/credit_cards/1/decrypt%c5%bfd", "NFKC"),
            ("/api/v1/credit_cards/1/decrypte%cc%81", "NFKC"),
            // Unicode case-insensitive matching takes these for `i`.
            ("/api/v1/%c4%b1d", "case"),
            ("/api/v1/%c4%b0d", "case"),
            // Look-alikes of path syntax, which best fit and the like may make real.
            ("/api/v1/orders/1/decrypted%ef%bc%8f", "NFKC"),
            ("/api/v1/orders/1/decrypted%e2%80%a4json", "NFKC"),
            ("/api/v1/orders/1/decrypted%ef%b9%92", "NFKC"),
            ("/api/v1/orders/1/decrypted%cd%be", "NFKC"),
            (
                "/api/v1/orders/..%e2%88%95credit_cards%e2%88%951%e2%88%95decrypted",
                "look-alike",
            ),
            ("/api/v1/orders/..%e2%81%84x", "look-alike"),
            ("/api/v1/orders/..%e2%a7%b8x", "look-alike"),
            ("/api/v1/orders/..%e2%95%b1x", "look-alike"),
            ("/api/v1/orders/..%e2%88%96x", "look-alike"),
            ("/api/v1/orders/..%c2%a5x", "look-alike"),
            ("/api/v1/orders/..%e2%82%a9x", "look-alike"),
            ("/api/v1/orders/1/decrypted%dc%81", "look-alike"),
            ("/api/v1/orders/1/decrypted%ea%93%b8json", "look-alike"),
            ("/api/v1/orders/1%d9%aa2e", "look-alike"),
            ("/api/v1/orders/1%e2%80%b0", "look-alike"),
        ];
        for (path, want) in rows {
            match builtin.route("GET", path) {
                Err(RequestError::Path(why)) => assert!(why.contains(want), "{path:?}: {why}"),
                other => panic!("{path:?}: {other:?}"),
            }
        }
    }

    /// Percent-encodes every byte of `s`, as a client would a non-ASCII character.
    fn encode(s: &str) -> String {
        s.bytes().map(|b| format!("%{b:02x}")).collect()
    }

    #[test]
    fn every_whitespace_and_default_ignorable_character_is_refused() {
        // Unicode 16 White_Space (PropList.txt) and Default_Ignorable_Code_Point
        // (DerivedCoreProperties.txt), written out so a table missing one fails here.
        let ranges: &[(u32, u32)] = &[
            (0x20, 0x20),
            (0x85, 0x85),
            (0xa0, 0xa0),
            (0x1680, 0x1680),
            (0x2000, 0x200a),
            (0x2028, 0x2029),
            (0x202f, 0x202f),
            (0x205f, 0x205f),
            (0x3000, 0x3000),
            (0xad, 0xad),
            (0x34f, 0x34f),
            (0x61c, 0x61c),
            (0x115f, 0x1160),
            (0x17b4, 0x17b5),
            (0x180b, 0x180f),
            (0x200b, 0x200f),
            (0x202a, 0x202e),
            (0x2060, 0x206f),
            (0x3164, 0x3164),
            (0xfe00, 0xfe0f),
            (0xfeff, 0xfeff),
            (0xffa0, 0xffa0),
            (0xfff0, 0xfff8),
            (0x1bca0, 0x1bca3),
            (0x1d173, 0x1d17a),
            (0xe0000, 0xe0fff),
        ];
        let p = policy("* /** any:read\n");
        for c in ranges
            .iter()
            .flat_map(|&(first, last)| first..=last)
            .filter_map(char::from_u32)
        {
            let path = format!("/a{}b", encode(c.encode_utf8(&mut [0; 4])));
            assert!(
                matches!(p.route("GET", &path), Err(RequestError::Path(_))),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn other_encodings_still_route() {
        let p = policy("GET /a/{x} x:read\n");
        for path in [
            "/a/%E2%82%AC",
            "/a/%22%3C",
            "/a/%c3%a9",
            "/a/caf%c3%a9",
            "/a/%e6%97%a5%e6%9c%ac",
            "/a/%f0%9f%a6%80",
            "/a/%d0%b0",
            "/a/%c3%9f",
            // Katakana "no-to": `ノ` has the skeleton `/`, but it is a letter.
            "/a/%E3%83%8E%E3%83%BC%E3%83%88",
            // Arabic-Indic zero, a digit whose skeleton is `.`.
            "/a/%D9%A0",
            // The glottal stop `ʔ`, a letter whose skeleton is `?`.
            "/a/1%ca%94x",
        ] {
            assert_eq!(routed(&p, "GET", path).as_deref(), Some("x:read"), "{path}");
        }
    }

    /// A strict rule beside a looser sibling, as in the issue.
    const SIBLINGS: &str = "GET /api/v1/credit_cards/{id}/decrypted scope decrypt\n\
                            GET /api/v1/credit_cards/** credit_cards:read\n\
                            GET /files/report.pdf files:pdf\n\
                            GET /files/report files:report\n\
                            GET /files/{name} files:read\n\
                            GET /docs/{name} docs:read\n\
                            GET /same/{id}/x.y x:read\n\
                            GET /same/{id}/x x:read\n\
                            GET /same/** other:read\n";

    #[test]
    fn suffixes_and_trailing_characters_that_could_route_elsewhere_are_refused() {
        let p = policy(SIBLINGS);
        for path in [
            // Spring suffix patterns, Rails `(.:format)`.
            "/api/v1/credit_cards/1/decrypted.json",
            "/api/v1/credit_cards/1/decrypted.JSON",
            "/api/v1/credit_cards/1/DECRYPTED.json",
            "/api/v1/credit_cards/1/decrypted.v2.json",
            "/api/v1/credit_cards/1/decrypted.json/",
            "/api/v1/credit_cards/1/decrypted.json?x=1",
            // Trailing dots (Windows), `+` read as a space and trimmed.
            "/api/v1/credit_cards/1/decrypted.",
            "/api/v1/credit_cards/1/decrypted..",
            "/api/v1/credit_cards/1/decrypted+",
            "/api/v1/credit_cards/1/+decrypted",
            "/api/v1/credit_cards/1/+decrypted+",
            "/api/v1/credit_cards/1/decrypted.+.",
            "/api/v1/credit_cards/1/decrypted+.json",
            // `%2B` is a `+` to frameworks that decode before trimming.
            "/api/v1/credit_cards/1/decrypted%2B",
            "/api/v1/credit_cards/1/decrypted%2b",
            "/api/v1/credit_cards/1/%2Bdecrypted",
            "/api/v1/credit_cards/1/decrypted%2B%2B.",
            "/api/v1/credit_cards/1/decrypted.%2B",
            "/api/v1/credit_cards/1/decrypted%2B.json",
            // Cut before the accent, so a plain alternate.
            "/api/v1/credit_cards/1/decrypted.j%C3%A9son",
            "/api/v1/credit_cards%2B/1/decrypted",
            // In any segment: the path as sent would get the default, not the rule.
            "/api/v1/credit_cards./1/decrypted",
            "/api/v1./credit_cards/1/decrypted",
            "/api+/v1/credit_cards/1/decrypted",
            "/api./v1./credit_cards./1/decrypted.json",
            // An exact literal, when the shorter one has another requirement.
            "/files/report.pdf",
            "/files/REPORT.PDF",
            "/files/report.",
            "/files/report.txt",
            // `x` and `x.y` are literals there, but not `x.json`, so it takes `/same/**`.
            "/same/1/x.json",
            "/same/1/x.y.z",
        ] {
            assert_eq!(
                p.route("GET", path),
                Err(RequestError::Path(
                    "ambiguous: a suffix or trailing character could route it elsewhere"
                )),
                "{path}"
            );
        }
    }

    #[test]
    fn unambiguous_suffixes_and_trailing_characters_still_route() {
        let p = policy(SIBLINGS);
        let rows = [
            ("/api/v1/credit_cards/1/decrypted", Some("scope decrypt")),
            ("/api/v1/credit_cards/1.5/decrypted", Some("scope decrypt")),
            ("/api/v1/credit_cards/1./decrypted", Some("scope decrypt")),
            ("/api/v1/credit_cards/+1+/decrypted", Some("scope decrypt")),
            // `decrypted` is a literal only in the fifth segment.
            (
                "/api/v1/credit_cards/decrypted.json",
                Some("credit_cards:read"),
            ),
            (
                "/api/v1/credit_cards/1/decrypted/x.json",
                Some("credit_cards:read"),
            ),
            (
                "/api/v1/credit_cards/1/de.crypted",
                Some("credit_cards:read"),
            ),
            ("/api/v1/credit_cards/1/a+b", Some("credit_cards:read")),
            ("/api/v1/credit_cards/1/a%2Bb", Some("credit_cards:read")),
            (
                "/api/v1/credit_cards/1/decrypted%2Bx",
                Some("credit_cards:read"),
            ),
            (
                "/api/v1/credit_cards/%2B1%2B/decrypted",
                Some("scope decrypt"),
            ),
            // No literal is left behind, or the one left behind routes alike.
            ("/files/notes.pdf", Some("files:read")),
            ("/files/report", Some("files:report")),
            ("/docs/report.pdf", Some("docs:read")),
            ("/docs/report.", Some("docs:read")),
            ("/same/1/x.y", Some("x:read")),
            ("/same/1/x", Some("x:read")),
            ("/nowhere/a.b", None),
        ];
        for (path, want) in rows {
            assert_eq!(routed(&p, "GET", path).as_deref(), want, "{path}");
        }
        // Only under the rule's methods does `/files/report` route elsewhere.
        let p = policy("GET /files/report files:report\nGET,POST /files/{name} files:read\n");
        assert_eq!(
            p.route("GET", "/files/report.pdf").map(|_| ()),
            Err(RequestError::Path(
                "ambiguous: a suffix or trailing character could route it elsewhere"
            ))
        );
        assert_eq!(
            routed(&p, "POST", "/files/report.pdf").as_deref(),
            Some("files:read")
        );
        // The same permissions in another order are the same requirement.
        let p = policy("GET /p/x a:read b:read\nGET /p/* b:read a:read\n");
        assert_eq!(
            routed(&p, "GET", "/p/x.json").as_deref(),
            Some("b:read a:read")
        );
    }

    #[test]
    fn every_combination_of_alternates_is_checked() {
        // Trimming one segment, or all three, routes like the path as sent (z:read), but an
        // upstream trimming only the first two (IIS drops trailing dots, a suffix-aware
        // framework keeps `c.` whole) reaches `/a/b/{q}`.
        let p = policy(
            "GET /a/{p}/{q} z:read\n\
             GET /{p}/b/{q} z:read\n\
             GET /{p}/{q}/c z:read\n\
             GET /a/b/c z:read\n\
             GET /a/b/{q} w:read\n\
             GET /** z:read\n",
        );
        assert_eq!(routed(&p, "GET", "/a/b/x.").as_deref(), Some("w:read"));
        assert_eq!(routed(&p, "GET", "/a/b/c").as_deref(), Some("z:read"));
        assert_eq!(
            p.route("GET", "/a./b./c."),
            Err(RequestError::Path(
                "ambiguous: a suffix or trailing character could route it elsewhere"
            ))
        );
    }

    const FOLD_AMBIGUOUS: RequestError = RequestError::Path(
        "ambiguous: an accented or look-alike character could route it elsewhere",
    );

    #[test]
    fn accented_and_look_alike_spellings_of_a_literal_are_refused() {
        let p = policy(SIBLINGS);
        for path in [
            // IIS "best fit" and the like read `é` as `e`, in any case.
            "/api/v1/credit_cards/1/d%C3%A9crypted",
            "/api/v1/credit_cards/1/D%C3%89CRYPTED",
            "/api/v1/credit_cards/1/d%C3%A9crypt%C3%A9d",
            "/api/v1/credit_cards/1/%C4%91ecrypted",
            // Confusables read as their skeleton: Cyrillic `е`, `с`, `у`, `р`.
            "/api/v1/credit_cards/1/d%D0%B5crypted",
            "/api/v1/credit_cards/1/d%D0%B5%D1%81r%D1%83%D1%80ted",
            // Folded, then cut or trimmed; or cut or trimmed, then folded.
            "/api/v1/credit_cards/1/d%C3%A9crypted.json",
            "/api/v1/credit_cards/1/d%C3%A9crypted.%E6%97%A5",
            "/api/v1/credit_cards/1/d%C3%A9crypted.",
            "/api/v1/credit_cards/1/d%C3%A9crypted%2B",
            "/api/v1/credit_cards/1/+d%C3%A9crypted",
            // In an earlier segment: as sent, the path gets the default.
            "/api/v1/cr%C3%A9dit_cards/1/decrypted",
            "/%C3%A1pi/v1/credit_cards/1/decrypted",
            // A literal of its own, when the folded one has another requirement.
            "/files/r%C3%A9port",
            "/files/r%C3%A9port.pdf",
            "/same/1/%C3%97.y",
        ] {
            assert_eq!(p.route("GET", path), Err(FOLD_AMBIGUOUS), "{path}");
        }
        // The module doc's example.
        let p = policy("GET /x/{id}/done scope decrypt\nGET /x/** x:read\n");
        assert_eq!(p.route("GET", "/x/1/d%C3%B3ne"), Err(FOLD_AMBIGUOUS));
        assert_eq!(
            routed(&p, "GET", "/x/1/d%C3%B3%C3%B3ne").as_deref(),
            Some("x:read")
        );
        // Skeletons that stand for several ASCII characters: `l` for `l`, `i` and `1`,
        // `O` for `o` and `0`, `rn` for `rn` and `m`.
        let p =
            policy("GET /x/item x:item\nGET /x/v10 x:v10\nGET /x/rnl x:rnl\nGET /x/{p} x:any\n");
        for path in [
            "/x/%C3%8Dtem",
            "/x/%C3%ADtem",
            "/x/%D0%86tem",
            "/x/%D1%96tem",
            "/x/%CE%99TEM",
            "/x/ite%E1%B8%BF",
            "/x/ite%D5%A0",
            "/x/it%D0%B5m",
            "/x/v%D0%86%D0%9E",
            "/x/v1%D0%9E",
            "/x/%D5%A0%D3%8F",
            // A lone combining mark reads as nothing.
            "/x/it%CC%81em",
        ] {
            assert_eq!(p.route("GET", path), Err(FOLD_AMBIGUOUS), "{path}");
        }
    }

    #[test]
    fn unambiguous_accented_spellings_still_route() {
        let p = policy(SIBLINGS);
        let rows = [
            // Folded, they are no literal there.
            (
                "/api/v1/credit_cards/1/d%C3%A9%C3%A9crypted",
                Some("credit_cards:read"),
            ),
            (
                "/api/v1/credit_cards/1/d%C3%A9crypted%E6%97%A5",
                Some("credit_cards:read"),
            ),
            (
                "/api/v1/credit_cards/1/%E6%97%A5.json",
                Some("credit_cards:read"),
            ),
            (
                "/api/v1/credit_cards/d%C3%A9crypted/decrypted",
                Some("scope decrypt"),
            ),
            (
                "/api/v1/credit_cards/1/decrypted/d%C3%A9crypted",
                Some("credit_cards:read"),
            ),
            ("/docs/r%C3%A9port", Some("docs:read")),
            ("/files/%C3%A9", Some("files:read")),
            ("/nowhere/d%C3%A9crypted", None),
        ];
        for (path, want) in rows {
            assert_eq!(routed(&p, "GET", path).as_deref(), want, "{path}");
        }
        // The folded literal routes alike.
        let p = policy("GET /x/item x:read\nGET /x/{p} x:read\nGET /y/** x:read\n");
        for path in [
            "/x/%C3%8Dtem",
            "/x/%D0%86tem",
            "/x/ite%D5%A0",
            "/y/%C3%8Dtem",
        ] {
            assert_eq!(routed(&p, "GET", path).as_deref(), Some("x:read"), "{path}");
        }
        // Small `о` and accented `Ó` are not `0`, small `і` not `l`; ASCII stays as is.
        let p =
            policy("GET /x/v10 x:v10\nGET /x/list x:list\nGET /x/rnl x:rnl\nGET /x/{p} x:any\n");
        for path in [
            "/x/v1%C3%B3",
            "/x/v1%C3%93",
            "/x/v1%D0%BE",
            "/x/%C3%ADist",
            "/x/%D1%96ist",
            "/x/m%D3%8F",
        ] {
            assert_eq!(routed(&p, "GET", path).as_deref(), Some("x:any"), "{path}");
        }
    }

    #[test]
    fn skeleton_is_what_the_fold_and_look_alike_checks_assume() {
        let skeleton = |s: &str| unicode_security::skeleton(s).collect::<String>();
        // The look-alikes of path syntax named in the module doc, and `%`'s own skeleton.
        for (c, want) in [
            ('\u{2215}', "/"),
            ('\u{2044}', "/"),
            ('\u{ff0f}', "/"),
            ('\u{2216}', "\\"),
            ('\u{ff3c}', "\\"),
            ('\u{2024}', "."),
            ('\u{fe52}', "."),
            ('\u{ff0e}', "."),
            ('\u{701}', "."),
            ('\u{37e}', ";"),
            ('\u{ff03}', "#"),
            ('%', "\u{b0}/\u{2080}"),
            ('\u{ff05}', "\u{b0}/\u{2080}"),
            ('\u{66a}', "\u{b0}/\u{2080}"),
        ] {
            assert_eq!(skeleton(&c.to_string()), want, "U+{:04X}", u32::from(c));
            assert!(
                looks_like_syntax(c) || c.is_ascii(),
                "U+{:04X}",
                u32::from(c)
            );
        }
        // What skeleton misses, hence the explicit list.
        for c in SYNTAX_LOOK_ALIKES {
            assert!(
                !skeleton(&c.to_string()).contains(SYNTAX),
                "U+{:04X} is mapped now: drop it from the list",
                u32::from(c)
            );
            assert!(looks_like_syntax(c));
        }
        // Of the characters a literal may hold, only these have another skeleton, as
        // `strip_confusable` assumes.
        let others: Vec<(char, String)> = (0_u8..128)
            .filter(|&b| is_literal_byte(b))
            .map(char::from)
            .map(|c| (c, skeleton(&c.to_string())))
            .filter(|(c, s)| *s != c.to_string())
            .collect();
        let want: Vec<(char, String)> = [('0', "O"), ('1', "l"), ('I', "l"), ('m', "rn")]
            .iter()
            .map(|&(c, s)| (c, s.to_owned()))
            .collect();
        assert_eq!(others, want);
    }

    /// Accented and look-alike variants of ASCII letters, percent-encoded: NFKD without
    /// marks gives the first, the skeleton the second.
    const LOOK_ALIKES: [(char, [&str; 2]); 26] = [
        ('a', ["%C3%A1", "%D0%B0"]),
        ('A', ["%C3%81", "%D0%90"]),
        ('b', ["%E1%B8%83", "%D0%AC"]),
        ('B', ["%E1%B8%82", "%D0%92"]),
        ('c', ["%C3%A7", "%D1%81"]),
        ('C', ["%C3%87", "%D0%A1"]),
        ('e', ["%C3%A9", "%D0%B5"]),
        ('E', ["%C3%89", "%D0%95"]),
        ('i', ["%C3%AD", "%D1%96"]),
        ('I', ["%C3%8D", "%D0%86"]),
        ('l', ["%C4%BA", "%D3%8F"]),
        ('L', ["%C4%B9", "%E1%8F%9E"]),
        ('m', ["%E1%B8%BF", "%D5%A0"]),
        ('M', ["%E1%B8%BE", "%D0%9C"]),
        ('n', ["%C3%B1", "%D5%B8"]),
        ('N', ["%C3%91", "%CE%9D"]),
        ('o', ["%C3%B3", "%D0%BE"]),
        ('O', ["%C3%93", "%D0%9E"]),
        ('s', ["%C5%9B", "%D1%95"]),
        ('S', ["%C5%9A", "%D0%85"]),
        ('u', ["%C3%BA", "%D5%BD"]),
        ('U', ["%C3%9A", "%E1%88%80"]),
        ('j', ["%C4%B5", "%D1%98"]),
        ('J', ["%C4%B4", "%D0%88"]),
        ('y', ["%C3%BD", "%D1%83"]),
        ('Y', ["%C3%9D", "%D2%AE"]),
    ];

    #[test]
    fn look_alikes_of_the_generator_fold_to_their_letter() {
        let p = policy(
            "* /** any:read
",
        );
        for (letter, variants) in LOOK_ALIKES {
            for (n, variant) in variants.into_iter().enumerate() {
                assert!(
                    p.route("GET", &format!("/x{variant}y")).unwrap().is_some(),
                    "{letter} {variant}"
                );
                let fold = Fold::of(variant).unwrap();
                let source = if n == 0 {
                    Source::Stripped
                } else {
                    Source::Skeleton
                };
                assert!(
                    fold.units.iter().all(|u| u.source == source),
                    "{letter} {variant}"
                );
                let literal = letter.to_ascii_lowercase().to_string();
                assert_eq!(
                    fold.walk(&fold.units, 0, &literal),
                    Some(fold.units.len()),
                    "{letter} {variant}"
                );
            }
        }
    }

    #[test]
    fn too_many_alternate_readings_are_refused() {
        let p = policy("GET /a/a/a/a/a/a/a y:read\nGET /** y:read\n");
        // Six trimmable segments make 64 readings, all routing alike; seven are too many.
        assert_eq!(
            routed(&p, "GET", "/a./a./a./a./a./a./a").as_deref(),
            Some("y:read")
        );
        assert_eq!(
            p.route("GET", "/a./a./a./a./a./a./a."),
            Err(RequestError::Path("ambiguous: too many alternate readings"))
        );
        // An ASCII fold is one more reading of its segment.
        assert_eq!(
            p.route("GET", "/a./a./a./a./a./a./%C3%A1"),
            Err(RequestError::Path("ambiguous: too many alternate readings"))
        );
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

        /// Whatever a client does to a path a rule matches (case, suffixes, trailing
        /// dots, `+` and `%2B`, encoded whitespace and the like, `;`, a query, `%2e`,
        /// accented and look-alike letters), it gets the requirement the path itself
        /// gets, or a refusal: never a looser rule's.
        #[test]
        fn spellings_never_fall_through_to_a_looser_rule(
            rules in proptest::collection::vec(rule_strategy(), 1..8),
            pick in proptest::prelude::any::<proptest::sample::Index>(),
            fill in proptest::collection::vec(0_u16..1000, 8),
            rest in 0_usize..3,
            method in proptest::prelude::any::<proptest::sample::Index>(),
            edits in proptest::collection::vec(edit_strategy(), 1..5),
        ) {
            let (p, kept) = random_policy(&rules);
            let rule = pick.get(&kept);
            let listed: Vec<&str> = METHODS[rule.0].split(',').filter(|m| *m != "*").collect();
            let method = if listed.is_empty() {
                *method.get(&["GET", "POST", "DELETE"])
            } else {
                *method.get(&listed)
            };
            let segments = concrete_path(rule, &fill, rest);
            let canonical_path = format!("/{}", segments.join("/"));
            let want = p.route(method, &canonical_path).unwrap().map(|r| &r.requirement);
            let spelling = spell(segments, &edits);
            match p.route(method, &spelling) {
                Err(RequestError::Path(_)) => {}
                Err(RequestError::Method) => proptest::prop_assert!(false, "method {method}"),
                Ok(got) => proptest::prop_assert_eq!(
                    got.map(|r| &r.requirement),
                    want,
                    "{} {} routes unlike {}",
                    method,
                    spelling,
                    canonical_path
                ),
            }
        }
    }

    /// Literals of generated policies; parameter values are digits, never one of these.
    /// `mil` has the letters whose skeleton stands for other ASCII too (`l`, `rn`).
    const WORDS: [&str; 4] = ["a", "bb", "ccc", "mil"];
    const METHODS: [&str; 4] = ["*", "GET", "POST", "GET,POST"];
    const REQUIREMENTS: [&str; 4] = ["r:a", "r:b", "authenticated", "scope email"];

    /// A generated rule: METHODS index, segments (`Some(word)` or `None` for `{p}`/`*`),
    /// a trailing `**`, REQUIREMENTS index.
    type GenRule = (usize, Vec<Option<usize>>, bool, usize);

    fn rule_strategy() -> impl proptest::strategy::Strategy<Value = GenRule> {
        use proptest::prelude::*;
        let segment = prop_oneof![3 => (0..WORDS.len()).prop_map(Some), 2 => Just(None)];
        (
            0..METHODS.len(),
            proptest::collection::vec(segment, 0..4),
            any::<bool>(),
            0..REQUIREMENTS.len(),
        )
    }

    /// The policy of the generated rules that parse together (duplicates are dropped),
    /// and those rules; never empty.
    fn random_policy(rules: &[GenRule]) -> (RoutePolicy, Vec<GenRule>) {
        let mut text = String::new();
        let mut kept = Vec::new();
        for (n, rule) in rules.iter().enumerate() {
            let (methods, segments, rest, requirement) = rule;
            let mut path: String = segments
                .iter()
                .enumerate()
                .map(|(i, s)| match s {
                    Some(word) => format!("/{}", WORDS[*word]),
                    None if (n + i) % 2 == 0 => format!("/{{p{i}}}"),
                    None => "/*".to_owned(),
                })
                .collect();
            if *rest {
                path.push_str("/**");
            } else if path.is_empty() {
                path.push('/');
            }
            let line = format!(
                "{} {path} {}\n",
                METHODS[*methods], REQUIREMENTS[*requirement]
            );
            if RoutePolicy::parse(&format!("{text}{line}"), &catalog()).is_ok() {
                text.push_str(&line);
                kept.push(rule.clone());
            }
        }
        (policy(&text), kept)
    }

    /// Segments of a path `rule` matches: its words, digits for `{p}` and `*`, and
    /// `rest` digit segments for `**`.
    fn concrete_path(rule: &GenRule, fill: &[u16], rest: usize) -> Vec<String> {
        let (_, segments, has_rest, _) = rule;
        let mut fill = fill.iter().cycle();
        let mut digits = || fill.next().map_or_else(|| "0".to_owned(), u16::to_string);
        let mut path: Vec<String> = segments
            .iter()
            .map(|s| s.map_or_else(&mut digits, |word| WORDS[word].to_owned()))
            .collect();
        if *has_rest {
            path.extend((0..rest).map(|_| digits()));
        }
        path
    }

    /// An edit of a path: kind, segment, variant.
    type Edit = (u8, proptest::sample::Index, proptest::sample::Index);

    fn edit_strategy() -> impl proptest::strategy::Strategy<Value = Edit> {
        use proptest::prelude::*;
        (
            0_u8..9,
            any::<proptest::sample::Index>(),
            any::<proptest::sample::Index>(),
        )
    }

    /// Another spelling of the path made of `segments`, as a client might send it.
    fn spell(mut segments: Vec<String>, edits: &[Edit]) -> String {
        const SUFFIXES: [&str; 6] = [".json", ".", "..", ".x.y", ".JSON", "%2ejson"];
        const AROUND: [(&str, &str); 11] = [
            ("", "."),
            ("", ".."),
            ("+", ""),
            ("", "+"),
            ("+", "+"),
            ("", ".+"),
            ("", "+."),
            ("++", "..."),
            ("%2B", ""),
            ("", "%2b"),
            ("+%2b", ".%2B."),
        ];
        const ENCODED: [&str; 19] = [
            "%20",
            "%09",
            "%0d%0a",
            "%c2%a0",
            "%e3%80%80",
            "%e2%80%a8",
            "%e2%80%8b",
            "%e2%80%8d",
            "%e2%80%ae",
            "%ef%bb%bf",
            "%c2%ad",
            "%ef%b8%8f",
            "%ef%bd%84",
            "%ef%ac%81",
            "%c4%b1",
            "%e2%80%83",
            "%e2%88%95",
            "%c2%a5",
            "%dc%81",
        ];
        const DOTS: [&str; 4] = ["%2e", "%2e%2e", "%2E", ".%2e"];
        let mut tail = String::new();
        for (kind, at, variant) in edits {
            let last = segments.len().saturating_sub(1);
            let i = if segments.is_empty() {
                None
            } else {
                Some(at.index(segments.len()))
            };
            match (kind, i) {
                (0, Some(i)) => {
                    // Random ASCII case changes.
                    let flips = variant.index(1 << 16);
                    segments[i] = segments[i]
                        .chars()
                        .enumerate()
                        .map(|(n, c)| {
                            if (flips >> (n % 16)) & 1 == 1 {
                                c.to_ascii_uppercase()
                            } else {
                                c
                            }
                        })
                        .collect();
                }
                (1, _) => tail = format!("/{tail}"),
                (2, Some(_)) => segments[last].push_str(variant.get::<&str>(&SUFFIXES)),
                (3, Some(i)) => {
                    let (before, after) = variant.get(&AROUND);
                    segments[i] = format!("{before}{}{after}", segments[i]);
                }
                (4, Some(i)) => segments[i].push_str(variant.get::<&str>(&ENCODED)),
                (5, Some(i)) => segments[i].push_str(";x=1"),
                (6, _) => tail.push_str("?q=1.json"),
                (7, Some(i)) => segments.insert(i, (*variant.get(&DOTS)).to_owned()),
                (8, Some(i)) => {
                    // One letter (not a hex digit of an escape) by an encoded accented or
                    // look-alike variant.
                    let mut escape = 0;
                    let letters: Vec<(usize, [&str; 2])> = segments[i]
                        .char_indices()
                        .filter_map(|(at, c)| {
                            if c == '%' {
                                escape = 2;
                            } else if escape > 0 {
                                escape -= 1;
                            } else {
                                return LOOK_ALIKES
                                    .iter()
                                    .find(|(l, _)| *l == c)
                                    .map(|&(_, v)| (at, v));
                            }
                            None
                        })
                        .collect();
                    if !letters.is_empty() {
                        let pick = variant.index(letters.len() * 2);
                        let (at, variants) = letters[pick / 2];
                        segments[i].replace_range(at..at + 1, variants[pick % 2]);
                    }
                }
                _ => {}
            }
        }
        // A trailing `/` is only ignored before the query.
        let (slash, query) = match tail.split_once('?') {
            Some((slash, query)) => (slash.to_owned(), format!("?{query}")),
            None => (tail, String::new()),
        };
        let slash = if slash.is_empty() { "" } else { "/" };
        format!("/{}{slash}{query}", segments.join("/"))
    }
}
