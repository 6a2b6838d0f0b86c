//! Service -> endpoint semantics and Service validation against upstream
//! Kubernetes: the EndpointSlice controller (staging/src/k8s.io/endpointslice
//! utils.go, reconciler.go; pkg/controller/endpointslice), pod readiness
//! (pkg/api/v1/pod/util.go IsPodReady) and ValidateService
//! (pkg/apis/core/validation/validation.go).
mod policy_support;

use std::net::IpAddr;

use palisade_control::compile::{Compiler, services};
use policy_support::{load, try_load};

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: x}\n";

fn pod(name: &str, ip: &str, extra_meta: &str, status: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: x\n  name: {name}\n  labels: {{app: a}}\n{extra_meta}spec:\n  containers:\n    - name: c\n      ports: [{{name: http, containerPort: 8080}}]\nstatus:\n  podIP: {ip}\n{status}"
    )
}

fn svc(spec: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Service\nmetadata: {{namespace: x, name: s}}\nspec:\n  selector: {{app: a}}\n{spec}"
    )
}

const PORTS: &str = "  ports:\n    - {port: 80, targetPort: http}\n";

/// The endpoint IPs of the first port of x/s.
fn endpoint_ips(docs: &[&str]) -> Vec<IpAddr> {
    let cluster = load(docs);
    let compiler = Compiler::new(&cluster);
    let s = services::resolve(compiler.index(), cluster.service("x", "s").unwrap());
    s.ports[0].endpoints.iter().map(|e| e.ip).collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn errors(docs: &[&str]) -> Vec<String> {
    match try_load(docs) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

const READY: &str = "  conditions:\n    - {type: Ready, status: 'True'}\n";

/// The endpoint IPs of x/s's first port in `client`'s compiled config.
fn endpoints_seen_by(compiler: &Compiler<'_>, client: &str) -> Vec<IpAddr> {
    let c = compiler.compile_named(client).unwrap();
    c.services
        .iter()
        .filter(|s| s.name == "x/s")
        .flat_map(|s| s.ports[0].endpoints.iter().map(|e| e.ip))
        .collect()
}

/// `palisade check` from pod x/`from` to Service x/s port 80 over mTLS.
fn service_check_request(
    cluster: &palisade_control::cluster::Cluster,
    from: &str,
) -> palisade_control::check::CheckRequest {
    let pod = cluster.pod_index("x", from).unwrap();
    palisade_control::check::CheckRequest {
        source: palisade_control::check::Source::Pod {
            pod,
            ip: cluster.pods[pod].ips[0],
        },
        destination: palisade_control::check::Destination::Service {
            service: cluster.services.iter().position(|s| s.name == "s").unwrap(),
        },
        port: palisade_control::cluster::PortRef::Number(80),
        protocol: palisade_api::Protocol::Tcp,
        http: None,
        plaintext: false,
        sni: None,
    }
}

// pkg/api/v1/pod/util.go IsPodReady: "returns true if a pod is ready; false
// otherwise": the Ready condition with status True. Ready=Unknown (a node
// that stopped reporting) or a condition list without Ready is not ready;
// endpointslice utils.go podToEndpoint: `serving := IsPodReady(pod)`,
// `ready := PublishNotReadyAddresses || (serving && !terminating)`.
#[test]
fn endpoint_ready_only_with_ready_condition_true() {
    let cases = [
        ("ready", READY, true),
        // Our choice (README): a status with no condition at all is a
        // hand-written manifest, read as ready.
        ("hand-written", "", true),
        (
            "unknown",
            "  conditions:\n    - {type: Ready, status: Unknown}\n",
            false,
        ),
        (
            "not-ready",
            "  conditions:\n    - {type: Ready, status: 'False'}\n",
            false,
        ),
        (
            "no-ready",
            "  conditions:\n    - {type: PodScheduled, status: 'True'}\n",
            false,
        ),
        (
            "gates",
            "  conditions:\n    - {type: ContainersReady, status: 'True'}\n    - {type: Ready, status: 'False'}\n",
            false,
        ),
    ];
    for (name, status, want) in cases {
        let p = pod(name, "198.18.0.1", "", status);
        let got = endpoint_ips(&[NS, &p, &svc(PORTS)]);
        assert_eq!(!got.is_empty(), want, "{name}: {got:?}");
    }
}

// endpointslice utils.go podToEndpoint: "ready should never be true if a pod
// is terminating, unless publishNotReadyAddresses was set"
// (`terminating := pod.DeletionTimestamp != nil`); reconciler_test.go
// TestReconcile1Pod "publishNotReadyAddresses" cases.
#[test]
fn terminating_pods_are_not_ready_endpoints() {
    let meta = "  deletionTimestamp: '2026-01-01T00:00:00Z'\n";
    let terminating = pod("t", "198.18.0.2", meta, READY);
    let live = pod("l", "198.18.0.1", "", READY);
    assert_eq!(
        endpoint_ips(&[NS, &live, &terminating, &svc(PORTS)]),
        [ip("198.18.0.1")]
    );
    let publish = svc(&format!("  publishNotReadyAddresses: true\n{PORTS}"));
    assert_eq!(
        endpoint_ips(&[NS, &live, &terminating, &publish]),
        [ip("198.18.0.1"), ip("198.18.0.2")]
    );
}

// endpoints_controller.go / endpointslice: with publishNotReadyAddresses
// a not-ready pod is a ready endpoint; a terminal pod or one without an IP
// still is not (ShouldPodBeInEndpoints).
#[test]
fn publish_not_ready_addresses_makes_not_ready_pods_endpoints() {
    let not_ready = pod(
        "n",
        "198.18.0.3",
        "",
        "  conditions:\n    - {type: Ready, status: 'False'}\n",
    );
    let failed = pod("f", "198.18.0.4", "", "  phase: Failed\n");
    let no_ip = "apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: x\n  name: p\n  labels: {app: a}\nspec:\n  containers: [{name: c}]\n";
    let publish = svc("  publishNotReadyAddresses: true\n  ports:\n    - {port: 80}\n");
    assert_eq!(
        endpoint_ips(&[NS, &not_ready, &failed, no_ip, &publish]),
        [ip("198.18.0.3")]
    );
    assert!(endpoint_ips(&[NS, &not_ready, &svc(PORTS)]).is_empty());
}

// endpointslice controller syncService: "services with Type ExternalName
// receive no endpoints from this controller" (kubernetes/kubernetes#105986),
// and ValidateService: ExternalName's clusterIP "must be empty", its
// externalName is required.
#[test]
fn external_name_services_have_no_endpoints_and_no_vip() {
    let p = pod("a", "198.18.0.1", "", READY);
    let ext =
        svc("  type: ExternalName\n  externalName: db.example.com.\n  ports:\n    - {port: 80}\n");
    let cluster = load(&[NS, &p, &ext]);
    let s = cluster.service("x", "s").unwrap();
    assert!(s.cluster_ips.is_empty() && s.selector.is_none(), "{s:?}");
    assert!(endpoint_ips(&[NS, &p, &ext]).is_empty());
    let e = errors(&[&svc(
        "  type: ExternalName\n  externalName: db.example.com\n  clusterIP: 10.96.0.10\n",
    )]);
    assert!(
        e.len() == 1 && e[0].contains("spec.clusterIP") && e[0].contains("ExternalName"),
        "{e:?}"
    );
    let e = errors(&[&svc("  type: ExternalName\n")]);
    assert!(e.len() == 1 && e[0].contains("spec.externalName"), "{e:?}");
    let e = errors(&[&svc("  type: External\n  ports: [{port: 80}]\n")]);
    assert!(e.len() == 1 && e[0].contains("spec.type"), "{e:?}");
}

// endpointslice reconciler.go getAddressTypesForService: the address types
// are spec.ipFamilies, else the clusterIP's family; headless without
// ipFamilies gets both. A single-stack IPv4 Service of dual-stack pods has
// IPv4 endpoints only.
#[test]
fn endpoints_follow_the_service_ip_families() {
    let p = "apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: x\n  name: d\n  labels: {app: a}\nspec:\n  containers: [{name: c}]\nstatus:\n  podIPs: [{ip: 198.18.0.1}, {ip: 'fd00::1'}]\n";
    let v4 = ip("198.18.0.1");
    let v6 = ip("fd00::1");
    let cases = [
        ("  clusterIP: 10.96.0.1\n", vec![v4]),
        ("  clusterIP: 'fd00:96::1'\n", vec![v6]),
        ("  clusterIP: None\n", vec![v4, v6]),
        ("  clusterIP: None\n  ipFamilies: [IPv6]\n", vec![v6]),
        (
            "  clusterIPs: [10.96.0.1, 'fd00:96::1']\n  ipFamilies: [IPv4, IPv6]\n",
            vec![v4, v6],
        ),
    ];
    for (spec, want) in cases {
        let s = svc(&format!("{spec}  ports: [{{port: 80}}]\n"));
        assert_eq!(endpoint_ips(&[NS, p, &s]), want, "{spec}");
    }
}

// validation.go validateServicePort: `requireName` when len(ports) > 1
// ("spec.ports[1].name: Required value"), a name is a DNS-1123 label and
// unique; ValidateService: "Check for duplicate Ports, considering
// (protocol,port) pairs". validation_test.go TestValidateServiceCreate
// cases "missing port name", "invalid port name", "dup port name",
// "duplicate ports", "duplicate ports (with protocol)" (and "dup port
// different protocol" is valid).
#[test]
fn service_port_names_and_duplicates() {
    let e = errors(&[&svc(
        "  ports:\n    - {name: a, port: 80}\n    - {port: 81}\n",
    )]);
    assert!(e.len() == 1 && e[0].contains("spec.ports[1].name"), "{e:?}");
    let e = errors(&[&svc(
        "  ports:\n    - {name: a, port: 80}\n    - {name: a, port: 81}\n",
    )]);
    assert!(
        e.len() == 1 && e[0].contains("spec.ports[1].name") && e[0].contains("duplicate"),
        "{e:?}"
    );
    let e = errors(&[&svc("  ports:\n    - {name: Http, port: 80}\n")]);
    assert!(e.len() == 1 && e[0].contains("spec.ports[0].name"), "{e:?}");
    let e = errors(&[&svc(
        "  ports:\n    - {name: a, port: 80}\n    - {name: b, port: 80, targetPort: 81}\n",
    )]);
    assert!(e.len() == 1 && e[0].contains("spec.ports[1]:"), "{e:?}");
    // Same port, other protocol: valid (DNS on 53/TCP and 53/UDP).
    let c = load(&[&svc(
        "  ports:\n    - {name: a, port: 53}\n    - {name: b, port: 53, protocol: UDP}\n",
    )]);
    assert_eq!(c.services[0].ports.len(), 2);
    // One unnamed port is fine.
    load(&[&svc("  ports:\n    - {port: 80}\n")]);
}

// ValidateService: ports are required unless headless or ExternalName;
// validation_test.go "missing ports" / "missing ports but headless".
#[test]
fn service_ports_required_unless_headless() {
    let e = errors(&[&svc("  clusterIP: 10.96.0.1\n")]);
    assert!(e.len() == 1 && e[0].contains("spec.ports"), "{e:?}");
    load(&[&svc("  clusterIP: None\n")]);
}

// ValidateService: NameIsDNS1035Label for metadata.name; ValidateLabels on
// spec.selector; IsQualifiedName on appProtocol ("invalid appProtocol");
// validateClusterIPs (clusterIPs[0] is clusterIP, "None" alone, at most one
// address per family); NodePort and LoadBalancer may not be headless.
#[test]
fn service_metadata_selector_app_protocol_and_cluster_ips_are_validated() {
    let named = |name: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{namespace: x, name: {name}}}\nspec:\n  ports: [{{port: 80}}]\n"
        )
    };
    let e = errors(&[&named("1abc")]);
    assert!(e.len() == 1 && e[0].contains("metadata.name"), "{e:?}");
    let e = errors(&[&svc("  ports: [{port: 80, appProtocol: 'a b'}]\n")]);
    assert!(
        e.len() == 1 && e[0].contains("spec.ports[0].appProtocol"),
        "{e:?}"
    );
    load(&[&svc(
        "  ports: [{port: 80, appProtocol: kubernetes.io/h2c}]\n",
    )]);
    let e = errors(&[&svc(PORTS).replace("{app: a}", "{'bad key!': a}")]);
    assert!(e.len() == 1 && e[0].contains("spec.selector"), "{e:?}");
    for (spec, field) in [
        (
            "  clusterIP: 10.96.0.1\n  clusterIPs: [10.96.0.2]\n",
            "spec.clusterIPs[0]",
        ),
        ("  clusterIPs: [None, 10.96.0.1]\n", "spec.clusterIPs"),
        (
            "  clusterIPs: [10.96.0.1, 10.96.0.2]\n",
            "spec.clusterIPs[1]",
        ),
        ("  type: NodePort\n  clusterIP: None\n", "spec.clusterIP"),
        ("  ipFamilies: [IPv5]\n", "spec.ipFamilies[0]"),
    ] {
        let e = errors(&[&svc(&format!("{spec}  ports: [{{port: 80}}]\n"))]);
        assert!(e.len() == 1 && e[0].contains(field), "{spec}: {e:?}");
    }
}

