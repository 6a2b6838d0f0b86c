//! Inbound HTTP/1.1 and HTTP/2 served with hyper. Per request: normalize
//! the path (400 if it cannot be done safely), authorize (DENY, then ALLOW;
//! AUDIT and dry-run only log), answer 403 `RBAC: access denied` naming the
//! deciding policy and rule, or forward to the app.
use std::sync::Arc;

use http::header::{HOST, HeaderValue};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;

use crate::http_server::ServerLimits;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::ctx::Ctx;
use crate::detect::MeshInner;
use crate::forward::{RespBody, local_response};
use crate::http_activity::{self, HttpActivity, TrackedBody};
use crate::metrics::{Direction, HttpCloseReason, Layer, Outcome, Peer, RequestMeter};
use crate::policy::{self, HttpView};

use super::InboundConn;
use crate::tracker::Closing;

/// Header naming the policy and rule behind a 403 (`--no-denied-by-header`
/// turns it off).
pub const DENIED_BY_HEADER: &str = "x-palisade-denied-by";
pub const DENIED_BODY: &str = "RBAC: access denied";

/// The limits inbound connections are served under.
pub fn server_limits(ctx: &Ctx) -> ServerLimits {
    ServerLimits {
        max_concurrent_streams: Some(1024),
        ..ServerLimits::from_opts(&ctx.opts)
    }
}

/// Serves HTTP on `io` until the connection ends, a config change denies
/// it at L4, or a drain asks it to finish.
pub async fn serve<I>(ctx: Arc<Ctx>, io: I, conn: InboundConn, inner: MeshInner)
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let guard = super::track(&ctx, &conn, false);
    let client = conn.client.0;
    // The request metrics of the connection's peer, looked up once.
    let peer = match conn.peer_identity.as_deref() {
        Some(id) => Peer::identity(Arc::from(id)),
        None => Peer::UNKNOWN,
    };
    let meter = Arc::new(ctx.metrics.request_meter(Direction::Inbound, peer));
    let conn = Arc::new(conn);
    // HTTP/1 needs no watch: hyper's header read timer bounds its idle time
    // (see `ServerLimits`) and it has no streams to reset.
    let watched = inner != MeshInner::Http1;
    let activity = HttpActivity::new();
    let svc_ctx = ctx.clone();
    let svc_activity = watched.then(|| activity.clone());
    let svc = service_fn(move |req: Request<Incoming>| {
        let ctx = svc_ctx.clone();
        let conn = conn.clone();
        let meter = meter.clone();
        let mark = svc_activity.as_ref().map(|a| a.begin());
        // Boxed once here: hyper moves the service future several times
        // (into the stream task it spawns), and a pointer moves cheaper
        // than kilobytes of state.
        Box::pin(async move {
            let resp = handle_request(&ctx, &conn, &meter, req).await;
            let in_flight = mark.and_then(|m| m.finish());
            crate::forward::ok(resp.map(|body| TrackedBody::new(body, in_flight)))
        })
    });
    let served = crate::http_server::serve(&server_limits(&ctx), inner, io, svc);
    tokio::pin!(served);
    let close = tokio::select! {
        r = served.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "inbound HTTP connection ended with an error");
            }
            None
        }
        closing = guard.closing() => match closing {
            Closing::Now => return,
            Closing::Gracefully => Some(HttpCloseReason::Untrusted),
        },
        () = activity.flooded(), if watched => Some(HttpCloseReason::PrematureResets),
        () = activity.idle_for(ctx.opts.idle_timeout), if watched => Some(HttpCloseReason::Idle),
        () = ctx.drain.signaled() => {
            served.as_mut().graceful_shutdown();
            let _ = served.as_mut().await;
            None
        }
    };
    if let Some(reason) = close {
        http_activity::closing(&ctx.metrics, Direction::Inbound, client, reason, &activity);
        if matches!(reason, HttpCloseReason::Idle | HttpCloseReason::Untrusted) {
            served.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(ctx.opts.drain_deadline, served).await;
        }
    }
    ctx.metrics
        .connection(Direction::Inbound, Outcome::Completed);
}

async fn handle_request(
    ctx: &Ctx,
    conn: &InboundConn,
    meter: &RequestMeter,
    req: Request<Incoming>,
) -> Response<RespBody> {
    let started = std::time::Instant::now();
    let access = ctx
        .opts
        .access_log
        .then(|| (req.method().clone(), req.uri().path().to_string()));
    let grpc = crate::grpc::is_grpc(req.headers());
    let mut resp = authorize_and_forward(ctx, conn, req).await;
    let status = resp.status().as_u16();
    if grpc {
        resp = crate::grpc::local_reply(resp);
    }
    meter.record(&ctx.metrics, status, started.elapsed());
    if let Some((method, path)) = access {
        crate::logs::access(
            Direction::Inbound,
            conn.client.0,
            conn.app,
            conn.peer_identity.as_deref(),
            method.as_str(),
            &path,
            status,
        );
    }
    resp
}

async fn authorize_and_forward(
    ctx: &Ctx,
    conn: &InboundConn,
    req: Request<Incoming>,
) -> Response<RespBody> {
    let (normalized, verdict) = {
        let snap = ctx.state.load();
        let mode = snap.config.mesh.path_normalization;
        let raw = req
            .uri()
            .path_and_query()
            .map(|pq| pq.as_str())
            .unwrap_or("/");
        let normalized = match policy::normalize_path(raw, mode) {
            Ok(p) => p,
            Err(e) => {
                let denied = policy::Denied {
                    policy: "path-normalization".into(),
                    rule: format!("{mode:?}"),
                    reason: e.to_string(),
                };
                crate::logs::denied_request(
                    Layer::Normalization,
                    conn.client.0,
                    conn.app,
                    conn.peer_identity.as_deref(),
                    req.method().as_str(),
                    raw,
                    &denied,
                );
                ctx.metrics
                    .request_denial(Direction::Inbound, Layer::Normalization);
                return local_response(StatusCode::BAD_REQUEST, "bad request path\n");
            }
        };
        let host = req
            .headers()
            .get(HOST)
            .and_then(|h| h.to_str().ok())
            .or_else(|| req.uri().authority().map(|a| a.as_str()))
            .unwrap_or("");
        let verdict = policy::authorize_counted(
            &snap,
            &conn.access(Some(HttpView {
                method: req.method().as_str(),
                path: &normalized,
                host,
                headers: req.headers(),
            })),
            &ctx.metrics,
        );
        // The app gets the normalized path (as Envoy forwards it).
        let changed = (*normalized != *req.uri().path()).then(|| match req.uri().query() {
            Some(q) => format!("{normalized}?{q}"),
            None => normalized.into_owned(),
        });
        (changed, verdict)
    };
    if let Err(denied) = verdict {
        crate::logs::denied_request(
            Layer::Authz,
            conn.client.0,
            conn.app,
            conn.peer_identity.as_deref(),
            req.method().as_str(),
            normalized.as_deref().unwrap_or(req.uri().path()),
            &denied,
        );
        ctx.metrics.request_denial(Direction::Inbound, Layer::Authz);
        let mut resp = local_response(StatusCode::FORBIDDEN, DENIED_BODY);
        if ctx.opts.denied_by_header
            && let Ok(v) = HeaderValue::from_str(&denied.to_string())
        {
            resp.headers_mut().insert(DENIED_BY_HEADER, v);
        }
        return resp;
    }
    super::forward::to_app(ctx, conn, req, normalized).await
}
