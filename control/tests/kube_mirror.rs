//! `palisade control --kube`: the cluster read from a Kubernetes API server
//! (list and watch over HTTP, `kube_support`), mirrored into a directory of
//! manifests that the control plane compiles. Nothing is written before
//! every kind is listed, so the first compile never sees pods without
//! their policies; changes follow; missing CRDs count as none and are
//! picked up once installed.
mod control_support;
mod kube_support;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use kube_support::FakeApiServer;
use palisade_control::kube_mirror::{self, MirrorOptions};

const NS: &str = "apiVersion: v1\nkind: Namespace\nmetadata: {name: shop}\n";

fn pod(name: &str, ip: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{namespace: shop, name: {name}, labels: {{app: {name}}}}}\nspec:\n  serviceAccountName: {name}\n  containers: [{{name: c, image: app, ports: [{{containerPort: 8080}}]}}]\nstatus:\n  phase: Running\n  podIP: {ip}\n  podIPs: [{{ip: {ip}}}]\n  conditions: [{{type: Ready, status: 'True'}}]\n"
    )
}

const DENY_ALL: &str = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: shop, name: deny-all}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n";

const ALLOW_GET: &str = "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {namespace: shop, name: get-only}\nspec:\n  selector: {matchLabels: {app: db}}\n  action: ALLOW\n  rules: [{to: [{operation: {methods: [GET]}}]}]\n";

/// Polls `check` for up to 10 s.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..200 {
        if check() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}

fn options(dir: &Path) -> MirrorOptions {
    let mut o = MirrorOptions::new(dir.to_path_buf());
    o.crd_probe_interval = Duration::from_millis(100);
    o
}

/// The fake cluster: a namespace, two pods, a default-deny policy and an
/// AuthorizationPolicy; Istio's PeerAuthentication and ServiceEntry and
/// Palisade's MeshConfig CRDs are not installed.
async fn cluster() -> FakeApiServer {
    let api = FakeApiServer::start().await;
    for kind in ["PeerAuthentication", "ServiceEntry", "MeshConfig"] {
        api.serve(kind, false);
    }
    api.apply(NS);
    api.apply(&pod("web", "198.18.0.10"));
    api.apply(&pod("db", "198.18.0.11"));
    api.apply(DENY_ALL);
    api.apply(ALLOW_GET);
    api
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nothing_is_mirrored_before_every_kind_is_listed_then_changes_follow() {
    let api = cluster().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mirror");
    // A file an earlier run left for a pod that no longer exists.
    std::fs::create_dir_all(dir.join("pod/shop")).unwrap();
    std::fs::write(dir.join("pod/shop/gone.json"), pod("gone", "198.18.0.99")).unwrap();
    // NetworkPolicies cannot be listed: the mirror waits, and writes none
    // of the other kinds meanwhile.
    api.fail("NetworkPolicy", true);
    let client = kube_mirror::client(Some(&api.kubeconfig(tmp.path())))
        .await
        .unwrap();
    let starting = tokio::spawn(kube_mirror::start(client, options(&dir)));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!starting.is_finished(), "started without NetworkPolicies");
    assert!(!dir.join("pod/shop/web.json").exists());
    api.fail("NetworkPolicy", false);
    let mirror = tokio::time::timeout(Duration::from_secs(20), starting)
        .await
        .expect("the mirror starts once every kind lists")
        .unwrap()
        .unwrap();

    // What was listed, as manifests the loader reads; the stale file gone.
    assert!(!dir.join("pod/shop/gone.json").exists());
    let written = std::fs::read_to_string(dir.join("pod/shop/web.json")).unwrap();
    assert!(written.contains("\"kind\": \"Pod\"") && written.contains("\"apiVersion\": \"v1\""));
    assert!(!written.contains("managedFields"), "{written}");
    let cluster = palisade_control::load::load_dir(&dir).unwrap();
    assert_eq!(cluster.pods.len(), 2);
    assert_eq!(cluster.network_policies.len(), 1);
    assert_eq!(cluster.authorization_policies.len(), 1);
    let status = mirror.status();
    assert!(status["serviceentries.networking.istio.io"].absent);
    assert_eq!(status["pods"].objects, 2);
    assert!(status.values().all(|s| s.synced), "{status:?}");

    // Watched changes: a new pod, a modified policy, a deleted one.
    api.apply(&pod("cache", "198.18.0.12"));
    api.apply(&DENY_ALL.replace("[Ingress]", "[Ingress, Egress]"));
    api.delete("AuthorizationPolicy", "shop", "get-only");
    eventually("the changes in the mirror", || {
        dir.join("pod/shop/cache.json").exists()
            && !dir.join("authorizationpolicy/shop/get-only.json").exists()
            && std::fs::read_to_string(dir.join("networkpolicy/shop/deny-all.json"))
                .is_ok_and(|t| t.contains("Egress"))
    })
    .await;

    // A CRD installed later is found and its objects mirrored.
    api.serve("ServiceEntry", true);
    api.apply("apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {namespace: shop, name: payments}\nspec:\n  hosts: [payments.example]\n  ports: [{number: 443, name: https, protocol: TLS}]\n  location: MESH_EXTERNAL\n  resolution: STATIC\n  endpoints: [{address: 203.0.113.20}]\n");
    eventually("the ServiceEntry in the mirror", || {
        dir.join("serviceentry/shop/payments.json").exists()
    })
    .await;
    let cluster = palisade_control::load::load_dir(&dir).unwrap();
    assert_eq!(cluster.pods.len(), 3);
    assert_eq!(cluster.service_entries.len(), 1);
    assert!(cluster.authorization_policies.is_empty());
}

