//! The mesh's SPIFFE bundle endpoint (`palisade control --bundle-endpoint`):
//! the `https_spiffe` profile of SPIFFE Federation 5.2.2.3. The server
//! presents the control plane's X509-SVID, asks for no client certificate
//! (servers "MUST NOT require client authentication"), speaks TLS 1.2 and
//! 1.3 (Mozilla's intermediate profile), and answers a GET on any path with
//! the mesh's bundle as `application/json`, with `spiffe_sequence` (see
//! `CaCell::bundle_sequence`: it grows with every change of the roots) and
//! `spiffe_refresh_hint`. A CA rotation replaces the document in place.
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use palisade_identity::TrustBundle;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::server::tls::ServingCert;

/// The bundle document the endpoint serves.
pub fn bundle_document(
    bundle: &TrustBundle,
    sequence: Option<u64>,
    refresh_hint: Duration,
) -> Result<String, String> {
    let hint = i64::try_from(refresh_hint.as_secs()).unwrap_or(i64::MAX);
    bundle
        .to_spiffe_bundle(sequence, Some(hint))
        .map_err(|e| e.to_string())
}

/// Serves `document` on `listener` until the task is aborted. Anyone may
/// connect, so connections are capped as the control API caps its
/// handshakes; more wait in the accept queue.
pub fn spawn(
    listener: TcpListener,
    serving: Arc<ServingCert>,
    document: Arc<ServedDocument>,
) -> Result<JoinHandle<()>, rustls::Error> {
    crate::server::public_https::spawn(listener, serving, "bundle endpoint", move |req| {
        let document = document.load_full();
        async move { answer(req.method(), &document) }
    })
}

/// The document served, replaced when the mesh's roots change.
pub type ServedDocument = arc_swap::ArcSwap<String>;

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
                // go-spiffe's federation.Handler answers the same
                // (v2/federation/handler_test.go, "invalid method").
                Bytes::from_static(b"method is not allowed\n"),
            );
            r.headers_mut().insert(
                http::header::ALLOW,
                http::HeaderValue::from_static("GET, HEAD"),
            );
            r
        }
    }
}
