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

/// Sets TCP_NODELAY on a listening socket: Linux hands it on to every
/// connection accepted from it, which saves a `setsockopt` per connection
/// (the accept loop sets it per connection when the listener lacks it).
pub fn nodelay_for_accepted(listener: &std::net::TcpListener) {
    if let Err(e) = socket2::SockRef::from(listener).set_tcp_nodelay(true) {
        tracing::debug!(error = %e, "TCP_NODELAY on a listener; set per connection instead");
    }
}

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
    let active = ctx
        .metrics
        .active_connections
        .get_or_create(&DirectionLabels { direction })
        .clone();
    // Accepted sockets inherit TCP_NODELAY from the listener (Linux).
    let nodelay_inherited = socket2::SockRef::from(&listener)
        .tcp_nodelay()
        .unwrap_or(false);
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
        if !nodelay_inherited {
            let _ = tcp.set_nodelay(true);
        }
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
        let gauge = active.clone();
        tokio::spawn(async move {
            gauge.inc();
            // Boxed: the task then holds a pointer instead of the handler's
            // whole state (kilobytes), which tokio would copy on every move
            // of the task and allocate with `posix_memalign`.
            Box::pin(handler(ctx, tcp, client, orig)).await;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn accepted_connections_inherit_nodelay_from_the_listener() {
        let std_listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        std_listener.set_nonblocking(true).unwrap();
        nodelay_for_accepted(&std_listener);
        let listener = TcpListener::from_std(std_listener).unwrap();
        let addr = listener.local_addr().unwrap();
        let client = TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(accepted.nodelay().unwrap());
        // Without it, an accepted socket starts with Nagle on (so the
        // check above is not trivially true).
        let plain = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let _c = TcpStream::connect(plain.local_addr().unwrap())
            .await
            .unwrap();
        let (accepted, _) = plain.accept().await.unwrap();
        assert!(!accepted.nodelay().unwrap());
        drop(client);
    }
}
