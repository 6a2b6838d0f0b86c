//! Pooled HTTP/1.1-over-mTLS connections to peer sidecars (the
//! `--mesh-protocol http1` alternative to the HTTP/2 pool): idle
//! connections per endpoint, reused once their previous response is done,
//! so a client that opens a connection per request costs no TLS handshake.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::detect::MeshInner;
use crate::metrics::{Direction, Metrics};
use crate::tls::MeshTls;

use super::connect;
use super::pool::PoolError;

/// Idle connections kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 512;

/// An endpoint's expected identity and its idle connections.
type IdleList = (String, Vec<SendRequest<Incoming>>);

#[derive(Default)]
pub struct MeshPoolH1 {
    idle: Mutex<HashMap<SocketAddr, IdleList>>,
}

impl MeshPoolH1 {
    /// A sender ready for one request to the peer sidecar at `addr`.
    pub async fn checkout(
        &self,
        tls: &MeshTls,
        metrics: &Metrics,
        addr: SocketAddr,
        identity: &str,
        timeout: Duration,
    ) -> Result<SendRequest<Incoming>, PoolError> {
        if let Some(s) = self.take_ready(addr, identity) {
            return Ok(s);
        }
        let stream = connect::mesh(tls, addr, identity, MeshInner::Http1, timeout).await?;
        metrics.handshake(Direction::Outbound);
        let (sender, conn) = hyper::client::conn::http1::Builder::new()
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|source| PoolError::Handshake { addr, source })?;
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(%addr, error = %e, "pooled mesh connection ended");
            }
        });
        Ok(sender)
    }

    fn take_ready(&self, addr: SocketAddr, identity: &str) -> Option<SendRequest<Incoming>> {
        let mut idle = self.idle.lock().ok()?;
        let (id, list) = idle.get_mut(&addr)?;
        if id != identity {
            idle.remove(&addr);
            return None;
        }
        list.retain(|s| !s.is_closed());
        let i = list.iter().position(|s| s.is_ready())?;
        Some(list.swap_remove(i))
    }

    /// Returns a sender after its response arrived; it becomes ready again
    /// once the response body is done.
    pub fn checkin(&self, addr: SocketAddr, identity: &str, sender: SendRequest<Incoming>) {
        if sender.is_closed() {
            return;
        }
        if let Ok(mut idle) = self.idle.lock() {
            let entry = idle
                .entry(addr)
                .or_insert_with(|| (identity.to_string(), Vec::new()));
            if entry.0 == identity && entry.1.len() < MAX_IDLE_PER_ENDPOINT {
                entry.1.push(sender);
            }
        }
    }
}
