//! SPIFFE IDs and trust domains, parsed and validated exactly per the SPIFFE-ID
//! standard (spiffe/spiffe `standards/SPIFFE-ID.md`), with the character sets of
//! the reference implementation (go-spiffe `v2/spiffeid`).
//!
//! Every rule has its own [`SpiffeIdError`] variant, so a rejection always names
//! the rule it broke.
use std::fmt;
use std::str::FromStr;

/// The only scheme a SPIFFE ID may use, with the authority separator.
const SCHEME_PREFIX: &str = "spiffe://";

/// "SPIFFE implementations MUST support SPIFFE URIs up to 2048 bytes in length and
/// SHOULD NOT generate URIs of length greater than 2048 bytes." (SPIFFE-ID 2.3)
pub const MAX_SPIFFE_ID_LEN: usize = 2048;

/// "a maximum length of a trust domain name is 255 bytes" (SPIFFE-ID 2.3).
pub const MAX_TRUST_DOMAIN_LEN: usize = 255;

/// Why a string is not a valid SPIFFE ID or trust domain. One variant per rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeIdError {
    #[error("SPIFFE ID cannot be empty")]
    Empty,
    #[error("SPIFFE ID is {len} bytes, longer than the maximum of {MAX_SPIFFE_ID_LEN}")]
    TooLong { len: usize },
    #[error("scheme is missing or invalid: a SPIFFE ID starts with \"spiffe://\"")]
    WrongScheme,
    /// A `?` in the path. go-spiffe rejects it as a path character, so the
    /// message carries that rule too; in the trust domain a `?` is a
    /// [`SpiffeIdError::TrustDomainChar`], as there.
    #[error(
        "path segment characters are limited to letters, numbers, dots, dashes, and underscores: a SPIFFE ID must not contain a query ('?')"
    )]
    HasQuery,
    /// A `#` in the path (in the trust domain: [`SpiffeIdError::TrustDomainChar`]).
    #[error(
        "path segment characters are limited to letters, numbers, dots, dashes, and underscores: a SPIFFE ID must not contain a fragment ('#')"
    )]
    HasFragment,
    /// A `%` in the path (in the trust domain: [`SpiffeIdError::TrustDomainChar`]).
    #[error(
        "path segment characters are limited to letters, numbers, dots, dashes, and underscores: a SPIFFE ID must not contain percent-encoding ('%')"
    )]
    PercentEncoded,
    /// An `@` in the trust domain. go-spiffe rejects it as a trust domain
    /// character, so the message carries that rule too.
    #[error(
        "trust domain must not carry user info ('@'): trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"
    )]
    HasUserInfo,
    /// A `:` in the trust domain (a port, or an empty one).
    #[error(
        "trust domain must not carry a port (':'): trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"
    )]
    HasPort,
    #[error("trust domain is missing")]
    MissingTrustDomain,
    #[error("trust domain is {len} bytes, longer than the maximum of {MAX_TRUST_DOMAIN_LEN}")]
    TrustDomainTooLong { len: usize },
    #[error(
        "trust domain character {ch:?} is not allowed: trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores"
    )]
    TrustDomainChar { ch: char },
    #[error("path cannot contain empty segments")]
    EmptySegment,
    #[error("path cannot contain dot segments ('.' or '..')")]
    DotSegment,
    #[error("path cannot have a trailing slash")]
    TrailingSlash,
    #[error(
        "path character {ch:?} is not allowed: path segment characters are limited to letters, numbers, dots, dashes, and underscores"
    )]
    PathChar { ch: char },
    #[error("path must have a leading slash")]
    NoLeadingSlash,
    /// No longer returned: [`TrustDomain::new`] takes the trust domain of an ID
    /// with a path, as go-spiffe does. Kept so matches on it still compile.
    #[error("a trust domain has no path")]
    TrustDomainHasPath,
}

// === impl TrustDomain ===

/// A validated trust domain name, e.g. `cluster.local`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TrustDomain(String);

