//! End-to-end cost of one HTTP request through two in-process sidecars
//! (client -> outbound -> mTLS -> inbound with an L7 ALLOW policy -> app),
//! keep-alive and a new client connection per request. Both sidecars share
//! one runtime here, so the figure is the whole chain's latency, not the
//! per-hop CPU that `benches/mesh.sh` reports.
use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::{BodyExt, Empty, Full};
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_api::*;
use palisade_identity::{CaOptions, CertificateAuthority, SpiffeId, TrustDomain};
use palisade_proxy::app::{Proxy, Setup};
use palisade_proxy::ctx::Options;

fn id(sa: &str) -> String {
    format!("spiffe://cluster.local/ns/default/sa/{sa}")
}

fn config(sa: &str, ip: &str, peer_ip: &str, peer_sa: &str) -> ProxyConfig {
    ProxyConfig {
        version: String::new(),
        mesh: MeshSettings {
            trust_domain: "cluster.local".into(),
            trust_domain_aliases: vec![],
            path_normalization: PathNormalization::MergeSlashes,
            cluster_domain: palisade_api::sni::DEFAULT_CLUSTER_DOMAIN.into(),
            federated_bundles: Default::default(),
            trust_bundle: String::new(),
            svid_signer: String::new(),
        },
        workload: Workload {
            namespace: "default".into(),
            name: sa.into(),
            service_account: sa.into(),
            identity: id(sa),
            ips: vec![ip.parse().unwrap()],
            ports: vec![],
            opaque_ports: vec![],
        },
        inbound: Inbound {
            mtls: MtlsMode::Strict,
            port_mtls: BTreeMap::new(),
            ingress: DirectionPolicy::default(),
        },
        outbound: Outbound {
            egress: DirectionPolicy::default(),
        },
        peers: vec![Peer {
            ip: peer_ip.parse().unwrap(),
            workload: format!("default/{peer_sa}"),
            identity: id(peer_sa),
            mtls: MtlsMode::Strict,
            port_mtls: BTreeMap::new(),
            opaque_ports: vec![],
        }],
        services: vec![],
        authorization: vec![AuthorizationPolicy {
            name: "default/allow-client".into(),
            action: AuthzAction::Allow,
            dry_run: false,
            rules: vec![AuthzRule {
                from: vec![AuthzSource {
                    principals: vec!["cluster.local/ns/default/sa/client".into()],
                    ..Default::default()
                }],
                to: vec![AuthzOperation {
                    methods: vec!["GET".into()],
                    ..Default::default()
                }],
                when: vec![],
            }],
        }],
    }
}

struct Env {
    _dir: tempfile::TempDir,
    _a: Proxy,
    _b: Proxy,
    outbound: SocketAddr,
}

async fn setup() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::create(
        &TrustDomain::new("cluster.local").unwrap(),
        &CaOptions::default(),
    )
    .unwrap();
    let svid = |name: &str, sa: &str| {
        let s = ca
            .issue(
                &SpiffeId::parse(&id(sa)).unwrap(),
                Duration::from_secs(3600),
            )
            .unwrap();
        let d = dir.path().join(name);
        palisade_identity::credentials::write_svid_dir(&d, &s.chain, s.key.as_ref(), ca.bundle())
            .unwrap();
        d
    };
    let app = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app_addr = app.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = app.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(|_req| async {
                    Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(
                        &[b'x'; 1024],
                    ))))
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    let write = |name: &str, cfg: &ProxyConfig| {
        let p = dir.path().join(name);
        std::fs::write(&p, serde_json::to_string(cfg).unwrap()).unwrap();
        p
    };
    let h = tokio::runtime::Handle::current();
    let start = |cfg, svid: std::path::PathBuf, ip: &str, opts: Options| {
        let ip: std::net::IpAddr = ip.parse().unwrap();
        Proxy::start(
            Setup {
                config: cfg,
                svid_dir: svid,
                outbound_listen: SocketAddr::new(ip, 0),
                inbound_listen: SocketAddr::new(ip, 0),
                admin_listen: SocketAddr::new(ip, 0),
                config_poll: Duration::from_secs(3600),
                opts,
            },
            &h,
            &h,
        )
        .unwrap()
    };
    let b = start(
        write(
            "b.json",
            &config("server", "127.0.0.2", "127.0.0.1", "client"),
        ),
        svid("b", "server"),
        "127.0.0.2",
        Options {
            inbound_app_port: Some(app_addr.port()),
            ..Options::default()
        },
    );
    let a = start(
        write(
            "a.json",
            &config("client", "198.18.0.1", "127.0.0.2", "server"),
        ),
        svid("a", "client"),
        "127.0.0.1",
        Options {
            outbound_to: Some(b.inbound_addr),
            ..Options::default()
        },
    );
    let outbound = a.outbound_addr;
    Env {
        _dir: dir,
        _a: a,
        _b: b,
        outbound,
    }
}

async fn one_request(sender: &mut hyper::client::conn::http1::SendRequest<Empty<Bytes>>) {
    let req = hyper::Request::builder()
        .uri("/bench")
        .header("host", "server.default")
        .body(Empty::new())
        .unwrap();
    sender.ready().await.unwrap();
    let resp = sender.send_request(req).await.unwrap();
    assert_eq!(resp.status(), 200);
    let _ = resp.into_body().collect().await.unwrap();
}

async fn connect(addr: SocketAddr) -> hyper::client::conn::http1::SendRequest<Empty<Bytes>> {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    sender
}

fn bench(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let env = rt.block_on(setup());
    let mut sender = rt.block_on(connect(env.outbound));
    let _ = TokioExecutor::new();
    c.bench_function("chain_keepalive_request", |b| {
        b.iter(|| rt.block_on(one_request(&mut sender)))
    });
    c.bench_function("chain_new_connection_per_request", |b| {
        b.iter(|| {
            rt.block_on(async {
                let mut s = connect(env.outbound).await;
                one_request(&mut s).await;
            })
        })
    });
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(30).measurement_time(Duration::from_secs(5));
    targets = bench
}
criterion_main!(benches);
