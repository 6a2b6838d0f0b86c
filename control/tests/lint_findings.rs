//! `palisade lint`: each pitfall is found, with its severity, and a clean
//! configuration has no warnings.
mod policy_support;

use palisade_control::lint::{Finding, Severity, lint};
use policy_support::{load, xyz_topology};

fn findings(extra: &str) -> Vec<Finding> {
    let topology = xyz_topology();
    lint(&load(&[&topology, extra]))
}

/// `f` has a finding of `severity` and `code` on `object` whose message
/// contains `text`.
#[track_caller]
fn assert_has(f: &[Finding], severity: Severity, code: &str, object: &str, text: &str) {
    let found = f.iter().any(|x| {
        x.severity == severity && x.code == code && x.object == object && x.message.contains(text)
    });
    assert!(
        found,
        "no {severity:?} {code} on {object} with {text:?}: {f:#?}"
    );
}

/// The objects that have a finding of `code`, in the findings' order.
fn objects_with<'a>(f: &'a [Finding], code: &str) -> Vec<&'a str> {
    f.iter()
        .filter(|x| x.code == code)
        .map(|x| x.object.as_str())
        .collect()
}

fn np(name: &str, spec: &str) -> String {
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: x\n  name: {name}\nspec:\n{spec}\n"
    )
}

#[test]
fn clean_topology_has_only_infos() {
    let f = findings("");
    assert!(f.iter().all(|x| x.severity == Severity::Info), "{f:#?}");
    assert_has(
        &f,
        Severity::Info,
        "permissive-mtls",
        "Namespace x",
        "3 pod(s) accept plaintext",
    );
}

#[test]
fn selectors_that_select_nothing() {
    let f = findings(&np(
        "p",
        "  podSelector:\n    matchLabels: {pod: zzz}\n  ingress:\n    - from:\n        - podSelector:\n            matchLabels: {pod: nobody}\n        - namespaceSelector:\n            matchLabels: {team: none}",
    ));
    assert_has(
        &f,
        Severity::Warning,
        "selects-nothing",
        "NetworkPolicy x/p",
        "spec.podSelector {pod=zzz} selects no pod",
    );
    assert_has(
        &f,
        Severity::Warning,
        "selects-nothing",
        "NetworkPolicy x/p",
        "podSelector{pod=nobody}",
    );
    assert_has(
        &f,
        Severity::Warning,
        "namespace-selector-matches-nothing",
        "NetworkPolicy x/p",
        "{team=none}",
    );
}

#[test]
fn named_ports_no_pod_declares() {
    let f = findings(&np(
        "p",
        "  podSelector: {}\n  ingress:\n    - ports:\n        - port: grpc",
    ));
    assert_has(
        &f,
        Severity::Warning,
        "unknown-named-port",
        "NetworkPolicy x/p",
        "\"grpc\"",
    );
    // serve-80-udp is declared, but only for UDP: TCP does not count.
    let f = findings(&np(
        "p",
        "  podSelector: {}\n  ingress:\n    - ports:\n        - {port: serve-80-udp, protocol: TCP}",
    ));
    assert_has(
        &f,
        Severity::Warning,
        "unknown-named-port",
        "NetworkPolicy x/p",
        "serve-80-udp",
    );
}

#[test]
fn default_deny_egress_without_dns() {
    let deny = np("deny", "  podSelector: {}\n  policyTypes: [Egress]");
    let f = findings(&deny);
    assert_has(
        &f,
        Severity::Warning,
        "egress-without-dns",
        "Namespace x",
        "[a, b, c]",
    );
    let dns = np(
        "dns",
        "  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n    - ports:\n        - {port: 53, protocol: UDP}",
    );
    let f = findings(&(deny + &dns));
    assert!(!f.iter().any(|x| x.code == "egress-without-dns"), "{f:#?}");
}

