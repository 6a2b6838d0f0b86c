//! SPIFFE Federation between control planes over real HTTPS: the mesh's
//! bundle served at a bundle endpoint (`https_spiffe`), fetched by another
//! control plane and compiled into its sidecars' configs; an `https_web`
//! endpoint whose bundle changes, goes back in sequence, or turns to
//! garbage; endpoints that fail authentication.
mod control_support;

use std::collections::BTreeSet;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use control_support::*;
use http_body_util::Full;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use palisade_control::cluster::{BundleEndpoint, EndpointProfile, Mesh};
use palisade_control::server::federation::{
    Federation, FetchContext, FetchError, FetchedBundle, LocalBundle, MAX_BUNDLE_BYTES, WebRoots,
    fetch_bundle,
};
use palisade_control::server::{self, CaAuthority, RunningServer, ServerOptions};
use palisade_identity::{TrustBundle, TrustDomain};
use rustls::pki_types::CertificateDer;

const REMOTE_TD: &str = "remote.test";

fn roots_of(pem: &str) -> BTreeSet<Vec<u8>> {
    TrustBundle::from_pem(TrustDomain::new(REMOTE_TD).unwrap(), pem)
        .unwrap()
        .roots()
        .iter()
        .map(|c| c.to_vec())
        .collect()
}

/// The bundle compiled for shop/web-0 for `td`, as a set of DER roots.
fn compiled_roots(srv: &RunningServer, td: &str) -> Option<BTreeSet<Vec<u8>>> {
    let rx = srv.state.subscribe("shop/web-0");
    let update = rx.borrow().clone()?;
    let config = update.decode_for("shop/web-0").ok()?;
    config
        .mesh
        .federated_bundles
        .get(td)
        .map(|pem| roots_of(pem))
}

async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Starts a control plane for trust domain `remote.test` serving its
/// bundle endpoint with a one-second refresh hint.
async fn remote_control_plane(root: &Path) -> (RunningServer, Arc<CaAuthority>) {
    let manifests = root.join("remote-manifests");
    std::fs::create_dir_all(&manifests).unwrap();
    std::fs::write(
        manifests.join("mesh.yaml"),
        format!("apiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata:\n  name: mesh\nspec:\n  trustDomain: {REMOTE_TD}\n"),
    )
    .unwrap();
    let ca = Arc::new(CaAuthority::generate(REMOTE_TD).unwrap());
    let mut o = ServerOptions::new(manifests, root.join("remote-state"));
    o.listen = SocketAddr::from(([127, 0, 0, 1], 0));
    o.bundle_endpoint = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    o.bundle_refresh_hint = Duration::from_secs(1);
    let compile = server::manifest_compiler_with(o.federation.clone());
    let srv = server::start(o, ca.clone(), compile).await.unwrap();
    (srv, ca)
}

/// Rewrites the local mesh's MeshConfig with `federated` as the entries of
/// `federatedTrustDomains`.
fn write_mesh_config(fx: &Fixture, federated: &str) {
    write_atomic(
        &fx.manifests.join("00-mesh.yaml"),
        &format!(
            "apiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata:\n  name: mesh\nspec:\n  trustDomain: {TD}\n  federatedTrustDomains:\n{federated}"
        ),
    );
}

fn indented(text: &str, spaces: usize) -> String {
    text.lines()
        .map(|l| format!("{}{l}\n", " ".repeat(spaces)))
        .collect()
}

fn spiffe_entry(url: &str, endpoint_id: &str, bootstrap_pem: &str) -> String {
    format!(
        "    - trustDomain: {REMOTE_TD}\n      bundleEndpointURL: {url}\n      bundleEndpointProfile:\n        type: https_spiffe\n        endpointSPIFFEID: {endpoint_id}\n      trustDomainBundle: |\n{}",
        indented(bootstrap_pem, 8)
    )
}

/// The served document is a SPIFFE bundle that independent tools read:
/// curl fetches it over TLS 1.2 and over TLS 1.3 without a client
/// certificate, and it carries the sequence and refresh hint.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bundle_endpoint_serves_the_mesh_bundle_to_curl() {
    let root = tempfile::tempdir().unwrap();
    let (remote, ca) = remote_control_plane(root.path()).await;
    let at = remote.bundle_endpoint.unwrap();
    for tls in ["--tlsv1.2", "--tlsv1.3"] {
        let out = tokio::process::Command::new("curl")
            .args(["-sS", "-k", tls, "--max-time", "10"])
            .arg(format!("https://{at}/any/path"))
            .output()
            .await
            .expect("curl is installed (scripts/test.sh checks it)");
        assert!(out.status.success(), "{tls}: {out:?}");
        let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(doc["spiffe_refresh_hint"], 1, "{doc}");
        assert!(
            doc["spiffe_sequence"].as_u64().unwrap() > 1_600_000_000,
            "{doc}"
        );
        let keys = doc["keys"].as_array().unwrap();
        assert_eq!(keys.len(), 1, "{doc}");
        assert_eq!(keys[0]["use"], "x509-svid");
        let served = TrustBundle::from_spiffe_bundle(
            TrustDomain::new(REMOTE_TD).unwrap(),
            std::str::from_utf8(&out.stdout).unwrap(),
        )
        .unwrap();
        assert_eq!(served.to_pem(), roots_pem(ca.bundle_pem()));
    }
    // Only GET (and HEAD).
    let out = tokio::process::Command::new("curl")
        .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", "-X", "POST"])
        .arg(format!("https://{at}/"))
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "405");
    remote.shutdown().await;
}

