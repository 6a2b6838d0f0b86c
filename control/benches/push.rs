//! Push fan-out: 1,000 simulated proxies (lightweight in-process clients of
//! the real API, each with its own SVID and its own mTLS connection) watch a
//! control plane that runs as its own process (`palisade control`). One
//! policy change affects all of them: the measured time runs from the file
//! write on disk until every proxy has received, decoded and ACKed the new
//! version (so it includes the manifest poll, the 200 ms debounce and the
//! compile). Goal: p99 under 1 s, control-plane RSS under 200 MB. A second
//! change affects one workload only and must be pushed to that one alone.
//!
//! Run: `cargo bench -p palisade-control --bench push`
//! (`PALISADE_BENCH_PROXIES=N` to change the fleet size).
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use criterion::{Criterion, SamplingMode, criterion_group, criterion_main};
use palisade_api::stream::{WatchRequest, connect};
use palisade_control::server::{self, CaAuthority};
use palisade_identity::{CredentialStore, Credentials, SpiffeId, TlsOptions, pem};
use tokio::runtime::Runtime;
use tokio_stream::wrappers::ReceiverStream;

const TD: &str = "bench.test";

/// `n` pods in groups of ten. Zero trust: every pod is isolated in both
/// directions and talks only within its group on `group_port` (one policy
/// per group; changing the port changes every pod's config). Policy `one`
/// selects p-0 alone and admits 192.0.2.0/24 on `one_port`.
fn manifests(n: usize, group_port: u16, one_port: u16) -> String {
    let mut s = format!(
        "apiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata:\n  name: mesh\nspec:\n  trustDomain: {TD}\n---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: bench\n"
    );
    for i in 0..n {
        s.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  namespace: bench\n  name: p-{i}\n  labels:\n    app: bench\n    group: g-{}\n    pod: p-{i}\nspec:\n  serviceAccountName: sa-{i}\n  containers:\n    - name: main\n      image: example/bench:1\n      ports:\n        - containerPort: 8080\nstatus:\n  phase: Running\n  podIP: 198.18.{}.{}\n",
            i / 10,
            10 + i / 250,
            1 + i % 250
        ));
    }
    for g in 0..n.div_ceil(10) {
        s.push_str(&format!(
            "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: bench\n  name: group-{g}\nspec:\n  podSelector:\n    matchLabels:\n      group: g-{g}\n  policyTypes: [Ingress, Egress]\n  ingress:\n    - from:\n        - podSelector:\n            matchLabels:\n              group: g-{g}\n      ports:\n        - protocol: TCP\n          port: {group_port}\n  egress:\n    - to:\n        - podSelector:\n            matchLabels:\n              group: g-{g}\n      ports:\n        - protocol: TCP\n          port: {group_port}\n"
        ));
    }
    s.push_str(&format!(
        "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: bench\n  name: one\nspec:\n  podSelector:\n    matchLabels:\n      pod: p-0\n  policyTypes: [Ingress]\n  ingress:\n    - from:\n        - ipBlock:\n            cidr: 192.0.2.0/24\n      ports:\n        - protocol: TCP\n          port: {one_port}\n"
    ));
    s
}

/// One simulated proxy's view: the last version it ACKed and when.
struct Seen {
    version: Mutex<(String, Instant)>,
}

struct Env {
    _dir: tempfile::TempDir,
    manifest: PathBuf,
    child: Child,
    seen: Vec<Arc<Seen>>,
    pushes: Arc<AtomicU64>,
    all_port: u16,
    one_port: u16,
    latencies_all: Vec<Duration>,
}

