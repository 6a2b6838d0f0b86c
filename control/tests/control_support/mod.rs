//! Shared fixtures for the control plane tests: a manifest directory for a
//! three-workload namespace, a fresh CA, a running control plane on loopback,
//! join tokens, and TLS clients with or without an SVID.
#![allow(dead_code)]
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use palisade_api::stream::{ControlPlaneClient, connect};
use palisade_control::server::{
    self, CaAuthority, RunningServer, ServerOptions, SignLimit, tokens,
};
use palisade_identity::{CredentialStore, Credentials, SpiffeId, TlsOptions, pem};
use palisade_proxy::control_client::{self, ClientOptions};
use tonic::transport::Channel;

pub const TD: &str = "mesh.test";
pub const WORKLOADS: [&str; 3] = ["shop/web-0", "shop/api-0", "shop/db-0"];

pub fn id_of(sa: &str) -> String {
    format!("spiffe://{TD}/ns/shop/sa/{sa}")
}

/// The manifests: namespace `shop`, pods web-0 (sa web), api-0 (sa api),
/// db-0 (sa db); a NetworkPolicy on db allowing api on `db_port`.
pub fn manifests(db_port: u16) -> Vec<(&'static str, String)> {
    let mesh = format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata:\n  name: mesh\nspec:\n  trustDomain: {TD}\n"
    );
    let ns = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n  labels:\n    kubernetes.io/metadata.name: shop\n".to_string();
    let pod = |name: &str, app: &str, ip: &str, port: u16| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: shop\n  name: {name}\n  labels:\n    app: {app}\nspec:\n  serviceAccountName: {app}\n  containers:\n    - name: main\n      image: example/{app}:1\n      ports:\n        - containerPort: {port}\nstatus:\n  phase: Running\n  podIP: {ip}\n  podIPs:\n    - ip: {ip}\n"
        )
    };
    let pods = [
        pod("web-0", "web", "198.18.1.10", 8080),
        pod("api-0", "api", "198.18.1.11", 9090),
        pod("db-0", "db", "198.18.1.12", 5432),
    ]
    .join("---\n");
    let policy = format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: shop\n  name: db-from-api\nspec:\n  podSelector:\n    matchLabels:\n      app: db\n  policyTypes: [Ingress]\n  ingress:\n    - from:\n        - podSelector:\n            matchLabels:\n              app: api\n      ports:\n        - protocol: TCP\n          port: {db_port}\n"
    );
    vec![
        ("00-mesh.yaml", mesh),
        ("01-namespace.yaml", ns),
        ("02-pods.yaml", pods),
        ("03-policy.yaml", policy),
    ]
}

pub fn write_manifests(dir: &Path, db_port: u16) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, body) in manifests(db_port) {
        write_atomic(&dir.join(name), &body);
    }
}

