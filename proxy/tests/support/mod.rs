//! Loopback test harness: a throwaway mesh CA, ProxyConfig builders, test
//! apps (HTTP echo, TCP echo, server-first greeter) and in-process sidecars
//! in explicit mode (`--outbound-to`, `--inbound-app-port`).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_api::*;
use palisade_identity::{CaOptions, CertificateAuthority, SpiffeId, TrustDomain};
use palisade_proxy::app::{Proxy, Setup};
use palisade_proxy::ctx::Options;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

pub const TD: &str = "cluster.local";

pub fn id(ns: &str, sa: &str) -> String {
    format!("spiffe://{TD}/ns/{ns}/sa/{sa}")
}

pub fn init_tracing() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(
                tracing_subscriber::EnvFilter::try_from_default_env()
                    .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
            )
            .with_test_writer()
            .try_init();
    });
}

// === CA ===

pub struct TestCa {
    ca: CertificateAuthority,
    pub dir: tempfile::TempDir,
}

impl TestCa {
    pub fn new() -> TestCa {
        TestCa::in_trust_domain(TD)
    }

    /// A CA of another trust domain (federation tests).
    pub fn in_trust_domain(td: &str) -> TestCa {
        let td = TrustDomain::new(td).unwrap();
        let ca = CertificateAuthority::create(&td, &CaOptions::default()).unwrap();
        let dir = tempfile::Builder::new()
            .prefix("palisade-proxy-test-")
            .tempdir()
            .unwrap();
        TestCa { ca, dir }
    }

    pub fn svid_dir(&self, name: &str, spiffe_id: &str) -> PathBuf {
        let sid = SpiffeId::parse(spiffe_id).unwrap();
        let svid = self.ca.issue(&sid, Duration::from_secs(3600)).unwrap();
        let dir = self.dir.path().join(name);
        palisade_identity::credentials::write_svid_dir(
            &dir,
            &svid.chain,
            svid.key.as_ref(),
            self.ca.bundle(),
        )
        .unwrap();
        dir
    }

    /// The CA's trust bundle as PEM.
    pub fn bundle_pem(&self) -> String {
        self.ca.bundle().to_pem()
    }

    pub fn write_config(&self, name: &str, cfg: &ProxyConfig) -> PathBuf {
        let path = self.dir.path().join(name);
        write_config(&path, cfg);
        path
    }
}

pub fn write_config(path: &Path, cfg: &ProxyConfig) {
    // Write-then-rename so the watcher never reads half a file.
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, serde_json::to_string_pretty(cfg).unwrap()).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

// === configs ===

pub fn config(ns: &str, name: &str, ip: &str) -> ProxyConfig {
    ProxyConfig {
        version: String::new(),
        mesh: MeshSettings {
            trust_domain: TD.into(),
            trust_domain_aliases: vec![],
            path_normalization: PathNormalization::MergeSlashes,
            cluster_domain: palisade_api::sni::DEFAULT_CLUSTER_DOMAIN.into(),
            federated_bundles: Default::default(),
            trust_bundle: String::new(),
            svid_signer: String::new(),
        },
        workload: Workload {
            namespace: ns.into(),
            name: name.into(),
            service_account: name.into(),
            identity: id(ns, name),
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
        peers: vec![],
        services: vec![],
        authorization: vec![],
    }
}

pub fn peer(ip: &str, ns: &str, name: &str) -> Peer {
    Peer {
        ip: ip.parse().unwrap(),
        workload: format!("{ns}/{name}"),
        identity: id(ns, name),
        mtls: MtlsMode::Strict,
        port_mtls: BTreeMap::new(),
        opaque_ports: vec![],
    }
}

/// An isolated direction allowing only `nets` (any port).
pub fn only_from(policy: &str, nets: &[&str]) -> DirectionPolicy {
    DirectionPolicy {
        isolated: true,
        policies: vec![policy.into()],
        rules: if nets.is_empty() {
            vec![]
        } else {
            vec![L4Rule {
                policy: policy.into(),
                rule: 0,
                peers: Some(vec![L4Peer {
                    description: format!("ipBlock {nets:?}"),
                    nets: nets.iter().map(|n| n.parse().unwrap()).collect(),
                    except: vec![],
                }]),
                ports: None,
            }]
        },
    }
}

pub fn authz(name: &str, action: AuthzAction, rules: Vec<AuthzRule>) -> AuthorizationPolicy {
    AuthorizationPolicy {
        name: name.into(),
        action,
        dry_run: false,
        rules,
    }
}

pub fn paths_rule(paths: &[&str]) -> AuthzRule {
    AuthzRule {
        from: vec![],
        to: vec![AuthzOperation {
            paths: paths.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        }],
        when: vec![],
    }
}

pub fn principals_rule(principals: &[&str]) -> AuthzRule {
    AuthzRule {
        from: vec![AuthzSource {
            principals: principals.iter().map(|p| p.to_string()).collect(),
            ..Default::default()
        }],
        to: vec![],
        when: vec![],
    }
}

// === apps ===

/// Serves `handler` as an HTTP/1 + h2c app (upgrades allowed) on a
/// loopback port; one task per connection.
pub async fn serve_http<F, Fut, B>(handler: F) -> SocketAddr
where
    F: Fn(hyper::Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<hyper::Response<B>, Infallible>> + Send + 'static,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let svc = service_fn(handler.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection_with_upgrades(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

/// An HTTP/1 + h2c app answering `app=<name> method=.. path=.. host=.. peer=..`.
pub async fn http_app(name: &'static str) -> SocketAddr {
    serve_http(move |req: hyper::Request<Incoming>| async move {
        let host = req
            .headers()
            .get("host")
            .and_then(|h| h.to_str().ok())
            .unwrap_or("-")
            .to_string();
        let peer = req
            .headers()
            .get_all("x-palisade-peer-identity")
            .iter()
            .map(|v| v.to_str().unwrap_or("?").to_string())
            .collect::<Vec<_>>()
            .join(",");
        let line = format!(
            "app={name} method={} path={} host={host} peer={peer}\n",
            req.method(),
            req.uri().path_and_query().map(|p| p.as_str()).unwrap_or(""),
        );
        let body = req
            .into_body()
            .collect()
            .await
            .map(|b| b.to_bytes())
            .unwrap_or_default();
        let mut out = line.into_bytes();
        out.extend_from_slice(&body);
        Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from(out))))
    })
    .await
}

