//! The data plane's limits against clients that misbehave: a request head
//! sent too slowly (slowloris) or too large, more connections than the cap,
//! an opaque connection left idle. Each ends with a clear refusal or close,
//! never a hang, and the app never sees the request.
mod support;

use std::time::{Duration, Instant};

use palisade_proxy::ctx::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::*;

/// Reads until EOF, an error, or `limit`; returns the bytes and whether
/// the peer closed.
async fn read_until_closed(tcp: &mut TcpStream, limit: Duration) -> (Vec<u8>, bool) {
    let mut out = Vec::new();
    let closed = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await
    .is_ok();
    (out, closed)
}

fn limited(f: impl FnOnce(&mut Options)) -> Options {
    let mut o = opts();
    f(&mut o);
    o
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_head_sent_too_slowly_is_cut_off() {
    let app = http_app("one").await;
    let a_opts = limited(|o| o.header_read_timeout = Duration::from_millis(300));
    let c = chain_full(app, a_opts, opts(), |_, _| {}).await;
    let mut tcp = TcpStream::connect(c.a.outbound_addr).await.unwrap();
    let start = Instant::now();
    // Half a request head, then nothing (slowloris).
    tcp.write_all(b"GET /slow HTTP/1.1\r\nHost: svc\r\nX-Partial: ")
        .await
        .unwrap();
    let (reply, closed) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(closed, "the stalled connection was not closed within 5 s");
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(250),
        "closed before the timeout: {took:?}"
    );
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.is_empty() || reply.starts_with("HTTP/1.1 408"),
        "a stalled head gets 408 or a close, not {reply:?}"
    );
    // The sidecar still serves well-behaved clients.
    assert_eq!(http_get(c.a.outbound_addr, "/", "svc").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_request_head_is_refused_by_either_sidecar() {
    let app = http_app("one").await;
    let small = |o: &mut Options| o.max_header_bytes = 16 * 1024;
    let c = chain_full(app, limited(small), limited(small), |_, _| {}).await;
    let big = "x".repeat(40 * 1024);
    // HTTP/1.1 at the client's sidecar: 431, and the app never sees it.
    let head = format!("GET /big HTTP/1.1\r\nHost: svc\r\nX-Big: {big}\r\n\r\n");
    let reply = raw_exchange(c.a.outbound_addr, head.as_bytes(), Duration::from_secs(5)).await;
    let reply = String::from_utf8_lossy(&reply);
    assert!(
        reply.starts_with("HTTP/1.1 431"),
        "oversized HTTP/1.1 head: {:?}",
        &reply[..reply.len().min(80)]
    );
    // HTTP/2 (prior knowledge) at the client's sidecar: the header list cap.
    let mut sender = h2c_client(c.a.outbound_addr).await;
    let req = http::Request::builder()
        .uri("http://svc/big")
        .header("x-big", big.as_str())
        .body(http_body_util::Empty::<bytes::Bytes>::new())
        .unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(5), sender.send_request(req))
        .await
        .expect("the oversized HTTP/2 request hung")
        .expect("HTTP/2 answers an oversized header list with a response");
    assert_eq!(resp.status().as_u16(), 431, "oversized HTTP/2 header list");
    // A head just under the cap goes through both hops.
    let fits = "y".repeat(8 * 1024);
    let (status, body) = get_with(c.a.outbound_addr, "/fits", &fits).await;
    assert_eq!(status, 200, "{body}");

    // The server's sidecar enforces its own cap on what a peer sidecar
    // sends: with a roomy client sidecar, the head passes A and B refuses.
    let c = chain_full(app, opts(), limited(small), |_, _| {}).await;
    let (status, body) = get_with(c.a.outbound_addr, "/big", &big).await;
    assert_eq!(
        status, 431,
        "oversized head at the server's sidecar: {body}"
    );
    let (status, _) = get_with(c.a.outbound_addr, "/fits", &fits).await;
    assert_eq!(status, 200, "the mesh connection survives the refusal");
}

