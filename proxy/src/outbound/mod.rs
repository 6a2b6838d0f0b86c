//! The outbound side: connections our app opens, redirected to the outbound
//! listener (or sent to `--outbound-to`). Stages: Service translation and
//! egress policy, peer lookup, then per-request HTTP over the mesh pool or
//! an opaque mTLS (or plain) tunnel.
pub mod affinity;
pub mod connect;
pub mod egress;
pub mod http;
pub mod mesh_h2;
pub mod pool;
pub mod pool_h1;
pub mod service;

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

use crate::addrs::{ClientAddr, OrigDstAddr};
use crate::ctx::Ctx;
use crate::detect::{HttpDetect, MeshInner, ReadOutcome, detect_http, read_until_decided};
use crate::io::PrefixedIo;
use crate::metrics::{Direction, Outcome};
use crate::state::{PeerRoute, peer_route};
use crate::tracker::ConnInfo;
use service::Target;

pub async fn handle(ctx: Arc<Ctx>, mut tcp: TcpStream, client: ClientAddr, orig: OrigDstAddr) {
    let target = service::resolve(&ctx.state.load(), orig.0);
    let Some(picked) = egress::admit(&ctx, client, orig, &target) else {
        return;
    };
    let route = peer_route(&ctx.state.load(), picked.addr, target.app_protocol());

    match route {
        PeerRoute::Mesh {
            identity,
            opaque: false,
        } => {
            let mut buf = BytesMut::with_capacity(1024);
            let outcome = read_until_decided(&mut tcp, &mut buf, ctx.opts.detect_timeout, |b| {
                match detect_http(b) {
                    HttpDetect::Incomplete => None,
                    HttpDetect::Http1 => Some(Some(MeshInner::Http1)),
                    HttpDetect::H2 => Some(Some(MeshInner::H2)),
                    HttpDetect::NotHttp => Some(None),
                }
            })
            .await;
            let io = PrefixedIo::new(buf.freeze(), tcp);
            match outcome {
                Ok(ReadOutcome::Decided(Some(inner))) => {
                    // Per-request balancing: the connection-level pick only
                    // served the egress check.
                    drop(picked);
                    // A fixed endpoint is re-checked on a config change; a
                    // Service is judged per request and per endpoint (its
                    // virtual IP is not a pod, so egress never matches it).
                    let guard = match &target {
                        Target::Endpoint(ep) => {
                            Some(ctx.tracker.register(ConnInfo::Outbound { endpoint: *ep }))
                        }
                        Target::Service(_) => None,
                    };
                    let killed = async {
                        match &guard {
                            Some(g) => g.killed().await,
                            None => std::future::pending().await,
                        }
                    };
                    tokio::select! {
                        () = http::serve(ctx.clone(), io, client, orig.0, inner) => {}
                        () = killed => {}
                    }
                }
                Ok(_) => tunnel(ctx, io, client, &target, picked, Some(identity)).await,
                Err(e) => {
                    tracing::debug!(%client, error = %e, "outbound detection failed");
                    ctx.metrics.connection(Direction::Outbound, Outcome::Failed);
                }
            }
        }
        PeerRoute::Mesh {
            identity,
            opaque: true,
        } => tunnel(ctx, tcp, client, &target, picked, Some(identity)).await,
        PeerRoute::Plain => tunnel(ctx, tcp, client, &target, picked, None).await,
    }
}

/// The upstream side of an opaque tunnel.
enum Upstream {
    Mesh(Box<tokio_rustls::client::TlsStream<crate::batched_io::Batched<TcpStream>>>),
    Plain(TcpStream),
}

/// Opens the tunnel's upstream to `addr`: mTLS with ALPN `palisade/1` to a
/// meshed peer (`identity`), plain TCP otherwise.
async fn dial_upstream(
    ctx: &Ctx,
    addr: std::net::SocketAddr,
    identity: Option<&str>,
    sni: Option<&str>,
) -> Result<Upstream, connect::ConnectError> {
    match identity {
        Some(id) => ctx
            .mesh_dialer()
            .dial(addr, id, MeshInner::Opaque, sni)
            .await
            .map(|tls| Upstream::Mesh(Box::new(tls))),
        None => connect::tcp(addr, ctx.opts.connect_timeout)
            .await
            .map(Upstream::Plain),
    }
}

