//! Request smuggling (RFC 9112 section 6): requests whose framing is
//! ambiguous are refused with 400 at whichever sidecar first parses them,
//! never forwarded, so no second request can hide in a body. The one shape
//! the RFC lets a server accept, Content-Length beside Transfer-Encoding,
//! is framed by Transfer-Encoding alone, forwarded re-framed, and the
//! connection closes after the answer ("Regardless, the server MUST close
//! the connection after responding to such a request"), so what follows
//! the chunked body is never read as a request. Each case is
//! sent raw on a client connection to the client's sidecar and, in
//! plaintext, to the server's sidecar (PERMISSIVE); the app records every
//! request it is given.
mod support;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use palisade_api::MtlsMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::*;

/// An app recording `METHOD path body-length` of every request.
async fn recording_app() -> (std::net::SocketAddr, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let addr = serve_http(move |req: hyper::Request<Incoming>| {
        let log = log.clone();
        async move {
            let line = format!("{} {}", req.method(), req.uri().path());
            let body = req.into_body().collect().await.map(|b| b.to_bytes());
            let len = match &body {
                Ok(b) => b.len().to_string(),
                Err(_) => "incomplete".to_string(),
            };
            log.lock().unwrap().push(format!("{line} {len}"));
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok\n"))))
        }
    })
    .await;
    (addr, seen)
}

/// Sends `raw` and reads until the sidecar closes (or 3 s pass).
async fn exchange(addr: std::net::SocketAddr, raw: &str) -> String {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(raw.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(3), tcp.read_to_end(&mut out)).await;
    String::from_utf8_lossy(&out).into_owned()
}

/// (case, raw request): each must be refused whole.
fn ambiguous() -> Vec<(&'static str, String)> {
    let smuggled = "GET /smuggled HTTP/1.1\r\nHost: svc\r\n\r\n";
    vec![
        (
            // 6.1: "A sender MUST NOT send a Content-Length header field in
            // any message that contains a Transfer-Encoding header field."
            "Content-Length with Transfer-Encoding",
            format!(
                "POST /a HTTP/1.1\r\nHost: svc\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            // 6.3 (5): differing Content-Length values are unrecoverable.
            "two different Content-Lengths",
            format!(
                "POST /a HTTP/1.1\r\nHost: svc\r\nContent-Length: 0\r\nContent-Length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
        ),
        (
            // 6.3 (4): chunked not the final coding of a request: 400.
            "chunked not the final transfer coding",
            format!(
                "POST /a HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            "unknown transfer coding",
            format!(
                "POST /a HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n{smuggled}"
            ),
        ),
        (
            // 5.1: "No whitespace is allowed between the field name and
            // colon ... MUST reject ... with a response status code of 400".
            "whitespace before the colon",
            format!(
                "POST /a HTTP/1.1\r\nHost: svc\r\nContent-Length : {}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
        ),
        (
            // 5.2: obs-fold in a request is rejected with 400 (or replaced;
            // we reject).
            "obsolete line folding",
            format!(
                "POST /a HTTP/1.1\r\nHost: svc\r\nX-Folded: a\r\n b\r\nContent-Length: {}\r\n\r\n{smuggled}",
                smuggled.len()
            ),
        ),
        (
            "invalid chunk size",
            format!(
                "POST /a HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n\r\n{smuggled}"
            ),
        ),
        (
            "Content-Length that is not a number",
            format!("POST /a HTTP/1.1\r\nHost: svc\r\nContent-Length: 1x\r\n\r\n{smuggled}"),
        ),
    ]
}

async fn assert_refused_whole(addr: std::net::SocketAddr, seen: &Mutex<Vec<String>>, who: &str) {
    for (case, raw) in ambiguous() {
        let before = seen.lock().unwrap().len();
        let reply = exchange(addr, &raw).await;
        let first = reply.lines().next().unwrap_or("");
        if case == "Content-Length with Transfer-Encoding" && first.starts_with("HTTP/1.1 200") {
            assert_eq!(
                reply.matches("HTTP/1.1 ").count(),
                1,
                "{who}, {case}: {reply:?}"
            );
            let after = seen.lock().unwrap()[before..].to_vec();
            assert_eq!(
                after,
                ["POST /a 0"],
                "{who}, {case}: framed by Transfer-Encoding alone"
            );
            continue;
        }
        // A bad chunk is only found once the head went upstream, as the
        // body streams: forwarding stops with 400 (the caller's fault, not
        // the upstream's), and the app sees at most the head with a body
        // that never completes.
        let bad_chunk = case == "invalid chunk size";
        assert!(
            first.starts_with("HTTP/1.1 400"),
            "{who}, {case}: want 400, got {first:?}"
        );
        assert_eq!(
            reply.matches("HTTP/1.1 ").count(),
            1,
            "{who}, {case}: one answer, then the connection closes: {reply:?}"
        );
        // Give an aborted upstream exchange time to show up at the app.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let after = seen.lock().unwrap()[before..].to_vec();
        let allowed: &[&str] = if bad_chunk {
            &["POST /a incomplete"]
        } else {
            &[]
        };
        assert!(
            after.iter().all(|r| allowed.contains(&r.as_str())),
            "{who}, {case}: the app was given {after:?}"
        );
    }
}

/// What the app saw, without the aborted head a bad chunk may leave.
fn completed(seen: &Mutex<Vec<String>>) -> Vec<String> {
    let seen = seen.lock().unwrap();
    assert!(!seen.iter().any(|r| r.contains("smuggled")), "{seen:?}");
    seen.iter()
        .filter(|r| !r.ends_with(" incomplete"))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_refused_by_the_client_sidecar() {
    let (app, seen) = recording_app().await;
    let c = chain(app, |_, _| {}).await;
    assert_refused_whole(c.a.outbound_addr, &seen, "client sidecar").await;
    // Well-framed requests still pass, chunked and with a length.
    let ok = exchange(
        c.a.outbound_addr,
        "POST /chunked HTTP/1.1\r\nHost: svc\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let ok = exchange(
        c.a.outbound_addr,
        "POST /length HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    let seen = completed(&seen);
    // `POST /a 0`: the Content-Length + Transfer-Encoding case, framed by
    // its (empty) chunked body; never `/smuggled`.
    assert_eq!(seen, ["POST /a 0", "POST /chunked 3", "POST /length 3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_refused_by_the_server_sidecar() {
    let (app, seen) = recording_app().await;
    let c = chain(app, |_, b| b.inbound.mtls = MtlsMode::Permissive).await;
    assert_refused_whole(c.b.inbound_addr, &seen, "server sidecar (plaintext)").await;
    let ok = exchange(
        c.b.inbound_addr,
        "POST /length HTTP/1.1\r\nHost: svc\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc",
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert_eq!(completed(&seen), ["POST /a 0", "POST /length 3"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ambiguous_framing_is_refused_over_the_http1_mesh_too() {
    let (app, seen) = recording_app().await;
    let a_opts = palisade_proxy::ctx::Options {
        mesh_h2: false,
        ..opts()
    };
    let c = chain_full(app, a_opts, opts(), |_, _| {}).await;
    assert_refused_whole(c.a.outbound_addr, &seen, "client sidecar, HTTP/1 mesh").await;
    assert_eq!(completed(&seen), ["POST /a 0"]);
}
