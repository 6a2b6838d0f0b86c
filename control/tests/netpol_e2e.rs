//! The upstream NetworkPolicy conformance scenarios
//! (kubernetes/kubernetes `test/e2e/network/netpol/network_policy.go`) as
//! truth-table tests over namespaces x, y, z and pods a, b, c. Each test names
//! the upstream `It(...)` it reproduces; expectations are written with the
//! same helpers (`ExpectPeer`, `ExpectAllIngress`, ...) as upstream.
mod policy_support;

use palisade_api::Protocol;
use palisade_api::Protocol::{Sctp, Tcp, Udp};
use palisade_api::l4::CompiledDirection;
use palisade_control::check::{self, CheckReport, CheckRequest, Destination, Source};
use palisade_control::cluster::PortRef;
use palisade_control::compile::Compiler;
use policy_support::{
    Peer, Reachability, allowed, check_pods, load, validate, validate_in, xyz_ip, xyz_topology,
};

/// A NetworkPolicy as upstream's generators make it: `SetSpecEgressRules`
/// also appends `policyTypes: [Egress]`, so an egress-only policy does not
/// isolate ingress (the API default would: see `policy_types_default`).
fn np(ns: &str, name: &str, spec: &str) -> String {
    let spec =
        if spec.contains("egress:") && !spec.contains("ingress") && !spec.contains("policyTypes") {
            format!("  policyTypes: [Egress]\n{spec}")
        } else {
            spec.to_string()
        };
    format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: {ns}\n  name: {name}\nspec:\n{spec}\n"
    )
}

// It("should support a 'default-deny-ingress' policy")
#[test]
fn default_deny_ingress() {
    let p = np("x", "deny-ingress", "  podSelector: {}\n  ingress: []");
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::any(), Peer::ns("x"), false);
    validate(&p, 80, Tcp, &r);
}

// It("should support a 'default-deny-all' policy")
#[test]
fn default_deny_all() {
    let p = np(
        "x",
        "deny-all",
        "  podSelector: {}\n  policyTypes: [Ingress, Egress]",
    );
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::any(), Peer::ns("x"), false);
    r.expect_peer(Peer::ns("x"), Peer::any(), false);
    validate(&p, 80, Tcp, &r);
}

// It("should enforce policy to allow traffic from pods within server namespace based on PodSelector")
#[test]
fn allow_from_pods_in_same_namespace_by_pod_selector() {
    let p = np(
        "x",
        "x-a-allows-x-b",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from:\n        - podSelector:\n            matchLabels: {pod: b}",
    );
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("x/b", "x/a", true);
    validate(&p, 80, Tcp, &r);
}

// It("should enforce policy to allow ingress traffic for a target")
#[test]
fn allow_ingress_for_a_target() {
    let p = np("x", "deny-all", "  podSelector: {}\n  ingress: []")
        + &np(
            "x",
            "allow-all-to-a",
            "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from:\n        - podSelector: {}\n          namespaceSelector: {}",
        );
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", true);
    r.expect_all_ingress("x/b", false);
    r.expect_all_ingress("x/c", false);
    validate(&p, 80, Tcp, &r);
}

// It("should enforce policy to allow ingress traffic from pods in all namespaces")
#[test]
fn allow_ingress_from_all_namespaces() {
    let p = np(
        "x",
        "allow-from-another-ns",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from:\n        - namespaceSelector: {}",
    );
    validate(&p, 80, Tcp, &Reachability::new(true));
}

// It("should enforce policy to allow traffic only from a different namespace, based on NamespaceSelector")
#[test]
fn allow_only_from_other_namespace_by_namespace_selector() {
    let p = np(
        "x",
        "allow-client-a-via-ns-selector",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels: {ns: y}",
    );
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::ns("x"), Peer::pod("x", "a"), false);
    r.expect_peer(Peer::ns("z"), Peer::pod("x", "a"), false);
    validate(&p, 80, Tcp, &r);
}

// It("should enforce policy based on PodSelector with MatchExpressions")
#[test]
fn pod_selector_match_expressions() {
    let p = np(
        "x",
        "x-a-allows-x-b",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from:\n        - podSelector:\n            matchExpressions:\n              - {key: pod, operator: In, values: [b]}",
    );
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("x/b", "x/a", true);
    validate(&p, 80, Tcp, &r);
}

// It("should enforce policy based on NamespaceSelector with MatchExpressions")
#[test]
fn namespace_selector_match_expressions() {
    let p = np(
        "x",
        "allow-ns-y-match-selector",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchExpressions:\n              - {key: ns, operator: In, values: [y]}",
    );
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::ns("x"), Peer::pod("x", "a"), false);
    r.expect_peer(Peer::ns("z"), Peer::pod("x", "a"), false);
    validate(&p, 80, Tcp, &r);
}

// It("should enforce policy based on PodSelector or NamespaceSelector")
#[test]
fn pod_selector_or_namespace_selector() {
    let p = np(
        "x",
        "allow-ns-y-match-selector",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchExpressions:\n              - {key: ns, operator: NotIn, values: [x]}\n        - podSelector:\n            matchLabels: {pod: b}",
    );
    let mut r = Reachability::new(true);
    r.expect("x/a", "x/a", false);
    r.expect("x/c", "x/a", false);
    validate(&p, 80, Tcp, &r);
}

// It("should enforce policy based on PodSelector and NamespaceSelector")
#[test]
fn pod_selector_and_namespace_selector() {
    let p = np(
        "x",
        "allow-ns-y-podselector-and-nsselector",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchExpressions:\n              - {key: ns, operator: NotIn, values: [x]}\n          podSelector:\n            matchLabels: {pod: b}",
    );
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("y/b", "x/a", true);
    r.expect("z/b", "x/a", true);
    validate(&p, 80, Tcp, &r);
}

// It("should enforce policy based on Multiple PodSelectors and NamespaceSelectors")
#[test]
fn multiple_pod_selectors_and_namespace_selectors() {
    let p = np(
        "x",
        "allow-ns-y-z-pod-b-c",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchExpressions:\n              - {key: ns, operator: NotIn, values: [x]}\n          podSelector:\n            matchExpressions:\n              - {key: pod, operator: In, values: [b, c]}",
    );
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::ns("x"), Peer::pod("x", "a"), false);
    r.expect("y/a", "x/a", false);
    r.expect("z/a", "x/a", false);
    validate(&p, 80, Tcp, &r);
}

// It("should enforce policy based on any PodSelectors")
#[test]
fn any_pod_selectors() {
    let p = np(
        "x",
        "allow-ns-x-pod-b-c",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from:\n        - podSelector:\n            matchLabels: {pod: b}\n        - podSelector:\n            matchLabels: {pod: c}",
    );
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("x/b", "x/a", true);
    r.expect("x/c", "x/a", true);
    validate(&p, 80, Tcp, &r);
}

// It("should enforce policy to allow traffic only from a pod in a different namespace based on PodSelector and NamespaceSelector")
#[test]
fn only_from_pod_in_other_namespace() {
    let p = np(
        "x",
        "allow-ns-y-pod-a-via-namespace-pod-selector",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels: {kubernetes.io/metadata.name: y}\n          podSelector:\n            matchLabels: {pod: a}",
    );
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    r.expect("y/a", "x/a", true);
    for proto in [Tcp, Udp, Sctp] {
        // Also the UDP and SCTP variants of the same upstream test.
        validate(&p, 80, proto, &r);
    }
}

fn port81_from_y(proto: &str) -> String {
    np(
        "x",
        "allow-client-a-via-ns-selector",
        &format!(
            "  podSelector:\n    matchLabels: {{pod: a}}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels: {{ns: y}}\n      ports:\n        - port: 81\n          protocol: {proto}"
        ),
    )
}

// It("should enforce policy based on Ports"), TCP, UDP and SCTP variants
#[test]
fn policy_based_on_ports() {
    for (name, proto) in [("TCP", Tcp), ("UDP", Udp), ("SCTP", Sctp)] {
        let p = port81_from_y(name);
        let mut r = Reachability::new(true);
        r.expect_peer(Peer::ns("x"), Peer::pod("x", "a"), false);
        r.expect_peer(Peer::ns("y"), Peer::pod("x", "a"), true);
        r.expect_peer(Peer::ns("z"), Peer::pod("x", "a"), false);
        validate(&p, 81, proto, &r);
    }
}

