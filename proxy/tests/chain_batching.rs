//! The batched HTTP/2 link between two sidecars (gathered writes, large
//! reads under TLS) and the first-frame read of small bodies: many
//! concurrent requests of mixed sizes arrive whole and in order, and a
//! response whose body comes late still shows its head at once.
mod support;

use std::convert::Infallible;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use support::*;

/// `/bytes/N`: N bytes (a pattern from the path) with Content-Length.
/// `/late-length`: head at once, its 5-byte body (Content-Length) after
/// 300 ms. `/late-chunked`: head at once, a chunked body after 600 ms.
/// Any other path: the request body echoed.
async fn sized_app() -> std::net::SocketAddr {
    serve_http(|req: hyper::Request<Incoming>| async move {
        let path = req.uri().path().to_string();
        type Body = http_body_util::combinators::BoxBody<Bytes, Infallible>;
        let late = |delay: Duration, chunk: &'static [u8]| -> Body {
            let stream = futures::stream::once(async move {
                tokio::time::sleep(delay).await;
                Ok::<_, Infallible>(Frame::data(Bytes::from_static(chunk)))
            });
            BodyExt::boxed(StreamBody::new(stream))
        };
        let resp: hyper::Response<Body> = if let Some(n) = path.strip_prefix("/bytes/") {
            let n: usize = n.parse().unwrap_or(0);
            let body: Vec<u8> = (0..n).map(|i| (i % 251) as u8).collect();
            hyper::Response::new(BodyExt::boxed(Full::new(Bytes::from(body))))
        } else if path == "/late-length" {
            hyper::Response::builder()
                .header("content-length", "5")
                .body(late(Duration::from_millis(300), b"late!"))
                .unwrap()
        } else if path == "/late-chunked" {
            hyper::Response::new(late(Duration::from_millis(600), b"chunk"))
        } else {
            let body = req.into_body().collect().await.unwrap().to_bytes();
            hyper::Response::new(BodyExt::boxed(Full::new(body)))
        };
        Ok::<_, Infallible>(resp)
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_streams_of_mixed_sizes_arrive_whole() {
    let app = sized_app().await;
    let c = chain(app, |_, _| {}).await;
    let sizes = [
        0usize, 1, 100, 1024, 4095, 16_384, 70_000, 300_000, 1_100_000,
    ];
    let mut tasks = Vec::new();
    for client in 0..6 {
        let sender = h2c_client::<Full<Bytes>>(c.a.outbound_addr).await;
        for (i, &n) in sizes.iter().enumerate() {
            for rep in 0..4 {
                let mut sender = sender.clone();
                tasks.push(tokio::spawn(async move {
                    // Alternate downloads and uploads (echo) of the size.
                    let req = if (i + rep + client) % 2 == 0 {
                        hyper::Request::get(format!("http://svc/bytes/{n}"))
                            .body(Full::new(Bytes::new()))
                            .unwrap()
                    } else {
                        let body: Vec<u8> = (0..n).map(|k| (k % 251) as u8).collect();
                        hyper::Request::post("http://svc/echo")
                            .body(Full::new(Bytes::from(body)))
                            .unwrap()
                    };
                    let resp = sender.send_request(req).await.unwrap();
                    assert_eq!(resp.status(), 200);
                    let got = resp.into_body().collect().await.unwrap().to_bytes();
                    assert_eq!(got.len(), n, "size {n}");
                    assert!(
                        got.iter().enumerate().all(|(k, b)| *b == (k % 251) as u8),
                        "bytes of a {n}-byte body out of order"
                    );
                }));
            }
        }
    }
    for t in tasks {
        tokio::time::timeout(Duration::from_secs(30), t)
            .await
            .expect("request finished")
            .unwrap();
    }
    let m = metrics(&c.a).await;
    assert_eq!(
        metric_value(&m, "palisade_tls_handshakes_total{direction=\"Outbound\"}"),
        1.0,
        "all streams share the pooled connection: {m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_late_body_of_known_length_is_waited_for_and_arrives() {
    let app = sized_app().await;
    let c = chain(app, |_, _| {}).await;
    let (status, _, body) = http_get(c.a.outbound_addr, "/late-length", "svc").await;
    assert_eq!(status, 200);
    assert_eq!(body, "late!");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streaming_response_shows_its_head_before_its_body() {
    let app = sized_app().await;
    let c = chain(app, |_, _| {}).await;
    let mut sender = h2c_client::<Full<Bytes>>(c.a.outbound_addr).await;
    let started = Instant::now();
    let resp = sender
        .send_request(
            hyper::Request::get("http://svc/late-chunked")
                .body(Full::new(Bytes::new()))
                .unwrap(),
        )
        .await
        .unwrap();
    let head_after = started.elapsed();
    assert_eq!(resp.status(), 200);
    assert!(
        head_after < Duration::from_millis(450),
        "the head of a streaming response waited for its body: {head_after:?}"
    );
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], b"chunk");
    assert!(started.elapsed() >= Duration::from_millis(550));
}
