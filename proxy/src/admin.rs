//! The admin server (on its own small runtime): `/ready` (200 once the
//! certificate and the config are loaded), `/live`, `/config` (the config
//! in force and its version, as JSON), `/metrics` (Prometheus text) and
//! `/app-health/...` (the app's kubelet probes, see `app_probe`).
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use crate::metrics::Metrics;
use crate::state::SharedState;

pub struct AdminState {
    pub state: SharedState,
    pub metrics: Arc<Metrics>,
    /// Set once the listeners are bound with a certificate and a config.
    pub ready: AtomicBool,
    pub local_id: String,
    /// The app's rewritten kubelet probes.
    pub app_probes: crate::app_probe::AppProbes,
    /// The SVID and bundle in force, for the identity metrics.
    pub credentials: Arc<palisade_identity::CredentialStore>,
}

pub async fn serve(listener: TcpListener, admin: Arc<AdminState>) {
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "admin accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let admin = admin.clone();
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let admin = admin.clone();
                async move {
                    if let Some(prober) = admin.app_probes.get(req.uri().path()) {
                        let ip = admin.state.load().config.workload.ips.first().copied();
                        let (status, body) = crate::app_probe::run(prober, ip).await;
                        return Ok::<_, Infallible>(text(status, body));
                    }
                    Ok::<_, Infallible>(route(&admin, req))
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(tcp), svc)
                .await;
        });
    }
}

fn route(admin: &AdminState, req: Request<Incoming>) -> Response<Full<Bytes>> {
    if req.method() != Method::GET {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET only\n".into());
    }
    match req.uri().path() {
        "/live" => text(StatusCode::OK, "live\n".into()),
        "/ready" => {
            if admin.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "ready\n".into())
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into())
            }
        }
        "/config" => {
            let snap = admin.state.load();
            let body = serde_json::json!({
                "version": snap.version,
                "identity": admin.local_id,
                "config": snap.config,
            });
            match serde_json::to_string_pretty(&body) {
                Ok(s) => {
                    let mut r = text(StatusCode::OK, s);
                    r.headers_mut().insert(
                        header::CONTENT_TYPE,
                        header::HeaderValue::from_static("application/json"),
                    );
                    r
                }
                Err(e) => text(StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")),
            }
        }
        "/metrics" => {
            admin.metrics.identity.refresh(&admin.credentials);
            let mut r = text(StatusCode::OK, admin.metrics.encode());
            r.headers_mut().insert(
                header::CONTENT_TYPE,
                header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            r
        }
        _ => text(
            StatusCode::NOT_FOUND,
            "try /ready /live /config /metrics\n".into(),
        ),
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r
}