/// A watch that cannot resume (the API server lost the history while the
/// mirror was disconnected) lists again, and the relist replaces the kind:
/// a pod deleted meanwhile leaves the mirror, one created meanwhile joins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relist_after_expired_history_replaces_the_kind() {
    let api = cluster().await;
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("mirror");
    let client = kube_mirror::client(Some(&api.kubeconfig(tmp.path())))
        .await
        .unwrap();
    let _mirror = kube_mirror::start(client, options(&dir)).await.unwrap();
    assert!(dir.join("pod/shop/db.json").exists());
    // The API server goes away; while it is, db is deleted and cache
    // created, and the history of both is compacted.
    api.fail("Pod", true);
    tokio::time::sleep(Duration::from_millis(300)).await;
    api.delete("Pod", "shop", "db");
    api.apply(&pod("cache", "198.18.0.12"));
    api.compact();
    // Nothing changes while it cannot be asked.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(dir.join("pod/shop/db.json").exists());
    api.fail("Pod", false);
    eventually("the relisted pods in the mirror", || {
        !dir.join("pod/shop/db.json").exists() && dir.join("pod/shop/cache.json").exists()
    })
    .await;
    assert!(dir.join("pod/shop/web.json").exists());
    assert!(dir.join("networkpolicy/shop/deny-all.json").exists());
}

/// The binary, end to end: `palisade control --kubeconfig` lists the
/// cluster, serves it, and follows it; `palisade status` shows the
/// workloads of the API server.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn palisade_control_serves_the_cluster_of_the_api_server() {
    let api = cluster().await;
    let fx = control_support::Fixture::new();
    let kubeconfig = api.kubeconfig(fx.root.path());
    let listen = control_support::free_port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .arg("control")
        .arg("--kubeconfig")
        .arg(&kubeconfig)
        .arg("--ca")
        .arg(&fx.ca_dir)
        .arg("--state-dir")
        .arg(&fx.state)
        .args(["--listen", &listen.to_string(), "--debounce", "100ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let child = control_support::Proc(child);
    let mut lines = String::new();
    while !lines.contains("listening on") {
        assert!(stdout.read_line(&mut lines).unwrap() > 0, "{lines}");
    }
    assert!(lines.contains("mirrored the API server into"), "{lines}");
    let workloads = || async {
        palisade_control::cli::control::fetch_status(&listen.to_string(), &fx.ca)
            .await
            .unwrap()
            .control
            .unwrap()
    };
    let control = workloads().await;
    assert!(control.last_compile_ok, "{:?}", control.manifest_errors);
    assert_eq!(control.workloads, 2);
    // Where the cluster comes from, and the kinds whose CRD is missing.
    assert!(
        control
            .source
            .starts_with("Kubernetes API server, mirrored into"),
        "{}",
        control.source
    );
    assert_eq!(control.source_notes.len(), 3, "{:?}", control.source_notes);
    assert!(
        control
            .source_notes
            .iter()
            .any(|n| n
                .starts_with("serviceentries.networking.istio.io: not served by the API server")),
        "{:?}",
        control.source_notes
    );

    // A pod created in the cluster becomes a workload.
    api.apply(&pod("cache", "198.18.0.12"));
    let mut seen = 0;
    for _ in 0..100 {
        seen = workloads().await.workloads;
        if seen == 3 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, 3);
    // An object the loader refuses is reported; the last good state stays.
    api.apply("apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {namespace: shop, name: custom}\nspec:\n  action: CUSTOM\n  provider: {name: ext}\n  rules: [{}]\n");
    let mut control = workloads().await;
    for _ in 0..100 {
        if !control.last_compile_ok {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        control = workloads().await;
    }
    assert!(!control.last_compile_ok);
    assert!(
        control
            .manifest_errors
            .iter()
            .any(|e| e.contains("shop/custom")),
        "{:?}",
        control.manifest_errors
    );
    assert_eq!(control.workloads, 3);
    drop(child);
}
