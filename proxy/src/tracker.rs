//! Established connections, kept so that a new config version can re-check
//! them and close only those it denies (ztunnel
//! `src/proxy/connection_manager.rs`). HTTP connections re-read the policy
//! per request; here they are re-checked at L4 only: the peer identity's
//! claim to the source IP (the peer table may have changed), then ingress.
//! A change of the roots in force re-checks the peer's certificate chain
//! of every mTLS connection (`crate::trust_change`).
use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use palisade_identity::PeerRole;
use rustls::pki_types::CertificateDer;
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

/// The certificate chain an mTLS peer presented (leaf first).
pub type PeerChain = Arc<[CertificateDer<'static>]>;

struct Entry {
    info: ConnInfo,
    chain: Option<PeerChain>,
    close: Arc<CloseSignal>,
}

/// How a connection is asked to close: one `Notify` (a connection task
/// polls one waiter, not two, on each wakeup) and how.
#[derive(Default)]
struct CloseSignal {
    notify: Notify,
    /// 0 not asked, 1 finish in-flight requests first, 2 at once.
    how: std::sync::atomic::AtomicU8,
}

impl CloseSignal {
    fn now(&self) {
        self.how.store(2, Ordering::Release);
        self.notify.notify_one();
    }

    fn gracefully(&self) {
        self.how.fetch_max(1, Ordering::AcqRel);
        self.notify.notify_one();
    }
}

/// What a closing connection is asked to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    /// A config denies it: close now.
    Now,
    /// The roots no longer vouch for the peer: finish in-flight requests.
    Gracefully,
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
    close: Arc<CloseSignal>,
}

impl ConnGuard {
    /// Resolves when the connection must close, for either reason.
    pub async fn killed(&self) {
        self.close.notify.notified().await
    }

    /// Resolves when the connection must close, saying how: at once (a
    /// config denies it) or after its in-flight requests (the roots in
    /// force no longer vouch for the peer).
    pub async fn closing(&self) -> Closing {
        self.close.notify.notified().await;
        if self.close.how.load(Ordering::Acquire) >= 2 {
            Closing::Now
        } else {
            Closing::Gracefully
        }
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
        self.register_peer(info, None)
    }

    /// Registers an mTLS connection with the chain its peer presented.
    pub fn register_peer(self: &Arc<Self>, info: ConnInfo, chain: Option<PeerChain>) -> ConnGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let close = Arc::new(CloseSignal::default());
        if let Ok(mut conns) = self.conns.lock() {
            conns.insert(
                id,
                Entry {
                    info,
                    chain,
                    close: close.clone(),
                },
            );
        }
        ConnGuard {
            id,
            tracker: self.clone(),
            close,
        }
    }

    /// Closes the mTLS connections whose peer chain `trusted` no longer
    /// accepts: opaque ones at once, HTTP ones after their in-flight
    /// requests. Returns how many.
    pub fn recheck_trust(
        &self,
        trusted: impl Fn(&[CertificateDer<'static>], PeerRole) -> bool,
        metrics: &Metrics,
    ) -> usize {
        let Ok(conns) = self.conns.lock() else {
            return 0;
        };
        let mut closed = 0;
        for entry in conns.values() {
            let Some(chain) = &entry.chain else {
                continue;
            };
            let (direction, role, graceful) = match &entry.info {
                // The peer is the client of an inbound connection.
                ConnInfo::Inbound { opaque, .. } => (Direction::Inbound, PeerRole::Client, !opaque),
                ConnInfo::Outbound { .. } => (Direction::Outbound, PeerRole::Server, false),
            };
            if trusted(chain, role) {
                continue;
            }
            tracing::warn!(
                target: "palisade::deny",
                layer = "trust-change",
                ?direction,
                connection = ?entry.info,
                graceful,
                "closing an established connection: the roots in force no longer vouch for the peer's certificate"
            );
            if graceful {
                entry.close.gracefully();
            } else {
                entry.close.now();
            }
            metrics
                .closed_by_trust_change
                .get_or_create(&DirectionLabels { direction })
                .inc();
            closed += 1;
        }
        closed
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
                entry.close.now();
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
