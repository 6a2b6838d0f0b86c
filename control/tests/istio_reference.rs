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

// Two namespace-wide policies: Istio takes the oldest; without timestamps
// both carry Go's zero time, so the first by name wins, and lint warns.
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

/// A PeerAuthentication with `metadata.creationTimestamp` (YAML written
/// verbatim, so `null` and non-strings can be tried).
fn pa_at(ns: &str, name: &str, created: Option<&str>, spec: &str) -> String {
    let doc = pa(ns, name, spec);
    match created {
        Some(t) => doc.replace(
            &format!("  name: {name}\n"),
            &format!("  name: {name}\n  creationTimestamp: {t}\n"),
        ),
        None => doc,
    }
}

/// `(decided_by, workload_policy)` of a pod's effective mTLS.
fn deciders(c: &Cluster, ns: &str, name: &str) -> (Option<String>, Option<String>) {
    let compiler = Compiler::new(c);
    let m = compiler.effective_mtls(c.pod_index(ns, name).unwrap());
    (m.decided_by.clone(), m.workload_policy.clone())
}

const OLD: &str = "2024-01-02T03:04:05Z";
const NEW: &str = "2024-06-01T00:00:00Z";

// Istio pilot/pkg/model/config.go, `sortConfigByCreationTime`:
//   if r := configs[i].CreationTimestamp.Compare(configs[j].CreationTimestamp); r != 0 {
//       return r == -1 // -1 means i is less than j, so return true
//   }
//   // If creation time is the same, then behavior is nondeterministic. In this case, we can
//   // pick an arbitrary but consistent ordering based on name and namespace, which is unique.
//   if r := cmp.Compare(configs[i].Name, configs[j].Name); r != 0 { return r == -1 }
//   return cmp.Compare(configs[i].Namespace, configs[j].Namespace) == -1
// pilot/pkg/model/authentication.go, `addPeerAuthentication`: "Track which
// namespace/mesh level policy seen so far to make sure the oldest one is
// used", "Namespace/mesh-level PeerAuthentication is already defined ...
// Ignore ...".
// pilot/pkg/security/authn/policy_applier.go, `ComposePeerAuthentication`:
// "When there are more than one policy in the same scope (i.e
// workload-level), the oldest one win", `if meshCfg == nil ||
// cfg.CreationTimestamp.Before(meshCfg.CreationTimestamp)` (likewise
// namespaceCfg, workloadCfg): strict, so on equal times the earlier in the
// sorted list, the first by name, stays.
#[test]
fn same_level_peer_authentications_oldest_wins_regardless_of_name() {
    // Mesh level (root namespace istio-system): `z-old` sorts last by name
    // but is older.
    let c = cluster(
        &(pa_at("istio-system", "a-new", Some(NEW), "  mtls: {mode: STRICT}")
            + &pa_at(
                "istio-system",
                "z-old",
                Some(OLD),
                "  mtls: {mode: DISABLE}",
            )),
    );
    assert_eq!(mode(&c, "foo", "httpbin").0, MtlsMode::Disable);
    assert_eq!(mode(&c, "dev", "client").0, MtlsMode::Disable);
    assert_eq!(
        deciders(&c, "foo", "httpbin").0.as_deref(),
        Some("istio-system/z-old")
    );
    // Swap the ages: now `a-new` is the older one and wins.
    let c = cluster(
        &(pa_at("istio-system", "a-new", Some(OLD), "  mtls: {mode: STRICT}")
            + &pa_at(
                "istio-system",
                "z-old",
                Some(NEW),
                "  mtls: {mode: DISABLE}",
            )),
    );
    assert_eq!(mode(&c, "foo", "httpbin").0, MtlsMode::Strict);

    // Namespace level.
    let c = cluster(
        &(pa_at("foo", "a-strict", Some(NEW), "  mtls: {mode: STRICT}")
            + &pa_at("foo", "b-disable", Some(OLD), "  mtls: {mode: DISABLE}")),
    );
    assert_eq!(mode(&c, "foo", "httpbin").0, MtlsMode::Disable);
    assert_eq!(mode(&c, "dev", "client").0, MtlsMode::Permissive);
    // The older namespace-level policy wins even when it is UNSET: it
    // inherits from the mesh level rather than letting the newer one count.
    let c = cluster(
        &(pa_at(
            "istio-system",
            "default",
            Some(NEW),
            "  mtls: {mode: PERMISSIVE}",
        ) + &pa_at("foo", "a-strict", Some(NEW), "  mtls: {mode: STRICT}")
            + &pa_at("foo", "b-unset", Some(OLD), "  mtls: {mode: UNSET}")),
    );
    assert_eq!(mode(&c, "foo", "httpbin").0, MtlsMode::Permissive);

    // Workload level: both select httpbin; the older one decides the mode
    // and its portLevelMtls.
    let sel = "  selector:\n    matchLabels: {app: httpbin}\n";
    let c = cluster(
        &(pa_at(
            "foo",
            "a-new",
            Some(NEW),
            &format!(
                "{sel}  mtls: {{mode: STRICT}}\n  portLevelMtls:\n    8080: {{mode: DISABLE}}"
            ),
        ) + &pa_at(
            "foo",
            "b-old",
            Some(OLD),
            &format!(
                "{sel}  mtls: {{mode: DISABLE}}\n  portLevelMtls:\n    8000: {{mode: STRICT}}"
            ),
        )),
    );
    assert_eq!(
        mode(&c, "foo", "httpbin"),
        (MtlsMode::Disable, vec![(8000, MtlsMode::Strict)])
    );
    assert_eq!(
        deciders(&c, "foo", "httpbin").1.as_deref(),
        Some("foo/b-old")
    );
    // `other` is not selected by either.
    assert_eq!(mode(&c, "foo", "other").0, MtlsMode::Permissive);
}

