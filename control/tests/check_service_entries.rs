//! `palisade check` toward Istio `ServiceEntry` destinations, judged as the
//! caller's sidecar treats them (`compile::service_entries`): an entry's
//! virtual IP leads to its endpoints, each judged on its own with egress at
//! the caller; a `MESH_INTERNAL` endpoint outside this mesh is reached over
//! mTLS expecting the entry's identity, which needs a bundle for its trust
//! domain; an entry not exported to the caller's namespace is not
//! translated at all.
mod policy_support;

use std::net::IpAddr;

use palisade_control::check::{self, CheckReport, CheckRequest, LayerVerdict, request};
use palisade_control::cluster::{Cluster, PortRef};
use palisade_control::compile::Compiler;
use policy_support::{federated_trust_domain, load, xyz_ip, xyz_topology};

const MESH: &str = "---\napiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec:\n  trustDomain: cluster.local\n";

/// Pod x/a may send to 203.0.113.7 on 8443 and nowhere else.
const EGRESS: &str = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: x, name: a-egress}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Egress]\n  egress:\n    - to: [{ipBlock: {cidr: 203.0.113.7/32}}]\n      ports: [{port: 8443}]\n";

/// A MESH_INTERNAL entry in namespace x: `addresses` and `export_to` as
/// given, port 443 (`https-api`, target 8443), two endpoints claiming `san`.
fn entry(name: &str, addresses: &str, export_to: &str, san: &str, endpoints: &str) -> String {
    format!(
        "---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{namespace: x, name: {name}}}\nspec:\n  hosts: [{name}.remote.example]\n  addresses: {addresses}\n  exportTo: {export_to}\n  ports: [{{number: 443, name: https-api, protocol: HTTP, targetPort: 8443}}]\n  location: MESH_INTERNAL\n  resolution: STATIC\n  endpoints: {endpoints}\n  subjectAltNames: [\"{san}\"]\n"
    )
}

const TWO_ENDPOINTS: &str = "[{address: 203.0.113.7}, {address: 203.0.113.8}]";

fn cluster(extra: &str) -> Cluster {
    federating("", extra)
}

/// With `mesh_spec` appended to the MeshConfig's `spec`.
fn federating(mesh_spec: &str, extra: &str) -> Cluster {
    load(&[&format!(
        "{}{MESH}{mesh_spec}{EGRESS}{extra}",
        xyz_topology()
    )])
}

