//! Quick rejection of a rule by the peer's identity: when every source of a
//! rule requires one of a few exact principals, comparing one precomputed
//! fingerprint of the peer's principal against the rule's few fingerprints
//! rejects it without walking its fields. Equal strings always have equal
//! fingerprints, so a guard never rejects a request the rule would match.
//! (Namespaces have no such guard: Istio matches them anywhere in the ID,
//! so a peer has no single namespace to fingerprint.)
use super::context::Subject;
use super::fields::{Field, Values};
use super::matchers::{StrPattern, fingerprint};

/// Most keys a guard holds; a rule that needs more goes unguarded.
const MAX_KEYS: usize = 4;

/// Up to `MAX_KEYS` distinct keys, inline: what a guard (this one or
/// `path_guard::PathGuard`) compares one request against.
#[derive(Debug, Clone, Copy)]
pub(super) struct Keys<T> {
    pub(super) len: usize,
    keys: [T; MAX_KEYS],
}

impl<T: Copy + Default + PartialEq> Keys<T> {
    /// The distinct keys of the values of the first positive field that
    /// `values` picks in each clause (source or operation). `None` when
    /// there is no clause, a clause has no such field, a value has no key,
    /// or there are more than `MAX_KEYS` keys: then a request that shares no
    /// key with the rule may still match it.
    pub(super) fn of_every_clause<'f, V: 'f>(
        clauses: &'f [Vec<Field>],
        values: impl Fn(&'f Values) -> Option<&'f [V]>,
        key: impl Fn(&'f V) -> Option<T>,
    ) -> Option<Self> {
        if clauses.is_empty() {
            return None;
        }
        let mut out = Keys {
            len: 0,
            keys: [T::default(); MAX_KEYS],
        };
        for clause in clauses {
            let field = clause
                .iter()
                .filter(|f| !f.negate)
                .find_map(|f| values(&f.values))?;
            for v in field {
                let k = key(v)?;
                if !out.as_slice().contains(&k) {
                    *out.keys.get_mut(out.len)? = k;
                    out.len += 1;
                }
            }
        }
        Some(out)
    }

    pub(super) fn as_slice(&self) -> &[T] {
        &self.keys[..self.len]
    }
}

/// The fingerprints of every principal a rule can match; a peer whose
/// fingerprint is not among them cannot match the rule.
#[derive(Debug, Clone, Copy)]
pub(super) struct Guard {
    fingerprints: Keys<u64>,
}

impl Guard {
    /// Some when each source has a positive `principals` field of exact
    /// values only, at most `MAX_KEYS` of them in all.
    pub(super) fn new(from: &[Vec<Field>]) -> Option<Self> {
        let fingerprints = Keys::of_every_clause(
            from,
            |v| match v {
                Values::Principal(p) => Some(p.as_slice()),
                _ => None,
            },
            |p: &StrPattern| p.exact().map(fingerprint),
        )?;
        Some(Guard { fingerprints })
    }

    pub(super) fn may_match(&self, peer: &Subject<'_>) -> bool {
        peer.principal.is_some()
            && self
                .fingerprints
                .as_slice()
                .contains(&peer.principal_fingerprint)
    }
}

#[cfg(test)]
mod tests {
    use super::super::context::{RequestContext, Subject};
    use super::super::matchers::TrustDomains;
    use super::super::rules::CompiledRule;
    use crate::config::{AuthzRule, AuthzSource};

    fn compile(from: Vec<AuthzSource>) -> CompiledRule {
        let tds = TrustDomains::new("cluster.local", &[]);
        let rule = AuthzRule {
            from,
            ..Default::default()
        };
        CompiledRule::compile("ns/p", 0, &rule, &tds).unwrap()
    }

    fn principals(p: &[&str]) -> AuthzSource {
        AuthzSource {
            principals: p.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn guard_only_for_exact_principals_in_every_source() {
        let exact = compile(vec![
            principals(&["cluster.local/ns/a/sa/x"]),
            principals(&["td/ns/b/sa/y"]),
        ]);
        assert_eq!(exact.guard.map(|g| g.fingerprints.len), Some(2));
        assert!(
            compile(vec![principals(&["cluster.local/ns/a/*"])])
                .guard
                .is_none()
        );
        assert!(compile(vec![principals(&["*"])]).guard.is_none());
        let not_only = AuthzSource {
            not_principals: vec!["cluster.local/ns/a/sa/x".into()],
            ..Default::default()
        };
        assert!(compile(vec![not_only]).guard.is_none());
        let ns_only = AuthzSource {
            namespaces: vec!["a".into()],
            ..Default::default()
        };
        assert!(
            compile(vec![principals(&["td/ns/a/sa/x"]), ns_only])
                .guard
                .is_none()
        );
        assert!(
            compile(vec![principals(&[
                "a/ns/a/sa/1",
                "a/ns/a/sa/2",
                "a/ns/a/sa/3",
                "a/ns/a/sa/4",
                "a/ns/a/sa/5"
            ])])
            .guard
            .is_none()
        );
        assert!(compile(vec![]).guard.is_none());
    }

    #[test]
    fn guard_never_changes_a_match() {
        let rules = [
            compile(vec![principals(&[
                "cluster.local/ns/a/sa/x",
                "cluster.local/ns/b/sa/y",
            ])]),
            compile(vec![
                principals(&["cluster.local/ns/a/sa/x"]),
                principals(&["cluster.local/ns/c/sa/z"]),
            ]),
            compile(vec![principals(&["cluster.local/ns/a/*"])]),
        ];
        let peers = [
            None,
            Some("spiffe://cluster.local/ns/a/sa/x"),
            Some("spiffe://cluster.local/ns/b/sa/y"),
            Some("spiffe://cluster.local/ns/c/sa/z"),
            Some("spiffe://cluster.local/ns/a/sa/other"),
            Some("spiffe://cluster.local/ns/a/sa/x/extra"),
        ];
        for rule in &rules {
            let mut unguarded = rule.clone();
            unguarded.guard = None;
            for p in peers {
                let ctx =
                    RequestContext::tcp(p, [198, 18, 0, 2].into(), [198, 18, 0, 9].into(), 80);
                let peer = Subject::new(&ctx);
                assert_eq!(
                    rule.matches(&ctx, &peer),
                    unguarded.matches(&ctx, &peer),
                    "{p:?}"
                );
            }
        }
    }
}
