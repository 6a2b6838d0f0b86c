//! The HTTP/2 flow-control windows a sidecar advertises: the configured
//! fixed sizes, on the mesh connections it opens and on the HTTP/2
//! connections it accepts, and still after many small requests (hyper's
//! adaptive windows stayed small on a connection that first carried light
//! traffic, which halved a later large download).
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use palisade_proxy::ctx::Options;
use palisade_proxy::detect::MeshInner;
use palisade_proxy::h2_windows::H2Windows;
use palisade_proxy::tls::MeshTls;
use support::*;

/// A local send buffer larger than any window tested, so that the send
/// capacity h2 assigns is bounded by the peer's window alone (h2 caps it
/// at 400 KiB by default).
const UNCAPPED: usize = 64 << 20;

/// How long a window may take to show up as send capacity.
const SETTLE: Duration = Duration::from_secs(5);

/// Waits until `stream` holds at least `want` bytes of send capacity (it
/// reserved more), or [`SETTLE`] passes; returns the capacity it got.
async fn capacity_reaching(stream: &mut h2::SendStream<Bytes>, want: usize) -> usize {
    let _ = tokio::time::timeout(SETTLE, async {
        while stream.capacity() < want {
            match std::future::poll_fn(|cx| stream.poll_capacity(cx)).await {
                Some(Ok(_)) => {}
                _ => break,
            }
        }
    })
    .await;
    stream.capacity()
}

/// A stand-in for the peer sidecar: terminates mesh mTLS with the SVID in
/// `svid_dir` and answers every HTTP/2 request with the send capacity the
/// client's window gave its response stream (reserving more than `probe`).
async fn window_reporting_peer(svid_dir: &Path, probe: usize) -> SocketAddr {
    let tls = MeshTls::load_dir(svid_dir).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.2:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let (stream, _peer, _inner) = tls.accept(tcp).await.unwrap();
            let mut conn = h2::server::Builder::new()
                .max_send_buffer_size(UNCAPPED)
                .handshake(stream)
                .await
                .unwrap();
            tokio::spawn(async move {
                while let Some(Ok((_req, mut respond))) = conn.accept().await {
                    let mut body = respond
                        .send_response(http::Response::new(()), false)
                        .unwrap();
                    body.reserve_capacity(probe + 1);
                    let got = capacity_reaching(&mut body, probe).await;
                    body.send_data(Bytes::from(got.to_string()), true).unwrap();
                }
            });
        }
    });
    addr
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_connections_advertise_the_fixed_stream_window_even_after_light_traffic() {
    init_tracing();
    let ca = TestCa::new();
    let peer_svid = ca.svid_dir("b", &id("back", "server"));
    let window = H2Windows::default().stream as usize;
    let peer_addr = window_reporting_peer(&peer_svid, window).await;

    let mut a_cfg = config("front", "client", "127.0.0.1");
    a_cfg.peers.push(peer("127.0.0.2", "back", "server"));
    let a_path = ca.write_config("a.json", &a_cfg);
    let a_svid = ca.svid_dir("a", &id("front", "client"));
    let opts = Options {
        outbound_to: Some(peer_addr),
        ..opts()
    };
    let a = sidecar(&a_path, &a_svid, "127.0.0.1", opts);

    // One pooled mesh connection carries them all; each reports the
    // window its response stream was given.
    for i in 0..100 {
        let (status, _, body) = http_get(a.outbound_addr, "/", "back.svc").await;
        assert_eq!(status, 200, "request {i}");
        assert_eq!(body, window.to_string(), "request {i}");
    }
}

/// Opens two uploads on an HTTP/2 connection over `io` and checks the send
/// capacity the server's windows give them: the first may use a whole
/// stream window, and the second, while the first holds it, the rest of
/// the connection window.
async fn assert_upload_windows<IO>(io: IO, windows: H2Windows)
where
    IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (client, conn) = h2::client::Builder::new()
        .max_send_buffer_size(UNCAPPED)
        .handshake(io)
        .await
        .unwrap();
    tokio::spawn(conn);
    let upload = |client: &mut h2::client::SendRequest<Bytes>| {
        let req = http::Request::post("http://back.svc/upload")
            .body(())
            .unwrap();
        let (_resp, body) = client.send_request(req, false).unwrap();
        body
    };
    let mut client = client.ready().await.unwrap();
    let mut first = upload(&mut client);
    first.reserve_capacity(UNCAPPED / 2);
    let stream = windows.stream as usize;
    assert_eq!(capacity_reaching(&mut first, stream).await, stream);
    let mut client = client.ready().await.unwrap();
    let mut second = upload(&mut client);
    second.reserve_capacity(UNCAPPED / 2);
    let rest = (windows.connection - windows.stream) as usize;
    assert_eq!(capacity_reaching(&mut second, rest).await, rest);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn both_listeners_advertise_the_configured_windows() {
    let app = http_app("app").await;
    let windows = H2Windows::new(1 << 20, 3 << 19).unwrap();
    let with_windows = || Options {
        h2_windows: windows,
        ..opts()
    };
    let c = chain_full(app, with_windows(), with_windows(), |_, _| {}).await;

    // The outbound listener, as the app's own HTTP/2 client sees it.
    let tcp = tokio::net::TcpStream::connect(c.a.outbound_addr)
        .await
        .unwrap();
    assert_upload_windows(tcp, windows).await;

    // The inbound listener, as a peer sidecar sees it through mesh mTLS.
    let a_tls = MeshTls::load_dir(&c.ca.svid_dir("a2", &id("front", "client"))).unwrap();
    let tcp = tokio::net::TcpStream::connect(c.b.inbound_addr)
        .await
        .unwrap();
    let mesh = a_tls
        .connect(tcp, &id("back", "server"), MeshInner::H2, None)
        .await
        .unwrap();
    assert_upload_windows(mesh, windows).await;
}
