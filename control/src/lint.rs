//! `palisade lint`: policy pitfalls with a severity. Errors are configurations
//! that cannot work as written; warnings are likely mistakes; infos are facts
//! worth knowing (such as PERMISSIVE mTLS in force). `palisade lint` exits 1
//! when an error is found, 0 otherwise.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};

use palisade_api::l4::CompiledDirection;
use palisade_api::{AuthzAction, MtlsMode, Protocol};
use serde::Serialize;

use crate::cluster::{Cluster, NetpolPeer, PeerAuthentication, PortRef};
use crate::compile::{Compiler, mtls, services};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Error,
    Warning,
    Info,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Finding {
    pub severity: Severity,
    /// Stable identifier of the check, e.g. `egress-without-dns`.
    pub code: &'static str,
    /// `Kind ns/name` the finding is about.
    pub object: String,
    pub message: String,
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sev = match self.severity {
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Info => "info",
        };
        write!(f, "{sev}[{}] {}: {}", self.code, self.object, self.message)
    }
}

struct Out(Vec<Finding>);

impl Out {
    fn push(
        &mut self,
        severity: Severity,
        code: &'static str,
        object: impl Into<String>,
        message: impl Into<String>,
    ) {
        self.0.push(Finding {
            severity,
            code,
            object: object.into(),
            message: message.into(),
        });
    }
}

/// Runs every check; findings sorted by severity, then object.
pub fn lint(cluster: &Cluster) -> Vec<Finding> {
    let compiler = Compiler::new(cluster);
    let mut out = Out(Vec::new());
    pods_without_ip(cluster, &mut out);
    netpol_selectors(&compiler, &mut out);
    named_ports(cluster, &mut out);
    egress_without_dns(&compiler, &mut out);
    ip_blocks_with_pods(&compiler, &mut out);
    peer_authentication(cluster, &compiler, &mut out);
    authorization(cluster, &mut out);
    deny_http_only_rules(cluster, &mut out);
    selectors_without_labels(cluster, &mut out);
    services_without_endpoints(&compiler, &mut out);
    service_entry_identities(cluster, &mut out);
    destination_rule_tls(cluster, &mut out);
    let mut v = out.0;
    v.sort();
    v.dedup();
    v
}

/// Istio's `validateWorkloadSelector` warning, "workload selector specified
/// without labels": a `selector` with no `matchLabels` selects every
/// workload in the namespace (or the mesh, in the root namespace), as if
/// there were no selector, which is rarely what its author meant.
fn selectors_without_labels(cluster: &Cluster, out: &mut Out) {
    let scope = |ns: &str| {
        if ns == cluster.mesh.root_namespace {
            "every workload in the mesh (root namespace)".to_string()
        } else {
            format!("every workload in namespace {ns}")
        }
    };
    for ap in &cluster.authorization_policies {
        if ap.selector.as_ref().is_some_and(|s| s.is_empty()) {
            out.push(
                Severity::Warning,
                "selector-without-labels",
                format!("AuthorizationPolicy {}/{}", ap.namespace, ap.name),
                format!(
                    "workload selector specified without labels: spec.selector has no matchLabels, so the policy applies to {}",
                    scope(&ap.namespace)
                ),
            );
        }
    }
    for pa in cluster
        .peer_authentications
        .iter()
        .filter(|p| p.selector_without_labels)
    {
        out.push(
            Severity::Warning,
            "selector-without-labels",
            format!("PeerAuthentication {}/{}", pa.namespace, pa.name),
            format!(
                "workload selector specified without labels: spec.selector has no matchLabels, so it is a policy for {}",
                scope(&pa.namespace)
            ),
        );
    }
}

fn pods_without_ip(cluster: &Cluster, out: &mut Out) {
    for p in cluster.pods.iter().filter(|p| p.ips.is_empty()) {
        if p.finished() {
            out.push(
                Severity::Info,
                "pod-finished",
                format!("Pod {}", p.key()),
                format!(
                    "is in phase {}: a finished pod has no network presence (its IPs may be reused), so it is left out of every IP set and Service",
                    p.phase.as_deref().unwrap_or_default()
                ),
            );
            continue;
        }
        out.push(
            Severity::Warning,
            "pod-without-ip",
            format!("Pod {}", p.key()),
            "has no status.podIP: it cannot be addressed and is left out of every IP set",
        );
    }
}