// Types: LoadBalancer and NodePort keep the ClusterIP behaviour (a VIP and
// endpoints); headless has endpoints but no VIP.
#[test]
fn load_balancer_node_port_and_headless_services() {
    let p = pod("a", "198.18.0.1", "", READY);
    for ty in ["NodePort", "LoadBalancer"] {
        let s = svc(&format!("  type: {ty}\n  clusterIP: 10.96.0.1\n{PORTS}"));
        let cluster = load(&[NS, &p, &s]);
        assert_eq!(cluster.services[0].cluster_ips, [ip("10.96.0.1")]);
        assert_eq!(endpoint_ips(&[NS, &p, &s]), [ip("198.18.0.1")], "{ty}");
    }
    let h = svc(&format!("  clusterIP: None\n{PORTS}"));
    assert!(load(&[NS, &p, &h]).services[0].cluster_ips.is_empty());
    assert_eq!(endpoint_ips(&[NS, &p, &h]), [ip("198.18.0.1")]);
}

// ValidateService: "may not be used when `type` is 'ClusterIP'" for a
// nodePort; sessionAffinity NotSupported, sessionAffinityConfig "must not be
// set when session affinity is None", validateClientIPAffinityConfig
// timeoutSeconds in 1-86400; internalTrafficPolicy and
// externalTrafficPolicy NotSupported values, externalTrafficPolicy "may only
// be set for externally-accessible services". validation_test.go cases
// "invalid node port with clusterIP", "invalid sessionAffinity",
// "sessionAffinityConfig can't be set when session affinity is None",
// "invalid timeoutSeconds field", "invalid internalTrafficPolicy field",
// "externalTrafficPolicy is set on ClusterIP service".
#[test]
fn service_node_port_affinity_and_traffic_policies_are_validated() {
    for (spec, field) in [
        (
            "  ports: [{port: 80, nodePort: 30080}]\n",
            "spec.ports[0].nodePort",
        ),
        (
            "  sessionAffinity: Sticky\n  ports: [{port: 80}]\n",
            "spec.sessionAffinity",
        ),
        (
            "  sessionAffinity: None\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 90}}\n  ports: [{port: 80}]\n",
            "spec.sessionAffinityConfig",
        ),
        (
            "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {clientIP: {timeoutSeconds: 86401}}\n  ports: [{port: 80}]\n",
            "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
        ),
        (
            "  internalTrafficPolicy: Node\n  ports: [{port: 80}]\n",
            "spec.internalTrafficPolicy",
        ),
        (
            "  externalTrafficPolicy: Local\n  ports: [{port: 80}]\n",
            "spec.externalTrafficPolicy",
        ),
    ] {
        let e = errors(&[&svc(spec)]);
        assert!(e.len() == 1 && e[0].contains(field), "{spec}: {e:?}");
    }
    load(&[&svc(
        "  type: NodePort\n  externalTrafficPolicy: Local\n  internalTrafficPolicy: Local\n  sessionAffinity: ClientIP\n  ports: [{port: 80, nodePort: 30080}]\n",
    )]);
}

