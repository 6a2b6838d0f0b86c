//! Multi-process: `palisade control` runs as its own process; join tokens
//! come from `palisade token create`; three sidecar control clients
//! bootstrap from those token files. Killing the control plane leaves the
//! proxies on their last config; a restart (same CA, same state dir) brings
//! them back, and they converge on a change made while it was down.
mod control_support;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use control_support::*;
use palisade_proxy::control_client::{self, ClientOptions};

const BIN: &str = env!("CARGO_BIN_EXE_palisade");

fn spawn_control(fx: &Fixture, listen: SocketAddr) -> Proc {
    let mut child = Command::new(BIN)
        .args(["control", "--config"])
        .arg(&fx.manifests)
        .arg("--ca")
        .arg(&fx.ca_dir)
        .arg("--state-dir")
        .arg(&fx.state)
        .args(["--listen", &listen.to_string(), "--debounce", "100ms"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).unwrap();
    assert!(
        line.contains("listening on"),
        "control plane did not start: {line:?}"
    );
    Proc(child)
}

fn token_create(fx: &Fixture, workload: &str, out: &Path) {
    let status = Command::new(BIN)
        .args([
            "token",
            "create",
            "--workload",
            workload,
            "--ttl",
            "5m",
            "--state-dir",
        ])
        .arg(&fx.state)
        .arg("--out")
        .arg(out)
        .status()
        .unwrap();
    assert!(status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_restart_keeps_proxies_serving_and_they_converge() {
    let fx = Fixture::new();
    let listen = free_port();
    let control = spawn_control(&fx, listen);

    let mut clients = Vec::new();
    for w in WORKLOADS {
        let file = fx
            .root
            .path()
            .join(format!("{}.token", w.replace('/', "_")));
        token_create(&fx, w, &file);
        let text = std::fs::read_to_string(&file).unwrap();
        assert!(
            text.contains("identity: spiffe://mesh.test/ns/shop/sa/"),
            "{text}"
        );
        let mut o = ClientOptions::new(&listen.to_string(), w, file);
        o.backoff_initial = Duration::from_millis(50);
        o.backoff_max = Duration::from_millis(300);
        let mut c = control_client::start(o).await.unwrap();
        c.wait_for_config(Duration::from_secs(5))
            .await
            .expect("config");
        clients.push(c);
    }

    // `palisade status` (its own process) sees all three.
    let out = Command::new(BIN)
        .args(["status", "--json", "--control", &listen.to_string(), "--ca"])
        .arg(&fx.ca_dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(status["proxies"].as_array().unwrap().len(), 3, "{status}");

    // The table form names every workload and its identity.
    let out = Command::new(BIN)
        .args(["status", "--control", &listen.to_string(), "--ca"])
        .arg(&fx.ca_dir)
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    for w in WORKLOADS {
        assert!(table.contains(w), "{table}");
    }
    assert!(table.contains("ACK"), "{table}");
    assert!(table.contains(&id_of("db")), "{table}");

    // Kill the control plane hard. Proxies keep their config.
    let before: Vec<String> = clients
        .iter()
        .map(|c| c.config.borrow().as_ref().unwrap().version.clone())
        .collect();
    drop(control);
    for c in &clients {
        let s = c.status.clone();
        eventually(Duration::from_secs(3), || !s.borrow().connected)
            .await
            .expect("client notices the control plane is gone");
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    for (c, v) in clients.iter().zip(&before) {
        assert_eq!(
            &c.config.borrow().as_ref().unwrap().version,
            v,
            "last config kept"
        );
    }

    // Change the policy while it is down, then restart it.
    fx.write_policy(7000);
    let _control = spawn_control(&fx, listen);
    let db = &clients[2];
    eventually(Duration::from_secs(5), || {
        db.config.borrow().as_ref().unwrap().version != before[2]
    })
    .await
    .expect("db's proxy reconnects and gets the change made while the control plane was down");
    for c in &clients {
        let s = c.status.clone();
        eventually(Duration::from_secs(5), || s.borrow().connected)
            .await
            .expect("every client reconnects");
    }
}
