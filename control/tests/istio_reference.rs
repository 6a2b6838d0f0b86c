//! The Istio reference examples for AuthorizationPolicy and
//! PeerAuthentication (istio.io, Reference, "Authorization Policy" and "Peer
//! Authentication"), judged end to end with `check` on compiled configs.
mod policy_support;

use palisade_api::{MtlsMode, Protocol};
use palisade_control::check::{self, CheckReport, HttpSpec, LayerVerdict};
use palisade_control::cluster::Cluster;
use palisade_control::compile::Compiler;
use policy_support::{allowed, load, request};

fn pod(ns: &str, name: &str, sa: &str, labels: &str, ip: &str) -> String {
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  namespace: {ns}\n  name: {name}\n  labels: {labels}\nspec:\n  serviceAccountName: {sa}\n  containers:\n    - name: c\n      ports:\n        - {{name: http, containerPort: 8000}}\n        - {{name: admin, containerPort: 8080}}\nstatus:\n  podIP: {ip}\n"
    )
}

fn mesh() -> String {
    [
        pod(
            "foo",
            "httpbin",
            "httpbin",
            "{app: httpbin, version: v1}",
            "198.18.1.10",
        ),
        pod("foo", "other", "other", "{app: other}", "198.18.1.11"),
        pod("default", "sleep", "sleep", "{app: sleep}", "198.18.2.10"),
        pod("test", "client", "client", "{app: client}", "198.18.3.10"),
        pod("dev", "client", "client", "{app: client}", "198.18.4.10"),
    ]
    .concat()
}

fn ap(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  namespace: {ns}\n  name: {name}\nspec:\n{spec}\n"
    )
}

fn cluster(policies: &str) -> Cluster {
    load(&[&mesh(), policies])
}

fn req(
    c: &Cluster,
    from: &str,
    to: &str,
    port: u16,
    http: Option<(&str, &str)>,
    plaintext: bool,
) -> CheckReport {
    let compiler = Compiler::new(c);
    let mut r = request(c, from, to, port, Protocol::Tcp);
    r.http = http.map(|(m, p)| HttpSpec {
        method: m.into(),
        path: p.into(),
        host: None,
        headers: vec![],
    });
    r.plaintext = plaintext;
    check::check(&compiler, &r).unwrap()
}

fn get(c: &Cluster, from: &str, method: &str, path: &str) -> bool {
    allowed(&req(
        c,
        from,
        "foo/httpbin",
        8000,
        Some((method, path)),
        false,
    ))
}

// Reference: "the following authorization policy ... allows requests from
// service account cluster.local/ns/default/sa/sleep or namespace test to
// access the workload with GET method at paths of prefix /info or POST
// method at path /data" (the JWT `when` of the example is left out:
// Palisade has no RequestAuthentication).
#[test]
fn httpbin_allow_example() {
    let c = cluster(&ap(
        "foo",
        "httpbin",
        "  selector:\n    matchLabels: {app: httpbin, version: v1}\n  action: ALLOW\n  rules:\n    - from:\n        - source:\n            principals: [\"cluster.local/ns/default/sa/sleep\"]\n        - source:\n            namespaces: [\"test\"]\n      to:\n        - operation:\n            methods: [\"GET\"]\n            paths: [\"/info*\"]\n        - operation:\n            methods: [\"POST\"]\n            paths: [\"/data\"]",
    ));
    assert!(get(&c, "default/sleep", "GET", "/info"));
    assert!(get(&c, "default/sleep", "GET", "/info/more"));
    assert!(get(&c, "default/sleep", "POST", "/data"));
    assert!(get(&c, "test/client", "GET", "/info"));
    assert!(!get(&c, "default/sleep", "GET", "/data"));
    assert!(!get(&c, "default/sleep", "DELETE", "/info"));
    assert!(!get(&c, "dev/client", "GET", "/info"));
    // The selector narrows: foo/other has no ALLOW policy, so allow.
    assert!(allowed(&req(
        &c,
        "dev/client",
        "foo/other",
        8000,
        Some(("DELETE", "/x")),
        false
    )));
    // "principals ... requires mTLS": a plaintext peer never matches.
    let r = req(
        &c,
        "default/sleep",
        "foo/httpbin",
        8000,
        Some(("GET", "/info")),
        true,
    );
    assert_eq!(r.endpoints[0].authorization.verdict, LayerVerdict::Deny);
    assert_eq!(
        r.endpoints[0].authorization.reason,
        "no-allow-policy-matched"
    );
}

