//! Request and response bodies on the pooled HTTP/2 link between two
//! sidecars: uploads larger than the stream window, chunked uploads, an
//! app that answers before reading the upload, and a caller whose body
//! breaks off, which costs its own stream and nothing else.
mod support;

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper_util::rt::TokioIo;
use support::*;
use tokio::io::AsyncWriteExt;

/// The client sidecar opened one mTLS connection to its peer: everything
/// went over the pooled link.
async fn assert_one_mesh_handshake(proxy: &palisade_proxy::app::Proxy) {
    let m = metrics(proxy).await;
    assert_eq!(
        metric_value(&m, "palisade_tls_handshakes_total{direction=\"Outbound\"}"),
        1.0,
        "{m}"
    );
}

/// `n` bytes of a pattern no run of the link could produce by accident.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ (i / 251) as u8).collect()
}

/// An app answering with the request body it read, as it was read.
async fn body_echo_app() -> std::net::SocketAddr {
    serve_http(|req: hyper::Request<Incoming>| async move {
        let te = req
            .headers()
            .get("transfer-encoding")
            .map(|v| v.to_str().unwrap_or("?").to_string());
        let body = req.into_body().collect().await.map(|b| b.to_bytes());
        let mut resp = match body {
            Ok(b) => hyper::Response::new(Full::new(b)),
            Err(_) => {
                let mut r = hyper::Response::new(Full::new(Bytes::from_static(b"broken")));
                *r.status_mut() = hyper::StatusCode::BAD_REQUEST;
                r
            }
        };
        if let Some(te) = te {
            resp.headers_mut()
                .insert("x-request-transfer-encoding", te.parse().unwrap());
        }
        Ok::<_, Infallible>(resp)
    })
    .await
}

/// Sends `body` as a POST to `addr` over HTTP/1.1; `chunked` streams it in
/// pieces without a length.
async fn post(addr: std::net::SocketAddr, body: Vec<u8>, chunked: bool) -> (u16, Bytes) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::post("/upload").header("host", "svc");
    let resp = if chunked {
        let pieces: Vec<Result<Frame<Bytes>, Infallible>> = body
            .chunks(100_000)
            .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
            .collect();
        let body = StreamBody::new(futures::stream::iter(pieces));
        sender
            .send_request(req.body(BodyExt::boxed(body)).unwrap())
            .await
    } else {
        let body = Full::new(Bytes::from(body)).map_err(|e: Infallible| match e {});
        sender
            .send_request(req.body(BodyExt::boxed(body)).unwrap())
            .await
    };
    let resp = resp.unwrap();
    let status = resp.status().as_u16();
    let bytes = tokio::time::timeout(Duration::from_secs(20), resp.into_body().collect())
        .await
        .expect("response body timed out")
        .unwrap()
        .to_bytes();
    (status, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_larger_than_the_stream_window_cross_the_mesh_intact() {
    let app = body_echo_app().await;
    let c = chain(app, |_, _| {}).await;
    // The mesh link's stream window is 4 MiB: these need WINDOW_UPDATEs.
    let sent = pattern(9 * 1024 * 1024 + 7);
    for chunked in [false, true] {
        let (status, got) = post(c.a.outbound_addr, sent.clone(), chunked).await;
        assert_eq!(status, 200, "chunked={chunked}");
        assert_eq!(got.len(), sent.len(), "chunked={chunked}");
        assert!(
            got[..] == sent[..],
            "chunked={chunked}: the body changed on the way"
        );
    }
    // Several at once share the one pooled link.
    let uploads = (0..4).map(|i| {
        let body = pattern(1024 * 1024 + i);
        let addr = c.a.outbound_addr;
        tokio::spawn(async move { (post(addr, body.clone(), i % 2 == 0).await, body) })
    });
    for u in uploads {
        let ((status, got), sent) = u.await.unwrap();
        assert_eq!(status, 200);
        assert!(got[..] == sent[..]);
    }
    assert_one_mesh_handshake(&c.a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_answer_before_the_upload_is_read_reaches_the_caller() {
    let app = serve_http(|_req: hyper::Request<Incoming>| async move {
        let mut r = hyper::Response::new(Full::new(Bytes::from_static(b"too large\n")));
        *r.status_mut() = hyper::StatusCode::PAYLOAD_TOO_LARGE;
        Ok::<_, Infallible>(r)
    })
    .await;
    let c = chain(app, |_, _| {}).await;
    for chunked in [false, true] {
        let (status, body) = post(c.a.outbound_addr, pattern(6 * 1024 * 1024), chunked).await;
        assert_eq!(status, 413, "chunked={chunked}");
        assert_eq!(&body[..], b"too large\n");
    }
    // The link is still good for the next request.
    let (s, _, _) = http_get(c.a.outbound_addr, "/after", "svc").await;
    assert_eq!(s, 413);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_body_that_breaks_off_costs_only_its_own_stream() {
    let app = body_echo_app().await;
    let c = chain(app, |_, _| {}).await;
    let (s, _, _) = http_get(c.a.outbound_addr, "/before", "svc").await;
    assert_eq!(s, 200);
    for _ in 0..3 {
        let mut tcp = tokio::net::TcpStream::connect(c.a.outbound_addr)
            .await
            .unwrap();
        tcp.write_all(b"POST /cut HTTP/1.1\r\nhost: svc\r\ncontent-length: 100000\r\n\r\n")
            .await
            .unwrap();
        tcp.write_all(&[b'x'; 10_000]).await.unwrap();
        tokio::time::sleep(Duration::from_millis(50)).await;
        drop(tcp);
    }
    // Requests on the same pooled link still go through, and no second
    // handshake was needed.
    for i in 0..5 {
        let (status, got) = post(c.a.outbound_addr, pattern(1000 + i), false).await;
        assert_eq!(status, 200);
        assert_eq!(got.len(), 1000 + i);
    }
    assert_one_mesh_handshake(&c.a).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_response_body_streams_to_the_caller_before_it_has_ended() {
    // Each piece is sent only after the caller has seen the previous one.
    let (tx, rx) = tokio::sync::mpsc::channel::<Bytes>(1);
    let rx = std::sync::Arc::new(tokio::sync::Mutex::new(Some(rx)));
    let app = serve_http(move |_req: hyper::Request<Incoming>| {
        let rx = rx.clone();
        async move {
            let rx = rx.lock().await.take().unwrap();
            let stream = futures::stream::unfold(rx, |mut rx| async move {
                rx.recv()
                    .await
                    .map(|b| (Ok::<_, Infallible>(Frame::data(b)), rx))
            });
            Ok::<_, Infallible>(hyper::Response::new(StreamBody::new(stream)))
        }
    })
    .await;
    let c = chain(app, |_, _| {}).await;
    let tcp = tokio::net::TcpStream::connect(c.a.outbound_addr)
        .await
        .unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = hyper::Request::get("/stream")
        .header("host", "svc")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let mut body = sender.send_request(req).await.unwrap().into_body();
    for i in 0..3 {
        let piece = Bytes::from(format!("piece {i}\n"));
        tx.send(piece.clone()).await.unwrap();
        let frame = tokio::time::timeout(Duration::from_secs(5), body.frame())
            .await
            .expect("a piece was held back")
            .unwrap()
            .unwrap();
        assert_eq!(frame.into_data().unwrap(), piece);
    }
    drop(tx);
    let rest = body.collect().await.unwrap().to_bytes();
    assert!(rest.is_empty());
}
