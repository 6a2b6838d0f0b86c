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
//! A `*` anywhere else is refused at compile time rather than matched
//! literally, so a typo never silently narrows a DENY policy.

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
            return Err(format!("path template {value:?} must start with '/'"));
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