/// The keys of `pods` when all are hostNetwork pods (and there is one):
/// Palisade "ignores `hostNetwork` pods when matching `podSelector` and
/// `namespaceSelector`" (kubernetes.io, "NetworkPolicy and `hostNetwork`
/// pods"), so a selector that selects only those selects nothing in effect.
fn only_host_network(cluster: &Cluster, pods: &[usize]) -> Option<String> {
    let all = !pods.is_empty() && pods.iter().all(|&i| cluster.pods[i].host_network);
    all.then(|| {
        let keys: Vec<String> = pods.iter().map(|&i| cluster.pods[i].key()).collect();
        keys.join(", ")
    })
}

fn netpol_selectors(compiler: &Compiler<'_>, out: &mut Out) {
    let cluster = compiler.cluster();
    let index = compiler.index();
    for np in &cluster.network_policies {
        let obj = format!("NetworkPolicy {}", np.key());
        let selected = index.pods_in(&np.namespace, Some(&np.pod_selector));
        if selected.is_empty() {
            out.push(
                Severity::Warning,
                "selects-nothing",
                &obj,
                format!("spec.podSelector {} selects no pod", np.pod_selector),
            );
        } else if let Some(keys) = only_host_network(cluster, &selected) {
            out.push(
                Severity::Info,
                "selects-only-host-network",
                &obj,
                format!(
                    "spec.podSelector {} selects only hostNetwork pods ({keys}): NetworkPolicy does not apply to them (kubernetes.io, NetworkPolicy and hostNetwork pods), so the policy has no effect",
                    np.pod_selector
                ),
            );
        }
        let rules = np
            .ingress
            .iter()
            .map(|r| ("ingress", r))
            .chain(np.egress.iter().map(|r| ("egress", r)));
        for (dir, rule) in rules {
            for peer in rule.peers.iter().flatten() {
                let NetpolPeer::Pods { namespaces, pods } = peer else {
                    continue;
                };
                let ns_list: Vec<&str> = match namespaces {
                    None => vec![np.namespace.as_str()],
                    Some(sel) => index.namespaces(sel),
                };
                if let Some(sel) = namespaces
                    && ns_list.is_empty()
                {
                    out.push(
                        Severity::Warning,
                        "namespace-selector-matches-nothing",
                        &obj,
                        format!("{dir} peer namespaceSelector {sel} matches no namespace"),
                    );
                    continue;
                }
                let selected: Vec<usize> = ns_list
                    .iter()
                    .flat_map(|ns| index.pods_in(ns, pods.as_ref()))
                    .collect();
                if selected.is_empty() {
                    out.push(
                        Severity::Warning,
                        "selects-nothing",
                        &obj,
                        format!("{dir} peer {peer} selects no pod"),
                    );
                } else if let Some(keys) = only_host_network(cluster, &selected) {
                    out.push(
                        Severity::Warning,
                        "selects-only-host-network",
                        &obj,
                        format!(
                            "{dir} peer {peer} selects only hostNetwork pods ({keys}), which selectors ignore (kubernetes.io, NetworkPolicy and hostNetwork pods): it matches nothing; their traffic is their node's, which an ipBlock can allow"
                        ),
                    );
                }
            }
        }
    }
}

fn declared(cluster: &Cluster, name: &str, protocol: Protocol) -> bool {
    cluster
        .pods
        .iter()
        .any(|p| p.named_port(name, protocol).is_some())
}

fn named_ports(cluster: &Cluster, out: &mut Out) {
    for np in &cluster.network_policies {
        for rule in np.ingress.iter().chain(&np.egress) {
            for port in rule.ports.iter().flatten() {
                if let Some(PortRef::Name(n)) = &port.port
                    && !declared(cluster, n, port.protocol)
                {
                    out.push(
                        Severity::Warning,
                        "unknown-named-port",
                        format!("NetworkPolicy {}", np.key()),
                        format!("named port {n:?} is declared by no pod's container ports: the port entry matches nothing"),
                    );
                }
            }
        }
    }
}