// Reference: "The following is another example that sets action to DENY to
// create a deny policy. It denies requests from the dev namespace to the POST
// method on all workloads in the foo namespace."
#[test]
fn deny_post_from_dev_example() {
    let c = cluster(&ap(
        "foo",
        "httpbin",
        "  action: DENY\n  rules:\n    - from:\n        - source:\n            namespaces: [\"dev\"]\n      to:\n        - operation:\n            methods: [\"POST\"]",
    ));
    assert!(!get(&c, "dev/client", "POST", "/data"));
    assert!(get(&c, "dev/client", "GET", "/data"));
    assert!(get(&c, "test/client", "POST", "/data"));
    let r = req(
        &c,
        "dev/client",
        "foo/other",
        8000,
        Some(("POST", "/")),
        false,
    );
    assert_eq!(r.endpoints[0].authorization.reason, "deny-policy-matched");
    assert_eq!(
        r.endpoints[0].authorization.policy.as_deref(),
        Some("foo/httpbin")
    );
    // On TCP traffic a DENY rule drops its HTTP-only fields, so it is more
    // restrictive: the whole connection from dev is denied.
    assert!(!allowed(&req(
        &c,
        "dev/client",
        "foo/httpbin",
        8000,
        None,
        false
    )));
    assert!(allowed(&req(
        &c,
        "test/client",
        "foo/httpbin",
        8000,
        None,
        false
    )));
}

// Reference: "The following authorization policy sets the action to ALLOW
// ... allow-nothing: spec: {}" and "deny-all ... rules: - {}"; "allow-all
// ... rules: - {}" with action ALLOW allows everything even with allow-nothing.
#[test]
fn allow_nothing_deny_all_allow_all() {
    let nothing = ap("foo", "allow-nothing", "  {}");
    let c = cluster(&nothing);
    assert!(!get(&c, "default/sleep", "GET", "/"));
    assert!(allowed(&req(
        &c,
        "foo/httpbin",
        "default/sleep",
        8000,
        Some(("GET", "/")),
        false
    )));
    let all = ap("foo", "allow-all", "  action: ALLOW\n  rules:\n    - {}");
    let c = cluster(&(nothing.clone() + &all));
    assert!(get(&c, "default/sleep", "GET", "/"));
    let deny = ap("foo", "deny-all", "  action: DENY\n  rules:\n    - {}");
    let c = cluster(&(nothing + &all + &deny));
    assert!(!get(&c, "default/sleep", "GET", "/"));
}

// Reference: "If the policy is in the root namespace, the policy applies to
// all workloads in the mesh" (root namespace istio-system by default).
#[test]
fn root_namespace_policies_are_mesh_wide() {
    let c = cluster(&ap(
        "istio-system",
        "deny-dev",
        "  action: DENY\n  rules:\n    - from:\n        - source: {namespaces: [dev]}",
    ));
    assert!(!allowed(&req(
        &c,
        "dev/client",
        "default/sleep",
        8000,
        None,
        false
    )));
    assert!(!allowed(&req(
        &c,
        "dev/client",
        "foo/other",
        8000,
        None,
        false
    )));
    assert!(allowed(&req(
        &c,
        "test/client",
        "foo/other",
        8000,
        None,
        false
    )));
    // A policy in another namespace applies only there.
    let c = cluster(&ap(
        "test",
        "deny-dev",
        "  action: DENY\n  rules:\n    - from:\n        - source: {namespaces: [dev]}",
    ));
    assert!(allowed(&req(
        &c,
        "dev/client",
        "default/sleep",
        8000,
        None,
        false
    )));
    assert!(!allowed(&req(
        &c,
        "dev/client",
        "test/client",
        8000,
        None,
        false
    )));
}