// It("should enforce multiple, stacked policies with overlapping podSelectors")
#[test]
fn stacked_policies_with_overlapping_pod_selectors() {
    let p81 = port81_from_y("TCP");
    let mut allow = Reachability::new(true);
    allow.expect_peer(Peer::ns("x"), Peer::pod("x", "a"), false);
    allow.expect_peer(Peer::ns("z"), Peer::pod("x", "a"), false);
    validate(&p81, 81, Tcp, &allow);
    let mut deny = Reachability::new(true);
    deny.expect_all_ingress("x/a", false);
    validate(&p81, 80, Tcp, &deny);
    let p80 = np(
        "x",
        "allow-client-a-via-ns-selector-80",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels: {ns: y}\n      ports:\n        - port: 80\n          protocol: TCP",
    );
    validate(&(p81 + &p80), 80, Tcp, &allow);
}

// It("should support allow-all policy")
#[test]
fn allow_all_policy() {
    let p = np("x", "allow-all", "  podSelector: {}\n  ingress:\n    - {}");
    validate(&p, 80, Tcp, &Reachability::new(true));
    validate(&p, 81, Tcp, &Reachability::new(true));
}

// It("should allow ingress access on one named port")
#[test]
fn ingress_on_one_named_port() {
    let p = np(
        "x",
        "allow-all",
        "  podSelector: {}\n  ingress:\n    - ports:\n        - port: serve-81-tcp",
    );
    validate(&p, 81, Tcp, &Reachability::new(true));
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::any(), Peer::ns("x"), false);
    validate(&p, 80, Tcp, &r);
}

// It("should allow ingress access from namespace on one named port")
#[test]
fn ingress_from_namespace_on_one_named_port() {
    let p = np(
        "x",
        "allow-client-a-via-ns-selector-80",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels: {ns: y}\n      ports:\n        - port: serve-80-tcp\n          protocol: TCP",
    );
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::ns("x"), Peer::pod("x", "a"), false);
    r.expect_peer(Peer::ns("z"), Peer::pod("x", "a"), false);
    validate(&p, 80, Tcp, &r);
    let mut fail = Reachability::new(true);
    fail.expect_all_ingress("x/a", false);
    validate(&p, 81, Tcp, &fail);
}

// It("should allow egress access on one named port")
#[test]
fn egress_on_one_named_port() {
    let p = np(
        "x",
        "allow-egress",
        "  podSelector: {}\n  egress:\n    - ports:\n        - port: serve-80-tcp",
    );
    validate(&p, 80, Tcp, &Reachability::new(true));
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::ns("x"), Peer::any(), false);
    validate(&p, 81, Tcp, &r);
}

// It("should enforce updated policy"): allow-all, then updated to `ingress: []`
#[test]
fn updated_policy_allow_all_to_deny_all() {
    let before = np(
        "x",
        "allow-all-mutate-to-deny-all",
        "  podSelector: {}\n  ingress:\n    - {}",
    );
    validate(&before, 81, Tcp, &Reachability::new(true));
    let after = np(
        "x",
        "allow-all-mutate-to-deny-all",
        "  podSelector: {}\n  ingress: []",
    );
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::any(), Peer::ns("x"), false);
    validate(&after, 81, Tcp, &r);
}

// It("should deny ingress from pods on other namespaces")
#[test]
fn deny_ingress_from_other_namespaces() {
    let p = np(
        "x",
        "deny-empty-policy",
        "  podSelector: {}\n  ingress:\n    - from:\n        - podSelector: {}",
    );
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::ns("y"), Peer::ns("x"), false);
    r.expect_peer(Peer::ns("z"), Peer::ns("x"), false);
    validate(&p, 80, Tcp, &r);
}

// It("should deny egress from pods based on PodSelector")
#[test]
fn deny_egress_by_pod_selector() {
    let p = np(
        "x",
        "deny-egress-pod-a",
        "  podSelector:\n    matchLabels: {pod: a}\n  policyTypes: [Egress]",
    );
    let mut r = Reachability::new(true);
    r.expect_all_egress("x/a", false);
    validate(&p, 80, Tcp, &r);
}

// It("should deny egress from all pods in a namespace")
#[test]
fn deny_egress_from_namespace() {
    let p = np(
        "x",
        "deny-egress-ns-x",
        "  podSelector: {}\n  policyTypes: [Egress]\n  egress: []",
    );
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::ns("x"), Peer::any(), false);
    validate(&p, 80, Tcp, &r);
}

// It("should work with Ingress, Egress specified together")
#[test]
fn ingress_and_egress_together() {
    let p = np(
        "x",
        "allow-client-a-via-pod-selector",
        "  podSelector:\n    matchLabels: {pod: a}\n  policyTypes: [Egress, Ingress]\n  ingress:\n    - from:\n        - podSelector:\n            matchLabels: {pod: b}\n  egress:\n    - ports:\n        - port: 80",
    );
    let mut r80 = Reachability::new(true);
    r80.expect_all_ingress("x/a", false);
    r80.expect("x/b", "x/a", true);
    validate(&p, 80, Tcp, &r80);
    let mut r81 = Reachability::new(true);
    r81.expect_all_ingress("x/a", false);
    r81.expect_all_egress("x/a", false);
    r81.expect("x/b", "x/a", true);
    validate(&p, 81, Tcp, &r81);
}

// It("should support denying of egress traffic on the client side (even if the server explicitly allows this traffic)")
#[test]
fn client_side_egress_deny_wins_over_server_allow() {
    let sel = "        - namespaceSelector:\n            matchLabels: {ns: x}\n          podSelector:\n            matchLabels: {pod: a}";
    let p = np(
        "x",
        "allow-to-ns-y-pod-a",
        "  podSelector:\n    matchLabels: {pod: a}\n  egress:\n    - to:\n        - namespaceSelector:\n            matchLabels: {ns: y}\n          podSelector:\n            matchLabels: {pod: a}",
    ) + &np(
        "y",
        "allow-from-xa-on-ya",
        &format!("  podSelector:\n    matchLabels: {{pod: a}}\n  ingress:\n    - from:\n{sel}"),
    ) + &np(
        "y",
        "allow-from-xa-on-yb",
        &format!("  podSelector:\n    matchLabels: {{pod: b}}\n  ingress:\n    - from:\n{sel}"),
    );
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::pod("x", "a"), Peer::any(), false);
    r.expect_peer(Peer::any(), Peer::pod("y", "a"), false);
    r.expect_peer(Peer::pod("x", "a"), Peer::pod("y", "a"), true);
    r.expect_peer(Peer::any(), Peer::pod("y", "b"), false);
    validate(&p, 80, Tcp, &r);
}

// It("should enforce ingress policy allowing any port traffic to a server on a specific protocol")
#[test]
fn any_port_on_one_protocol() {
    let p = np(
        "x",
        "allow-ingress-by-proto",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - ports:\n        - protocol: TCP",
    );
    validate(&p, 80, Tcp, &Reachability::new(true));
    let mut udp = Reachability::new(true);
    udp.expect_peer(Peer::any(), Peer::pod("x", "a"), false);
    validate(&p, 80, Udp, &udp);
}

// It("should enforce multiple ingress policies with ingress allow-all policy taking precedence")
#[test]
fn ingress_allow_all_takes_precedence() {
    let p80 = np(
        "x",
        "allow-ingress-port-80",
        "  podSelector: {}\n  ingress:\n    - ports:\n        - port: 80",
    );
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::any(), Peer::ns("x"), false);
    validate(&p80, 81, Tcp, &r);
    let all = np(
        "x",
        "allow-ingress",
        "  podSelector: {}\n  ingress:\n    - {}",
    );
    validate(&(p80 + &all), 81, Tcp, &Reachability::new(true));
}

// It("should enforce multiple egress policies with egress allow-all policy taking precedence")
#[test]
fn egress_allow_all_takes_precedence() {
    let p80 = np(
        "x",
        "allow-egress-port-80",
        "  podSelector: {}\n  egress:\n    - ports:\n        - port: 80",
    );
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::ns("x"), Peer::any(), false);
    validate(&p80, 81, Tcp, &r);
    let all = np(
        "x",
        "allow-egress",
        "  podSelector: {}\n  egress:\n    - {}",
    );
    validate(&(p80 + &all), 81, Tcp, &Reachability::new(true));
}

