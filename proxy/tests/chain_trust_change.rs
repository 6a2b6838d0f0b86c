//! A root a sidecar stops trusting takes the connections it vouched for
//! with it: after the server sidecar's SVID directory moves to a new CA
//! (bundle without the old root), the pooled HTTP/2 link from the client
//! sidecar, authenticated by the old root, is closed gracefully and an
//! opaque TCP tunnel at once; the next request needs a new handshake, which
//! the client's old SVID fails. Without the re-check both would carry on
//! over the old authentication for as long as they stay busy.
mod support;

use std::time::Duration;

use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Moves the SVID directory `dir` to `to`'s files (SVID and bundle), each
/// file replaced by a rename so the watcher never reads a torn one.
fn replace_svid_dir(dir: &std::path::Path, to: &std::path::Path) {
    for f in ["svid.key", "svid.pem", "bundle.pem"] {
        let tmp = dir.join(format!(".{f}.tmp"));
        std::fs::copy(to.join(f), &tmp).unwrap();
        std::fs::rename(&tmp, dir.join(f)).unwrap();
    }
}

/// The counter `line` (a metric and its labels) of `proxy`, once it has
/// reached 1 or after 5 s; and the whole text, for messages.
async fn counted(proxy: &palisade_proxy::app::Proxy, line: &str) -> (f64, String) {
    let m = metrics_once(proxy, line, 1.0).await;
    (metric_value(&m, line), m)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dropped_root_closes_the_connections_it_authenticated() {
    let http = http_app("app").await;
    let c = chain(http, |_, _| {}).await;
    assert_eq!(http_get(c.a.outbound_addr, "/x", "h").await.0, 200);
    assert_eq!(c.a.ctx.mesh_pool.len(), 1, "the pooled link is up");

    // B's CA is replaced: same trust domain, a new root, B's SVID from it.
    let other = TestCa::new();
    let fresh = other.svid_dir("b-new", &id("back", "server"));
    replace_svid_dir(&c.ca.dir.path().join("b"), &fresh);

    let (closed, m) = counted(
        &c.b,
        "palisade_closed_by_trust_change_total{direction=\"Inbound\"}",
    )
    .await;
    assert_eq!(
        closed, 1.0,
        "B closes the link A's old root authenticated: {m}"
    );
    let (_, m) = counted(
        &c.b,
        "palisade_http_connections_closed_total{direction=\"Inbound\",reason=\"Untrusted\"}",
    )
    .await;
    assert!(m.contains("reason=\"Untrusted\"} 1"), "{m}");
    // The next request cannot ride the old link: a new handshake, in which
    // B refuses A's SVID (and A does not trust B's new root either).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let (status, _, _) = http_get(c.a.outbound_addr, "/x", "h").await;
    assert_eq!(status, 502);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opaque_tunnel_is_cut_when_its_peer_root_is_dropped() {
    let app = echo_app().await;
    let c = chain(app, |_, _| {}).await;
    let mut tcp = tokio::net::TcpStream::connect(c.a.outbound_addr)
        .await
        .unwrap();
    tcp.write_all(b"\x00\x01ping\n").await.unwrap();
    let mut buf = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();

    // A now trusts only a new CA: B's server certificate no longer verifies.
    let other = TestCa::new();
    let fresh = other.svid_dir("a-new", &id("front", "client"));
    replace_svid_dir(&c.ca.dir.path().join("a"), &fresh);
    let (closed, m) = counted(
        &c.a,
        "palisade_closed_by_trust_change_total{direction=\"Outbound\"}",
    )
    .await;
    assert_eq!(closed, 1.0, "{m}");
    // The client sees its tunnel end.
    let mut rest = Vec::new();
    let ended = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest)).await;
    assert!(ended.is_ok(), "the tunnel is closed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_that_keeps_the_roots_closes_nothing() {
    let app = http_app("app").await;
    let c = chain(app, |_, _| {}).await;
    assert_eq!(http_get(c.a.outbound_addr, "/x", "h").await.0, 200);
    // A renewed SVID from the same CA (what every half-life renewal does).
    let renewed = c.ca.svid_dir("b-renewed", &id("back", "server"));
    replace_svid_dir(&c.ca.dir.path().join("b"), &renewed);
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(http_get(c.a.outbound_addr, "/x", "h").await.0, 200);
    let m = metrics(&c.b).await;
    assert!(!m.contains("palisade_closed_by_trust_change_total{"), "{m}");
    assert_eq!(c.a.ctx.mesh_pool.len(), 1, "the same pooled link");
}
