//! Services resolved to endpoints: the ready pods a Service selects (or,
//! when none is ready, the serving terminating ones, as kube-proxy falls
//! back), each with the target port resolved (a number, or the pod's
//! container port of that name; a pod without the named port is not an
//! endpoint). Also decides which ports are opaque (server-first: protocol
//! detection skipped).
use palisade_api::{Endpoint, Protocol, Service as ApiService, ServicePort as ApiServicePort};

use super::index::ClusterIndex;
use crate::cluster::{Pod, PortRef, Service};

pub use palisade_api::protocol::SERVER_FIRST_PORTS;

/// `appProtocol` values (or port-name prefixes, Istio "Protocol Selection":
/// `<protocol>[-<suffix>]`) whose traffic is not HTTP and must not be sniffed.
const OPAQUE_PROTOCOLS: &[&str] = &["tcp", "tls", "mysql", "mongo", "redis"];

/// The protocol of a service port for Istio: `appProtocol`, else the name prefix.
pub fn is_opaque(port: &crate::cluster::ServicePort) -> bool {
    let proto = port
        .app_protocol
        .as_deref()
        .or_else(|| {
            port.name
                .as_deref()
                .map(|n| n.split('-').next().unwrap_or(n))
        })
        .unwrap_or("");
    OPAQUE_PROTOCOLS.contains(&proto.to_ascii_lowercase().as_str())
}

/// The pod's port that a service port targets.
pub fn target_port(pod: &Pod, target: &PortRef, protocol: Protocol) -> Option<u16> {
    match target {
        PortRef::Number(n) => Some(*n),
        PortRef::Name(name) => pod.named_port(name, protocol),
    }
}

/// Pods a service selects (any readiness), by index.
pub fn selected_pods(index: &ClusterIndex<'_>, svc: &Service) -> Vec<usize> {
    match &svc.selector {
        None => Vec::new(),
        Some(sel) => index.pods_in(&svc.namespace, Some(sel)),
    }
}

/// Whether a pod the Service selects is one of its ready endpoints, as the
/// EndpointSlice controller decides (staging/src/k8s.io/endpointslice
/// utils.go `podToEndpoint`, util `ShouldPodBeInEndpoints`): it has an
/// address and is not terminal (a finished pod keeps none, see
/// `load::kube::pod`), and `ready := service.Spec.PublishNotReadyAddresses
/// || (serving && !terminating)` with `serving` the pod's Ready condition
/// and `terminating` its deletionTimestamp. Ready endpoints take the
/// traffic; see [`answering_pods`] for the fallback.
pub fn is_ready_endpoint(pod: &Pod, svc: &Service) -> bool {
    !pod.ips.is_empty() && (svc.publish_not_ready_addresses || (pod.ready && !pod.terminating))
}

/// Whether a selected pod is a serving, terminating endpoint: still Ready
/// (its readiness probe passes) while it shuts down. kube-proxy falls back
/// to these when a Service port has no ready endpoint (KEP-1669,
/// `pkg/proxy/topology.go` `CategorizeEndpoints`), so a rollout whose old
/// pods are all terminating before a new one is ready keeps answering.
pub fn is_serving_terminating(pod: &Pod) -> bool {
    !pod.ips.is_empty() && pod.ready && pod.terminating
}

/// The selected pods that answer `svc` for a client in the cluster: its
/// ready endpoints, or, when it has none, its serving terminating ones.
pub fn endpoint_pods(index: &ClusterIndex<'_>, svc: &Service) -> Vec<usize> {
    ready_or_serving_terminating(index, svc, selected_pods(index, svc))
}

/// Of `candidates`, the ready endpoints of `svc`, or the serving
/// terminating ones when none is ready.
fn ready_or_serving_terminating(
    index: &ClusterIndex<'_>,
    svc: &Service,
    candidates: Vec<usize>,
) -> Vec<usize> {
    let pods = &index.cluster.pods;
    let ready: Vec<usize> = candidates
        .iter()
        .copied()
        .filter(|&i| is_ready_endpoint(&pods[i], svc))
        .collect();
    if !ready.is_empty() {
        return ready;
    }
    candidates
        .into_iter()
        .filter(|&i| is_serving_terminating(&pods[i]))
        .collect()
}

