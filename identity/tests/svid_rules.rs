//! X509-SVID verification: each rejection rule, with a certificate built to
//! break just that rule (everything else as in [`common::good_leaf`]).
mod common;

use std::time::Duration;

use common::{TD, TestCa, good_leaf, id, td, verify};
use palisade_identity::{CaOptions, CertificateAuthority, SvidError, TrustBundle};
use rcgen::{BasicConstraints, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType};
use rustls::pki_types::CertificateDer;
use time::OffsetDateTime;

const ID: &str = "spiffe://mesh.test/ns/default/sa/web";

/// Verifies a leaf made from `good_leaf(ID)` after `tweak`.
fn verify_tweaked(tweak: impl FnOnce(&mut rcgen::CertificateParams)) -> Result<String, SvidError> {
    let ca = TestCa::new(TD);
    let mut params = good_leaf(ID);
    tweak(&mut params);
    let (leaf, _) = ca.sign(&params);
    verify(&ca.bundle(TD), &[leaf]).map(|id| id.to_string())
}

#[test]
fn accepts_a_well_formed_svid() {
    assert_eq!(verify_tweaked(|_| {}).unwrap(), ID);
}

#[test]
fn accepts_svids_issued_by_our_ca_with_and_without_intermediate() {
    for intermediate in [false, true] {
        let opts = CaOptions {
            intermediate,
            ..CaOptions::default()
        };
        let ca = CertificateAuthority::create(&td(TD), &opts).unwrap();
        let svid = ca.issue(&id(ID), Duration::from_secs(3600)).unwrap();
        assert_eq!(svid.chain.len(), if intermediate { 2 } else { 1 });
        assert_eq!(verify(ca.bundle(), &svid.chain).unwrap(), id(ID));
    }
}

#[test]
fn rejects_empty_chain_and_garbage() {
    let ca = TestCa::new(TD);
    assert!(matches!(
        verify(&ca.bundle(TD), &[]),
        Err(SvidError::NoCertificate)
    ));
    let garbage = CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x01]);
    assert!(matches!(
        verify(&ca.bundle(TD), &[garbage]),
        Err(SvidError::Malformed(_))
    ));
}

#[test]
fn rejects_a_leaf_with_no_path_to_a_bundle_root() {
    let ours = TestCa::new(TD);
    let theirs = TestCa::named(TD, "someone else");
    let (leaf, _) = theirs.sign(&good_leaf(ID));
    assert!(matches!(
        verify(&ours.bundle(TD), &[leaf]),
        Err(SvidError::UnknownIssuer)
    ));
    // An impostor root with our root's name: the issuer is found by name, and
    // its signature does not verify under our root's key.
    let impostor = TestCa::new(TD);
    let (leaf, _) = impostor.sign(&good_leaf(ID));
    assert!(matches!(
        verify(&ours.bundle(TD), &[leaf]),
        Err(SvidError::BadSignature)
    ));
}

#[test]
fn rejects_a_tampered_signature() {
    let ca = TestCa::new(TD);
    let (leaf, _) = ca.sign(&good_leaf(ID));
    let mut bytes = leaf.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x01;
    let err = verify(&ca.bundle(TD), &[CertificateDer::from(bytes)]).unwrap_err();
    assert!(matches!(err, SvidError::BadSignature), "{err}");
}

#[test]
fn rejects_an_expired_leaf() {
    let err = verify_tweaked(|p| {
        p.not_before = OffsetDateTime::now_utc() - Duration::from_secs(7200);
        p.not_after = OffsetDateTime::now_utc() - Duration::from_secs(60);
    })
    .unwrap_err();
    assert!(matches!(err, SvidError::Expired { .. }), "{err}");
    assert!(err.to_string().starts_with("validity window"));
}

#[test]
fn rejects_a_leaf_not_yet_valid() {
    let err = verify_tweaked(|p| {
        p.not_before = OffsetDateTime::now_utc() + Duration::from_secs(3600);
        p.not_after = OffsetDateTime::now_utc() + Duration::from_secs(7200);
    })
    .unwrap_err();
    assert!(matches!(err, SvidError::NotYetValid { .. }), "{err}");
}

#[test]
fn rejects_a_leaf_without_uri_san() {
    // "An X.509 SVID MUST contain exactly one URI SAN" (X509-SVID 2)
    let err = verify_tweaked(|p| {
        p.subject_alt_names = vec![SanType::DnsName("web.default.svc".try_into().unwrap())];
    })
    .unwrap_err();
    assert!(matches!(err, SvidError::NoUriSan), "{err}");
}

#[test]
fn rejects_a_leaf_with_two_uri_sans() {
    // "SVIDs containing more than one URI SAN MUST be rejected." (X509-SVID 5.2)
    let err = verify_tweaked(|p| {
        p.subject_alt_names.push(SanType::URI(
            "spiffe://mesh.test/ns/default/sa/other".try_into().unwrap(),
        ));
    })
    .unwrap_err();
    assert!(
        matches!(err, SvidError::MultipleUriSans { count: 2 }),
        "{err}"
    );
}

#[test]
fn rejects_a_uri_san_with_another_scheme() {
    // "the validator MUST also ensure that the scheme of the SPIFFE ID is set to
    // `spiffe`" (X509-SVID 5.2)
    let err = verify_tweaked(|p| {
        p.subject_alt_names = vec![SanType::URI(
            "https://mesh.test/ns/a/sa/b".try_into().unwrap(),
        )];
    })
    .unwrap_err();
    assert!(matches!(err, SvidError::NotSpiffeScheme { .. }), "{err}");
}

