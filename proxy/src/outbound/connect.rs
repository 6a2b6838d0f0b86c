//! Opening the upstream side of an outbound connection: TCP with a connect
//! timeout, then, for a meshed endpoint, mTLS presenting our SVID and
//! requiring the SVID the peer table expects, with the mesh ALPN token.
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use crate::batched_io::Batched;
use crate::detect::MeshInner;
use crate::metrics::{Direction, Metrics};
use crate::tls::{MeshTls, TlsError};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("connect to {addr} timed out after {timeout:?}")]
    Timeout { addr: SocketAddr, timeout: Duration },
    #[error("connect to {addr} failed: {source}")]
    Io {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("mTLS to {addr} failed: {source}")]
    Tls { addr: SocketAddr, source: TlsError },
}

pub async fn tcp(addr: SocketAddr, timeout: Duration) -> Result<TcpStream, ConnectError> {
    match tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
        Ok(Ok(s)) => {
            let _ = s.set_nodelay(true);
            Ok(s)
        }
        Ok(Err(source)) => Err(ConnectError::Io { addr, source }),
        Err(_) => Err(ConnectError::Timeout { addr, timeout }),
    }
}

/// What opening an mTLS connection to a peer sidecar needs: our SVID's
/// TLS configs, the metrics that count the handshake, and the connect
/// timeout (for TCP and for the handshake each).
pub struct MeshDialer<'a> {
    pub tls: &'a MeshTls,
    pub metrics: &'a Metrics,
    pub timeout: Duration,
}

impl MeshDialer<'_> {
    /// TCP to `addr`, then mTLS requiring `identity` with the ALPN token
    /// for `inner` and the server name `sni` (none without); a completed
    /// handshake is counted.
    pub async fn dial(
        &self,
        addr: SocketAddr,
        identity: &str,
        inner: MeshInner,
        sni: Option<&str>,
    ) -> Result<TlsStream<Batched<TcpStream>>, ConnectError> {
        let timeout = self.timeout;
        let tcp = tcp(addr, timeout).await?;
        match tokio::time::timeout(timeout, self.tls.connect(tcp, identity, inner, sni)).await {
            Ok(Ok(s)) => {
                self.metrics.handshake(Direction::Outbound);
                Ok(s)
            }
            Ok(Err(source)) => {
                self.metrics.handshake_failed(Direction::Outbound, &source);
                Err(ConnectError::Tls { addr, source })
            }
            Err(_) => Err(ConnectError::Timeout { addr, timeout }),
        }
    }
}