/// The pods that answer one port of `svc`, as kube-proxy picks among the
/// port's endpoints (`CategorizeEndpoints`): those of the selected pods
/// that have the target port and an address of the Service's families;
/// the ready ones, or the serving terminating ones when no endpoint is
/// ready. With `internalTrafficPolicy: Local` and the client's node given
/// (`client_node`), the same choice is made among the endpoints on that
/// node, never falling back to another node.
pub fn answering_pods(
    index: &ClusterIndex<'_>,
    svc: &Service,
    port: &crate::cluster::ServicePort,
    client_node: Option<&[std::net::IpAddr]>,
) -> Vec<usize> {
    let pods = &index.cluster.pods;
    let candidates: Vec<usize> = selected_pods(index, svc)
        .into_iter()
        .filter(|&i| {
            let p = &pods[i];
            target_port(p, &port.target, port.protocol).is_some()
                && p.ips.iter().any(|ip| svc.serves_family(ip))
                && match client_node {
                    Some(node) if svc.internal_local => on_node(p, node),
                    _ => true,
                }
        })
        .collect();
    ready_or_serving_terminating(index, svc, candidates)
}

/// The endpoints of one Service port on `pods`, sorted.
fn port_endpoints(
    index: &ClusterIndex<'_>,
    svc: &Service,
    sp: &crate::cluster::ServicePort,
    pods: &[usize],
) -> Vec<Endpoint> {
    let mut endpoints: Vec<Endpoint> = pods
        .iter()
        .map(|&i| &index.cluster.pods[i])
        .filter_map(|p| {
            let port = target_port(p, &sp.target, sp.protocol)?;
            // One EndpointSlice per address type of the Service: only pod
            // IPs of its families.
            let ips = p.ips.iter().filter(|ip| svc.serves_family(ip));
            Some(ips.map(move |ip| Endpoint {
                ip: *ip,
                port,
                workload: p.key(),
            }))
        })
        .flatten()
        .collect();
    endpoints.sort();
    endpoints
}

/// Whether `pod` runs on the node whose addresses are `node_ips` (a pod
/// whose node is not known is on none).
pub fn on_node(pod: &Pod, node_ips: &[std::net::IpAddr]) -> bool {
    pod.node_ips.iter().any(|ip| node_ips.contains(ip))
}

/// The Service as a client on the node `client_node_ips` sees it: with
/// `internalTrafficPolicy: Local`, only the endpoints on that node.
pub fn for_client(
    index: &ClusterIndex<'_>,
    svc: &Service,
    resolved: &ApiService,
    client_node_ips: &[std::net::IpAddr],
) -> ApiService {
    let mut out = resolved.clone();
    if svc.internal_local {
        for (port, sp) in out.ports.iter_mut().zip(&svc.ports) {
            let pods = answering_pods(index, svc, sp, Some(client_node_ips));
            port.endpoints = port_endpoints(index, svc, sp, &pods);
        }
    }
    out
}

pub fn resolve(index: &ClusterIndex<'_>, svc: &Service) -> ApiService {
    // As a client anywhere in the cluster sees it (`for_client` narrows an
    // `internalTrafficPolicy: Local` Service to the client's node).
    let ports = svc
        .ports
        .iter()
        .map(|sp| {
            let pods = answering_pods(index, svc, sp, None);
            ApiServicePort {
                name: sp.name.clone(),
                port: sp.port,
                protocol: sp.protocol,
                app_protocol: sp.app_protocol.clone(),
                endpoints: port_endpoints(index, svc, sp, &pods),
            }
        })
        .collect();
    // A Service kube-proxy leaves alone has no cluster IP for the sidecar
    // to translate either.
    let mut cluster_ips = if svc.unproxied_by.is_some() {
        Vec::new()
    } else {
        svc.cluster_ips.clone()
    };
    cluster_ips.sort();
    let external_ips = if svc.unproxied_by.is_some() {
        Vec::new()
    } else {
        svc.external_ips
            .iter()
            .filter(|ip| !cluster_ips.contains(ip))
            .copied()
            .collect()
    };
    ApiService {
        name: format!("{}/{}", svc.namespace, svc.name),
        cluster_ips,
        external_ips,
        ports,
        session_affinity: svc
            .client_ip_affinity
            .map(|timeout_seconds| palisade_api::SessionAffinity { timeout_seconds }),
    }
}
