//! Inbound L4 admission: ingress NetworkPolicy on (source IP, port, TCP)
//! and, for mTLS peers, that the presented identity owns the source IP per
//! the peer table (no spoofing from behind a stolen-looking address).
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
        match snap.peer(source) {
            Some(peer) if peer.identity == identity => {}
            Some(peer) => {
                return Err((
                    Layer::Identity,
                    Denied {
                        policy: "peer-table".into(),
                        rule: peer.workload.clone(),
                        reason: format!(
                            "source IP {source} belongs to {} ({}), not to the presented identity {identity}",
                            peer.workload, peer.identity
                        ),
                    },
                ));
            }
            None => {
                return Err((
                    Layer::Identity,
                    Denied {
                        policy: "peer-table".into(),
                        rule: String::new(),
                        reason: format!(
                            "source IP {source} is not a known workload, so it cannot belong to {identity}"
                        ),
                    },
                ));
            }
        }
    }
    policy::ingress(snap, source, conn.app.port()).map_err(|d| (Layer::Ingress, d))
}