/// Write-then-rename, as editors and `kubectl`-style tools do.
pub fn write_atomic(path: &Path, body: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

/// Temp dirs for manifests, state and CA.
pub struct Fixture {
    pub root: tempfile::TempDir,
    pub manifests: PathBuf,
    pub state: PathBuf,
    pub ca_dir: PathBuf,
    pub ca: Arc<CaAuthority>,
}

impl Fixture {
    pub fn new() -> Self {
        let root = tempfile::tempdir().unwrap();
        let manifests = root.path().join("manifests");
        let state = root.path().join("state");
        let ca_dir = root.path().join("ca");
        write_manifests(&manifests, 5432);
        let ca = CaAuthority::generate(TD).unwrap();
        ca.save_dir(&ca_dir).unwrap();
        Self {
            root,
            manifests,
            state,
            ca_dir,
            ca: Arc::new(ca),
        }
    }

    /// Rewrites `03-policy.yaml` on disk: db now admits api on `db_port`.
    pub fn write_policy(&self, db_port: u16) {
        let (name, body) = manifests(db_port)
            .into_iter()
            .find(|(n, _)| *n == "03-policy.yaml")
            .unwrap();
        write_atomic(&self.manifests.join(name), &body);
    }

    pub fn options(&self) -> ServerOptions {
        let mut o = ServerOptions::new(self.manifests.clone(), self.state.clone());
        o.listen = SocketAddr::from(([127, 0, 0, 1], 0));
        o.poll_interval = Duration::from_millis(50);
        o.debounce = Duration::from_millis(100);
        o.sign_limit = SignLimit {
            burst: 20,
            refill_every: Duration::from_millis(100),
        };
        o
    }

    pub async fn start(&self) -> RunningServer {
        self.start_with(self.options()).await
    }

    pub async fn start_with(&self, o: ServerOptions) -> RunningServer {
        let compile = server::manifest_compiler_with(o.federation.clone());
        server::start(o, self.ca.clone(), compile).await.unwrap()
    }

    /// A token file for `workload` (token, workload, identity, bundle).
    pub fn token_file(&self, workload: &str, ttl: Duration) -> PathBuf {
        let token = tokens::TokenStore::new(&self.state)
            .create(workload, ttl)
            .unwrap();
        let sa = workload.split_once('/').unwrap().1.trim_end_matches("-0");
        let text = tokens::token_file_text(
            &token,
            workload,
            Some(&id_of(sa)),
            Some(self.ca.bundle_pem()),
            ttl,
        );
        let path = self.root.path().join(format!(
            "token-{}-{}",
            workload.replace('/', "_"),
            rand_suffix()
        ));
        std::fs::write(&path, text).unwrap();
        path
    }

    pub fn raw_token(&self, workload: &str) -> String {
        tokens::TokenStore::new(&self.state)
            .create(workload, Duration::from_secs(600))
            .unwrap()
    }

    pub fn client_options(&self, addr: SocketAddr, workload: &str) -> ClientOptions {
        let mut o = ClientOptions::new(
            &addr.to_string(),
            workload,
            self.token_file(workload, Duration::from_secs(600)),
        );
        o.backoff_initial = Duration::from_millis(50);
        o.backoff_max = Duration::from_millis(500);
        o.bootstrap_timeout = Duration::from_secs(10);
        o
    }

    /// A channel without a client certificate (bootstrap).
    pub async fn anonymous_channel(&self, addr: SocketAddr) -> Channel {
        let bundle = self.ca.inner().bundle().clone();
        let tls = control_client::tls::bootstrap_config(
            bundle,
            SpiffeId::parse(&server::control_id(TD)).unwrap(),
        )
        .unwrap();
        connect::connect(addr, tls, Duration::from_secs(5))
            .await
            .unwrap()
    }

    /// A channel presenting a freshly issued SVID for `id` valid for `ttl`.
    pub async fn svid_channel(&self, addr: SocketAddr, id: &str, ttl: Duration) -> Channel {
        let svid = self.ca.issue_keyed(id, ttl).unwrap();
        let creds = Credentials::new(
            pem::certs(&svid.svid.chain_pem).unwrap(),
            pem::private_key(&svid.key_pem).unwrap(),
            self.ca.inner().bundle().clone(),
        )
        .unwrap();
        self.store_channel(addr, &CredentialStore::new(creds)).await
    }

    pub async fn store_channel(&self, addr: SocketAddr, store: &Arc<CredentialStore>) -> Channel {
        let tls = palisade_identity::client_config_with(
            store,
            SpiffeId::parse(&server::control_id(TD)).unwrap(),
            &TlsOptions {
                alpn: vec![b"h2".to_vec()],
                ..TlsOptions::default()
            },
        )
        .unwrap();
        connect::connect(addr, tls, Duration::from_secs(5))
            .await
            .unwrap()
    }
}

pub fn client(ch: Channel) -> ControlPlaneClient<Channel> {
    palisade_api::stream::client(ch)
}

fn rand_suffix() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    N.fetch_add(1, Ordering::Relaxed)
}

/// A CSR (PEM) asking for exactly `id`.
pub fn csr_for(id: &str) -> String {
    control_client::csr::PendingCsr::new(id).unwrap().csr_pem
}

/// Polls `f` until it is true or `timeout` passes; returns the time it took.
pub async fn eventually(timeout: Duration, mut f: impl FnMut() -> bool) -> Option<Duration> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if f() {
            return Some(start.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    None
}

/// Kills the child on drop, so a failing test leaves no process behind.
pub struct Proc(pub std::process::Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback address with a port no one listens on now.
pub fn free_port() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}
