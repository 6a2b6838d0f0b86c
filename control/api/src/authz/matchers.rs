//! Value matchers of AuthorizationPolicy fields, compiled once per config:
//! Istio's string forms (exact, `prefix*`, `*suffix`, `*` presence), hosts
//! (the same, case-insensitive), path templates (`{*}`, `{**}`), and the
//! trust-domain alias expansion of principals.
//!
//! istio.io, Authorization Policy, `Rule`: "Any string field in the rule
//! supports Exact, Prefix, Suffix and Presence match: Exact match: "abc" will
//! match on value "abc". Prefix match: "abc*" will match on value "abc" and
//! "abcd". Suffix match: "*abc" will match on value "abc" and "xabc".
//! Presence match: "*" will match when value is not empty."
//! Istio's generator differs for header matchers: `request.headers[...]`,
//! `hosts` and `methods` turn `"*"` into Envoy's `present_match`
//! (matcher/header.go), which a present header with an empty value
//! satisfies (`StrPattern::matches_header`); the other string fields get
//! the regex `.+` (matcher/string.go), so a non-empty value.
//! A `*` anywhere else is refused at compile time rather than matched
//! literally, so a typo never silently narrows a DENY policy. Namespaces
//! and service accounts are Istio regexes over the whole SPIFFE ID instead
//! (`IdentityGlob`, `ServiceAccountPattern`).

/// A compiled string value: exact, prefix, suffix or presence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum StrPattern {
    Exact(Box<[u8]>),
    Prefix(Box<[u8]>),
    Suffix(Box<[u8]>),
    Presence,
}

impl StrPattern {
    /// Parses Istio's string form. `ignore_case` lower-cases the pattern
    /// (matching then lower-cases nothing: see `matches_ignore_case`).
    pub(crate) fn parse(value: &str, ignore_case: bool) -> Result<Self, String> {
        if value.is_empty() {
            return Err("empty value".into());
        }
        let value = if ignore_case {
            value.to_ascii_lowercase()
        } else {
            value.to_owned()
        };
        let stars = value.matches('*').count();
        let pattern = if value == "*" {
            StrPattern::Presence
        } else if stars == 1 && value.starts_with('*') {
            StrPattern::Suffix(value.as_bytes()[1..].into())
        } else if stars == 1 && value.ends_with('*') {
            StrPattern::Prefix(value.as_bytes()[..value.len() - 1].into())
        } else if stars == 0 {
            StrPattern::Exact(value.as_bytes().into())
        } else {
            return Err(format!(
                "{value:?}: '*' is supported only alone, as the first or as the last character"
            ));
        };
        Ok(pattern)
    }

    /// The value of an exact pattern.
    pub(crate) fn exact(&self) -> Option<&[u8]> {
        match self {
            StrPattern::Exact(e) => Some(e),
            _ => None,
        }
    }

    pub(crate) fn matches(&self, v: &[u8]) -> bool {
        match self {
            StrPattern::Exact(e) => bytes_eq(v, e),
            StrPattern::Prefix(p) => v.len() >= p.len() && bytes_eq(&v[..p.len()], p),
            StrPattern::Suffix(s) => v.len() >= s.len() && bytes_eq(&v[v.len() - s.len()..], s),
            StrPattern::Presence => !v.is_empty(),
        }
    }

    /// A header matcher as Istio generates it (`matcher.HeaderMatcher`):
    /// `"*"` is `present_match`, true for any value of a present header,
    /// an empty one included; the other forms as `matches`.
    pub(crate) fn matches_header(&self, v: &[u8]) -> bool {
        matches!(self, StrPattern::Presence) || self.matches(v)
    }

    /// `matches_header`, case-insensitive (`matcher.HostMatcher`).
    pub(crate) fn matches_header_ignore_case(&self, v: &[u8]) -> bool {
        matches!(self, StrPattern::Presence) || self.matches_ignore_case(v)
    }

    /// Case-insensitive match; the pattern was parsed with `ignore_case`.
    pub(crate) fn matches_ignore_case(&self, v: &[u8]) -> bool {
        match self {
            StrPattern::Exact(e) => v.eq_ignore_ascii_case(e),
            StrPattern::Prefix(p) => v.len() >= p.len() && v[..p.len()].eq_ignore_ascii_case(p),
            StrPattern::Suffix(s) => {
                v.len() >= s.len() && v[v.len() - s.len()..].eq_ignore_ascii_case(s)
            }
            StrPattern::Presence => !v.is_empty(),
        }
    }
}