// It("should allow egress access to server in CIDR block")
#[test]
fn egress_to_cidr_block() {
    let p = np(
        "x",
        "allow-client-a-via-cidr-egress-rule",
        &format!(
            "  podSelector:\n    matchLabels: {{pod: a}}\n  egress:\n    - to:\n        - ipBlock:\n            cidr: {}/32",
            xyz_ip("y/b")
        ),
    );
    let mut r = Reachability::new(true);
    r.expect_all_egress("x/a", false);
    r.expect("x/a", "y/b", true);
    validate(&p, 80, Tcp, &r);
}

// It("should enforce except clause while egress access to server in CIDR block")
#[test]
fn egress_cidr_except_clause() {
    let p = np(
        "x",
        "allow-client-a-via-cidr-egress-rule",
        &format!(
            "  podSelector:\n    matchLabels: {{pod: a}}\n  egress:\n    - to:\n        - ipBlock:\n            cidr: 198.18.0.0/15\n            except: [{}/32]",
            xyz_ip("x/b")
        ),
    );
    let mut r = Reachability::new(true);
    r.expect("x/a", "x/b", false);
    validate(&p, 80, Tcp, &r);
}

// It("should ensure an IP overlapping both IPBlock.CIDR and IPBlock.Except is allowed")
#[test]
fn ip_in_cidr_and_except_allowed_by_second_policy() {
    let except = np(
        "x",
        "allow-client-a-via-cidr-egress-rule",
        &format!(
            "  podSelector:\n    matchLabels: {{pod: a}}\n  egress:\n    - to:\n        - ipBlock:\n            cidr: 198.18.0.0/15\n            except: [{}/32]",
            xyz_ip("x/b")
        ),
    );
    let mut r = Reachability::new(true);
    r.expect("x/a", "x/b", false);
    validate(&except, 80, Tcp, &r);
    // Upstream updates the same policy to allow only x/b's IP.
    let updated = np(
        "x",
        "allow-client-a-via-cidr-egress-rule",
        &format!(
            "  podSelector:\n    matchLabels: {{pod: a}}\n  egress:\n    - to:\n        - ipBlock:\n            cidr: {}/32",
            xyz_ip("x/b")
        ),
    );
    let mut allow = Reachability::new(true);
    allow.expect_all_egress("x/a", false);
    allow.expect("x/a", "x/b", true);
    validate(&updated, 80, Tcp, &allow);
    // And both together: the union allows x/b again.
    let both = except.replace("allow-client-a-via-cidr-egress-rule", "except-b") + &updated;
    validate(&both, 80, Tcp, &Reachability::new(true));
}

// It("should enforce policies to check ingress and egress policies can be controlled independently based on PodSelector")
#[test]
fn ingress_and_egress_independent() {
    let egress = np(
        "x",
        "allow-egress-for-target",
        "  podSelector:\n    matchLabels: {pod: a}\n  egress:\n    - {}",
    );
    validate(&egress, 80, Tcp, &Reachability::new(true));
    let deny = np(
        "x",
        "deny-ingress-via-label-selector",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress: []",
    );
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    validate(&(egress + &deny), 80, Tcp, &r);
}

// It("should not mistakenly treat 'protocol: SCTP' as 'protocol: TCP', even if the plugin doesn't support SCTP")
#[test]
fn sctp_is_not_tcp() {
    let p = np("x", "deny-ingress", "  podSelector: {}\n  ingress: []")
        + &np(
            "x",
            "allow-only-sctp-ingress-on-port-81",
            "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - ports:\n        - port: 81\n          protocol: SCTP",
        );
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::any(), Peer::ns("x"), false);
    validate(&p, 81, Tcp, &r);
}

// It("should properly isolate pods that are selected by a policy allowing SCTP, even if the plugin doesn't support SCTP")
#[test]
fn sctp_policy_isolates_for_tcp() {
    let p = np(
        "x",
        "allow-only-sctp-ingress-on-port-80",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - ports:\n        - port: 80\n          protocol: SCTP",
    );
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    validate(&p, 81, Tcp, &r);
}

// It("should not allow access by TCP when a policy specifies only UDP")
#[test]
fn udp_policy_does_not_allow_tcp() {
    let p = np(
        "x",
        "allow-only-udp-ingress-on-port-81",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - ports:\n        - port: 81\n          protocol: UDP",
    );
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    validate(&p, 81, Tcp, &r);
}

// It("should enforce policy to allow traffic based on NamespaceSelector with MatchLabels using default ns label")
#[test]
fn default_namespace_label_match_labels() {
    let p = np(
        "x",
        "allow-client-a-via-ns-selector-for-immutable-ns-label",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels: {kubernetes.io/metadata.name: y}",
    );
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::ns("x"), Peer::pod("x", "a"), false);
    r.expect_peer(Peer::ns("z"), Peer::pod("x", "a"), false);
    validate(&p, 80, Tcp, &r);
}

// It("should enforce policy based on NamespaceSelector with MatchExpressions using default ns label")
#[test]
fn default_namespace_label_match_expressions_egress() {
    let p = np(
        "x",
        "allow-ns-y-match-selector-for-immutable-ns-label",
        "  podSelector:\n    matchLabels: {pod: a}\n  egress:\n    - to:\n        - namespaceSelector:\n            matchExpressions:\n              - {key: kubernetes.io/metadata.name, operator: NotIn, values: [y]}",
    );
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::pod("x", "a"), Peer::ns("y"), false);
    validate(&p, 80, Tcp, &r);
}

// Kubernetes "Network Policies", endPort: "the policy allows connections on
// any port between port and endPort, inclusive". (Upstream covers it in the
// policy-assistant generator; the e2e suite has no endPort It.)
#[test]
fn end_port_range_is_inclusive() {
    let p = np(
        "x",
        "allow-80-to-81",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - ports:\n        - port: 80\n          endPort: 81\n          protocol: TCP",
    );
    validate(&p, 80, Tcp, &Reachability::new(true));
    validate(&p, 81, Tcp, &Reachability::new(true));
    let only80 = p.replace("endPort: 81", "endPort: 80");
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    validate(&only80, 81, Tcp, &r);
}

// API reference, NetworkPolicyIngressRule.from: "If this field is empty or
// missing, this rule matches all sources": `from: []` is not deny-all.
#[test]
fn empty_from_list_matches_all_sources() {
    let p = np(
        "x",
        "empty-from",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from: []\n      ports:\n        - port: 80",
    );
    validate(&p, 80, Tcp, &Reachability::new(true));
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    validate(&p, 81, Tcp, &r);
}

// API reference, policyTypes: "If this field is not specified, it will
// default based on the existence of ingress or egress rules; policies that
// contain an egress section are assumed to affect egress, and all policies
// (whether or not they contain an ingress section) are assumed to affect
// ingress." So an egress-only policy without policyTypes isolates ingress too.
#[test]
fn policy_types_default() {
    let p = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: x\n  name: egress-only\nspec:\n  podSelector:\n    matchLabels: {pod: a}\n  egress:\n    - {}\n";
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    validate(p, 80, Tcp, &r);
}

// pkg/apis/networking/v1/defaults.go, SetDefaults_NetworkPolicy: when
// policyTypes is empty, Egress is added only `if len(obj.Spec.Egress) != 0`
// (concept page: "Egress will be set if the NetworkPolicy has any egress
// rules"). `egress: []` has no rule, so it does not isolate egress.
#[test]
fn policy_types_default_ignores_an_empty_egress_list() {
    for types in ["", "  policyTypes: []\n"] {
        let p = format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: x\n  name: empty-egress\nspec:\n{types}  podSelector:\n    matchLabels: {{pod: a}}\n  ingress:\n    - {{}}\n  egress: []\n"
        );
        validate(&p, 80, Tcp, &Reachability::new(true));
    }
}

/// Two namespaces whose pods give the container port name `http` different
/// numbers (and `dns` only on UDP), for the named-port cases below.
fn named_port_topology() -> String {
    let mut out = String::new();
    for (ns, pod, ip, http) in [
        ("x", "client", "10.1.0.1", 80),
        ("y", "a", "10.2.0.1", 8080),
        ("y", "b", "10.2.0.2", 9090),
    ] {
        out += &format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  namespace: {ns}\n  name: {pod}\n  labels: {{pod: {pod}}}\nspec:\n  containers:\n    - name: c\n      ports:\n        - {{name: http, containerPort: {http}}}\n        - {{name: dns, containerPort: 53, protocol: UDP}}\n        - {{containerPort: 8080}}\n        - {{containerPort: 9090}}\nstatus:\n  podIP: {ip}\n"
        );
    }
    out
}