#[test]
fn ip_blocks_containing_pod_ips() {
    let f = findings(&np(
        "p",
        "  podSelector: {}\n  ingress:\n    - from:\n        - ipBlock: {cidr: 198.18.2.0/24, except: [198.18.2.10/32]}",
    ));
    assert_has(
        &f,
        Severity::Warning,
        "ipblock-contains-pods",
        "NetworkPolicy x/p",
        "contains 2 pod IP(s) (e.g. y/b)",
    );
    let f = findings(&np(
        "p",
        "  podSelector: {}\n  ingress:\n    - from:\n        - ipBlock: {cidr: 203.0.113.0/24}",
    ));
    assert!(!f.iter().any(|x| x.code == "ipblock-contains-pods"));
}

#[test]
fn principals_naming_unknown_namespaces_or_service_accounts() {
    let ap = "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {namespace: x, name: ap}\nspec:\n  rules:\n    - from:\n        - source:\n            principals: [\"cluster.local/ns/ghost/sa/default\", \"cluster.local/ns/y/sa/robot\", \"other.td/ns/y/sa/default\", \"cluster.local/ns/y/sa/default\"]\n            namespaces: [\"nowhere\", \"z\"]\n";
    let f = findings(ap);
    let obj = "AuthorizationPolicy x/ap";
    assert_has(
        &f,
        Severity::Warning,
        "unknown-principal",
        obj,
        "namespace \"ghost\", which does not exist",
    );
    assert_has(
        &f,
        Severity::Warning,
        "unknown-principal",
        obj,
        "service account y/robot, which no pod uses",
    );
    assert_has(
        &f,
        Severity::Warning,
        "unknown-principal",
        obj,
        "trust domain \"other.td\"",
    );
    assert_has(
        &f,
        Severity::Warning,
        "unknown-principal",
        obj,
        "namespace \"nowhere\"",
    );
    let count = f.iter().filter(|x| x.code == "unknown-principal").count();
    assert_eq!(count, 4, "{f:#?}");

    // A federated trust domain's principals name another cluster's
    // namespaces and service accounts: neither is looked for here.
    let (_, item) = policy_support::federated_trust_domain("other.td");
    let mesh = format!(
        "---\napiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata: {{name: mesh}}\nspec:\n  federatedTrustDomains:\n{item}"
    );
    let f = findings(&format!("{ap}{mesh}"));
    let about_other: Vec<_> = f
        .iter()
        .filter(|x| x.code == "unknown-principal" && x.message.contains("other.td"))
        .collect();
    assert!(about_other.is_empty(), "{about_other:#?}");
    assert_eq!(objects_with(&f, "unknown-principal").len(), 3, "{f:#?}");
}

#[test]
fn pods_without_ip_and_services_without_endpoints() {
    let pod = "---\napiVersion: v1\nkind: Pod\nmetadata: {namespace: x, name: pending, labels: {pod: pending}}\nspec: {containers: [{name: c}]}\n";
    let svc = "---\napiVersion: v1\nkind: Service\nmetadata: {namespace: x, name: s}\nspec:\n  selector: {pod: a}\n  ports: [{port: 80, targetPort: missing}]\n";
    let f = findings(&format!("{pod}{svc}"));
    assert_has(
        &f,
        Severity::Warning,
        "pod-without-ip",
        "Pod x/pending",
        "cannot be addressed",
    );
    assert_has(
        &f,
        Severity::Error,
        "unknown-named-port",
        "Service x/s",
        "\"missing\"",
    );
}

// A completed Job pod is not a mistake: it is reported as a fact, not as a
// pod missing its address.
#[test]
fn finished_pods_are_an_info_not_a_missing_ip() {
    let pod = "---\napiVersion: v1\nkind: Pod\nmetadata: {namespace: x, name: job, labels: {pod: job}}\nspec: {containers: [{name: c}]}\nstatus: {phase: Succeeded, podIP: 198.18.9.9}\n";
    let f = findings(pod);
    assert_has(
        &f,
        Severity::Info,
        "pod-finished",
        "Pod x/job",
        "phase Succeeded",
    );
    assert!(
        !f.iter()
            .any(|x| x.code == "pod-without-ip" && x.object == "Pod x/job"),
        "{f:#?}"
    );
}