/// A `paths`/`notPaths` value: a string pattern or a path template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum PathPattern {
    Str(StrPattern),
    Template(Vec<TemplatePiece>),
}

/// A piece of a path template: literal text (with its slashes), `{*}` or
/// `{**}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TemplatePiece {
    Literal(Box<str>),
    /// `{*}`: one path segment, at least one character, no `/`.
    One,
    /// `{**}`: zero or more characters including `/`; the last operator.
    Many,
}

impl PathPattern {
    /// Istio path templates (Envoy's `uri_template` matcher): "`{*}`: matches
    /// a single path component, up to the next path separator: /", "`{**}`:
    /// matches zero or more path segments. If present, must be the last
    /// operator." An operator must fill its whole segment; the other
    /// segments are literals of RFC 3986 pchars (Istio's validation).
    pub(crate) fn parse(value: &str) -> Result<Self, String> {
        if !value.contains('{') && !value.contains('}') {
            return StrPattern::parse(value, false).map(PathPattern::Str);
        }
        if !value.starts_with('/') {
            // Istio's validation trims the slashes and lets `{**}/x` pass;
            // Envoy refuses the `uri_template` it becomes (`**/x`:
            // `parseURLPatternSyntax` wants `^/[[:graph:]]*$`).
            return Err(format!(
                "path template {value:?} must start with '/' (Envoy refuses a path template \
                 that does not, so Istio's sidecar would reject its whole config)"
            ));
        }
        if value.contains("//") {
            // Istio's validation trims the leading and trailing slashes
            // before looking at the segments, so `/a/{*}//` passes it; Envoy
            // refuses the `uri_template` (`validateNoDoublePathSeparator`:
            // "Double slashes (/) detected in uri_template, this is not
            // allowed.").
            return Err(format!(
                "path template {value:?} has an empty segment ('//'); Envoy refuses a path \
                 template with double slashes, so Istio's sidecar would reject its whole config"
            ));
        }
        let mut pieces = Vec::new();
        let mut literal = String::new();
        let mut seen_many = false;
        for (i, segment) in value.split('/').enumerate() {
            if i > 0 {
                literal.push('/');
            }
            match segment {
                "{*}" | "{**}" => {
                    if seen_many {
                        return Err(format!(
                            "path template {value:?}: '{{**}}' must be the last operator"
                        ));
                    }
                    if !literal.is_empty() {
                        pieces.push(TemplatePiece::Literal(std::mem::take(&mut literal).into()));
                    }
                    if segment == "{**}" {
                        seen_many = true;
                        pieces.push(TemplatePiece::Many);
                    } else {
                        pieces.push(TemplatePiece::One);
                    }
                }
                s if s.contains(['{', '}', '*']) => {
                    return Err(format!(
                        "path template {value:?}: segment {s:?} mixes an operator with other \
                         characters; only whole segments '{{*}}' and '{{**}}' are supported"
                    ));
                }
                s => literal.push_str(s),
            }
        }
        if !literal.is_empty() {
            pieces.push(TemplatePiece::Literal(literal.into()));
        }
        // Istio's `CheckValidPathTemplate`: between the trimmed leading and
        // trailing slashes, every other segment must be a "valid string
        // literal" (RFC 3986 pchars without `*`), so not empty either.
        if let Some(bad) = value.trim_matches('/').split('/').find(|s| {
            !matches!(*s, "{*}" | "{**}") && (s.is_empty() || !s.bytes().all(is_template_char))
        }) {
            return Err(format!(
                "path template {value:?}: segment {bad:?} is not a valid literal \
                 (non-empty, letters, digits and -._~%!$&'()+,;:@= only)"
            ));
        }
        Ok(PathPattern::Template(pieces))
    }

    pub(crate) fn matches(&self, path: &str) -> bool {
        match self {
            PathPattern::Str(p) => p.matches(path.as_bytes()),
            PathPattern::Template(pieces) => template_matches(pieces, path.as_bytes()),
        }
    }
}