impl TrustDomain {
    /// Parses a trust domain name. Also accepts a SPIFFE ID (`spiffe://name` or
    /// `spiffe://name/path`) and returns its trust domain, like go-spiffe's
    /// `TrustDomainFromString`.
    pub fn new(name: &str) -> Result<Self, SpiffeIdError> {
        // go-spiffe: input with something like a scheme separator (":/", not
        // "://", for better diagnostics on e.g. "spiffe:/td") is parsed as an ID,
        // path included.
        if name.contains(":/") {
            return Ok(SpiffeId::parse(name)?.trust_domain());
        }
        validate_trust_domain(name)?;
        Ok(Self(name.to_owned()))
    }

    /// The trust domain name, without scheme.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The SPIFFE ID of the trust domain itself, `spiffe://<name>` (used for CAs).
    pub fn id(&self) -> SpiffeId {
        SpiffeId {
            uri: format!("{SCHEME_PREFIX}{}", self.0),
            td_end: SCHEME_PREFIX.len() + self.0.len(),
        }
    }
}

impl fmt::Display for TrustDomain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for TrustDomain {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::new(s)
    }
}

// === impl SpiffeId ===

/// A validated SPIFFE ID, `spiffe://<trust-domain><path>`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpiffeId {
    uri: String,
    /// Byte offset where the trust domain ends and the path begins.
    td_end: usize,
}

impl SpiffeId {
    /// Parses and validates a SPIFFE ID.
    pub fn parse(s: &str) -> Result<Self, SpiffeIdError> {
        if s.is_empty() {
            return Err(SpiffeIdError::Empty);
        }
        if s.len() > MAX_SPIFFE_ID_LEN {
            return Err(SpiffeIdError::TooLong { len: s.len() });
        }
        // "Valid SPIFFE IDs MUST use the `spiffe` scheme" (SPIFFE-ID 2). Like
        // go-spiffe, the scheme must be spelled in lowercase.
        let rest = s
            .strip_prefix(SCHEME_PREFIX)
            .ok_or(SpiffeIdError::WrongScheme)?;
        // "... and MUST NOT include a query or fragment component" (SPIFFE-ID
        // 2), nor percent-encoding (2.1, 2.2). As go-spiffe, the ID is read left
        // to right: such a character is an error of the part it appears in
        // (trust domain or path segment), and the first broken rule is reported.
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => (rest, ""),
        };
        validate_trust_domain(authority)?;
        validate_path(path)?;
        Ok(Self {
            uri: s.to_owned(),
            td_end: SCHEME_PREFIX.len() + authority.len(),
        })
    }

    /// Builds `spiffe://<td>/ns/<namespace>/sa/<service-account>`.
    pub fn from_ns_sa(
        td: &TrustDomain,
        namespace: &str,
        service_account: &str,
    ) -> Result<Self, SpiffeIdError> {
        validate_path_segment(namespace)?;
        validate_path_segment(service_account)?;
        Self::parse(&format!(
            "{SCHEME_PREFIX}{td}/ns/{namespace}/sa/{service_account}"
        ))
    }

    /// Builds `spiffe://<td>/<seg1>/<seg2>...` from path segments, each checked
    /// by [`validate_path_segment`] (go-spiffe `FromSegments`): no segments
    /// give the trust domain ID, a segment holding `/` is an error.
    pub fn from_segments(td: &TrustDomain, segments: &[&str]) -> Result<Self, SpiffeIdError> {
        let mut uri = format!("{SCHEME_PREFIX}{td}");
        for seg in segments {
            validate_path_segment(seg)?;
            uri.push('/');
            uri.push_str(seg);
        }
        Self::parse(&uri)
    }

    /// Builds `spiffe://<td><path>`; `path` is empty or starts with `/`.
    pub fn from_parts(td: &TrustDomain, path: &str) -> Result<Self, SpiffeIdError> {
        validate_path(path)?;
        Self::parse(&format!("{SCHEME_PREFIX}{td}{path}"))
    }

    /// `(namespace, service_account)` when the path is exactly `/ns/<ns>/sa/<sa>`.
    pub fn ns_sa(&self) -> Option<(&str, &str)> {
        let mut segs = self.path().strip_prefix('/')?.split('/');
        match (
            segs.next(),
            segs.next(),
            segs.next(),
            segs.next(),
            segs.next(),
        ) {
            (Some("ns"), Some(ns), Some("sa"), Some(sa), None) => Some((ns, sa)),
            _ => None,
        }
    }

    /// True if this ID belongs to `td` (go-spiffe `MemberOf`).
    pub fn member_of(&self, td: &TrustDomain) -> bool {
        self.trust_domain_str() == td.as_str()
    }

    /// The trust domain of this ID.
    pub fn trust_domain(&self) -> TrustDomain {
        TrustDomain(self.trust_domain_str().to_owned())
    }

    /// The trust domain name as a borrowed string.
    pub fn trust_domain_str(&self) -> &str {
        &self.uri[SCHEME_PREFIX.len()..self.td_end]
    }

    /// The path, empty or starting with `/`.
    pub fn path(&self) -> &str {
        &self.uri[self.td_end..]
    }

    /// The whole ID as a URI string.
    pub fn as_str(&self) -> &str {
        &self.uri
    }
}

