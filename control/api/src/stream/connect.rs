//! The client side of the transport: one HTTP/2 channel over TLS to the
//! control plane, with the caller's rustls config (which decides how the
//! server is verified and which client certificate, if any, is shown).
//!
//! Each call makes a new channel, so a renewed client certificate is used by
//! the next connection without touching streams on the old one.
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

/// Why the control plane could not be reached.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("control plane address {0:?} is not HOST:PORT or https://HOST:PORT")]
    BadAddress(String),
    #[error("cannot resolve {addr}: {source}")]
    Resolve {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot connect to the control plane at {addr}: {source}")]
    Connect {
        addr: String,
        #[source]
        source: tonic::transport::Error,
    },
}

/// `https://host:port`, `http://host:port` (still TLS) or `host:port`.
pub fn authority_of(url: &str) -> Result<String, ConnectError> {
    let rest = url
        .strip_prefix("https://")
        .or_else(|| url.strip_prefix("http://"))
        .unwrap_or(url)
        .trim_end_matches('/');
    if rest.is_empty() || rest.contains('/') || !rest.contains(':') {
        return Err(ConnectError::BadAddress(url.to_owned()));
    }
    Ok(rest.to_owned())
}

/// Resolves the control plane's address.
pub async fn resolve(url: &str) -> Result<SocketAddr, ConnectError> {
    let authority = authority_of(url)?;
    tokio::net::lookup_host(&authority)
        .await
        .map_err(|source| ConnectError::Resolve {
            addr: authority.clone(),
            source,
        })?
        .next()
        .ok_or_else(|| ConnectError::BadAddress(url.to_owned()))
}

/// Opens a channel to `addr` over TLS with `tls` (ALPN `h2` is added). The
/// server name sent is the IP address, so no SNI goes out; the verifier in
/// `tls` decides what identity the server must have.
pub async fn connect(
    addr: SocketAddr,
    mut tls: rustls::ClientConfig,
    timeout: Duration,
) -> Result<Channel, ConnectError> {
    if !tls.alpn_protocols.iter().any(|p| p == b"h2") {
        tls.alpn_protocols.push(b"h2".to_vec());
    }
    let connector = TlsConnector::from(Arc::new(tls));
    let endpoint = Endpoint::from_shared(format!("http://{addr}"))
        .map_err(|_| ConnectError::BadAddress(addr.to_string()))?
        .connect_timeout(timeout)
        .http2_keep_alive_interval(Duration::from_secs(15))
        .keep_alive_timeout(Duration::from_secs(10))
        .keep_alive_while_idle(true);
    endpoint
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let tls = connector
                    .connect(ServerName::IpAddress(addr.ip().into()), tcp)
                    .await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .map_err(|source| ConnectError::Connect {
            addr: addr.to_string(),
            source,
        })
}