/// Characters Envoy's template operators match: RFC 3986 pchar without `/`.
fn is_template_char(b: u8) -> bool {
    b.is_ascii_alphanumeric()
        || matches!(
            b,
            b'-' | b'.'
                | b'_'
                | b'~'
                | b'%'
                | b'!'
                | b'$'
                | b'&'
                | b'\''
                | b'('
                | b')'
                | b'+'
                | b','
                | b';'
                | b':'
                | b'@'
                | b'='
        )
}

fn template_matches(pieces: &[TemplatePiece], path: &[u8]) -> bool {
    let mut rest = path;
    for (i, piece) in pieces.iter().enumerate() {
        match piece {
            TemplatePiece::Literal(l) => {
                let l = l.as_bytes();
                if rest.len() < l.len() || !bytes_eq(&rest[..l.len()], l) {
                    return false;
                }
                rest = &rest[l.len()..];
            }
            TemplatePiece::One => {
                // The next piece, if any, is a literal starting with '/', so
                // the longest run is the only candidate.
                let n = rest.iter().take_while(|&&b| is_template_char(b)).count();
                if n == 0 {
                    return false;
                }
                rest = &rest[n..];
            }
            TemplatePiece::Many => {
                // Only a literal (without operators) can follow.
                let suffix: &[u8] = match pieces.get(i + 1) {
                    Some(TemplatePiece::Literal(l)) => l.as_bytes(),
                    _ => b"",
                };
                if rest.len() < suffix.len() || !rest.ends_with(suffix) {
                    return false;
                }
                let middle = &rest[..rest.len() - suffix.len()];
                return middle.iter().all(|&b| b == b'/' || is_template_char(b));
            }
        }
    }
    rest.is_empty()
}

/// Characters with a meaning in RE2 other than `*`. Istio pastes
/// `namespaces` and `serviceAccounts` values into a regex unescaped
/// (`srcNamespaceGenerator`, `serviceAccountRegex`), so `a.b` there also
/// matches `axb`; Kubernetes names never hold these, and a value that does
/// is refused rather than matched differently from Istio.
const REGEX_META: &[char] = &[
    '\\', '.', '+', '?', '(', ')', '|', '[', ']', '{', '}', '^', '$',
];

/// One step of an `IdentityGlob`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum GlobToken {
    Byte(u8),
    /// Regex `.`: one character but a newline. Always followed by `AnyRun`
    /// here, so one byte or one UTF-8 character makes no difference.
    AnyByte,
    /// Regex `.*`: any run of characters without a newline.
    AnyRun,
}

/// A pattern matched against the whole SPIFFE ID (`spiffe://...`), with
/// literals and the regex operators `.*` and `.+` only: what Istio's
/// principal regexes for `namespaces` and `serviceAccounts` use. Envoy
/// matches those regexes against the whole URI SAN; matching the same
/// language as a glob needs no regex engine and no allocation per request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct IdentityGlob {
    tokens: Box<[GlobToken]>,
}

impl IdentityGlob {
    fn build(parts: &[GlobPart<'_>]) -> Self {
        let mut tokens = Vec::new();
        for part in parts {
            match part {
                GlobPart::Literal(text) => tokens.extend(text.bytes().map(GlobToken::Byte)),
                GlobPart::Glob(text) => tokens.extend(text.bytes().map(|b| match b {
                    b'*' => GlobToken::AnyRun,
                    b => GlobToken::Byte(b),
                })),
                GlobPart::AnyRun => tokens.push(GlobToken::AnyRun),
                GlobPart::OneOrMore => tokens.extend([GlobToken::AnyByte, GlobToken::AnyRun]),
            }
        }
        IdentityGlob {
            tokens: tokens.into(),
        }
    }

    /// A `namespaces`/`notNamespaces` value or a `source.namespace`
    /// condition value. Istio's `srcNamespaceGenerator` replaces every `*`
    /// with `.*` and matches the regex `.*/ns/<value>/.*`, so `bar` matches
    /// any ID with a `/ns/bar/` in it (`spiffe://td/cluster/c1/ns/bar/sa/x`,
    /// `spiffe://td/ns/bar/sa/x/extra`), and a `*` anywhere in the value
    /// matches any run of characters, slashes included.
    pub(crate) fn namespace(value: &str) -> Result<Self, String> {
        if value.is_empty() {
            return Err("empty value".into());
        }
        refuse_regex_meta(value)?;
        Ok(Self::build(&[
            GlobPart::AnyRun,
            GlobPart::Literal("/ns/"),
            GlobPart::Glob(value),
            GlobPart::Literal("/"),
            GlobPart::AnyRun,
        ]))
    }

    pub(crate) fn matches(&self, identity: &[u8]) -> bool {
        glob_matches(&self.tokens, identity)
    }
}

/// A `serviceAccounts`/`notServiceAccounts` value or a
/// `source.serviceAccount` condition value, `<namespace>/<name>`. Istio's
/// `serviceAccountRegex` is `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?`: any
/// trust domain and segments before `/ns/`, any segments between the
/// namespace and `sa/`, and any after the service account. Its four
/// alternatives are each a glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ServiceAccountPattern {
    alternatives: [IdentityGlob; 4],
}