impl fmt::Display for SpiffeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.uri)
    }
}

impl FromStr for SpiffeId {
    type Err = SpiffeIdError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::parse(s)
    }
}

// === validation ===

fn validate_trust_domain(td: &str) -> Result<(), SpiffeIdError> {
    // "The `userinfo` and `port` parts of the authority component MUST NOT be set,
    // and the `:` delimiter MUST NOT be present." (SPIFFE-ID 2.1)
    if td.contains('@') {
        return Err(SpiffeIdError::HasUserInfo);
    }
    if td.contains(':') {
        return Err(SpiffeIdError::HasPort);
    }
    if td.is_empty() {
        return Err(SpiffeIdError::MissingTrustDomain);
    }
    if td.len() > MAX_TRUST_DOMAIN_LEN {
        return Err(SpiffeIdError::TrustDomainTooLong { len: td.len() });
    }
    if let Some(ch) = td.chars().find(|c| !is_trust_domain_char(*c)) {
        return Err(SpiffeIdError::TrustDomainChar { ch });
    }
    Ok(())
}

/// Checks a SPIFFE ID path: empty, or `/`-separated segments each valid for
/// [`validate_path_segment`], with no trailing slash (SPIFFE-ID 2.2; go-spiffe
/// `ValidatePath`).
pub fn validate_path(path: &str) -> Result<(), SpiffeIdError> {
    if path.is_empty() {
        return Ok(());
    }
    let body = path
        .strip_prefix('/')
        .ok_or(SpiffeIdError::NoLeadingSlash)?;
    let segments: Vec<&str> = body.split('/').collect();
    let last = segments.len() - 1;
    for (i, seg) in segments.iter().enumerate() {
        if seg.is_empty() && i == last {
            return Err(SpiffeIdError::TrailingSlash);
        }
        validate_path_segment(seg)?;
    }
    Ok(())
}

/// Checks one path segment: not empty, not `.` or `..`, only letters, digits,
/// `.`, `-` and `_` (SPIFFE-ID 2.2; go-spiffe `ValidatePathSegment`).
pub fn validate_path_segment(seg: &str) -> Result<(), SpiffeIdError> {
    match seg {
        "" => return Err(SpiffeIdError::EmptySegment),
        "." | ".." => return Err(SpiffeIdError::DotSegment),
        _ => {}
    }
    match seg.chars().find(|c| !is_path_char(*c)) {
        None => Ok(()),
        Some('?') => Err(SpiffeIdError::HasQuery),
        Some('#') => Err(SpiffeIdError::HasFragment),
        Some('%') => Err(SpiffeIdError::PercentEncoded),
        Some(ch) => Err(SpiffeIdError::PathChar { ch }),
    }
}

fn is_trust_domain_char(c: char) -> bool {
    matches!(c, 'a'..='z' | '0'..='9' | '.' | '-' | '_')
}

fn is_path_char(c: char) -> bool {
    matches!(c, 'a'..='z' | 'A'..='Z' | '0'..='9' | '.' | '-' | '_')
}
