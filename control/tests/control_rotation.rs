//! Rotation under load: SVIDs with a 4 s lifetime are renewed at half-life by
//! the sidecar control client while mTLS requests flow between two workloads
//! through rustls configs that read the rotating `CredentialStore`s. Every
//! request must succeed, and both sides must have rotated several times.
mod control_support;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use control_support::*;
use palisade_identity::SpiffeId;
use palisade_proxy::control_client;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn svids_rotate_under_load_with_zero_failed_requests() {
    let fx = Fixture::new();
    let mut opts = fx.options();
    opts.svid_ttl = Duration::from_secs(4);
    let srv = fx.start_with(opts).await;
    let web = control_client::start(fx.client_options(srv.addr, "shop/web-0"))
        .await
        .unwrap();
    let api = control_client::start(fx.client_options(srv.addr, "shop/api-0"))
        .await
        .unwrap();

    // web serves mTLS with its rotating store; api calls it with its own.
    let server_cfg = Arc::new(palisade_identity::server_config(&web.credentials).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let web_addr = listener.local_addr().unwrap();
    let acceptor = TlsAcceptor::from(server_cfg);
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4];
                if tls.read_exact(&mut buf).await.is_ok() {
                    let _ = tls.write_all(b"pong").await;
                    let _ = tls.shutdown().await;
                }
            });
        }
    });
    let client_cfg = Arc::new(
        palisade_identity::client_config(&api.credentials, SpiffeId::parse(&id_of("web")).unwrap())
            .unwrap(),
    );
    let connector = TlsConnector::from(client_cfg);
    let ok = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(9);
    let mut workers = Vec::new();
    for _ in 0..4 {
        let (connector, ok, failed) = (connector.clone(), ok.clone(), failed.clone());
        workers.push(tokio::spawn(async move {
            while Instant::now() < deadline {
                let result = async {
                    let tcp = tokio::net::TcpStream::connect(web_addr).await?;
                    let name = rustls::pki_types::ServerName::IpAddress(web_addr.ip().into());
                    let mut tls = connector.connect(name, tcp).await?;
                    tls.write_all(b"ping").await?;
                    let mut buf = [0u8; 4];
                    tls.read_exact(&mut buf).await?;
                    Ok::<_, std::io::Error>(buf)
                }
                .await;
                match result {
                    Ok(b) if &b == b"pong" => ok.fetch_add(1, Ordering::Relaxed),
                    Ok(_) | Err(_) => failed.fetch_add(1, Ordering::Relaxed),
                };
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    for w in workers {
        w.await.unwrap();
    }
    let (ok, failed) = (ok.load(Ordering::Relaxed), failed.load(Ordering::Relaxed));
    let (wr, ar) = (web.status.borrow().renewals, api.status.borrow().renewals);
    eprintln!("requests ok={ok} failed={failed}; renewals web={wr} api={ar}");
    assert_eq!(failed, 0, "no request may fail during rotation");
    assert!(ok > 100, "load must actually flow: {ok}");
    // 9 s with a 4 s TTL renewed every ~2 s: at least 3 renewals each.
    assert!(wr >= 3 && ar >= 3, "web={wr} api={ar}");
    // The stores hold certificates that are still valid now.
    let now = palisade_control::server::pki::now_unix();
    assert!(web.status.borrow().cert_expires_unix > now);
    assert!(api.status.borrow().cert_expires_unix > now);
    srv.shutdown().await;
}