fn named_port_allowed(policies: &str, from: &str, to: &str, port: u16, proto: Protocol) -> bool {
    let topology = named_port_topology();
    let cluster = load(&[&topology, policies]);
    let compiler = Compiler::new(&cluster);
    allowed(&check_pods(&compiler, from, to, port, proto))
}

// API reference, NetworkPolicyPort.port: "If present, only traffic on the
// specified protocol AND port will be matched"; a named port is the
// container port of that name on the destination pod, so one egress rule
// allows different numbers towards different pods (upstream: "should allow
// egress access on one named port"; policy-assistant matches a named port
// against the destination's resolved port name and protocol).
#[test]
fn egress_named_port_resolves_per_destination_pod() {
    let p = np(
        "x",
        "egress-http",
        "  podSelector: {}\n  egress:\n    - to:\n        - namespaceSelector: {}\n      ports:\n        - port: http",
    );
    assert!(named_port_allowed(&p, "x/client", "y/a", 8080, Tcp));
    assert!(named_port_allowed(&p, "x/client", "y/b", 9090, Tcp));
    assert!(!named_port_allowed(&p, "x/client", "y/a", 9090, Tcp));
    assert!(!named_port_allowed(&p, "x/client", "y/b", 8080, Tcp));
    assert!(!named_port_allowed(&p, "x/client", "y/a", 8080, Udp));
}

// Same for ingress: "the selected pod's" port of that name, and a named port
// matches only with the policy's protocol (TCP when omitted).
#[test]
fn ingress_named_port_resolves_per_selected_pod_and_protocol() {
    let p = np(
        "y",
        "ingress-http",
        "  podSelector: {}\n  ingress:\n    - ports:\n        - port: http\n        - port: dns",
    );
    assert!(named_port_allowed(&p, "x/client", "y/a", 8080, Tcp));
    assert!(named_port_allowed(&p, "x/client", "y/b", 9090, Tcp));
    assert!(!named_port_allowed(&p, "x/client", "y/b", 8080, Tcp));
    // `dns` is a UDP port: `port: dns` defaults to TCP and matches nothing.
    assert!(!named_port_allowed(&p, "x/client", "y/a", 53, Udp));
    assert!(!named_port_allowed(&p, "x/client", "y/a", 53, Tcp));
    let udp = p.replace("port: dns", "port: dns\n          protocol: UDP");
    assert!(named_port_allowed(&udp, "x/client", "y/a", 53, Udp));
}

/// A dual-stack client `x/client` and server `y/server`, each with an IPv4
/// and an IPv6 address; only the server declares container port `web` =
/// 8080.
fn dual_stack_topology() -> String {
    let mut out = String::new();
    for (ns, pod, v4, v6, ports) in [
        ("x", "client", "198.18.1.10", "fd00::10", "[]"),
        (
            "y",
            "server",
            "198.18.1.2",
            "fd00::2",
            "[{name: web, containerPort: 8080}]",
        ),
    ] {
        out += &format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  namespace: {ns}\n  name: {pod}\n  labels: {{pod: {pod}}}\nspec:\n  containers:\n    - name: c\n      ports: {ports}\nstatus:\n  podIP: {v4}\n  podIPs:\n    - ip: {v4}\n    - ip: \"{v6}\"\n"
        );
    }
    out
}

/// Whether `x/client`, connecting from `src_ip`, reaches `y/server` at its
/// address of the same family on TCP `port`, judged twice: by `check` (both
/// ends' compiled configs) and by the sidecars' own evaluators on the
/// compiled egress of the client and ingress of the server, which must agree.
fn dual_stack_allowed(policies: &str, src_ip: &str, dst_ip: &str, port: u16) -> bool {
    let topology = dual_stack_topology();
    let cluster = load(&[&topology, policies]);
    let compiler = Compiler::new(&cluster);
    let mut req = policy_support::request(&cluster, "x/client", "y/server", port, Tcp);
    let (src, dst): (std::net::IpAddr, std::net::IpAddr) =
        (src_ip.parse().unwrap(), dst_ip.parse().unwrap());
    let client = cluster.pod_index("x", "client").unwrap();
    req.source = Source::Pod {
        pod: client,
        ip: src,
    };
    let report = check::check(&compiler, &req).unwrap();
    assert_eq!(report.endpoints[0].ip, dst, "{report:#?}");
    let egress = compiler.compile_named("x/client").unwrap().outbound.egress;
    let ingress = compiler.compile_named("y/server").unwrap().inbound.ingress;
    let sidecars = CompiledDirection::new(&egress)
        .evaluate(dst, port, Tcp)
        .is_allowed()
        && CompiledDirection::new(&ingress)
            .evaluate(src, port, Tcp)
            .is_allowed();
    assert_eq!(allowed(&report), sidecars, "{report:#?}\n{egress:#?}");
    sidecars
}

/// [`dual_stack_allowed`] from the client's IPv4 address to the server's.
fn allowed_over_v4(policy: &str) -> bool {
    dual_stack_allowed(policy, "198.18.1.10", "198.18.1.2", 8080)
}

/// [`dual_stack_allowed`] from the client's IPv6 address to the server's.
fn allowed_over_v6(policy: &str) -> bool {
    dual_stack_allowed(policy, "fd00::10", "fd00::2", 8080)
}

// API reference, IPBlock: "a particular CIDR ... that is allowed to the pods
// matched by a NetworkPolicySpec's podSelector"; with a named port the
// destination address itself must still be in the block (cyclonus
// ippeermatcher: `IsIPAddressMatchForIPBlock(peer.IP, block) &&
// Port.Allows(...)`). A dual-stack pod with one address in an IPv4 block is
// not reachable at its IPv6 address, and the other way round.
#[test]
fn egress_named_port_to_an_ip_block_allows_only_the_addresses_in_the_block() {
    let v4_block = np(
        "x",
        "eg",
        "  podSelector:\n    matchLabels: {pod: client}\n  egress:\n    - to:\n        - ipBlock: {cidr: 198.18.1.2/32}\n      ports:\n        - port: web",
    );
    assert!(allowed_over_v4(&v4_block));
    assert!(!allowed_over_v6(&v4_block));

    let v6_block = v4_block.replace("198.18.1.2/32", "'fd00::2/128'");
    assert!(allowed_over_v6(&v6_block));
    assert!(!allowed_over_v4(&v6_block));

    // An address in `except` stays out although the pod has another address
    // in a second block of the same rule.
    let except = np(
        "x",
        "eg",
        "  podSelector:\n    matchLabels: {pod: client}\n  egress:\n    - to:\n        - ipBlock: {cidr: 198.18.1.0/24, except: [198.18.1.2/32]}\n        - ipBlock: {cidr: 'fd00::/64'}\n      ports:\n        - port: web",
    );
    assert!(!allowed_over_v4(&except));
    assert!(allowed_over_v6(&except));

    // The same rules with the port number: the controls, always right.
    for (policy, v4, v6) in [
        (&v4_block, true, false),
        (&v6_block, false, true),
        (&except, false, true),
    ] {
        let numbered = policy.replace("port: web", "port: 8080");
        assert_eq!(allowed_over_v4(&numbered), v4);
        assert_eq!(allowed_over_v6(&numbered), v6);
    }

    // The compiled rule names the block's addresses of the pod, no other.
    let cluster = load(&[&dual_stack_topology(), &except]);
    let cfg = Compiler::new(&cluster).compile_named("x/client").unwrap();
    let nets: Vec<String> = cfg
        .outbound
        .egress
        .rules
        .iter()
        .flat_map(|r| r.peers.iter().flatten())
        .flat_map(|p| p.nets.iter().map(|n| n.to_string()))
        .collect();
    assert_eq!(nets, ["fd00::2/128"], "{:#?}", cfg.outbound.egress);
}