/// An app that counts the requests it receives and answers each after
/// `delay`.
pub async fn counting_app(delay: Duration) -> (SocketAddr, Arc<AtomicUsize>) {
    let seen = Arc::new(AtomicUsize::new(0));
    let counter = seen.clone();
    let addr = serve_http(move |_req: hyper::Request<hyper::body::Incoming>| {
        let counter = counter.clone();
        async move {
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::time::sleep(delay).await;
            Ok::<_, Infallible>(hyper::Response::new(Full::new(Bytes::from_static(b"ok"))))
        }
    })
    .await;
    (addr, seen)
}

/// A TCP echo app (client-first, not HTTP).
pub async fn echo_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

/// A server-first app: greets on accept, then echoes.
pub async fn greeter_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                if tcp.write_all(b"220 palisade-test ready\r\n").await.is_err() {
                    return;
                }
                let (mut r, mut w) = tcp.split();
                let _ = tokio::io::copy(&mut r, &mut w).await;
            });
        }
    });
    addr
}

// === sidecars ===

/// A child process (the real binary) killed and reaped when dropped, also
/// when a test fails.
pub struct Running(pub std::process::Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A port free on `ip` just now (bound and released).
pub fn free_port(ip: &str) -> u16 {
    std::net::TcpListener::bind((ip, 0))
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub fn opts() -> Options {
    Options {
        detect_timeout: Duration::from_secs(2),
        connect_timeout: Duration::from_secs(2),
        drain_deadline: Duration::from_secs(1),
        ..Options::default()
    }
}

/// Starts an in-process sidecar on `ip` (ephemeral ports).
pub fn sidecar(config: &Path, svid_dir: &Path, ip: &str, opts: Options) -> Proxy {
    let ip: IpAddr = ip.parse().unwrap();
    sidecar_at(config, svid_dir, SocketAddr::new(ip, 0), opts)
}

/// Starts an in-process sidecar whose inbound listener is `inbound` (a
/// restarted sidecar takes its predecessor's address); the other listeners
/// get ephemeral ports on the same IP.
pub fn sidecar_at(config: &Path, svid_dir: &Path, inbound: SocketAddr, opts: Options) -> Proxy {
    let ip = inbound.ip();
    let setup = Setup {
        config: config.to_path_buf(),
        svid_dir: svid_dir.to_path_buf(),
        outbound_listen: SocketAddr::new(ip, 0),
        inbound_listen: inbound,
        admin_listen: SocketAddr::new(ip, 0),
        config_poll: Duration::from_millis(100),
        opts,
    };
    let h = tokio::runtime::Handle::current();
    Proxy::start(setup, &h, &h).unwrap()
}

// === clients ===

/// One HTTP/1.1 request on a new connection; returns (status, headers, body).
pub async fn http_get(addr: SocketAddr, path: &str, host: &str) -> (u16, http::HeaderMap, String) {
    http_request(addr, "GET", path, host, &[]).await
}

pub async fn http_request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    host: &str,
    headers: &[(&str, &str)],
) -> (u16, http::HeaderMap, String) {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(path)
        .header("host", host);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req.body(http_body_util::Empty::<Bytes>::new()).unwrap();
    let resp = tokio::time::timeout(Duration::from_secs(10), sender.send_request(req))
        .await
        .expect("request timed out")
        .unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    (status, headers, String::from_utf8_lossy(&body).into_owned())
}

/// An HTTP/2 prior-knowledge (h2c) client connection to `addr`.
pub async fn h2c_client<B>(addr: SocketAddr) -> hyper::client::conn::http2::SendRequest<B>
where
    B: hyper::body::Body + Send + Unpin + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    sender
}

/// Sends raw bytes and reads the reply until EOF or `timeout`.
pub async fn raw_exchange(addr: SocketAddr, send: &[u8], timeout: Duration) -> Vec<u8> {
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(send).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(timeout, tcp.read_to_end(&mut out)).await;
    out
}

