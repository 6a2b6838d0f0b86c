//! HTTP path normalization before authorization: Istio's modes `NONE`,
//! `BASE`, `MERGE_SLASHES` and `DECODE_AND_MERGE_SLASHES`, as Envoy applies
//! them (istio.io "Security best practices", path normalization section).
//!
//! Order of the steps, as in Envoy's `maybeNormalizePath`:
//! 1. (`DECODE_AND_MERGE_SLASHES` only) `%2F`/`%2f` become `/`, `%5C`/`%5c`
//!    become `\`;
//! 2. (`BASE` and stricter) RFC 3986 normalization: percent-encoded
//!    unreserved characters are decoded once (no double decoding), other
//!    percent-encodings are kept as sent (hex case included, as Envoy's
//!    canonicalizer does), `\` becomes `/`, and dot segments are removed
//!    (RFC 3986 section 5.2.4);
//! 3. (`MERGE_SLASHES` and stricter) runs of `/` are merged.
//!
//! The query is never part of the matched path but is kept, unchanged, so the
//! forwarded request carries it. Case is preserved (`/Admin` is not
//! `/admin`, as in Istio). Paths that cannot be normalized safely are refused
//! in every mode (the proxy answers 400): not origin-form, raw control or
//! non-ASCII bytes, a fragment, invalid percent-encoding, or `%00`. Other
//! encoded control characters (`%01`, `%0d`, `%7f`) are matched and forwarded
//! as sent, still encoded, as Envoy does.
use std::borrow::Cow;
use std::fmt;

use thiserror::Error;

use crate::config::PathNormalization;

/// A request path after normalization, with its (raw) query kept aside.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct NormalizedPath {
    path: String,
    query: Option<String>,
}

impl NormalizedPath {
    /// The normalized path without the query: what policies match against.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The raw query (without the leading `?`), if the request had one.
    pub fn query(&self) -> Option<&str> {
        self.query.as_deref()
    }

    /// The normalized path followed by `?query`: what the proxy forwards.
    pub fn path_and_query(&self) -> String {
        match &self.query {
            Some(q) => format!("{}?{}", self.path, q),
            None => self.path.clone(),
        }
    }
}

impl fmt::Display for NormalizedPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.path)?;
        if let Some(q) = &self.query {
            write!(f, "?{q}")?;
        }
        Ok(())
    }
}

/// Why a request path was refused (the proxy answers 400).
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum PathError {
    #[error("empty request path")]
    Empty,
    #[error("request target is not in origin-form (must start with '/'): {0:?}")]
    NotOriginForm(String),
    #[error("forbidden byte 0x{byte:02x} at offset {offset} of the request target")]
    ForbiddenByte { offset: usize, byte: u8 },
    #[error("invalid percent-encoding at offset {offset} of the request path")]
    InvalidPercentEncoding { offset: usize },
    #[error("percent-encoded NUL (%00) at offset {offset} of the request path")]
    EncodedNul { offset: usize },
}

/// Normalizes an origin-form request target (`/path?query`) with `mode`.
pub fn normalize_path(
    raw_path_and_query: &str,
    mode: PathNormalization,
) -> Result<NormalizedPath, PathError> {
    let query = raw_path_and_query
        .split_once('?')
        .map(|(_, q)| q.to_owned());
    Ok(NormalizedPath {
        path: normalized_path(raw_path_and_query, mode)?.into_owned(),
        query,
    })
}

/// The normalized path (without the query) of an origin-form request
/// target, as [`normalize_path`] gives it, borrowed from the target when
/// normalization changes nothing (the common case, and no allocation).
pub fn normalized_path(
    raw_path_and_query: &str,
    mode: PathNormalization,
) -> Result<Cow<'_, str>, PathError> {
    if raw_path_and_query.is_empty() {
        return Err(PathError::Empty);
    }
    if !raw_path_and_query.starts_with('/') {
        let shown: String = raw_path_and_query.chars().take(64).collect();
        return Err(PathError::NotOriginForm(shown));
    }
    let (raw_path, query) = match raw_path_and_query.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (raw_path_and_query, None),
    };
    validate_bytes(raw_path, 0)?;
    if let Some(q) = query {
        validate_bytes(q, raw_path.len() + 1)?;
    }
    validate_percent_encoding(raw_path)?;
    if mode == PathNormalization::None || is_already_normal(raw_path) {
        return Ok(Cow::Borrowed(raw_path));
    }
    Ok(Cow::Owned(normalize_in_mode(raw_path, mode)))
}

