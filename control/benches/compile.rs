//! Compiling a synthetic cluster: 10,000 pods in 200 namespaces with 1,000
//! NetworkPolicies, 500 AuthorizationPolicies and 400 Services, for every
//! workload. Goal: under 2 s and under 500 MB peak memory. Before measuring,
//! prints the median and largest per-workload config size (JSON bytes) and
//! the process's peak RSS.
use std::fmt::Write;
use std::path::PathBuf;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_control::cluster::Cluster;
use palisade_control::compile::Compiler;
use palisade_control::load::load_sources;

const NAMESPACES: usize = 200;
const PODS_PER_NS: usize = 50;
const APPS: usize = 10;

fn synthetic() -> String {
    let mut y = String::new();
    let mut ip = 0u32;
    for n in 0..NAMESPACES {
        let env = if n % 2 == 0 { "prod" } else { "dev" };
        let _ = write!(
            y,
            "---\napiVersion: v1\nkind: Namespace\nmetadata:\n  name: ns-{n:03}\n  labels: {{team: t{}, env: {env}}}\n",
            n % 10
        );
        for p in 0..PODS_PER_NS {
            let addr =
                std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(198, 18, 0, 0)) + ip);
            ip += 1;
            let _ = write!(
                y,
                "---\napiVersion: v1\nkind: Pod\nmetadata:\n  namespace: ns-{n:03}\n  name: pod-{p:02}\n  labels: {{app: app-{}, tier: t{}}}\nspec:\n  serviceAccountName: sa-{}\n  containers:\n    - name: c\n      ports:\n        - {{name: http, containerPort: 8080}}\n        - {{name: metrics, containerPort: 9090}}\nstatus:\n  podIP: {addr}\n",
                p % APPS,
                p % 3,
                p % APPS
            );
        }
        for s in 0..2 {
            let _ = write!(
                y,
                "---\napiVersion: v1\nkind: Service\nmetadata:\n  namespace: ns-{n:03}\n  name: svc-{s}\nspec:\n  clusterIP: 198.19.{}.{}\n  selector: {{app: app-{s}}}\n  ports:\n    - {{name: http, port: 80, targetPort: http}}\n",
                n / 128,
                (n % 128) * 2 + s
            );
        }
        let team = n % 10;
        let np = |name: &str, spec: &str| {
            format!(
                "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: ns-{n:03}\n  name: {name}\nspec:\n{spec}\n"
            )
        };
        y.push_str(&np(
            "default-deny-all",
            "  podSelector: {}\n  policyTypes: [Ingress, Egress]",
        ));
        y.push_str(&np(
            "allow-dns",
            "  podSelector: {}\n  policyTypes: [Egress]\n  egress:\n    - to:\n        - namespaceSelector:\n            matchLabels: {kubernetes.io/metadata.name: ns-000}\n          podSelector:\n            matchLabels: {app: app-9}\n      ports:\n        - {port: 53, protocol: UDP}\n        - {port: 53, protocol: TCP}",
        ));
        y.push_str(&np(
            "chain",
            "  podSelector:\n    matchExpressions:\n      - {key: app, operator: In, values: [app-1, app-2, app-3]}\n  ingress:\n    - from:\n        - podSelector:\n            matchLabels: {app: app-0}\n      ports:\n        - port: http",
        ));
        y.push_str(&np(
            "from-team",
            &format!(
                "  podSelector:\n    matchLabels: {{app: app-0}}\n  ingress:\n    - from:\n        - namespaceSelector:\n            matchLabels: {{team: t{team}}}\n          podSelector:\n            matchLabels: {{app: app-0}}\n      ports:\n        - {{port: 8080, endPort: 8090}}\n    - from:\n        - ipBlock: {{cidr: 192.0.2.0/24, except: [192.0.2.128/25]}}"
            ),
        ));
        y.push_str(&np(
            "egress-team",
            &format!(
                "  podSelector:\n    matchLabels: {{app: app-0}}\n  policyTypes: [Egress]\n  egress:\n    - to:\n        - namespaceSelector:\n            matchLabels: {{team: t{team}}}\n          podSelector:\n            matchExpressions:\n              - {{key: app, operator: In, values: [app-0, app-1, app-2, app-3]}}\n      ports:\n        - port: http\n    - to:\n        - ipBlock: {{cidr: 0.0.0.0/0, except: [169.254.169.254/32, 198.18.0.0/15]}}\n      ports:\n        - port: 443"
            ),
        ));
        let ap = |name: &str, spec: &str| {
            format!(
                "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  namespace: ns-{n:03}\n  name: {name}\nspec:\n{spec}\n"
            )
        };
        y.push_str(&ap(
            "api",
            &format!(
                "  selector:\n    matchLabels: {{app: app-1}}\n  rules:\n    - from:\n        - source:\n            principals: [\"cluster.local/ns/ns-{n:03}/sa/sa-0\"]\n      to:\n        - operation: {{methods: [GET, POST], paths: [\"/api/*\"]}}\n    - from:\n        - source: {{namespaces: [\"ns-000\"]}}\n      to:\n        - operation: {{methods: [GET], paths: [/metrics]}}"
            ),
        ));
        if n < 150 {
            y.push_str(&ap(
                "deny-admin",
                "  action: DENY\n  rules:\n    - to:\n        - operation: {paths: [\"/admin*\"]}\n      when:\n        - {key: \"request.headers[x-debug]\", values: [\"1\"]}",
            ));
        }
    }
    for i in 0..150 {
        let _ = write!(
            y,
            "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  namespace: istio-system\n  name: mesh-{i:03}\nspec:\n  action: AUDIT\n  selector:\n    matchLabels: {{app: app-{}}}\n  rules:\n    - to:\n        - operation: {{paths: [\"/audit/{i}/*\"]}}\n",
            i % APPS
        );
    }
    y
}