// `sortConfigByCreationTime`: "If creation time is the same ... ordering
// based on name and namespace"; `ComposePeerAuthentication` keeps the first
// on a tie (`Before` is strict).
#[test]
fn same_level_peer_authentications_equal_timestamps_fall_back_to_name() {
    // Mesh level.
    let c = cluster(
        &(pa_at(
            "istio-system",
            "b-disable",
            Some(OLD),
            "  mtls: {mode: DISABLE}",
        ) + &pa_at(
            "istio-system",
            "a-strict",
            Some(OLD),
            "  mtls: {mode: STRICT}",
        )),
    );
    assert_eq!(mode(&c, "foo", "httpbin").0, MtlsMode::Strict);
    // Namespace level; the same instant written with another offset and
    // fractional zeros is still a tie.
    let c = cluster(
        &(pa_at("foo", "b-strict", Some(OLD), "  mtls: {mode: STRICT}")
            + &pa_at(
                "foo",
                "a-disable",
                Some("2024-01-02T05:04:05.000+02:00"),
                "  mtls: {mode: DISABLE}",
            )),
    );
    assert_eq!(mode(&c, "foo", "httpbin").0, MtlsMode::Disable);
    // Workload level.
    let sel = "  selector:\n    matchLabels: {app: httpbin}\n";
    let c = cluster(
        &(pa_at(
            "foo",
            "b-disable",
            Some(NEW),
            &format!("{sel}  mtls: {{mode: DISABLE}}"),
        ) + &pa_at(
            "foo",
            "a-strict",
            Some(NEW),
            &format!("{sel}  mtls: {{mode: STRICT}}"),
        )),
    );
    assert_eq!(mode(&c, "foo", "httpbin").0, MtlsMode::Strict);
    assert_eq!(
        deciders(&c, "foo", "httpbin").1.as_deref(),
        Some("foo/a-strict")
    );
}