impl ServiceAccountPattern {
    pub(crate) fn new(namespace: &str, service_account: &str) -> Result<Self, String> {
        refuse_regex_meta(namespace)?;
        refuse_regex_meta(service_account)?;
        let with = |between: &[GlobPart<'_>], after: &[GlobPart<'_>]| {
            let mut parts = vec![
                GlobPart::Literal("spiffe://"),
                GlobPart::OneOrMore,
                GlobPart::Literal("/ns/"),
                GlobPart::Literal(namespace),
                GlobPart::Literal("/"),
            ];
            parts.extend_from_slice(between);
            parts.extend([GlobPart::Literal("sa/"), GlobPart::Literal(service_account)]);
            parts.extend_from_slice(after);
            IdentityGlob::build(&parts)
        };
        let segments_between = [GlobPart::OneOrMore, GlobPart::Literal("/")];
        let segments_after = [GlobPart::Literal("/"), GlobPart::OneOrMore];
        Ok(ServiceAccountPattern {
            alternatives: [
                with(&[], &[]),
                with(&segments_between, &[]),
                with(&[], &segments_after),
                with(&segments_between, &segments_after),
            ],
        })
    }

    pub(crate) fn matches(&self, identity: &[u8]) -> bool {
        self.alternatives.iter().any(|g| g.matches(identity))
    }
}