/// The steps of `mode` applied to a validated path.
fn normalize_in_mode(raw_path: &str, mode: PathNormalization) -> String {
    match mode {
        PathNormalization::None => raw_path.to_owned(),
        PathNormalization::Base => base(raw_path),
        PathNormalization::MergeSlashes => merge_slashes(&base(raw_path)),
        PathNormalization::DecodeAndMergeSlashes => merge_slashes(&base(&decode_slashes(raw_path))),
    }
}

/// True when no mode would change `path` (validated, starting with `/`):
/// nothing to decode or escape (`%`, `\`, the characters Envoy escapes),
/// no run of slashes, and no dot segment (every segment follows a `/`, so
/// one that is `.` or `..` shows as `/.`).
fn is_already_normal(path: &str) -> bool {
    let bytes = path.as_bytes();
    let special = |b: &u8| {
        matches!(
            b,
            b'%' | b'\\' | b'"' | b'<' | b'>' | b'^' | b'`' | b'{' | b'|' | b'}'
        )
    };
    !bytes.iter().any(special)
        && !bytes
            .windows(2)
            .any(|w| w[0] == b'/' && (w[1] == b'/' || w[1] == b'.'))
}

/// Only visible ASCII may appear raw in a request target (RFC 9112 section 3.2);
/// a fragment (`#`) never belongs in one.
fn validate_bytes(s: &str, base_offset: usize) -> Result<(), PathError> {
    for (i, &b) in s.as_bytes().iter().enumerate() {
        if !(0x21..=0x7e).contains(&b) || b == b'#' {
            return Err(PathError::ForbiddenByte {
                offset: base_offset + i,
                byte: b,
            });
        }
    }
    Ok(())
}

fn validate_percent_encoding(path: &str) -> Result<(), PathError> {
    let bytes = path.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let byte =
                decode_triplet(bytes, i).ok_or(PathError::InvalidPercentEncoding { offset: i })?;
            // Envoy refuses `%00` only; every other escape, control
            // characters included, is matched and forwarded still encoded
            // (istio `normalization_test.go`: `/admin%01` reaches the app).
            if byte == 0 {
                return Err(PathError::EncodedNul { offset: i });
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

/// The byte encoded by the `%XY` triplet starting at `at`, if valid.
fn decode_triplet(bytes: &[u8], at: usize) -> Option<u8> {
    let hi = hex_value(*bytes.get(at + 1)?)?;
    let lo = hex_value(*bytes.get(at + 2)?)?;
    Some(hi << 4 | lo)
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn is_unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Step 1 of `DECODE_AND_MERGE_SLASHES`: `%2F` -> `/` and `%5C` -> `\`
/// (case-insensitive). Input is already validated.
fn decode_slashes(path: &str) -> String {
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            match decode_triplet(bytes, i) {
                Some(b'/') => out.push('/'),
                Some(b'\\') => out.push('\\'),
                _ => out.push_str(&path[i..i + 3]),
            }
            i += 3;
        } else {
            out.push(bytes[i] as char);
            i += 1;
        }
    }
    out
}

/// `BASE`: canonical percent-encoding, `\` to `/`, then dot-segment removal.
fn base(path: &str) -> String {
    remove_dot_segments(&canonical_encoding(path))
}

/// Decodes percent-encoded unreserved characters once, keeps the others as
/// sent (hex case included), turns `\` into `/` and escapes the few
/// characters a canonical path never carries raw. Input is already validated (visible ASCII, valid
/// triplets).
fn canonical_encoding(path: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        match b {
            b'%' => {
                // Validated before: always a full triplet.
                let decoded = decode_triplet(bytes, i).unwrap_or(b'%');
                if is_unreserved(decoded) {
                    out.push(decoded as char);
                } else {
                    // Kept as sent: Envoy copies an escape it does not
                    // decode exactly, "in case the server is sensitive to
                    // changing the case of any hex letters".
                    out.push_str(&path[i..i + 3]);
                }
                i += 3;
            }
            b'\\' => {
                out.push('/');
                i += 1;
            }
            // Envoy's `kPathCharLookup` marks these ESCAPE.
            b'"' | b'<' | b'>' | b'^' | b'`' | b'{' | b'|' | b'}' => {
                out.push('%');
                out.push(HEX[usize::from(b >> 4)] as char);
                out.push(HEX[usize::from(b & 0xf)] as char);
                i += 1;
            }
            _ => {
                out.push(b as char);
                i += 1;
            }
        }
    }
    out
}