// On ingress the ipBlock stays on the rule and the named port resolves on
// the selected pod, so the source address itself is matched: the same
// policies, written as ingress at the server, already agree.
#[test]
fn ingress_named_port_from_an_ip_block_matches_the_source_address() {
    let v4_block = np(
        "y",
        "ing",
        "  podSelector:\n    matchLabels: {pod: server}\n  ingress:\n    - from:\n        - ipBlock: {cidr: 198.18.1.10/32}\n      ports:\n        - port: web",
    );
    assert!(allowed_over_v4(&v4_block));
    assert!(!allowed_over_v6(&v4_block));
    let v6_block = v4_block.replace("198.18.1.10/32", "'fd00::10/128'");
    assert!(allowed_over_v6(&v6_block));
    assert!(!allowed_over_v4(&v6_block));
    let except = np(
        "y",
        "ing",
        "  podSelector:\n    matchLabels: {pod: server}\n  ingress:\n    - from:\n        - ipBlock: {cidr: 198.18.1.0/24, except: [198.18.1.10/32]}\n        - ipBlock: {cidr: 'fd00::/64'}\n      ports:\n        - port: web",
    );
    assert!(!allowed_over_v4(&except));
    assert!(allowed_over_v6(&except));
}

// === Beyond the upstream suite: node traffic and finished pods ===

/// The xyz topology with `x/a` on node 10.0.0.1 (dual-stack: also fd00::1)
/// and `x/b` on node 10.0.0.2; `x/c` has no `status.hostIP`.
fn topology_with_nodes() -> String {
    xyz_topology()
        .replace(
            &format!("  podIP: {}\n", xyz_ip("x/a")),
            &format!(
                "  podIP: {}\n  hostIP: 10.0.0.1\n  hostIPs:\n    - ip: 10.0.0.1\n    - ip: fd00::1\n",
                xyz_ip("x/a")
            ),
        )
        .replace(
            &format!("  podIP: {}\n", xyz_ip("x/b")),
            &format!("  podIP: {}\n  hostIP: 10.0.0.2\n", xyz_ip("x/b")),
        )
}

fn from_ip(
    compiler: &Compiler<'_>,
    ip: &str,
    to: &str,
    port: u16,
    protocol: Protocol,
) -> CheckReport {
    let cluster = compiler.cluster();
    let (ns, name) = to.split_once('/').unwrap();
    let req = CheckRequest {
        source: Source::External {
            ip: ip.parse().unwrap(),
        },
        destination: Destination::Pod {
            pod: cluster.pod_index(ns, name).unwrap(),
            ip: None,
        },
        port: PortRef::Number(port),
        protocol,
        http: None,
        plaintext: true,
        sni: None,
    };
    check::check(compiler, &req).unwrap()
}

fn to_ip(
    compiler: &Compiler<'_>,
    from: &str,
    ip: &str,
    port: u16,
    protocol: Protocol,
) -> CheckReport {
    let cluster = compiler.cluster();
    let (ns, name) = from.split_once('/').unwrap();
    let pod = cluster.pod_index(ns, name).unwrap();
    let req = CheckRequest {
        source: Source::Pod {
            pod,
            ip: cluster.pods[pod].ips[0],
        },
        destination: Destination::External {
            ip: ip.parse().unwrap(),
        },
        port: PortRef::Number(port),
        protocol,
        http: None,
        plaintext: false,
        sni: None,
    };
    check::check(compiler, &req).unwrap()
}

const NODE_REASON: &str =
    "traffic to/from the pod's own node is always allowed (kubernetes.io, Network Policies)";

// kubernetes.io, "Network Policies": "IP blocks (exception: traffic to and
// from the node where a Pod is running is always allowed, regardless of the
// IP address of the Pod or the node)"; also "Pods cannot currently block
// localhost access, nor do they have the ability to block access from their
// resident node".
#[test]
fn traffic_to_and_from_the_pods_own_node_is_always_allowed() {
    let deny_all = np(
        "x",
        "deny-all",
        "  podSelector: {}\n  policyTypes: [Ingress, Egress]",
    );
    let cluster = load(&[&topology_with_nodes(), &deny_all]);
    let compiler = Compiler::new(&cluster);

    // Ingress from the pod's own node, on any port and protocol, both families.
    for (ip, port, proto) in [
        ("10.0.0.1", 80, Tcp),
        ("10.0.0.1", 10250, Tcp),
        ("10.0.0.1", 81, Udp),
        ("fd00::1", 80, Tcp),
    ] {
        let r = from_ip(&compiler, ip, "x/a", port, proto);
        assert!(allowed(&r), "{ip} -> x/a:{port}: {r:#?}");
        let ing = &r.endpoints[0].ingress;
        assert_eq!(ing.reason, "node-traffic");
        assert!(ing.detail.contains(NODE_REASON), "{}", ing.detail);
        assert_eq!(ing.policy, None);
        assert_eq!(ing.policies, ["x/deny-all"]);
    }
    // Another node's address is not exempt, nor is any node for a pod
    // without status.hostIP.
    assert!(!allowed(&from_ip(&compiler, "10.0.0.2", "x/a", 80, Tcp)));
    assert!(!allowed(&from_ip(&compiler, "10.0.0.1", "x/b", 80, Tcp)));
    assert!(allowed(&from_ip(&compiler, "10.0.0.2", "x/b", 80, Tcp)));
    for node in ["10.0.0.1", "10.0.0.2"] {
        let r = from_ip(&compiler, node, "x/c", 80, Tcp);
        assert!(!allowed(&r), "{node} -> x/c");
        assert_eq!(r.endpoints[0].ingress.reason, "no-rule-matched");
    }

    // Egress to the pod's own node.
    let r = to_ip(&compiler, "x/a", "10.0.0.1", 53, Udp);
    assert!(allowed(&r), "{r:#?}");
    assert_eq!(r.endpoints[0].egress.reason, "node-traffic");
    assert!(r.endpoints[0].egress.detail.contains(NODE_REASON));
    // An address outside the mesh: UDP is not proxied and never mTLS, so
    // the detail says "plain UDP", not "plain TCP".
    assert_eq!(
        r.endpoints[0].mtls.detail,
        "mtls: 10.0.0.1 is outside the mesh: plain UDP, not proxied"
    );
    assert_eq!(
        to_ip(&compiler, "x/a", "10.0.0.1", 443, Tcp).endpoints[0]
            .mtls
            .detail,
        "mtls: 10.0.0.1 is outside the mesh: plain TCP"
    );
    assert!(allowed(&to_ip(&compiler, "x/a", "10.0.0.1", 443, Tcp)));
    assert!(!allowed(&to_ip(&compiler, "x/a", "10.0.0.2", 443, Tcp)));
    assert!(!allowed(&to_ip(&compiler, "x/c", "10.0.0.1", 443, Tcp)));

    // The exemption is part of the compiled config, so the sidecar's own
    // evaluator enforces the same thing; the isolating policies are unchanged.
    let cfg = compiler.compile_named("x/a").unwrap();
    for dir in [&cfg.inbound.ingress, &cfg.outbound.egress] {
        assert_eq!(dir.policies, ["x/deny-all"]);
        let compiled = CompiledDirection::new(dir);
        assert!(
            compiled
                .evaluate("10.0.0.1".parse().unwrap(), 22, Tcp)
                .is_allowed()
        );
        assert!(
            compiled
                .evaluate("fd00::1".parse().unwrap(), 22, Sctp)
                .is_allowed()
        );
        assert!(
            !compiled
                .evaluate("10.0.0.2".parse().unwrap(), 22, Tcp)
                .is_allowed()
        );
        let node_rules: Vec<_> = dir.rules.iter().filter(|r| r.is_node_traffic()).collect();
        assert_eq!(node_rules.len(), 1, "{:#?}", dir.rules);
    }
    let c = compiler.compile_named("x/c").unwrap();
    assert!(c.inbound.ingress.rules.is_empty() && c.outbound.egress.rules.is_empty());

    // Not isolated: nothing to exempt, and the config carries no extra rule.
    let open = load(&[&topology_with_nodes()]);
    let cfg = Compiler::new(&open).compile_named("x/a").unwrap();
    assert!(
        cfg.inbound.ingress.rules.is_empty(),
        "{:#?}",
        cfg.inbound.ingress
    );
    assert!(
        cfg.outbound.egress.rules.is_empty(),
        "{:#?}",
        cfg.outbound.egress
    );
}

// A policy that already allows the node still decides by the exemption first
// (it applies whatever the policies say), and ingress-only isolation leaves
// egress untouched.
#[test]
fn node_exemption_only_in_isolated_directions() {
    let ingress_only = np("x", "deny-ingress", "  podSelector: {}\n  ingress: []");
    let cluster = load(&[&topology_with_nodes(), &ingress_only]);
    let compiler = Compiler::new(&cluster);
    let cfg = compiler.compile_named("x/a").unwrap();
    assert_eq!(cfg.inbound.ingress.rules.len(), 1);
    assert!(cfg.inbound.ingress.rules[0].is_node_traffic());
    assert!(!cfg.outbound.egress.isolated && cfg.outbound.egress.rules.is_empty());
    assert_eq!(
        to_ip(&compiler, "x/a", "10.0.0.1", 443, Tcp).endpoints[0]
            .egress
            .reason,
        "not-isolated"
    );
}

