//! Quick rejection of a rule by the request path: when every operation of a
//! rule requires one of a few paths that each begin with literal text
//! (`/api/v1/*`, an exact path, a template starting `/api/{*}`), a request
//! whose first bytes differ from all of those beginnings cannot match the
//! rule. The first (at most) eight bytes of the path are loaded once per
//! request into a word; each beginning is a masked word, so the check is
//! one AND and one compare per beginning. A necessary condition only: a
//! guard never rejects a request the rule would match, and without an HTTP
//! request (where path fields count as matched) it rejects nothing.
use super::fields::{Field, Values};
use super::guard::Keys;
use super::matchers::{PathPattern, StrPattern, TemplatePiece};

/// The first at most eight bytes of `bytes`, little-endian, zero-padded.
pub(crate) fn head_word(bytes: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    let n = bytes.len().min(8);
    word[..n].copy_from_slice(&bytes[..n]);
    u64::from_le_bytes(word)
}

/// One required beginning: the path's first `len` bytes must equal
/// `value` under `mask`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Beginning {
    value: u64,
    mask: u64,
    len: u8,
}

impl Beginning {
    fn of(literal: &[u8]) -> Option<Self> {
        if literal.is_empty() {
            return None;
        }
        let len = literal.len().min(8);
        let mask = if len == 8 {
            u64::MAX
        } else {
            (1u64 << (len * 8)) - 1
        };
        Some(Beginning {
            value: head_word(&literal[..len]),
            mask,
            len: len as u8,
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub(super) struct PathGuard {
    beginnings: Keys<Beginning>,
}

impl PathGuard {
    /// Some when `to` is not empty and each operation has a positive
    /// `paths` field whose every value starts with literal text, with at
    /// most `guard::MAX_KEYS` distinct beginnings in all.
    pub(super) fn new(to: &[Vec<Field>]) -> Option<Self> {
        let beginnings = Keys::of_every_clause(
            to,
            |v| match v {
                Values::Path(p) => Some(p.as_slice()),
                _ => None,
            },
            |p| literal_start(p).and_then(Beginning::of),
        )?;
        Some(PathGuard { beginnings })
    }

    /// `head` is `head_word(path)`.
    pub(super) fn may_match(&self, path: &[u8], head: u64) -> bool {
        self.beginnings
            .as_slice()
            .iter()
            .any(|b| path.len() >= usize::from(b.len) && head & b.mask == b.value)
    }
}

/// The literal text every path the pattern matches begins with.
fn literal_start(p: &PathPattern) -> Option<&[u8]> {
    match p {
        PathPattern::Str(StrPattern::Exact(e)) => Some(e),
        PathPattern::Str(StrPattern::Prefix(p)) => Some(p),
        PathPattern::Str(StrPattern::Suffix(_) | StrPattern::Presence) => None,
        PathPattern::Template(pieces) => match pieces.first() {
            Some(TemplatePiece::Literal(l)) => Some(l.as_bytes()),
            _ => None,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::super::context::{HttpRequest, RequestContext, Subject};
    use super::super::matchers::TrustDomains;
    use super::super::rules::CompiledRule;
    use crate::config::{AuthzOperation, AuthzRule};
    use http::HeaderMap;

    fn compile(ops: &[&[&str]]) -> CompiledRule {
        let tds = TrustDomains::new("cluster.local", &[]);
        let rule = AuthzRule {
            to: ops
                .iter()
                .map(|paths| AuthzOperation {
                    paths: paths.iter().map(|s| s.to_string()).collect(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        };
        CompiledRule::compile("ns/p", 0, &rule, &tds).unwrap()
    }

    #[test]
    fn guard_only_when_every_operation_needs_a_literal_beginning() {
        assert!(compile(&[&["/api/*", "/static/x"]]).path_guard.is_some());
        assert!(compile(&[&["/api/{*}/items"]]).path_guard.is_some());
        assert!(compile(&[&["/api/*"], &["/b"]]).path_guard.is_some());
        assert!(compile(&[&["*.js"]]).path_guard.is_none());
        assert!(compile(&[&["*"]]).path_guard.is_none());
        // An operation without paths (methods only) matches any path.
        let tds = TrustDomains::new("cluster.local", &[]);
        let any_path = AuthzRule {
            to: vec![
                AuthzOperation {
                    paths: vec!["/api/*".into()],
                    ..Default::default()
                },
                AuthzOperation {
                    methods: vec!["GET".into()],
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        let any_path = CompiledRule::compile("ns/p", 0, &any_path, &tds).unwrap();
        assert!(any_path.path_guard.is_none());
        assert!(
            compile(&[&["/a", "/b", "/c", "/d", "/e"]])
                .path_guard
                .is_none()
        );
        assert!(compile(&[]).path_guard.is_none());
    }

    #[test]
    fn guard_never_changes_a_match() {
        let rules = [
            compile(&[&["/api/v1/*", "/static/app.js"]]),
            compile(&[&["/api/{*}/items"], &["/a"]]),
            compile(&[&["/x"]]),
            compile(&[&["/averyverylongprefix/*"]]),
            compile(&[&["/api/v1/{**}"]]),
        ];
        let paths = [
            "/",
            "/a",
            "/ab",
            "/x",
            "/xy",
            "/api",
            "/api/v1",
            "/api/v1/",
            "/api/v1/users",
            "/api/v2/users",
            "/api/42/items",
            "/api//items",
            "/static/app.js",
            "/static/app.jsx",
            "/averyverylongprefix",
            "/averyverylongprefix/z",
            "/averyvery",
            "",
        ];
        let headers = HeaderMap::new();
        for rule in &rules {
            let mut unguarded = rule.clone();
            unguarded.path_guard = None;
            for path in paths {
                let ctx =
                    RequestContext::tcp(None, [198, 18, 0, 2].into(), [198, 18, 0, 9].into(), 80)
                        .with_http(HttpRequest {
                            method: "GET",
                            path,
                            host: "h",
                            headers: &headers,
                        });
                let peer = Subject::new(&ctx);
                assert_eq!(
                    rule.matches(&ctx, &peer),
                    unguarded.matches(&ctx, &peer),
                    "{path:?} against {rule:?}"
                );
            }
            // No HTTP request: path fields count as matched, no rejection.
            let tcp = RequestContext::tcp(None, [198, 18, 0, 2].into(), [198, 18, 0, 9].into(), 80);
            let peer = Subject::new(&tcp);
            assert_eq!(rule.matches(&tcp, &peer), unguarded.matches(&tcp, &peer));
        }
    }
}
