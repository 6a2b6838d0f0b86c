//! Pooled HTTP/1.1-over-mTLS connections to peer sidecars (the
//! `--mesh-protocol http1` alternative to the HTTP/2 pool): idle
//! connections per endpoint, reused once their previous response is done,
//! so a client that opens a connection per request costs no TLS handshake.
use std::net::SocketAddr;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

use crate::detect::MeshInner;
use crate::idle_senders::IdleSenders;

use super::connect::MeshDialer;
use super::pool::{Checkout, PoolError};

/// Idle connections kept per endpoint.
const MAX_IDLE_PER_ENDPOINT: usize = 512;
/// Idle connections older than this are closed when next looked at: less
/// than the peer sidecar's default keep-alive limit (its 60 s header read
/// timeout), so the pool gives up a connection before the peer does.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(50);

pub struct MeshPoolH1 {
    /// By endpoint, tagged with the identity the endpoint was expected to
    /// present.
    idle: IdleSenders<Incoming>,
}

impl Default for MeshPoolH1 {
    fn default() -> Self {
        Self {
            idle: IdleSenders::new(MAX_IDLE_PER_ENDPOINT, IDLE_TIMEOUT),
        }
    }
}

impl MeshPoolH1 {
    /// A sender ready for one request to the peer sidecar at `addr`.
    pub async fn checkout(
        &self,
        dialer: &MeshDialer<'_>,
        addr: SocketAddr,
        identity: &str,
        sni: Option<&str>,
    ) -> Result<Checkout<SendRequest<Incoming>>, PoolError> {
        if let Some((sender, _)) = self.idle.take_ready(addr, &tag(identity, sni)) {
            return Ok(Checkout::pooled(sender));
        }
        // Boxed: the handshake's state would otherwise be carried, and
        // moved, by every request's future.
        let sender = Box::pin(connect(dialer, addr, identity, sni)).await?;
        Ok(Checkout::opened(sender))
    }

    /// Closes the connections idle past the idle timeout.
    pub fn sweep(&self) {
        self.idle.sweep();
    }

    /// Returns a sender after its response arrived; it becomes ready again
    /// once the response body is done.
    pub fn checkin(
        &self,
        addr: SocketAddr,
        identity: &str,
        sni: Option<&str>,
        sender: SendRequest<Incoming>,
    ) {
        self.idle.checkin(addr, &tag(identity, sni), sender);
    }
}

/// What a kept connection must match besides its endpoint: the expected
/// identity and the server name its handshake carried.
/// A new HTTP/1.1-over-mTLS connection to the peer sidecar at `addr`.
async fn connect(
    dialer: &MeshDialer<'_>,
    addr: SocketAddr,
    identity: &str,
    sni: Option<&str>,
) -> Result<SendRequest<Incoming>, PoolError> {
    let stream = dialer.dial(addr, identity, MeshInner::Http1, sni).await?;
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(|e| PoolError::Handshake {
            addr,
            source: e.into(),
        })?;
    super::pool::drive(addr, conn);
    Ok(sender)
}

fn tag(identity: &str, sni: Option<&str>) -> String {
    match sni {
        Some(sni) => format!("{identity} {sni}"),
        None => identity.to_string(),
    }
}
