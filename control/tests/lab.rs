//! `palisade lab` end to end on `examples/zero-trust`: real network
//! namespaces, real sidecars with iptables capture, real connections. The
//! observed matrix must equal what `palisade check` predicts (L4, L7 and
//! through Services), key cells must hold the example's intent, and the
//! bytes between two meshed pods must be TLS on the wire.
//!
//! Needs root, iproute2, iptables, nftables, tcpdump and curl; it fails (never
//! skips) without them. Only one lab can be up on a host, so the tests of this
//! file run one after the other.
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Mutex;

use serde_json::Value;

static ONE_LAB_AT_A_TIME: Mutex<()> = Mutex::new(());

fn palisade() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_palisade"));
    // The sidecar binary is built beside `palisade` by `cargo test --workspace`.
    let proxy = Path::new(env!("CARGO_BIN_EXE_palisade")).with_file_name("palisade-proxy");
    cmd.env("PALISADE_PROXY_BIN", proxy);
    cmd
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../examples")
        .join(name)
}

/// A lab that is taken down when the test ends, passed or failed.
struct Lab {
    state: tempfile::TempDir,
}

impl Lab {
    fn up(example_name: &str, extra: &[&str]) -> Lab {
        let uid = std::fs::read_to_string("/proc/self/status")
            .unwrap_or_default()
            .lines()
            .find_map(|l| {
                l.strip_prefix("Uid:")
                    .map(|r| r.split_whitespace().nth(1) == Some("0"))
            })
            .unwrap_or(false);
        assert!(
            uid,
            "the lab tests need root (network namespaces, iptables)"
        );
        let proxy = Path::new(env!("CARGO_BIN_EXE_palisade")).with_file_name("palisade-proxy");
        assert!(
            proxy.is_file(),
            "{} is missing: run the tests with `cargo test --workspace`",
            proxy.display()
        );
        let lab = Lab {
            state: tempfile::tempdir().unwrap(),
        };
        // A private state dir, as `mktemp -d` makes: the sidecars (their own
        // UID) must still reach their tokens under it.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(lab.state.path(), std::fs::Permissions::from_mode(0o700))
                .unwrap();
        }
        let out = palisade()
            .args(["lab", "up", "--config"])
            .arg(example(example_name))
            .args(extra)
            .arg("--state-dir")
            .arg(lab.state.path())
            .output()
            .unwrap();
        assert!(out.status.success(), "lab up failed:\n{}", text(&out));
        lab
    }

    fn run(&self, args: &[&str]) -> Output {
        palisade()
            .arg("lab")
            .args(args)
            .arg("--state-dir")
            .arg(self.state.path())
            .output()
            .unwrap()
    }

    /// `lab probe --output json` with `args`; asserts observed == predicted.
    fn probe(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["probe", "--output", "json"];
        all.extend_from_slice(args);
        let out = self.run(&all);
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("probe output is not JSON ({e}):\n{}", text(&out)));
        let disagreements: Vec<&Value> = rows
            .iter()
            .filter(|r| r["observed"] != r["predicted"])
            .collect();
        assert!(
            disagreements.is_empty() && out.status.success(),
            "observed differs from predicted for {args:?}:\n{}",
            serde_json::to_string_pretty(&disagreements).unwrap()
        );
        assert!(!rows.is_empty(), "no probe ran for {args:?}");
        rows
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let _ = self.run(&["down"]);
    }
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn cell<'a>(rows: &'a [Value], from: &str, to: &str, port: u64, protocol: &str) -> &'a Value {
    rows.iter()
        .find(|r| {
            r["from"] == from && r["to"] == to && r["port"] == port && r["protocol"] == protocol
        })
        .unwrap_or_else(|| panic!("no probe {from} -> {to} {protocol}/{port}"))
}

fn observed(rows: &[Value], from: &str, to: &str, port: u64, protocol: &str) -> String {
    cell(rows, from, to, port, protocol)["observed"]
        .as_str()
        .unwrap()
        .to_string()
}

fn lab_namespaces() -> Vec<String> {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.starts_with("palisade-lab"))
        .map(str::to_string)
        .collect()
}