/// A hostNetwork pod on node 10.0.0.1, in namespace x.
const HOST_NETWORK_POD: &str = "---\napiVersion: v1\nkind: Pod\nmetadata: {namespace: x, name: node-agent, labels: {app: node-agent}}\nspec:\n  hostNetwork: true\n  containers: [{name: c, ports: [{containerPort: 9100}]}]\nstatus: {phase: Running, podIP: 10.0.0.1, hostIP: 10.0.0.1}\n";

// kubernetes.io, "Network Policies": the most common implementation, which
// Palisade follows, "ignores `hostNetwork` pods when matching `podSelector`
// and `namespaceSelector`". A policy whose spec.podSelector selects only
// such pods has no effect (an info); a peer that selects only them matches
// nothing (a warning, the same mistake as a peer that selects no pod); an
// ipBlock over the node's address is the documented way to allow them
// ("you can allow traffic from a `hostNetwork` Pod using an `ipBlock`
// rule"), not a pod IP in an ipBlock.
#[test]
fn policies_about_host_network_pods_only() {
    let f = findings(
        &(HOST_NETWORK_POD.to_string()
            + &np(
                "agent-only",
                "  podSelector:\n    matchLabels: {app: node-agent}\n  ingress: []",
            )
            + &np(
                "from-agent",
                "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from:\n        - podSelector:\n            matchLabels: {app: node-agent}\n        - ipBlock:\n            cidr: 10.0.0.0/24",
            )),
    );
    assert_has(
        &f,
        Severity::Info,
        "selects-only-host-network",
        "NetworkPolicy x/agent-only",
        "selects only hostNetwork pods (x/node-agent)",
    );
    assert_has(
        &f,
        Severity::Warning,
        "selects-only-host-network",
        "NetworkPolicy x/from-agent",
        "ingress peer",
    );
    for code in ["selects-nothing", "ipblock-contains-pods"] {
        assert!(
            !f.iter()
                .any(|x| x.code == code && x.object.starts_with("NetworkPolicy x/")),
            "{code}: {f:#?}"
        );
    }
    // A policy selecting hostNetwork and other pods is fine.
    let f = findings(
        &(HOST_NETWORK_POD.to_string() + &np("all", "  podSelector: {}\n  ingress:\n    - {}")),
    );
    assert!(
        !f.iter().any(|x| x.code == "selects-only-host-network"),
        "{f:#?}"
    );
}

// Istio's `ValidateAuthorizationPolicy` warns (pkg/config/validation/
// validation.go) when a DENY rule has operations and none of them names
// `ports`/`notPorts` ("configured AuthorizationPolicy will deny all traffic
// to TCP ports under its scope due to the use of only HTTP attributes in a
// DENY rule; it is recommended to explicitly specify the port"): on TCP the
// HTTP fields are dropped and the rule matches every connection of its
// sources. A rule whose operations name a port, an ALLOW or AUDIT rule, and
// a DENY rule without operations get no such warning.
#[test]
fn deny_rule_with_only_http_operations() {
    let ap = |name: &str, action: &str, rules: &str| {
        format!(
            "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{namespace: x, name: {name}}}\nspec:\n  action: {action}\n  rules:\n{rules}\n"
        )
    };
    let http_only = "    - from:\n        - source: {namespaces: [y]}\n      to:\n        - operation: {methods: [POST]}\n        - operation: {ports: [\"80\"]}\n    - to:\n        - operation: {paths: [/admin]}\n";
    let docs = [
        ap("deny-http", "DENY", http_only),
        ap("allow-http", "ALLOW", http_only),
        ap("audit-http", "AUDIT", http_only),
        ap(
            "deny-port",
            "DENY",
            "    - to:\n        - operation: {methods: [POST], notPorts: [\"9000\"]}\n",
        ),
        ap(
            "deny-when",
            "DENY",
            "    - from:\n        - source: {namespaces: [y]}\n      when:\n        - {key: \"request.headers[x-a]\", values: [b]}\n",
        ),
    ];
    let f = findings(&docs.concat());
    assert_has(
        &f,
        Severity::Warning,
        "deny-http-only-rule",
        "AuthorizationPolicy x/deny-http",
        "spec.rules[1]",
    );
    assert_eq!(
        objects_with(&f, "deny-http-only-rule"),
        ["AuthorizationPolicy x/deny-http"],
        "{f:#?}"
    );
    // Rule 0 has an operation with a port, so only rule 1 is named.
    assert!(
        !f.iter()
            .any(|x| x.code == "deny-http-only-rule" && x.message.contains("spec.rules[0]")),
        "{f:#?}"
    );
}