/// After endpoint `failed` of `target` could not be reached: sets it aside
/// and, while retries remain, picks another endpoint of the Service (with
/// its route). `tried` collects the endpoints tried so far.
pub(crate) fn next_endpoint(
    ctx: &Ctx,
    target: &Target,
    failed: std::net::SocketAddr,
    tried: &mut Vec<std::net::SocketAddr>,
) -> Option<(service::Picked, PeerRoute)> {
    service::set_aside(target, failed);
    tried.push(failed);
    if tried.len() > service::CONNECT_RETRIES {
        return None;
    }
    let snap = ctx.state.load();
    let next = service::pick_another(&snap, &ctx.affinities, target, tried)?;
    let route = peer_route(&snap, next.addr, target.app_protocol());
    Some((next, route))
}

/// Dials `picked`; when it cannot be reached and `target` is a Service, up
/// to [`service::CONNECT_RETRIES`] other endpoints in turn (nothing of the
/// client's has been sent yet, so the client cannot tell). `Err` carries
/// the last endpoint tried.
async fn dial_with_retries(
    ctx: &Ctx,
    target: &Target,
    mut picked: service::Picked,
    mut identity: Option<Arc<str>>,
) -> Result<(service::Picked, Upstream), (std::net::SocketAddr, connect::ConnectError)> {
    let mut tried = Vec::new();
    loop {
        let sni = target.sni().map(|s| &**s);
        let error = match dial_upstream(ctx, picked.addr, identity.as_deref(), sni).await {
            Ok(up) => return Ok((picked, up)),
            Err(e) => e,
        };
        let Some((next, route)) = next_endpoint(ctx, target, picked.addr, &mut tried) else {
            return Err((picked.addr, error));
        };
        tracing::info!(endpoint = %picked.addr, next = %next.addr, %error, "endpoint unreachable; trying another endpoint of the Service");
        ctx.metrics.endpoint_retries.inc();
        identity = match route {
            PeerRoute::Mesh { identity, .. } => Some(identity),
            PeerRoute::Plain => None,
        };
        picked = next;
    }
}

/// Opaque TCP to the endpoint (another of the Service's when it cannot be
/// reached): mTLS with ALPN `palisade/1` to a meshed peer, plain TCP
/// otherwise.
async fn tunnel<I>(
    ctx: Arc<Ctx>,
    mut io: I,
    client: ClientAddr,
    target: &Target,
    picked: service::Picked,
    identity: Option<Arc<str>>,
) where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let (picked, upstream) = match dial_with_retries(&ctx, target, picked, identity).await {
        Ok(ok) => ok,
        Err((addr, e)) => {
            tracing::info!(%client, endpoint = %addr, error = %e, "outbound connection failed");
            ctx.metrics.connection(Direction::Outbound, Outcome::Failed);
            return;
        }
    };
    let addr = picked.addr;
    let chain = match &upstream {
        Upstream::Mesh(tls) => tls
            .get_ref()
            .1
            .peer_certificates()
            .map(|c| c.iter().map(|c| c.clone().into_owned()).collect()),
        Upstream::Plain(_) => None,
    };
    let guard = ctx
        .tracker
        .register_peer(ConnInfo::Outbound { endpoint: addr }, chain);
    let idle = ctx.opts.idle_timeout;
    let copied = match upstream {
        Upstream::Mesh(mut tls) => tokio::select! {
            r = crate::io::copy_bidirectional_idle(&mut io, &mut *tls, idle) => r.map(|_| ()),
            () = guard.killed() => Ok(()),
        },
        Upstream::Plain(mut tcp) => tokio::select! {
            r = crate::io::copy_bidirectional_idle(&mut io, &mut tcp, idle) => r.map(|_| ()),
            () = guard.killed() => Ok(()),
        },
    };
    drop(picked);
    match copied {
        Ok(()) => ctx
            .metrics
            .connection(Direction::Outbound, Outcome::Completed),
        Err(source) => {
            let e = connect::ConnectError::Io { addr, source };
            tracing::info!(%client, endpoint = %addr, error = %e, "outbound connection failed");
            ctx.metrics.connection(Direction::Outbound, Outcome::Failed);
        }
    }
}
