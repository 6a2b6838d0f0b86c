//! Istio AuthorizationPolicy evaluation, shared by the sidecar (per
//! connection and per request) and `palisade check`.
//!
//! `CompiledAuthz::new` validates and compiles a workload's policies once per
//! config version; `CompiledAuthz::evaluate` is a pure function of the
//! compiled policies and one `RequestContext`, returning a `Decision` that
//! names the deciding policy and rule.
mod context;
mod fields;
mod guard;
mod matchers;
mod path_guard;
mod rules;

use std::fmt;
use std::sync::Arc;

pub use context::{HttpRequest, RequestContext};
pub use rules::{
    AuthzError, ConditionKeyError, parse_ip_or_cidr, parse_port, validate_condition_key,
};

use crate::config::{AuthorizationPolicy, AuthzAction, MeshSettings};
use context::Subject;
use matchers::TrustDomains;
use rules::CompiledRule;

/// Allow or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Verdict {
    Allow,
    Deny,
}

/// A policy that matched, and the index of its first matching rule.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyMatch {
    /// `ns/name`
    pub policy: Arc<str>,
    pub action: AuthzAction,
    pub rule: usize,
    pub dry_run: bool,
}

/// Which step of the evaluation order decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecisionReason {
    /// Step 1: a DENY policy matched.
    DenyPolicyMatched(PolicyMatch),
    /// Step 2: the workload has no ALLOW policy.
    NoAllowPolicies,
    /// Step 3: an ALLOW policy matched.
    AllowPolicyMatched(PolicyMatch),
    /// Step 4: ALLOW policies exist and none matched.
    NoAllowPolicyMatched,
}

/// What the verdict would have been with the dry-run policies enforced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DryRunOutcome {
    pub verdict: Verdict,
    pub reason: DecisionReason,
    /// Every dry-run policy that matched.
    pub matched: Vec<PolicyMatch>,
}

/// The outcome of one evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub verdict: Verdict,
    pub reason: DecisionReason,
    /// Enforced AUDIT policies that matched (they never change the verdict).
    pub audit: Vec<PolicyMatch>,
    /// Present when the workload has dry-run policies.
    pub dry_run: Option<DryRunOutcome>,
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        self.verdict == Verdict::Allow
    }
}

impl fmt::Display for PolicyMatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let action = match self.action {
            AuthzAction::Allow => "ALLOW",
            AuthzAction::Deny => "DENY",
            AuthzAction::Audit => "AUDIT",
        };
        let dry = if self.dry_run { " (dry-run)" } else { "" };
        write!(f, "{action} policy {} rule {}{dry}", self.policy, self.rule)
    }
}

impl fmt::Display for DecisionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecisionReason::DenyPolicyMatched(m) => write!(f, "matched {m}"),
            DecisionReason::NoAllowPolicies => f.write_str("no ALLOW policies"),
            DecisionReason::AllowPolicyMatched(m) => write!(f, "matched {m}"),
            DecisionReason::NoAllowPolicyMatched => f.write_str("no ALLOW policy matched"),
        }
    }
}

impl fmt::Display for Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let verdict = match self.verdict {
            Verdict::Allow => "allowed",
            Verdict::Deny => "denied",
        };
        write!(f, "{verdict}: {}", self.reason)?;
        for a in &self.audit {
            write!(f, "; audited by {a}")?;
        }
        if let Some(d) = &self.dry_run {
            let v = match d.verdict {
                Verdict::Allow => "allowed",
                Verdict::Deny => "denied",
            };
            write!(f, "; with dry-run policies: {v} ({})", d.reason)?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone)]
struct CompiledPolicy {
    name: Arc<str>,
    action: AuthzAction,
    dry_run: bool,
    rules: Vec<CompiledRule>,
}

impl CompiledPolicy {
    /// The first matching rule. On TCP, an ALLOW rule that uses HTTP-only
    /// fields never matches (Istio skips it: "a smaller allow policy").
    fn first_match(&self, ctx: &RequestContext<'_>, peer: &Subject<'_>) -> Option<PolicyMatch> {
        let tcp = ctx.http.is_none();
        let skip_http_only = tcp && self.action == AuthzAction::Allow;
        let rule = self
            .rules
            .iter()
            .position(|r| !(skip_http_only && r.http_only) && r.matches(ctx, peer))?;
        Some(PolicyMatch {
            policy: self.name.clone(),
            action: self.action,
            rule,
            dry_run: self.dry_run,
        })
    }
}

/// A workload's policies, validated and compiled.
#[derive(Debug, Clone, Default)]
pub struct CompiledAuthz {
    deny: Vec<CompiledPolicy>,
    allow: Vec<CompiledPolicy>,
    audit: Vec<CompiledPolicy>,
    dry_run: Vec<CompiledPolicy>,
}

/// Checks one policy the way `CompiledAuthz::new` does, for the compiler.
pub fn validate_policy(
    policy: &AuthorizationPolicy,
    mesh: &MeshSettings,
) -> Result<(), AuthzError> {
    let tds = TrustDomains::new(&mesh.trust_domain, &mesh.trust_domain_aliases);
    compile_policy(policy, &tds).map(|_| ())
}