// A config without `metadata.creationTimestamp` (or with `null`, which
// `metav1.Time.UnmarshalJSON` reads as `time.Time{}`) carries Go's zero
// time, 0001-01-01T00:00:00Z, and `Compare` puts it before any real time:
// it wins over a timestamped policy on the same level, whatever the names.
// Offsets and fractions compare as instants (`time.Time.Compare`).
#[test]
fn same_level_peer_authentications_missing_timestamp_is_oldest() {
    for missing in [None, Some("null"), Some("~")] {
        let c = cluster(
            &(pa_at("foo", "a-strict", Some(OLD), "  mtls: {mode: STRICT}")
                + &pa_at("foo", "z-none", missing, "  mtls: {mode: DISABLE}")),
        );
        assert_eq!(
            mode(&c, "foo", "httpbin").0,
            MtlsMode::Disable,
            "{missing:?}"
        );
        let c = cluster(
            &(pa_at(
                "istio-system",
                "a-strict",
                Some(OLD),
                "  mtls: {mode: STRICT}",
            ) + &pa_at("istio-system", "z-none", missing, "  mtls: {mode: DISABLE}")),
        );
        assert_eq!(
            mode(&c, "dev", "client").0,
            MtlsMode::Disable,
            "{missing:?}"
        );
    }
    // 03:04:05+02:00 is 01:04:05Z, older than 02:00:00Z.
    let c = cluster(
        &(pa_at(
            "foo",
            "a-strict",
            Some("2024-01-02T02:00:00Z"),
            "  mtls: {mode: STRICT}",
        ) + &pa_at(
            "foo",
            "b-disable",
            Some("\"2024-01-02T03:04:05+02:00\""),
            "  mtls: {mode: DISABLE}",
        )),
    );
    assert_eq!(mode(&c, "foo", "httpbin").0, MtlsMode::Disable);
    // Sub-second precision counts.
    let c = cluster(
        &(pa_at(
            "foo",
            "a-strict",
            Some("2024-01-02T03:04:05.5Z"),
            "  mtls: {mode: STRICT}",
        ) + &pa_at(
            "foo",
            "b-disable",
            Some("2024-01-02T03:04:05.25Z"),
            "  mtls: {mode: DISABLE}",
        )),
    );
    assert_eq!(mode(&c, "foo", "httpbin").0, MtlsMode::Disable);
}

// Kubernetes parses `creationTimestamp` with `time.Parse(time.RFC3339, ...)`
// (`metav1.Time.UnmarshalJSON`); anything else is a load error naming the
// object and the field, never a panic.
#[test]
fn unparsable_creation_timestamp_is_a_load_error() {
    for bad in [
        "yesterday",
        "\"\"",
        "2024-01-02",
        "2024-13-02T03:04:05Z",
        "2024-01-02T03:04:05",
        "1704164645",
        "[2024]",
    ] {
        let doc = pa_at("foo", "p", Some(bad), "  mtls: {mode: STRICT}");
        let err = policy_support::try_load(&[&mesh(), &doc]).expect_err(bad);
        let text = err.to_string();
        assert!(text.contains("PeerAuthentication foo/p"), "{bad}: {text}");
        assert!(text.contains("metadata.creationTimestamp"), "{bad}: {text}");
        assert!(text.contains("RFC 3339"), "{bad}: {text}");
    }
    // Reported together with an error in the spec.
    let doc = pa_at("foo", "p", Some("yesterday"), "  mtls: {mode: SOMETIMES}");
    let text = policy_support::try_load(&[&mesh(), &doc])
        .expect_err("two errors")
        .to_string();
    assert!(text.starts_with("2 errors"), "{text}");
    // Kubernetes' own form loads.
    let doc = pa_at("foo", "p", Some(OLD), "  mtls: {mode: STRICT}");
    let c = cluster(&doc);
    assert_eq!(
        c.peer_authentications[0]
            .creation_timestamp
            .map(|t| t.unix_timestamp()),
        Some(1_704_164_645)
    );
}

