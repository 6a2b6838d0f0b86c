//! Pooled HTTP/2-over-mTLS connections to peer sidecars, one per endpoint
//! and server name (the Service called; none for a pod's own address),
//! with the expected identity checked, multiplexing every request to that
//! peer, so a client that opens a connection per request costs no TLS
//! handshake.
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use crate::ctx::H2Keepalive;
use crate::detect::MeshInner;
use crate::fast_map::FastMap;
use crate::h2_windows::H2Windows;

use super::connect::{ConnectError, MeshDialer};
use super::mesh_h2::{self, MeshSender};

/// A pooled connection's key: the endpoint and the server name its
/// handshake carried.
type PeerKey = (SocketAddr, Option<Arc<str>>);

#[derive(Default)]
pub struct MeshPool {
    /// Flow-control windows of the connections this pool opens.
    windows: H2Windows,
    keepalive: H2Keepalive,
    /// By endpoint and server name; an endpoint has one identity, a
    /// different expected one replaces the entry.
    conns: Mutex<FastMap<PeerKey, Pooled>>,
    /// One connection attempt per key at a time: requests that find no
    /// connection wait for the attempt under way instead of each opening
    /// their own.
    connecting: Mutex<FastMap<PeerKey, Arc<tokio::sync::Mutex<()>>>>,
}

/// One pooled connection: the identity expected, its sender, and the
/// chain the peer presented (for a change of the roots in force).
struct Pooled {
    identity: String,
    sender: MeshSender,
    chain: Option<crate::tracker::PeerChain>,
}

/// A sender handed out by a mesh pool.
pub struct Checkout<S> {
    pub sender: S,
    /// Opened for this request rather than found in the pool: if it fails
    /// before the request is sent, the peer refused it, and another try
    /// would only be refused again.
    pub fresh: bool,
}

impl<S> Checkout<S> {
    /// A sender found in the pool.
    pub fn pooled(sender: S) -> Self {
        Self {
            sender,
            fresh: false,
        }
    }

    /// A sender on a connection opened for this request.
    pub fn opened(sender: S) -> Self {
        Self {
            sender,
            fresh: true,
        }
    }
}

/// Drives a pooled mesh connection to `addr` until it ends.
pub(super) fn drive<C>(addr: SocketAddr, conn: C)
where
    C: std::future::Future<Output = Result<(), hyper::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!(%addr, error = %e, "pooled mesh connection ended");
        }
    });
}

#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("HTTP/2 handshake with the peer sidecar at {addr} failed: {source}")]
    Handshake {
        addr: SocketAddr,
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

impl MeshPool {
    /// An empty pool whose connections advertise `windows` and ping an
    /// idle peer as `keepalive` says.
    pub fn new(windows: H2Windows, keepalive: H2Keepalive) -> Self {
        Self {
            windows,
            keepalive,
            ..Self::default()
        }
    }

    /// A ready sender to the peer sidecar at `addr` whose connection
    /// carried the server name `sni`, connecting if needed.
    pub async fn get(
        &self,
        dialer: &MeshDialer<'_>,
        addr: SocketAddr,
        identity: &str,
        sni: Option<&Arc<str>>,
    ) -> Result<Checkout<MeshSender>, PoolError> {
        let key: PeerKey = (addr, sni.cloned());
        if let Some(s) = self.cached(&key, identity) {
            return Ok(Checkout::pooled(s));
        }
        // Boxed: the handshake's state would otherwise be carried, and
        // moved, by every request's future.
        Box::pin(self.get_or_connect(dialer, key, identity)).await
    }

    /// [`Self::get`] when the pool had no connection: waits for an attempt
    /// under way or makes one.
    async fn get_or_connect(
        &self,
        dialer: &MeshDialer<'_>,
        key: PeerKey,
        identity: &str,
    ) -> Result<Checkout<MeshSender>, PoolError> {
        let gate = match self.connecting.lock() {
            Ok(mut c) => c.entry(key.clone()).or_default().clone(),
            Err(_) => Arc::default(),
        };
        let _attempt = gate.lock().await;
        if let Some(s) = self.cached(&key, identity) {
            return Ok(Checkout::pooled(s));
        }
        let connected = self
            .connect(dialer, &key, identity)
            .await
            .map(Checkout::opened);
        // Waiters hold the gate already; later requests find the connection
        // (or try again after a failure).
        if let Ok(mut c) = self.connecting.lock() {
            c.remove(&key);
        }
        connected
    }

    async fn connect(
        &self,
        dialer: &MeshDialer<'_>,
        key: &PeerKey,
        identity: &str,
    ) -> Result<MeshSender, PoolError> {
        let addr = key.0;
        let stream = dialer
            .dial(addr, identity, MeshInner::H2, key.1.as_deref())
            .await?;
        let chain = stream
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect());
        let (sender, conn) = mesh_h2::handshake(stream, self.windows, self.keepalive)
            .await
            .map_err(|e| PoolError::Handshake {
                addr,
                source: e.into(),
            })?;
        tokio::spawn(conn);
        if let Ok(mut conns) = self.conns.lock() {
            conns.insert(
                key.clone(),
                Pooled {
                    identity: identity.to_string(),
                    sender: sender.clone(),
                    chain,
                },
            );
        }
        Ok(sender)
    }

    fn cached(&self, key: &PeerKey, identity: &str) -> Option<MeshSender> {
        let mut conns = self.conns.lock().ok()?;
        match conns.get(key) {
            Some(p) if p.identity == identity && !p.sender.is_closed() => Some(p.sender.clone()),
            Some(_) => {
                conns.remove(key);
                None
            }
            None => None,
        }
    }

    /// Forgets the connection to `addr` with server name `sni` (after an
    /// error on it).
    pub fn evict(&self, addr: SocketAddr, identity: &str, sni: Option<&Arc<str>>) {
        let key: PeerKey = (addr, sni.cloned());
        if let Ok(mut conns) = self.conns.lock()
            && conns.get(&key).is_some_and(|p| p.identity == identity)
        {
            conns.remove(&key);
        }
    }

    /// Stops handing out the connections whose peer chain `trusted` no
    /// longer accepts; each ends once its in-flight requests are done.
    /// Returns how many.
    pub fn retire_untrusted(
        &self,
        trusted: impl Fn(&[rustls::pki_types::CertificateDer<'static>]) -> bool,
    ) -> usize {
        let Ok(mut conns) = self.conns.lock() else {
            return 0;
        };
        let before = conns.len();
        conns.retain(|_, p| p.chain.as_deref().is_none_or(&trusted));
        before - conns.len()
    }

    /// Open pooled connections (for tests and the admin dump).
    pub fn len(&self) -> usize {
        self.conns.lock().map(|c| c.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
