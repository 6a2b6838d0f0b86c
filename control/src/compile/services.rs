//! Services resolved to endpoints: the ready pods a Service selects, each
//! with the target port resolved (a number, or the pod's container port of
//! that name; a pod without the named port is not an endpoint). Also decides
//! which ports are opaque (server-first: protocol detection skipped).
use palisade_api::{Endpoint, Protocol, Service as ApiService, ServicePort as ApiServicePort};

use super::index::ClusterIndex;
use crate::cluster::{Pod, PortRef, Service};

/// Ports of server-first protocols, opaque by default (Istio "Application
/// Requirements", server-first protocols; the list linkerd uses plus NATS and
/// MongoDB): SMTP 25/587, MySQL 3306, NATS 4222, PostgreSQL 5432, Redis 6379,
/// Elasticsearch transport 9300, memcached 11211, MongoDB 27017.
pub const SERVER_FIRST_PORTS: &[u16] = &[25, 587, 3306, 4222, 5432, 6379, 9300, 11211, 27017];

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
/// and `terminating` its deletionTimestamp. Only ready endpoints take
/// traffic here.
pub fn is_ready_endpoint(pod: &Pod, svc: &Service) -> bool {
    !pod.ips.is_empty() && (svc.publish_not_ready_addresses || (pod.ready && !pod.terminating))
}

/// The selected pods that are ready endpoints of `svc`.
pub fn endpoint_pods(index: &ClusterIndex<'_>, svc: &Service) -> Vec<usize> {
    selected_pods(index, svc)
        .into_iter()
        .filter(|&i| is_ready_endpoint(&index.cluster.pods[i], svc))
        .collect()
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
        let cluster = index.cluster;
        for port in &mut out.ports {
            port.endpoints.retain(|e| {
                e.workload
                    .split_once('/')
                    .and_then(|(ns, name)| cluster.pod_index(ns, name))
                    .is_some_and(|i| on_node(&cluster.pods[i], client_node_ips))
            });
        }
    }
    out
}

pub fn resolve(index: &ClusterIndex<'_>, svc: &Service) -> ApiService {
    let pods = endpoint_pods(index, svc);
    let ports = svc
        .ports
        .iter()
        .map(|sp| {
            let mut endpoints: Vec<Endpoint> = pods
                .iter()
                .map(|&i| &index.cluster.pods[i])
                .filter_map(|p| {
                    let port = target_port(p, &sp.target, sp.protocol)?;
                    // One EndpointSlice per address type of the Service:
                    // only pod IPs of its families.
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
            ApiServicePort {
                name: sp.name.clone(),
                port: sp.port,
                protocol: sp.protocol,
                app_protocol: sp.app_protocol.clone(),
                endpoints,
            }
        })
        .collect();
    let mut cluster_ips = svc.cluster_ips.clone();
    cluster_ips.sort();
    ApiService {
        name: format!("{}/{}", svc.namespace, svc.name),
        cluster_ips,
        ports,
    }
}
