//! Upstream Istio's mTLS reachability integration test, judged with `check`
//! on compiled configs: `tests/integration/security/reachability_test.go`
//! (`TestReachability`) with the policies of
//! `tests/integration/security/testdata/reachability/*.yaml.tmpl`, templates
//! filled in for the mesh below. Each table names the upstream case; the
//! expected outcome (`expectSuccess`) and transport (`expectMTLS`) are
//! upstream's conditions (`notNaked`, `notFromNaked`, `always`, `never`...).
//!
//! The echo apps keep upstream's ports (`echo/common/ports`): Service
//! port 80 to workload port 18080 (http), 85/18085 (http2), 443/18443
//! (https), 9090/19090 (tcp), 7070/17070 (grpc). `a` and `b` run a sidecar;
//! `naked` is upstream's sidecar-less app (`sidecar.istio.io/inject:
//! "false"`). Calls go through each app's Service, as upstream's do.
//!
//! Upstream's cases that need a DestinationRule's client TLS mode (`global
//! mtls strict|permissive|disabled`, `global plaintext to mtls permissive`,
//! `global no peer authn`, `mtls strict|permissive|disabled`, the three
//! `migration` cases, which also need a VirtualService's subsets) and
//! `global automtls passthrough` (a PASSTHROUGH load balancer) are not here:
//! Palisade reads no DestinationRule and always uses Istio's auto mTLS (see
//! the README).
mod policy_support;

use palisade_api::Protocol;
use palisade_control::check::{self, CheckReport, CheckRequest, Destination, Source};
use palisade_control::cluster::{Cluster, PortRef};
use palisade_control::compile::Compiler;
use policy_support::{allowed, load, try_load};

/// (name, Service port, workload port).
const PORTS: [(&str, u16, u16); 5] = [
    ("http", 80, 18080),
    ("http2", 85, 18085),
    ("https", 443, 18443),
    ("tcp", 9090, 19090),
    ("grpc", 7070, 17070),
];

const APPS: [&str; 3] = ["a", "b", "naked"];

fn app(name: &str, ip: &str, cluster_ip: &str) -> String {
    let container_ports: String = PORTS
        .iter()
        .map(|(n, _, w)| format!("\n        - {{name: {n}, containerPort: {w}}}"))
        .collect();
    let service_ports: String = PORTS
        .iter()
        .map(|(n, p, w)| format!("\n    - {{name: {n}, port: {p}, targetPort: {w}}}"))
        .collect();
    let annotations = if name == "naked" {
        "\n  annotations: {sidecar.istio.io/inject: \"false\"}"
    } else {
        ""
    };
    format!(
        "---\napiVersion: v1\nkind: Pod\nmetadata:\n  namespace: echo1\n  name: {name}\n  labels: {{app: {name}}}{annotations}\nspec:\n  serviceAccountName: {name}\n  containers:\n    - name: app\n      ports:{container_ports}\nstatus:\n  podIP: {ip}\n---\napiVersion: v1\nkind: Service\nmetadata:\n  namespace: echo1\n  name: {name}\nspec:\n  selector: {{app: {name}}}\n  clusterIP: {cluster_ip}\n  ports:{service_ports}\n"
    )
}

fn mesh() -> String {
    APPS.iter()
        .enumerate()
        .map(|(i, name)| {
            app(
                name,
                &format!("198.18.1.{}", 10 + i),
                &format!("10.96.1.{}", 10 + i),
            )
        })
        .collect()
}

/// `testdata/reachability/global-peer-authn.yaml.tmpl` in the system
/// (root) namespace.
fn global_peer_authn(mode: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  namespace: istio-system\n  name: default\nspec:\n  mtls:\n    mode: {mode}\n"
    )
}

/// `testdata/reachability/workload-peer-authn.yaml.tmpl`, built for every
/// target app (upstream's `BuildAll(nil, allServices)`).
fn workload_peer_authn(mode: &str) -> String {
    APPS.iter()
        .map(|to| format!(
            "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  namespace: echo1\n  name: {to}\nspec:\n  selector:\n    matchLabels:\n      app: {to}\n  mtls:\n    mode: {mode}\n"
        ))
        .collect()
}

/// `testdata/reachability/workload-peer-authn-port-override.yaml.tmpl`:
/// `mode` for the workload, `port_mode` on each of its workload ports.
fn workload_peer_authn_port_override(mode: &str, port_mode: &str) -> String {
    APPS.iter()
        .map(|to| {
            let ports: String = PORTS
                .iter()
                .map(|(_, _, w)| format!("\n    {w}:\n      mode: {port_mode}"))
                .collect();
            format!(
                "---\napiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata:\n  namespace: echo1\n  name: {to}\nspec:\n  selector:\n    matchLabels:\n      app: {to}\n  mtls:\n    mode: {mode}\n  portLevelMtls:{ports}\n"
            )
        })
        .collect()
}

/// One of upstream's conditions on (from, to, port name).
type Cond = fn(&str, &str, &str) -> bool;

