//! The injection webhook's HTTPS server: `POST /inject` with an
//! AdmissionReview, answered by `webhook::review`; `GET /metrics` (see
//! `webhook_metrics`) and `GET /healthz` for the Deployment's probes. The serving certificate
//! and key are read from files and read again when either changes, so a
//! Secret rotated by cert-manager or by hand is picked up without a
//! restart; a pair that does not load keeps the last good one.
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use tokio::net::TcpListener;

use super::InjectOptions;
use super::webhook::{Decision, review};
use super::webhook_metrics::{Outcome, WebhookMetrics};
use crate::server::tls::crypto_provider;

/// The API server sends at most 3 MiB per request; a little more is allowed.
const MAX_BODY: usize = 4 * 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum WebhookServerError {
    #[error("{path}: {message}")]
    Cert { path: String, message: String },
    #[error("TLS: {0}")]
    Tls(#[from] rustls::Error),
}

/// The serving certificate, reloaded when its files change.
#[derive(Debug)]
pub struct ReloadingCert {
    cert_path: PathBuf,
    key_path: PathBuf,
    current: Mutex<(Option<SystemTime>, Option<SystemTime>, Arc<CertifiedKey>)>,
}

fn modified(path: &Path) -> Option<SystemTime> {
    std::fs::metadata(path).and_then(|m| m.modified()).ok()
}

fn load(cert_path: &Path, key_path: &Path) -> Result<CertifiedKey, WebhookServerError> {
    let err = |path: &Path, message: String| WebhookServerError::Cert {
        path: path.display().to_string(),
        message,
    };
    let cert_pem = std::fs::read_to_string(cert_path).map_err(|e| err(cert_path, e.to_string()))?;
    let key_pem = std::fs::read_to_string(key_path).map_err(|e| err(key_path, e.to_string()))?;
    let certs =
        palisade_identity::pem::certs(&cert_pem).map_err(|e| err(cert_path, e.to_string()))?;
    if certs.is_empty() {
        return Err(err(cert_path, "no certificate in the file".into()));
    }
    let key =
        palisade_identity::pem::private_key(&key_pem).map_err(|e| err(key_path, e.to_string()))?;
    CertifiedKey::from_der(certs, key, &crypto_provider()).map_err(|e| err(key_path, e.to_string()))
}

impl ReloadingCert {
    pub fn new(cert_path: PathBuf, key_path: PathBuf) -> Result<Self, WebhookServerError> {
        let stamps = (modified(&cert_path), modified(&key_path));
        let key = Arc::new(load(&cert_path, &key_path)?);
        Ok(Self {
            cert_path,
            key_path,
            current: Mutex::new((stamps.0, stamps.1, key)),
        })
    }

    fn get(&self) -> Option<Arc<CertifiedKey>> {
        let mut current = self.current.lock().ok()?;
        let stamps = (modified(&self.cert_path), modified(&self.key_path));
        if (stamps.0, stamps.1) != (current.0, current.1) {
            match load(&self.cert_path, &self.key_path) {
                Ok(key) => {
                    tracing::info!(cert = %self.cert_path.display(), "webhook serving certificate reloaded");
                    *current = (stamps.0, stamps.1, Arc::new(key));
                }
                // Half of a rotation (the cert written, not yet the key)
                // fails to load: the last good pair serves meanwhile.
                Err(e) => {
                    tracing::warn!(error = %e, "webhook serving certificate not reloaded; the last good one stays")
                }
            }
        }
        Some(current.2.clone())
    }
}

impl ResolvesServerCert for ReloadingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        self.get()
    }
}

/// Serves the webhook on `listener` until the task is aborted.
pub fn spawn(
    listener: TcpListener,
    cert: Arc<ReloadingCert>,
    options: InjectOptions,
) -> Result<tokio::task::JoinHandle<()>, WebhookServerError> {
    let options = Arc::new(options);
    let metrics = Arc::new(WebhookMetrics::default());
    Ok(crate::server::public_https::spawn(
        listener,
        cert,
        "injection webhook",
        move |req| {
            let (options, metrics) = (options.clone(), metrics.clone());
            async move { handle(req, &options, &metrics).await }
        },
    )?)
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp
}

async fn handle(
    req: Request<Incoming>,
    options: &InjectOptions,
    metrics: &WebhookMetrics,
) -> Response<Full<Bytes>> {
    match (req.method(), req.uri().path()) {
        (&Method::GET, "/metrics") => {
            let mut resp = text(StatusCode::OK, metrics.encode());
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            return resp;
        }
        (&Method::GET, "/healthz") => return text(StatusCode::OK, "ok\n".into()),
        _ => {}
    }
    if req.uri().path() != "/inject" {
        return text(
            StatusCode::NOT_FOUND,
            "the webhook answers at /inject\n".into(),
        );
    }
    if req.method() != Method::POST {
        let mut resp = text(
            StatusCode::METHOD_NOT_ALLOWED,
            "POST an AdmissionReview\n".into(),
        );
        resp.headers_mut()
            .insert(http::header::ALLOW, http::HeaderValue::from_static("POST"));
        return resp;
    }
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return text(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("the review could not be read (at most {MAX_BODY} bytes): {e}\n"),
            );
        }
    };
    match review(&body, options) {
        Ok((answer, decision)) => {
            match &decision {
                Decision::Injected => tracing::info!("webhook: sidecar injected"),
                Decision::Unchanged(why) => tracing::debug!(why, "webhook: pod admitted unchanged"),
                Decision::Refused(why) => tracing::warn!(why, "webhook: pod refused"),
            }
            metrics.review(match decision {
                Decision::Injected => Outcome::Injected,
                Decision::Unchanged(_) => Outcome::Unchanged,
                Decision::Refused(_) => Outcome::Refused,
            });
            let mut resp = text(StatusCode::OK, answer.to_string());
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("application/json"),
            );
            resp
        }
        Err(e) => {
            metrics.review(Outcome::BadRequest);
            text(StatusCode::BAD_REQUEST, format!("{e}\n"))
        }
    }
}
