//! Quick rejection of a rule by the peer's identity: when every source of a
//! rule requires one of a few exact principals (or namespaces), comparing
//! one precomputed fingerprint of the peer's principal (namespace) against
//! the rule's few fingerprints rejects it without walking its fields. Equal
//! strings always have equal fingerprints, so a guard never rejects a
//! request the rule would match.
use super::context::Subject;
use super::fields::{Field, Values};
use super::matchers::fingerprint;

/// The fingerprints of every principal (or namespace) a rule can match; a
/// peer whose fingerprint is not among them cannot match the rule.
#[derive(Debug, Clone, Copy)]
pub(super) struct Guard {
    on_namespace: bool,
    len: usize,
    fingerprints: [u64; Guard::MAX],
}

impl Guard {
    const MAX: usize = 4;

    pub(super) fn new(from: &[Vec<Field>]) -> Option<Self> {
        Self::on(from, false).or_else(|| Self::on(from, true))
    }

    /// Some when each source has a positive `principals` (`namespaces`)
    /// field of exact values only, at most `MAX` of them in all.
    fn on(from: &[Vec<Field>], on_namespace: bool) -> Option<Self> {
        if from.is_empty() {
            return None;
        }
        let mut guard = Guard {
            on_namespace,
            len: 0,
            fingerprints: [0; Self::MAX],
        };
        for source in from {
            let patterns = source.iter().find_map(|f| match (&f.values, f.negate) {
                (Values::Principal(p), false) if !on_namespace => Some(p),
                (Values::Namespace(p), false) if on_namespace => Some(p),
                _ => None,
            })?;
            for p in patterns {
                let fp = fingerprint(p.exact()?);
                if !guard.fingerprints[..guard.len].contains(&fp) {
                    *guard.fingerprints.get_mut(guard.len)? = fp;
                    guard.len += 1;
                }
            }
        }
        Some(guard)
    }

    pub(super) fn may_match(&self, peer: &Subject<'_>) -> bool {
        let (value, fp) = if self.on_namespace {
            (peer.namespace, peer.namespace_fingerprint)
        } else {
            (peer.principal, peer.principal_fingerprint)
        };
        value.is_some() && self.fingerprints[..self.len].contains(&fp)
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
        assert_eq!(exact.guard.map(|g| g.len), Some(2));
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