#[test]
fn zero_trust_lab_agrees_with_check_at_l4_l7_and_through_services() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up("zero-trust", &["--external", "192.0.2.10"]);

    // L4: every declared port, TCP and UDP, pods and outside endpoints.
    let l4 = lab.probe(&[]);
    let web = "frontend/web-0";
    assert_eq!(
        observed(&l4, web, "kube-system/coredns-0", 53, "UDP"),
        "allow",
        "DNS over UDP"
    );
    assert_eq!(
        observed(&l4, web, "kube-system/coredns-0", 53, "TCP"),
        "allow",
        "DNS over TCP"
    );
    assert_eq!(
        observed(&l4, web, "database/postgres-0", 5432, "TCP"),
        "deny",
        "web may not reach the database"
    );
    assert_eq!(
        observed(
            &l4,
            "backend/api-server-0",
            "database/postgres-0",
            5432,
            "TCP"
        ),
        "allow"
    );
    assert_eq!(
        observed(
            &l4,
            "ingress-nginx/ingress-nginx-controller-0",
            web,
            80,
            "TCP"
        ),
        "allow"
    );
    assert_eq!(
        observed(&l4, "monitoring/prometheus-0", web, 80, "TCP"),
        "deny"
    );
    assert_eq!(
        observed(&l4, "backend/api-server-0", "203.0.113.1", 443, "TCP"),
        "allow",
        "egress to the internet on 443"
    );
    assert_eq!(
        observed(&l4, "backend/api-server-0", "169.254.169.254", 443, "TCP"),
        "deny",
        "the metadata endpoint is excepted"
    );
    assert_eq!(
        observed(&l4, "192.0.2.10", "database/postgres-0", 5432, "TCP"),
        "deny"
    );
    assert!(
        cell(
            &l4,
            "backend/api-server-0",
            "database/postgres-0",
            5432,
            "TCP"
        )["mtls"]
            == true
    );

    // L7: the orders API for the web service account, /metrics for Prometheus.
    let orders = lab.probe(&["--port", "8080", "--http", "GET", "/api/v1/orders/42"]);
    let hit = cell(&orders, web, "backend/api-server-0", 8080, "TCP");
    assert_eq!(
        (hit["observed"].as_str(), hit["status"].as_u64()),
        (Some("allow"), Some(200))
    );
    let scraped = cell(
        &orders,
        "monitoring/prometheus-0",
        "backend/api-server-0",
        8080,
        "TCP",
    );
    assert_eq!(
        scraped["status"].as_u64(),
        Some(403),
        "Prometheus may not read orders"
    );
    let delete = lab.probe(&["--port", "8080", "--http", "DELETE", "/api/v1/orders/42"]);
    assert_eq!(
        cell(&delete, web, "backend/api-server-0", 8080, "TCP")["status"].as_u64(),
        Some(403)
    );
    let metrics = lab.probe(&["--port", "8080", "--http", "GET", "/metrics"]);
    assert_eq!(
        cell(
            &metrics,
            "monitoring/prometheus-0",
            "backend/api-server-1",
            8080,
            "TCP"
        )["status"]
            .as_u64(),
        Some(200)
    );
    // Path tricks are decided on the normalized path.
    let tricky = lab.probe(&[
        "--port",
        "8080",
        "--http",
        "GET",
        "/api/v1/orders/../../../metrics",
    ]);
    assert_eq!(
        cell(&tricky, web, "backend/api-server-0", 8080, "TCP")["status"].as_u64(),
        Some(403)
    );

    // Services: the sidecar translates cluster IPs; policy applies per endpoint.
    let services = lab.probe(&["--services"]);
    assert_eq!(
        observed(&services, web, "svc:backend/api-server", 8080, "TCP"),
        "deny",
        "TCP to the API is not an HTTP request the policy allows"
    );
    let services_http = lab.probe(&[
        "--services",
        "--port",
        "8080",
        "--http",
        "GET",
        "/api/v1/orders",
    ]);
    assert_eq!(
        observed(&services_http, web, "svc:backend/api-server", 8080, "TCP"),
        "allow"
    );

    // UDP Services: a datagram to kube-dns's cluster IP reaches an endpoint,
    // translated by an egress-isolated pod's sidecar (frontend) or else by
    // the lab's stand-in for kube-proxy (ingress-nginx is not isolated);
    // every cell agrees with check, which judges each endpoint.
    let dns = lab.probe(&["--services", "--protocol", "UDP", "--port", "53"]);
    for from in [web, "ingress-nginx/ingress-nginx-controller-0"] {
        assert_eq!(
            observed(&dns, from, "svc:kube-system/kube-dns", 53, "UDP"),
            "allow",
            "{from}"
        );
    }

    // On the wire between two meshed pods: TLS records, no cleartext request.
    let out = lab.run(&[
        "capture",
        "--from",
        web,
        "--to",
        "backend/api-server-0",
        "--port",
        "8080",
        "--http",
        "GET",
        "/api/v1/orders",
        "--output",
        "json",
    ]);
    assert!(out.status.success(), "capture:\n{}", text(&out));
    let wire: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(wire["tlsOnly"], true, "{wire}");
    assert_eq!(wire["result"]["observed"], "allow", "{wire}");

    // A policy edited on disk reaches the sidecars through the control plane
    // (the lab runs `palisade control` and bootstraps sidecars with join
    // tokens): a DENY for the orders API turns the web tier's 200 into a 403,
    // and then observation and prediction agree again.
    let deny = r#"apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata:
  namespace: backend
  name: freeze-orders
