//! The decision order, AUDIT and dry-run. istio.io, Authorization Policy:
//! "1. If there are any CUSTOM policies that match the request, evaluate and
//! deny the request if the evaluation result is deny. 2. If there are any
//! DENY policies that match the request, deny the request. 3. If there are
//! no ALLOW policies for the workload, allow the request. 4. If any of the
//! ALLOW policies match the request, allow the request. 5. Deny the
//! request." (Palisade has no CUSTOM.) "AUDIT policies do not affect whether
//! requests are allowed or denied to the workload."
mod common;

use common::*;
use palisade_api::AuthzAction;
use palisade_api::authz::{DecisionReason, PolicyMatch, Verdict};

const DENY_ADMIN_ALLOW_SLEEP: &str = r#"
- name: default/deny-admin
  action: DENY
  rules:
  - to:
    - paths: ["/admin*"]
- name: default/allow-sleep
  action: ALLOW
  rules:
  - from:
    - principals: ["cluster.local/ns/other/sa/x"]
  - from:
    - principals: ["cluster.local/ns/default/sa/sleep"]
"#;

fn reason_policy(r: &DecisionReason) -> Option<(&str, usize)> {
    match r {
        DecisionReason::DenyPolicyMatched(m) | DecisionReason::AllowPolicyMatched(m) => {
            Some((&m.policy, m.rule))
        }
        _ => None,
    }
}

#[test]
fn step1_deny_match_denies_even_when_allowed() {
    let authz = compile(DENY_ADMIN_ALLOW_SLEEP);
    let d = get("/admin/users").eval(&authz);
    assert_eq!(d.verdict, Verdict::Deny);
    assert!(matches!(d.reason, DecisionReason::DenyPolicyMatched(_)));
    assert_eq!(reason_policy(&d.reason), Some(("default/deny-admin", 0)));
    assert_eq!(
        d.to_string(),
        "denied: matched DENY policy default/deny-admin rule 0"
    );
}

#[test]
fn step2_no_allow_policies_allows() {
    let authz = compile(
        r#"
- name: default/deny-admin
  action: DENY
  rules:
  - to:
    - paths: ["/admin*"]
"#,
    );
    let d = get("/public").eval(&authz);
    assert_eq!(
        (d.verdict, d.reason),
        (Verdict::Allow, DecisionReason::NoAllowPolicies)
    );
    // And no policy at all: allow.
    let none = compile("[]");
    assert!(none.is_empty());
    assert_eq!(
        get("/x").eval(&none).reason,
        DecisionReason::NoAllowPolicies
    );
}

#[test]
fn step3_allow_match_names_policy_and_rule() {
    let authz = compile(DENY_ADMIN_ALLOW_SLEEP);
    let d = get("/public").eval(&authz);
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(reason_policy(&d.reason), Some(("default/allow-sleep", 1)));
}

#[test]
fn step4_allow_policies_exist_and_none_match_denies() {
    let authz = compile(DENY_ADMIN_ALLOW_SLEEP);
    let d = get("/public")
        .peer(Some("cluster.local/ns/default/sa/intruder"))
        .eval(&authz);
    assert_eq!(
        (d.verdict, &d.reason),
        (Verdict::Deny, &DecisionReason::NoAllowPolicyMatched)
    );
    assert_eq!(d.to_string(), "denied: no ALLOW policy matched");
}

#[test]
fn audit_reports_but_never_decides() {
    let authz = compile(
        r#"
- name: default/audit-get
  action: AUDIT
  rules:
  - to:
    - methods: ["GET"]
- name: default/audit-post
  action: AUDIT
  rules:
  - to:
    - methods: ["POST"]
"#,
    );
    let d = get("/x").eval(&authz);
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(
        d.reason,
        DecisionReason::NoAllowPolicies,
        "AUDIT is not an ALLOW policy"
    );
    assert_eq!(
        d.audit,
        vec![PolicyMatch {
            policy: "default/audit-get".into(),
            action: AuthzAction::Audit,
            rule: 0,
            dry_run: false
        }]
    );
    // AUDIT alongside a denying policy: still denied, still audited.
    let authz = compile(
        r#"
- name: default/audit-all
  action: AUDIT
  rules: [{}]
- name: default/allow-nothing
  action: ALLOW
"#,
    );
    let d = get("/x").eval(&authz);
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.audit.len(), 1);
}

#[test]
fn dry_run_deny_is_reported_but_not_enforced() {
    // istio.io: the `istio.io/dry-run` annotation lets you "dry-run the
    // policy without actually enforcing it".
    let authz = compile(
        r#"
- name: default/dry-deny-headers
  action: DENY
  dryRun: true
  rules:
  - to:
    - paths: ["/headers"]
"#,
    );
    let d = get("/headers").eval(&authz);
    assert_eq!(d.verdict, Verdict::Allow);
    assert_eq!(d.reason, DecisionReason::NoAllowPolicies);
    let dry = d.dry_run.expect("dry-run outcome");
    assert_eq!(dry.verdict, Verdict::Deny);
    assert_eq!(
        reason_policy(&dry.reason),
        Some(("default/dry-deny-headers", 0))
    );
    assert_eq!(dry.matched.len(), 1);
    assert!(dry.matched[0].dry_run);
    // A request the dry-run policy would not deny.
    let d = get("/ip").eval(&authz);
    let dry = d.dry_run.expect("dry-run outcome");
    assert_eq!((dry.verdict, dry.matched.len()), (Verdict::Allow, 0));
}

#[test]
fn dry_run_allow_does_not_make_the_workload_default_deny() {
    let authz = compile(
        r#"
- name: default/dry-allow-get
  action: ALLOW
  dryRun: true
  rules:
  - to:
    - methods: ["GET"]
"#,
    );
    let post = get("/x");
    let post = post.http("POST", "/x", "h");
    let d = post.eval(&authz);
    assert_eq!(
        (d.verdict, &d.reason),
        (Verdict::Allow, &DecisionReason::NoAllowPolicies)
    );
    let dry = d.dry_run.expect("dry-run outcome");
    assert_eq!(
        (dry.verdict, dry.reason),
        (Verdict::Deny, DecisionReason::NoAllowPolicyMatched)
    );
    let d = get("/x").eval(&authz);
    assert_eq!(d.dry_run.map(|x| x.verdict), Some(Verdict::Allow));
    // No dry-run policies: no dry-run outcome.
    assert_eq!(get("/x").eval(&compile("[]")).dry_run, None);
}

#[test]
fn enforced_deny_still_wins_in_the_dry_run_view() {
    let authz = compile(
        r#"
- name: default/deny-admin
  action: DENY
  rules:
  - to:
    - paths: ["/admin"]
- name: default/dry-allow-all
  action: ALLOW
  dryRun: true
  rules: [{}]
"#,
    );
    let d = get("/admin").eval(&authz);
    assert_eq!(d.verdict, Verdict::Deny);
    assert_eq!(d.dry_run.map(|x| x.verdict), Some(Verdict::Deny));
}

#[test]
fn reported_policy_does_not_depend_on_input_order() {
    let a = r#"
- name: ns/b-deny
  action: DENY
  rules: [{}]
- name: ns/a-deny
  action: DENY
  rules: [{}]
"#;
    let b = r#"
- name: ns/a-deny
  action: DENY
  rules: [{}]
- name: ns/b-deny
  action: DENY
  rules: [{}]
"#;
    assert_eq!(get("/").eval(&compile(a)), get("/").eval(&compile(b)));
    assert_eq!(
        reason_policy(&get("/").eval(&compile(a)).reason),
        Some(("ns/a-deny", 0))
    );
}