/// Reads the Prometheus text from a sidecar's admin server.
pub async fn metrics(proxy: &Proxy) -> String {
    http_get(proxy.admin_addr, "/metrics", "admin").await.2
}

/// Reads the metrics once the line starting with `prefix` reaches `at_least`,
/// or after 5 s. Counters a connection task updates when it ends (its
/// outcome) may land after the peer already saw the connection fail.
pub async fn metrics_once(proxy: &Proxy, prefix: &str, at_least: f64) -> String {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let text = metrics(proxy).await;
        if metric_value(&text, prefix) >= at_least || std::time::Instant::now() >= deadline {
            return text;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The value of the metric line starting with `prefix` (0 when absent).
pub fn metric_value(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

/// Client sidecar A (127.0.0.1) -> server sidecar B (127.0.0.2) -> app.
pub struct Chain {
    pub ca: TestCa,
    pub a: Proxy,
    pub b: Proxy,
    pub app: SocketAddr,
    pub a_config: ProxyConfig,
    pub b_config: ProxyConfig,
    pub a_config_path: PathBuf,
    pub b_config_path: PathBuf,
}

/// Builds the two-hop chain; `customize` edits (A's, B's) configs, which
/// get each other in their peer tables first.
pub async fn chain(
    app: SocketAddr,
    customize: impl FnOnce(&mut ProxyConfig, &mut ProxyConfig),
) -> Chain {
    chain_with(app, opts(), customize).await
}

pub async fn chain_with(
    app: SocketAddr,
    b_opts: Options,
    customize: impl FnOnce(&mut ProxyConfig, &mut ProxyConfig),
) -> Chain {
    chain_full(app, opts(), b_opts, customize).await
}

pub async fn chain_full(
    app: SocketAddr,
    a_opts: Options,
    b_opts: Options,
    customize: impl FnOnce(&mut ProxyConfig, &mut ProxyConfig),
) -> Chain {
    init_tracing();
    let ca = TestCa::new();
    let mut a_cfg = config("front", "client", "127.0.0.1");
    let mut b_cfg = config("back", "server", "127.0.0.2");
    a_cfg.peers.push(peer("127.0.0.2", "back", "server"));
    b_cfg.peers.push(peer("127.0.0.1", "front", "client"));
    customize(&mut a_cfg, &mut b_cfg);

    let b_path = ca.write_config("b.json", &b_cfg);
    let b_svid = ca.svid_dir("b", &id("back", "server"));
    let b = sidecar(
        &b_path,
        &b_svid,
        "127.0.0.2",
        Options {
            inbound_app_port: Some(app.port()),
            ..b_opts
        },
    );
    let a_path = ca.write_config("a.json", &a_cfg);
    let a_svid = ca.svid_dir("a", &id("front", "client"));
    let a = sidecar(
        &a_path,
        &a_svid,
        "127.0.0.1",
        Options {
            outbound_to: Some(b.inbound_addr),
            ..a_opts
        },
    );
    Chain {
        ca,
        a,
        b,
        app,
        a_config: a_cfg,
        b_config: b_cfg,
        a_config_path: a_path,
        b_config_path: b_path,
    }
}

/// An app that answers `Upgrade: websocket` with 101 and then echoes raw
/// bytes on the upgraded connection.
pub async fn upgrade_app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = service_fn(|mut req: hyper::Request<Incoming>| async move {
                    let on = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        if let Ok(up) = on.await {
                            let mut io = TokioIo::new(up);
                            let mut buf = [0u8; 64];
                            while let Ok(n) = io.read(&mut buf).await {
                                if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                    break;
                                }
                            }
                        }
                    });
                    let resp = hyper::Response::builder()
                        .status(101)
                        .header("connection", "upgrade")
                        .header("upgrade", "websocket")
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    Ok::<_, Infallible>(resp)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// Sends an Upgrade request, checks the 101, then echoes `payload` through.
pub async fn upgrade_roundtrip(addr: SocketAddr, payload: &[u8]) -> Result<Vec<u8>, String> {
    let mut tcp = tokio::net::TcpStream::connect(addr)
        .await
        .map_err(|e| e.to_string())?;
    tcp.write_all(
        b"GET /ws HTTP/1.1\r\nHost: ws.back\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .map_err(|e| e.to_string())?;
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = tokio::time::timeout(Duration::from_secs(5), tcp.read(&mut byte))
            .await
            .map_err(|_| "timeout reading the 101".to_string())?
            .map_err(|e| e.to_string())?;
        if n == 0 {
            return Err(format!("closed after {:?}", String::from_utf8_lossy(&head)));
        }
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head).to_string();
    if !head.starts_with("HTTP/1.1 101") {
        return Err(head);
    }
    tcp.write_all(payload).await.map_err(|e| e.to_string())?;
    let mut out = vec![0u8; payload.len()];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut out))
        .await
        .map_err(|_| "timeout reading the echo".to_string())?
        .map_err(|e| e.to_string())?;
    Ok(out)
}
