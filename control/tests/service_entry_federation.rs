//! Calling a workload of a federated trust domain through an Istio
//! `ServiceEntry`, end to end: two meshes, each compiled by Palisade from
//! its own manifests, each federating the other's trust domain. The client
//! sidecar (mesh.test) calls the entry's virtual IP; the compiled Service
//! leads it to the remote endpoint, and the compiled peer table makes it
//! originate mTLS expecting the entry's `subjectAltNames`. The remote
//! sidecar (remote.test) verifies the client against the federated bundle
//! and authorizes its principal. An entry naming another identity than the
//! server presents fails closed.
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use palisade_identity::{CaOptions, CertificateAuthority, SpiffeId, TrustDomain};
use palisade_proxy::app::{Proxy, Setup};
use palisade_proxy::ctx::Options;

const VIP: &str = "198.18.200.1";

fn ca(td: &str) -> CertificateAuthority {
    CertificateAuthority::create(&TrustDomain::new(td).unwrap(), &CaOptions::default()).unwrap()
}

fn svid_dir(ca: &CertificateAuthority, dir: &Path, id: &str) -> PathBuf {
    let svid = ca
        .issue(&SpiffeId::parse(id).unwrap(), Duration::from_secs(3600))
        .unwrap();
    palisade_identity::credentials::write_svid_dir(
        dir,
        &svid.chain,
        svid.key.as_ref(),
        ca.bundle(),
    )
    .unwrap();
    dir.to_path_buf()
}

fn indented(text: &str) -> String {
    text.lines().map(|l| format!("        {l}\n")).collect()
}

/// Compiles `manifests` and writes the config of `workload` to `out`.
fn compile(manifests: &[(&str, String)], dir: &Path, workload: &str, out: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, body) in manifests {
        std::fs::write(dir.join(name), body).unwrap();
    }
    let cluster = palisade_control::load::load_dir(dir).unwrap();
    let configs = palisade_control::compile::Compiler::new(&cluster).compile_all();
    let config = configs
        .iter()
        .find(|c| format!("{}/{}", c.workload.namespace, c.workload.name) == workload)
        .unwrap();
    std::fs::write(out, serde_json::to_string_pretty(config).unwrap()).unwrap();
}

fn sidecar(config: &Path, svid: &Path, ip: &str, opts: Options) -> Proxy {
    let ip: std::net::IpAddr = ip.parse().unwrap();
    let h = tokio::runtime::Handle::current();
    Proxy::start(
        Setup {
            config: config.to_path_buf(),
            svid_dir: svid.to_path_buf(),
            outbound_listen: SocketAddr::new(ip, 0),
            inbound_listen: SocketAddr::new(ip, 0),
            admin_listen: SocketAddr::new(ip, 0),
            config_poll: Duration::from_millis(100),
            opts,
        },
        &h,
        &h,
    )
    .unwrap()
}

/// An app answering with the peer identity its sidecar gave it.
async fn app() -> SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req: http::Request<hyper::body::Incoming>| async move {
                    let peer = req
                        .headers()
                        .get("x-palisade-peer-identity")
                        .and_then(|v| v.to_str().ok())
                        .unwrap_or("-")
                        .to_string();
                    Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::from(peer))))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}

async fn get(addr: SocketAddr) -> (u16, String) {
    let Ok(Ok(tcp)) =
        tokio::time::timeout(Duration::from_secs(5), tokio::net::TcpStream::connect(addr)).await
    else {
        return (0, String::new());
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    tokio::spawn(conn);
    let req = http::Request::get("/")
        .header("host", "api.remote.test")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    match tokio::time::timeout(Duration::from_secs(5), sender.send_request(req)).await {
        Ok(Ok(resp)) => {
            let status = resp.status().as_u16();
            let body = resp.into_body().collect().await.unwrap().to_bytes();
            (status, String::from_utf8_lossy(&body).into_owned())
        }
        _ => (0, String::new()),
    }
}

fn mesh_config(td: &str, federated_td: &str, federated_pem: &str) -> String {
    format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata:\n  name: mesh\nspec:\n  trustDomain: {td}\n  federatedTrustDomains:\n    - trustDomain: {federated_td}\n      trustDomainBundle: |\n{}",
        indented(federated_pem)
    )
}

fn pod(ns: &str, name: &str, sa: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {ns}\n---\napiVersion: v1\nkind: Pod\nmetadata:\n  namespace: {ns}\n  name: {name}\n  labels:\n    app: {sa}\nspec:\n  serviceAccountName: {sa}\n  containers:\n    - name: main\n      image: example/{sa}:1\nstatus:\n  phase: Running\n  conditions:\n    - type: Ready\n      status: \"True\"\n  podIP: {ip}\n"
    )
}