/// Entry x/api at 192.0.2.100 (port 443 to 8443), two endpoints claiming
/// x/sa/api, exported as given.
fn api_cluster(export_to: &str) -> Cluster {
    cluster(&entry(
        "api",
        "[192.0.2.100]",
        export_to,
        "spiffe://cluster.local/ns/x/sa/api",
        TWO_ENDPOINTS,
    ))
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A TCP check request from `from` to `to`, both as `--from`/`--to` take
/// them.
fn tcp_request(cluster: &Cluster, from: &str, to: &str, port: PortRef) -> CheckRequest {
    CheckRequest {
        source: request::parse_source(cluster, from, None).unwrap(),
        destination: request::parse_destination(cluster, to).unwrap(),
        port,
        protocol: palisade_api::Protocol::Tcp,
        http: None,
        plaintext: false,
        sni: None,
    }
}

fn check_from(cluster: &Cluster, from: &str, to: &str, port: PortRef) -> CheckReport {
    let req = tcp_request(cluster, from, to, port);
    check::check(&Compiler::new(cluster), &req).unwrap_or_else(|e| panic!("{to}: {e}"))
}

#[test]
fn a_virtual_ip_is_judged_per_endpoint_with_egress_at_the_caller() {
    let c = api_cluster("['*']");
    // By address and by name, by port number and by port name: the same.
    for (to, port) in [
        ("192.0.2.100", PortRef::Number(443)),
        ("se:x/api", PortRef::Name("https-api".into())),
    ] {
        let r = check_from(&c, "x/a", to, port);
        assert_eq!(r.to, "se:x/api");
        assert_eq!(r.verdict, LayerVerdict::Deny, "{r:?}");
        let [first, second] = &r.endpoints[..] else {
            panic!("two endpoints: {r:?}")
        };
        // The egress rule names the endpoint's address and target port,
        // never the virtual IP (NetworkPolicy applies after translation).
        assert_eq!((first.ip, first.port), (ip("203.0.113.7"), 8443));
        assert_eq!(first.egress.verdict, LayerVerdict::Allow);
        assert_eq!(first.egress.policy.as_deref(), Some("x/a-egress"));
        assert_eq!(first.mtls.verdict, LayerVerdict::Allow);
        assert!(first.mtls.mtls);
        assert!(
            first
                .mtls
                .detail
                .contains("spiffe://cluster.local/ns/x/sa/api"),
            "{}",
            first.mtls.detail
        );
        // What the remote endpoint's own sidecar allows is not known here.
        assert_eq!(first.ingress.verdict, LayerVerdict::Skip);
        assert_eq!(first.ingress.reason, "remote-mesh");
        assert_eq!(first.authorization.verdict, LayerVerdict::Skip);
        assert_eq!(first.authorization.reason, "remote-mesh");
        assert_eq!(first.verdict, LayerVerdict::Allow);
        assert_eq!((second.ip, second.port), (ip("203.0.113.8"), 8443));
        assert_eq!(second.egress.verdict, LayerVerdict::Deny);
        assert_eq!(second.verdict, LayerVerdict::Deny);
        assert!(
            r.detail.contains("1 of 2 endpoints allowed"),
            "{}",
            r.detail
        );
        assert!(r.detail.contains("ServiceEntry x/api"), "{}", r.detail);
    }
    // A caller without egress policy reaches both.
    let r = check_from(&c, "y/a", "192.0.2.100", PortRef::Number(443));
    assert_eq!(r.verdict, LayerVerdict::Allow, "{r:?}");
    assert_eq!(r.endpoints.len(), 2);
}

#[test]
fn an_entry_not_exported_to_the_callers_namespace_is_not_translated() {
    let c = api_cluster("['.']");
    let r = check_from(&c, "y/a", "192.0.2.100", PortRef::Number(443));
    assert_eq!(r.verdict, LayerVerdict::Deny);
    assert!(r.endpoints.is_empty());
    assert!(
        r.detail.contains("not exported to namespace y"),
        "{}",
        r.detail
    );
    // Its own namespace sees it.
    let r = check_from(&c, "x/b", "192.0.2.100", PortRef::Number(443));
    assert_eq!(r.endpoints.len(), 2, "{r:?}");
    // A caller outside the cluster has no sidecar to translate it.
    let r = check_from(&c, "192.0.2.9", "192.0.2.100", PortRef::Number(443));
    assert_eq!(r.verdict, LayerVerdict::Deny);
    assert!(r.detail.contains("no sidecar"), "{}", r.detail);
}

#[test]
fn an_identity_no_bundle_verifies_fails_the_handshake_and_federation_mends_it() {
    let remote = entry(
        "remote",
        "[192.0.2.101]",
        "['*']",
        "spiffe://remote.test/ns/shop/sa/cart",
        TWO_ENDPOINTS,
    );
    let r = check_from(
        &cluster(&remote),
        "y/a",
        "192.0.2.101",
        PortRef::Number(443),
    );
    assert_eq!(r.verdict, LayerVerdict::Deny);
    for e in &r.endpoints {
        assert_eq!(e.mtls.verdict, LayerVerdict::Deny, "{e:?}");
        assert!(
            e.mtls.detail.contains("\"remote.test\""),
            "{}",
            e.mtls.detail
        );
    }
    let (_, item) = federated_trust_domain("remote.test");
    let federated = federating(&format!("  federatedTrustDomains:\n{item}"), &remote);
    let r = check_from(&federated, "y/a", "192.0.2.101", PortRef::Number(443));
    assert_eq!(r.verdict, LayerVerdict::Allow, "{r:?}");
    // Calling one endpoint at its own address: the same peer table.
    let r = check_from(&federated, "y/a", "203.0.113.8", PortRef::Number(8443));
    assert_eq!(r.to, "203.0.113.8");
    assert_eq!(r.endpoints[0].mtls.verdict, LayerVerdict::Allow);
    assert_eq!(r.endpoints[0].ingress.reason, "remote-mesh");
    // Without the entry, the same address is outside the mesh: plain TCP.
    let plain = cluster("");
    let r = check_from(&plain, "y/a", "203.0.113.8", PortRef::Number(8443));
    assert!(!r.endpoints[0].mtls.mtls);
    assert_eq!(r.endpoints[0].ingress.reason, "outside-cluster");
}

#[test]
fn a_pod_endpoint_is_judged_as_the_pod() {
    let pod_ip = xyz_ip("z/c");
    let c = cluster(&entry(
        "local",
        "[192.0.2.102]",
        "['*']",
        "spiffe://cluster.local/ns/x/sa/other",
        &format!("[{{address: {pod_ip}}}]"),
    ));
    let r = check_from(&c, "y/a", "192.0.2.102", PortRef::Number(443));
    let [e] = &r.endpoints[..] else {
        panic!("{r:?}")
    };
    assert_eq!(e.workload.as_deref(), Some("z/c"));
    assert_eq!(e.ip, ip(&pod_ip));
    // The pod's own ingress and authorization, not a remote mesh's.
    assert_eq!(e.ingress.reason, "not-isolated");
    assert_ne!(e.authorization.reason, "remote-mesh");
}

#[test]
fn an_entry_without_addresses_is_reached_at_each_endpoint() {
    let c = cluster(&entry(
        "plain",
        "[]",
        "['*']",
        "spiffe://cluster.local/ns/x/sa/api",
        TWO_ENDPOINTS,
    ));
    let r = check_from(&c, "x/a", "se:x/plain", PortRef::Number(443));
    assert_eq!(r.endpoints.len(), 2);
    assert!(r.detail.contains("no addresses"), "{}", r.detail);
    assert_eq!(r.endpoints[0].verdict, LayerVerdict::Allow);
    assert_eq!(r.endpoints[1].verdict, LayerVerdict::Deny);
}

#[test]
fn bad_service_entry_destinations_are_input_errors() {
    let c = api_cluster("['*']");
    let err = request::parse_destination(&c, "se:x/nope").unwrap_err();
    assert!(err.0.contains("no ServiceEntry x/nope"), "{err}");
    let err = request::parse_destination(&c, "se:x").unwrap_err();
    assert!(err.0.contains("expected se:NS/NAME"), "{err}");
    let mut req = tcp_request(&c, "x/a", "se:x/api", PortRef::Number(80));
    let compiler = Compiler::new(&c);
    let err = check::check(&compiler, &req).unwrap_err();
    assert!(err.0.contains("has no TCP port 80"), "{err}");
    req.port = PortRef::Number(443);
    req.protocol = palisade_api::Protocol::Udp;
    let err = check::check(&compiler, &req).unwrap_err();
    assert!(err.0.contains("has no UDP port 443"), "{err}");
}