/// Finished pods: Pod Lifecycle (kubernetes.io) says a Succeeded pod's
/// containers "have terminated in success, and will not be restarted" and a
/// Failed pod's "have terminated"; kubernetes/kubernetes#110255: "Terminal
/// pods, whose phase its Failed or Succeeded, are guaranteed to never regress
/// and to be stopped, so their IPs never should be published on the
/// Endpoints." The address goes back to the pool and may be reused.
fn topology_with_finished_pod() -> String {
    let b = xyz_ip("x/b");
    xyz_topology().replace(
        &format!("  podIP: {b}\n"),
        &format!("  phase: Succeeded\n  podIP: {b}\n"),
    ) + &format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  namespace: y\n  name: reuser\n  labels:\n    pod: reuser\nspec:\n  containers:\n    - name: c\n      ports:\n        - containerPort: 80\nstatus:\n  phase: Running\n  podIP: {b}\n"
    ) + "---\napiVersion: v1\nkind: Service\nmetadata:\n  namespace: x\n  name: b\nspec:\n  selector: {pod: b}\n  ports:\n    - port: 80\n"
}

#[test]
fn finished_pods_are_left_out_of_selector_ip_sets_and_endpoints() {
    let b_ip: std::net::IpAddr = xyz_ip("x/b").parse().unwrap();
    let policies = np(
        "x",
        "a-from-b",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from:\n        - podSelector:\n            matchLabels: {pod: b}\n        - namespaceSelector:\n            matchLabels: {ns: x}",
    ) + &np(
        "x",
        "c-to-b",
        "  podSelector:\n    matchLabels: {pod: c}\n  egress:\n    - to:\n        - podSelector:\n            matchLabels: {pod: b}",
    );
    let cluster = load(&[&topology_with_finished_pod(), &policies]);
    let compiler = Compiler::new(&cluster);

    // The selectors still select x/b, but it contributes no address.
    let a = compiler.compile_named("x/a").unwrap();
    for rule in &a.inbound.ingress.rules {
        for peer in rule.peers.iter().flatten() {
            assert!(
                !peer.nets.iter().any(|n| n.contains(&b_ip)),
                "{peer:?} still carries the finished pod's address"
            );
        }
    }
    assert!(
        a.peers.iter().all(|p| p.workload != "x/b"),
        "{:#?}",
        a.peers
    );
    // The namespaceSelector peer keeps the live pods of x.
    let ns_peer = a.inbound.ingress.rules[0].peers.as_ref().unwrap()[1].clone();
    assert!(
        ns_peer
            .nets
            .iter()
            .any(|n| n.contains(&xyz_ip("x/c").parse::<std::net::IpAddr>().unwrap()))
    );

    // The pod that reuses the address is judged as itself, not as x/b.
    let reuser = policy_support::request(&cluster, "y/reuser", "x/a", 80, Tcp);
    let r = check::check(&compiler, &reuser).unwrap();
    assert!(!allowed(&r), "{r:#?}");
    let r = check_pods(&compiler, "x/c", "y/reuser", 80, Tcp);
    assert!(!allowed(&r), "{r:#?}");
    match check::request::parse_source(&cluster, &b_ip.to_string(), None).unwrap() {
        Source::Pod { pod, .. } => assert_eq!(cluster.pods[pod].key(), "y/reuser"),
        other => panic!("{other:?}"),
    }

    // Services: the finished pod is not an endpoint.
    let svc = palisade_control::compile::services::resolve(
        compiler.index(),
        cluster.service("x", "b").unwrap(),
    );
    assert!(svc.ports[0].endpoints.is_empty(), "{svc:#?}");

    // The finished pod still compiles (it has no address, like a pending pod).
    let b = compiler.compile_named("x/b").unwrap();
    assert!(b.workload.ips.is_empty());
}

// === Beyond the upstream suite: hostNetwork pods ===

/// kubernetes.io, "Network Policies", section "NetworkPolicy and
/// `hostNetwork` pods": "NetworkPolicy behaviour for `hostNetwork` pods is
/// undefined, but it should be limited to 2 possibilities: [...] The network
/// plugin cannot properly distinguish `hostNetwork` pod traffic, and so it
/// ignores `hostNetwork` pods when matching `podSelector` and
/// `namespaceSelector`. Traffic to/from `hostNetwork` pods is treated the
/// same as all other traffic to/from the node IP. (This is the most common
/// implementation.)" Palisade follows that one: "This applies when 1. a
/// `hostNetwork` pod is selected by `spec.podSelector`. [...] 1. a
/// `hostNetwork` pod is selected by a `podSelector` or `namespaceSelector` in
/// an `ingress` or `egress` rule." And "since `hostNetwork` pods have the
/// same IP addresses as the nodes they reside on, their connections will be
/// treated as node connections. For example, you can allow traffic from a
/// `hostNetwork` Pod using an `ipBlock` rule."
///
/// The nodes' topology plus `x/h`, a hostNetwork pod on x/a's node 10.0.0.1
/// (its pod IP is the node's), serving 9100 (named `metrics`), and a Service
/// `x/h` selecting it.
fn topology_with_host_network_pod() -> String {
    topology_with_nodes()
        + "---\napiVersion: v1\nkind: Pod\nmetadata:\n  namespace: x\n  name: h\n  labels:\n    pod: h\nspec:\n  hostNetwork: true\n  containers:\n    - name: exporter\n      ports:\n        - name: metrics\n          containerPort: 9100\nstatus:\n  phase: Running\n  podIP: 10.0.0.1\n  hostIP: 10.0.0.1\n"
        + "---\napiVersion: v1\nkind: Service\nmetadata:\n  namespace: x\n  name: h\nspec:\n  selector: {pod: h}\n  clusterIPs: [10.96.0.9]\n  ports:\n    - port: 9100\n      targetPort: metrics\n"
}

const HOST_NETWORK_REASON: &str = "hostNetwork pod: NetworkPolicy does not apply (kubernetes.io, NetworkPolicy and hostNetwork pods)";

const NODE_IP: &str = "10.0.0.1";

fn carries_node_ip(rules: &[palisade_api::L4Rule]) -> bool {
    let node: std::net::IpAddr = NODE_IP.parse().unwrap();
    rules
        .iter()
        .filter(|r| !r.is_node_traffic())
        .flat_map(|r| r.peers.iter().flatten())
        .any(|p| p.nets.iter().any(|n| n.contains(&node)))
}

// "it ignores `hostNetwork` pods when matching `podSelector` and
// `namespaceSelector`": a selector that matches x/h adds no address, so it
// does not let in (or out) everything from x/h's node.
#[test]
fn host_network_pods_add_nothing_to_pod_and_namespace_selector_peers() {
    let policies = np(
        "x",
        "b-from-h",
        "  podSelector:\n    matchLabels: {pod: b}\n  ingress:\n    - from:\n        - podSelector:\n            matchLabels: {pod: h}\n    - from:\n        - namespaceSelector:\n            matchLabels: {ns: x}",
    ) + &np(
        "x",
        "c-to-h",
        "  podSelector:\n    matchLabels: {pod: c}\n  egress:\n    - to:\n        - podSelector:\n            matchLabels: {pod: h}\n    - ports:\n        - port: metrics",
    );
    let cluster = load(&[&topology_with_host_network_pod(), &policies]);
    let compiler = Compiler::new(&cluster);

    let b = compiler.compile_named("x/b").unwrap();
    assert_eq!(b.inbound.ingress.policies, ["x/b-from-h"]);
    assert!(
        !carries_node_ip(&b.inbound.ingress.rules),
        "{:#?}",
        b.inbound.ingress.rules
    );
    // The podSelector peer selects only x/h: no address at all.
    let rule0 = b
        .inbound
        .ingress
        .rules
        .iter()
        .find(|r| r.policy == "x/b-from-h" && r.rule == 0)
        .unwrap();
    assert!(
        rule0.peers.as_ref().unwrap()[0].nets.is_empty(),
        "{rule0:#?}"
    );
    // The namespaceSelector peer keeps the other pods of x.
    let rule1 = b
        .inbound
        .ingress
        .rules
        .iter()
        .find(|r| r.policy == "x/b-from-h" && r.rule == 1)
        .unwrap();
    let c_ip: std::net::IpAddr = xyz_ip("x/c").parse().unwrap();
    assert!(
        rule1.peers.as_ref().unwrap()[0]
            .nets
            .iter()
            .any(|n| n.contains(&c_ip))
    );

    // x/h's connections are node connections: from another node than x/b's,
    // no rule allows them.
    let r = check_pods(&compiler, "x/h", "x/b", 80, Tcp);
    assert!(!allowed(&r), "{r:#?}");
    assert_eq!(r.source_ip, NODE_IP.parse::<std::net::IpAddr>().unwrap());
    assert_eq!(r.endpoints[0].ingress.reason, "no-rule-matched");
    let r = from_ip(&compiler, NODE_IP, "x/b", 80, Tcp);
    assert!(!allowed(&r), "{r:#?}");

    // Egress: a podSelector that matches x/h only, and a named port that
    // only x/h declares, reach nothing.
    let c = compiler.compile_named("x/c").unwrap();
    assert!(
        !carries_node_ip(&c.outbound.egress.rules),
        "{:#?}",
        c.outbound.egress.rules
    );
    let r = check_pods(&compiler, "x/c", "x/h", 9100, Tcp);
    assert!(!allowed(&r), "{r:#?}");
    assert_eq!(r.endpoints[0].egress.reason, "no-rule-matched");
}

