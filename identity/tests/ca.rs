//! The CA: create (root, intermediate), write and reload, load foreign CAs
//! (cert-manager layout, no SPIFFE SAN, SEC1 key), issue from a CSR or a fresh
//! key with the X509-SVID fields, and refuse what it must not sign.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{TD, TestCa, id, td, verify};
use palisade_identity::bundle::BundleError;
use palisade_identity::ca::{BACKDATE, DEFAULT_SVID_TTL};
use palisade_identity::{CaError, CaOptions, CertificateAuthority, Credentials};
use rcgen::{CertificateParams, KeyPair, SanType};
use x509_parser::prelude::{FromDer, X509Certificate};

const ID: &str = "spiffe://mesh.test/ns/prod/sa/api";

fn mode(path: &std::path::Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[test]
fn create_writes_keys_0600_and_reloads() {
    let dir = tempfile::tempdir().unwrap();
    let ca = CertificateAuthority::create(&td(TD), &CaOptions::default()).unwrap();
    ca.write_dir(dir.path()).unwrap();
    assert_eq!(mode(&dir.path().join("ca.key")), 0o600);
    assert_eq!(mode(&dir.path().join("ca.pem")), 0o644);
    let loaded = CertificateAuthority::load_dir(dir.path(), None).unwrap();
    assert_eq!(loaded.trust_domain().as_str(), TD);
    let svid = loaded.issue(&id(ID), DEFAULT_SVID_TTL).unwrap();
    // The reloaded CA's SVIDs verify against the original bundle.
    assert_eq!(verify(ca.bundle(), &svid.chain).unwrap(), id(ID));
}

#[test]
fn intermediate_ca_signs_and_root_stays_apart() {
    let dir = tempfile::tempdir().unwrap();
    let opts = CaOptions {
        intermediate: true,
        ..CaOptions::default()
    };
    let ca = CertificateAuthority::create(&td(TD), &opts).unwrap();
    ca.write_dir(dir.path()).unwrap();
    assert_eq!(mode(&dir.path().join("root.key")), 0o600);
    assert_eq!(mode(&dir.path().join("ca.key")), 0o600);
    assert_eq!(ca.bundle().roots().len(), 1);
    let loaded = CertificateAuthority::load_dir(dir.path(), None).unwrap();
    let svid = loaded.issue(&id(ID), DEFAULT_SVID_TTL).unwrap();
    assert_eq!(svid.chain.len(), 2, "leaf then intermediate");
    assert_eq!(verify(ca.bundle(), &svid.chain).unwrap(), id(ID));
}

#[test]
fn issued_svid_has_the_x509_svid_fields() {
    let ca = CertificateAuthority::create(&td(TD), &CaOptions::default()).unwrap();
    let svid = ca.issue(&id(ID), DEFAULT_SVID_TTL).unwrap();
    let (_, cert) = X509Certificate::from_der(&svid.chain[0]).unwrap();
    let sans = cert.subject_alternative_name().unwrap().unwrap();
    assert_eq!(sans.value.general_names.len(), 1, "exactly one SAN");
    assert!(!cert.basic_constraints().unwrap().unwrap().value.ca);
    let ku = cert.key_usage().unwrap().unwrap();
    assert!(ku.critical, "key usage MUST be critical (X509-SVID 4.3)");
    assert!(ku.value.digital_signature());
    assert!(!ku.value.key_cert_sign() && !ku.value.crl_sign());
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    let v = cert.validity();
    let lifetime = v.not_after.timestamp() - v.not_before.timestamp();
    assert_eq!(lifetime as u64, (DEFAULT_SVID_TTL + BACKDATE).as_secs());
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    assert!(
        v.not_before.timestamp() <= now - 290,
        "backdated for clock skew"
    );
    // Serials are random, so two SVIDs for the same ID differ.
    let other = ca.issue(&id(ID), DEFAULT_SVID_TTL).unwrap();
    let (_, other) = X509Certificate::from_der(&other.chain[0]).unwrap();
    assert_ne!(cert.raw_serial(), other.raw_serial());
}

#[test]
fn issues_from_a_csr_to_the_csr_key() {
    let ca = CertificateAuthority::create(&td(TD), &CaOptions::default()).unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    let svid = ca
        .issue_from_csr(&csr, &id(ID), Duration::from_secs(600))
        .unwrap();
    assert!(svid.key.is_none());
    assert_eq!(verify(ca.bundle(), &svid.chain).unwrap(), id(ID));
    // The certificate is for the CSR's key: credentials built from it load.
    let key_der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    Credentials::new(svid.chain, key_der, ca.bundle().clone()).unwrap();
}

#[test]
fn refuses_a_csr_with_a_bad_signature() {
    let ca = CertificateAuthority::create(&td(TD), &CaOptions::default()).unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let csr = CertificateParams::default()
        .serialize_request(&key)
        .unwrap();
    let mut der = csr.der().to_vec();
    let last = der.len() - 1;
    der[last] ^= 1;
    let pem = palisade_identity::pem::encode("CERTIFICATE REQUEST", &der);
    let err = ca
        .issue_from_csr(&pem, &id(ID), DEFAULT_SVID_TTL)
        .unwrap_err();
    assert!(matches!(err, CaError::BadCsr(_)), "{err}");
    let err = ca
        .issue_from_csr("not a csr", &id(ID), DEFAULT_SVID_TTL)
        .unwrap_err();
    assert!(matches!(err, CaError::BadCsr(_)), "{err}");
}

#[test]
fn refuses_a_csr_asking_for_another_id() {
    let ca = CertificateAuthority::create(&td(TD), &CaOptions::default()).unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.subject_alt_names = vec![SanType::URI(
        "spiffe://mesh.test/ns/kube-system/sa/admin"
            .try_into()
            .unwrap(),
    )];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let err = ca
        .issue_from_csr(&csr, &id(ID), DEFAULT_SVID_TTL)
        .unwrap_err();
    assert!(matches!(err, CaError::CsrIdMismatch { .. }), "{err}");
}

#[test]
fn refuses_foreign_ids_rootless_ids_and_zero_ttl() {
    let ca = CertificateAuthority::create(&td(TD), &CaOptions::default()).unwrap();
    let err = ca
        .issue(&id("spiffe://other.test/ns/a/sa/b"), DEFAULT_SVID_TTL)
        .unwrap_err();
    assert!(matches!(err, CaError::ForeignId { .. }), "{err}");
    let err = ca
        .issue(&id("spiffe://mesh.test"), DEFAULT_SVID_TTL)
        .unwrap_err();
    assert!(matches!(err, CaError::IdWithoutPath(_)), "{err}");
    let err = ca.issue(&id(ID), Duration::ZERO).unwrap_err();
    assert!(matches!(err, CaError::ZeroTtl), "{err}");
}

#[test]
fn an_svid_never_outlives_its_ca() {
    let opts = CaOptions {
        intermediate: true,
        intermediate_ttl: Duration::from_secs(3600),
        ..CaOptions::default()
    };
    let ca = CertificateAuthority::create(&td(TD), &opts).unwrap();
    let svid = ca.issue(&id(ID), Duration::from_secs(30 * 86400)).unwrap();
    let (_, leaf) = X509Certificate::from_der(&svid.chain[0]).unwrap();
    let (_, int) = X509Certificate::from_der(&svid.chain[1]).unwrap();
    assert!(leaf.validity().not_after.timestamp() <= int.validity().not_after.timestamp());
}

/// A cert-manager CA secret: `tls.crt`, `tls.key` (SEC1 "EC PRIVATE KEY"),
/// `ca.crt`, and a root with no SPIFFE URI SAN.
#[test]
fn loads_a_cert_manager_style_ca_without_spiffe_san() {
    let dir = tempfile::tempdir().unwrap();
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let root = params.self_signed(&key).unwrap();
    // PKCS#8 -> SEC1 as cert-manager writes by default, via openssl if present;
    // otherwise PKCS#8 (cert-manager's `encoding: PKCS8`).
    let pkcs8 = key.serialize_pem();
    let sec1 = std::process::Command::new("openssl")
        .args(["ec", "-inform", "PEM", "-outform", "PEM"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .and_then(|mut c| {
            use std::io::Write;
            c.stdin.take().unwrap().write_all(pkcs8.as_bytes())?;
            c.wait_with_output()
        })
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8(o.stdout).unwrap());
    let key_pem = sec1.clone().unwrap_or(pkcs8);
    if sec1.is_some() {
        assert!(key_pem.contains("BEGIN EC PRIVATE KEY"));
    }
    std::fs::write(dir.path().join("tls.crt"), root.pem()).unwrap();
    std::fs::write(dir.path().join("tls.key"), &key_pem).unwrap();
    std::fs::write(dir.path().join("ca.crt"), root.pem()).unwrap();
    // No SPIFFE SAN anywhere: the trust domain must be given.
    let err = CertificateAuthority::load_dir(dir.path(), None).unwrap_err();
    assert!(
        matches!(err, CaError::Bundle(BundleError::NoTrustDomain)),
        "{err}"
    );
    let ca = CertificateAuthority::load_dir(dir.path(), Some(td(TD))).unwrap();
    let svid = ca.issue(&id(ID), DEFAULT_SVID_TTL).unwrap();
    assert_eq!(verify(ca.bundle(), &svid.chain).unwrap(), id(ID));
}

#[test]
fn refuses_mismatched_or_unfit_ca_material() {
    let a = TestCa::new(TD);
    let b = TestCa::new(TD);
    let cert_pem = palisade_identity::pem::encode_certs(std::slice::from_ref(&a.cert));
    let err =
        CertificateAuthority::from_pem(&cert_pem, &b.key.serialize_pem(), None, None).unwrap_err();
    assert!(matches!(err, CaError::KeyMismatch), "{err}");
    // A leaf is not a CA.
    let (leaf, leaf_key) = a.sign(&common::good_leaf(ID));
    let leaf_pem = palisade_identity::pem::encode_certs(&[leaf]);
    let err = CertificateAuthority::from_pem(&leaf_pem, &leaf_key.serialize_pem(), None, None)
        .unwrap_err();
    assert!(matches!(err, CaError::NotACa), "{err}");
    // An intermediate whose root is missing cannot issue verifiable SVIDs.
    let int = a.intermediate(TD);
    let int_pem = palisade_identity::pem::encode_certs(std::slice::from_ref(&int.cert));
    let wrong_roots = palisade_identity::pem::encode_certs(std::slice::from_ref(&b.cert));
    let err = CertificateAuthority::from_pem(
        &int_pem,
        &int.key.serialize_pem(),
        Some(&wrong_roots),
        None,
    )
    .unwrap_err();
    assert!(matches!(err, CaError::SelfCheck(_)), "{err}");
    let right_roots = palisade_identity::pem::encode_certs(std::slice::from_ref(&a.cert));
    CertificateAuthority::from_pem(&int_pem, &int.key.serialize_pem(), Some(&right_roots), None)
        .unwrap();
    // Garbage.
    let err = CertificateAuthority::from_pem("junk", "junk", None, None).unwrap_err();
    assert!(matches!(err, CaError::Pem(_) | CaError::BadKey(_)), "{err}");
}

#[test]
fn refuses_a_signing_certificate_without_key_usage() {
    // "The key usage extension MUST be set on all SVIDs" and "SVID signing
    // certificates MUST set `keyCertSign`" (X509-SVID 4.3); go-spiffe x509svid
    // "signing certificate must have 'keyCertSign' set as key usage".
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.subject_alt_names = vec![rcgen::SanType::URI(
        format!("spiffe://{TD}").try_into().unwrap(),
    )];
    params.key_usages.clear();
    let root = params.self_signed(&key).unwrap();
    let err =
        CertificateAuthority::from_pem(&root.pem(), &key.serialize_pem(), None, None).unwrap_err();
    assert!(matches!(err, CaError::NoKeyCertSign), "{err}");
}

#[test]
fn refuses_a_signing_certificate_whose_spiffe_id_has_a_path() {
    // "If present, the SPIFFE ID of a signing certificate MUST NOT have a path
    // component" (X509-SVID 3.2): such a CA would sign SVIDs no conforming
    // validator should accept.
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let mut params = CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.subject_alt_names = vec![SanType::URI(
        format!("spiffe://{TD}/ca").try_into().unwrap(),
    )];
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    let root = params.self_signed(&key).unwrap();
    let err =
        CertificateAuthority::from_pem(&root.pem(), &key.serialize_pem(), None, None).unwrap_err();
    assert!(
        matches!(err, CaError::SigningIdWithPath(ref id) if id == "spiffe://mesh.test/ca"),
        "{err}"
    );
}