fn roots_pem(pem: &str) -> String {
    TrustBundle::from_pem(TrustDomain::new(REMOTE_TD).unwrap(), pem)
        .unwrap()
        .to_pem()
}

/// A self-serving `https_spiffe` endpoint: the first fetch is authenticated
/// with the configured bundle, and the fetched bundle then replaces it in
/// every compiled config. The configured bundle here still lists a root
/// the remote has dropped; after the fetch it is gone, so the sidecars stop
/// trusting it. The fetched bundle is kept in the state dir.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_self_serving_https_spiffe_endpoint_replaces_the_configured_bundle() {
    let root = tempfile::tempdir().unwrap();
    let (remote, ca) = remote_control_plane(root.path()).await;
    let dropped = CaAuthority::generate(REMOTE_TD).unwrap();
    let stale = format!("{}{}", ca.bundle_pem(), dropped.bundle_pem());
    let fx = Fixture::new();
    write_mesh_config(
        &fx,
        &spiffe_entry(
            &format!("https://{}/bundle.json", remote.bundle_endpoint.unwrap()),
            &server::control_id(REMOTE_TD),
            &stale,
        ),
    );
    let local = fx.start().await;
    let current = roots_of(ca.bundle_pem());
    wait_for("the fetched bundle in the compiled config", || {
        compiled_roots(&local, REMOTE_TD).as_ref() == Some(&current)
    })
    .await;
    let status = &local.federation.status()[REMOTE_TD];
    assert!(status.fetched, "{status:?}");
    assert!(status.sequence.is_some(), "{status:?}");
    assert_eq!(status.last_error, None);
    let kept = std::fs::read_to_string(fx.state.join("federation/remote.test.json")).unwrap();
    assert_eq!(roots_of(&roots_pem_of_json(&kept)), current);

    // `palisade status` shows the relationship: where the bundle in force
    // comes from, its roots, and how the fetches went.
    let f = federation_status(&local, &fx).await;
    assert_eq!(f.bundle_source, "fetched", "{f:?}");
    assert_eq!(f.roots as usize, current.len());
    assert!(f.roots_expire_unix > 0);
    assert!(f.sequence.is_some(), "{f:?}");
    assert!(f.bundle_endpoint_url.ends_with("/bundle.json"), "{f:?}");
    assert!(f.fetches >= 1 && f.last_success_unix > 0, "{f:?}");
    assert!(f.last_error.is_empty(), "{f:?}");
    let remote_status = palisade_control::cli::control::fetch_status(&remote.addr.to_string(), &ca)
        .await
        .unwrap();
    let remote_control = remote_status.control.unwrap();
    assert_eq!(
        remote_control.bundle_endpoint,
        remote.bundle_endpoint.unwrap().to_string()
    );
    assert!(remote_control.federation.is_empty());

    // A restart with the remote down: the kept bundle is in force at once,
    // not the stale configured one.
    local.shutdown().await;
    remote.shutdown().await;
    let local = fx.start().await;
    assert_eq!(compiled_roots(&local, REMOTE_TD), Some(current.clone()));
    wait_for_failed_fetch(&local).await;
    let f = federation_status(&local, &fx).await;
    assert_eq!(f.bundle_source, "kept", "{f:?}");
    assert_eq!(f.last_success_unix, 0, "{f:?}");
    assert!(!f.last_error.is_empty(), "{f:?}");
    let table = palisade_control::cli::control::status_table(
        &palisade_control::cli::control::fetch_status(&local.addr.to_string(), &fx.ca)
            .await
            .unwrap(),
    );
    assert!(
        table.contains("federated remote.test: bundle kept") && table.contains("LAST FETCH FAILED"),
        "{table}"
    );

    // Dropping the endpoint from the MeshConfig ends the relationship: the
    // configured bundle (stale roots and all) is all that is left.
    write_mesh_config(
        &fx,
        &format!(
            "    - trustDomain: {REMOTE_TD}\n      trustDomainBundle: |\n{}",
            indented(&stale, 8)
        ),
    );
    let stale_roots = roots_of(&stale);
    wait_for("the configured bundle back", || {
        compiled_roots(&local, REMOTE_TD).as_ref() == Some(&stale_roots)
    })
    .await;
    // "Terminating a federation relationship is as simple as deleting the
    // local copy" (SPIFFE Federation 6.3): the kept bundle is gone from
    // disk too, so a relationship set up again after a restart starts over.
    assert!(!fx.state.join("federation/remote.test.json").exists());
    let f = federation_status(&local, &fx).await;
    assert_eq!(f.bundle_source, "configured", "{f:?}");
    assert_eq!(f.roots, 2);
    assert!(f.bundle_endpoint_url.is_empty() && f.fetches == 0, "{f:?}");
    local.shutdown().await;
}

/// Waits until a fetch of the remote trust domain's bundle has failed.
async fn wait_for_failed_fetch(srv: &RunningServer) {
    wait_for("a failed fetch", || {
        srv.federation
            .status()
            .get(REMOTE_TD)
            .is_some_and(|s| s.failures > 0)
    })
    .await;
}