// x/h is in no peer table (it runs no sidecar: traffic to it is plain) and
// an address of its node names no pod.
#[test]
fn host_network_pods_are_not_mesh_peers() {
    let cluster = load(&[&topology_with_host_network_pod()]);
    let compiler = Compiler::new(&cluster);
    let node: std::net::IpAddr = NODE_IP.parse().unwrap();
    for cfg in compiler.compile_all() {
        assert!(
            cfg.peers
                .iter()
                .all(|p| p.workload != "x/h" && p.ip != node),
            "{}: {:#?}",
            cfg.workload.name,
            cfg.peers
        );
    }
    assert_eq!(compiler.index().pod_by_ip(node), None);
    assert!(
        compiler
            .index()
            .pods_in_net(&"10.0.0.0/24".parse().unwrap(), &[])
            .is_empty()
    );
    // `--from`/`--to` the node's address is the node, not x/h.
    assert_eq!(
        check::request::parse_source(&cluster, NODE_IP, None).unwrap(),
        Source::External { ip: node }
    );
    assert_eq!(
        check::request::parse_destination(&cluster, NODE_IP).unwrap(),
        Destination::External { ip: node }
    );
}

// "This applies when 1. a `hostNetwork` pod is selected by
// `spec.podSelector`": a policy selecting x/h does not isolate it, and no
// sidecar can run in the node's network namespace, so it gets no config.
#[test]
fn host_network_pods_are_not_isolated_and_get_no_config() {
    let deny_all = np(
        "x",
        "deny-all",
        "  podSelector: {}\n  policyTypes: [Ingress, Egress]",
    );
    let cluster = load(&[&topology_with_host_network_pod(), &deny_all]);
    let compiler = Compiler::new(&cluster);
    let h = cluster.pod_index("x", "h").unwrap();
    assert!(cluster.pods[h].host_network);
    assert!(!cluster.pods[cluster.pod_index("x", "a").unwrap()].host_network);
    assert!(compiler.selecting_policies(&cluster.pods[h]).is_empty());

    let err = compiler.compile_named("x/h").unwrap_err();
    assert_eq!(
        err,
        palisade_control::compile::CompileError::HostNetwork("x/h".into())
    );
    assert!(err.to_string().contains("hostNetwork"), "{err}");
    let all = compiler.compile_all();
    assert_eq!(all.len(), cluster.pods.len() - 1);
    assert!(all.iter().all(|c| c.workload.name != "h"));

    // To x/h: not isolated by x/deny-all, plain TCP, no authorization.
    let r = check_pods(&compiler, "y/a", "x/h", 9100, Tcp);
    assert!(allowed(&r), "{r:#?}");
    let e = &r.endpoints[0];
    assert_eq!(e.ingress.reason, "host-network");
    assert_eq!(e.ingress.verdict, check::LayerVerdict::Skip);
    assert!(
        e.ingress.detail.contains(HOST_NETWORK_REASON),
        "{}",
        e.ingress.detail
    );
    assert!(
        e.ingress.detail.starts_with("ingress at x/h: "),
        "{}",
        e.ingress.detail
    );
    assert!(!e.mtls.mtls && e.mtls.mode.is_none(), "{:#?}", e.mtls);
    assert_eq!(e.authorization.verdict, check::LayerVerdict::Skip);

    // Over UDP and SCTP there is no sidecar on the way at all: the detail
    // names the protocol rather than "plain TCP".
    for proto in [Udp, Sctp] {
        let r = check_pods(&compiler, "y/a", "x/h", 9100, proto);
        let detail = &r.endpoints[0].mtls.detail;
        let name = check::protocol_name(proto);
        assert!(
            detail.ends_with(&format!("runs no sidecar: plain {name}, not proxied")),
            "{detail}"
        );
    }

    // From x/h: not isolated for egress either, and without an identity.
    let r = check_pods(&compiler, "x/h", "y/a", 80, Tcp);
    assert!(allowed(&r), "{r:#?}");
    assert_eq!(r.identity, None);
    assert_eq!(r.endpoints[0].egress.reason, "host-network");
    assert!(r.endpoints[0].egress.detail.starts_with("egress at x/h: "));
    assert!(r.endpoints[0].egress.detail.contains(HOST_NETWORK_REASON));

    // The other end is still judged, as traffic to/from the node IP: x/a
    // lives on that node (always allowed), x/b does not.
    let r = check_pods(&compiler, "x/a", "x/h", 9100, Tcp);
    assert!(allowed(&r), "{r:#?}");
    assert_eq!(r.endpoints[0].egress.reason, "node-traffic");
    let r = check_pods(&compiler, "x/h", "x/a", 80, Tcp);
    assert!(allowed(&r), "{r:#?}");
    assert_eq!(r.endpoints[0].ingress.reason, "node-traffic");
    let r = check_pods(&compiler, "x/b", "x/h", 9100, Tcp);
    assert!(!allowed(&r), "{r:#?}");
    assert_eq!(r.endpoints[0].egress.reason, "no-rule-matched");
    let r = check_pods(&compiler, "x/h", "x/b", 80, Tcp);
    assert!(!allowed(&r), "{r:#?}");
}

// A Service may select a hostNetwork pod: its endpoint (the node's address)
// stays, as a plain, unmeshed destination.
#[test]
fn host_network_pods_stay_service_endpoints() {
    let cluster = load(&[&topology_with_host_network_pod()]);
    let compiler = Compiler::new(&cluster);
    let svc = palisade_control::compile::services::resolve(
        compiler.index(),
        cluster.service("x", "h").unwrap(),
    );
    let ep = &svc.ports[0].endpoints;
    assert_eq!(ep.len(), 1, "{svc:#?}");
    assert_eq!(ep[0].ip, NODE_IP.parse::<std::net::IpAddr>().unwrap());
    assert_eq!((ep[0].port, ep[0].workload.as_str()), (9100, "x/h"));
    // Every workload may reach it (no egress isolation), so it is in their
    // configs; none has a peer entry for it.
    let a = compiler.compile_named("y/a").unwrap();
    assert!(a.services.iter().any(|s| s.name == "x/h"));

    let req = CheckRequest {
        source: Source::Pod {
            pod: cluster.pod_index("y", "a").unwrap(),
            ip: xyz_ip("y/a").parse().unwrap(),
        },
        destination: Destination::Service {
            service: cluster.services.iter().position(|s| s.name == "h").unwrap(),
        },
        port: PortRef::Number(9100),
        protocol: Tcp,
        http: None,
        plaintext: false,
        sni: None,
    };
    let r = check::check(&compiler, &req).unwrap();
    assert!(allowed(&r), "{r:#?}");
    assert_eq!(r.endpoints.len(), 1);
    assert_eq!(r.endpoints[0].workload.as_deref(), Some("x/h"));
    assert_eq!(r.endpoints[0].ingress.reason, "host-network");
    assert!(!r.endpoints[0].mtls.mtls);
}

