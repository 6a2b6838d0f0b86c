//! HTTP/2 clients that abuse a connection the sidecar serves: streams reset
//! as soon as they are sent or as soon as they reach the app (rapid reset,
//! CVE-2023-44487), a connection left without requests, and a peer that
//! stops answering pings. Each ends with the connection closed and
//! counted, while the sidecar keeps serving everyone else. The clients are
//! the `h2` crate and hand-written frames on a raw socket.
mod support;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use palisade_api::MtlsMode;
use palisade_proxy::ctx::{H2Keepalive, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use support::*;

type H2Conn = tokio::task::JoinHandle<Result<(), h2::Error>>;

async fn h2_client(addr: SocketAddr) -> (h2::client::SendRequest<Bytes>, H2Conn) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let (client, conn) = h2::client::handshake(tcp).await.unwrap();
    (client, tokio::spawn(conn))
}

fn get(path: &str) -> http::Request<()> {
    http::Request::get(format!("http://svc{path}"))
        .body(())
        .unwrap()
}

/// Sends up to `count` requests, each reset once the app has seen it (so
/// the sidecar accepted it and h2's own pending-accept check never fires).
/// Returns how many were sent before the connection refused more.
async fn reset_after_accept(
    client: &mut h2::client::SendRequest<Bytes>,
    seen: &AtomicUsize,
    count: usize,
) -> usize {
    for sent in 0..count {
        let Ok(ready) = client.clone().ready().await else {
            return sent;
        };
        *client = ready;
        let before = seen.load(Ordering::SeqCst);
        let Ok((_response, mut stream)) = client.send_request(get("/cancelled"), true) else {
            return sent;
        };
        let deadline = Instant::now() + Duration::from_secs(2);
        while seen.load(Ordering::SeqCst) == before && Instant::now() < deadline {
            tokio::time::sleep(Duration::from_micros(200)).await;
        }
        stream.send_reset(h2::Reason::CANCEL);
    }
    count
}

async fn closed_within(conn: H2Conn, limit: Duration) -> Result<(), h2::Error> {
    tokio::time::timeout(limit, conn)
        .await
        .expect("the connection was not closed")
        .expect("connection task")
}

/// Rapid reset past h2's own check, at both sidecars: each cancelled
/// request reaches the app first. The connection is closed once half of
/// 500 requests were cancelled within a second, and counted; the app saw
/// no more than that many, and a well-behaved client is still served.
///
/// The server's sidecar first, with a plaintext h2c client (PERMISSIVE);
/// then the client's sidecar, with the app as the attacker. The client's
/// sidecar passes each cancel on over the pooled mesh connection, so when
/// that connection carries nothing else the server's sidecar may close it
/// too; the next request opens a new one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_reset_after_reaching_the_app_close_the_connection() {
    let (app, seen) = counting_app(Duration::from_millis(300)).await;
    let c = chain(app, |_, b| b.inbound.mtls = MtlsMode::Permissive).await;
    let closed = |direction: &str| {
        format!(
            "palisade_http_connections_closed_total{{direction=\"{direction}\",reason=\"PrematureResets\"}}"
        )
    };
    for (sidecar, addr, direction) in [
        (&c.b, c.b.inbound_addr, "Inbound"),
        (&c.a, c.a.outbound_addr, "Outbound"),
    ] {
        seen.store(0, Ordering::SeqCst);
        let (mut client, conn) = h2_client(addr).await;
        let sent = reset_after_accept(&mut client, &seen, 2_000).await;
        let ended = closed_within(conn, Duration::from_secs(5)).await;
        assert!(
            (250..=260).contains(&sent),
            "{direction}: closed after {sent} cancelled requests ({ended:?})"
        );
        assert!(
            seen.load(Ordering::SeqCst) <= 260,
            "{direction}: the app saw {} requests",
            seen.load(Ordering::SeqCst)
        );
        let m = metrics(sidecar).await;
        assert_eq!(metric_value(&m, &closed(direction)), 1.0, "{m}");
        assert_eq!(http_get(c.a.outbound_addr, "/", "svc").await.0, 200);
    }
}

/// Cancels that stay under the limit, mixed with completed requests, leave
/// the connection serving: a client that gives up on some requests (a
/// browser navigating away, a hedged gRPC call) is not cut off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn some_cancelled_requests_do_not_close_the_connection() {
    let (app, seen) = counting_app(Duration::from_millis(1)).await;
    let c = chain(app, |_, _| {}).await;
    let (mut client, conn) = h2_client(c.a.outbound_addr).await;
    for _ in 0..3 {
        assert_eq!(reset_after_accept(&mut client, &seen, 200).await, 200);
        for _ in 0..250 {
            client = client.ready().await.expect("connection still open");
            let (response, _) = client.send_request(get("/done"), true).unwrap();
            assert_eq!(response.await.unwrap().status(), 200);
        }
    }
    assert!(!conn.is_finished(), "600 of 1350 requests cancelled");
    let m = metrics(&c.a).await;
    assert!(!m.contains("reason=\"PrematureResets\""), "{m}");
}

