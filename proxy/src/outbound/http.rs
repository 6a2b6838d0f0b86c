//! Outbound HTTP: the app's HTTP/1 or HTTP/2 is served with hyper and each
//! request is balanced (for a Service) and sent over the pooled HTTP/2 mTLS
//! connection to the peer's sidecar; unmeshed endpoints get plain HTTP/1.
//! Upgrade requests take a dedicated HTTP/1 mTLS connection.
use std::sync::Arc;

use http::header::{HOST, HeaderValue};
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri};
use hyper::body::Incoming;
use hyper::client::conn::TrySendError;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite};

use crate::addrs::ClientAddr;
use crate::ctx::Ctx;
use crate::detect::MeshInner;
use crate::forward::{
    RespBody, caller_body_failed, is_upgrade, local_response, proxied, send_plain, splice_upgrade,
    strip_hop_by_hop, upgrade_response,
};
use crate::http_activity::{self, HttpActivity, TrackedBody};
use crate::metrics::{Direction, HttpCloseReason, Layer, MeterCache, Outcome, Peer};
use crate::state::{PeerRoute, peer_route};

use super::mesh_h2::MeshSendError;
use super::pool::Checkout;
use super::service::{self, Target};

/// Serves the app's HTTP on a captured connection to `orig`. Each request
/// is resolved and balanced against the config in force when it arrives,
/// so a long-lived connection (a gRPC channel) follows the Service's
/// endpoints as they come and go.
pub async fn serve<I>(
    ctx: Arc<Ctx>,
    io: I,
    client: ClientAddr,
    orig: std::net::SocketAddr,
    inner: MeshInner,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    // HTTP/1 needs no watch: hyper's header read timer bounds its idle time
    // (above) and it has no streams to reset.
    let watched = inner == MeshInner::H2;
    let activity = HttpActivity::new();
    let svc_ctx = ctx.clone();
    let svc_activity = watched.then(|| activity.clone());
    let meters = Arc::new(MeterCache::default());
    let svc = service_fn(move |req: Request<Incoming>| {
        let ctx = svc_ctx.clone();
        let meters = meters.clone();
        let mark = svc_activity.as_ref().map(|a| a.begin());
        // Boxed once here: hyper moves the service future into its
        // dispatcher, and a pointer moves cheaper than kilobytes of state.
        Box::pin(async move {
            let grpc = crate::grpc::is_grpc(req.headers());
            let resp = proxy_request(&ctx, &meters, client, orig, req).await;
            let in_flight = mark.and_then(|m| m.finish());
            let resp = if grpc {
                crate::grpc::local_reply(resp)
            } else {
                resp
            };
            crate::forward::ok(resp.map(|body| TrackedBody::new(body, in_flight)))
        })
    });
    let limits = crate::http_server::ServerLimits::from_opts(&ctx.opts);
    let served = crate::http_server::serve(&limits, inner, io, svc);
    tokio::pin!(served);
    let close = tokio::select! {
        r = served.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(error = %e, "outbound HTTP connection ended with an error");
            }
            None
        }
        () = activity.flooded(), if watched => Some(HttpCloseReason::PrematureResets),
        () = activity.idle_for(ctx.opts.idle_timeout), if watched => Some(HttpCloseReason::Idle),
        () = ctx.drain.signaled() => {
            served.as_mut().graceful_shutdown();
            let _ = served.as_mut().await;
            None
        }
    };
    if let Some(reason) = close {
        http_activity::closing(
            &ctx.metrics,
            Direction::Outbound,
            client.0,
            reason,
            &activity,
        );
        if reason == HttpCloseReason::Idle {
            served.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(ctx.opts.drain_deadline, served).await;
        }
    }
    ctx.metrics
        .connection(Direction::Outbound, Outcome::Completed);
}