/// RFC 3986 section 5.2.4 for an absolute path (starts with `/`).
fn remove_dot_segments(path: &str) -> String {
    let mut stack: Vec<&str> = Vec::new();
    let mut ends_in_dot = false;
    // The path starts with '/': skip the empty first piece.
    for segment in path.split('/').skip(1) {
        ends_in_dot = false;
        match segment {
            "." => ends_in_dot = true,
            ".." => {
                stack.pop();
                ends_in_dot = true;
            }
            s => stack.push(s),
        }
    }
    let mut out = String::with_capacity(path.len());
    for s in &stack {
        out.push('/');
        out.push_str(s);
    }
    if ends_in_dot || out.is_empty() {
        out.push('/');
    }
    out
}

fn merge_slashes(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut prev_slash = false;
    for c in path.chars() {
        if c == '/' {
            if !prev_slash {
                out.push(c);
            }
            prev_slash = true;
        } else {
            out.push(c);
            prev_slash = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const MODES: [PathNormalization; 4] = [
        PathNormalization::None,
        PathNormalization::Base,
        PathNormalization::MergeSlashes,
        PathNormalization::DecodeAndMergeSlashes,
    ];

    proptest! {
        /// The shortcut for paths that need no change agrees with the full
        /// steps of every mode, on paths made of the characters that matter.
        #[test]
        fn the_unchanged_path_shortcut_agrees_with_the_full_steps(
            tokens in proptest::collection::vec(
                prop_oneof![
                    "[a/.f5C\\\\{|A~-]",
                    "%(2[Ff]|5[Cc]|2[Ee]|41|25|7[Ee])",
                ],
                0..24,
            ),
        ) {
            // Characters that matter, and well-formed percent escapes of
            // the ones that do and do not change under decoding.
            let path = format!("/{}", tokens.concat());
            for mode in MODES {
                let full = normalize_in_mode(&path, mode);
                let got = normalized_path(&path, mode).unwrap();
                prop_assert_eq!(&*got, full.as_str(), "mode {:?}", mode);
                if is_already_normal(&path) {
                    prop_assert_eq!(full.as_str(), path.as_str());
                }
            }
        }
    }

    #[test]
    fn only_paths_no_mode_changes_are_borrowed() {
        for (path, borrowed) in [
            ("/api/v1/items", true),
            ("/", true),
            ("/a/", true),
            ("/a.b/c..d/.e", false),
            ("/a/./b", false),
            ("/a/../b", false),
            ("/a//b", false),
            ("/a%2Fb", false),
            ("/a\\b", false),
            ("/a{b}", false),
        ] {
            let got = normalized_path(path, PathNormalization::MergeSlashes).unwrap();
            assert_eq!(matches!(got, Cow::Borrowed(_)), borrowed, "{path}");
        }
        let got = normalized_path("/a?x=/../", PathNormalization::Base).unwrap();
        assert!(
            matches!(got, Cow::Borrowed("/a")),
            "the query is no part of it"
        );
    }
}