/// The remote trust domain's entry in the control plane's `Status`.
async fn federation_status(
    srv: &RunningServer,
    fx: &Fixture,
) -> palisade_api::stream::FederatedTrustDomain {
    let status = palisade_control::cli::control::fetch_status(&srv.addr.to_string(), &fx.ca)
        .await
        .unwrap();
    let control = status.control.unwrap();
    assert!(control.bundle_endpoint.is_empty());
    let [f] = &control.federation[..] else {
        panic!("one federated trust domain: {:?}", control.federation)
    };
    assert_eq!(f.trust_domain, REMOTE_TD);
    f.clone()
}

fn roots_pem_of_json(json: &str) -> String {
    TrustBundle::from_spiffe_bundle(TrustDomain::new(REMOTE_TD).unwrap(), json)
        .unwrap()
        .to_pem()
}

/// The endpoint must present an SVID for exactly the configured SPIFFE ID,
/// verified against the bundle of its trust domain: a wrong ID, or a
/// bootstrap bundle that does not verify the server, fails the fetch and
/// leaves the configured bundle in force.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_that_fails_authentication_changes_nothing() {
    let root = tempfile::tempdir().unwrap();
    let (remote, ca) = remote_control_plane(root.path()).await;
    let url = format!("https://{}/", remote.bundle_endpoint.unwrap());
    let other = CaAuthority::generate(REMOTE_TD).unwrap();
    for (endpoint_id, bootstrap, why) in [
        (
            format!("spiffe://{REMOTE_TD}/ns/palisade-system/sa/not-control"),
            ca.bundle_pem().to_string(),
            "unexpected",
        ),
        (
            server::control_id(REMOTE_TD),
            other.bundle_pem().to_string(),
            // The other CA has the same name, so its key fails the signature.
            "signature",
        ),
    ] {
        let fx = Fixture::new();
        write_mesh_config(&fx, &spiffe_entry(&url, &endpoint_id, &bootstrap));
        let local = fx.start().await;
        wait_for_failed_fetch(&local).await;
        let status = &local.federation.status()[REMOTE_TD];
        assert!(!status.fetched, "{status:?}");
        let error = status.last_error.clone().unwrap_or_default();
        assert!(error.to_lowercase().contains(why), "{why}: {error}");
        assert_eq!(
            compiled_roots(&local, REMOTE_TD),
            Some(roots_of(&bootstrap)),
            "the configured bundle stays"
        );
        assert!(!fx.state.join("federation/remote.test.json").exists());
        let f = federation_status(&local, &fx).await;
        assert_eq!(f.bundle_source, "configured", "{f:?}");
        assert!(
            f.failures > 0 && f.last_error.to_lowercase().contains(why),
            "{f:?}"
        );
        local.shutdown().await;
    }
    remote.shutdown().await;
}

// === https_web ===

/// A web CA and an HTTPS server on 127.0.0.1 with a certificate from it,
/// serving whatever `document` holds.
struct WebEndpoint {
    addr: SocketAddr,
    document: Arc<Mutex<String>>,
    ca_pem: String,
}

async fn web_endpoint() -> WebEndpoint {
    let document = Arc::new(Mutex::new(String::new()));
    let doc = document.clone();
    let (addr, ca_pem) = scripted_web_endpoint(Arc::new(move || {
        let body = doc.lock().unwrap().clone();
        http::Response::new(Full::new(Bytes::from(body)))
    }))
    .await;
    WebEndpoint {
        addr,
        document,
        ca_pem,
    }
}

/// What a scripted endpoint answers to every request.
type Respond = Arc<dyn Fn() -> http::Response<Full<Bytes>> + Send + Sync>;

/// A web CA and an HTTPS server on 127.0.0.1 with a certificate from it
/// (for the name 127.0.0.1 only), answering every request with `respond`;
/// its address and the CA's PEM.
async fn scripted_web_endpoint(respond: Respond) -> (SocketAddr, String) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "palisade test web CA");
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let addr = scripted_endpoint(
        vec![CertificateDer::from(cert.der().to_vec())],
        rustls::pki_types::PrivateKeyDer::try_from(key.serialize_der()).unwrap(),
        respond,
    )
    .await;
    (addr, ca_cert.pem())
}

/// An HTTPS server on 127.0.0.1 presenting `chain`, answering every
/// request with `respond`.
async fn scripted_endpoint(
    chain: Vec<CertificateDer<'static>>,
    key: rustls::pki_types::PrivateKeyDer<'static>,
    respond: Respond,
) -> SocketAddr {
    let provider = palisade_identity::provider::default_provider();
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .unwrap();
    cfg.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(cfg));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let respond = respond.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = service_fn(move |_req: http::Request<hyper::body::Incoming>| {
                    let response = respond();
                    async move { Ok::<_, Infallible>(response) }
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tls), svc)
                    .await;
            });
        }
    });
    addr
}

fn document(ca: &CaAuthority, sequence: u64) -> String {
    TrustBundle::from_pem(TrustDomain::new(REMOTE_TD).unwrap(), ca.bundle_pem())
        .unwrap()
        .to_spiffe_bundle(Some(sequence), Some(1))
        .unwrap()
}

