//! Rotating the mesh CA under load, with the operator's commands
//! (`palisade ca rotate prepare|activate|finish` against a running control
//! plane that follows its CA directory). Two workloads exchange mTLS
//! requests through rustls configs that read their sidecar clients'
//! `CredentialStore`s, a new handshake per request, plus one connection
//! held open from start to end. No request may fail at any step; at the end
//! only the new root is trusted, every SVID comes from the new CA, and the
//! old SVID is refused. The guards refuse a step out of order and a finish
//! while a sidecar still holds an old SVID.
mod control_support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use control_support::*;
use palisade_identity::verify::issued_by;
use palisade_identity::{CertificateAuthority, CredentialStore, SpiffeId};
use palisade_proxy::control_client::{self, ControlClient};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const BIN: &str = env!("CARGO_BIN_EXE_palisade");

fn palisade(args: &[&str], ca: &Path) -> Output {
    let mut cmd = Command::new(BIN);
    cmd.args(["ca", "rotate"])
        .args(&args[..1])
        .arg("--ca")
        .arg(ca);
    cmd.args(&args[1..]);
    let out = cmd.output().unwrap();
    eprintln!(
        "palisade ca rotate {args:?}: {}\n{}{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Serves ping/pong on every mTLS connection until the client closes it.
async fn pong_server(store: Arc<CredentialStore>) -> SocketAddr {
    let acceptor = TlsAcceptor::from(Arc::new(palisade_identity::server_config(&store).unwrap()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(mut tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let mut buf = [0u8; 4];
                while tls.read_exact(&mut buf).await.is_ok() {
                    if tls.write_all(b"pong").await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

type Tls = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

async fn connect(store: &Arc<CredentialStore>, to: SocketAddr) -> std::io::Result<Tls> {
    let config = palisade_identity::client_config(store, SpiffeId::parse(&id_of("web")).unwrap())
        .map_err(std::io::Error::other)?;
    let tcp = tokio::net::TcpStream::connect(to).await?;
    let name = rustls::pki_types::ServerName::IpAddress(to.ip().into());
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

async fn ping(tls: &mut Tls) -> std::io::Result<()> {
    tls.write_all(b"ping").await?;
    let mut buf = [0u8; 4];
    tls.read_exact(&mut buf).await?;
    if &buf == b"pong" {
        Ok(())
    } else {
        Err(std::io::Error::other("not pong"))
    }
}

/// mTLS requests from `store` to the pong server at `to`, a new
/// handshake each, on `workers` tasks until `finish`.
struct Load {
    ok: Arc<AtomicU64>,
    failed: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl Load {
    fn start(store: &Arc<CredentialStore>, to: SocketAddr, workers: usize) -> Load {
        let (ok, failed, stop) = (
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicU64::new(0)),
            Arc::new(AtomicBool::new(false)),
        );
        let tasks = (0..workers)
            .map(|_| {
                let (store, ok, failed, stop) =
                    (store.clone(), ok.clone(), failed.clone(), stop.clone());
                tokio::spawn(async move {
                    while !stop.load(Ordering::Relaxed) {
                        let result = async {
                            let mut tls = connect(&store, to).await?;
                            ping(&mut tls).await
                        }
                        .await;
                        match result {
                            Ok(()) => ok.fetch_add(1, Ordering::Relaxed),
                            Err(e) => {
                                eprintln!("request failed: {e}");
                                failed.fetch_add(1, Ordering::Relaxed)
                            }
                        };
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                })
            })
            .collect();
        Load {
            ok,
            failed,
            stop,
            tasks,
        }
    }

    /// Stops the load; (requests that succeeded, requests that failed).
    async fn finish(self) -> (u64, u64) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.tasks {
            t.await.unwrap();
        }
        (
            self.ok.load(Ordering::Relaxed),
            self.failed.load(Ordering::Relaxed),
        )
    }
}

/// A control plane following the fixture's CA directory (polled every
/// 100 ms), with `configure` applied to its options first.
async fn following_server(
    fx: &Fixture,
    configure: impl FnOnce(&mut palisade_control::server::ServerOptions),
) -> palisade_control::server::RunningServer {
    let mut opts = fx.options();
    opts.ca_dir = Some(fx.ca_dir.clone());
    opts.ca_poll_interval = Duration::from_millis(100);
    configure(&mut opts);
    fx.start_with(opts).await
}

/// A new CA (a new root) for trust domain `td`.
fn fresh_ca(td: &str) -> CertificateAuthority {
    CertificateAuthority::create(
        &palisade_identity::TrustDomain::new(td).unwrap(),
        &palisade_identity::CaOptions::default(),
    )
    .unwrap()
}

fn roots(client: &ControlClient) -> usize {
    client.credentials.current().bundle().roots().len()
}

fn signed_by(client: &ControlClient, signer: &CertificateAuthority) -> bool {
    let creds = client.credentials.current();
    issued_by(&creds.certified_key().cert[0], signer.signing_cert())
}

fn load_ca(dir: &Path) -> CertificateAuthority {
    CertificateAuthority::load_dir(dir, None).unwrap()
}

/// The bundle endpoint's document: (number of keys, spiffe_sequence).
fn served_bundle(at: SocketAddr) -> (usize, u64) {
    let out = Command::new("curl")
        .args(["-sk", "--max-time", "5", &format!("https://{at}/")])
        .output()
        .expect("curl runs");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    (
        doc["keys"].as_array().unwrap().len(),
        doc["spiffe_sequence"].as_u64().unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ca_rotates_under_load_with_zero_failed_requests() {
    let fx = Fixture::new();
    let srv = following_server(&fx, |o| {
        o.bundle_endpoint = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let control = srv.addr.to_string();
    let endpoint = srv.bundle_endpoint.unwrap();
    let start = |workload: &str, spread: Duration| {
        let mut o = fx.client_options(srv.addr, workload);
        o.reissue_spread = spread;
        control_client::start(o)
    };
    let web = start("shop/web-0", Duration::from_secs(1)).await.unwrap();
    let api = start("shop/api-0", Duration::from_secs(1)).await.unwrap();
    // db renews only at half-life (12 h): the sidecar finish must wait for.
    let db = start("shop/db-0", Duration::from_secs(3600)).await.unwrap();
    let old_ca = load_ca(&fx.ca_dir);
    let old_api = api.credentials.current();
    let (keys, first_sequence) = served_bundle(endpoint);
    assert_eq!(keys, 1);

    let web_addr = pong_server(web.credentials.clone()).await;
    let mut held = connect(&api.credentials, web_addr).await.unwrap();
    ping(&mut held).await.unwrap();
    let load = Load::start(&api.credentials, web_addr, 3);

    // Requests must flow in every phase, not only before or after.
    let flows = |since: u64| {
        let ok = load.ok.clone();
        async move {
            eventually(Duration::from_secs(20), || {
                ok.load(Ordering::Relaxed) >= since + 20
            })
            .await
            .expect("requests flow");
            ok.load(Ordering::Relaxed)
        }
    };
    let mut seen = flows(0).await;

    // Out of order: nothing is prepared.
    let out = palisade(&["activate", "--control", &control], &fx.ca_dir);
    assert_eq!(out.status.code(), Some(2));

    // 1. prepare: every sidecar learns the new root; the old CA signs.
    let out = palisade(&["prepare"], &fx.ca_dir);
    assert!(out.status.success());
    let within = Duration::from_secs(15);
    eventually(within, || {
        roots(&web) == 2 && roots(&api) == 2 && roots(&db) == 2
    })
    .await
    .expect("the new root reaches every sidecar");
    assert!(signed_by(&api, &old_ca), "prepare changes no SVID");
    let (keys, sequence) = served_bundle(endpoint);
    assert_eq!(
        keys, 2,
        "federated peers learn the new root before it signs"
    );
    assert!(sequence > first_sequence);
    seen = flows(seen).await;

    // 2. activate, once the control plane sees every config applied.
    let out = palisade(
        &["activate", "--control", &control, "--wait", "10s"],
        &fx.ca_dir,
    );
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("has loaded it"),
        "activate waits for the control plane to sign with the new CA"
    );
    let new_ca = load_ca(&fx.ca_dir);
    assert_ne!(new_ca.signing_cert(), old_ca.signing_cert());
    eventually(within, || {
        signed_by(&web, &new_ca) && signed_by(&api, &new_ca)
    })
    .await
    .expect("sidecars renew from the new CA within the spread");
    assert!(signed_by(&db, &old_ca), "db's spread is an hour");
    seen = flows(seen).await;

    // 3. finish is refused while db holds an SVID of the old root...
    let out = palisade(&["finish", "--control", &control], &fx.ca_dir);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shop/db-0"));
    assert_eq!(
        load_ca(&fx.ca_dir).bundle().roots().len(),
        2,
        "nothing changed"
    );
    // ... and goes ahead once db is gone (or renewed).
    db.stop();
    let out = palisade(
        &["finish", "--control", &control, "--wait", "10s"],
        &fx.ca_dir,
    );
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains("has loaded it"));
    eventually(within, || roots(&web) == 1 && roots(&api) == 1)
        .await
        .expect("the old root leaves every sidecar");
    let (keys, last_sequence) = served_bundle(endpoint);
    assert_eq!(keys, 1);
    assert!(last_sequence > sequence);

    flows(seen).await;
    let (ok, failed) = load.finish().await;
    eprintln!("requests ok={ok} failed={failed}");
    assert_eq!(failed, 0, "no request may fail during the rotation");
    ping(&mut held)
        .await
        .expect("a connection opened before the rotation stays up");

    // The old SVID, even with the new bundle, is refused by web now.
    let stale = CredentialStore::new(old_api.with_bundle(new_ca.bundle().clone()));
    let refused = async {
        let mut tls = connect(&stale, web_addr).await?;
        ping(&mut tls).await
    }
    .await;
    assert!(refused.is_err(), "an SVID of the retired CA is refused");

    // Status tells the whole story.
    let status = palisade_control::cli::control::fetch_status(&control, &srv.ca.current())
        .await
        .unwrap();
    let c = status.control.unwrap();
    assert_eq!(c.trust_roots.len(), 1);
    assert!(c.trust_roots[0].signing);
    assert!(c.ca_error.is_empty());
    assert_eq!(
        c.svid_signer,
        palisade_identity::verify::fingerprint(new_ca.signing_cert())
    );
    assert!(!status.proxies.is_empty());
    for p in &status.proxies {
        assert!(p.svid_current_signer, "{}", p.workload);
        assert!(p.config_current, "{}", p.workload);
        assert_eq!(p.svid_root, c.trust_roots[0].sha256);
    }
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_directory_that_does_not_load_changes_nothing() {
    let fx = Fixture::new();
    let srv = following_server(&fx, |_| {}).await;
    let api = control_client::start(fx.client_options(srv.addr, "shop/api-0"))
        .await
        .unwrap();
    let before = srv.ca.current();
    // A key that does not fit the certificate.
    let other = fresh_ca(TD);
    let scratch = fx.root.path().join("other");
    other.write_dir(&scratch).unwrap();
    std::fs::copy(scratch.join("ca.key"), fx.ca_dir.join("ca.key")).unwrap();
    eventually(Duration::from_secs(10), || srv.ca.report().error.is_some())
        .await
        .expect("the failed reload is reported");
    let error = srv.ca.report().error.unwrap();
    assert!(error.contains("does not match"), "{error}");
    assert!(
        Arc::ptr_eq(&before, &srv.ca.current()),
        "the CA in force stays"
    );
    // Another trust domain is refused too, even when the files fit.
    let foreign = fresh_ca("elsewhere.test");
    foreign.write_dir(&fx.ca_dir).unwrap();
    eventually(Duration::from_secs(10), || {
        srv.ca
            .report()
            .error
            .is_some_and(|e| e.contains("another trust domain"))
    })
    .await
    .expect("a trust domain change is refused");
    assert!(Arc::ptr_eq(&before, &srv.ca.current()));
    // The old CA still signs: a renewal through the control plane works.
    let status = palisade_control::cli::control::fetch_status(&srv.addr.to_string(), &before)
        .await
        .unwrap();
    let c = status.control.unwrap();
    assert!(
        c.ca_error.contains("another trust domain"),
        "{}",
        c.ca_error
    );
    assert_eq!(c.trust_roots.len(), 1);
    assert_eq!(api.credentials.current().bundle().roots().len(), 1);
    srv.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broken_manifests_do_not_hold_back_a_new_root() {
    let fx = Fixture::new();
    let srv = following_server(&fx, |_| {}).await;
    let api = control_client::start(fx.client_options(srv.addr, "shop/api-0"))
        .await
        .unwrap();
    write_atomic(
        &fx.manifests.join("99-broken.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: [\n",
    );
    eventually(Duration::from_secs(10), || !srv.state.compile_status().ok)
        .await
        .expect("the broken manifest is seen");
    let out = palisade(&["prepare"], &fx.ca_dir);
    assert!(out.status.success());
    // The last good configs, stamped with the new roots, are pushed anyway.
    eventually(Duration::from_secs(10), || roots(&api) == 2)
        .await
        .expect("the new root reaches the sidecar while the manifests are broken");
    assert!(!srv.state.compile_status().ok, "still reported broken");
    srv.shutdown().await;
}

#[test]
fn status_shows_the_rotation_and_warns_before_the_signer_expires() {
    use palisade_api::stream::{ControlState, ProxyStatus, StatusResponse, TrustRoot};
    let now = palisade_control::server::pki::now_unix();
    let root = |sha: &str, signing| TrustRoot {
        sha256: sha.into(),
        subject: "CN=Palisade root CA".into(),
        expires_unix: now + 3_000 * 86_400,
        signing,
        ..TrustRoot::default()
    };
    let status = |signer_expires| StatusResponse {
        proxies: vec![
            ProxyStatus {
                workload: "shop/web-0".into(),
                svid_root: "bbbb".into(),
                svid_current_signer: true,
                ..ProxyStatus::default()
            },
            ProxyStatus {
                workload: "shop/db-0".into(),
                svid_root: "aaaaaaaaaaaa".into(),
                ..ProxyStatus::default()
            },
            ProxyStatus {
                workload: "shop/api-0".into(),
                ..ProxyStatus::default()
            },
        ],
        control: Some(ControlState {
            trust_roots: vec![root("aaaaaaaaaaaa", false), root("bbbb", true)],
            svid_signer: "bbbb".into(),
            svid_signer_expires_unix: signer_expires,
            ..ControlState::default()
        }),
    };
    let table = palisade_control::cli::control::status_table(&status(now + 400 * 86_400));
    assert!(
        table.contains("not the signer's, kept for a rotation"),
        "{table}"
    );
    let row = |w: &str| {
        table
            .lines()
            .find(|l| l.starts_with(w))
            .unwrap()
            .to_string()
    };
    assert!(row("shop/web-0").trim_end().ends_with("signer"), "{table}");
    assert!(row("shop/db-0").contains("old:aaaaaaaa"), "{table}");
    assert!(row("shop/api-0").contains("UNTRUSTED"), "{table}");
    assert!(!table.contains("WARNING"), "{table}");
    let soon = palisade_control::cli::control::status_table(&status(now + 10 * 86_400 + 60));
    assert!(
        soon.contains("WARNING: the CA signer expires in 10 days"),
        "{soon}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_ca_replaced_in_place_keeps_its_old_root_for_a_grace_period() {
    use palisade_control::server::ca_reload::{CaCell, CaFollow};
    let fx = Fixture::new();
    let srv = following_server(&fx, |o| {
        o.ca_grace_period = Some(Duration::from_secs(5));
        o.bundle_endpoint = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    })
    .await;
    let endpoint = srv.bundle_endpoint.unwrap();
    let start = |workload: &str| {
        let mut o = fx.client_options(srv.addr, workload);
        o.reissue_spread = Duration::from_millis(500);
        control_client::start(o)
    };
    let web = start("shop/web-0").await.unwrap();
    let api = start("shop/api-0").await.unwrap();
    let web_addr = pong_server(web.credentials.clone()).await;
    let load = Load::start(&api.credentials, web_addr, 1);

    // cert-manager style: new key, new root, the same file names.
    let new_ca = fresh_ca(TD);
    new_ca.write_dir(&fx.ca_dir).unwrap();
    let within = Duration::from_secs(10);
    eventually(within, || {
        signed_by(&web, &new_ca) && signed_by(&api, &new_ca) && roots(&web) == 2
    })
    .await
    .expect("the new CA signs, and the old root stays trusted meanwhile");
    let status =
        palisade_control::cli::control::fetch_status(&srv.addr.to_string(), &srv.ca.current())
            .await
            .unwrap();
    let c = status.control.unwrap();
    assert_eq!(c.trust_roots.len(), 2);
    let graced: Vec<_> = c
        .trust_roots
        .iter()
        .filter(|r| r.grace_until_unix > 0)
        .collect();
    assert_eq!(graced.len(), 1);
    assert!(!graced[0].signing);
    let (keys, graced_sequence) = served_bundle(endpoint);
    assert_eq!(keys, 2, "the bundle endpoint serves the old root too");
    // A restart within the grace period trusts the old root again at once,
    // and numbers the same roots as before.
    let follow = CaFollow {
        dir: fx.ca_dir.clone(),
        trust_domain: None,
        grace_period: Duration::from_secs(5),
        grace_file: Some(fx.state.join(palisade_control::server::CA_GRACE_FILE)),
        sequence_file: Some(
            fx.state
                .join(palisade_control::server::BUNDLE_SEQUENCE_FILE),
        ),
    };
    let restarted = CaCell::new(
        Arc::new(palisade_control::server::CaAuthority::load_dir(&fx.ca_dir, None).unwrap()),
        Some(follow.clone()),
    );
    assert_eq!(restarted.current().inner().bundle().roots().len(), 2);
    assert_eq!(
        restarted.bundle_sequence(restarted.current().inner().bundle()),
        graced_sequence
    );

    // After the grace period only the new root is trusted.
    eventually(within, || roots(&web) == 1 && roots(&api) == 1)
        .await
        .expect("the old root leaves when its grace period ends");
    // No CA file changed, but the served document did: so did its
    // spiffe_sequence (SPIFFE Trust Domain and Bundle 4.1.1).
    eventually(within, || served_bundle(endpoint).0 == 1)
        .await
        .expect("the bundle endpoint drops the old root");
    let (_, after_grace_sequence) = served_bundle(endpoint);
    assert!(
        after_grace_sequence > graced_sequence,
        "spiffe_sequence {after_grace_sequence} after the old root left, {graced_sequence} before"
    );
    // A control plane restarted now goes on from there: the restarted cell
    // still holds both roots; once its grace is over too, its number is
    // past the one served, never behind it.
    let roots_after_grace = srv.ca.current().inner().bundle().clone();
    let next = restarted.bundle_sequence(&roots_after_grace);
    assert!(
        next >= after_grace_sequence,
        "{next} < {after_grace_sequence}"
    );
    let cold = CaCell::new(
        Arc::new(palisade_control::server::CaAuthority::load_dir(&fx.ca_dir, None).unwrap()),
        Some(follow.clone()),
    );
    assert_eq!(cold.current().inner().bundle().roots().len(), 1);
    assert_eq!(
        cold.bundle_sequence(cold.current().inner().bundle()),
        next,
        "a restart serves the same roots under the same number"
    );
    eventually(within, || load.ok.load(Ordering::Relaxed) > 20)
        .await
        .expect("requests flow");
    let (ok, failed) = load.finish().await;
    eprintln!("requests ok={ok} failed={failed}");
    assert_eq!(
        failed, 0,
        "no request may fail when the CA is replaced in place"
    );

    // With no grace period the old root goes at once (a compromised CA).
    let now_ca = load_ca(&fx.ca_dir);
    let cell = CaCell::new(
        Arc::new(palisade_control::server::CaAuthority::load_dir(&fx.ca_dir, None).unwrap()),
        Some(CaFollow {
            grace_period: Duration::ZERO,
            grace_file: None,
            sequence_file: None,
            ..follow
        }),
    );
    fresh_ca(TD).write_dir(&fx.ca_dir).unwrap();
    assert!(cell.reload());
    let roots_now = cell.current().inner().bundle().roots().to_vec();
    assert_eq!(roots_now.len(), 1);
    assert!(!roots_now.contains(&now_ca.bundle().roots()[0]));
    srv.shutdown().await;
}
