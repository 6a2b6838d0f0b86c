//! The outbound side: connections our app opens, redirected to the outbound
//! listener (or sent to `--outbound-to`). Stages: Service translation and
//! egress policy, peer lookup, then per-request HTTP over the mesh pool or
//! an opaque mTLS (or plain) tunnel.
pub mod affinity;
pub mod connect;
pub mod egress;
pub mod http;
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
                        () = http::serve(ctx.clone(), io, client, target.clone(), inner) => {}
                        () = killed => {}
                    }
                }
                Ok(_) => tunnel(ctx, io, client, picked, Some(identity)).await,
                Err(e) => {
                    tracing::debug!(%client, error = %e, "outbound detection failed");
                    ctx.metrics.connection(Direction::Outbound, Outcome::Failed);
                }
            }
        }
        PeerRoute::Mesh {
            identity,
            opaque: true,
        } => tunnel(ctx, tcp, client, picked, Some(identity)).await,
        PeerRoute::Plain => tunnel(ctx, tcp, client, picked, None).await,
    }
}

/// Opaque TCP to the endpoint: mTLS with ALPN `palisade/1` to a meshed
/// peer, plain TCP otherwise.
async fn tunnel<I>(
    ctx: Arc<Ctx>,
    mut io: I,
    client: ClientAddr,
    picked: service::Picked,
    identity: Option<String>,
) where
    I: AsyncRead + AsyncWrite + Unpin,
{
    let addr = picked.addr;
    let guard = ctx.tracker.register(ConnInfo::Outbound { endpoint: addr });
    let result = match identity {
        Some(id) => match ctx.mesh_dialer().dial(addr, &id, MeshInner::Opaque).await {
            Ok(mut tls) => {
                tokio::select! {
                    r = crate::io::copy_bidirectional_idle(&mut io, &mut tls, ctx.opts.idle_timeout) => r.map(|_| ()).map_err(|source| connect::ConnectError::Io { addr, source }),
                    () = guard.killed() => Ok(()),
                }
            }
            Err(e) => Err(e),
        },
        None => match connect::tcp(addr, ctx.opts.connect_timeout).await {
            Ok(mut tcp) => tokio::select! {
                r = crate::io::copy_bidirectional_idle(&mut io, &mut tcp, ctx.opts.idle_timeout) => r.map(|_| ()).map_err(|source| connect::ConnectError::Io { addr, source }),
                () = guard.killed() => Ok(()),
            },
            Err(e) => Err(e),
        },
    };
    drop(picked);
    match result {
        Ok(()) => ctx
            .metrics
            .connection(Direction::Outbound, Outcome::Completed),
        Err(e) => {
            tracing::info!(%client, endpoint = %addr, error = %e, "outbound connection failed");
            ctx.metrics.connection(Direction::Outbound, Outcome::Failed);
        }
    }
}
