//! Inbound L4 admission: ingress NetworkPolicy on (source IP, port, TCP)
//! and, for mTLS peers, that the presented identity owns the source IP per
//! the peer table (no spoofing from behind a stolen-looking address). A peer
//! of a federated trust domain, whose workloads the peer table cannot list,
//! must come from an address that is not one of this mesh's workloads.
use std::net::IpAddr;

use palisade_api::MeshSettings;

use crate::ctx::Ctx;
use crate::metrics::{Direction, Layer};
use crate::policy::{self, Denied};
use crate::state::Snapshot;

use super::InboundConn;

/// Checks L4 policy; logs and counts a denial. True when admitted.
pub fn admit(ctx: &Ctx, conn: &InboundConn) -> bool {
    let snap = ctx.state.load();
    match check(&snap, conn) {
        Ok(()) => true,
        Err((layer, denied)) => {
            crate::logs::denied_connection(
                Direction::Inbound,
                layer,
                conn.client.0,
                conn.app,
                conn.peer_identity.as_deref(),
                &denied,
            );
            ctx.metrics.denial(Direction::Inbound, layer);
            false
        }
    }
}

pub fn check(snap: &Snapshot, conn: &InboundConn) -> Result<(), (Layer, Denied)> {
    let source = conn.client.0.ip().to_canonical();
    if let Some(identity) = conn.peer_identity.as_deref() {
        identity_owns_source(snap, source, identity).map_err(|d| (Layer::Identity, d))?;
    }
    policy::ingress(snap, source, conn.app.port()).map_err(|d| (Layer::Ingress, d))
}

/// An mTLS peer's source IP belongs to its presented identity: the peer
/// table gives the IP to that identity, or (for a federated trust domain's
/// workload, which the table cannot list) to no one.
pub fn identity_owns_source(snap: &Snapshot, source: IpAddr, identity: &str) -> Result<(), Denied> {
    match snap.peer(source) {
        Some(peer) if peer.identity == identity => Ok(()),
        Some(peer) => Err(Denied {
            policy: "peer-table".into(),
            rule: peer.workload.clone(),
            reason: format!(
                "source IP {source} belongs to {} ({}), not to the presented identity {identity}",
                peer.workload, peer.identity
            ),
        }),
        // A workload of a federated trust domain runs elsewhere: it passed
        // verification against its trust domain's bundle, and its address
        // is not one of ours.
        None if is_federated(&snap.config.mesh, identity) => Ok(()),
        None => Err(Denied {
            policy: "peer-table".into(),
            rule: String::new(),
            reason: format!(
                "source IP {source} is not a known workload, so it cannot belong to {identity}"
            ),
        }),
    }
}

/// `identity` is of a trust domain other than the mesh's and its aliases
/// (so, having been verified, of a federated one).
fn is_federated(mesh: &MeshSettings, identity: &str) -> bool {
    !mesh.is_local_trust_domain(palisade_api::trust_domain_of(identity).unwrap_or_default())
}