// kube-proxy pkg/proxy/topology.go CategorizeEndpoints: with
// `internalTrafficPolicy: Local` a client reaches only the ready endpoints
// on its own node, and none if its node has none (topology_test.go
// TestCategorizeEndpoints "internalTrafficPolicy: Local, with empty
// endpoints" / "only remote endpoints": no fallback); Cluster (the default)
// uses every endpoint.
#[test]
fn internal_traffic_policy_local_keeps_the_clients_node() {
    let on = |name: &str, ip: &str, node: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: x\n  name: {name}\n  labels: {{app: {name}}}\nspec:\n  containers: [{{name: c}}]\nstatus:\n  hostIP: {node}\n  podIP: {ip}\n"
        )
    };
    let server =
        |name: &str, ip: &str, node: &str| on(name, ip, node).replace("app: ", "app: a, x: ");
    let docs = [
        NS.to_string(),
        on("client", "198.18.0.10", "10.0.0.1"),
        on("far", "198.18.0.20", "10.0.0.3"),
        server("s1", "198.18.0.1", "10.0.0.1"),
        server("s2", "198.18.0.2", "10.0.0.2"),
        svc("  clusterIP: 10.96.0.1\n  internalTrafficPolicy: Local\n  ports: [{port: 80}]\n"),
    ];
    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let cluster = load(&refs);
    let compiler = Compiler::new(&cluster);
    let seen = |client: &str| endpoints_seen_by(&compiler, client);
    assert_eq!(seen("x/client"), [ip("198.18.0.1")]);
    assert!(seen("x/far").is_empty());
    // check agrees: one endpoint judged from x/client, none from x/far.
    let req = |from: &str| service_check_request(&cluster, from);
    let r = palisade_control::check::check(&compiler, &req("client")).unwrap();
    assert_eq!(r.endpoints.len(), 1, "{r:#?}");
    let r = palisade_control::check::check(&compiler, &req("far")).unwrap();
    assert!(r.endpoints.is_empty(), "{r:#?}");
    // Cluster: both, from anywhere.
    let mut cluster_docs = docs.clone();
    cluster_docs[5] = svc("  clusterIP: 10.96.0.1\n  ports: [{port: 80}]\n");
    let refs: Vec<&str> = cluster_docs.iter().map(String::as_str).collect();
    let cluster = load(&refs);
    let compiler = Compiler::new(&cluster);
    let c = compiler.compile_named("x/far").unwrap();
    let s = c.services.iter().find(|s| s.name == "x/s").unwrap();
    assert_eq!(s.ports[0].endpoints.len(), 2);
}