/// `xyz_topology` with extra labels on namespace `ns` (upstream
/// `AddNamespaceLabel`).
fn with_namespace_label(ns: &str, label: &str) -> String {
    let from = format!("kind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n");
    let topology = xyz_topology();
    assert!(topology.contains(&from));
    topology.replace(&from, &format!("{from}    {label}\n"))
}

/// `xyz_topology` with extra labels on pod `ns/pod` (upstream `AddPodLabels`).
fn with_pod_label(ns: &str, pod: &str, label: &str) -> String {
    let from = format!("  namespace: {ns}\n  name: {pod}\n  labels:\n");
    let topology = xyz_topology();
    assert!(topology.contains(&from));
    topology.replace(&from, &format!("{from}    {label}\n"))
}

// It("should allow ingress access from updated namespace")
#[test]
fn ingress_from_updated_namespace() {
    let p = np(
        "x",
        "allow-client-a-via-ns-selector",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels: {ns2: updated}",
    );
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    validate(&p, 80, Tcp, &r);
    let mut with_label = Reachability::new(true);
    with_label.expect_all_ingress("x/a", false);
    with_label.expect_peer(Peer::ns("y"), Peer::any(), true);
    validate_in(
        &with_namespace_label("y", "ns2: updated"),
        &p,
        80,
        Tcp,
        &with_label,
    );
}

// It("should allow ingress access from updated pod")
#[test]
fn ingress_from_updated_pod() {
    let p = np(
        "x",
        "allow-client-a-via-pod-selector",
        "  podSelector:\n    matchLabels: {pod: a}\n  ingress:\n    - from:\n        - podSelector:\n            matchLabels: {pod: b, pod2: updated}",
    );
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    validate(&p, 80, Tcp, &r);
    let mut with_label = Reachability::new(true);
    with_label.expect_all_ingress("x/a", false);
    with_label.expect("x/b", "x/a", true);
    validate_in(
        &with_pod_label("x", "b", "pod2: updated"),
        &p,
        80,
        Tcp,
        &with_label,
    );
}

// It("should deny ingress access to updated pod")
#[test]
fn deny_ingress_to_updated_pod() {
    let p = np(
        "x",
        "deny-ingress-via-label-selector",
        "  podSelector:\n    matchLabels: {target: isolated}\n  ingress: []",
    );
    validate(&p, 80, Tcp, &Reachability::new(true));
    let mut isolated = Reachability::new(true);
    isolated.expect_all_ingress("x/a", false);
    validate_in(
        &with_pod_label("x", "a", "target: isolated"),
        &p,
        80,
        Tcp,
        &isolated,
    );
}

// It("should enforce egress policy allowing traffic to a server in a different namespace based on PodSelector and NamespaceSelector")
#[test]
fn egress_to_pod_in_other_namespace_by_pod_and_namespace_selector() {
    let p = np(
        "x",
        "allow-to-ns-y-pod-a",
        "  podSelector:\n    matchLabels: {pod: a}\n  egress:\n    - to:\n        - namespaceSelector:\n            matchLabels: {kubernetes.io/metadata.name: y}\n          podSelector:\n            matchLabels: {pod: a}",
    );
    let mut r = Reachability::new(true);
    r.expect_all_egress("x/a", false);
    r.expect("x/a", "y/a", true);
    validate(&p, 80, Tcp, &r);
}

// It("should stop enforcing policies after they are deleted")
#[test]
fn policies_stop_applying_once_deleted() {
    let deny = np(
        "x",
        "deny-all",
        "  podSelector: {}\n  ingress: []\n  egress: []\n  policyTypes: [Ingress, Egress]",
    );
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::ns("x"), Peer::any(), false);
    r.expect_peer(Peer::any(), Peer::ns("x"), false);
    validate(&deny, 80, Tcp, &r);
    validate("", 80, Tcp, &Reachability::new(true));
}

// staging/src/k8s.io/api/networking/v1/types.go, NetworkPolicySpec.podSelector:
// "This field is optional. If it is not specified, it defaults to an empty
// selector", which "matches all pods in the policy's namespace". A policy
// without a podSelector (or without a spec at all: every field defaults) is
// a default-deny-ingress for its namespace, not an error and not a no-op.
#[test]
fn missing_pod_selector_selects_every_pod_of_the_namespace() {
    let without_selector = np("x", "no-selector", "  policyTypes: [Ingress]");
    let without_spec = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: x\n  name: no-spec\n";
    let mut r = Reachability::new(true);
    r.expect_peer(Peer::any(), Peer::ns("x"), false);
    validate(&without_selector, 80, Tcp, &r);
    validate(without_spec, 80, Tcp, &r);
}

// pkg/apis/networking/validation, ValidateNetworkPolicySpec: policyTypes is
// refused only with more than two entries or a value other than Ingress or
// Egress; a repeated value is accepted (`listType=atomic`, no uniqueness
// check), and the policy affects exactly the directions named.
#[test]
fn repeated_policy_types_are_accepted_and_name_the_directions() {
    let egress_only = np(
        "x",
        "egress-twice",
        "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress, Egress]\n  ingress: []\n  egress: []",
    );
    let mut r = Reachability::new(true);
    r.expect_all_egress("x/a", false);
    validate(&egress_only, 80, Tcp, &r);
    let ingress_only = np(
        "x",
        "ingress-twice",
        "  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Ingress, Ingress]\n  egress:\n    - to: [{ipBlock: {cidr: 192.0.2.0/24}}]",
    );
    let mut r = Reachability::new(true);
    r.expect_all_ingress("x/a", false);
    validate(&ingress_only, 80, Tcp, &r);
}

// NetworkPolicy applies to pods, after kube-proxy has translated a Service's
// virtual IP (upstream e2e probes Services by name, and policy-assistant's
// generator has the "service" cases): an egress ipBlock that covers a
// cluster IP, but not the pods behind it, must not let a client reach those
// pods through the cluster IP. `check` judges the endpoints; the sidecar
// does the same only when the Service is in the client's config, so the
// config lists it although egress allows none of its endpoints.
#[test]
fn egress_ip_block_over_a_cluster_ip_does_not_open_its_denied_endpoints() {
    let svc = "---\napiVersion: v1\nkind: Service\nmetadata:\n  namespace: y\n  name: web\nspec:\n  selector: {pod: b}\n  clusterIP: 10.96.0.20\n  ports:\n    - {port: 80}\n";
    let p = np(
        "x",
        "outside-only",
        "  podSelector:\n    matchLabels: {pod: a}\n  egress:\n    - to:\n        - ipBlock: {cidr: 0.0.0.0/0, except: [198.18.0.0/15]}",
    );
    let topology = xyz_topology() + svc;
    let cluster = load(&[&topology, &p]);
    let compiler = Compiler::new(&cluster);
    let req = CheckRequest {
        source: Source::Pod {
            pod: cluster.pod_index("x", "a").unwrap(),
            ip: xyz_ip("x/a").parse().unwrap(),
        },
        destination: Destination::Service {
            service: cluster
                .services
                .iter()
                .position(|s| s.name == "web")
                .unwrap(),
        },
        port: PortRef::Number(80),
        protocol: Tcp,
        http: None,
        plaintext: false,
        sni: None,
    };
    assert!(!allowed(&check::check(&compiler, &req).unwrap()));
    // The sidecar of x/a knows 10.96.0.20:80 as the Service (whose only
    // endpoint its egress denies), not as an outside address the ipBlock
    // allows.
    let cfg = compiler.compile_named("x/a").unwrap();
    let web = cfg.services.iter().find(|s| s.name == "y/web");
    assert!(web.is_some(), "{:#?}", cfg.services);
    let egress = CompiledDirection::new(&cfg.outbound.egress);
    assert!(
        egress
            .evaluate("10.96.0.20".parse().unwrap(), 80, Tcp)
            .is_allowed()
    );
    let ep = &web.unwrap().ports[0].endpoints[0];
    assert!(!egress.evaluate(ep.ip, ep.port, Tcp).is_allowed());
    // A Service whose address the policy does not allow either stays out.
    let tight = p
        .replace("0.0.0.0/0", "203.0.113.0/24")
        .replace("except: [198.18.0.0/15]", "except: [203.0.113.128/25]");
    let cluster = load(&[&topology, &tight]);
    let cfg = Compiler::new(&cluster).compile_named("x/a").unwrap();
    assert!(cfg.services.iter().all(|s| s.name != "y/web"));
}
