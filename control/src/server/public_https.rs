//! A public HTTPS/1.1 listener, for endpoints anyone may call without a
//! client certificate (the SPIFFE bundle endpoint, the injection webhook):
//! TLS 1.3 and 1.2 with the mesh's crypto provider, connections capped as
//! the control API caps its handshakes (more wait in the accept queue), and
//! the control API's handshake timeout also bounding a request head.
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::server::ResolvesServerCert;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use super::tls::{HANDSHAKE_TIMEOUT, MAX_CONCURRENT_HANDSHAKES, crypto_provider};

/// Serves `handler` on `listener` until the task is aborted; `what` names
/// the endpoint in logs.
pub fn spawn<H, F>(
    listener: TcpListener,
    certificate: Arc<dyn ResolvesServerCert>,
    what: &'static str,
    handler: H,
) -> Result<JoinHandle<()>, rustls::Error>
where
    H: Fn(http::Request<Incoming>) -> F + Clone + Send + Sync + 'static,
    F: Future<Output = http::Response<Full<Bytes>>> + Send + 'static,
{
    let mut cfg = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(certificate);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    Ok(tokio::spawn(async move {
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "{what}: accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let (acceptor, handler) = (acceptor.clone(), handler.clone());
            tokio::spawn(async move {
                let _slot = slot;
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%peer, error = %e, "{what}: handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%peer, "{what}: handshake timed out");
                        return;
                    }
                };
                let svc = hyper::service::service_fn(move |req| {
                    let handler = handler.clone();
                    async move { Ok::<_, Infallible>(handler(req).await) }
                });
                let served = hyper::server::conn::http1::Builder::new()
                    .timer(hyper_util::rt::TokioTimer::new())
                    .header_read_timeout(HANDSHAKE_TIMEOUT)
                    .serve_connection(TokioIo::new(tls), svc);
                if let Err(e) = served.await {
                    tracing::debug!(%peer, error = %e, "{what}: connection ended with an error");
                }
            });
        }
    }))
}