fn dns_port_allowed(dir: &CompiledDirection, dns_ips: &[IpAddr]) -> bool {
    let probe = if dns_ips.is_empty() {
        vec![IpAddr::V4(Ipv4Addr::new(192, 0, 2, 53))]
    } else {
        dns_ips.to_vec()
    };
    probe
        .iter()
        .any(|ip| dir.evaluate(*ip, 53, Protocol::Udp).is_allowed())
}

fn egress_without_dns(compiler: &Compiler<'_>, out: &mut Out) {
    let cluster = compiler.cluster();
    let dns_ips: Vec<IpAddr> = cluster
        .pods
        .iter()
        .filter(|p| {
            p.namespace == "kube-system" && p.labels.get("k8s-app").is_some_and(|v| v == "kube-dns")
        })
        .flat_map(|p| p.ips.iter().copied())
        .collect();
    let mut by_ns: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for (i, p) in cluster.pods.iter().enumerate() {
        let config = compiler.compile(i);
        if !config.outbound.egress.isolated || dns_ips.iter().any(|ip| p.ips.contains(ip)) {
            continue;
        }
        if !dns_port_allowed(&CompiledDirection::new(&config.outbound.egress), &dns_ips) {
            by_ns
                .entry(p.namespace.as_str())
                .or_default()
                .push(p.name.clone());
        }
    }
    for (ns, pods) in by_ns {
        out.push(
            Severity::Warning,
            "egress-without-dns",
            format!("Namespace {ns}"),
            format!(
                "pods [{}] are isolated for egress without an allow for DNS (UDP 53 to kube-dns): name resolution will fail",
                pods.join(", ")
            ),
        );
    }
}

fn ip_blocks_with_pods(compiler: &Compiler<'_>, out: &mut Out) {
    let cluster = compiler.cluster();
    for np in &cluster.network_policies {
        for rule in np.ingress.iter().chain(&np.egress) {
            for peer in rule.peers.iter().flatten() {
                if let NetpolPeer::IpBlock { cidr, except } = peer {
                    let pods = compiler.index().pods_in_net(cidr, except);
                    if let Some(&first) = pods.first() {
                        out.push(
                            Severity::Warning,
                            "ipblock-contains-pods",
                            format!("NetworkPolicy {}", np.key()),
                            format!(
                                "{peer} contains {} pod IP(s) (e.g. {}); whether ipBlock applies to pod traffic is implementation-defined in Kubernetes: select pods with podSelector/namespaceSelector, and except the pod CIDR",
                                pods.len(),
                                cluster.pods[first].key()
                            ),
                        );
                    }
                }
            }
        }
    }
}

fn peer_authentication(cluster: &Cluster, compiler: &Compiler<'_>, out: &mut Out) {
    let root = &cluster.mesh.root_namespace;
    let mut level: BTreeMap<(&str, bool), Vec<&PeerAuthentication>> = BTreeMap::new();
    for pa in &cluster.peer_authentications {
        if pa.selector.is_none() {
            level
                .entry((pa.namespace.as_str(), pa.namespace == *root))
                .or_default()
                .push(pa);
        } else if let Some(sel) = &pa.selector
            && compiler
                .index()
                .pods_in(&pa.namespace, Some(sel))
                .is_empty()
        {
            out.push(
                Severity::Warning,
                "selects-nothing",
                format!("PeerAuthentication {}/{}", pa.namespace, pa.name),
                format!("selector {sel} selects no pod"),
            );
        }
    }
    for ((ns, is_root), pas) in level {
        if pas.len() > 1
            && let Some(winner) = mtls::oldest(pas.iter().copied())
        {
            let names: Vec<&str> = pas.iter().map(|p| p.name.as_str()).collect();
            out.push(
                Severity::Warning,
                "conflicting-peer-authentication",
                format!("Namespace {ns}"),
                format!(
                    "{} {} PeerAuthentications without selector ({}); like Istio, Palisade uses the oldest by metadata.creationTimestamp, then the first by name ({})",
                    names.len(),
                    if is_root { "mesh-wide" } else { "namespace-wide" },
                    names.join(", "),
                    winner.name
                ),
            );
        }
    }
    let mut permissive: BTreeMap<&str, usize> = BTreeMap::new();
    // A hostNetwork pod runs no sidecar: it accepts nothing through one.
    for (i, p) in cluster
        .pods
        .iter()
        .enumerate()
        .filter(|(_, p)| !p.host_network)
    {
        let m = compiler.effective_mtls(i);
        if m.mode == MtlsMode::Permissive
            || m.port_mtls.values().any(|m| *m == MtlsMode::Permissive)
        {
            *permissive.entry(p.namespace.as_str()).or_default() += 1;
        }
    }
    for (ns, n) in permissive {
        out.push(
            Severity::Info,
            "permissive-mtls",
            format!("Namespace {ns}"),
            format!("{n} pod(s) accept plaintext (PERMISSIVE mTLS in force); set STRICT where all callers are meshed"),
        );
    }
}