fn compile_policy(
    policy: &AuthorizationPolicy,
    tds: &TrustDomains<'_>,
) -> Result<CompiledPolicy, AuthzError> {
    let rules = policy
        .rules
        .iter()
        .enumerate()
        .map(|(i, r)| CompiledRule::compile(&policy.name, i, r, tds))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(CompiledPolicy {
        name: Arc::from(policy.name.as_str()),
        action: policy.action,
        dry_run: policy.dry_run,
        rules,
    })
}

impl CompiledAuthz {
    /// Compiles `policies`; any invalid policy fails the whole set (the
    /// proxy keeps its previous config rather than enforce a partial one).
    /// Policies are ordered by name, so the reported policy does not depend
    /// on the input order.
    pub fn new(policies: &[AuthorizationPolicy], mesh: &MeshSettings) -> Result<Self, AuthzError> {
        let tds = TrustDomains::new(&mesh.trust_domain, &mesh.trust_domain_aliases);
        let mut sorted: Vec<&AuthorizationPolicy> = policies.iter().collect();
        sorted.sort_by(|a, b| a.name.cmp(&b.name));
        let mut out = CompiledAuthz::default();
        for p in sorted {
            let compiled = compile_policy(p, &tds)?;
            let list = match (p.dry_run, p.action) {
                (true, _) => &mut out.dry_run,
                (false, AuthzAction::Deny) => &mut out.deny,
                (false, AuthzAction::Allow) => &mut out.allow,
                (false, AuthzAction::Audit) => &mut out.audit,
            };
            list.push(compiled);
        }
        Ok(out)
    }

    /// True when no policy applies (everything is allowed).
    pub fn is_empty(&self) -> bool {
        self.deny.is_empty()
            && self.allow.is_empty()
            && self.audit.is_empty()
            && self.dry_run.is_empty()
    }

    /// Evaluates one connection (no HTTP part) or one request.
    pub fn evaluate(&self, ctx: &RequestContext<'_>) -> Decision {
        let peer = Subject::new(ctx);
        let (verdict, reason) = decide(
            self.deny.iter().find_map(|p| p.first_match(ctx, &peer)),
            !self.allow.is_empty(),
            || self.allow.iter().find_map(|p| p.first_match(ctx, &peer)),
        );
        let audit = self
            .audit
            .iter()
            .filter_map(|p| p.first_match(ctx, &peer))
            .collect();
        let dry_run = (!self.dry_run.is_empty()).then(|| self.dry_run_outcome(ctx, &peer, &reason));
        Decision {
            verdict,
            reason,
            audit,
            dry_run,
        }
    }

    /// The verdict as if the dry-run policies were enforced too.
    fn dry_run_outcome(
        &self,
        ctx: &RequestContext<'_>,
        peer: &Subject<'_>,
        enforced: &DecisionReason,
    ) -> DryRunOutcome {
        let matched: Vec<PolicyMatch> = self
            .dry_run
            .iter()
            .filter_map(|p| p.first_match(ctx, peer))
            .collect();
        let deny = match enforced {
            DecisionReason::DenyPolicyMatched(m) => Some(m.clone()),
            _ => matched
                .iter()
                .find(|m| m.action == AuthzAction::Deny)
                .cloned(),
        };
        let has_allow =
            !self.allow.is_empty() || self.dry_run.iter().any(|p| p.action == AuthzAction::Allow);
        let (verdict, reason) = decide(deny, has_allow, || match enforced {
            DecisionReason::AllowPolicyMatched(m) => Some(m.clone()),
            _ => matched
                .iter()
                .find(|m| m.action == AuthzAction::Allow)
                .cloned(),
        });
        DryRunOutcome {
            verdict,
            reason,
            matched,
        }
    }
}

/// The evaluation order, istio.io, Authorization Policy (CUSTOM aside).
fn decide(
    deny_match: Option<PolicyMatch>,
    has_allow_policies: bool,
    allow_match: impl FnOnce() -> Option<PolicyMatch>,
) -> (Verdict, DecisionReason) {
    // 1. "If there are any DENY policies that match the request, deny the
    //    request."
    if let Some(m) = deny_match {
        return (Verdict::Deny, DecisionReason::DenyPolicyMatched(m));
    }
    // 2. "If there are no ALLOW policies for the workload, allow the request."
    if !has_allow_policies {
        return (Verdict::Allow, DecisionReason::NoAllowPolicies);
    }
    // 3. "If any of the ALLOW policies match the request, allow the request."
    if let Some(m) = allow_match() {
        return (Verdict::Allow, DecisionReason::AllowPolicyMatched(m));
    }
    // 4. "Deny the request."
    (Verdict::Deny, DecisionReason::NoAllowPolicyMatched)
}

/// Compiles and evaluates in one go (for `palisade check` and tests; the
/// proxy keeps a `CompiledAuthz` per config version).
pub fn evaluate(
    policies: &[AuthorizationPolicy],
    mesh: &MeshSettings,
    ctx: &RequestContext<'_>,
) -> Result<Decision, AuthzError> {
    Ok(CompiledAuthz::new(policies, mesh)?.evaluate(ctx))
}
