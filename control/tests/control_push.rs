//! Config push end to end: a running control plane and three proxy clients
//! (the sidecar's real `control_client`) over mTLS on loopback. A policy file
//! edited on disk reaches the affected proxies within a second, and only
//! them; a broken manifest is reported and never replaces the good state;
//! a config the proxy rejects is NACKed and shows in the status.
mod control_support;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use control_support::*;
use palisade_proxy::control_client::{self, ControlClient};

async fn start_clients(
    fx: &Fixture,
    addr: std::net::SocketAddr,
) -> BTreeMap<&'static str, ControlClient> {
    let mut clients = BTreeMap::new();
    for w in WORKLOADS {
        let mut c = control_client::start(fx.client_options(addr, w))
            .await
            .unwrap();
        let cfg = c
            .wait_for_config(Duration::from_secs(5))
            .await
            .expect("first config");
        assert_eq!(
            format!("{}/{}", cfg.workload.namespace, cfg.workload.name),
            w
        );
        clients.insert(w, c);
    }
    clients
}

fn versions(clients: &BTreeMap<&'static str, ControlClient>) -> BTreeMap<&'static str, String> {
    clients
        .iter()
        .map(|(w, c)| (*w, c.config.borrow().as_ref().unwrap().version.clone()))
        .collect()
}

/// The workloads whose compiled config differs between two manifest sets,
/// computed with the compiler itself (so the test does not hard-code which
/// workloads a NetworkPolicy change touches).
fn changed_between(a: u16, b: u16) -> Vec<String> {
    let compile = palisade_control::server::manifest_compiler();
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    write_manifests(dir_a.path(), a);
    write_manifests(dir_b.path(), b);
    let ca = compile(dir_a.path()).unwrap();
    let cb = compile(dir_b.path()).unwrap();
    let v = |c: &palisade_api::ProxyConfig| palisade_control::server::state::content_version(c);
    ca.keys()
        .filter(|w| v(&ca[*w]) != v(&cb[*w]))
        .cloned()
        .collect()
}

#[tokio::test]
async fn policy_edit_reaches_affected_proxies_within_one_second_and_only_them() {
    let fx = Fixture::new();
    let srv = fx.start().await;
    let clients = start_clients(&fx, srv.addr).await;
    let before = versions(&clients);
    let expected_changed = changed_between(5432, 6543);
    assert!(
        expected_changed.contains(&"shop/db-0".to_string()),
        "{expected_changed:?}"
    );
    assert!(
        expected_changed.len() < WORKLOADS.len(),
        "the edit must leave some workload untouched: {expected_changed:?}"
    );

    // Edit the policy file on disk: db now admits api on 6543 instead of 5432.
    fx.write_policy(6543);
    let db = &clients["shop/db-0"];
    let took = eventually(Duration::from_secs(1), || {
        db.config.borrow().as_ref().unwrap().version != before["shop/db-0"]
    })
    .await
    .expect("db's proxy must see the new policy within 1 s");
    eprintln!("policy edit -> applied on db's proxy in {took:?}");
    let ingress = serde_json::to_string(&db.config.borrow().as_ref().unwrap().inbound).unwrap();
    assert!(ingress.contains("6543"), "{ingress}");

    // Give any (wrong) extra pushes time to arrive, then compare.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = versions(&clients);
    for w in WORKLOADS {
        let pushed = after[w] != before[w];
        assert_eq!(pushed, expected_changed.contains(&w.to_string()), "{w}");
    }
    // The control plane knows what each proxy applied.
    let status = palisade_control::cli::control::fetch_status(&srv.addr.to_string(), &fx.ca)
        .await
        .unwrap();
    assert_eq!(status.proxies.len(), 3);
    for p in &status.proxies {
        let w: &str = &p.workload;
        assert_eq!(p.applied_version, after[w], "{w}");
        assert!(p.last_response.starts_with("ACK"), "{p:?}");
        assert!(p.cert_expires_unix > 0);
    }
    srv.shutdown().await;
}

#[tokio::test]
async fn broken_manifest_is_reported_and_the_last_good_state_is_kept() {
    let fx = Fixture::new();
    let srv = fx.start().await;
    let clients = start_clients(&fx, srv.addr).await;
    let before = versions(&clients);

    // A NetworkPolicy with a bad CIDR: a field error, nothing may change.
    let bad = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: shop\n  name: broken\nspec:\n  podSelector: {}\n  ingress:\n    - from:\n        - ipBlock:\n            cidr: 10.0.0.0/99\n";
    write_atomic(&fx.manifests.join("04-broken.yaml"), bad);
    let state = srv.state.clone();
    eventually(Duration::from_secs(2), || !state.compile_status().ok)
        .await
        .expect("the broken manifest must be reported");
    let status = palisade_control::cli::control::fetch_status(&srv.addr.to_string(), &fx.ca)
        .await
        .unwrap();
    let control = status.control.unwrap();
    assert!(
        control.source.starts_with("directory "),
        "{}",
        control.source
    );
    assert!(control.source_notes.is_empty());
    assert!(!control.last_compile_ok);
    let errors = control.manifest_errors.join("\n");
    assert!(errors.contains("04-broken.yaml"), "{errors}");
    assert!(errors.contains("broken"), "{errors}");
    assert_eq!(control.workloads, 3, "last good state still served");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        versions(&clients),
        before,
        "nothing pushed from a broken manifest"
    );

    // Fixing it recovers.
    std::fs::remove_file(fx.manifests.join("04-broken.yaml")).unwrap();
    eventually(Duration::from_secs(2), || state.compile_status().ok)
        .await
        .expect("fixed manifests compile again");
    srv.shutdown().await;
}

#[tokio::test]
async fn a_config_the_proxy_rejects_is_nacked_and_kept_out() {
    let fx = Fixture::new();
    let srv = fx.start().await;
    // The data path's validator refuses any config admitting port 6543.
    let mut opts = fx.client_options(srv.addr, "shop/db-0");
    opts.validate = Some(Arc::new(|c: &palisade_api::ProxyConfig| {
        let s = serde_json::to_string(&c.inbound).unwrap_or_default();
        if s.contains("6543") {
            Err("port 6543 not supported here".into())
        } else {
            Ok(())
        }
    }));
    let mut db = control_client::start(opts).await.unwrap();
    let first = db.wait_for_config(Duration::from_secs(5)).await.unwrap();
    fx.write_policy(6543);
    let registry = srv.registry.clone();
    eventually(Duration::from_secs(2), || {
        registry
            .snapshot()
            .iter()
            .any(|p| p.last_response.starts_with("NACK"))
    })
    .await
    .expect("NACK recorded by the control plane");
    let snap = registry.snapshot();
    assert!(
        snap[0].last_response.contains("port 6543 not supported"),
        "{snap:?}"
    );
    assert_eq!(snap[0].applied_version, first.version);
    assert_eq!(db.config.borrow().as_ref().unwrap().version, first.version);
    assert_eq!(db.status.borrow().nacks, 1);
    srv.shutdown().await;
}
