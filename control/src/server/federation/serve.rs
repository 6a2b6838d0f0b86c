//! The mesh's SPIFFE bundle endpoint (`palisade control --bundle-endpoint`):
//! the `https_spiffe` profile of SPIFFE Federation 5.2.2.3. The server
//! presents the control plane's X509-SVID, asks for no client certificate
//! (servers "MUST NOT require client authentication"), speaks TLS 1.2 and
//! 1.3 (Mozilla's intermediate profile), and answers a GET on any path with
//! the mesh's bundle as `application/json`, with `spiffe_sequence` (the
//! newest root's notBefore, in seconds, so it grows when a root is added)
//! and `spiffe_refresh_hint`.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use palisade_identity::TrustBundle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::server::tls::{
    HANDSHAKE_TIMEOUT, MAX_CONCURRENT_HANDSHAKES, ServingCert, crypto_provider,
};

/// The bundle document the endpoint serves.
pub fn bundle_document(bundle: &TrustBundle, refresh_hint: Duration) -> Result<String, String> {
    let sequence = bundle
        .roots()
        .iter()
        .filter_map(|der| {
            x509_parser::parse_x509_certificate(der)
                .ok()
                .map(|(_, c)| c.validity().not_before.timestamp())
        })
        .max()
        .and_then(|t| u64::try_from(t).ok());
    let hint = i64::try_from(refresh_hint.as_secs()).unwrap_or(i64::MAX);
    bundle
        .to_spiffe_bundle(sequence, Some(hint))
        .map_err(|e| e.to_string())
}

fn tls_config(serving: Arc<ServingCert>) -> Result<rustls::ServerConfig, rustls::Error> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_no_client_auth()
        .with_cert_resolver(serving);
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(cfg)
}

/// Serves `document` on `listener` until the task is aborted. Anyone may
/// connect, so connections are capped as the control API caps its
/// handshakes; more wait in the accept queue.
pub fn spawn(
    listener: TcpListener,
    serving: Arc<ServingCert>,
    document: Arc<str>,
) -> Result<JoinHandle<()>, rustls::Error> {
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(tls_config(serving)?));
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    Ok(tokio::spawn(async move {
        loop {
            let Ok(slot) = slots.clone().acquire_owned().await else {
                return;
            };
            let (tcp, peer) = match listener.accept().await {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(error = %e, "bundle endpoint accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            };
            let acceptor = acceptor.clone();
            let document = document.clone();
            tokio::spawn(async move {
                serve_connection(acceptor, tcp, peer, document).await;
                drop(slot);
            });
        }
    }))
}

async fn serve_connection(
    acceptor: tokio_rustls::TlsAcceptor,
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    document: Arc<str>,
) {
    let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "bundle endpoint handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "bundle endpoint handshake timed out");
            return;
        }
    };
    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let document = document.clone();
        async move { Ok::<_, Infallible>(answer(req.method(), &document)) }
    });
    let served = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10))
        .serve_connection(TokioIo::new(tls), svc);
    if let Err(e) = served.await {
        tracing::debug!(%peer, error = %e, "bundle endpoint connection ended with an error");
    }
}

fn answer(method: &http::Method, document: &str) -> http::Response<Full<Bytes>> {
    let response = |status: http::StatusCode, ty: &'static str, body: Bytes| {
        let mut r = http::Response::new(Full::new(body));
        *r.status_mut() = status;
        r.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static(ty),
        );
        r
    };
    match *method {
        http::Method::GET => response(
            http::StatusCode::OK,
            "application/json",
            Bytes::copy_from_slice(document.as_bytes()),
        ),
        http::Method::HEAD => response(http::StatusCode::OK, "application/json", Bytes::new()),
        _ => {
            let mut r = response(
                http::StatusCode::METHOD_NOT_ALLOWED,
                "text/plain",
                Bytes::from_static(b"only GET\n"),
            );
            r.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, HEAD"),
            );
            r
        }
    }
}