/// `https_web`: the bundle appears with the first fetch (none is
/// configured), follows the endpoint when it changes, refuses to go back
/// to an older `spiffe_sequence`, and keeps the last good bundle when the
/// endpoint serves garbage. An endpoint whose certificate comes from a CA
/// nobody trusts is never believed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_https_web_endpoint_is_followed_by_sequence() {
    let root = tempfile::tempdir().unwrap();
    let web = web_endpoint().await;
    let first = CaAuthority::generate(REMOTE_TD).unwrap();
    let second = CaAuthority::generate(REMOTE_TD).unwrap();
    *web.document.lock().unwrap() = document(&first, 10);
    let untrusted = web_endpoint().await;
    *untrusted.document.lock().unwrap() = document(&first, 10);
    let roots_file = root.path().join("web-roots.pem");
    std::fs::write(&roots_file, &web.ca_pem).unwrap();

    let fx = Fixture::new();
    write_mesh_config(
        &fx,
        &format!(
            "    - trustDomain: {REMOTE_TD}\n      bundleEndpointURL: https://{}/bundle\n      bundleEndpointProfile: {{type: https_web}}\n    - trustDomain: untrusted.test\n      bundleEndpointURL: https://{}/bundle\n      bundleEndpointProfile: {{type: https_web}}\n",
            web.addr, untrusted.addr
        ),
    );
    let mut o = fx.options();
    o.federation_web_roots = Some(roots_file);
    let local = fx.start_with(o).await;
    let status = |td: &str| {
        local
            .federation
            .status()
            .get(td)
            .cloned()
            .unwrap_or_default()
    };

    wait_for("the first bundle", || {
        compiled_roots(&local, REMOTE_TD) == Some(roots_of(first.bundle_pem()))
    })
    .await;
    assert_eq!(status(REMOTE_TD).sequence, Some(10));

    *web.document.lock().unwrap() = document(&second, 11);
    wait_for("the changed bundle", || {
        compiled_roots(&local, REMOTE_TD) == Some(roots_of(second.bundle_pem()))
    })
    .await;

    // An older sequence is refused: the bundle stays.
    *web.document.lock().unwrap() = document(&first, 5);
    let seen = status(REMOTE_TD).fetches;
    wait_for("two more fetches", || status(REMOTE_TD).fetches >= seen + 2).await;
    let s = status(REMOTE_TD);
    assert!(
        s.last_error.as_deref().unwrap_or("").contains("stale"),
        "{s:?}"
    );
    assert_eq!(s.sequence, Some(11));
    assert_eq!(
        compiled_roots(&local, REMOTE_TD),
        Some(roots_of(second.bundle_pem()))
    );

    // Garbage: the last good bundle stays.
    *web.document.lock().unwrap() = "{\"keys\": 7}".into();
    let seen = status(REMOTE_TD).failures;
    wait_for("a failed fetch", || status(REMOTE_TD).failures > seen).await;
    assert!(
        status(REMOTE_TD)
            .last_error
            .unwrap_or_default()
            .starts_with("bundle:"),
        "{:?}",
        status(REMOTE_TD)
    );
    assert_eq!(
        compiled_roots(&local, REMOTE_TD),
        Some(roots_of(second.bundle_pem()))
    );

    // The endpoint with a certificate from an unknown CA never got in.
    let u = status("untrusted.test");
    assert!(u.failures > 0 && !u.fetched, "{u:?}");
    assert!(u.last_error.unwrap_or_default().starts_with("TLS:"));
    assert_eq!(compiled_roots(&local, "untrusted.test"), None);
    local.shutdown().await;
}

/// A valid bundle document with no `x509-svid` entry says the trust domain
/// does not support X509-SVID (X509-SVID 6.2), and it is the latest bundle
/// (SPIFFE Federation 4.2): it replaces the roots held, fetched and
/// configured alike, so no sidecar accepts that trust domain's X509-SVIDs
/// until a bundle with roots comes back. It is a successful fetch, kept on
/// disk, and `palisade status` says the trust domain has no X.509 roots.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fetched_bundle_without_x509_roots_withdraws_the_trust_domains_roots() {
    let root = tempfile::tempdir().unwrap();
    let web = web_endpoint().await;
    let configured = CaAuthority::generate(REMOTE_TD).unwrap();
    let fetched = CaAuthority::generate(REMOTE_TD).unwrap();
    *web.document.lock().unwrap() = document(&fetched, 10);
    let roots_file = root.path().join("web-roots.pem");
    std::fs::write(&roots_file, &web.ca_pem).unwrap();

    let fx = Fixture::new();
    write_mesh_config(
        &fx,
        &format!(
            "    - trustDomain: {REMOTE_TD}\n      bundleEndpointURL: https://{}/bundle\n      bundleEndpointProfile: {{type: https_web}}\n      trustDomainBundle: |\n{}",
            web.addr,
            indented(configured.bundle_pem(), 8)
        ),
    );
    let mut o = fx.options();
    o.federation_web_roots = Some(roots_file);
    let local = fx.start_with(o).await;
    let status = || {
        local
            .federation
            .status()
            .get(REMOTE_TD)
            .cloned()
            .unwrap_or_default()
    };
    wait_for("the fetched bundle", || {
        compiled_roots(&local, REMOTE_TD) == Some(roots_of(fetched.bundle_pem()))
    })
    .await;

    // Only a JWT-SVID key now: no X.509 root of the trust domain is left.
    let no_x509 = format!(
        r#"{{"keys": [{{"use": "jwt-svid", "kty": "EC", "kid": "k1", "crv": "P-256", "x": "{x}", "y": "{x}"}}], "spiffe_sequence": 11, "spiffe_refresh_hint": 1}}"#,
        x = "AAAA"
    );
    *web.document.lock().unwrap() = no_x509.clone();
    wait_for("the roots to be withdrawn", || {
        compiled_roots(&local, REMOTE_TD).is_none()
    })
    .await;
    let s = status();
    assert!(
        s.fetched && s.last_error.is_none(),
        "a successful fetch: {s:?}"
    );
    assert_eq!(s.sequence, Some(11));
    assert_eq!(local.federation.current_pem(REMOTE_TD), None);
    assert_eq!(
        std::fs::read_to_string(fx.state.join("federation/remote.test.json")).unwrap(),
        no_x509,
        "the latest document is kept"
    );
    let f = federation_status(&local, &fx).await;
    assert_eq!((f.bundle_source.as_str(), f.roots), ("fetched", 0), "{f:?}");
    // A sidecar with this config refuses the trust domain's SVIDs, whether
    // from the configured or the formerly fetched root.
    let config = local
        .state
        .subscribe("shop/web-0")
        .borrow()
        .clone()
        .unwrap()
        .decode_for("shop/web-0")
        .unwrap();
    assert!(!config.mesh.federated_bundles.contains_key(REMOTE_TD));

    // Roots served again: they are trusted again.
    *web.document.lock().unwrap() = document(&fetched, 12);
    wait_for("the roots to come back", || {
        compiled_roots(&local, REMOTE_TD) == Some(roots_of(fetched.bundle_pem()))
    })
    .await;
    local.shutdown().await;
}