impl Drop for Env {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn rss_kb(pid: u32) -> (u64, u64) {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        s.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn write_atomic(path: &Path, body: &str) {
    let tmp = path.with_extension("tmp~");
    std::fs::write(&tmp, body).unwrap();
    std::fs::rename(&tmp, path).unwrap();
}

async fn sim_proxy(
    addr: SocketAddr,
    store: Arc<CredentialStore>,
    workload: String,
    seen: Arc<Seen>,
    pushes: Arc<AtomicU64>,
    permit: tokio::sync::OwnedSemaphorePermit,
) {
    let mut permit = Some(permit);
    let tls = palisade_identity::client_config_with(
        &store,
        SpiffeId::parse(&server::control_id(TD)).unwrap(),
        &TlsOptions {
            alpn: vec![b"h2".to_vec()],
            ..TlsOptions::default()
        },
    )
    .unwrap();
    let ch = connect::connect(addr, tls, Duration::from_secs(30))
        .await
        .unwrap();
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(WatchRequest::subscribe(&workload, ""))
        .await
        .unwrap();
    let mut stream = palisade_api::stream::client(ch)
        .watch(ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    while let Ok(Some(update)) = stream.message().await {
        // Real work a proxy does: parse and check the config.
        let config = update.decode_for(&workload).expect("valid config");
        let _ = tx.send(WatchRequest::ack(&config.version)).await;
        *seen.version.lock().unwrap() = (config.version, Instant::now());
        pushes.fetch_add(1, Ordering::Relaxed);
        // Connected and configured: let the next proxy start its handshake.
        permit.take();
    }
}

impl Env {
    async fn start(n: usize) -> Env {
        let dir = tempfile::tempdir().unwrap();
        let mdir = dir.path().join("manifests");
        std::fs::create_dir_all(&mdir).unwrap();
        let manifest = mdir.join("all.yaml");
        write_atomic(&manifest, &manifests(n, 8000, 9000));
        let ca = CaAuthority::generate(TD).unwrap();
        let ca_dir = dir.path().join("ca");
        ca.save_dir(&ca_dir).unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
            .arg("control")
            .arg("--config")
            .arg(&mdir)
            .arg("--ca")
            .arg(&ca_dir)
            .arg("--state-dir")
            .arg(dir.path().join("state"))
            .args(["--listen", &port.to_string()])
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert!(line.contains("listening"), "{line}");
        let (rss0, _) = rss_kb(child.id());
        let seen: Vec<Arc<Seen>> = (0..n)
            .map(|_| {
                Arc::new(Seen {
                    version: Mutex::new((String::new(), Instant::now())),
                })
            })
            .collect();
        let pushes = Arc::new(AtomicU64::new(0));
        let started = Instant::now();
        let sem = Arc::new(tokio::sync::Semaphore::new(64));
        for (i, s) in seen.iter().enumerate() {
            let svid = ca
                .issue_keyed(
                    &format!("spiffe://{TD}/ns/bench/sa/sa-{i}"),
                    Duration::from_secs(3600),
                )
                .unwrap();
            let creds = Credentials::new(
                pem::certs(&svid.svid.chain_pem).unwrap(),
                pem::private_key(&svid.key_pem).unwrap(),
                ca.inner().bundle().clone(),
            )
            .unwrap();
            let store = CredentialStore::new(creds);
            let permit = sem.clone().acquire_owned().await.unwrap();
            let (s, pushes) = (s.clone(), pushes.clone());
            tokio::spawn(sim_proxy(
                port,
                store,
                format!("bench/p-{i}"),
                s,
                pushes,
                permit,
            ));
        }
        // Wait until every proxy holds a first config.
        loop {
            let ready = seen
                .iter()
                .filter(|s| !s.version.lock().unwrap().0.is_empty())
                .count();
            if ready == n {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(300),
                "only {ready}/{n} subscribed"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (rss1, hwm1) = rss_kb(child.id());
        eprintln!(
            "{n} proxies subscribed in {:?}; control-plane RSS {} MB idle before clients, {} MB with {n} subscribed (peak {} MB)",
            started.elapsed(),
            rss0 / 1024,
            rss1 / 1024,
            hwm1 / 1024
        );
        Env {
            _dir: dir,
            manifest,
            child,
            seen,
            pushes,
            all_port: 8000,
            one_port: 9000,
            latencies_all: Vec::new(),
        }
    }

    fn versions(&self) -> Vec<String> {
        self.seen
            .iter()
            .map(|s| s.version.lock().unwrap().0.clone())
            .collect()
    }

    /// Changes the policy that selects every pod; returns the time from the
    /// write until the last proxy ACKed.
    async fn change_all(&mut self) -> Duration {
        let before = self.versions();
        self.all_port += 1;
        let body = manifests(self.seen.len(), self.all_port, self.one_port);
        let t0 = Instant::now();
        write_atomic(&self.manifest, &body);
        loop {
            let done = self
                .seen
                .iter()
                .zip(&before)
                .all(|(s, b)| s.version.lock().unwrap().0 != *b);
            if done {
                break;
            }
            assert!(t0.elapsed() < Duration::from_secs(60), "fan-out stalled");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let mut last = Duration::ZERO;
        for s in &self.seen {
            let at = s.version.lock().unwrap().1.duration_since(t0);
            self.latencies_all.push(at);
            last = last.max(at);
        }
        last
    }

    /// Changes the policy that selects p-0 only; checks nobody else got it.
    async fn change_one(&mut self) -> Duration {
        let before = self.versions();
        let pushes_before = self.pushes.load(Ordering::Relaxed);
        self.one_port += 1;
        let body = manifests(self.seen.len(), self.all_port, self.one_port);
        let t0 = Instant::now();
        write_atomic(&self.manifest, &body);
        while self.seen[0].version.lock().unwrap().0 == before[0] {
            assert!(
                t0.elapsed() < Duration::from_secs(30),
                "p-0 never got its change"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let took = self.seen[0].version.lock().unwrap().1.duration_since(t0);
        // Let any wrong extra pushes arrive, then count.
        tokio::time::sleep(Duration::from_millis(300)).await;
        let pushed = self.pushes.load(Ordering::Relaxed) - pushes_before;
        let changed = self
            .versions()
            .iter()
            .zip(&before)
            .filter(|(a, b)| a != b)
            .count();
        assert_eq!(
            (pushed, changed),
            (1, 1),
            "a one-workload change went to {pushed} proxies"
        );
        took
    }
}

/// Which policy a measured change edits.
#[derive(Debug, Clone, Copy)]
enum Change {
    /// `Env::change_all`.
    All,
    /// `Env::change_one`.
    One,
}

impl Env {
    /// The summed time of `iters` changes.
    async fn repeat(&mut self, iters: u64, change: Change) -> Duration {
        let mut total = Duration::ZERO;
        for _ in 0..iters {
            total += match change {
                Change::All => self.change_all().await,
                Change::One => self.change_one().await,
            };
        }
        total
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn bench(c: &mut Criterion) {
    let n: usize = std::env::var("PALISADE_BENCH_PROXIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    let rt = Runtime::new().unwrap();
    let mut env = rt.block_on(Env::start(n));
    let mut g = c.benchmark_group("control_push");
    g.sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(10));
    g.bench_function(format!("change_all_{n}_until_all_acked"), |b| {
        b.iter_custom(|iters| rt.block_on(env.repeat(iters, Change::All)))
    });
    g.bench_function(format!("change_one_of_{n}_pushed_to_one"), |b| {
        b.iter_custom(|iters| rt.block_on(env.repeat(iters, Change::One)))
    });
    g.finish();
    let mut lat = env.latencies_all.clone();
    lat.sort();
    let (rss, hwm) = rss_kb(env.child.id());
    eprintln!(
        "per-proxy ACK latency after a change affecting all {n} (from file write, {} samples): p50 {:?}, p99 {:?}, max {:?}; control-plane RSS now {} MB, peak {} MB",
        lat.len(),
        percentile(&lat, 0.5),
        percentile(&lat, 0.99),
        percentile(&lat, 1.0),
        rss / 1024,
        hwm / 1024
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