fn authorization(cluster: &Cluster, out: &mut Out) {
    let namespaces: BTreeSet<&str> = cluster.namespaces.keys().map(String::as_str).collect();
    let accounts: BTreeSet<(&str, &str)> = cluster
        .pods
        .iter()
        .map(|p| (p.namespace.as_str(), p.service_account.as_str()))
        .collect();
    let td_ok = |td: &str| td == "*" || cluster.mesh.is_local_trust_domain(td);
    for ap in &cluster.authorization_policies {
        let obj = format!("AuthorizationPolicy {}/{}", ap.namespace, ap.name);
        if let Some(sel) = &ap.selector {
            let in_scope = cluster
                .pods
                .iter()
                .filter(|p| {
                    ap.namespace == cluster.mesh.root_namespace || p.namespace == ap.namespace
                })
                .any(|p| sel.matches(&p.labels));
            if !in_scope {
                out.push(
                    Severity::Warning,
                    "selects-nothing",
                    &obj,
                    format!("selector {sel} selects no pod"),
                );
            }
        }
        let check_sa = |ns: &str, sa: Option<&str>, what: &str| -> Option<String> {
            if ns.contains('*') || sa.is_some_and(|s| s.contains('*')) {
                return None;
            }
            if !namespaces.contains(ns) {
                return Some(format!(
                    "{what} names namespace {ns:?}, which does not exist"
                ));
            }
            match sa {
                Some(sa) if !accounts.contains(&(ns, sa)) => Some(format!(
                    "{what} names service account {ns}/{sa}, which no pod uses"
                )),
                _ => None,
            }
        };
        let mut problems = Vec::new();
        for rule in &ap.policy.rules {
            for src in &rule.from {
                for p in src.principals.iter().chain(&src.not_principals) {
                    // `TD/ns/NS/sa/SA`
                    let parts: Vec<&str> = p.split('/').collect();
                    if let [td, "ns", ns, "sa", sa] = parts.as_slice() {
                        // A federated trust domain's workloads live in
                        // another cluster: its namespaces are not ours.
                        if cluster.mesh.federated_bundles.contains_key(*td) {
                            continue;
                        }
                        if !td_ok(td) && !td.contains('*') {
                            problems.push(format!(
                                "principal {p:?} has trust domain {td:?}, neither the mesh's nor an alias nor federated"
                            ));
                        }
                        problems.extend(check_sa(ns, Some(sa), &format!("principal {p:?}")));
                    }
                }
                for s in src.service_accounts.iter().chain(&src.not_service_accounts) {
                    if let Some((ns, sa)) = s.split_once('/') {
                        problems.extend(check_sa(ns, Some(sa), &format!("serviceAccount {s:?}")));
                    }
                }
                for ns in src.namespaces.iter().chain(&src.not_namespaces) {
                    problems.extend(check_sa(ns, None, &format!("namespace {ns:?}")));
                }
            }
        }
        for msg in problems {
            out.push(Severity::Warning, "unknown-principal", &obj, msg);
        }
    }
}

/// Istio's `ValidateAuthorizationPolicy` warning: a DENY rule with
/// operations none of which names `ports`/`notPorts` uses only HTTP
/// attributes there, which are dropped on TCP, so it "will deny all traffic
/// to TCP ports under its scope" from its sources. (Istio also warns for a
/// rule whose sources hold only `requestPrincipals`, which Palisade
/// refuses.)
fn deny_http_only_rules(cluster: &Cluster, out: &mut Out) {
    for ap in &cluster.authorization_policies {
        if ap.policy.action != AuthzAction::Deny {
            continue;
        }
        for (i, rule) in ap.policy.rules.iter().enumerate() {
            let names_port = rule
                .to
                .iter()
                .any(|op| !op.ports.is_empty() || !op.not_ports.is_empty());
            if rule.to.is_empty() || names_port {
                continue;
            }
            out.push(
                Severity::Warning,
                "deny-http-only-rule",
                format!("AuthorizationPolicy {}/{}", ap.namespace, ap.name),
                format!(
                    "spec.rules[{i}]: its operations use only HTTP fields, which TCP traffic \
                     does not carry, so the rule denies every TCP connection of its sources; \
                     name the port (ports or notPorts) to keep it to HTTP"
                ),
            );
        }
    }
}