async fn call_through_service_entry(subject_alt_name: &str) -> (u16, String) {
    let root = tempfile::Builder::new()
        .prefix("palisade-se-test-")
        .tempdir()
        .unwrap();
    let local_ca = ca("mesh.test");
    let remote_ca = ca("remote.test");
    let app = app().await;

    // The remote mesh: back/api-0 at 127.0.0.2, allowing mesh.test's web.
    let remote_cfg = root.path().join("remote.json");
    compile(
        &[
            (
                "mesh.yaml",
                mesh_config("remote.test", "mesh.test", &local_ca.bundle().to_pem()),
            ),
            ("pod.yaml", pod("back", "api-0", "api", "127.0.0.2")),
            (
                "authz.yaml",
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  namespace: back\n  name: allow-web\nspec:\n  action: ALLOW\n  rules:\n    - from:\n        - source:\n            principals: [\"mesh.test/ns/shop/sa/web\"]\n".to_string(),
            ),
        ],
        &root.path().join("remote"),
        "back/api-0",
        &remote_cfg,
    );
    let b = sidecar(
        &remote_cfg,
        &svid_dir(
            &remote_ca,
            &root.path().join("b-svid"),
            "spiffe://remote.test/ns/back/sa/api",
        ),
        "127.0.0.2",
        Options {
            inbound_app_port: Some(app.port()),
            ..Options::default()
        },
    );

    // The local mesh: shop/web-0 at 127.0.0.1 and the ServiceEntry.
    let entry = format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  namespace: shop\n  name: remote-api\nspec:\n  hosts: [api.remote.test]\n  addresses: [\"{VIP}\"]\n  ports:\n    - number: 80\n      name: http\n      protocol: HTTP\n  location: MESH_INTERNAL\n  resolution: STATIC\n  endpoints:\n    - address: 127.0.0.2\n      ports:\n        http: {}\n  subjectAltNames: [\"{subject_alt_name}\"]\n",
        b.inbound_addr.port()
    );
    let local_cfg = root.path().join("local.json");
    compile(
        &[
            (
                "mesh.yaml",
                mesh_config("mesh.test", "remote.test", &remote_ca.bundle().to_pem()),
            ),
            ("pod.yaml", pod("shop", "web-0", "web", "127.0.0.1")),
            ("entry.yaml", entry),
        ],
        &root.path().join("local"),
        "shop/web-0",
        &local_cfg,
    );
    // `palisade check` predicts the same path: the entry's endpoint over
    // mTLS, expecting the entry's identity, which a federated bundle covers.
    let cluster = palisade_control::load::load_dir(&root.path().join("local")).unwrap();
    let req = palisade_control::check::CheckRequest {
        source: palisade_control::check::request::parse_source(&cluster, "shop/web-0", None)
            .unwrap(),
        destination: palisade_control::check::request::parse_destination(&cluster, VIP).unwrap(),
        port: palisade_control::cluster::PortRef::Number(80),
        protocol: palisade_api::Protocol::Tcp,
        http: None,
        plaintext: false,
        sni: None,
    };
    let report =
        palisade_control::check::check(&palisade_control::compile::Compiler::new(&cluster), &req)
            .unwrap();
    assert_eq!(report.endpoints.len(), 1, "{report:?}");
    let endpoint = &report.endpoints[0];
    assert_eq!(
        (endpoint.ip.to_string(), endpoint.port),
        ("127.0.0.2".to_string(), b.inbound_addr.port())
    );
    assert!(endpoint.mtls.mtls, "{report:?}");
    assert!(
        endpoint.mtls.detail.contains(subject_alt_name),
        "{}",
        endpoint.mtls.detail
    );
    let a = sidecar(
        &local_cfg,
        &svid_dir(
            &local_ca,
            &root.path().join("a-svid"),
            "spiffe://mesh.test/ns/shop/sa/web",
        ),
        "127.0.0.1",
        Options {
            outbound_to: Some(format!("{VIP}:80").parse().unwrap()),
            connect_timeout: Duration::from_secs(2),
            ..Options::default()
        },
    );
    let result = get(a.outbound_addr).await;
    // The sidecars' tasks end with the test's runtime.
    drop((a, b));
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_entry_leads_to_a_federated_workload_over_mtls() {
    let (status, body) = call_through_service_entry("spiffe://remote.test/ns/back/sa/api").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "spiffe://mesh.test/ns/shop/sa/web");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_entry_naming_another_identity_fails_closed() {
    let (status, body) =
        call_through_service_entry("spiffe://remote.test/ns/back/sa/impostor").await;
    // The handshake fails on the server's SVID: 502 from the client's sidecar.
    assert_eq!(status, 502, "{body}");
    assert!(body.contains("peer sidecar unavailable"), "{body}");
}