fn always(_: &str, _: &str, _: &str) -> bool {
    true
}
fn never(_: &str, _: &str, _: &str) -> bool {
    false
}
fn not_naked(from: &str, to: &str, _: &str) -> bool {
    from != "naked" && to != "naked"
}
fn not_from_naked(from: &str, _: &str, _: &str) -> bool {
    from != "naked"
}

fn call(c: &Cluster, from: &str, to: &str, port: u16) -> CheckReport {
    let compiler = Compiler::new(c);
    let pod = c.pod_index("echo1", from).unwrap();
    let service = c
        .services
        .iter()
        .position(|s| s.namespace == "echo1" && s.name == to)
        .unwrap();
    let req = CheckRequest {
        source: Source::Pod {
            pod,
            ip: c.pods[pod].ips[0],
        },
        destination: Destination::Service { service },
        port: PortRef::Number(port),
        protocol: Protocol::Tcp,
        http: None,
        plaintext: false,
        sni: None,
    };
    check::check(&compiler, &req).unwrap_or_else(|e| panic!("check: {e}"))
}

/// Runs upstream's call matrix (every app to every other app's Service, on
/// every port; no self calls) for `case` under `configs`, and reports every
/// call whose outcome or transport differs from upstream's conditions.
#[track_caller]
fn expect(case: &str, configs: &str, success: Cond, mtls: Cond) {
    let c = load(&[&mesh(), configs]);
    let mut wrong = Vec::new();
    for from in APPS {
        for to in APPS.iter().filter(|&&t| t != from) {
            for (name, port, _) in PORTS {
                let report = call(&c, from, to, port);
                let got = allowed(&report);
                let want = success(from, to, name);
                let ep = &report.endpoints[0];
                // Upstream checks the transport of successful calls only.
                let transport_ok = !want || ep.mtls.mtls == mtls(from, to, name);
                if got != want || !transport_ok {
                    wrong.push(format!(
                        "{case}: {from} -> {to}:{name}: allowed {got} (want {want}), mTLS {} (want {})\n    {}\n    {}",
                        ep.mtls.mtls,
                        mtls(from, to, name),
                        ep.mtls.detail,
                        ep.egress.detail,
                    ));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} mismatches:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

/// `global automtls strict`: no DestinationRule; a STRICT mesh. The
/// sidecar-less caller's plaintext is refused; a call to the naked app
/// succeeds in plaintext (auto mTLS sends none to a workload without a
/// sidecar).
#[test]
fn global_automtls_strict() {
    expect(
        "global automtls strict",
        &global_peer_authn("STRICT"),
        not_from_naked,
        not_naked,
    );
}

/// `global automtls disable`: every call succeeds, none in mTLS.
#[test]
fn global_automtls_disable() {
    expect(
        "global automtls disable",
        &global_peer_authn("DISABLE"),
        always,
        never,
    );
}

/// `global automtls strict` with the mesh-wide policy PERMISSIVE (upstream's
/// `global mtls permissive` without its DestinationRule: what auto mTLS
/// does where the DestinationRule does not decide): every call succeeds,
/// mTLS between sidecars.
#[test]
fn global_automtls_permissive() {
    expect(
        "global automtls permissive",
        &global_peer_authn("PERMISSIVE"),
        always,
        not_naked,
    );
}

/// No PeerAuthentication at all: PERMISSIVE, auto mTLS between sidecars.
#[test]
fn no_peer_authn() {
    expect("no peer authn", "", always, not_naked);
}

/// The workload-level form of `global automtls strict` (upstream's
/// `mtls strict` template, without its DestinationRule).
#[test]
fn workload_automtls_strict() {
    expect(
        "workload automtls strict",
        &workload_peer_authn("STRICT"),
        not_from_naked,
        not_naked,
    );
}

/// `mtls port override`: STRICT workloads whose every port is DISABLE.
/// The port level (keyed by the workload port) wins: every call succeeds,
/// none in mTLS, as the callers' auto mTLS follows the port's mode.
#[test]
fn mtls_port_override() {
    expect(
        "mtls port override",
        &workload_peer_authn_port_override("STRICT", "DISABLE"),
        always,
        never,
    );
}

/// The converse override (DISABLE workloads, STRICT ports): the port level
/// still wins, so it is `global automtls strict` again.
#[test]
fn mtls_port_override_strict_ports() {
    expect(
        "mtls port override (DISABLE, ports STRICT)",
        &workload_peer_authn_port_override("DISABLE", "STRICT"),
        not_from_naked,
        not_naked,
    );
}

/// A port-level override keyed by the Service port (80), not the workload
/// port (18080), does not apply: Istio keys `portLevelMtls` by the
/// workload's port, so the workload's STRICT holds on http.
#[test]
fn port_level_mtls_is_keyed_by_workload_port() {
    let policy = "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  namespace: echo1\n  name: b\nspec:\n  selector:\n    matchLabels: {app: b}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    80: {mode: DISABLE}\n";
    let c = load(&[&mesh(), policy]);
    let r = call(&c, "naked", "b", 80);
    assert!(!allowed(&r), "{}", r.endpoints[0].mtls.detail);
    let r = call(&c, "a", "b", 80);
    assert!(allowed(&r) && r.endpoints[0].mtls.mtls);
}

/// The naked app is outside the mesh: it gets no config, no NetworkPolicy
/// is enforced at it (nothing runs there to do it), and the opt-out is read
/// from Istio's label, Istio's annotation and Palisade's annotation alike.
#[test]
fn naked_app_has_no_sidecar() {
    let deny_all = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: echo1, name: deny-all}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress, Egress]\n";
    let c = load(&[&mesh(), deny_all]);
    let compiler = Compiler::new(&c);
    let err = compiler.compile_named("echo1/naked").unwrap_err();
    assert!(
        err.to_string()
            .contains("runs no sidecar (annotation sidecar.istio.io/inject: \"false\")"),
        "{err}"
    );
    assert_eq!(compiler.compile_all().len(), 2);
    // naked -> b: b's sidecar enforces the policy; naked's egress is not.
    let r = call(&c, "naked", "b", 80);
    let ep = &r.endpoints[0];
    assert_eq!(ep.egress.reason, "not-meshed", "{}", ep.egress.detail);
    assert!(
        ep.egress.detail.contains("echo1/deny-all"),
        "{}",
        ep.egress.detail
    );
    assert!(!allowed(&r));
    // a -> naked: a's egress denies; naked's ingress is not enforced.
    let r = call(&c, "a", "naked", 80);
    let ep = &r.endpoints[0];
    assert_eq!(ep.ingress.reason, "not-meshed");
    assert_eq!(ep.egress.reason, "no-rule-matched");
    for opt_out in [
        "labels: {app: naked, sidecar.istio.io/inject: \"false\"}",
        "labels: {app: naked}\n  annotations: {palisade.dev/inject: \"false\"}",
    ] {
        let m = mesh().replace(
            "labels: {app: naked}\n  annotations: {sidecar.istio.io/inject: \"false\"}",
            opt_out,
        );
        let c = try_load(&[&m, &global_peer_authn("STRICT")]).unwrap();
        assert!(c.pods[2].no_sidecar.is_some(), "{opt_out}");
        assert!(!allowed(&call(&c, "naked", "b", 80)), "{opt_out}");
        assert!(allowed(&call(&c, "a", "naked", 80)), "{opt_out}");
    }
}

/// Upstream's DestinationRule templates (`global-dr.yaml.tmpl`,
/// `migration.yaml.tmpl`) load, and `lint` names every client TLS mode in
/// them as not applied: where upstream's `global mtls strict` expects the
/// ISTIO_MUTUAL call to the naked app to fail, or `global plaintext to
/// mtls permissive` expects plaintext, Palisade's auto mTLS decides instead.
#[test]
fn destination_rule_tls_modes_are_named_by_lint() {
    let global_dr = "---\napiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata:\n  namespace: istio-system\n  name: default\nspec:\n  host: \"*\"\n  trafficPolicy:\n    tls:\n      mode: DISABLE\n---\napiVersion: networking.istio.io/v1beta1\nkind: DestinationRule\nmetadata:\n  namespace: istio-system\n  name: eastwest-opt-out\nspec:\n  exportTo: [.]\n  host: \"*\"\n  trafficPolicy:\n    loadBalancer:\n      simple: UNSPECIFIED\n";
    let migration = "---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  namespace: echo1\n  name: migration\nspec:\n  host: migration.echo1.svc.cluster.local\n  subsets:\n  - name: vistio\n    labels: {version: vistio}\n    trafficPolicy:\n      tls: {mode: ISTIO_MUTUAL}\n  - name: vlegacy\n    labels: {version: vlegacy}\n  trafficPolicy:\n    tls: {mode: ISTIO_MUTUAL}\n    portLevelSettings:\n    - port: {number: 80}\n      tls: {mode: DISABLE}\n";
    let c = load(&[
        &mesh(),
        &global_peer_authn("PERMISSIVE"),
        global_dr,
        migration,
    ]);
    let findings: Vec<String> = palisade_control::lint::lint(&c)
        .into_iter()
        .filter(|f| f.code == "destination-rule-tls-ignored")
        .map(|f| format!("{}: {}", f.object, f.message))
        .collect();
    let expected = [
        "DestinationRule istio-system/default: spec.trafficPolicy.tls.mode DISABLE",
        "DestinationRule echo1/migration: spec.trafficPolicy.tls.mode ISTIO_MUTUAL",
        "DestinationRule echo1/migration: spec.trafficPolicy.portLevelSettings[0].tls.mode DISABLE",
        "DestinationRule echo1/migration: spec.subsets[0].trafficPolicy.tls.mode ISTIO_MUTUAL",
    ];
    assert_eq!(findings.len(), expected.len(), "{findings:#?}");
    for e in expected {
        assert!(
            findings.iter().any(|f| f.starts_with(e)),
            "{e} not in {findings:#?}"
        );
    }
    // The call upstream's `global plaintext to mtls permissive` makes in
    // plaintext is mTLS here: auto mTLS between sidecars.
    let r = call(&c, "a", "b", 80);
    assert!(allowed(&r) && r.endpoints[0].mtls.mtls);
}
