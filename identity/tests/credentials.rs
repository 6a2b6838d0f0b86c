//! The on-disk SVID layout (`svid.pem`, `svid.key`, `bundle.pem`) that every
//! component reads, and the checks `Credentials` makes before serving.
mod common;

use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

use common::{TD, id, td};
use palisade_identity::credentials::write_svid_dir;
use palisade_identity::{CaOptions, CertificateAuthority, Credentials, CredentialsError};

const ID: &str = "spiffe://mesh.test/ns/prod/sa/api";

fn ca(intermediate: bool) -> CertificateAuthority {
    let opts = CaOptions {
        intermediate,
        ..CaOptions::default()
    };
    CertificateAuthority::create(&td(TD), &opts).unwrap()
}

#[test]
fn load_dir_reads_what_write_svid_dir_wrote() {
    let ca = ca(true);
    let dir = tempfile::tempdir().unwrap();
    let svid = ca.issue(&id(ID), Duration::from_secs(600)).unwrap();
    write_svid_dir(dir.path(), &svid.chain, svid.key.as_ref(), ca.bundle()).unwrap();
    let mode = std::fs::metadata(dir.path().join("svid.key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
    let creds = Credentials::load_dir(dir.path()).unwrap();
    assert_eq!(creds.id(), &id(ID));
    assert_eq!(creds.certified_key().cert.len(), 2, "leaf and intermediate");
    assert_eq!(creds.bundle().trust_domain().as_str(), TD);
    assert_eq!(creds.bundle().roots(), ca.bundle().roots());
}

#[test]
fn load_dir_names_the_missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let err = Credentials::load_dir(dir.path()).unwrap_err();
    assert!(matches!(err, CredentialsError::Io { .. }), "{err}");
    assert!(err.to_string().contains("svid.pem"), "{err}");
}

#[test]
fn refuses_a_key_that_does_not_fit_the_svid() {
    let ca = ca(false);
    let a = ca.issue(&id(ID), Duration::from_secs(600)).unwrap();
    let b = ca.issue(&id(ID), Duration::from_secs(600)).unwrap();
    let err = Credentials::new(a.chain, b.key.unwrap(), ca.bundle().clone()).unwrap_err();
    assert!(matches!(err, CredentialsError::KeyMismatch), "{err}");
    // go-spiffe x509svid svid_test TestParse "Certificate does not match
    // private key": "x509svid: private key validation failed: leaf
    // certificate does not match private key".
    assert!(
        err.to_string()
            .contains("private key validation failed: leaf certificate does not match private key"),
        "{err}"
    );
}

#[test]
fn refuses_a_certificate_that_is_not_an_svid() {
    // A CA certificate is not a leaf SVID: it cannot be served as our identity.
    let ca = common::TestCa::new(TD);
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(ca.key.serialize_der().into());
    let err = Credentials::new(vec![ca.cert.clone()], key, ca.bundle(TD)).unwrap_err();
    assert!(matches!(err, CredentialsError::Svid(_)), "{err}");
}

#[test]
fn refuses_a_chain_whose_signing_certificates_are_not_signing_certificates() {
    // go-spiffe x509svid svid_test (Parse of an SVID with its chain): "Signing
    // certificate without CA flag" -> "signing certificate must have CA flag set
    // to true"; "Signing certificate without 'keyCertSign' usage" -> "signing
    // certificate must have 'keyCertSign' set as key usage" (X509-SVID 4.1, 4.3).
    use palisade_identity::SvidError;
    let root = common::TestCa::new(TD);
    type Tweak = fn(&mut rcgen::CertificateParams);
    let cases: [(&str, Tweak); 3] = [
        ("not a ca", |p| p.is_ca = rcgen::IsCa::ExplicitNoCa),
        ("crl sign only", |p| {
            p.key_usages = vec![rcgen::KeyUsagePurpose::CrlSign]
        }),
        ("no key usage", |p| p.key_usages.clear()),
    ];
    for (cn, tweak) in cases {
        let int = root.intermediate_with(TD, cn, tweak);
        let (leaf, key) = int.sign(&common::good_leaf(ID));
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        let err = Credentials::new(vec![leaf, int.cert.clone()], key, root.bundle(TD)).unwrap_err();
        assert!(
            matches!(
                err,
                CredentialsError::Svid(
                    SvidError::SigningCertNotCa | SvidError::SigningCertNoKeyCertSign { .. }
                )
            ),
            "{cn}: {err}"
        );
    }
    // A well-formed intermediate is accepted.
    let int = root.intermediate(TD);
    let (leaf, key) = int.sign(&common::good_leaf(ID));
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    Credentials::new(vec![leaf, int.cert.clone()], key, root.bundle(TD)).unwrap();
}

#[test]
fn upstream_parse_cases_of_the_files() {
    // go-spiffe x509svid svid_test TestParse, the file cases, through the
    // SVID directory: "Missing certificate" (the key file as certificates):
    // "no certificates found"; "Missing private key" (the certificate file as
    // key): "no private key found"; "Corrupt certificate": refused.
    let ca = ca(false);
    let svid = ca.issue(&id(ID), Duration::from_secs(600)).unwrap();
    let fresh = || {
        let dir = tempfile::tempdir().unwrap();
        write_svid_dir(dir.path(), &svid.chain, svid.key.as_ref(), ca.bundle()).unwrap();
        dir
    };
    let dir = fresh();
    std::fs::copy(dir.path().join("svid.key"), dir.path().join("svid.pem")).unwrap();
    let err = Credentials::load_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("no certificates found"), "{err}");
    assert!(err.to_string().contains("svid.pem"), "{err}");
    let dir = fresh();
    std::fs::copy(dir.path().join("svid.pem"), dir.path().join("svid.key")).unwrap();
    let err = Credentials::load_dir(dir.path()).unwrap_err();
    assert!(err.to_string().contains("no private key found"), "{err}");
    assert!(err.to_string().contains("svid.key"), "{err}");
    let dir = fresh();
    std::fs::write(
        dir.path().join("svid.pem"),
        "-----BEGIN CERTIFICATE-----\nMIIBAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let err = Credentials::load_dir(dir.path()).unwrap_err();
    assert!(matches!(err, CredentialsError::Svid(_)), "{err:?}");
}
