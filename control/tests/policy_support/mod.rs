//! Shared helpers for the policy tests: loading YAML text, the upstream
//! netpol e2e topology (namespaces x, y, z; pods a, b, c), reachability
//! truth tables in the style of `test/e2e/network/netpol` (`NewReachability`,
//! `ExpectPeer`, `ExpectAllIngress`, `ExpectAllEgress`, `Expect`), and a
//! `check` shortcut.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::PathBuf;

use palisade_api::Protocol;
use palisade_control::check::{
    self, CheckReport, CheckRequest, Destination, HttpSpec, LayerVerdict, Source,
};
use palisade_control::cluster::{Cluster, PortRef};
use palisade_control::compile::Compiler;
use palisade_control::load::{LoadErrors, load_sources};

pub fn try_load(docs: &[&str]) -> Result<Cluster, LoadErrors> {
    let sources: Vec<(PathBuf, String)> = docs
        .iter()
        .enumerate()
        .map(|(i, d)| (PathBuf::from(format!("test-{i}.yaml")), d.to_string()))
        .collect();
    load_sources(&sources)
}

pub fn load(docs: &[&str]) -> Cluster {
    match try_load(docs) {
        Ok(c) => c,
        Err(e) => panic!("test manifests do not load: {e}"),
    }
}

pub const NAMESPACES: [&str; 3] = ["x", "y", "z"];
pub const PODS: [&str; 3] = ["a", "b", "c"];

/// The upstream model: every pod serves 80 and 81 on TCP, UDP and SCTP, with
/// container ports named `serve-80-tcp` and so on.
/// A new CA's bundle for trust domain `td` as PEM, and as the
/// `federatedTrustDomains` list item of a MeshConfig `spec` (indented for
/// it: the item at 4 spaces).
pub fn federated_trust_domain(td: &str) -> (String, String) {
    let ca = palisade_identity::CertificateAuthority::create(
        &palisade_identity::TrustDomain::new(td).unwrap(),
        &palisade_identity::CaOptions::default(),
    )
    .unwrap();
    let pem = ca.bundle().to_pem();
    let indented: String = pem.lines().map(|l| format!("        {l}\n")).collect();
    let item = format!("    - trustDomain: {td}\n      trustDomainBundle: |\n{indented}");
    (pem, item)
}

pub fn xyz_topology() -> String {
    let mut out = String::new();
    for (ni, ns) in NAMESPACES.iter().enumerate() {
        let _ = write!(
            out,
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n  labels:\n    ns: {ns}\n"
        );
        for (pi, pod) in PODS.iter().enumerate() {
            let mut ports = String::new();
            for port in [80, 81] {
                for proto in ["TCP", "UDP", "SCTP"] {
                    let _ = write!(
                        ports,
                        "\n        - name: serve-{port}-{}\n          containerPort: {port}\n          protocol: {proto}",
                        proto.to_ascii_lowercase()
                    );
                }
            }
            let _ = write!(
                out,
                "---\napiVersion: v1\nkind: Pod\nmetadata:\n  namespace: {ns}\n  name: {pod}\n  labels:\n    pod: {pod}\nspec:\n  containers:\n    - name: cont-{pod}\n      image: agnhost\n      ports:{ports}\nstatus:\n  podIP: 198.18.{}.{}\n",
                ni + 1,
                pi + 10
            );
        }
    }
    out
}

/// `x/a` -> its IP in `xyz_topology`.
pub fn xyz_ip(pod: &str) -> String {
    let (ns, p) = pod.split_once('/').unwrap();
    let ni = NAMESPACES.iter().position(|n| *n == ns).unwrap();
    let pi = PODS.iter().position(|n| *n == p).unwrap();
    format!("198.18.{}.{}", ni + 1, pi + 10)
}

/// A `Peer{Namespace, Pod}` of the upstream suite; `None` matches any.
#[derive(Debug, Clone, Copy, Default)]
pub struct Peer {
    pub ns: Option<&'static str>,
    pub pod: Option<&'static str>,
}

impl Peer {
    pub fn any() -> Self {
        Self::default()
    }
    pub fn ns(ns: &'static str) -> Self {
        Self {
            ns: Some(ns),
            pod: None,
        }
    }
    pub fn pod(ns: &'static str, pod: &'static str) -> Self {
        Self {
            ns: Some(ns),
            pod: Some(pod),
        }
    }
    fn matches(&self, key: &str) -> bool {
        let (ns, pod) = key.split_once('/').unwrap();
        self.ns.is_none_or(|n| n == ns) && self.pod.is_none_or(|p| p == pod)
    }
}

/// Expected connectivity of every (from, to) pair.
#[derive(Debug, Clone)]
pub struct Reachability {
    pub pods: Vec<String>,
    pub expected: BTreeMap<(String, String), bool>,
}

