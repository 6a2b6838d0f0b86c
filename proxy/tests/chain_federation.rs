//! Two sidecars in different trust domains that federate: each holds the
//! other's bundle in its SVID directory's `federated/` folder. The client
//! in `remote.test` calls the server in `cluster.local` over mTLS, the
//! server's authorization matches the remote principal, and the app is
//! told the remote SPIFFE ID. The remote client's address is not in the
//! server's peer table (which lists this mesh's workloads); from an address
//! that is, it is refused. Without the federated bundle the handshake
//! is refused; adding it applies to the next connection, no restart.
//! (That a federated CA cannot vouch for a local identity is checked where
//! the handshake's verifier decides it, in `identity/tests/federation.rs`.)
mod support;

use std::path::Path;
use std::time::{Duration, Instant};

use palisade_api::AuthzAction;
use palisade_identity::federation::FEDERATED_DIR;

use support::*;

const REMOTE_TD: &str = "remote.test";
const REMOTE_CLIENT: &str = "spiffe://remote.test/ns/front/sa/client";

fn federate(svid_dir: &Path, trust_domain: &str, ca: &TestCa) {
    let dir = svid_dir.join(FEDERATED_DIR);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{trust_domain}.pem")), ca.bundle_pem()).unwrap();
}

/// GETs `/` through `addr` every 100 ms until `done(status)` or 10 s
/// have passed; the last (status, body).
async fn get_until(addr: std::net::SocketAddr, done: impl Fn(u16) -> bool) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, _, body) = http_get(addr, "/", "svc").await;
        if done(status) || Instant::now() > deadline {
            return (status, body);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Server B in `cluster.local` (config `b_cfg`, app `app`) and client A in
/// `remote.test`, which trusts `cluster.local` through its SVID directory's
/// `federated/` folder, or through its config when `a_by_config`.
struct Pair {
    local_ca: TestCa,
    remote_ca: TestCa,
    b: palisade_proxy::app::Proxy,
    b_svid: std::path::PathBuf,
    b_config_path: std::path::PathBuf,
    a: palisade_proxy::app::Proxy,
}

fn pair(app: std::net::SocketAddr, b_cfg: &palisade_api::ProxyConfig, a_by_config: bool) -> Pair {
    init_tracing();
    let local_ca = TestCa::new();
    let remote_ca = TestCa::in_trust_domain(REMOTE_TD);
    let b_svid = local_ca.svid_dir("b", &id("back", "server"));
    let b_config_path = local_ca.write_config("b.json", b_cfg);
    let b = sidecar(
        &b_config_path,
        &b_svid,
        "127.0.0.2",
        palisade_proxy::ctx::Options {
            inbound_app_port: Some(app.port()),
            ..opts()
        },
    );
    let mut a_cfg = config("front", "client", "127.0.0.1");
    a_cfg.mesh.trust_domain = REMOTE_TD.into();
    a_cfg.workload.identity = REMOTE_CLIENT.into();
    a_cfg.peers.push(peer("127.0.0.2", "back", "server"));
    let a_svid = remote_ca.svid_dir("a", REMOTE_CLIENT);
    if a_by_config {
        a_cfg
            .mesh
            .federated_bundles
            .insert(support::TD.into(), local_ca.bundle_pem());
    } else {
        federate(&a_svid, support::TD, &local_ca);
    }
    let a = sidecar(
        &remote_ca.write_config("a.json", &a_cfg),
        &a_svid,
        "127.0.0.1",
        palisade_proxy::ctx::Options {
            outbound_to: Some(b.inbound_addr),
            ..opts()
        },
    );
    Pair {
        local_ca,
        remote_ca,
        b,
        b_svid,
        b_config_path,
        a,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sidecars_of_federated_trust_domains_talk_and_authorize_the_remote_principal() {
    let app = http_app("one").await;
    // The server allows only the remote client. Its peer table lists only
    // this mesh's workloads: the remote client's address is not in it.
    let mut b_cfg = config("back", "server", "127.0.0.2");
    b_cfg.authorization.push(authz(
        "remote-client-only",
        AuthzAction::Allow,
        vec![principals_rule(&["remote.test/ns/front/sa/client"])],
    ));
    let Pair {
        local_ca: _local_ca,
        remote_ca,
        b,
        b_svid,
        b_config_path,
        a,
    } = pair(app, &b_cfg, false);

    // The server does not federate yet: the client's SVID has no bundle.
    let (status, _, body) = http_get(a.outbound_addr, "/", "svc").await;
    assert!(status >= 500, "{status} {body}");
    let failed = "palisade_connections_total{direction=\"Inbound\",outcome=\"Failed\"}";
    let m = metrics_once(&b, failed, 1.0).await;
    assert!(
        metric_value(&m, failed) >= 1.0,
        "the server refused the handshake: {m}"
    );
    assert!(
        !m.contains("palisade_tls_handshakes_total{direction=\"Inbound\"}"),
        "{m}"
    );
    assert!(
        metric_value(
            &m,
            "palisade_peer_svid_rejections_total{direction=\"Inbound\",reason=\"unknown-trust-domain\"}"
        ) >= 1.0,
        "counted by the rule that refused it: {m}"
    );

    // Federating applies to the next handshake.
    federate(&b_svid, REMOTE_TD, &remote_ca);
    let (status, body) = get_until(a.outbound_addr, |status| status == 200).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("peer={REMOTE_CLIENT}")), "{body}");

    // An address that belongs to one of this mesh's workloads belongs to
    // that workload's identity, not to a federated one: once the server's
    // peer table gives 127.0.0.1 to a local workload, the remote client's
    // connection from it is closed and refused.
    b_cfg.peers.push(peer("127.0.0.1", "front", "client"));
    write_config(&b_config_path, &b_cfg);
    let (status, _) = get_until(a.outbound_addr, |status| status != 200).await;
    assert!(status >= 500, "{status}");
    let m = metrics(&b).await;
    assert!(
        metric_value(
            &m,
            "palisade_denials_total{direction=\"Inbound\",layer=\"Identity\"}"
        ) >= 1.0,
        "{m}"
    );
    // The pooled mesh connection was closed by the re-check of the new
    // config, not left to carry requests.
    assert_eq!(
        metric_value(
            &m,
            "palisade_closed_by_policy_change_total{direction=\"Inbound\"}"
        ),
        1.0,
        "{m}"
    );
}

/// The same federation pushed with the config (`mesh.federatedBundles`, as
/// the control plane compiles it from MeshConfig `federatedTrustDomains`)
/// instead of the SVID directory: applied on reload, and a config whose
/// bundle does not parse is refused while the last good one stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_federated_bundle_pushed_with_the_config_applies_on_reload() {
    let app = http_app("one").await;
    let mut b_cfg = config("back", "server", "127.0.0.2");
    let Pair {
        local_ca: _local_ca,
        remote_ca,
        b,
        b_svid: _,
        b_config_path,
        a,
    } = pair(app, &b_cfg, true);
    let (status, _, _) = http_get(a.outbound_addr, "/", "svc").await;
    assert!(status >= 500, "{status}: the server does not federate yet");

    // A bundle that does not parse: refused, counted, the old config stays.
    b_cfg
        .mesh
        .federated_bundles
        .insert(REMOTE_TD.into(), "not PEM".into());
    write_config(&b_config_path, &b_cfg);
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric_value(&metrics(&b).await, "palisade_config_reload_errors_total") < 1.0 {
        assert!(Instant::now() < deadline, "the bad config was not refused");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    b_cfg
        .mesh
        .federated_bundles
        .insert(REMOTE_TD.into(), remote_ca.bundle_pem());
    write_config(&b_config_path, &b_cfg);
    let (status, body) = get_until(a.outbound_addr, |status| status == 200).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("peer={REMOTE_CLIENT}")), "{body}");
}
