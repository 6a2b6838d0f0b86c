//! Istio `ServiceEntry`s into a workload's config: the endpoints of a
//! `MESH_INTERNAL` entry join the peer table with the identity the entry
//! names (so the sidecar originates mTLS to them and expects exactly that
//! SPIFFE ID, of this trust domain or a federated one), and an entry with
//! virtual IPs (`addresses`) becomes a Service the sidecar balances over
//! its endpoints, like a Kubernetes Service's cluster IP. Only entries
//! exported to the workload's namespace count.
use std::net::IpAddr;

use palisade_api::{Endpoint, MtlsMode, Peer, Protocol, Service, ServicePort};

use crate::cluster::{Cluster, ServiceEntry};

/// Peer table entries for the mesh-internal entries a workload of `ns`
/// sees. Addresses `taken` (pods, the workload itself) keep their entry: a
/// pod's identity is known, an entry's only claimed.
pub fn peers(cluster: &Cluster, ns: &str, taken: impl Fn(&IpAddr) -> bool) -> Vec<Peer> {
    let mut out: Vec<Peer> = Vec::new();
    for se in visible(cluster, ns).filter(|se| se.mesh_internal) {
        for e in &se.endpoints {
            let Some(identity) = se.identity_of(e, &cluster.mesh.trust_domain) else {
                continue;
            };
            if taken(&e.address) || out.iter().any(|p| p.ip == e.address) {
                continue;
            }
            let mut opaque_ports: Vec<u16> = se
                .ports
                .iter()
                .filter(|p| p.is_opaque())
                .map(|p| e.port_for(p))
                .collect();
            opaque_ports.sort_unstable();
            opaque_ports.dedup();
            out.push(Peer {
                ip: e.address,
                workload: se.key(),
                identity,
                mtls: MtlsMode::Strict,
                port_mtls: Default::default(),
                opaque_ports,
            });
        }
    }
    out
}

/// Services for the entries with virtual IPs a workload of `ns` sees.
pub fn services(cluster: &Cluster, ns: &str) -> Vec<Service> {
    visible(cluster, ns)
        .filter(|se| !se.addresses.is_empty())
        .map(|se| Service {
            name: se.key(),
            cluster_ips: se.addresses.clone(),
            external_ips: Vec::new(),
            ports: se
                .ports
                .iter()
                .map(|p| {
                    let mut endpoints: Vec<Endpoint> = se
                        .endpoints
                        .iter()
                        .map(|e| Endpoint {
                            ip: e.address,
                            port: e.port_for(p),
                            workload: se.key(),
                        })
                        .collect();
                    endpoints.sort();
                    endpoints.dedup();
                    ServicePort {
                        name: Some(p.name.clone()),
                        port: p.number,
                        protocol: Protocol::Tcp,
                        app_protocol: Some(p.protocol.to_ascii_lowercase()),
                        endpoints,
                    }
                })
                .collect(),
            session_affinity: None,
        })
        .collect()
}

fn visible<'a>(cluster: &'a Cluster, ns: &'a str) -> impl Iterator<Item = &'a ServiceEntry> {
    cluster
        .service_entries
        .iter()
        .filter(move |se| se.exported_to(ns))
}