// === Upstream cases: go-spiffe v2/federation/{fetch,handler}_test.go ===

/// A response with `status`, an optional content type and location, and
/// `body`.
fn respond(
    status: u16,
    content_type: Option<&'static str>,
    location: Option<&'static str>,
    body: Vec<u8>,
) -> Respond {
    Arc::new(move || {
        let mut r = http::Response::new(Full::new(Bytes::from(body.clone())));
        *r.status_mut() = http::StatusCode::from_u16(status).unwrap();
        if let Some(ty) = content_type {
            r.headers_mut()
                .insert(http::header::CONTENT_TYPE, ty.parse().unwrap());
        }
        if let Some(l) = location {
            r.headers_mut()
                .insert(http::header::LOCATION, l.parse().unwrap());
        }
        r
    })
}

fn fetch_context(web_roots: WebRoots) -> FetchContext {
    let local = CaAuthority::generate(TD).unwrap();
    FetchContext {
        local: Arc::new(LocalBundle::from_pointee(
            TrustBundle::from_pem(TrustDomain::new(TD).unwrap(), local.bundle_pem()).unwrap(),
        )),
        web_roots,
        state_dir: None,
        timeout: Duration::from_secs(2),
    }
}

type FetchResult = Result<FetchedBundle, FetchError>;