// Reference, "istio.io/dry-run": "dry-run ... evaluated and logged, never
// enforced"; a dry-run ALLOW does not make the workload default-deny.
#[test]
fn dry_run_policies_are_not_enforced() {
    let deny = ap("foo", "deny-dry", "  action: DENY\n  rules:\n    - {}").replace(
        "metadata:\n",
        "metadata:\n  annotations: {istio.io/dry-run: \"true\"}\n",
    );
    let c = cluster(&deny);
    let r = req(
        &c,
        "dev/client",
        "foo/httpbin",
        8000,
        Some(("GET", "/")),
        false,
    );
    assert!(allowed(&r));
    assert_eq!(
        r.endpoints[0].authorization.dry_run_verdict,
        Some(LayerVerdict::Deny)
    );
    let allow = ap(
        "foo",
        "allow-dry",
        "  action: ALLOW\n  rules:\n    - from:\n        - source: {namespaces: [test]}",
    )
    .replace(
        "metadata:\n",
        "metadata:\n  annotations: {istio.io/dry-run: \"true\"}\n",
    );
    let c = cluster(&allow);
    assert!(get(&c, "dev/client", "GET", "/"));
}

// Reference: "when a ALLOW policy is applied to a TCP workload ... rules
// with HTTP-only fields are ignored": no rule matches, so the workload is
// default-deny for TCP; AUDIT never changes the verdict.
#[test]
fn tcp_allow_with_http_fields_and_audit() {
    let c = cluster(
        &(ap(
            "foo",
            "tcp",
            "  action: ALLOW\n  rules:\n    - from:\n        - source: {namespaces: [test]}\n      to:\n        - operation: {methods: [GET], ports: [\"8000\"]}",
        ) + &ap("foo", "audit", "  action: AUDIT\n  rules:\n    - {}")),
    );
    assert!(!allowed(&req(
        &c,
        "test/client",
        "foo/httpbin",
        8000,
        None,
        false
    )));
    let r = req(
        &c,
        "test/client",
        "foo/httpbin",
        8000,
        Some(("GET", "/")),
        false,
    );
    assert!(allowed(&r));
    assert_eq!(r.endpoints[0].authorization.audit.len(), 1);
    assert!(!get(&c, "test/client", "POST", "/"));
    // ports narrows: 8080 is not 8000.
    assert!(!allowed(&req(
        &c,
        "test/client",
        "foo/httpbin",
        8080,
        Some(("GET", "/")),
        false
    )));
}

fn pa(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  namespace: {ns}\n  name: {name}\nspec:\n{spec}\n"
    )
}

fn mode(c: &Cluster, ns: &str, name: &str) -> (MtlsMode, Vec<(u16, MtlsMode)>) {
    let compiler = Compiler::new(c);
    let m = compiler.effective_mtls(c.pod_index(ns, name).unwrap());
    (m.mode, m.port_mtls.iter().map(|(k, v)| (*k, *v)).collect())
}

