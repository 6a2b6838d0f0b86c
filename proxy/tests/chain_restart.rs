//! A peer sidecar that drains and comes back on the same address (a
//! restart in place, as a rolling update of the sidecar does) costs its
//! callers no failed request: the pooled HTTP/2 connection to the old one
//! is dropped, and requests go out on a new one.
mod support;

use std::time::Duration;

use palisade_proxy::ctx::Options;
use support::*;

/// Waits until nothing listens on `addr` any more.
async fn wait_until_closed(addr: std::net::SocketAddr) {
    for _ in 0..100 {
        if tokio::net::TcpStream::connect(addr).await.is_err() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{addr} still accepts connections after the drain");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_sidecar_costs_no_failed_request() {
    restart_in_place(true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_peer_sidecar_costs_no_failed_request_over_http1() {
    restart_in_place(false).await;
}

/// Requests through A, B drained and started again on its address, more
/// requests through A: all answered. `mesh_h2`: A's mesh protocol.
async fn restart_in_place(mesh_h2: bool) {
    let app = http_app("one").await;
    let a_opts = Options { mesh_h2, ..opts() };
    let c = chain_full(app, a_opts, opts(), |_, _| {}).await;
    for i in 0..5 {
        let (status, _, body) = http_get(c.a.outbound_addr, &format!("/{i}"), "svc").await;
        assert_eq!(status, 200, "{body}");
    }
    if mesh_h2 {
        assert_eq!(c.a.ctx.mesh_pool.len(), 1, "one pooled mTLS connection");
    }

    // The server's sidecar gets SIGTERM: GOAWAY on the pooled connection,
    // listeners closed, in-flight work finished. It comes back on the same
    // address with a fresh SVID.
    let b_addr = c.b.inbound_addr;
    c.b.drain().await;
    wait_until_closed(b_addr).await;
    let svid = c.ca.svid_dir("b-restarted", &id("back", "server"));
    let restarted = sidecar_at(
        &c.b_config_path,
        &svid,
        b_addr,
        Options {
            inbound_app_port: Some(app.port()),
            ..opts()
        },
    );
    for i in 0..20 {
        let (status, _, body) = http_get(c.a.outbound_addr, &format!("/r{i}"), "svc").await;
        assert_eq!(status, 200, "request {i} after the restart: {body}");
    }
    if mesh_h2 {
        assert_eq!(
            c.a.ctx.mesh_pool.len(),
            1,
            "the connection to the old sidecar is gone, one to the new one pooled"
        );
    }
    drop(restarted);
}
