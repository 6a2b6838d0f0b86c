//! The real `palisade-proxy run` binary: admin endpoints, SIGHUP reload,
//! SIGTERM drain that lets an in-flight request finish, and fast failure on
//! a bad config.
mod support;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use palisade_api::MtlsMode;
use support::*;

fn signal(child: &Child, sig: &str) {
    let ok = Command::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
}

/// Waits until the sidecar at `admin` answers /ready; false if `child`
/// exits first (a listener port taken meanwhile by a parallel test: the
/// ports are picked free, then released) or 10 s pass.
/// Ready: the child logged that it is (so it bound its listeners: another
/// test's sidecar that took the same free port would answer `/ready` too)
/// and its admin says so.
async fn wait_ready(child: &mut Running, admin: std::net::SocketAddr, log: &Path) -> bool {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        if child.0.try_wait().ok().flatten().is_some() {
            return false;
        }
        let logged_ready = std::fs::read_to_string(log)
            .is_ok_and(|l| l.contains(&format!("\"admin_addr\":\"{admin}\"")));
        if logged_ready
            && tokio::net::TcpStream::connect(admin).await.is_ok()
            && http_get(admin, "/ready", "a").await.0 == 200
        {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    false
}

/// A ready server sidecar binary (explicit mode) in front of `app`.
async fn spawn_server(
    ca: &TestCa,
    cfg_path: &std::path::Path,
    app_port: u16,
) -> (Running, std::net::SocketAddr, std::net::SocketAddr) {
    spawn_server_with(ca, cfg_path, app_port, &["--workers", "1"]).await
}

/// [`spawn_server`] with other `run` flags (`--workers` among them). A
/// start that fails (a port picked free and taken before the sidecar bound
/// it) is retried on new ports; the last attempt's log is in the panic.
async fn spawn_server_with(
    ca: &TestCa,
    cfg_path: &std::path::Path,
    app_port: u16,
    extra: &[&str],
) -> (Running, std::net::SocketAddr, std::net::SocketAddr) {
    let svid = ca.svid_dir("bin", &id("back", "server"));
    let log = ca.dir.path().join("proxy.log");
    for _attempt in 0..4 {
        let inbound: std::net::SocketAddr = format!("127.0.0.2:{}", free_port("127.0.0.2"))
            .parse()
            .unwrap();
        let admin: std::net::SocketAddr = format!("127.0.0.2:{}", free_port("127.0.0.2"))
            .parse()
            .unwrap();
        let outbound = format!("127.0.0.2:{}", free_port("127.0.0.2"));
        let child = Command::new(env!("CARGO_BIN_EXE_palisade-proxy"))
            .args(["run", "--config"])
            .arg(cfg_path)
            .arg("--svid-dir")
            .arg(&svid)
            .args(["--inbound-listen", &inbound.to_string()])
            .args(["--outbound-listen", &outbound])
            .args(["--admin-listen", &admin.to_string()])
            .args(["--inbound-app-port", &app_port.to_string()])
            .args(["--config-poll", "1h", "--drain-deadline", "5s"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut child = Running(child);
        if wait_ready(&mut child, admin, &log).await {
            return (child, inbound, admin);
        }
    }
    panic!(
        "the sidecar never became ready: {}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_endpoints_and_sighup_reload() {
    let ca = TestCa::new();
    let app = http_app("app").await;
    let mut cfg = config("back", "server", "127.0.0.2");
    cfg.inbound.mtls = MtlsMode::Permissive;
    let path = ca.write_config("bin.json", &cfg);
    let (child, inbound, admin) = spawn_server(&ca, &path, app.port()).await;
    assert_eq!(http_get(admin, "/live", "a").await.0, 200);
    let (s, _, body) = http_get(admin, "/config", "a").await;
    assert_eq!(s, 200);
    let v: serde_json::Value = serde_json::from_str(&body).unwrap();
    assert_eq!(v["version"], cfg.compute_version());
    assert_eq!(v["identity"], id("back", "server"));
    let (_, _, m) = http_get(admin, "/metrics", "a").await;
    assert!(
        m.contains(&format!(
            "palisade_config_info{{version=\"{}\"}} 1",
            cfg.compute_version()
        )),
        "{m}"
    );
    // The identity: the SVID's expiry (the test CA issues for an hour or
    // more) and the one root; no control plane metrics in static mode.
    let gauge = |name: &str| {
        m.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<i64>().ok())
            .unwrap_or_else(|| panic!("no {name} in {m}"))
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let expiry = gauge("palisade_svid_expiry_timestamp_seconds");
    assert!(expiry > now + 60, "expiry {expiry}, now {now}");
    assert_eq!(gauge("palisade_trust_bundle_roots"), 1);
    assert!(!m.contains("palisade_svid_renewals_total"), "{m}");
    assert!(!m.contains("palisade_control_plane_connected"), "{m}");
    assert_eq!(http_get(inbound, "/x", "h").await.0, 200);

    // The poll interval is an hour: only SIGHUP can make this reload.
    cfg.inbound.mtls = MtlsMode::Strict;
    write_config(&path, &cfg);
    signal(&child.0, "-HUP");
    let start = Instant::now();
    loop {
        let (_, _, body) = http_get(admin, "/config", "a").await;
        if body.contains(&cfg.compute_version()) {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "SIGHUP did not reload"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reply = raw_exchange(
        inbound,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(reply.is_empty(), "STRICT after reload");
    // Every denial is one JSON log line naming layer, policy and rule.
    tokio::time::sleep(Duration::from_millis(100)).await;
    let log = std::fs::read_to_string(ca.dir.path().join("proxy.log")).unwrap();
    let line = log
        .lines()
        .find(|l| l.contains("palisade::deny"))
        .unwrap_or_else(|| panic!("no deny line in {log}"));
    let v: serde_json::Value = serde_json::from_str(line).unwrap();
    assert_eq!(v["fields"]["layer"], "Mtls");
    assert_eq!(v["fields"]["policy"], "PeerAuthentication");
    assert_eq!(v["fields"]["rule"], format!("port {} STRICT", app.port()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_in_flight_requests_then_exits() {
    let ca = TestCa::new();
    let app = slow_app(Duration::from_millis(800)).await;
    let mut cfg = config("back", "server", "127.0.0.2");
    cfg.inbound.mtls = MtlsMode::Permissive;
    let path = ca.write_config("bin.json", &cfg);
    let (mut child, inbound, _admin) = spawn_server(&ca, &path, app.port()).await;
    let req = tokio::spawn(async move { http_get(inbound, "/slow", "h").await });
    tokio::time::sleep(Duration::from_millis(200)).await;
    signal(&child.0, "-TERM");
    let (s, _, body) = req.await.unwrap();
    assert_eq!(s, 200, "the in-flight request finishes: {body}");
    let start = Instant::now();
    loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            assert!(status.success(), "{status}");
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(6),
            "did not exit after drain"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // New connections are refused once draining.
    assert!(tokio::net::TcpStream::connect(inbound).await.is_err());
}

/// "A detection timeout is counted in a metric labelled with the port, and
/// its log line names the annotation that would fix it" (the issue): a
/// server-first app on a port not declared opaque, reached in plaintext.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_detection_timeout_log_line_names_the_fixing_annotation() {
    use tokio::io::AsyncReadExt;
    let ca = TestCa::new();
    let app = greeter_app().await;
    let mut cfg = config("back", "server", "127.0.0.2");
    cfg.inbound.mtls = MtlsMode::Permissive;
    let path = ca.write_config("bin.json", &cfg);
    let (_child, inbound, admin) = spawn_server_with(
        &ca,
        &path,
        app.port(),
        &["--workers", "1", "--detect-timeout", "300ms"],
    )
    .await;
    let mut tcp = tokio::net::TcpStream::connect(inbound).await.unwrap();
    let mut greeting = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut greeting))
        .await
        .expect("the greeting arrives after the detection timeout")
        .unwrap();
    assert_eq!(&greeting, b"220 palisade-test ready\r\n");
    let (_, _, m) = http_get(admin, "/metrics", "a").await;
    assert!(
        m.contains(&format!(
            "palisade_detect_timeouts_total{{port=\"{}\"}} 1",
            app.port()
        )),
        "{m}"
    );
    let log = std::fs::read_to_string(ca.dir.path().join("proxy.log")).unwrap();
    let line = log
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| {
            v["fields"]["message"]
                .as_str()
                .is_some_and(|m| m.contains("protocol detection timed out"))
        })
        .unwrap_or_else(|| panic!("no detection-timeout line in {log}"));
    assert_eq!(line["level"], "WARN");
    assert_eq!(line["fields"]["port"], app.port());
    let message = line["fields"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("palisade.dev/opaque-ports"),
        "the line names the annotation: {message}"
    );
}

/// The data-plane threads of a running sidecar, by their name (tokio gives
/// its blocking threads the same name; the data plane starts none).
fn data_threads(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .filter(|name| name.starts_with("palisade-data"))
        .count()
}

/// `--workers N` sets the data-plane threads, so benchmarks compare at
/// equal threads with other proxies.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_sets_the_data_plane_threads() {
    let ca = TestCa::new();
    let app = http_app("app").await;
    let mut cfg = config("back", "server", "127.0.0.2");
    cfg.inbound.mtls = MtlsMode::Permissive;
    let path = ca.write_config("bin.json", &cfg);
    for workers in [1, 3] {
        let n = workers.to_string();
        let (child, inbound, _admin) =
            spawn_server_with(&ca, &path, app.port(), &["--workers", &n]).await;
        assert_eq!(http_get(inbound, "/x", "h").await.0, 200);
        assert_eq!(data_threads(child.0.id()), workers, "--workers {workers}");
    }
}

#[test]
fn a_bad_config_fails_at_start_with_a_clear_error() {
    let ca = TestCa::new();
    let path = ca.dir.path().join("bad.yaml");
    std::fs::write(&path, "mesh:\n  trustDomain: [oops\n").unwrap();
    let svid = ca.svid_dir("bad", &id("back", "server"));
    let out = Command::new(env!("CARGO_BIN_EXE_palisade-proxy"))
        .args(["run", "--config"])
        .arg(&path)
        .arg("--svid-dir")
        .arg(&svid)
        .args([
            "--inbound-listen",
            "127.0.0.2:0",
            "--outbound-listen",
            "127.0.0.2:0",
            "--admin-listen",
            "127.0.0.2:0",
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("bad.yaml") && err.contains("not a valid ProxyConfig"),
        "{err}"
    );
}

async fn slow_app(delay: Duration) -> std::net::SocketAddr {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |_req| async move {
                    tokio::time::sleep(delay).await;
                    Ok::<_, std::convert::Infallible>(hyper::Response::new(
                        http_body_util::Full::new(bytes::Bytes::from_static(b"slow done")),
                    ))
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    addr
}