/// One fetch from an `https_web` endpoint per case, each a real HTTPS
/// server answering as scripted: go-spiffe's `FetchBundle` cases
/// (v2/federation/fetch_test.go) and the SPIFFE Federation rules on
/// consuming an `https_web` endpoint (5.2.1.4: RFC 6125 name check against
/// a locally trusted CA; 5.2.1.3: a UTF-8 bundle, `Content-Type` only a
/// SHOULD; 7.5.1: redirects, which Palisade does not follow). Every
/// failure is an error naming what went wrong, never a bundle.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_fetch_bundle_cases_over_https_web() {
    let remote = CaAuthority::generate(REMOTE_TD).unwrap();
    let doc = document(&remote, 3).into_bytes();
    let want_pem = roots_pem(remote.bundle_pem());
    let json = Some("application/json");
    let is_bundle = |r: &FetchResult| {
        r.as_ref()
            .is_ok_and(|f| f.pem == want_pem && f.sequence == Some(3))
    };
    type Check<'a> = Box<dyn Fn(&FetchResult) -> bool + 'a>;
    let cases: Vec<(&str, Respond, &str, bool, Check<'_>)> = vec![
        (
            "fetch_test.go TestFetchBundle_WebPKIRoots",
            respond(200, json, None, doc.clone()),
            "127.0.0.1",
            true,
            Box::new(is_bundle),
        ),
        (
            "fetch_test.go TestFetchBundle_ErrorReadingBundleBody (empty body)",
            respond(200, json, None, Vec::new()),
            "127.0.0.1",
            true,
            Box::new(|r| matches!(r, Err(FetchError::Bundle(_)))),
        ),
        (
            "5.2.1.3: Content-Type is a SHOULD of the server; text/plain is read",
            respond(200, Some("text/plain"), None, doc.clone()),
            "127.0.0.1",
            true,
            Box::new(is_bundle),
        ),
        (
            "5.2.1.3: no Content-Type at all",
            respond(200, None, None, doc.clone()),
            "127.0.0.1",
            true,
            Box::new(is_bundle),
        ),
        (
            "404: not a bundle",
            respond(
                404,
                Some("text/plain"),
                None,
                b"404 page not found\n".to_vec(),
            ),
            "127.0.0.1",
            true,
            Box::new(|r| {
                matches!(
                    r,
                    Err(FetchError::Status {
                        status: 404,
                        location: None
                    })
                )
            }),
        ),
        (
            "handler_test.go 'bundle not found': 500 with the document of another error",
            respond(500, Some("text/plain"), None, doc.clone()),
            "127.0.0.1",
            true,
            Box::new(|r| matches!(r, Err(FetchError::Status { status: 500, .. }))),
        ),
        (
            "7.5.1: a redirect is named, not followed",
            respond(
                302,
                None,
                Some("https://elsewhere.example/bundle"),
                Vec::new(),
            ),
            "127.0.0.1",
            true,
            Box::new(|r| {
                matches!(r, Err(FetchError::Status { status: 302, location: Some(l) })
                    if l == "https://elsewhere.example/bundle")
                    && r.as_ref().unwrap_err().to_string().contains("not followed")
            }),
        ),
        (
            "a body over the size limit",
            respond(200, json, None, vec![b' '; MAX_BUNDLE_BYTES + 1]),
            "127.0.0.1",
            true,
            Box::new(|r| matches!(r, Err(FetchError::Http(m)) if m.contains("body"))),
        ),
        (
            "5.2.1.3: the bundle MUST be UTF-8",
            respond(200, json, None, b"{\"keys\": [\"\xff\"]}".to_vec()),
            "127.0.0.1",
            true,
            Box::new(|r| matches!(r, Err(FetchError::Bundle(m)) if m.contains("UTF-8"))),
        ),
        (
            "5.2.1.4: the certificate must name the URL's host (RFC 6125)",
            respond(200, json, None, doc.clone()),
            "localhost",
            true,
            Box::new(|r| matches!(r, Err(FetchError::Tls(_)))),
        ),
        (
            "5.2.1.4: the certificate must come from a locally trusted CA",
            respond(200, json, None, doc.clone()),
            "127.0.0.1",
            false,
            Box::new(|r| matches!(r, Err(FetchError::Tls(_)))),
        ),
    ];
    let dir = tempfile::tempdir().unwrap();
    let federation = Federation::new();
    for (name, answer, host, trusted, check) in cases {
        let (addr, ca_pem) = scripted_web_endpoint(answer).await;
        let roots = dir.path().join("roots.pem");
        std::fs::write(&roots, &ca_pem).unwrap();
        let web_roots = WebRoots::load(trusted.then_some(roots.as_path())).unwrap();
        let endpoint = BundleEndpoint {
            url: format!("https://{host}:{}/bundle.json", addr.port()),
            profile: EndpointProfile::HttpsWeb,
        };
        let got = fetch_bundle(REMOTE_TD, &endpoint, &federation, &fetch_context(web_roots)).await;
        assert!(check(&got), "{name}: {got:?}");
    }

    // An endpoint that accepts and never answers: the fetch times out
    // (go-spiffe's TestFetchBundle_ErrorGettingBundle, a fetch that does
    // not complete, is a failed fetch).
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    let held = tokio::spawn(async move {
        let mut conns = Vec::new();
        while let Ok((c, _)) = silent.accept().await {
            conns.push(c);
        }
    });
    let endpoint = BundleEndpoint {
        url: format!("https://{silent_addr}/"),
        profile: EndpointProfile::HttpsWeb,
    };
    let ctx = fetch_context(WebRoots::load(None).unwrap());
    let got = fetch_bundle(REMOTE_TD, &endpoint, &federation, &ctx).await;
    assert!(matches!(got, Err(FetchError::Timeout(_))), "{got:?}");
    held.abort();
    let _ = held.await; // the listener is closed once the task is gone
    // Nobody listening.
    let endpoint = BundleEndpoint {
        url: format!("https://{silent_addr}/"),
        profile: EndpointProfile::HttpsWeb,
    };
    let got = fetch_bundle(REMOTE_TD, &endpoint, &federation, &ctx).await;
    assert!(matches!(got, Err(FetchError::Connect(_))), "{got:?}");
}

/// go-spiffe's `FetchBundle` with SPIFFE authentication
/// (v2/federation/fetch_test.go TestFetchBundle_SPIFFEAuth and
/// TestFetchBundle_SPIFFEAuth_UnexpectedID) against a real bundle
/// endpoint: the server's X509-SVID must name exactly the endpoint SPIFFE
/// ID (SPIFFE Federation 5.2.2.4) and verify against the bundle of that
/// ID's trust domain; with no bundle for it, nothing is fetched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_fetch_bundle_cases_over_https_spiffe() {
    let root = tempfile::tempdir().unwrap();
    let (remote, ca) = remote_control_plane(root.path()).await;
    let url = format!("https://{}/", remote.bundle_endpoint.unwrap());
    let other = CaAuthority::generate(REMOTE_TD).unwrap();
    let ctx = fetch_context(WebRoots::load(None).unwrap());
    let control = server::control_id(REMOTE_TD);
    type Check<'a> = Box<dyn Fn(&FetchResult) -> bool + 'a>;
    let cases: Vec<(&str, &str, &str, Check<'_>)> = vec![
        (
            "TestFetchBundle_SPIFFEAuth",
            control.as_str(),
            ca.bundle_pem(),
            Box::new(|r: &FetchResult| {
                r.as_ref()
                    .is_ok_and(|f| f.pem == roots_pem(ca.bundle_pem()) && f.sequence.is_some())
            }),
        ),
        (
            "TestFetchBundle_SPIFFEAuth_UnexpectedID",
            "spiffe://remote.test/other/id",
            ca.bundle_pem(),
            Box::new(
                |r: &FetchResult| matches!(r, Err(FetchError::Tls(m)) if m.to_lowercase().contains("unexpected")),
            ),
        ),
        (
            "5.2.2.4: the SVID must verify against the endpoint trust domain's bundle",
            control.as_str(),
            other.bundle_pem(),
            Box::new(|r: &FetchResult| matches!(r, Err(FetchError::Tls(_)))),
        ),
        (
            "5.2.2.2: an endpoint in a trust domain with no bundle",
            "spiffe://third.test/bundle-server",
            ca.bundle_pem(),
            Box::new(
                |r: &FetchResult| matches!(r, Err(FetchError::NoEndpointBundle(td)) if td == "third.test"),
            ),
        ),
    ];
    for (name, endpoint_id, configured, check) in cases {
        let federation = Federation::new();
        let mut mesh = Mesh::default();
        mesh.federated_bundles
            .insert(REMOTE_TD.to_string(), configured.to_string());
        federation.apply(&mut mesh);
        let endpoint = BundleEndpoint {
            url: url.clone(),
            profile: EndpointProfile::HttpsSpiffe {
                endpoint_id: endpoint_id.to_string(),
            },
        };
        let got = fetch_bundle(REMOTE_TD, &endpoint, &federation, &ctx).await;
        assert!(check(&got), "{name}: {got:?}");
    }
    remote.shutdown().await;
}