async fn proxy_request(
    ctx: &Ctx,
    meters: &MeterCache,
    client: ClientAddr,
    orig: std::net::SocketAddr,
    mut req: Request<Incoming>,
) -> Response<RespBody> {
    let started = std::time::Instant::now();
    let (target, picked) = {
        let snap = ctx.state.load();
        let target = service::resolve(&snap, orig);
        let picked = service::pick(&snap, &ctx.affinities, &target).map(|p| {
            let route = peer_route(&snap, p.addr, target.app_protocol());
            (p, route)
        });
        (target, picked)
    };
    let target = &target;
    let (picked, route) = match picked {
        Ok(p) => p,
        Err(denied) => {
            let dest = match target {
                Target::Endpoint(a) => *a,
                Target::Service(_) => client.0,
            };
            crate::logs::denied_connection(
                Direction::Outbound,
                Layer::Egress,
                client.0,
                dest,
                None,
                &denied,
            );
            ctx.metrics
                .request_denial(Direction::Outbound, Layer::Egress);
            let resp = local_response(StatusCode::FORBIDDEN, "egress: access denied\n");
            meters
                .meter(&ctx.metrics, Direction::Outbound, Peer::UNKNOWN)
                .record(&ctx.metrics, resp.status().as_u16(), started.elapsed());
            return resp;
        }
    };
    let upgrade = is_upgrade(&req);
    // Keep the caller's Host; an HTTP/2 caller gave it as :authority.
    // `None`: a Host header that is no authority (refused on mesh routes).
    let authority = match req.headers().get(HOST).and_then(|h| h.to_str().ok()) {
        Some(host) => host.parse::<Authority>().ok(),
        None => req
            .uri()
            .authority()
            .cloned()
            .or_else(|| Authority::try_from(picked.addr.to_string()).ok()),
    };
    if !req.headers().contains_key(HOST)
        && let Some(a) = &authority
        && let Ok(v) = HeaderValue::from_str(a.as_str())
    {
        req.headers_mut().insert(HOST, v);
    }
    strip_hop_by_hop(req.headers_mut(), upgrade);
    // Labelled with the identity expected of the endpoint picked first.
    let peer = match &route {
        PeerRoute::Mesh { identity, .. } => Peer::identity(identity.clone()),
        PeerRoute::Plain => Peer::UNKNOWN,
    };
    let resp = match route {
        PeerRoute::Mesh { identity, .. } if upgrade => {
            // Boxed: rare, and its state is large.
            Box::pin(upgrade_over_mesh(
                ctx,
                picked.addr,
                &identity,
                target.sni().map(|s| &**s),
                req,
            ))
            .await
        }
        route => send_retrying(ctx, target, picked, route, authority, req).await,
    };
    meters
        .meter(&ctx.metrics, Direction::Outbound, peer)
        .record(&ctx.metrics, resp.status().as_u16(), started.elapsed());
    resp
}

/// 502 for a peer sidecar no connection could be made to.
fn peer_unreachable(
    addr: std::net::SocketAddr,
    identity: &str,
    error: &dyn std::fmt::Display,
) -> Response<RespBody> {
    tracing::info!(%addr, %identity, %error, "cannot reach the peer sidecar");
    local_response(StatusCode::BAD_GATEWAY, "peer sidecar unavailable\n")
}

/// The request's path and query, `/` if it has none.
fn path_and_query<B>(req: &Request<B>) -> PathAndQuery {
    req.uri()
        .path_and_query()
        .cloned()
        .unwrap_or_else(|| PathAndQuery::from_static("/"))
}

/// Points `req` at `http://authority` with its own path and query (the
/// absolute form HTTP/2 takes its `:scheme` and `:authority` from).
fn set_absolute_target<B>(req: &mut Request<B>, authority: Authority) {
    let mut parts = http::uri::Parts::default();
    parts.scheme = Some(Scheme::HTTP);
    parts.authority = Some(authority);
    parts.path_and_query = Some(path_and_query(req));
    // Scheme, authority and path together always make a URI.
    if let Ok(uri) = Uri::from_parts(parts) {
        *req.uri_mut() = uri;
    }
}

/// Leaves only the path and query in `req`'s target (origin form).
fn set_origin_target<B>(req: &mut Request<B>) {
    *req.uri_mut() = Uri::from(path_and_query(req));
}

/// A request no byte of which reached the peer: no connection could be
/// made, or the new connection was closed before taking it. It can go to
/// another endpoint whatever its method; `answer` is for the caller if it
/// goes nowhere.
struct Unsent {
    req: Request<Incoming>,
    answer: Response<RespBody>,
}