/// The plain rapid reset (each stream reset before the sidecar accepts
/// it) is refused by h2 itself with GOAWAY ENHANCE_YOUR_CALM; no request
/// reaches the app. This keeps that defence from being configured away.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_reset_before_accept_are_refused_by_http2() {
    let (app, seen) = counting_app(Duration::from_millis(1)).await;
    let c = chain(app, |_, _| {}).await;
    let (mut client, conn) = h2_client(c.a.outbound_addr).await;
    for _ in 0..10_000 {
        let Ok(ready) = client.clone().ready().await else {
            break;
        };
        client = ready;
        let Ok((_response, mut stream)) = client.send_request(get("/x"), true) else {
            break;
        };
        stream.send_reset(h2::Reason::CANCEL);
    }
    let ended = closed_within(conn, Duration::from_secs(5)).await;
    // The GOAWAY, or the closed socket if the client was still writing.
    let err = ended.expect_err("the flood ended the connection");
    assert!(
        err.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) || err.is_io(),
        "{err:?}"
    );
    assert!(
        seen.load(Ordering::SeqCst) < 50,
        "{}",
        seen.load(Ordering::SeqCst)
    );
}

/// An app whose `/stream` answers at once and then sends `0` to `9`, 150
/// ms apart; any other path answers `ok` after 1.5 s.
async fn slow_or_streaming_app() -> SocketAddr {
    use http_body_util::{BodyExt, Full, StreamBody};
    serve_http(|req: hyper::Request<hyper::body::Incoming>| async move {
        let body = if req.uri().path() == "/stream" {
            let chunks = futures::stream::unfold(0u8, |i| async move {
                if i == 10 {
                    return None;
                }
                tokio::time::sleep(Duration::from_millis(150)).await;
                let frame = hyper::body::Frame::data(Bytes::from(vec![b'0' + i]));
                Some((Ok::<_, std::convert::Infallible>(frame), i + 1))
            });
            StreamBody::new(chunks).boxed()
        } else {
            tokio::time::sleep(Duration::from_millis(1500)).await;
            Full::new(Bytes::from_static(b"ok")).boxed()
        };
        Ok::<_, std::convert::Infallible>(hyper::Response::new(body))
    })
    .await
}

/// An HTTP/2 connection without requests for the idle timeout is closed
/// with GOAWAY and counted; one whose request outlives the timeout is not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_http2_connection_is_closed_and_a_busy_one_is_not() {
    let app = slow_or_streaming_app().await;
    let idle = Duration::from_millis(400);
    let quick = Options {
        idle_timeout: idle,
        ..opts()
    };
    let c = chain_full(app, quick, opts(), |_, _| {}).await;

    // Busy: one request that takes longer than the idle timeout.
    let (client, busy_conn) = h2_client(c.a.outbound_addr).await;
    let mut client = client.ready().await.unwrap();
    let (response, _) = client.send_request(get("/slow"), true).unwrap();
    let response = tokio::time::timeout(Duration::from_secs(5), response)
        .await
        .expect("the slow request finished")
        .expect("answered, not cut off");
    assert_eq!(response.status(), 200);

    // Idle from then on: closed between 1 and 1.25 idle timeouts later
    // (plus scheduling slack), with a graceful GOAWAY.
    let start = Instant::now();
    let ended = closed_within(busy_conn, Duration::from_secs(5)).await;
    let took = start.elapsed();
    assert!(ended.is_ok(), "a graceful close, not an error: {ended:?}");
    assert!(
        took >= idle && took < Duration::from_secs(2),
        "closed {took:?} after going idle"
    );
    let m = metrics(&c.a).await;
    assert_eq!(
        metric_value(
            &m,
            "palisade_http_connections_closed_total{direction=\"Outbound\",reason=\"Idle\"}"
        ),
        1.0,
        "{m}"
    );
    drop(client);

    // A response that streams for longer than the idle timeout (a gRPC
    // stream, a slow download) keeps its connection: it is in flight
    // until its last byte.
    let (client, streaming_conn) = h2_client(c.a.outbound_addr).await;
    let mut client = client.ready().await.unwrap();
    let (response, _) = client.send_request(get("/stream"), true).unwrap();
    let response = response.await.expect("streaming response head");
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let mut received = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("the stream was not cut");
        let _ = body.flow_control().release_capacity(chunk.len());
        received.extend_from_slice(&chunk);
    }
    assert_eq!(received, b"0123456789", "every chunk, 150 ms apart");
    assert!(!streaming_conn.is_finished(), "closed while streaming");
    drop(client);

    // HTTP/1: hyper's header read timer runs between requests; it takes
    // the shorter of --header-read-timeout (60 s here) and --idle-timeout.
    let mut tcp = TcpStream::connect(c.a.outbound_addr).await.unwrap();
    tcp.write_all(b"GET /stream HTTP/1.1\r\nHost: svc\r\n\r\n")
        .await
        .unwrap();
    let start = Instant::now();
    let mut reply = Vec::new();
    let closed = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut reply)).await;
    assert!(
        closed.is_ok(),
        "the kept-alive HTTP/1 connection was not closed"
    );
    assert!(
        String::from_utf8_lossy(&reply).contains("0123456789")
            || String::from_utf8_lossy(&reply).contains("\r\n9\r\n"),
        "the answer came first: {:?}",
        String::from_utf8_lossy(&reply)
    );
    assert!(
        start.elapsed() < Duration::from_secs(3),
        "{:?}",
        start.elapsed()
    );

    // A connection that never sends a request goes the same way.
    let (_client, never_used) = h2_client(c.a.outbound_addr).await;
    assert!(
        closed_within(never_used, Duration::from_secs(5))
            .await
            .is_ok()
    );
}