fn cluster() -> Cluster {
    let text = synthetic();
    let c =
        load_sources(&[(PathBuf::from("synthetic.yaml"), text)]).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.pods.len(), NAMESPACES * PODS_PER_NS);
    assert_eq!(c.network_policies.len(), 1000);
    assert_eq!(c.authorization_policies.len(), 500);
    c
}

fn peak_rss_mb() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kb: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb / 1024.0)
}

/// CPU time (user + system) of this process, from /proc/self/stat (the
/// machine is shared, so wall time overstates the work).
fn cpu_seconds() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    // Fields 14 and 15 of stat(5) (utime, stime), 1-based, after `pid (comm)`.
    (ticks(11) + ticks(12)) / 100.0
}

fn compile_all(c: &mut Criterion) {
    let cluster = cluster();
    let (wall0, cpu0) = (Instant::now(), cpu_seconds());
    let compiler = Compiler::new(&cluster);
    let (wall1, cpu1) = (Instant::now(), cpu_seconds());
    let configs: Vec<_> = (0..cluster.pods.len())
        .map(|i| compiler.compile(i))
        .collect();
    let (wall2, cpu2) = (Instant::now(), cpu_seconds());
    println!(
        "Compiler::new: {:?} wall, {:.2} s CPU; compile 10,000 workloads: {:?} wall, {:.2} s CPU",
        wall1 - wall0,
        cpu1 - cpu0,
        wall2 - wall1,
        cpu2 - cpu1
    );
    let mut sizes: Vec<usize> = configs
        .iter()
        .map(|c| serde_json::to_vec(c).map(|v| v.len()).unwrap_or(0))
        .collect();
    drop(configs);
    let elapsed = wall0.elapsed();
    sizes.sort_unstable();
    println!(
        "synthetic cluster: {} pods, {} NetworkPolicies, {} AuthorizationPolicies, {} Services",
        cluster.pods.len(),
        cluster.network_policies.len(),
        cluster.authorization_policies.len(),
        cluster.services.len()
    );
    println!(
        "one pass (compile, keep and serialize every workload): {elapsed:?}; config size median {} B, largest {} B; peak RSS {:.0} MB",
        sizes[sizes.len() / 2],
        sizes[sizes.len() - 1],
        peak_rss_mb().unwrap_or(f64::NAN)
    );
    let mut group = c.benchmark_group("compile");
    group.sample_size(10);
    group.bench_function("all_workloads_10k_pods", |b| {
        b.iter(|| {
            let compiler = Compiler::new(&cluster);
            let mut n = 0usize;
            for i in 0..cluster.pods.len() {
                n += compiler.compile(i).peers.len();
            }
            n
        })
    });
    group.finish();
    println!(
        "peak RSS after the benchmark: {:.0} MB",
        peak_rss_mb().unwrap_or(f64::NAN)
    );
}

criterion_group!(benches, compile_all);
criterion_main!(benches);