// kube-proxy pkg/proxy/topology.go CategorizeEndpoints (KEP-1669,
// ProxyTerminatingEndpoints, GA in 1.28): "if there are no ready
// endpoints, use serving terminating endpoints" for cluster traffic, and
// for internalTrafficPolicy Local among the local endpoints, "if there are
// no ready local endpoints, use serving terminating local endpoints"; an
// endpoint that is terminating and not serving is never used. Upstream e2e
// (test/e2e/network/service.go): "should fallback to terminating endpoints
// when there are no ready endpoints with internalTrafficPolicy=Cluster" and
// "...=Local".
#[test]
fn serving_terminating_endpoints_answer_only_when_none_is_ready() {
    let gone = "  deletionTimestamp: '2026-01-01T00:00:00Z'\n";
    let not_ready = "  conditions:\n    - {type: Ready, status: 'False'}\n";
    let live = pod("live", "198.18.0.1", "", READY);
    let serving_terminating = pod("st", "198.18.0.2", gone, READY);
    let dead_terminating = pod("dt", "198.18.0.3", gone, not_ready);
    // A ready endpoint exists: the terminating ones stay out.
    assert_eq!(
        endpoint_ips(&[
            NS,
            &live,
            &serving_terminating,
            &dead_terminating,
            &svc(PORTS)
        ]),
        [ip("198.18.0.1")]
    );
    // None ready: the serving terminating one answers, never the one that
    // no longer passes its readiness probe.
    assert_eq!(
        endpoint_ips(&[NS, &serving_terminating, &dead_terminating, &svc(PORTS)]),
        [ip("198.18.0.2")]
    );
    assert!(endpoint_ips(&[NS, &dead_terminating, &svc(PORTS)]).is_empty());

    // Local: the choice is made per node. A client on 10.0.0.1 has only a
    // serving terminating endpoint there and gets it, although a ready one
    // runs on 10.0.0.2; a client on 10.0.0.2 gets that ready one.
    let on = |name: &str, ip: &str, node: &str, meta: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: x\n  name: {name}\n{meta}  labels: {{app: {name}}}\nspec:\n  containers: [{{name: c}}]\nstatus:\n  hostIP: {node}\n  podIP: {ip}\n{READY}"
        )
    };
    let server = |name: &str, ip: &str, node: &str, meta: &str| {
        on(name, ip, node, meta).replace("app: ", "app: a, x: ")
    };
    let docs = [
        NS.to_string(),
        on("c1", "198.18.0.10", "10.0.0.1", ""),
        on("c2", "198.18.0.11", "10.0.0.2", ""),
        server("old", "198.18.0.1", "10.0.0.1", gone),
        server("new", "198.18.0.2", "10.0.0.2", ""),
        svc("  clusterIP: 10.96.0.1\n  internalTrafficPolicy: Local\n  ports: [{port: 80}]\n"),
    ];
    let refs: Vec<&str> = docs.iter().map(String::as_str).collect();
    let cluster = load(&refs);
    let compiler = Compiler::new(&cluster);
    let seen = |client: &str| endpoints_seen_by(&compiler, client);
    assert_eq!(seen("x/c1"), [ip("198.18.0.1")]);
    assert_eq!(seen("x/c2"), [ip("198.18.0.2")]);
    // check judges the same endpoint from x/c1.
    let req = service_check_request(&cluster, "c1");
    let r = palisade_control::check::check(&compiler, &req).unwrap();
    assert_eq!(r.endpoints.len(), 1, "{r:#?}");
    assert_eq!(r.endpoints[0].ip, ip("198.18.0.1"), "{r:#?}");
}