impl Reachability {
    pub fn new(default: bool) -> Self {
        let pods: Vec<String> = NAMESPACES
            .iter()
            .flat_map(|n| PODS.iter().map(move |p| format!("{n}/{p}")))
            .collect();
        let mut expected = BTreeMap::new();
        for f in &pods {
            for t in &pods {
                expected.insert((f.clone(), t.clone()), default);
            }
        }
        Self { pods, expected }
    }
    pub fn expect_peer(&mut self, from: Peer, to: Peer, v: bool) {
        for ((f, t), e) in self.expected.iter_mut() {
            if from.matches(f) && to.matches(t) {
                *e = v;
            }
        }
    }
    pub fn expect_all_ingress(&mut self, to: &str, v: bool) {
        for ((_, t), e) in self.expected.iter_mut() {
            if t == to {
                *e = v;
            }
        }
    }
    pub fn expect_all_egress(&mut self, from: &str, v: bool) {
        for ((f, _), e) in self.expected.iter_mut() {
            if f == from {
                *e = v;
            }
        }
    }
    pub fn expect(&mut self, from: &str, to: &str, v: bool) {
        self.expected.insert((from.to_string(), to.to_string()), v);
    }
}

pub fn request(
    cluster: &Cluster,
    from: &str,
    to: &str,
    port: u16,
    protocol: Protocol,
) -> CheckRequest {
    let (fns, fname) = from.split_once('/').unwrap();
    let (tns, tname) = to.split_once('/').unwrap();
    let src = cluster
        .pod_index(fns, fname)
        .unwrap_or_else(|| panic!("no pod {from}"));
    let dst = cluster
        .pod_index(tns, tname)
        .unwrap_or_else(|| panic!("no pod {to}"));
    CheckRequest {
        source: Source::Pod {
            pod: src,
            ip: cluster.pods[src].ips[0],
        },
        destination: Destination::Pod { pod: dst, ip: None },
        port: PortRef::Number(port),
        protocol,
        http: None,
        plaintext: false,
        sni: None,
    }
}

pub fn check_pods(
    compiler: &Compiler<'_>,
    from: &str,
    to: &str,
    port: u16,
    protocol: Protocol,
) -> CheckReport {
    let req = request(compiler.cluster(), from, to, port, protocol);
    check::check(compiler, &req).unwrap_or_else(|e| panic!("check {from} -> {to}: {e}"))
}

pub fn http_check(
    compiler: &Compiler<'_>,
    from: &str,
    to: &str,
    port: u16,
    method: &str,
    path: &str,
) -> CheckReport {
    let mut req = request(compiler.cluster(), from, to, port, Protocol::Tcp);
    req.http = Some(HttpSpec {
        method: method.into(),
        path: path.into(),
        host: None,
        headers: Vec::new(),
    });
    check::check(compiler, &req).unwrap_or_else(|e| panic!("check {from} -> {to}: {e}"))
}

pub fn allowed(r: &CheckReport) -> bool {
    r.verdict == LayerVerdict::Allow
}

/// Like upstream `ValidateOrFail`: compares the whole truth table and prints
/// it on mismatch. Loopback pairs are ignored, as upstream does
/// (`ignoreLoopback`); Palisade always allows them.
pub fn validate(policies: &str, port: u16, protocol: Protocol, reach: &Reachability) {
    validate_in(&xyz_topology(), policies, port, protocol, reach);
}

/// `validate` over another topology (upstream's label updates on the
/// namespaces and pods of `xyz_topology`).
pub fn validate_in(
    topology: &str,
    policies: &str,
    port: u16,
    protocol: Protocol,
    reach: &Reachability,
) {
    let cluster = load(&[topology, policies]);
    let compiler = Compiler::new(&cluster);
    let mut wrong = Vec::new();
    let mut table = String::from("from\\to ");
    for t in &reach.pods {
        let _ = write!(table, "{t:>5}");
    }
    for f in &reach.pods {
        let _ = write!(table, "\n{f:>7} ");
        for t in &reach.pods {
            if f == t {
                let _ = write!(table, "{:>5}", ".");
                continue;
            }
            let got = allowed(&check_pods(&compiler, f, t, port, protocol));
            let want = reach.expected[&(f.clone(), t.clone())];
            let mark = match (got, want) {
                (true, true) => "✓",
                (false, false) => "X",
                (true, false) => "!ALLOW",
                (false, true) => "!DENY",
            };
            if got != want {
                wrong.push(format!("{f} -> {t}: got {got}, want {want}"));
            }
            let _ = write!(table, "{mark:>5}");
        }
    }
    assert!(
        wrong.is_empty(),
        "port {port} {protocol:?}: {} mismatches:\n{}\n{table}",
        wrong.len(),
        wrong.join("\n")
    );
}
