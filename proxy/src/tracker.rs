//! Established connections, kept so that a new config version can re-check
//! them and close only those it denies (ztunnel
//! `src/proxy/connection_manager.rs`). HTTP connections re-read the policy
//! per request; here they are re-checked at L4 only: the peer identity's
//! claim to the source IP (the peer table may have changed), then ingress.
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::metrics::{Direction, DirectionLabels, Metrics};
use crate::policy::{self, AccessView};
use crate::state::Snapshot;

/// What a re-check needs to know about a connection.
#[derive(Clone, Debug)]
pub enum ConnInfo {
    Inbound {
        source: IpAddr,
        /// The port policy is judged on and the IP the app is reached at.
        dest: SocketAddr,
        peer_identity: Option<String>,
        /// The server name of the connection's TLS ClientHello.
        sni: Option<String>,
        /// Opaque TCP: authorization is per connection, so re-run it.
        opaque: bool,
    },
    Outbound {
        endpoint: SocketAddr,
    },
}

struct Entry {
    info: ConnInfo,
    kill: Arc<Notify>,
}

#[derive(Default)]
pub struct ConnTracker {
    next: AtomicU64,
    conns: Mutex<HashMap<u64, Entry>>,
}

/// Held by a connection task; deregisters on drop.
pub struct ConnGuard {
    id: u64,
    tracker: Arc<ConnTracker>,
    kill: Arc<Notify>,
}

impl ConnGuard {
    /// Resolves when a config change denied this connection.
    pub async fn killed(&self) {
        self.kill.notified().await
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        if let Ok(mut conns) = self.tracker.conns.lock() {
            conns.remove(&self.id);
        }
    }
}

impl ConnTracker {
    pub fn register(self: &Arc<Self>, info: ConnInfo) -> ConnGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let kill = Arc::new(Notify::new());
        if let Ok(mut conns) = self.conns.lock() {
            conns.insert(
                id,
                Entry {
                    info,
                    kill: kill.clone(),
                },
            );
        }
        ConnGuard {
            id,
            tracker: self.clone(),
            kill,
        }
    }

    pub fn len(&self) -> usize {
        self.conns.lock().map(|c| c.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Re-checks every connection against `snapshot`; closes and counts the
    /// ones it denies. Returns how many were closed.
    pub fn recheck(&self, snapshot: &Snapshot, metrics: &Metrics) -> usize {
        let Ok(conns) = self.conns.lock() else {
            return 0;
        };
        let mut closed = 0;
        for entry in conns.values() {
            let (direction, verdict) = match &entry.info {
                ConnInfo::Inbound {
                    source,
                    dest,
                    peer_identity,
                    sni,
                    opaque,
                } => {
                    let owned = match peer_identity.as_deref() {
                        Some(id) => crate::inbound::l4::identity_owns_source(snapshot, *source, id),
                        None => Ok(()),
                    };
                    let l4 = owned.and_then(|()| policy::ingress(snapshot, *source, dest.port()));
                    let verdict = l4.and_then(|()| {
                        if *opaque {
                            policy::authorize(
                                snapshot,
                                &AccessView::new(*source, peer_identity.as_deref(), *dest, None)
                                    .with_sni(sni.as_deref()),
                            )
                        } else {
                            Ok(())
                        }
                    });
                    (Direction::Inbound, verdict)
                }
                ConnInfo::Outbound { endpoint } => (
                    Direction::Outbound,
                    policy::egress(snapshot, endpoint.ip(), endpoint.port()),
                ),
            };
            if let Err(denied) = verdict {
                tracing::warn!(
                    target: "palisade::deny",
                    layer = "policy-change",
                    ?direction,
                    connection = ?entry.info,
                    policy = %denied.policy,
                    rule = %denied.rule,
                    reason = %denied.reason,
                    version = %snapshot.version,
                    "closing an established connection the new config denies"
                );
                entry.kill.notify_one();
                metrics
                    .closed_by_policy_change
                    .get_or_create(&DirectionLabels { direction })
                    .inc();
                closed += 1;
            }
        }
        closed
    }
}
