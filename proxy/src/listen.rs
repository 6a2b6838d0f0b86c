//! Accept loops of the data-plane listeners: the concurrent-connection cap,
//! the original destination, drain tracking, one task per connection.
use std::future::Future;
use std::sync::Arc;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::addrs::{ClientAddr, OrigDstAddr, to_canonical};
use crate::capture::orig_dst_addr_or_default;
use crate::ctx::Ctx;
use crate::metrics::{Direction, DirectionLabels, Outcome};

/// Accepts until the drain starts; runs `handler` per connection.
pub async fn accept_loop<F, Fut>(
    listener: TcpListener,
    ctx: Arc<Ctx>,
    direction: Direction,
    handler: F,
) where
    F: Fn(Arc<Ctx>, TcpStream, ClientAddr, OrigDstAddr) -> Fut + Send + Sync + Copy + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    let limit = Arc::new(Semaphore::new(ctx.opts.max_connections));
    let local = listener.local_addr().ok();
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            () = ctx.drain.signaled() => break,
        };
        let (tcp, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                // EMFILE and friends: back off briefly instead of spinning.
                tracing::warn!(?direction, error = %e, "accept failed");
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let Ok(permit) = limit.clone().try_acquire_owned() else {
            tracing::warn!(?direction, client = %peer, max = ctx.opts.max_connections, "connection cap reached; refusing");
            ctx.metrics.connection(direction, Outcome::Overloaded);
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let client = ClientAddr(to_canonical(peer));
        let orig = match orig_dst(&ctx, direction, &tcp) {
            Some(o) => o,
            None => {
                tracing::warn!(
                    ?direction,
                    %client,
                    listener = ?local,
                    "no original destination (not redirected and no --outbound-to); closing"
                );
                ctx.metrics.connection(direction, Outcome::Failed);
                continue;
            }
        };
        let in_flight = ctx.drain.track();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let gauge = ctx
                .metrics
                .active_connections
                .get_or_create(&DirectionLabels { direction })
                .clone();
            gauge.inc();
            handler(ctx, tcp, client, orig).await;
            gauge.dec();
            drop(permit);
            drop(in_flight);
        });
    }
    tracing::info!(?direction, "listener closed for drain");
}

fn orig_dst(ctx: &Ctx, direction: Direction, tcp: &TcpStream) -> Option<OrigDstAddr> {
    match direction {
        Direction::Outbound => match ctx.opts.outbound_to {
            Some(to) => Some(OrigDstAddr(to)),
            // Not redirected: a connection straight to the outbound port
            // has no destination (and forwarding it to ourselves would loop).
            None => crate::capture::orig_dst_addr(tcp).ok(),
        },
        Direction::Inbound => orig_dst_addr_or_default(tcp).ok(),
    }
}