/// go-spiffe's `federation.Handler` (v2/federation/handler_test.go
/// TestHandler): a GET is answered 200 with exactly one `Content-Type:
/// application/json` and the bundle, any other method 405 "method is not
/// allowed" (HEAD, which HTTP makes a GET without the body, is answered as
/// a GET), over real HTTPS with curl.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_handler_cases_against_the_bundle_endpoint() {
    let root = tempfile::tempdir().unwrap();
    let (remote, ca) = remote_control_plane(root.path()).await;
    let at = remote.bundle_endpoint.unwrap();
    for (method, status, content_type, body) in [
        ("GET", "200", "application/json", None),
        ("HEAD", "200", "application/json", None),
        ("POST", "405", "text/plain", Some("method is not allowed\n")),
        ("PUT", "405", "text/plain", Some("method is not allowed\n")),
        (
            "DELETE",
            "405",
            "text/plain",
            Some("method is not allowed\n"),
        ),
        (
            "PATCH",
            "405",
            "text/plain",
            Some("method is not allowed\n"),
        ),
    ] {
        let body_file = root.path().join("body");
        let _ = std::fs::remove_file(&body_file);
        let mut cmd = tokio::process::Command::new("curl");
        cmd.args(["-sk", "--max-time", "10", "-D", "-", "-o"])
            .arg(&body_file)
            .args(["-w", "%{http_code}"]);
        if method == "HEAD" {
            cmd.arg("--head");
        } else {
            cmd.args(["-X", method]);
        }
        let out = cmd.arg(format!("https://{at}/")).output().await.unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(stdout.ends_with(status), "{method}: {stdout}");
        let types: Vec<&str> = stdout
            .lines()
            .filter_map(|l| {
                l.split_once(':')
                    .filter(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            })
            .map(|(_, v)| v.trim())
            .collect();
        assert_eq!(types, [content_type], "{method}: {stdout}");
        // (curl --head writes the headers where the body would go.)
        let got = std::fs::read_to_string(&body_file).unwrap_or_default();
        match body {
            Some(want) => assert_eq!(got, want, "{method}"),
            None if method == "HEAD" => {}
            None => assert_eq!(roots_pem_of_json(&got), roots_pem(ca.bundle_pem())),
        }
    }
    remote.shutdown().await;
}

// === Relationship lifecycle ===

/// SPIFFE Federation 4.2: "Operators MAY locally update the SPIFFE bundle
/// of a foreign trust domain at any time. In this case, the locally
/// updated version of the bundle is considered the latest until replaced
/// by a subsequent refresh." The remote trust domain is rebuilt with a new
/// CA, so the fetched bundle held (and kept on disk) no longer
/// authenticates its self-serving endpoint (5.2.2.4); the operator
/// re-bootstraps with the new bundle, which replaces the fetched one at
/// once and authenticates the next fetch. The same when the update is
/// made while the control plane is down.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_update_of_the_bundle_replaces_the_fetched_one() {
    let root = tempfile::tempdir().unwrap();
    let control = server::control_id(REMOTE_TD);
    let (first, first_ca) = remote_control_plane(&root.path().join("first")).await;
    let url = |srv: &RunningServer| format!("https://{}/", srv.bundle_endpoint.unwrap());
    let fx = Fixture::new();
    write_mesh_config(
        &fx,
        &spiffe_entry(&url(&first), &control, first_ca.bundle_pem()),
    );
    let local = fx.start().await;
    let fetched_from = |srv: &RunningServer, ca: &CaAuthority| {
        let s = srv
            .federation
            .status()
            .get(REMOTE_TD)
            .cloned()
            .unwrap_or_default();
        s.fetched
            && s.last_error.is_none()
            && compiled_roots(srv, REMOTE_TD) == Some(roots_of(ca.bundle_pem()))
    };
    wait_for("the first remote's bundle", || {
        fetched_from(&local, &first_ca)
    })
    .await;
    first.shutdown().await;

    let (second, second_ca) = remote_control_plane(&root.path().join("second")).await;
    write_mesh_config(
        &fx,
        &spiffe_entry(&url(&second), &control, second_ca.bundle_pem()),
    );
    wait_for("the rebuilt remote's bundle, fetched", || {
        fetched_from(&local, &second_ca)
    })
    .await;
    let kept = std::fs::read_to_string(fx.state.join("federation/remote.test.json")).unwrap();
    assert_eq!(roots_pem_of_json(&kept), roots_pem(second_ca.bundle_pem()));

    // Rebuilt again while the local control plane is down.
    local.shutdown().await;
    second.shutdown().await;
    let (third, third_ca) = remote_control_plane(&root.path().join("third")).await;
    write_mesh_config(
        &fx,
        &spiffe_entry(&url(&third), &control, third_ca.bundle_pem()),
    );
    let local = fx.start().await;
    wait_for(
        "the third remote's bundle, fetched after the restart",
        || fetched_from(&local, &third_ca),
    )
    .await;

    // A restart without a local update keeps the fetched bundle in force,
    // not the configured one.
    local.shutdown().await;
    third.shutdown().await;
    let stale = CaAuthority::generate(REMOTE_TD).unwrap();
    let kept = std::fs::read_to_string(fx.state.join("federation/remote.test.json")).unwrap();
    assert_eq!(roots_pem_of_json(&kept), roots_pem(third_ca.bundle_pem()));
    let local = fx.start().await;
    assert_eq!(
        compiled_roots(&local, REMOTE_TD),
        Some(roots_of(third_ca.bundle_pem()))
    );
    // ...until the operator updates it.
    write_mesh_config(
        &fx,
        &spiffe_entry("https://127.0.0.1:9/", &control, stale.bundle_pem()),
    );
    wait_for("the locally updated bundle in force", || {
        compiled_roots(&local, REMOTE_TD) == Some(roots_of(stale.bundle_pem()))
    })
    .await;
    assert!(!fx.state.join("federation/remote.test.json").exists());
    local.shutdown().await;
}