// The lint keeps warning about same-level conflicts and names the policy
// that wins by Istio's order.
#[test]
fn conflicting_peer_authentication_lint_names_the_oldest() {
    let c = cluster(
        &(pa_at("foo", "a-strict", Some(NEW), "  mtls: {mode: STRICT}")
            + &pa_at("foo", "b-disable", Some(OLD), "  mtls: {mode: DISABLE}")),
    );
    let findings = palisade_control::lint::lint(&c);
    let f = findings
        .iter()
        .find(|f| f.code == "conflicting-peer-authentication")
        .unwrap_or_else(|| panic!("{findings:#?}"));
    assert!(f.message.contains("(a-strict, b-disable)"), "{}", f.message);
    assert!(f.message.ends_with("(b-disable)"), "{}", f.message);
    assert!(
        !f.message.contains("Palisade the first by name"),
        "{}",
        f.message
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

/// A workload's mode and its mode on each of some ports.
type Modes = (MtlsMode, Vec<(u16, MtlsMode)>);

/// The effective mode of `my-ns/foo` per port: `(mode, [(port, mode)])`
/// for ports 80, 90, 100 and 8000.
fn compose(policies: &str) -> Modes {
    let mesh_config = "---\napiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec:\n  rootNamespace: root-namespace\n";
    let workload = pod(
        "my-ns",
        "foo",
        "foo",
        "{app: foo, stage: prod}",
        "198.18.7.10",
    );
    let c = load(&[mesh_config, &workload, policies]);
    let compiler = Compiler::new(&c);
    let m = compiler.effective_mtls(c.pod_index("my-ns", "foo").unwrap());
    let ports = [80, 90, 100, 8000]
        .into_iter()
        .map(|p| (p, m.port_mtls.get(&p).copied().unwrap_or(m.mode)))
        .collect();
    (m.mode, ports)
}

// pilot/pkg/security/authn/policy_applier_test.go, `TestComposePeerAuthentication`
// (root namespace "root-namespace", here set by MeshConfig), every case by
// name; "second ago" and "second later" share a timestamp, so the first by
// name wins (names without spaces, as Kubernetes requires).
#[test]
fn compose_peer_authentication_upstream_table() {
    use MtlsMode::{Disable, Permissive, Strict};
    let at = |ns: &str, name: &str, t: &str, spec: &str| pa_at(ns, name, Some(t), spec);
    let (now, ago) = ("2024-06-01T00:00:01Z", "2024-06-01T00:00:00Z");
    let all = |m: MtlsMode| (m, vec![(80, m), (90, m), (100, m), (8000, m)]);
    let sel = |labels: &str| format!("  selector:\n    matchLabels: {labels}\n");
    let cases: Vec<(&str, String, Modes)> = vec![
        ("no config", String::new(), all(Permissive)),
        (
            "mesh only",
            pa("root-namespace", "default", "  mtls: {mode: STRICT}"),
            all(Strict),
        ),
        (
            "mesh vs namespace",
            pa(
                "root-namespace",
                "default",
                "  selector: {matchLabels: {}}\n  mtls: {mode: STRICT}",
            ) + &pa("my-ns", "default", "  mtls: {mode: PERMISSIVE}"),
            all(Permissive),
        ),
        (
            "ignore non-emptypb selector in root namespace",
            pa(
                "root-namespace",
                "default",
                &(sel("{app: foo}") + "  mtls: {mode: STRICT}"),
            ),
            all(Permissive),
        ),
        (
            "workload vs namespace config",
            pa("my-ns", "default", "  {}") + &pa("my-ns", "foo", &sel("{app: foo}")),
            all(Permissive),
        ),
        (
            "workload vs mesh config",
            pa("my-ns", "default", "  mtls: {mode: PERMISSIVE}")
                + &pa("root-namespace", "default", "  mtls: {mode: DISABLE}"),
            all(Permissive),
        ),
        (
            "multiple mesh policy",
            at("root-namespace", "now", now, "  mtls: {mode: DISABLE}")
                + &at(
                    "root-namespace",
                    "second-ago",
                    ago,
                    "  mtls: {mode: PERMISSIVE}",
                )
                + &at(
                    "root-namespace",
                    "second-later",
                    ago,
                    "  mtls: {mode: STRICT}",
                ),
            all(Permissive),
        ),
        (
            "multiple namespace policy",
            at("my-ns", "now", now, "  mtls: {mode: DISABLE}")
                + &at("my-ns", "second-ago", ago, "  mtls: {mode: PERMISSIVE}")
                + &at("my-ns", "second-later", ago, "  mtls: {mode: STRICT}"),
            all(Permissive),
        ),
        (
            "multiple workload policy",
            at(
                "my-ns",
                "now",
                now,
                &(sel("{app: foo}") + "  mtls: {mode: DISABLE}"),
            ) + &at(
                "my-ns",
                "second-ago",
                ago,
                &(sel("{app: foo}") + "  mtls: {mode: PERMISSIVE}"),
            ) + &at(
                "my-ns",
                "second-later",
                ago,
                &(sel("{stage: prod}") + "  mtls: {mode: STRICT}"),
            ),
            all(Permissive),
        ),
        (
            "inheritance: default mesh",
            pa("root-namespace", "default", "  mtls: {mode: UNSET}"),
            all(Permissive),
        ),
        (
            "inheritance: mesh to workload",
            pa("root-namespace", "default", "  mtls: {mode: STRICT}")
                + &pa("my-ns", "foo", &sel("{app: foo}")),
            all(Strict),
        ),
        (
            "inheritance: namespace to workload",
            pa("my-ns", "default", "  mtls: {mode: STRICT}")
                + &pa("my-ns", "foo", &sel("{app: foo}")),
            all(Strict),
        ),
        (
            "inheritance: mesh to namespace to workload",
            pa("root-namespace", "default", "  mtls: {mode: STRICT}")
                + &pa("my-ns", "default", "  mtls: {mode: UNSET}")
                + &pa("my-ns", "foo", &sel("{app: foo}")),
            all(Strict),
        ),
        (
            "port level",
            pa("root-namespace", "default", "  mtls: {mode: STRICT}")
                + &pa(
                    "my-ns",
                    "foo",
                    &(sel("{app: foo}")
                        + "  portLevelMtls:\n    80: {mode: DISABLE}\n    90: {mode: UNSET}\n    100: {}"),
                ),
            (
                Strict,
                vec![(80, Disable), (90, Strict), (100, Strict), (8000, Strict)],
            ),
        ),
    ];
    for (name, policies, want) in cases {
        assert_eq!(compose(&policies), want, "{name}");
    }
    // The istio-system policy is an ordinary namespace policy once the root
    // namespace is elsewhere.
    let ns_policy = pa("istio-system", "default", "  mtls: {mode: STRICT}");
    assert_eq!(
        compose(&ns_policy),
        all(Permissive),
        "istio-system is not root"
    );
}

// tests/integration/security/authz_test.go, `TestAuthz_WorkloadSelector`
// with testdata workload.yaml.tmpl, workload-bad.yaml.tmpl (a selector that
// matches no pod), workload-ns.yaml.tmpl (namespace-wide, in two
// namespaces) and workload-system-ns.yaml.tmpl (a selector policy in the
// root namespace "selects workloads for the service in all namespaces").
#[test]
fn workload_selector_scopes_upstream_scenario() {
    let allow_path = |ns: &str, name: &str, selector: &str, path: &str| {
        ap(
            ns,
            name,
            &format!(
                "{selector}  rules:\n    - to:\n        - operation:\n            paths: [\"{path}\"]"
            ),
        )
    };
    let sel = |labels: &str| format!("  selector:\n    matchLabels: {labels}\n");
    let policies = [
        allow_path(
            "foo",
            "policy-httpbin",
            &sel("{app: httpbin}"),
            "/policy-foo-httpbin",
        ),
        allow_path(
            "foo",
            "policy-other",
            &sel("{app: other}"),
            "/policy-foo-other",
        ),
        allow_path(
            "foo",
            "policy-httpbin-bad",
            &sel("{app: httpbin, foo: bla}"),
            "/policy-foo-httpbin-bad",
        ),
        allow_path("foo", "policy-ns-all", "", "/policy-foo-all"),
        allow_path("test", "policy-ns-all", "", "/policy-test-all"),
        allow_path(
            "istio-system",
            "policy-system-httpbin",
            &sel("{app: httpbin}"),
            "/policy-system-httpbin",
        ),
        allow_path(
            "istio-system",
            "policy-system-other",
            &sel("{app: other}"),
            "/policy-system-other",
        ),
    ]
    .concat();
    let c = cluster(&policies);
    for (path, want) in [
        ("/policy-foo-httpbin-bad", false),
        ("/policy-foo-all", true),
        ("/policy-test-all", false),
        ("/policy-foo-httpbin", true),
        ("/policy-system-httpbin", true),
        ("/policy-foo-other", false),
        ("/policy-system-other", false),
    ] {
        assert_eq!(get(&c, "dev/client", "GET", path), want, "{path}");
    }
    // The root namespace's selector policy reaches a matching pod in any
    // namespace, and makes it default-deny there too.
    let more = pod(
        "test",
        "httpbin",
        "httpbin",
        "{app: httpbin}",
        "198.18.3.11",
    );
    let c = load(&[&mesh(), &more, &policies]);
    let at = |path: &str| {
        allowed(&req(
            &c,
            "dev/client",
            "test/httpbin",
            8000,
            Some(("GET", path)),
            false,
        ))
    };
    assert!(at("/policy-system-httpbin"));
    assert!(at("/policy-test-all"));
    assert!(!at("/policy-foo-all"));
    assert!(!at("/"));
}

// tests/integration/security/testdata/authz/plaintext.yaml.tmpl ("This
// authz policy denies access to the service if the request was not mTLS,
// since mTLS is required in order to match source principals"): a
// PERMISSIVE namespace, a DENY with `notPrincipals: ["*"]`; and
// not-namespace.yaml.tmpl (DENY `notNamespaces: [allowed]`). A plaintext
// peer has no principal and no namespace, so both `not` forms match it.
#[test]
fn plaintext_peers_match_not_principals_and_not_namespaces_in_deny() {
    let permissive = pa("foo", "ns-default", "  mtls: {mode: PERMISSIVE}");
    let deny_plain = ap(
        "foo",
        "httpbin",
        "  selector:\n    matchLabels: {app: httpbin}\n  action: DENY\n  rules:\n    - from:\n        - source:\n            notPrincipals: [\"*\"]",
    );
    let c = cluster(&(permissive.clone() + &deny_plain));
    let call = |c: &Cluster, from: &str, plaintext: bool| {
        let r = req(c, from, "foo/httpbin", 8000, Some(("GET", "/")), plaintext);
        (allowed(&r), r.endpoints[0].mtls.mtls)
    };
    assert_eq!(call(&c, "test/client", false), (true, true));
    assert_eq!(call(&c, "test/client", true), (false, false));
    let deny_ns = ap(
        "foo",
        "httpbin-deny",
        "  selector:\n    matchLabels: {app: httpbin}\n  action: DENY\n  rules:\n    - from:\n        - source:\n            notNamespaces: [test]",
    );
    let c = cluster(&(permissive + &deny_ns));
    assert_eq!(call(&c, "test/client", false), (true, true));
    assert_eq!(call(&c, "dev/client", false), (false, true));
    assert_eq!(call(&c, "test/client", true), (false, false));
    // With DISABLE the caller's sidecar sends plaintext, so the same DENY
    // catches even a mesh caller.
    let disable = pa("foo", "ns-default", "  mtls: {mode: DISABLE}");
    let c = cluster(&(disable + &deny_ns));
    assert_eq!(call(&c, "test/client", false), (false, false));
}

/// `mesh()` plus what makes ports opaque: Service foo/httpbin with an HTTP
/// port 80 -> 8000, a port named `tcp-raw` 9001 -> 8080, a port with
/// `appProtocol: tcp` 9002 -> 9000, and a port with `appProtocol: https`
/// 9443 -> 8000 (not HTTP for the caller's sidecar, which tunnels it, but
/// 8000 itself stays HTTP at the pod); pod foo/db with 7000 in its
/// `palisade.dev/opaque-ports` annotation.
fn opaque_mesh(policies: &str) -> Cluster {
    let services = "---\napiVersion: v1\nkind: Service\nmetadata: {namespace: foo, name: httpbin}\nspec:\n  clusterIP: 10.96.0.20\n  selector: {app: httpbin}\n  ports:\n    - {name: http, port: 80, targetPort: 8000}\n    - {name: tcp-raw, port: 9001, targetPort: 8080}\n    - {name: raw, appProtocol: tcp, port: 9002, targetPort: 9000}\n    - {name: secure, appProtocol: https, port: 9443, targetPort: 8000}\n";
    let db = pod("foo", "db", "db", "{app: db}", "198.18.1.12").replace(
        "  labels: {app: db}\n",
        "  labels: {app: db}\n  annotations: {palisade.dev/opaque-ports: \"7000\"}\n",
    );
    load(&[&mesh(), services, &db, policies])
}

/// `GET /` from test/client to `to` (`NS/POD` or `svc:NS/NAME`) on `port`.
fn get_to(c: &Cluster, to: &str, port: u16, plaintext: bool) -> CheckReport {
    let compiler = Compiler::new(c);
    let mut r = request(c, "test/client", "foo/httpbin", port, Protocol::Tcp);
    r.destination = check::request::parse_destination(c, to).unwrap();
    r.http = Some(HttpSpec {
        method: "GET".into(),
        path: "/".into(),
        host: None,
        headers: vec![],
    });
    r.plaintext = plaintext;
    check::check(&compiler, &r).unwrap()
}

// Istio, "Authorization on TCP traffic" and the policy model (`checkError`):
// on TCP traffic an ALLOW rule with HTTP-only fields is skipped and a DENY
// rule drops them and matches. A port the sidecars treat as opaque TCP (a
// Service port named `tcp`/`tcp-*` or with a non-HTTP `appProtocol`, the
// opaque-ports annotation, a server-first port) is tunnelled, and
// authorized once with the L4 fields, even when the client speaks HTTP over
// it: `check` with `--method/--path` judges it as TCP, and says why.
#[test]
fn opaque_ports_are_judged_as_tcp_even_with_an_http_request() {
    let allow_get = ap(
        "foo",
        "allow-get",
        "  rules:\n    - to:\n        - operation: {methods: [GET]}",
    );
    let c = opaque_mesh(&allow_get);
    // HTTP ports: the request is judged as HTTP.
    for (to, port) in [
        ("svc:foo/httpbin", 80),
        ("foo/httpbin", 8000),
        ("foo/db", 8000),
    ] {
        let r = get_to(&c, to, port, false);
        assert!(allowed(&r), "{to}:{port} {r:#?}");
        assert_eq!(r.endpoints[0].authorization.traffic, "http", "{to}:{port}");
    }
    // Opaque ports: TCP, where the ALLOW rule with a method is skipped.
    for (to, port, why) in [
        (
            "svc:foo/httpbin",
            9001,
            "Service foo/httpbin port 9001 targets it and is named \"tcp-raw\"",
        ),
        (
            "foo/httpbin",
            8080,
            "Service foo/httpbin port 9001 targets it and is named \"tcp-raw\"",
        ),
        (
            "svc:foo/httpbin",
            9002,
            "Service foo/httpbin port 9002 targets it and has appProtocol \"tcp\"",
        ),
        (
            "foo/db",
            7000,
            "port 7000 is listed in the pod's palisade.dev/opaque-ports annotation",
        ),
        (
            "foo/httpbin",
            5432,
            "port 5432 is a well-known server-first port",
        ),
        (
            "foo/httpbin",
            4444,
            "port 4444 is a well-known server-first port",
        ),
        (
            "svc:foo/httpbin",
            9443,
            "Service foo/httpbin port 9443 has appProtocol \"https\", which is not HTTP",
        ),
    ] {
        let r = get_to(&c, to, port, false);
        let authz = &r.endpoints[0].authorization;
        assert!(!allowed(&r), "{to}:{port} {r:#?}");
        assert_eq!(authz.traffic, "tcp", "{to}:{port}");
        assert_eq!(authz.reason, "no-allow-policy-matched", "{to}:{port}");
        assert!(
            authz
                .detail
                .contains("GET / was not considered, because the port is opaque")
                && authz.detail.contains(why),
            "{to}:{port}: {}",
            authz.detail
        );
    }
    // A plaintext caller has no sidecar to tunnel the `https` Service port:
    // the destination detects HTTP on 8000 (PERMISSIVE by default).
    let r = get_to(&c, "svc:foo/httpbin", 9443, true);
    assert!(allowed(&r), "{r:#?}");
    assert_eq!(r.endpoints[0].authorization.traffic, "http");

    // A DENY rule with only HTTP fields drops them on TCP and matches.
    let deny_post = ap(
        "foo",
        "deny-post",
        "  action: DENY\n  rules:\n    - to:\n        - operation: {methods: [POST]}",
    );
    let c = opaque_mesh(&deny_post);
    assert!(allowed(&get_to(&c, "svc:foo/httpbin", 80, false)));
    for (to, port) in [("svc:foo/httpbin", 9001), ("foo/httpbin", 8080)] {
        let r = get_to(&c, to, port, false);
        assert!(!allowed(&r), "{to}:{port} {r:#?}");
        let authz = &r.endpoints[0].authorization;
        assert_eq!(authz.reason, "deny-policy-matched");
        assert_eq!(authz.policy.as_deref(), Some("foo/deny-post"));
    }
}