/// Sends `req` to `picked` over its route and, while it reaches no
/// endpoint (no connection could be made, or a new one was closed before
/// taking it) and `target` is a Service, to up to
/// [`service::CONNECT_RETRIES`] other endpoints, each over its own route
/// (Istio's default `connect-failure`/`refused-stream` retries, each to
/// another host). The request is put in the form each route takes.
async fn send_retrying(
    ctx: &Ctx,
    target: &Target,
    mut picked: service::Picked,
    mut route: PeerRoute,
    mut authority: Option<Authority>,
    mut req: Request<Incoming>,
) -> Response<RespBody> {
    let mut tried = Vec::new();
    loop {
        let sent = match &route {
            PeerRoute::Mesh { identity, .. } => {
                // Sidecars take the caller's authority; one that is none is
                // refused.
                let Some(this_authority) = authority.take() else {
                    return local_response(StatusCode::BAD_REQUEST, "bad request target\n");
                };
                let sni = target.sni();
                if ctx.opts.mesh_h2 {
                    // Moved into the target (no copy per request); a
                    // request that comes back unsent gives it back below.
                    as_h2(&mut req, this_authority);
                    send_mesh(ctx, picked.addr, identity, sni, req).await
                } else {
                    authority = Some(this_authority);
                    as_http1(&mut req);
                    send_mesh_h1(ctx, picked.addr, identity, sni.map(|s| &**s), req).await
                }
            }
            PeerRoute::Plain => {
                as_http1(&mut req);
                match ctx.plain.prepare(picked.addr).await {
                    Ok(()) => return send_plain(&ctx.plain, picked.addr, req).await,
                    Err(e) => {
                        tracing::info!(endpoint = %picked.addr, error = %e, "cannot reach the endpoint");
                        Err(Unsent {
                            req,
                            answer: local_response(
                                StatusCode::BAD_GATEWAY,
                                "upstream unavailable\n",
                            ),
                        })
                    }
                }
            }
        };
        let unsent = match sent {
            Ok(resp) => return resp,
            Err(unsent) => unsent,
        };
        let Some((next, next_route)) = super::next_endpoint(ctx, target, picked.addr, &mut tried)
        else {
            return unsent.answer;
        };
        tracing::info!(endpoint = %picked.addr, next = %next.addr, "endpoint unreachable; sending the request to another endpoint of the Service");
        ctx.metrics.endpoint_retries.inc();
        picked = next;
        route = next_route;
        req = unsent.req;
        if authority.is_none() {
            authority = req.uri().authority().cloned();
        }
    }
}

/// `req` in the form HTTP/2 to a peer sidecar takes: the absolute target
/// (`:scheme` and `:authority` come from it). The `Host` header, the same
/// authority, stays (RFC 9113 8.3.1 lets an intermediary keep it): the
/// peer's HPACK table serves it from the second request on, and the peer
/// forwards HTTP/1.1 to its app without building it again.
fn as_h2<B>(req: &mut Request<B>, authority: Authority) {
    set_absolute_target(req, authority);
    *req.version_mut() = http::Version::HTTP_2;
}

/// `req` in the form HTTP/1.1 takes: an origin-form target (the authority
/// is in `Host`, which [`proxy_request`] set and every form keeps).
fn as_http1<B>(req: &mut Request<B>) {
    set_origin_target(req);
    *req.version_mut() = http::Version::HTTP_11;
}

/// Sends `req` over the pooled HTTP/2 connection to the peer sidecar. A
/// connection found closed before the request was handed to it (the peer
/// restarted or sent GOAWAY while it sat in the pool) is dropped and the
/// request goes out once on a new one: it was never sent, so this is safe
/// for every method. `Err`: the request reached no peer.
async fn send_mesh(
    ctx: &Ctx,
    addr: std::net::SocketAddr,
    identity: &str,
    sni: Option<&Arc<str>>,
    mut req: Request<Incoming>,
) -> Result<Response<RespBody>, Unsent> {
    let mut retried = false;
    loop {
        let Checkout { mut sender, fresh } = match ctx
            .mesh_pool
            .get(&ctx.mesh_dialer(), addr, identity, sni)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                return Err(Unsent {
                    req,
                    answer: peer_unreachable(addr, identity, &e),
                });
            }
        };
        // Only a connection that sat in the pool earns a second try: one
        // opened for this request and closed at once was refused.
        let may_resend = !retried && !fresh;
        match sender.send(req).await {
            Ok(resp) => return Ok(proxied(resp).await),
            Err(MeshSendError::Unsent(unsent, e)) => {
                ctx.mesh_pool.evict(addr, identity, sni);
                if may_resend {
                    retried = true;
                    tracing::debug!(%addr, error = %e, "pooled mesh connection closed; sending the request on a new one");
                    req = *unsent;
                    continue;
                }
                tracing::info!(%addr, error = %e, "new mesh connection closed before taking the request");
                return Err(Unsent {
                    req: *unsent,
                    answer: local_response(StatusCode::BAD_GATEWAY, "peer sidecar unavailable\n"),
                });
            }
            Err(MeshSendError::CallerBody(e)) => {
                tracing::debug!(%addr, error = %e, "request body from the caller failed");
                return Ok(local_response(
                    StatusCode::BAD_REQUEST,
                    "bad request body\n",
                ));
            }
            Err(MeshSendError::Failed(e)) => {
                if sender.is_closed() {
                    ctx.mesh_pool.evict(addr, identity, sni);
                }
                tracing::debug!(%addr, error = %e, "mesh request failed");
                return Ok(local_response(
                    StatusCode::BAD_GATEWAY,
                    "peer sidecar request failed\n",
                ));
            }
        }
    }
}