spec:
  selector:
    matchLabels:
      app: api
  action: DENY
  rules:
    - to:
        - operation:
            paths: ["/api/v1/orders/*"]
"#;
    std::fs::write(lab.state.path().join("manifests/99-freeze.yaml"), deny).unwrap();
    let started = std::time::Instant::now();
    let request = [
        "probe",
        "--output",
        "json",
        "--port",
        "8080",
        "--http",
        "GET",
        "/api/v1/orders/42",
    ];
    loop {
        let out = lab.run(&request);
        let rows: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
        let status = cell(&rows, web, "backend/api-server-0", 8080, "TCP")["status"].as_u64();
        if status == Some(403) {
            break;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(10),
            "the pushed DENY policy was not enforced within 10 s"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    eprintln!("policy change enforced after {:?}", started.elapsed());
    let frozen = lab.probe(&["--port", "8080", "--http", "GET", "/api/v1/orders/42"]);
    assert_eq!(
        cell(
            &frozen,
            "frontend/web-1",
            "backend/api-server-1",
            8080,
            "TCP"
        )["status"]
            .as_u64(),
        Some(403)
    );

    drop(lab);
    assert!(
        lab_namespaces().is_empty(),
        "lab down left {:?}",
        lab_namespaces()
    );
}

#[test]
fn lab_up_cleans_a_stale_lab_and_down_is_idempotent() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    // A crashed lab: namespaces left behind without any state.
    for ns in ["palisade-lab-net", "palisade-lab-p0"] {
        let _ = Command::new("ip").args(["netns", "add", ns]).status();
    }
    let lab = Lab::up("zero-trust", &[]);
    let rows = lab.probe(&["--port", "53", "--protocol", "UDP"]);
    assert!(rows.iter().any(|r| r["observed"] == "allow"));
    drop(lab);
    assert!(lab_namespaces().is_empty());
    let state = tempfile::tempdir().unwrap();
    let out = palisade()
        .args(["lab", "down", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
}

#[test]
fn lab_refuses_bad_input_with_one_line() {
    let out = palisade()
        .args(["lab", "up", "--config", "/nonexistent"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not a directory"));
    let state = tempfile::tempdir().unwrap();
    let out = palisade()
        .args(["lab", "probe", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no lab is up"));
}

/// The observed verdict of every probe, keyed by its cell.
fn verdicts(rows: &[Value]) -> std::collections::BTreeMap<String, String> {
    rows.iter()
        .map(|r| {
            (
                format!(
                    "{} -> {} {}/{} {}",
                    r["from"], r["to"], r["protocol"], r["port"], r["http"]
                ),
                r["observed"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// `palisade ca rotate STEP` on the lab's CA, from the hub's namespace
/// where the lab's control plane listens.
fn rotate(lab: &Lab, step: &str, extra: &[&str]) -> Output {
    let out = Command::new("ip")
        .args(["netns", "exec", "palisade-lab-net"])
        .arg(env!("CARGO_BIN_EXE_palisade"))
        .args(["ca", "rotate", step, "--ca"])
        .arg(lab.state.path().join("ca"))
        .args(["--control", "198.19.254.1:15012"])
        .args(extra)
        .output()
        .unwrap();
    eprintln!("ca rotate {step}: {}", text(&out));
    out
}

#[test]
fn the_lab_mesh_keeps_its_matrix_through_a_ca_rotation() {
    let _one = ONE_LAB_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let lab = Lab::up("zero-trust", &["--svid-reissue-spread", "8s"]);
    let l7 = ["--http", "GET", "/"];
    let before = (verdicts(&lab.probe(&[])), verdicts(&lab.probe(&l7)));
    assert!(before.0.values().any(|v| v == "allow") && before.0.values().any(|v| v == "deny"));

    // prepare changes only files; the control plane picks them up.
    let out = palisade()
        .args(["ca", "rotate", "prepare", "--ca"])
        .arg(lab.state.path().join("ca"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let status = || {
        let out = Command::new("ip")
            .args(["netns", "exec", "palisade-lab-net"])
            .arg(env!("CARGO_BIN_EXE_palisade"))
            .args([
                "status",
                "--json",
                "--control",
                "198.19.254.1:15012",
                "--ca",
            ])
            .arg(lab.state.path().join("ca"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", text(&out));
        serde_json::from_slice::<Value>(&out.stdout).unwrap()
    };
    // A sidecar's own view of it, on its admin listener.
    let state: Value =
        serde_json::from_slice(&std::fs::read(lab.state.path().join("state.json")).unwrap())
            .unwrap();
    let netns = state["plan"]["pods"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["meshed"] == true)
        .map(|p| p["netns"].as_str().unwrap().to_string())
        .unwrap();
    let metric = |name: &str| -> f64 {
        let out = Command::new("ip")
            .args(["netns", "exec", &netns, "curl", "-s", "--max-time", "5"])
            .arg("http://127.0.0.1:15000/metrics")
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in the sidecar's metrics"))
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while metric("palisade_trust_bundle_roots") != 2.0 {
        assert!(
            std::time::Instant::now() < deadline,
            "the sidecar trusts the new root"
        );
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(metric("palisade_control_plane_connected"), 1.0);
    let out = rotate(&lab, "activate", &["--wait", "30s"]);
    assert!(out.status.success(), "{}", text(&out));
    let signer = palisade_identity::verify::fingerprint(
        palisade_identity::CertificateAuthority::load_dir(&lab.state.path().join("ca"), None)
            .unwrap()
            .signing_cert(),
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(15);
    while status()["control"]["ca"]["signer"] != signer.as_str() {
        assert!(
            std::time::Instant::now() < deadline,
            "the control plane loads the new CA"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // Right after activate the sidecars renew over 8 s: new and old SVIDs
    // meet on fresh handshakes (L4) and on pooled mesh connections (L7).
    let during = (verdicts(&lab.probe(&[])), verdicts(&lab.probe(&l7)));
    assert_eq!(during, before, "the matrix holds while SVIDs change CA");
    let renewed = |s: &Value| {
        s["proxies"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| p["svidCurrentSigner"] == true)
            .count()
    };
    eprintln!(
        "sidecars renewed by the end of the probes: {}",
        renewed(&status())
    );
    let out = rotate(&lab, "finish", &["--wait", "60s"]);
    assert!(out.status.success(), "{}", text(&out));
    // Once every sidecar holds the bundle without the old root:
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let done = loop {
        let s = status();
        let one_root = s["control"]["ca"]["roots"].as_array().unwrap().len() == 1;
        let proxies = s["proxies"].as_array().unwrap();
        let all = !proxies.is_empty()
            && proxies
                .iter()
                .all(|p| p["svidCurrentSigner"] == true && p["configCurrent"] == true);
        if (one_root && all) || std::time::Instant::now() > deadline {
            break s;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    };
    assert_eq!(
        done["control"]["ca"]["roots"].as_array().unwrap().len(),
        1,
        "{done}"
    );
    for p in done["proxies"].as_array().unwrap() {
        assert_eq!(p["svidCurrentSigner"], true, "{p}");
        assert_eq!(p["configCurrent"], true, "{p}");
    }
    assert_eq!(metric("palisade_trust_bundle_roots"), 1.0);
    assert!(metric("palisade_svid_renewals_total") >= 1.0);
    // The mesh links the old root authenticated (pooled before the
    // rotation) were retired when it was dropped, on some sidecar.
    let retired: f64 = state["plan"]["pods"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["meshed"] == true)
        .map(|p| {
            let out = Command::new("ip")
                .args(["netns", "exec", p["netns"].as_str().unwrap()])
                .args([
                    "curl",
                    "-s",
                    "--max-time",
                    "5",
                    "http://127.0.0.1:15000/metrics",
                ])
                .output()
                .unwrap();
            String::from_utf8_lossy(&out.stdout)
                .lines()
                .filter(|l| l.starts_with("palisade_closed_by_trust_change_total{"))
                .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .sum::<f64>()
        })
        .sum();
    assert!(
        retired >= 1.0,
        "no connection was closed by the trust change"
    );
    let after = (verdicts(&lab.probe(&[])), verdicts(&lab.probe(&l7)));
    assert_eq!(after, before, "the matrix holds on the new CA alone");
}