/// The server's sidecar closes an idle pooled mesh connection as any
/// other; the client's sidecar sees the GOAWAY and opens a new connection
/// for the next request, which succeeds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mesh_connection_closed_for_idleness_is_replaced() {
    let (app, seen) = counting_app(Duration::from_millis(1)).await;
    let quick = Options {
        idle_timeout: Duration::from_millis(300),
        ..opts()
    };
    let c = chain_full(app, opts(), quick, |_, _| {}).await;
    assert_eq!(http_get(c.a.outbound_addr, "/", "svc").await.0, 200);
    tokio::time::sleep(Duration::from_millis(1000)).await;
    let m = metrics(&c.b).await;
    assert_eq!(
        metric_value(
            &m,
            "palisade_http_connections_closed_total{direction=\"Inbound\",reason=\"Idle\"}"
        ),
        1.0,
        "{m}"
    );
    for _ in 0..3 {
        assert_eq!(http_get(c.a.outbound_addr, "/", "svc").await.0, 200);
    }
    assert_eq!(seen.load(Ordering::SeqCst), 4);
    let m = metrics(&c.a).await;
    assert_eq!(
        metric_value(&m, "palisade_tls_handshakes_total{direction=\"Outbound\"}"),
        2.0,
        "one new mesh connection: {m}"
    );
}

const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const ACK: u8 = 0x1;

/// One frame's header: (type, flags, payload).
async fn read_frame(tcp: &mut TcpStream) -> Option<(u8, u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    tcp.read_exact(&mut head).await.ok()?;
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    tcp.read_exact(&mut payload).await.ok()?;
    Some((head[3], head[4], payload))
}

fn frame(kind: u8, flags: u8, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags, 0, 0, 0, 0];
    out.extend_from_slice(payload);
    out
}

/// A peer that stops answering (its node gone without a FIN) is pinged
/// once it has been silent for the keep-alive interval, and the
/// connection is closed when the ping goes unanswered; a peer that answers
/// stays connected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unanswered_ping_closes_an_http2_connection() {
    let (app, _) = counting_app(Duration::from_millis(1)).await;
    let keepalive = H2Keepalive {
        interval: Duration::from_millis(300),
        timeout: Duration::from_millis(300),
    };
    let b_opts = Options {
        h2_keepalive: keepalive,
        ..opts()
    };
    let c = chain_full(app, opts(), b_opts, |_, b| {
        b.inbound.mtls = MtlsMode::Permissive;
    })
    .await;

    for answer in [true, false] {
        let mut tcp = TcpStream::connect(c.b.inbound_addr).await.unwrap();
        tcp.write_all(PREFACE).await.unwrap();
        tcp.write_all(&frame(SETTINGS, 0, &[])).await.unwrap();
        let start = Instant::now();
        let mut pings = 0;
        let outcome = tokio::time::timeout(Duration::from_secs(3), async {
            while let Some((kind, flags, payload)) = read_frame(&mut tcp).await {
                match (kind, flags & ACK) {
                    (SETTINGS, 0) => tcp.write_all(&frame(SETTINGS, ACK, &[])).await.unwrap(),
                    (PING, 0) => {
                        pings += 1;
                        if answer {
                            tcp.write_all(&frame(PING, ACK, &payload)).await.unwrap();
                        }
                    }
                    _ => {}
                }
            }
        })
        .await;
        if answer {
            assert!(outcome.is_err(), "a peer that answers pings was cut off");
            assert!(pings >= 3, "{pings} pings in 3 s at a 300 ms interval");
        } else {
            let took = start.elapsed();
            assert!(outcome.is_ok(), "a peer that stopped answering was kept");
            assert_eq!(pings, 1);
            assert!(
                took >= Duration::from_millis(550) && took < Duration::from_millis(2000),
                "closed after {took:?}"
            );
        }
    }
}