// Reference: "Policy to require mTLS traffic for all workloads under
// namespace foo"; "mesh-wide ... root namespace"; "Policy for all workloads
// to accept mTLS traffic only, except port 8080 of the finance workload".
#[test]
fn peer_authentication_precedence() {
    let c = cluster("");
    assert_eq!(
        mode(&c, "foo", "httpbin").0,
        MtlsMode::Permissive,
        "default PERMISSIVE"
    );
    let meshwide = pa("istio-system", "default", "  mtls: {mode: STRICT}");
    let c = cluster(&meshwide);
    assert_eq!(mode(&c, "dev", "client").0, MtlsMode::Strict);
    let ns = pa("foo", "default", "  mtls: {mode: PERMISSIVE}");
    let c = cluster(&(meshwide.clone() + &ns));
    assert_eq!(
        mode(&c, "foo", "httpbin").0,
        MtlsMode::Permissive,
        "namespace beats mesh"
    );
    assert_eq!(mode(&c, "dev", "client").0, MtlsMode::Strict);
    let workload = pa(
        "foo",
        "httpbin",
        "  selector:\n    matchLabels: {app: httpbin}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    8080: {mode: DISABLE}",
    );
    let c = cluster(&(meshwide.clone() + &ns + &workload));
    assert_eq!(
        mode(&c, "foo", "httpbin"),
        (MtlsMode::Strict, vec![(8080, MtlsMode::Disable)])
    );
    assert_eq!(mode(&c, "foo", "other").0, MtlsMode::Permissive);
    // STRICT refuses a plaintext caller; the DISABLE port accepts it.
    let r = req(&c, "dev/client", "foo/httpbin", 8000, None, true);
    assert!(!allowed(&r));
    assert!(!r.endpoints[0].mtls.plaintext_accepted);
    assert_eq!(r.endpoints[0].mtls.policy.as_deref(), Some("foo/httpbin"));
    assert!(allowed(&req(
        &c,
        "dev/client",
        "foo/httpbin",
        8080,
        None,
        true
    )));
    assert!(allowed(&req(
        &c,
        "dev/client",
        "foo/httpbin",
        8000,
        None,
        false
    )));
    // UNSET inherits from the parent level.
    let unset = pa(
        "foo",
        "httpbin",
        "  selector:\n    matchLabels: {app: httpbin}\n  mtls: {mode: UNSET}\n  portLevelMtls:\n    8080: {mode: STRICT}\n    8000: {mode: UNSET}",
    );
    let c = cluster(&(meshwide + &ns + &unset));
    assert_eq!(
        mode(&c, "foo", "httpbin"),
        (MtlsMode::Permissive, vec![(8080, MtlsMode::Strict)])
    );
}

// Two namespace-wide policies: Istio takes the oldest; Palisade, without
// timestamps, takes the first by name and lint warns.
#[test]
fn conflicting_namespace_policies_pick_first_by_name_and_lint_warns() {
    let c = cluster(
        &(pa("foo", "b-strict", "  mtls: {mode: STRICT}")
            + &pa("foo", "a-disable", "  mtls: {mode: DISABLE}")),
    );
    assert_eq!(mode(&c, "foo", "httpbin").0, MtlsMode::Disable);
    let findings = palisade_control::lint::lint(&c);
    assert!(
        findings
            .iter()
            .any(|f| f.code == "conflicting-peer-authentication"),
        "{findings:#?}"
    );
}

// Istio `ComposePeerAuthentication` (pilot/pkg/security/authn): a policy
// with `spec.Selector == nil || len(spec.Selector.MatchLabels) == 0` is
// namespace-level (mesh-level in the root namespace); a policy with a
// selector counts as workload-level only `else if cfg.Namespace !=
// rootNamespace` ("Workload-level configs should not be in root namespace
// ... they will be safely ignored").
#[test]
fn peer_authentication_empty_selector_and_root_namespace_selector() {
    let gw = pod("istio-system", "gw", "gw", "{app: gw}", "198.18.9.10");
    // Empty matchLabels in the root namespace: mesh-wide.
    let c = cluster(&pa(
        "istio-system",
        "default",
        "  selector:\n    matchLabels: {}\n  mtls: {mode: STRICT}",
    ));
    assert_eq!(mode(&c, "foo", "httpbin").0, MtlsMode::Strict);
    assert_eq!(mode(&c, "dev", "client").0, MtlsMode::Strict);
    // Empty matchLabels in a namespace: namespace-level, so two such
    // policies conflict and the first (oldest in Istio) wins; a real
    // workload-level policy still overrides it.
    let c = cluster(
        &(pa("foo", "a-ns", "  mtls: {mode: DISABLE}")
            + &pa(
                "foo",
                "b-empty",
                "  selector: {matchLabels: {}}\n  mtls: {mode: STRICT}",
            )),
    );
    assert_eq!(mode(&c, "foo", "httpbin").0, MtlsMode::Disable);
    // A selector policy in the root namespace is ignored, also for the root
    // namespace's own workloads.
    let c = load(&[
        &mesh(),
        &gw,
        &pa(
            "istio-system",
            "gw",
            "  selector:\n    matchLabels: {app: gw}\n  mtls: {mode: STRICT}",
        ),
    ]);
    assert_eq!(mode(&c, "istio-system", "gw").0, MtlsMode::Permissive);
    assert_eq!(mode(&c, "foo", "httpbin").0, MtlsMode::Permissive);
}

