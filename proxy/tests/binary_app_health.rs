//! The real binary answers the app's kubelet probes that `palisade inject`
//! rewrote to `/app-health/<container>/<probe>` on the admin port, by probing
//! the app itself as `PALISADE_APP_PROBES` describes; and `wait-ready` holds
//! until the admin port says ready.
mod support;

use std::process::{Command, Stdio};
use std::time::Instant;

use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn app_health_probes_reach_the_app_and_wait_ready_holds_until_ready() {
    let ca = TestCa::new();
    let app = http_app("app").await;
    let closed = free_port("127.0.0.1");
    let cfg = config("back", "server", "127.0.0.1");
    let path = ca.write_config("health.json", &cfg);
    let svid = ca.svid_dir("health", &id("back", "server"));
    let admin: std::net::SocketAddr = format!("127.0.0.1:{}", free_port("127.0.0.1"))
        .parse()
        .unwrap();
    let probes = format!(
        r#"{{"/app-health/app/livez":{{"httpGet":{{"path":"/healthz","port":{app},"scheme":"HTTP","httpHeaders":[]}}}},
            "/app-health/app/readyz":{{"tcpSocket":{{"port":{app}}}}},
            "/app-health/app/startupz":{{"tcpSocket":{{"port":{closed}}}}}}}"#,
        app = app.port()
    );
    let _proxy = Running(
        Command::new(env!("CARGO_BIN_EXE_palisade-proxy"))
            .args(["run", "--config"])
            .arg(&path)
            .arg("--svid-dir")
            .arg(&svid)
            .args([
                "--inbound-listen",
                &format!("127.0.0.1:{}", free_port("127.0.0.1")),
            ])
            .args([
                "--outbound-listen",
                &format!("127.0.0.1:{}", free_port("127.0.0.1")),
            ])
            .args(["--admin-listen", &admin.to_string(), "--workers", "1"])
            .env("PALISADE_APP_PROBES", probes)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    // wait-ready returns once the admin port says ready.
    let started = Instant::now();
    let status = Command::new(env!("CARGO_BIN_EXE_palisade-proxy"))
        .args([
            "wait-ready",
            "--admin",
            &admin.to_string(),
            "--timeout",
            "20s",
        ])
        .status()
        .unwrap();
    assert!(
        status.success(),
        "wait-ready failed after {:?}",
        started.elapsed()
    );
    assert_eq!(http_get(admin, "/ready", "a").await.0, 200);

    assert_eq!(http_get(admin, "/app-health/app/livez", "a").await.0, 200);
    assert_eq!(http_get(admin, "/app-health/app/readyz", "a").await.0, 200);
    // The app does not listen there: the probe fails, so the kubelet sees it.
    assert_eq!(
        http_get(admin, "/app-health/app/startupz", "a").await.0,
        503
    );
    // Paths the injector did not write are not probes.
    assert_eq!(http_get(admin, "/app-health/other/livez", "a").await.0, 404);

    // wait-ready gives up, with an error, when nothing answers.
    let nothing = format!("127.0.0.1:{closed}");
    let out = Command::new(env!("CARGO_BIN_EXE_palisade-proxy"))
        .args(["wait-ready", "--admin", &nothing, "--timeout", "500ms"])
        .env("RUST_BACKTRACE", "0")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("not ready within"));
}