/// A bundle endpoint whose URL changes is a new relationship (SPIFFE
/// Federation 6.1): it is fetched at once, not when the old endpoint's
/// refresh hint (an hour here) comes due.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_changed_bundle_endpoint_is_fetched_at_once() {
    let root = tempfile::tempdir().unwrap();
    let first = CaAuthority::generate(REMOTE_TD).unwrap();
    let second = CaAuthority::generate(REMOTE_TD).unwrap();
    let hourly = |ca: &CaAuthority, seq: u64| {
        TrustBundle::from_pem(TrustDomain::new(REMOTE_TD).unwrap(), ca.bundle_pem())
            .unwrap()
            .to_spiffe_bundle(Some(seq), Some(3600))
            .unwrap()
    };
    let (a, b) = (web_endpoint().await, web_endpoint().await);
    *a.document.lock().unwrap() = hourly(&first, 10);
    *b.document.lock().unwrap() = hourly(&second, 11);
    let roots_file = root.path().join("web-roots.pem");
    std::fs::write(&roots_file, format!("{}{}", a.ca_pem, b.ca_pem)).unwrap();
    let entry = |at: SocketAddr| {
        format!(
            "    - trustDomain: {REMOTE_TD}\n      bundleEndpointURL: https://{at}/bundle\n      bundleEndpointProfile: {{type: https_web}}\n"
        )
    };
    let fx = Fixture::new();
    write_mesh_config(&fx, &entry(a.addr));
    let mut o = fx.options();
    o.federation_web_roots = Some(roots_file);
    let local = fx.start_with(o).await;
    wait_for("the first endpoint's bundle", || {
        compiled_roots(&local, REMOTE_TD) == Some(roots_of(first.bundle_pem()))
    })
    .await;
    write_mesh_config(&fx, &entry(b.addr));
    wait_for("the new endpoint's bundle", || {
        compiled_roots(&local, REMOTE_TD) == Some(roots_of(second.bundle_pem()))
    })
    .await;
    local.shutdown().await;
}

/// SPIFFE Federation 5.2.2.4: a non-self-serving endpoint is verified
/// against "the latest available SPIFFE bundle corresponding to the trust
/// domain of the endpoint's SPIFFE ID". Here that trust domain is the
/// mesh's own, whose CA is replaced while the control plane runs: the
/// endpoint, whose SVID comes from the new CA, is believed once the new
/// root is in force, not verified against the roots of the start forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_endpoint_in_the_mesh_trust_domain_follows_the_mesh_ca() {
    let remote = CaAuthority::generate(REMOTE_TD).unwrap();
    let new_ca = CaAuthority::generate(TD).unwrap();
    let endpoint_id = format!("spiffe://{TD}/bundle-server");
    let svid = new_ca
        .inner()
        .issue(
            &palisade_identity::SpiffeId::parse(&endpoint_id).unwrap(),
            Duration::from_secs(3600),
        )
        .unwrap();
    let addr = scripted_endpoint(
        svid.chain.clone(),
        svid.key.unwrap(),
        respond(
            200,
            Some("application/json"),
            None,
            document(&remote, 1).into_bytes(),
        ),
    )
    .await;
    let fx = Fixture::new();
    write_mesh_config(
        &fx,
        &format!(
            "    - trustDomain: {REMOTE_TD}\n      bundleEndpointURL: https://{addr}/\n      bundleEndpointProfile:\n        type: https_spiffe\n        endpointSPIFFEID: {endpoint_id}\n"
        ),
    );
    let mut o = fx.options();
    o.ca_dir = Some(fx.ca_dir.clone());
    o.ca_poll_interval = Duration::from_millis(100);
    let local = fx.start_with(o).await;
    wait_for_failed_fetch(&local).await;
    assert_eq!(compiled_roots(&local, REMOTE_TD), None);
    new_ca.save_dir(&fx.ca_dir).unwrap();
    wait_for("the bundle, once the new mesh root is in force", || {
        compiled_roots(&local, REMOTE_TD) == Some(roots_of(remote.bundle_pem()))
    })
    .await;
    local.shutdown().await;
}