#[derive(Debug, Clone, Copy)]
enum GlobPart<'a> {
    /// Matched as written.
    Literal(&'a str),
    /// Matched as written except `*`, which is `.*`.
    Glob(&'a str),
    /// `.*`
    AnyRun,
    /// `.+`
    OneOrMore,
}

fn refuse_regex_meta(value: &str) -> Result<(), String> {
    match value.chars().find(|c| REGEX_META.contains(c)) {
        Some(c) => Err(format!(
            "{value:?}: {c:?} is refused: Istio pastes this value into a regex unescaped, \
             where it is an operator; Kubernetes names never contain it"
        )),
        None => Ok(()),
    }
}

/// Whole-text glob match: `AnyRun` matches any run of bytes, `AnyByte` one
/// byte, neither a newline (RE2's `.`). Backtracks to the last `AnyRun`
/// only, which is exact for globs: an earlier run could only take what
/// the last one gives up.
fn glob_matches(pattern: &[GlobToken], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    // The pattern index after the last `AnyRun` seen and the text index it
    // was last resumed at.
    let mut resume: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(GlobToken::AnyRun) => {
                resume = Some((p + 1, t));
                p += 1;
            }
            Some(GlobToken::AnyByte) if text[t] != b'\n' => {
                p += 1;
                t += 1;
            }
            Some(GlobToken::Byte(b)) if *b == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match resume {
                // No run may take a newline, so none can give way past it.
                Some((_, run_start)) if text[run_start] == b'\n' => return false,
                Some((after_run, run_start)) => {
                    p = after_run;
                    t = run_start + 1;
                    resume = Some((after_run, run_start + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&tok| tok == GlobToken::AnyRun)
}

/// The trust domain of the mesh and its aliases, for principal expansion.
pub(crate) struct TrustDomains<'a> {
    pub(crate) all: Vec<&'a str>,
}

/// Istio treats `cluster.local` in a policy as "the local trust domain".
const CLUSTER_LOCAL: &str = "cluster.local";

impl<'a> TrustDomains<'a> {
    pub(crate) fn new(trust_domain: &'a str, aliases: &'a [String]) -> Self {
        let mut all = vec![trust_domain];
        for a in aliases {
            if !all.contains(&a.as_str()) {
                all.push(a);
            }
        }
        TrustDomains { all }
    }

    /// Expands a principal written as `<td>/ns/<ns>/sa/<sa>` to one variant per
    /// trust domain and alias when `<td>` is one of them (or `cluster.local`),
    /// as Istio's trust-domain bundle does ("Only generate configuration if
    /// the extracted trust domain from the policy is part of the trust domain
    /// list, or if the extracted/existing trust domain is "cluster.local"").
    /// A trust domain written `*<suffix>` stands for those ending with the
    /// suffix: it is kept as written for them and replaced by each of the
    /// others ("If the trust domain has a prefix * ... keep the principal
    /// as-is for the matched trust domain. For others, replace the trust
    /// domain", `replaceTrustDomains`). A trust domain of `*` and principals
    /// of another shape are kept as written.
    pub(crate) fn expand(&self, principal: &str) -> Vec<String> {
        let parts: Vec<&str> = principal.split('/').collect();
        if parts.len() != 5 || parts[0] == "*" {
            return vec![principal.to_owned()];
        }
        let td = parts[0];
        let suffix = td.strip_prefix('*');
        let enforced = match suffix {
            Some(suffix) => self.all.iter().any(|t| t.ends_with(suffix)),
            None => self.all.contains(&td) || td == CLUSTER_LOCAL,
        };
        if !enforced {
            return vec![principal.to_owned()];
        }
        let rest = &principal[td.len()..];
        let mut out: Vec<String> = Vec::with_capacity(self.all.len());
        for t in &self.all {
            let variant = match suffix {
                Some(suffix) if t.ends_with(suffix) => principal.to_owned(),
                _ => format!("{t}{rest}"),
            };
            if !out.contains(&variant) {
                out.push(variant);
            }
        }
        out
    }
}

/// Byte equality without a `memcmp` call for the short values policies
/// hold (methods, namespaces, path prefixes); long values use `memcmp`.
#[inline]
fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    if a.len() > 32 {
        return a == b;
    }
    a.iter().zip(b).all(|(x, y)| x == y)
}

/// FNV-1a, 64 bits: a cheap fingerprint for quick rejection; equal inputs
/// always have equal fingerprints, so a mismatch proves inequality.
pub(crate) fn fingerprint(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::{IdentityGlob, ServiceAccountPattern};
    use std::sync::LazyLock;

    use proptest::prelude::*;
    use regex::Regex;

    /// What Istio's `srcNamespaceGenerator` emits, anchored as Envoy's
    /// `safe_regex` matches (the whole string).
    fn istio_namespace_regex(value: &str) -> Regex {
        let v = value.replace('*', ".*");
        Regex::new(&format!("^(?:.*/ns/{v}/.*)$")).unwrap()
    }

    /// What Istio's `serviceAccountRegex` emits, anchored likewise.
    fn istio_service_account_regex(ns: &str, sa: &str) -> Regex {
        Regex::new(&format!("^(?:spiffe://.+/ns/{ns}/(.+/|)sa/{sa}(/.+)?)$")).unwrap()
    }

    const NAMESPACES: &[&str] = &["bar", "ba*", "*ar", "*", "b*r", "**", "ns", "sa", "*/sa"];
    const SERVICE_ACCOUNTS: &[(&str, &str)] = &[
        ("bar", "client"),
        ("ns", "sa"),
        ("bar", "sa"),
        ("sa", "bar"),
    ];

    #[test]
    fn namespaces_match_anywhere_in_the_id() {
        let bar = IdentityGlob::namespace("bar").unwrap();
        for id in [
            "spiffe://cluster.local/ns/bar/sa/client",
            "spiffe://remote.example/ns/bar/sa/client/extra",
            "spiffe://remote.example/cluster/c1/ns/bar/sa/client",
            "spiffe://td/ns/bar/",
            // The trust domain `ns`: Istio's `.*/ns/` sees the `//` too.
            "spiffe://ns/bar/sa/x",
        ] {
            assert!(bar.matches(id.as_bytes()), "{id}");
        }
        for id in [
            "spiffe://td/ns/bar",
            "spiffe://td/ns/barn/sa/x",
            "spiffe://td/ns/foo/sa/bar",
            "spiffe://td/NS/bar/sa/x",
        ] {
            assert!(!bar.matches(id.as_bytes()), "{id}");
        }
        // A `*` spans slashes, as `.*` does.
        let glob = IdentityGlob::namespace("b*r").unwrap();
        assert!(glob.matches(b"spiffe://td/ns/b/x/r/sa/y"));
        assert!(
            IdentityGlob::namespace("*")
                .unwrap()
                .matches(b"spiffe://td/ns//")
        );
    }

    #[test]
    fn service_accounts_match_istios_regex_shapes() {
        let sa = ServiceAccountPattern::new("bar", "client").unwrap();
        for id in [
            "spiffe://cluster.local/ns/bar/sa/client",
            "spiffe://remote.example/ns/bar/sa/client/extra",
            "spiffe://remote.example/cluster/c1/ns/bar/sa/client",
            "spiffe://td/ns/bar/x/y/sa/client/z",
        ] {
            assert!(sa.matches(id.as_bytes()), "{id}");
        }
        for id in [
            "spiffe://td/ns/bar/sa/clientx",
            "spiffe://td/ns/bar/sa/client/",
            "spiffe://td/ns/barx/sa/client",
            "spiffe:///ns/bar/sa/client",
            "td/ns/bar/sa/client",
            "spiffe://td/ns/bar//sa/client",
        ] {
            assert!(!sa.matches(id.as_bytes()), "{id}");
        }
    }

    #[test]
    fn regex_operators_are_refused() {
        for v in [
            "a.b", "a+", "(a)", "a|b", "a?", "^a", "a$", "a[b]", "a{2}", "a\\d",
        ] {
            assert!(IdentityGlob::namespace(v).is_err(), "{v}");
            assert!(ServiceAccountPattern::new(v, "x").is_err(), "{v}");
            assert!(ServiceAccountPattern::new("x", v).is_err(), "{v}");
        }
        assert!(IdentityGlob::namespace("").is_err());
    }

    static NAMESPACE_PAIRS: LazyLock<Vec<(&str, IdentityGlob, Regex)>> = LazyLock::new(|| {
        NAMESPACES
            .iter()
            .map(|v| {
                (
                    *v,
                    IdentityGlob::namespace(v).unwrap(),
                    istio_namespace_regex(v),
                )
            })
            .collect()
    });

    static SERVICE_ACCOUNT_PAIRS: LazyLock<Vec<(String, ServiceAccountPattern, Regex)>> =
        LazyLock::new(|| {
            SERVICE_ACCOUNTS
                .iter()
                .map(|(ns, sa)| {
                    (
                        format!("{ns}/{sa}"),
                        ServiceAccountPattern::new(ns, sa).unwrap(),
                        istio_service_account_regex(ns, sa),
                    )
                })
                .collect()
        });

    fn identity() -> impl Strategy<Value = String> {
        let segment = prop::sample::select(vec![
            "ns", "sa", "bar", "ba", "ar", "client", "x", "", "b", "r", "a\nb",
        ]);
        (
            prop::sample::select(vec!["spiffe://", "spiffe:/", "", "x://"]),
            prop::collection::vec(segment, 0..8),
        )
            .prop_map(|(scheme, segments)| format!("{scheme}{}", segments.join("/")))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn namespace_glob_is_istios_regex(id in identity()) {
            for (v, glob, regex) in NAMESPACE_PAIRS.iter() {
                prop_assert_eq!(
                    glob.matches(id.as_bytes()),
                    regex.is_match(&id),
                    "namespace {:?} on {:?}", v, id
                );
            }
        }

        #[test]
        fn service_account_globs_are_istios_regex(id in identity()) {
            for (v, pattern, regex) in SERVICE_ACCOUNT_PAIRS.iter() {
                prop_assert_eq!(
                    pattern.matches(id.as_bytes()),
                    regex.is_match(&id),
                    "service account {} on {:?}", v, id
                );
            }
        }
    }
}