fn services_without_endpoints(compiler: &Compiler<'_>, out: &mut Out) {
    let cluster = compiler.cluster();
    for svc in &cluster.services {
        let Some(sel) = &svc.selector else { continue };
        let pods = services::selected_pods(compiler.index(), svc);
        if pods.is_empty() {
            out.push(
                Severity::Warning,
                "selects-nothing",
                format!("Service {}/{}", svc.namespace, svc.name),
                format!("selector {sel} selects no pod"),
            );
            continue;
        }
        for sp in &svc.ports {
            if let PortRef::Name(n) = &sp.target
                && !pods
                    .iter()
                    .any(|&i| cluster.pods[i].named_port(n, sp.protocol).is_some())
            {
                out.push(
                    Severity::Error,
                    "unknown-named-port",
                    format!("Service {}/{}", svc.namespace, svc.name),
                    format!("port {} targets {n:?}, which no selected pod declares: the port has no endpoints", sp.port),
                );
            }
        }
    }
}

/// A MESH_INTERNAL ServiceEntry endpoint whose identity is in a trust
/// domain no sidecar has a bundle for: every handshake with it fails, and
/// every call to it is a 502. An endpoint address that is a pod's keeps the
/// pod's identity, not the entry's.
fn service_entry_identities(cluster: &Cluster, out: &mut Out) {
    let pod_ips: std::collections::BTreeSet<std::net::IpAddr> = cluster
        .pods
        .iter()
        .flat_map(|p| p.ips.iter().copied())
        .collect();
    for se in &cluster.service_entries {
        let obj = format!("ServiceEntry {}", se.key());
        for (i, e) in se.endpoints.iter().enumerate() {
            if let Some(id) = se.identity_of(e, &cluster.mesh.trust_domain) {
                let td = palisade_api::trust_domain_of(&id).unwrap_or_default();
                if !cluster.mesh.is_local_trust_domain(td)
                    && !cluster.mesh.federated_bundles.contains_key(td)
                    && !cluster.mesh.bundle_endpoints.contains_key(td)
                {
                    out.push(
                        Severity::Error,
                        "unverifiable-identity",
                        &obj,
                        format!(
                            "endpoints[{i}] ({}) is expected to present {id}, of trust domain {td:?}, which is neither the mesh's nor federated (MeshConfig federatedTrustDomains): every call to it fails the handshake",
                            e.address
                        ),
                    );
                }
                if pod_ips.contains(&e.address) {
                    out.push(
                        Severity::Warning,
                        "endpoint-is-a-pod",
                        &obj,
                        format!(
                            "endpoints[{i}] ({}) is a pod's address: the sidecars expect the pod's own identity there, not {id}",
                            e.address
                        ),
                    );
                }
            }
        }
    }
}

/// A DestinationRule's client TLS mode is not applied: Palisade's sidecars
/// always use Istio's auto mTLS, so where the rule would differ (upstream's
/// `reachability_test.go`: `DISABLE` sends plaintext that a STRICT port
/// refuses; `ISTIO_MUTUAL` sends mTLS that a pod without a sidecar, or a
/// DISABLE port, cannot take), `check` and the sidecars do not follow it.
fn destination_rule_tls(cluster: &Cluster, out: &mut Out) {
    for t in &cluster.ignored_client_tls {
        out.push(
            Severity::Warning,
            "destination-rule-tls-ignored",
            &t.object,
            format!(
                "{} {} is not applied ({}): Palisade reads no DestinationRule, and its sidecars use Istio's auto mTLS (mTLS to a sidecar unless the port is DISABLE, plaintext to a pod without one)",
                t.field, t.mode, t.origin
            ),
        );
    }
}