/// `sessionAffinity: ClientIP` reaches the sidecar's config with its
/// timeout (`sessionAffinityConfig.clientIP.timeoutSeconds`, defaulted to
/// 10800 as SetDefaults_Service does); `None` (or no field) carries none.
#[test]
fn client_ip_session_affinity_reaches_the_proxy_config_with_its_timeout() {
    let affinity_of = |spec: &str| {
        let doc = svc(spec);
        let cluster = load(&[NS, &doc]);
        let compiler = Compiler::new(&cluster);
        services::resolve(compiler.index(), cluster.service("x", "s").unwrap()).session_affinity
    };
    let with = |t: u32| Some(palisade_api::SessionAffinity { timeout_seconds: t });
    assert_eq!(
        affinity_of(&format!("  sessionAffinity: ClientIP\n{PORTS}")),
        with(10800)
    );
    assert_eq!(
        affinity_of(&format!(
            "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: 15}}}}\n{PORTS}"
        )),
        with(15)
    );
    assert_eq!(
        affinity_of(&format!(
            "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {{clientIP: {{}}}}\n{PORTS}"
        )),
        with(10800)
    );
    assert_eq!(
        affinity_of(&format!("  sessionAffinity: None\n{PORTS}")),
        None
    );
    assert_eq!(affinity_of(PORTS), None);
    // check says what the affinity means for the caller.
    let two = format!(
        "{}\n---\n{}",
        pod("p1", "198.18.0.1", "", READY),
        pod("p2", "198.18.0.2", "", READY)
    );
    let client = "apiVersion: v1\nkind: Pod\nmetadata: {namespace: x, name: client, labels: {app: c}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 198.18.0.10}\n";
    let doc = svc(&format!(
        "  sessionAffinity: ClientIP\n  sessionAffinityConfig: {{clientIP: {{timeoutSeconds: 60}}}}\n{PORTS}"
    ));
    let cluster = load(&[NS, &two, client, &doc]);
    let compiler = Compiler::new(&cluster);
    let report =
        palisade_control::check::check(&compiler, &service_check_request(&cluster, "client"))
            .unwrap();
    assert!(
        report.detail.contains("sessionAffinity ClientIP") && report.detail.contains("60 s"),
        "{}",
        report.detail
    );
    // And it round-trips through the config the sidecar reads.
    let json = serde_json::to_string(&with(15)).unwrap();
    assert_eq!(json, r#"{"timeoutSeconds":15}"#);
}

/// kube-proxy watches only Services without the labels
/// `service.kubernetes.io/service-proxy-name` (another proxy serves them)
/// and `service.kubernetes.io/headless` (cmd/kube-proxy: the informers'
/// label selector). Upstream e2e "should implement
/// service.kubernetes.io/service-proxy-name" and "... /headless": such a
/// Service's cluster IP reaches nothing, and removing the label brings it
/// back. The sidecar gets no cluster IP to translate for it, and `check`
/// says why nothing answers.
#[test]
fn services_labelled_away_from_kube_proxy_have_no_cluster_ip_to_translate() {
    let client = "apiVersion: v1\nkind: Pod\nmetadata: {namespace: x, name: client, labels: {app: c}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 198.18.0.10}\n";
    let server = pod("server", "198.18.0.1", "", READY);
    for label in [
        "service.kubernetes.io/service-proxy-name: foo-bar",
        "service.kubernetes.io/headless: ''",
    ] {
        let with = |labelled: bool| {
            let meta = if labelled {
                format!("metadata: {{namespace: x, name: s, labels: {{{label}}}}}")
            } else {
                "metadata: {namespace: x, name: s}".to_string()
            };
            format!(
                "apiVersion: v1\nkind: Service\n{meta}\nspec:\n  selector: {{app: a}}\n  clusterIP: 10.96.0.7\n{PORTS}"
            )
        };
        for labelled in [true, false] {
            let svc_doc = with(labelled);
            let cluster = load(&[NS, client, &server, &svc_doc]);
            let compiler = Compiler::new(&cluster);
            let config = compiler.compile_named("x/client").unwrap();
            let s = config.services.iter().find(|s| s.name == "x/s").unwrap();
            let report = palisade_control::check::check(
                &compiler,
                &service_check_request(&cluster, "client"),
            )
            .unwrap();
            if labelled {
                assert!(s.cluster_ips.is_empty(), "{label}: {s:?}");
                assert_eq!(report.verdict, palisade_control::check::LayerVerdict::Deny);
                let key = label.split(':').next().unwrap();
                assert!(report.detail.contains(key), "{}", report.detail);
                assert!(report.endpoints.is_empty());
            } else {
                assert_eq!(s.cluster_ips, [ip("10.96.0.7")], "{label}");
                assert_eq!(report.endpoints.len(), 1, "{report:#?}");
            }
        }
    }
}

/// kube-proxy leads a pod's traffic to a Service's `spec.externalIPs`, and
/// to a LoadBalancer's ingress IPs, to the same endpoints as its cluster IP
/// (an ingress with `ipMode: Proxy` is left to the load balancer, KEP-1860).
/// The sidecar translates them alike, so a meshed client keeps mTLS and
/// per-endpoint egress there too; `check --to <external IP>` is the Service.
/// ValidateService refuses external IPs that are not IPs or are special
/// (ValidateNonSpecialIP).
#[test]
fn external_and_load_balancer_ips_lead_to_the_endpoints() {
    let server = pod("server", "198.18.0.1", "", READY);
    let lb = "apiVersion: v1\nkind: Service\nmetadata: {namespace: x, name: s}\nspec:\n  type: LoadBalancer\n  selector: {app: a}\n  clusterIP: 10.96.0.7\n  externalIPs: [192.0.2.10, 192.0.2.10]\n  ports: [{port: 80, targetPort: http, nodePort: 30080}]\nstatus:\n  loadBalancer:\n    ingress:\n      - {ip: 203.0.113.5}\n      - {ip: 203.0.113.6, ipMode: Proxy}\n      - {hostname: lb.example.com}\n      - {ip: 192.0.2.10, ipMode: VIP}\n";
    let cluster = load(&[NS, &server, lb]);
    let compiler = Compiler::new(&cluster);
    let s = services::resolve(compiler.index(), cluster.service("x", "s").unwrap());
    assert_eq!(s.cluster_ips, [ip("10.96.0.7")]);
    assert_eq!(s.external_ips, [ip("192.0.2.10"), ip("203.0.113.5")]);
    // `check --to 203.0.113.5` is a question about the Service.
    let dest =
        palisade_control::check::request::parse_destination(&cluster, "203.0.113.5").unwrap();
    assert!(
        matches!(dest, palisade_control::check::Destination::Service { .. }),
        "{dest:?}"
    );
    // A ClusterIP Service's load-balancer status is not programmed.
    let plain = svc(
        "  clusterIP: 10.96.0.8\n  ports: [{port: 80}]\nstatus:\n  loadBalancer:\n    ingress: [{ip: 203.0.113.9}]\n",
    );
    let cluster = load(&[NS, &server, &plain]);
    let compiler = Compiler::new(&cluster);
    let s = services::resolve(compiler.index(), cluster.service("x", "s").unwrap());
    assert!(s.external_ips.is_empty());

    for (bad, why) in [
        ("300.1.1.1", "not a valid IP"),
        ("0.0.0.0", "unspecified"),
        ("127.0.0.2", "loopback"),
        ("::1", "loopback"),
        ("169.254.1.1", "link-local range"),
        ("fe80::1", "link-local range"),
        ("224.0.0.5", "link-local multicast"),
        ("ff02::1", "link-local multicast"),
    ] {
        let doc = svc(&format!(
            "  clusterIP: 10.96.0.9\n  externalIPs: [\"{bad}\"]\n  ports: [{{port: 80}}]\n"
        ));
        let errs = errors(&[NS, &doc]);
        assert!(
            errs.iter()
                .any(|e| e.contains("spec.externalIPs[0]") && e.contains(why)),
            "{bad}: {errs:?}"
        );
    }
}

/// `check` sees the server name a sidecar sends when it calls through a
/// Service (Istio's `outbound_.PORT_._.NAME.NS.svc.cluster.local`), so a
/// `connection.sni` condition is judged as the sidecars will; `--sni`
/// overrides it, and a pod called at its own address has none.
#[test]
fn check_judges_connection_sni_with_the_server_name_sidecars_send() {
    let client = "apiVersion: v1\nkind: Pod\nmetadata: {namespace: x, name: client, labels: {app: c}}\nspec: {containers: [{name: c}]}\nstatus: {podIP: 198.18.0.10}\n";
    let server = pod("server", "198.18.0.1", "", READY);
    let service = svc(&format!("  clusterIP: 10.96.0.7\n{PORTS}"));
    let deny = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {namespace: x, name: deny-sni}\nspec:\n  selector: {matchLabels: {app: a}}\n  action: DENY\n  rules:\n    - when:\n        - key: connection.sni\n          values: [\"outbound_.80_._.s.x.svc.cluster.local\"]\n";
    let cluster = load(&[NS, client, &server, &service, deny]);
    let compiler = Compiler::new(&cluster);
    let verdict = |req: &palisade_control::check::CheckRequest| {
        palisade_control::check::check(&compiler, req)
            .unwrap()
            .verdict
    };
    use palisade_control::check::LayerVerdict;
    let verdict_in = |compiler: &Compiler, req: &palisade_control::check::CheckRequest| {
        palisade_control::check::check(compiler, req)
            .unwrap()
            .verdict
    };
    let via_service = service_check_request(&cluster, "client");
    assert_eq!(verdict(&via_service), LayerVerdict::Deny);
    let r = palisade_control::check::check(&compiler, &via_service).unwrap();
    assert!(
        r.endpoints.iter().all(
            |e| e.authorization.sni.as_deref() == Some("outbound_.80_._.s.x.svc.cluster.local")
        ),
        "{r:#?}"
    );
    let mut other_name = via_service.clone();
    other_name.sni = Some("api.example.com".into());
    assert_eq!(verdict(&other_name), LayerVerdict::Allow);
    let mut to_pod = via_service.clone();
    to_pod.destination = palisade_control::check::Destination::Pod {
        pod: cluster.pod_index("x", "server").unwrap(),
        ip: None,
    };
    to_pod.port = palisade_control::cluster::PortRef::Number(8080);
    assert_eq!(verdict(&to_pod), LayerVerdict::Allow);
    let r = palisade_control::check::check(&compiler, &to_pod).unwrap();
    assert_eq!(r.endpoints[0].authorization.sni, None, "{r:#?}");
    // With the mesh's cluster domain set, the name sidecars send carries
    // it, and the condition above no longer matches.
    let mesh = "apiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec: {clusterDomain: corp.example}\n";
    let corp = load(&[NS, client, &server, &service, deny, mesh]);
    let corp_compiler = Compiler::new(&corp);
    let corp_request = service_check_request(&corp, "client");
    let r = palisade_control::check::check(&corp_compiler, &corp_request).unwrap();
    assert_eq!(r.verdict, LayerVerdict::Allow);
    assert!(
        r.endpoints.iter().all(|e| e.authorization.sni.as_deref()
            == Some("outbound_.80_._.s.x.svc.corp.example")),
        "{r:#?}"
    );
    let corp_deny = deny.replace("svc.cluster.local", "svc.corp.example");
    let corp = load(&[NS, client, &server, &service, &corp_deny, mesh]);
    let corp_compiler = Compiler::new(&corp);
    assert_eq!(
        verdict_in(&corp_compiler, &corp_request),
        LayerVerdict::Deny
    );
    let mut plaintext = via_service.clone();
    plaintext.plaintext = true;
    let r = palisade_control::check::check(&compiler, &plaintext).unwrap();
    assert!(
        r.endpoints
            .iter()
            .all(|e| e.authorization.verdict != LayerVerdict::Deny
                || !e.authorization.detail.contains("deny-sni")),
        "{r:#?}"
    );
}