// Istio's validateWorkloadSelector warns "workload selector specified
// without labels": a selector with no matchLabels selects every workload of
// the namespace (the mesh, in the root namespace). Policies with labels, or
// with no selector at all, get no such warning.
#[test]
fn selectors_without_labels() {
    let ap = |ns: &str, name: &str, selector: &str| {
        format!(
            "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{namespace: {ns}, name: {name}}}\nspec:\n{selector}  action: ALLOW\n  rules:\n    - from:\n        - source: {{namespaces: [y]}}\n"
        )
    };
    let pa = |ns: &str, name: &str, selector: &str| {
        format!(
            "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{namespace: {ns}, name: {name}}}\nspec:\n{selector}  mtls: {{mode: STRICT}}\n"
        )
    };
    let docs = [
        ap("x", "empty", "  selector: {}\n"),
        ap("x", "empty-labels", "  selector: {matchLabels: {}}\n"),
        ap("istio-system", "mesh-empty", "  selector: {}\n"),
        ap("x", "labelled", "  selector: {matchLabels: {app: a}}\n"),
        ap("x", "none", ""),
        pa("x", "pa-empty", "  selector: {matchLabels: {}}\n"),
        pa("x", "pa-labelled", "  selector: {matchLabels: {app: a}}\n"),
    ];
    let f = findings(&docs.concat());
    assert_has(
        &f,
        Severity::Warning,
        "selector-without-labels",
        "AuthorizationPolicy x/empty",
        "every workload in namespace x",
    );
    assert_has(
        &f,
        Severity::Warning,
        "selector-without-labels",
        "AuthorizationPolicy istio-system/mesh-empty",
        "every workload in the mesh",
    );
    assert_has(
        &f,
        Severity::Warning,
        "selector-without-labels",
        "PeerAuthentication x/pa-empty",
        "workload selector specified without labels",
    );
    assert_eq!(
        objects_with(&f, "selector-without-labels"),
        [
            "AuthorizationPolicy istio-system/mesh-empty",
            "AuthorizationPolicy x/empty",
            "AuthorizationPolicy x/empty-labels",
            "PeerAuthentication x/pa-empty"
        ],
        "{f:#?}"
    );
}

/// A MESH_INTERNAL ServiceEntry whose endpoint identity no bundle can
/// verify (every call would fail the handshake), and one whose endpoint is
/// a pod's address (the pod's identity wins there).
#[test]
fn service_entry_identities() {
    let se = |name: &str, address: &str, san: &str| {
        format!(
            "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  namespace: x\n  name: {name}\nspec:\n  hosts: [{name}.example]\n  ports: [{{number: 80, name: http}}]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  endpoints: [{{address: {address}}}]\n  subjectAltNames: [\"{san}\"]\n"
        )
    };
    let f = findings(
        &format!(
            "{}{}{}",
            se(
                "unknown-td",
                "203.0.113.7",
                "spiffe://nowhere.test/ns/a/sa/b"
            ),
            se("local", "203.0.113.8", "spiffe://cluster.local/ns/a/sa/b"),
            se("on-a-pod", "POD_IP", "spiffe://cluster.local/ns/x/sa/other"),
        )
        .replace("POD_IP", &first_pod_ip()),
    );
    assert_has(
        &f,
        Severity::Error,
        "unverifiable-identity",
        "ServiceEntry x/unknown-td",
        "\"nowhere.test\", which is neither the mesh's nor federated",
    );
    assert_eq!(
        objects_with(&f, "unverifiable-identity"),
        ["ServiceEntry x/unknown-td"]
    );
    assert_has(
        &f,
        Severity::Warning,
        "endpoint-is-a-pod",
        "ServiceEntry x/on-a-pod",
        "the pod's own identity",
    );
}

fn first_pod_ip() -> String {
    let c = load(&[&xyz_topology()]);
    c.pods[0].ips[0].to_string()
}