/// What follows a request that failed on a pooled mesh connection.
enum AfterFailure {
    /// It was never sent: it goes out once more on a new connection.
    Resend(Request<Incoming>),
    /// It was never sent, on a connection opened for it: this peer is not
    /// taking requests; another endpoint may.
    Elsewhere(Box<Unsent>),
    /// The caller's answer: 400 when the caller's own body failed, 502
    /// otherwise.
    Answer(Response<RespBody>),
}

fn after_failed_send(
    addr: std::net::SocketAddr,
    mut e: TrySendError<Request<Incoming>>,
    may_resend: bool,
) -> AfterFailure {
    if caller_body_failed(e.error()) {
        tracing::debug!(%addr, error = %e.error(), "request body from the caller failed");
        return AfterFailure::Answer(local_response(
            StatusCode::BAD_REQUEST,
            "bad request body\n",
        ));
    }
    match e.take_message() {
        Some(unsent) if may_resend => {
            tracing::debug!(%addr, error = %e.error(), "request not sent on the pooled mesh connection; sending it on a new one");
            AfterFailure::Resend(unsent)
        }
        Some(unsent) => {
            tracing::info!(%addr, error = %e.error(), "new mesh connection closed before taking the request");
            AfterFailure::Elsewhere(Box::new(Unsent {
                req: unsent,
                answer: local_response(StatusCode::BAD_GATEWAY, "peer sidecar request failed\n"),
            }))
        }
        _ => {
            tracing::debug!(%addr, error = %e.error(), "mesh request failed");
            AfterFailure::Answer(local_response(
                StatusCode::BAD_GATEWAY,
                "peer sidecar request failed\n",
            ))
        }
    }
}

/// [`send_mesh`] over a pooled HTTP/1.1 connection (`--mesh-protocol
/// http1`): a request handed back unsent (the kept connection was closed
/// under it) goes out once on a new connection.
async fn send_mesh_h1(
    ctx: &Ctx,
    addr: std::net::SocketAddr,
    identity: &str,
    sni: Option<&str>,
    mut req: Request<Incoming>,
) -> Result<Response<RespBody>, Unsent> {
    let mut retried = false;
    loop {
        let Checkout { mut sender, fresh } = match ctx
            .mesh_pool_h1
            .checkout(&ctx.mesh_dialer(), addr, identity, sni)
            .await
        {
            Ok(s) => s,
            Err(e) => {
                return Err(Unsent {
                    req,
                    answer: peer_unreachable(addr, identity, &e),
                });
            }
        };
        match sender.try_send_request(req).await {
            Ok(resp) => {
                ctx.mesh_pool_h1.checkin(addr, identity, sni, sender);
                return Ok(proxied(resp).await);
            }
            Err(e) => match after_failed_send(addr, e, !retried && !fresh) {
                AfterFailure::Resend(unsent) => {
                    retried = true;
                    req = unsent;
                }
                AfterFailure::Elsewhere(unsent) => return Err(*unsent),
                AfterFailure::Answer(answer) => return Ok(answer),
            },
        }
    }
}

/// An Upgrade (WebSocket) cannot ride the HTTP/2 pool: it gets its own
/// HTTP/1 mTLS connection, spliced to the client after the 101.
async fn upgrade_over_mesh(
    ctx: &Ctx,
    addr: std::net::SocketAddr,
    identity: &str,
    sni: Option<&str>,
    mut req: Request<Incoming>,
) -> Response<RespBody> {
    let stream = match ctx
        .mesh_dialer()
        .dial(addr, identity, MeshInner::Http1, sni)
        .await
    {
        Ok(s) => s,
        Err(e) => return peer_unreachable(addr, identity, &e),
    };
    let (mut sender, conn) = match hyper::client::conn::http1::handshake(TokioIo::new(stream)).await
    {
        Ok(pair) => pair,
        Err(e) => {
            tracing::info!(%addr, error = %e, "HTTP/1 handshake with the peer sidecar failed");
            return local_response(StatusCode::BAD_GATEWAY, "peer sidecar unavailable\n");
        }
    };
    tokio::spawn(async move {
        let _ = conn.with_upgrades().await;
    });
    set_origin_target(&mut req);
    let client_upgrade = hyper::upgrade::on(&mut req);
    match sender.send_request(req).await {
        Ok(mut resp) => {
            if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                splice_upgrade(client_upgrade, hyper::upgrade::on(&mut resp));
            }
            upgrade_response(resp)
        }
        Err(e) => {
            tracing::debug!(%addr, error = %e, "upgrade request failed");
            local_response(StatusCode::BAD_GATEWAY, "peer sidecar request failed\n")
        }
    }
}
