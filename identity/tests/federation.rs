//! Federated trust domains (go-spiffe `x509svid.Verify` against an
//! `x509bundle.Set`): a peer of a federated trust domain verifies against
//! that domain's bundle and no other; a trust domain without a bundle is
//! refused before path validation; the bundles load from an SVID
//! directory's `federated/` folder, and a bad one is refused whole.
mod common;

use std::time::Duration;

use common::{TestCa, good_leaf, id, td};
use palisade_identity::credentials::write_svid_dir;
use palisade_identity::federation::FEDERATED_DIR;
use palisade_identity::verify::verify_svid_federated;
use palisade_identity::{
    CaOptions, CertificateAuthority, Credentials, CredentialsError, FederatedBundles,
    FederationError, PeerRole, SvidError, TrustBundle,
};
use rustls::pki_types::{CertificateDer, UnixTime};

const LOCAL: &str = "local.test";
const REMOTE: &str = "remote.test";

fn verify(
    local: &TrustBundle,
    federated: &FederatedBundles,
    chain: &[CertificateDer<'_>],
) -> Result<String, SvidError> {
    let provider = palisade_identity::provider::default_provider();
    verify_svid_federated(
        local,
        &[federated],
        &chain[0],
        &chain[1..],
        UnixTime::now(),
        PeerRole::Client,
        &provider,
    )
    .map(|id| id.to_string())
}

fn federation_of(bundles: Vec<TrustBundle>) -> FederatedBundles {
    let mut set = FederatedBundles::none();
    for b in bundles {
        set.insert(b).unwrap();
    }
    set
}

#[test]
fn a_peer_of_a_federated_trust_domain_verifies_against_its_bundle() {
    let local = TestCa::new(LOCAL);
    let remote = TestCa::new(REMOTE);
    let federated = federation_of(vec![remote.bundle(REMOTE)]);
    let remote_id = "spiffe://remote.test/ns/shop/sa/cart";
    let (leaf, _) = remote.sign(&good_leaf(remote_id));
    assert_eq!(
        verify(
            &local.bundle(LOCAL),
            &federated,
            std::slice::from_ref(&leaf)
        )
        .unwrap(),
        remote_id
    );
    // Local peers still verify against the local bundle.
    let (ours, _) = local.sign(&good_leaf("spiffe://local.test/ns/a/sa/b"));
    assert!(verify(&local.bundle(LOCAL), &federated, &[ours]).is_ok());
    // Without the federation, the remote peer has no bundle.
    let err = verify(&local.bundle(LOCAL), &FederatedBundles::none(), &[leaf]).unwrap_err();
    assert!(
        matches!(err, SvidError::TrustDomainMismatch { .. }),
        "{err:?}"
    );
    assert_eq!(err.code(), "unknown-trust-domain");
    assert!(
        err.to_string()
            .starts_with("no X.509 bundle found for trust domain: \"remote.test\""),
        "{err}"
    );
}

#[test]
fn a_federated_bundle_vouches_only_for_its_own_trust_domain() {
    let local = TestCa::new(LOCAL);
    let remote = TestCa::new(REMOTE);
    let federated = federation_of(vec![remote.bundle(REMOTE)]);
    // The remote CA signs an ID of the local trust domain: the local bundle
    // is the only one for it, and the path does not reach it.
    let (forged, _) = remote.sign(&good_leaf("spiffe://local.test/ns/admin/sa/root"));
    let err = verify(&local.bundle(LOCAL), &federated, &[forged]).unwrap_err();
    assert!(matches!(err, SvidError::UnknownIssuer), "{err:?}");
    assert_eq!(err.code(), "unknown-issuer");
    // Nor of a third trust domain, which has no bundle at all.
    let (third, _) = remote.sign(&good_leaf("spiffe://third.test/ns/x/sa/y"));
    let err = verify(&local.bundle(LOCAL), &federated, &[third]).unwrap_err();
    assert!(
        err.to_string().contains("(federated: remote.test)"),
        "{err}"
    );
    // And the local CA cannot issue a remote identity.
    let (local_signed, _) = local.sign(&good_leaf("spiffe://remote.test/ns/shop/sa/cart"));
    let err = verify(&local.bundle(LOCAL), &federated, &[local_signed]).unwrap_err();
    assert!(matches!(err, SvidError::UnknownIssuer), "{err:?}");
}

#[test]
fn a_remote_chain_with_an_intermediate_verifies() {
    let local = TestCa::new(LOCAL);
    let remote = CertificateAuthority::create(
        &td(REMOTE),
        &CaOptions {
            intermediate: true,
            ..CaOptions::default()
        },
    )
    .unwrap();
    let svid = remote
        .issue(
            &id("spiffe://remote.test/ns/shop/sa/cart"),
            Duration::from_secs(600),
        )
        .unwrap();
    let federated = federation_of(vec![remote.bundle().clone()]);
    assert_eq!(
        verify(&local.bundle(LOCAL), &federated, &svid.chain).unwrap(),
        "spiffe://remote.test/ns/shop/sa/cart"
    );
}

fn svid_dir(ca: &CertificateAuthority, spiffe_id: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let svid = ca.issue(&id(spiffe_id), Duration::from_secs(600)).unwrap();
    write_svid_dir(dir.path(), &svid.chain, svid.key.as_ref(), ca.bundle()).unwrap();
    dir
}

#[test]
fn federated_bundles_load_from_the_svid_directory() {
    let local = CertificateAuthority::create(&td(LOCAL), &CaOptions::default()).unwrap();
    let remote = CertificateAuthority::create(&td(REMOTE), &CaOptions::default()).unwrap();
    let other = CertificateAuthority::create(&td("other.test"), &CaOptions::default()).unwrap();
    let dir = svid_dir(&local, "spiffe://local.test/ns/a/sa/b");

    // No folder: no federation.
    let creds = Credentials::load_dir(dir.path()).unwrap();
    assert!(creds.federated().is_empty());

    let fed = dir.path().join(FEDERATED_DIR);
    std::fs::create_dir(&fed).unwrap();
    // A SPIFFE bundle (as a bundle endpoint serves it) and a PEM file; a
    // dotfile (a mounted volume's `..data`) is skipped.
    std::fs::write(
        fed.join("remote.test.json"),
        remote.bundle().to_spiffe_bundle(Some(1), None).unwrap(),
    )
    .unwrap();
    std::fs::write(fed.join("other.test.pem"), other.bundle().to_pem()).unwrap();
    std::fs::write(fed.join("..data"), "not a bundle").unwrap();
    let creds = Credentials::load_dir(dir.path()).unwrap();
    let names: Vec<&str> = creds.federated().trust_domains().collect();
    assert_eq!(names, ["other.test", "remote.test"]);
    let svid = remote
        .issue(
            &id("spiffe://remote.test/ns/shop/sa/cart"),
            Duration::from_secs(600),
        )
        .unwrap();
    assert!(verify(creds.bundle(), creds.federated(), &svid.chain).is_ok());
}

#[test]
fn a_bad_federated_bundle_refuses_the_whole_directory() {
    let local = CertificateAuthority::create(&td(LOCAL), &CaOptions::default()).unwrap();
    let remote = CertificateAuthority::create(&td(REMOTE), &CaOptions::default()).unwrap();
    type Case = (&'static str, String, fn(&FederationError) -> bool);
    let cases: Vec<Case> = vec![
        ("remote.test.txt", remote.bundle().to_pem(), |e| {
            matches!(e, FederationError::BadFileName { .. })
        }),
        ("Remote_Test.pem", remote.bundle().to_pem(), |e| {
            matches!(e, FederationError::BadTrustDomain { .. })
        }),
        ("remote.test.pem", "not PEM".into(), |e| {
            matches!(e, FederationError::Bundle { .. })
        }),
        ("remote.test.json", "{\"keys\": 1}".into(), |e| {
            matches!(e, FederationError::Bundle { .. })
        }),
        // The local trust domain has one bundle: bundle.pem.
        ("local.test.pem", remote.bundle().to_pem(), |e| {
            matches!(e, FederationError::LocalTrustDomain(_))
        }),
    ];
    for (name, content, expected) in cases {
        let dir = svid_dir(&local, "spiffe://local.test/ns/a/sa/b");
        let fed = dir.path().join(FEDERATED_DIR);
        std::fs::create_dir(&fed).unwrap();
        std::fs::write(fed.join(name), content).unwrap();
        match Credentials::load_dir(dir.path()) {
            Err(CredentialsError::Federation(e)) => {
                assert!(expected(&e), "{name}: {e:?}");
                // The message names the file, or its trust domain.
                let stem = name.rsplit_once('.').map_or(name, |(stem, _)| stem);
                assert!(e.to_string().contains(stem), "{name}: {e}");
            }
            other => panic!("{name}: {other:?}"),
        }
    }
    // Two files for one trust domain.
    let dir = svid_dir(&local, "spiffe://local.test/ns/a/sa/b");
    let fed = dir.path().join(FEDERATED_DIR);
    std::fs::create_dir(&fed).unwrap();
    std::fs::write(fed.join("remote.test.pem"), remote.bundle().to_pem()).unwrap();
    std::fs::write(
        fed.join("remote.test.json"),
        remote.bundle().to_spiffe_bundle(None, None).unwrap(),
    )
    .unwrap();
    assert!(matches!(
        Credentials::load_dir(dir.path()),
        Err(CredentialsError::Federation(FederationError::Duplicate(td))) if td == REMOTE
    ));
}

#[test]
fn a_federated_spiffe_bundle_without_x509_svid_entries_refuses_the_trust_domain() {
    // SPIFFE Trust Domain and Bundle 4.1.3: "A trust domain which publishes
    // an empty key array indicates that the trust domain has revoked any
    // previously-published keys ... workloads MUST treat all SVIDs from the
    // trust domain as invalid and untrusted"; X509-SVID 6.2: "If no
    // `x509-svid` JWK entries are present in the bundle, then the trust
    // domain does not support X509-SVID". go-spiffe x509svid verify_test "no
    // roots" (a bundle of the trust domain without authorities): "x509:
    // certificate signed by unknown authority". Such a document loaded before
    // as an error, so a reload kept the revoked roots in force (and a first
    // load refused the whole SVID directory).
    let local = CertificateAuthority::create(&td(LOCAL), &CaOptions::default()).unwrap();
    let remote = CertificateAuthority::create(&td(REMOTE), &CaOptions::default()).unwrap();
    let dir = svid_dir(&local, "spiffe://local.test/ns/a/sa/b");
    let fed = dir.path().join(FEDERATED_DIR);
    std::fs::create_dir(&fed).unwrap();
    let remote_svid = remote
        .issue(
            &id("spiffe://remote.test/ns/shop/sa/cart"),
            Duration::from_secs(600),
        )
        .unwrap();
    let file = fed.join("remote.test.json");
    std::fs::write(
        &file,
        remote.bundle().to_spiffe_bundle(Some(1), None).unwrap(),
    )
    .unwrap();
    let creds = Credentials::load_dir(dir.path()).unwrap();
    assert!(verify(creds.bundle(), creds.federated(), &remote_svid.chain).is_ok());

    let jwt_only = r#"{"spiffe_sequence": 3, "keys": [{"kty": "EC", "use": "jwt-svid",
        "kid": "k1", "crv": "P-256",
        "x": "fK-wKTnKL7KFLM27lqq5DC-bxrVaH6rDV-IcCSEOeL4",
        "y": "wq-g3TQWxYlV51TCPH030yXsRxvujD4hUUaIQrXk4KI"}]}"#;
    // An empty or blank federated .pem says the same: no X.509 root.
    let pem_file = fed.join("remote.test.pem");
    for (path, doc) in [
        (&file, r#"{"spiffe_sequence": 2, "keys": []}"#),
        (&file, jwt_only),
        (&pem_file, ""),
        (&pem_file, " \n\t\n"),
    ] {
        let _ = std::fs::remove_file(&file);
        let _ = std::fs::remove_file(&pem_file);
        std::fs::write(path, doc).unwrap();
        let creds = Credentials::load_dir(dir.path()).unwrap_or_else(|e| panic!("{doc}: {e}"));
        let names: Vec<&str> = creds.federated().trust_domains().collect();
        assert_eq!(names, [REMOTE], "{doc}");
        let err = verify(creds.bundle(), creds.federated(), &remote_svid.chain).unwrap_err();
        assert!(matches!(err, SvidError::NoRoots { .. }), "{doc}: {err:?}");
        assert_eq!(err.code(), "unknown-issuer");
        let text = err.to_string();
        assert!(
            text.contains("certificate signed by unknown authority") && text.contains(REMOTE),
            "{text}"
        );
        // The local trust domain is untouched.
        let ours = local
            .issue(
                &id("spiffe://local.test/ns/x/sa/y"),
                Duration::from_secs(600),
            )
            .unwrap();
        assert!(verify(creds.bundle(), creds.federated(), &ours.chain).is_ok());
    }
}

#[test]
fn upstream_verify_no_roots() {
    // go-spiffe x509svid verify_test TestVerify "no roots": bundle
    // x509bundle.New(domain1.test), no authorities -> "x509svid: could not
    // verify leaf certificate: x509: certificate signed by unknown authority".
    let ca1 = TestCa::new("domain1.test");
    let (leaf, _) = ca1.sign(&good_leaf("spiffe://domain1.test/workload"));
    let empty = TrustBundle::without_roots(td("domain1.test"));
    let err = verify(&empty, &FederatedBundles::none(), &[leaf]).unwrap_err();
    assert!(
        err.to_string()
            .contains("certificate signed by unknown authority"),
        "{err}"
    );
}