#[test]
fn rejects_a_uri_san_that_is_not_a_valid_spiffe_id() {
    let err = verify_tweaked(|p| {
        p.subject_alt_names = vec![SanType::URI("spiffe://mesh.test/ns/a/".try_into().unwrap())];
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            SvidError::InvalidSpiffeId {
                source: palisade_identity::SpiffeIdError::TrailingSlash,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn rejects_a_leaf_id_without_path() {
    // "... and MUST ensure that the SPIFFE ID has a non-root path component"
    // (X509-SVID 5.2)
    let err = verify_tweaked(|p| {
        p.subject_alt_names = vec![SanType::URI("spiffe://mesh.test".try_into().unwrap())];
    })
    .unwrap_err();
    assert!(matches!(err, SvidError::IdWithoutPath { .. }), "{err}");
}

#[test]
fn rejects_a_leaf_that_is_a_ca() {
    // "leaf certificates MUST set the `cA` field to `false`" (X509-SVID 4.1)
    let err = verify_tweaked(|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)).unwrap_err();
    assert!(matches!(err, SvidError::LeafIsCa), "{err}");
}

#[test]
fn rejects_a_leaf_without_key_usage() {
    // "The key usage extension MUST be set on all SVIDs" (X509-SVID 4.3)
    let err = verify_tweaked(|p| p.key_usages.clear()).unwrap_err();
    assert!(matches!(err, SvidError::NoKeyUsage), "{err}");
}

#[test]
fn rejects_a_leaf_with_key_cert_sign() {
    // "Leaf SVIDs MUST NOT set `keyCertSign` or `cRLSign`." (X509-SVID 4.3)
    let err = verify_tweaked(|p| p.key_usages.push(KeyUsagePurpose::KeyCertSign)).unwrap_err();
    assert!(matches!(err, SvidError::LeafKeyCertSign), "{err}");
}

#[test]
fn rejects_a_leaf_with_crl_sign() {
    let err = verify_tweaked(|p| p.key_usages.push(KeyUsagePurpose::CrlSign)).unwrap_err();
    assert!(matches!(err, SvidError::LeafCrlSign), "{err}");
}

#[test]
fn rejects_a_leaf_without_digital_signature() {
    // "Leaf SVIDs MUST set `digitalSignature`." (X509-SVID 4.3)
    let err = verify_tweaked(|p| p.key_usages = vec![KeyUsagePurpose::KeyAgreement]).unwrap_err();
    assert!(matches!(err, SvidError::NoDigitalSignature), "{err}");
}

#[test]
fn rejects_extended_key_usage_without_client_or_server_auth() {
    // "When included, fields `id-kp-serverAuth` and `id-kp-clientAuth` MUST be
    // set." (X509-SVID 4.4). Checked as a client SVID: missing clientAuth is
    // caught by path validation, missing serverAuth by the leaf rules.
    let err = verify_tweaked(|p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            SvidError::MissingEku {
                purpose: "clientAuth"
            }
        ),
        "{err}"
    );
    let err = verify_tweaked(|p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            SvidError::MissingEku {
                purpose: "serverAuth"
            }
        ),
        "{err}"
    );
    // Without the extension at all, the SVID is fine ("SHOULD include").
    verify_tweaked(|p| p.extended_key_usages.clear()).unwrap();
}

#[test]
fn rejects_an_id_outside_the_bundle_trust_domain() {
    // The CA signs an ID of another trust domain: the chain is valid, but the
    // ID's trust domain is not the bundle's.
    let err = verify_tweaked(|p| {
        p.subject_alt_names = vec![SanType::URI(
            "spiffe://other.test/ns/a/sa/b".try_into().unwrap(),
        )];
    })
    .unwrap_err();
    assert!(
        matches!(err, SvidError::TrustDomainMismatch { .. }),
        "{err}"
    );
}

#[test]
fn accepts_an_aliased_trust_domain() {
    let ca = TestCa::new(TD);
    let (leaf, _) = ca.sign(&good_leaf("spiffe://old.test/ns/a/sa/b"));
    let bundle = ca.bundle(TD).with_alias(td("old.test"));
    assert_eq!(
        verify(&bundle, &[leaf]).unwrap().trust_domain_str(),
        "old.test"
    );
}

#[test]
fn path_validation_uses_intermediates_sent_by_the_peer() {
    let root = TestCa::new(TD);
    let int = root.intermediate(TD);
    let (leaf, _) = int.sign(&good_leaf(ID));
    let bundle = root.bundle(TD);
    assert_eq!(
        verify(&bundle, &[leaf.clone(), int.cert.clone()]).unwrap(),
        id(ID)
    );
    assert!(matches!(
        verify(&bundle, &[leaf]),
        Err(SvidError::UnknownIssuer)
    ));
}

#[test]
fn a_bundle_with_two_roots_accepts_leaves_of_both() {
    let old = TestCa::new(TD);
    let new = TestCa::new(TD);
    let bundle = TrustBundle::new(td(TD), vec![old.cert.clone(), new.cert.clone()]).unwrap();
    for ca in [&old, &new] {
        let (leaf, _) = ca.sign(&good_leaf(ID));
        assert_eq!(verify(&bundle, &[leaf]).unwrap(), id(ID));
    }
    // The old root alone does not accept the new root's leaves.
    let (leaf, _) = new.sign(&good_leaf(ID));
    assert!(matches!(
        verify(&old.bundle(TD), &[leaf]),
        Err(SvidError::BadSignature)
    ));
}