// Istio `ValidatePeerAuthentication`: `emptySelector := in.Selector == nil
// || len(in.Selector.MatchLabels) == 0`; "mesh/namespace peer
// authentication cannot have port level mTLS".
#[test]
fn port_level_mtls_with_an_empty_selector_is_refused() {
    let bad = pa(
        "foo",
        "p",
        "  selector:\n    matchLabels: {}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    8080: {mode: DISABLE}",
    );
    let err = policy_support::try_load(&[&mesh(), &bad]).expect_err("must be refused");
    assert!(err.to_string().contains("portLevelMtls"), "{err}");
}

// Istio reads `istio.io/dry-run` with Go's `strconv.ParseBool` (builder
// `isDryRun`, validation `checkDryRunAnnotation`), and validation refuses
// it on other actions: "the annotation istio.io/dry-run currently only
// supports action ALLOW/DENY".
#[test]
fn dry_run_annotation_values_and_actions() {
    let with = |value: &str, action: &str| {
        ap(
            "foo",
            "dry",
            &format!("  action: {action}\n  rules:\n    - {{}}"),
        )
        .replace(
            "metadata:\n",
            &format!("metadata:\n  annotations: {{istio.io/dry-run: \"{value}\"}}\n"),
        )
    };
    for yes in ["true", "True", "TRUE", "t", "T", "1"] {
        let c = cluster(&with(yes, "DENY"));
        assert!(
            get(&c, "dev/client", "GET", "/"),
            "{yes}: dry-run, not enforced"
        );
    }
    for no in ["false", "False", "FALSE", "f", "F", "0"] {
        let c = cluster(&with(no, "DENY"));
        assert!(!get(&c, "dev/client", "GET", "/"), "{no}: enforced");
    }
    for bad in ["yes", "on", ""] {
        let docs = [mesh(), with(bad, "DENY")];
        assert!(
            policy_support::try_load(&[&docs[0], &docs[1]]).is_err(),
            "{bad:?} is not a boolean"
        );
    }
    let docs = [mesh(), with("true", "AUDIT")];
    let err = policy_support::try_load(&[&docs[0], &docs[1]]).expect_err("AUDIT dry-run");
    assert!(err.to_string().contains("dry-run"), "{err}");
}

// Istio `serviceAccountRegex`: "The specifier takes a `<name>` or
// `<namespace>/<name>` value. If namespace is elided, defaultNamespace is
// used" (the policy's namespace), for `serviceAccounts` and for the `when`
// key `source.serviceAccount` alike.
#[test]
fn source_service_account_condition_defaults_to_the_policy_namespace() {
    let c = cluster(&ap(
        "foo",
        "sa",
        "  action: ALLOW\n  rules:\n    - when:\n        - key: source.serviceAccount\n          values: [\"other\", \"default/sleep\"]",
    ));
    assert!(get(&c, "foo/other", "GET", "/"));
    assert!(get(&c, "default/sleep", "GET", "/"));
    assert!(!get(&c, "test/client", "GET", "/"));
}

// Istio `ValidateAuthorizationPolicy`: "`from` must not be empty" (`rule.From
// != nil && len(rule.From) == 0`) and "`to` must not be empty": an explicit
// empty list is refused, not read as "any source" or "any operation".
#[test]
fn explicit_empty_from_or_to_is_refused() {
    for (rule, field) in [("    - from: []", "from"), ("    - to: []", "to")] {
        let doc = ap("foo", "p", &format!("  action: DENY\n  rules:\n{rule}"));
        let err = policy_support::try_load(&[&mesh(), &doc]).expect_err(rule);
        assert!(
            err.to_string().contains(&format!("rules[0].{field}")),
            "{err}"
        );
    }
}