/// A GET carrying `value` in an `x-filler` header: (status, body).
async fn get_with(addr: std::net::SocketAddr, path: &str, value: &str) -> (u16, String) {
    let (status, _, body) = http_request(addr, "GET", path, "svc", &[("x-filler", value)]).await;
    (status, body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_beyond_the_cap_are_refused_and_counted() {
    let app = http_app("one").await;
    let a_opts = limited(|o| o.max_connections = 2);
    let c = chain_full(app, a_opts, opts(), |_, _| {}).await;
    // Two connections hold the two slots (a request each, then kept open).
    let mut held = Vec::new();
    for _ in 0..2 {
        let mut tcp = TcpStream::connect(c.a.outbound_addr).await.unwrap();
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
            .await
            .unwrap();
        let mut buf = [0u8; 12];
        tcp.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"HTTP/1.1 200");
        held.push(tcp);
    }
    // The third is closed at once, without an answer.
    let mut third = TcpStream::connect(c.a.outbound_addr).await.unwrap();
    let _ = third
        .write_all(b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
        .await;
    let (reply, closed) = read_until_closed(&mut third, Duration::from_secs(5)).await;
    assert!(closed && reply.is_empty(), "over the cap: {reply:?}");
    let m = metrics(&c.a).await;
    let overloaded = m
        .lines()
        .find(|l| {
            l.starts_with("palisade_connections_total") && l.to_lowercase().contains("overloaded")
        })
        .unwrap_or_default()
        .to_string();
    assert!(
        overloaded.ends_with(" 1"),
        "overloaded connections counted: {overloaded:?}\n{m}"
    );
    // A slot freed is a slot usable again.
    drop(held.pop());
    let mut ok = false;
    for _ in 0..50 {
        let reply = raw_exchange(
            c.a.outbound_addr,
            b"GET / HTTP/1.1\r\nHost: svc\r\nConnection: close\r\n\r\n",
            Duration::from_secs(2),
        )
        .await;
        if reply.starts_with(b"HTTP/1.1 200") {
            ok = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(ok, "a freed slot was not reused");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_opaque_connection_is_closed_and_a_busy_one_is_not() {
    let app = echo_app().await;
    // Generous against a loaded CI machine: the busy side writes every
    // 100 ms, six times more often than the limit.
    let idle = |o: &mut Options| o.idle_timeout = Duration::from_millis(600);
    let c = chain_full(app, limited(idle), limited(idle), |_, _| {}).await;
    let connect = || async {
        let mut tcp = TcpStream::connect(c.a.outbound_addr).await.unwrap();
        tcp.write_all(b"\x00\x01ping\n").await.unwrap();
        let mut buf = [0u8; 7];
        tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut buf))
            .await
            .unwrap()
            .unwrap();
        assert_eq!(&buf, b"\x00\x01ping\n");
        tcp
    };
    // Busy: a byte every 100 ms for 1.2 s keeps it open.
    let mut busy = connect().await;
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(100)).await;
        busy.write_all(b"b").await.unwrap();
        let mut one = [0u8; 1];
        tokio::time::timeout(Duration::from_secs(2), busy.read_exact(&mut one))
            .await
            .expect("the busy connection stopped echoing")
            .unwrap();
    }
    // Idle: closed after the idle timeout (two timer periods at most).
    let mut quiet = connect().await;
    let start = Instant::now();
    let (rest, closed) = read_until_closed(&mut quiet, Duration::from_secs(5)).await;
    assert!(
        closed && rest.is_empty(),
        "the idle connection was not closed"
    );
    assert!(start.elapsed() >= Duration::from_millis(550));
}

/// hyper starts the header read timeout when the next request head is
/// awaited, so it is also the idle limit of a kept-alive connection. The
/// HTTP/1 mesh pool lets its connections go before the peer sidecar's
/// default limit would, so it never hands out one the peer is closing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_alive_connection_idle_past_the_header_read_timeout_is_closed() {
    assert!(
        palisade_proxy::outbound::pool_h1::IDLE_TIMEOUT < Options::default().header_read_timeout,
        "the HTTP/1 mesh pool must give connections up before the peer does"
    );
    let app = http_app("one").await;
    let a_opts = limited(|o| o.header_read_timeout = Duration::from_millis(800));
    let c = chain_full(app, a_opts, opts(), |_, _| {}).await;
    let mut tcp = TcpStream::connect(c.a.outbound_addr).await.unwrap();
    for _ in 0..3 {
        // Requests 100 ms apart keep the connection.
        tcp.write_all(b"GET / HTTP/1.1\r\nHost: svc\r\n\r\n")
            .await
            .unwrap();
        let mut status = [0u8; 12];
        tcp.read_exact(&mut status).await.unwrap();
        assert_eq!(&status, b"HTTP/1.1 200");
        // The rest of the short response, then a pause under the timeout.
        let mut rest = [0u8; 1024];
        let _ = tokio::time::timeout(Duration::from_millis(100), tcp.read(&mut rest)).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let start = Instant::now();
    let (_, closed) = read_until_closed(&mut tcp, Duration::from_secs(5)).await;
    assert!(closed, "an idle kept-alive connection stayed open");
    assert!(start.elapsed() >= Duration::from_millis(600));
}

/// The app is reached over at most `--max-upstream-connections` plain
/// HTTP/1 connections (one request each): a request past the cap gets 503
/// at once, is counted, and never reaches the app; once a connection is
/// free again requests go through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_past_the_upstream_connection_cap_get_503() {
    use std::sync::atomic::Ordering;
    let (app, seen) = counting_app(Duration::from_millis(800)).await;
    let capped = limited(|o| o.max_upstream_connections = 2);
    let c = chain_full(app, opts(), capped, |_, _| {}).await;
    let start = Instant::now();
    let statuses = futures::future::join_all((0..3).map(|_| async {
        (
            http_get(c.a.outbound_addr, "/", "svc").await.0,
            start.elapsed(),
        )
    }))
    .await;
    let mut ok = statuses.iter().filter(|(s, _)| *s == 200).count();
    let refused: Vec<_> = statuses.iter().filter(|(s, _)| *s == 503).collect();
    assert_eq!((ok, refused.len()), (2, 1), "{statuses:?}");
    assert!(
        refused[0].1 < Duration::from_millis(700),
        "refused at once: {statuses:?}"
    );
    assert_eq!(
        seen.load(Ordering::SeqCst),
        2,
        "the refused request never reached the app"
    );
    let m = metrics(&c.b).await;
    assert_eq!(
        metric_value(&m, "palisade_upstream_overflows_total"),
        1.0,
        "{m}"
    );
    // The connections are free again (and kept): requests go through.
    for _ in 0..2 {
        ok += usize::from(http_get(c.a.outbound_addr, "/", "svc").await.0 == 200);
    }
    assert_eq!(ok, 4);
}
