//! `palisade check` for an Istio `ServiceEntry` destination, as the
//! caller's sidecar treats one (`compile::service_entries`): the entry's
//! virtual IPs lead to its endpoints, each judged on its own (egress per
//! endpoint), and a `MESH_INTERNAL` endpoint that is no pod of this mesh is
//! reached over mTLS expecting the identity the entry names; what its own
//! sidecar then allows is decided in the other mesh, outside this
//! configuration.
use std::net::IpAddr;

use palisade_api::{MtlsMode, Peer, Protocol, ProxyConfig};

use super::{CheckInputError, LayerVerdict, MtlsLayer, protocol_name};
use crate::cluster::{Cluster, PortRef, ServiceEntry};

/// One endpoint to judge: the pod it is (if any), its address and port.
pub type Target = (Option<usize>, IpAddr, u16);

/// Where a `ServiceEntry` destination leads a caller.
pub enum EntryTargets {
    /// Its endpoints, and a note for the report's detail.
    Endpoints(Vec<Target>, String),
    /// Nothing: the caller's sidecar does not translate the entry's
    /// addresses, with the reason.
    Untranslated(String),
}

/// The endpoints `entry`'s port `port` leads a caller from `src_ip` in
/// namespace `src_ns` (`None`: no sidecar, so nothing translates).
pub fn targets(
    cluster: &Cluster,
    entry: &ServiceEntry,
    port: &PortRef,
    protocol: Protocol,
    src_ns: Option<&str>,
    src_ip: IpAddr,
) -> Result<EntryTargets, CheckInputError> {
    let key = entry.key();
    let sp = entry
        .ports
        .iter()
        .find(|p| {
            protocol == Protocol::Tcp
                && match port {
                    PortRef::Number(n) => p.number == *n,
                    PortRef::Name(name) => p.name == *name,
                }
        })
        .ok_or_else(|| {
            CheckInputError(format!(
                "ServiceEntry {key} has no {} port {port}",
                protocol_name(protocol)
            ))
        })?;
    let pods =
        |e: &crate::cluster::ServiceEntryEndpoint| super::request::pod_owning(cluster, e.address);
    if entry.addresses.is_empty() {
        // No virtual IP: a caller reaches each endpoint at its own address.
        let targets = entry
            .endpoints
            .iter()
            .map(|e| (pods(e), e.address, e.port_for(sp)))
            .collect();
        return Ok(EntryTargets::Endpoints(
            targets,
            format!(
                "ServiceEntry {key} has no addresses: each endpoint is judged as called at its own address"
            ),
        ));
    }
    let Some(ns) = src_ns else {
        return Ok(EntryTargets::Untranslated(format!(
            "the caller has no sidecar, so nothing translates ServiceEntry {key}'s addresses ({}) to its endpoints",
            list(&entry.addresses)
        )));
    };
    if !entry.exported_to(ns) {
        return Ok(EntryTargets::Untranslated(format!(
            "ServiceEntry {key} is not exported to namespace {ns} (exportTo): its sidecars do not translate {} to the entry's endpoints",
            list(&entry.addresses)
        )));
    }
    // The sidecar leads a virtual IP to the endpoints of its own family,
    // as for a Service's cluster IP.
    let vip = entry
        .addresses
        .iter()
        .find(|a| a.is_ipv4() == src_ip.is_ipv4())
        .unwrap_or(&entry.addresses[0]);
    let targets = entry
        .endpoints
        .iter()
        .filter(|e| e.address.is_ipv4() == vip.is_ipv4())
        .map(|e| (pods(e), e.address, e.port_for(sp)))
        .collect();
    Ok(EntryTargets::Endpoints(
        targets,
        format!(
            "ServiceEntry {key}: {vip}:{} leads to its endpoints",
            sp.number
        ),
    ))
}

fn list(ips: &[IpAddr]) -> String {
    ips.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The peer-table entry the caller's sidecar holds for `ip` when it is no
/// pod of this mesh: a `MESH_INTERNAL` ServiceEntry endpoint.
pub fn remote_peer(src_config: Option<&ProxyConfig>, ip: IpAddr) -> Option<&Peer> {
    src_config?.peers.iter().find(|p| p.ip == ip)
}

/// The mTLS layer toward a remote mesh's endpoint: the caller's sidecar
/// originates mTLS and accepts only the identity the entry names, which
/// needs a bundle for that identity's trust domain.
pub fn remote_mtls(cluster: &Cluster, peer: &Peer, caller_has_sidecar: bool) -> MtlsLayer {
    let td = palisade_api::trust_domain_of(&peer.identity).unwrap_or_default();
    let verifiable = cluster.mesh.is_local_trust_domain(td)
        || cluster.mesh.federated_bundles.contains_key(td)
        || cluster.mesh.bundle_endpoints.contains_key(td);
    let (verdict, detail) = if !caller_has_sidecar {
        (
            LayerVerdict::Skip,
            format!(
                "mtls: {} is an endpoint of ServiceEntry {} in another mesh; a caller without a sidecar connects in plain TCP, and that mesh decides whether it accepts it",
                peer.ip, peer.workload
            ),
        )
    } else if verifiable {
        (
            LayerVerdict::Allow,
            format!(
                "mtls: the caller's sidecar originates mTLS to {} (ServiceEntry {}) and accepts only {}",
                peer.ip, peer.workload, peer.identity
            ),
        )
    } else {
        (
            LayerVerdict::Deny,
            format!(
                "mtls: the caller's sidecar expects {} at {} (ServiceEntry {}), but no bundle covers trust domain {td:?} (neither the mesh's nor one of MeshConfig's federatedTrustDomains): the handshake fails",
                peer.identity, peer.ip, peer.workload
            ),
        )
    };
    MtlsLayer {
        verdict,
        mode: caller_has_sidecar.then_some(MtlsMode::Strict),
        policy: None,
        mtls: caller_has_sidecar,
        plaintext_accepted: false,
        detail,
    }
}
