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
fn accepts_other_san_types_beside_the_one_uri_san() {
    // "An X.509 SVID MAY contain any number of other SAN field types,
    // including DNS SANs." (X509-SVID 2): only URI SANs are counted.
    let id = verify_tweaked(|p| {
        p.subject_alt_names.extend([
            SanType::DnsName("web.default.svc".try_into().unwrap()),
            SanType::DnsName("web.default.svc.cluster.local".try_into().unwrap()),
            SanType::IpAddress("10.0.0.7".parse().unwrap()),
            SanType::Rfc822Name("ops@mesh.test".try_into().unwrap()),
        ]);
    })
    .unwrap();
    assert_eq!(id, ID);
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
    assert!(err.to_string().contains("validity window"), "{err}");
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
    // set." (X509-SVID 4.4). The leaf rules run first and demand both,
    // whichever role the peer plays.
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

/// Verifies a good leaf signed by an intermediate of `root` whose parameters
/// `tweak` changed; the peer sends leaf then intermediate.
fn verify_via_intermediate(
    tweak: impl FnOnce(&mut rcgen::CertificateParams),
) -> Result<String, SvidError> {
    let root = TestCa::new(TD);
    let int = root.intermediate_with(TD, "tweaked intermediate", tweak);
    let (leaf, _) = int.sign(&good_leaf(ID));
    verify(&root.bundle(TD), &[leaf, int.cert.clone()]).map(|id| id.to_string())
}

#[test]
fn rejects_a_signing_certificate_without_key_cert_sign() {
    // "SVID signing certificates MUST set `keyCertSign`." (X509-SVID 4.3); RFC
    // 5280 6.1.4 (n): "If a key usage extension is present, verify that the
    // keyCertSign bit is set."; go-spiffe x509svid svid_test "Signing
    // certificate without 'keyCertSign' usage": "signing certificate must have
    // 'keyCertSign' set as key usage".
    let err =
        verify_via_intermediate(|p| p.key_usages = vec![KeyUsagePurpose::CrlSign]).unwrap_err();
    assert!(
        matches!(err, SvidError::SigningCertNoKeyCertSign { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("keyCertSign"), "{err}");
    // "The key usage extension MUST be set on all SVIDs" (X509-SVID 4.3): a
    // signing certificate without it has no keyCertSign either (go-spiffe
    // tests `KeyUsage&KeyUsageCertSign == 0`).
    let err = verify_via_intermediate(|p| p.key_usages.clear()).unwrap_err();
    assert!(
        matches!(err, SvidError::SigningCertNoKeyCertSign { .. }),
        "{err}"
    );
}

#[test]
fn rejects_a_signing_certificate_that_is_not_a_ca() {
    // "Signing certificates MUST set the `cA` field to `true`" (X509-SVID 4.1);
    // go-spiffe x509svid svid_test "Signing certificate without CA flag":
    // "signing certificate must have CA flag set to true".
    for is_ca in [IsCa::ExplicitNoCa, IsCa::NoCa] {
        let err = verify_via_intermediate(|p| p.is_ca = is_ca).unwrap_err();
        assert!(matches!(err, SvidError::SigningCertNotCa), "{err}");
        assert!(err.to_string().contains("CA flag"), "{err}");
    }
}

#[test]
fn enforces_the_path_len_constraint_of_signing_certificates() {
    // "Valid X.509 SVID signing certificates MAY set the `pathLenConstraint`
    // field" (X509-SVID 4.1), enforced by RFC 5280 6.1.4 (l)/(m) path
    // validation (X509-SVID 5.1), as go-spiffe does through crypto/x509.
    let root = TestCa::new(TD);
    let int = root.intermediate_with(TD, "int pathlen 0", |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    });
    let sub = int.intermediate_with(TD, "sub of pathlen 0", |_| {});
    let (leaf, _) = sub.sign(&good_leaf(ID));
    let err = verify(
        &root.bundle(TD),
        &[leaf, sub.cert.clone(), int.cert.clone()],
    )
    .unwrap_err();
    assert!(err.to_string().contains("PathLen"), "{err}");
    // One level under an unconstrained intermediate is fine.
    let int = root.intermediate_with(TD, "int unconstrained", |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    });
    let sub = int.intermediate_with(TD, "sub of unconstrained", |_| {});
    let (leaf, _) = sub.sign(&good_leaf(ID));
    verify(
        &root.bundle(TD),
        &[leaf, sub.cert.clone(), int.cert.clone()],
    )
    .unwrap();
}

#[test]
fn rejects_an_expired_signing_certificate() {
    // RFC 5280 6.1.3 (a)(2): every certificate of the path must be within its
    // validity window (X509-SVID 5.1), not only the leaf.
    let err = verify_via_intermediate(|p| {
        p.not_before = OffsetDateTime::now_utc() - Duration::from_secs(7200);
        p.not_after = OffsetDateTime::now_utc() - Duration::from_secs(60);
    })
    .unwrap_err();
    assert!(matches!(err, SvidError::Expired { .. }), "{err}");
}

#[test]
fn rejects_an_id_of_a_trust_domain_without_a_bundle_before_path_validation() {
    // go-spiffe x509svid verify_test "no roots for leaf cert domain": a leaf of
    // domain1.test checked against the bundle of domain2.test fails on the
    // trust domain ("no X.509 bundle found for trust domain"), since Verify
    // picks the bundle of the ID's trust domain before it verifies the chain.
    let ca1 = TestCa::new("domain1.test");
    let ca2 = TestCa::new("domain2.test");
    let (leaf, _) = ca1.sign(&good_leaf("spiffe://domain1.test/workload"));
    let err = verify(&ca2.bundle("domain2.test"), &[leaf]).unwrap_err();
    assert!(
        matches!(err, SvidError::TrustDomainMismatch { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("domain1.test"), "{err}");
}

#[test]
fn upstream_verify_cases() {
    // go-spiffe x509svid verify_test TestVerify, case by case.
    let ca1 = TestCa::new("domain1.test");
    let bundle1 = ca1.bundle("domain1.test");
    let good = good_leaf("spiffe://domain1.test/workload");
    // "empty chain"
    assert!(matches!(
        verify(&bundle1, &[]),
        Err(SvidError::NoCertificate)
    ));
    // "bad leaf cert id": sparfe://domain1.test/workload
    let mut p = good.clone();
    p.subject_alt_names = vec![SanType::URI(
        "sparfe://domain1.test/workload".try_into().unwrap(),
    )];
    let (leaf, _) = ca1.sign(&p);
    assert!(matches!(
        verify(&bundle1, &[leaf]),
        Err(SvidError::NotSpiffeScheme { .. })
    ));
    // "verification fails": ca2's roots as the bundle of domain1.test
    let ca2 = TestCa::new("domain2.test");
    let (leaf, _) = ca1.sign(&good);
    assert!(verify(&ca2.bundle("domain1.test"), &[leaf]).is_err());
    // "no URI SAN", "more than one URI SAN" (same URI twice)
    let mut p = good.clone();
    p.subject_alt_names.clear();
    let (leaf, _) = ca1.sign(&p);
    assert!(matches!(
        verify(&bundle1, &[leaf]),
        Err(SvidError::NoUriSan)
    ));
    let mut p = good.clone();
    p.subject_alt_names.extend(good.subject_alt_names.clone());
    let (leaf, _) = ca1.sign(&p);
    assert!(matches!(
        verify(&bundle1, &[leaf]),
        Err(SvidError::MultipleUriSans { count: 2 })
    ));
    // "leaf is CA", "leaf has KeyUsageCertSign", "leaf has KeyUsageCRLSign"
    let mut p = good.clone();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let (leaf, _) = ca1.sign(&p);
    assert!(matches!(
        verify(&bundle1, &[leaf]),
        Err(SvidError::LeafIsCa)
    ));
    let mut p = good.clone();
    p.key_usages.push(KeyUsagePurpose::KeyCertSign);
    let (leaf, _) = ca1.sign(&p);
    assert!(matches!(
        verify(&bundle1, &[leaf]),
        Err(SvidError::LeafKeyCertSign)
    ));
    let mut p = good.clone();
    p.key_usages.push(KeyUsagePurpose::CrlSign);
    let (leaf, _) = ca1.sign(&p);
    assert!(matches!(
        verify(&bundle1, &[leaf]),
        Err(SvidError::LeafCrlSign)
    ));
    // "success"
    let (leaf, _) = ca1.sign(&good);
    assert_eq!(
        verify(&bundle1, &[leaf]).unwrap(),
        id("spiffe://domain1.test/workload")
    );
}

#[test]
fn rejects_a_signing_certificate_whose_spiffe_id_has_a_path() {
    // "If present, the SPIFFE ID of a signing certificate MUST NOT have a path
    // component" (X509-SVID 3.2); go-spiffe x509svid svid_test (v2.0) "Signing
    // certificate with non root ID": "signing certificate SPIFFE ID must not
    // have a path component".
    let err = verify_via_intermediate(|p| {
        p.subject_alt_names = vec![SanType::URI(
            "spiffe://mesh.test/workload-1".try_into().unwrap(),
        )];
    })
    .unwrap_err();
    assert!(
        matches!(err, SvidError::SigningCertIdWithPath { ref id } if id == "spiffe://mesh.test/workload-1"),
        "{err}"
    );
    assert!(err.to_string().contains("MUST NOT have a path"), "{err}");
    // "A signing certificate SHOULD itself be an SVID" (X509-SVID 3.2): one
    // without a SPIFFE ID, or with another kind of URI, is still a signer.
    verify_via_intermediate(|p| p.subject_alt_names.clear()).unwrap();
    verify_via_intermediate(|p| {
        p.subject_alt_names = vec![SanType::URI("https://ca.example/int".try_into().unwrap())];
    })
    .unwrap();
    // The trust domain ID of another trust domain is fine ("MAY be used to
    // issue further signing certificates in the same or different trust
    // domains").
    verify_via_intermediate(|p| {
        p.subject_alt_names = vec![SanType::URI("spiffe://other.test".try_into().unwrap())];
    })
    .unwrap();
}

#[test]
fn credentials_refuse_a_chain_whose_signing_certificate_id_has_a_path() {
    // X509-SVID 3.2, as above, for our own SVID chain (go-spiffe x509svid.Parse
    // validates the signing certificates the SVID carries).
    let root = TestCa::new(TD);
    let int = root.intermediate_with(TD, "int with path", |p| {
        p.subject_alt_names = vec![SanType::URI(
            "spiffe://mesh.test/workload-1".try_into().unwrap(),
        )];
    });
    let (leaf, key) = int.sign(&good_leaf(ID));
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let err =
        palisade_identity::Credentials::new(vec![leaf, int.cert.clone()], key, root.bundle(TD))
            .unwrap_err();
    assert!(
        matches!(
            err,
            palisade_identity::CredentialsError::Svid(SvidError::SigningCertIdWithPath { .. })
        ),
        "{err}"
    );
}

#[test]
fn a_signing_certificate_eku_without_the_peer_purpose_is_named_as_such() {
    // "Signing certificates MAY include an Extended Key Usage extension ...
    // Some X.509 implementations will impose EKU constraints in intermediate
    // CA certificates on all certificates below them" (X509-SVID 4.4). webpki
    // does; the leaf here has both purposes, so the error must name the
    // signing certificate, not the leaf.
    let err = verify_via_intermediate(|p| {
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    })
    .unwrap_err();
    assert!(
        matches!(
            err,
            SvidError::SigningCertMissingEku {
                purpose: "clientAuth"
            }
        ),
        "{err}"
    );
    assert!(err.to_string().starts_with("signing certificate"), "{err}");
    // With both purposes (or none) the chain verifies.
    verify_via_intermediate(|p| {
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
    })
    .unwrap();
}

/// `res` failed and its text carries go-spiffe's (`require.Contains`).
fn assert_upstream_text<T: std::fmt::Debug, E: std::fmt::Display>(
    res: Result<T, E>,
    case: &str,
    text: &str,
) {
    match res {
        Ok(v) => panic!("{case}: accepted ({v:?}), upstream fails with {text:?}"),
        Err(e) => assert!(
            e.to_string().contains(text),
            "{case}: {e} lacks the upstream text {text:?}"
        ),
    }
}

#[test]
fn upstream_verify_error_texts() {
    // go-spiffe x509svid verify_test TestVerify: each case's error contains
    // the text below (after the "x509svid: ..." prefix of its wrapping).
    let ca1 = TestCa::new("domain1.test");
    let bundle1 = ca1.bundle("domain1.test");
    let good = good_leaf("spiffe://domain1.test/workload");
    let signed = |tweak: &dyn Fn(&mut rcgen::CertificateParams)| {
        let mut p = good.clone();
        tweak(&mut p);
        ca1.sign(&p).0
    };
    let cases: Vec<(&str, Vec<CertificateDer<'static>>, TrustBundle, &str)> = vec![
        (
            "empty chain",
            vec![],
            bundle1.clone(),
            "empty certificates chain",
        ),
        (
            "no roots for leaf cert domain",
            vec![signed(&|_| {})],
            TestCa::new("domain2.test").bundle("domain2.test"),
            r#"no X.509 bundle found for trust domain: "domain1.test""#,
        ),
        (
            "bad leaf cert id",
            vec![signed(&|p| {
                p.subject_alt_names = vec![SanType::URI(
                    "sparfe://domain1.test/workload".try_into().unwrap(),
                )]
            })],
            bundle1.clone(),
            "scheme is missing or invalid",
        ),
        (
            "verification fails",
            vec![signed(&|_| {})],
            TestCa::named("domain2.test", "another root").bundle("domain1.test"),
            "certificate signed by unknown authority",
        ),
        (
            "no URI SAN",
            vec![signed(&|p| p.subject_alt_names.clear())],
            bundle1.clone(),
            "certificate contains no URI SAN",
        ),
        (
            "more than one URI SAN",
            vec![signed(&|p| {
                let same = p.subject_alt_names.clone();
                p.subject_alt_names.extend(same);
            })],
            bundle1.clone(),
            "certificate contains more than one URI SAN",
        ),
        (
            "leaf is CA",
            vec![signed(&|p| {
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)
            })],
            bundle1.clone(),
            "leaf certificate with CA flag set to true",
        ),
        (
            "leaf has KeyUsageCertSign",
            vec![signed(&|p| p.key_usages.push(KeyUsagePurpose::KeyCertSign))],
            bundle1.clone(),
            "leaf certificate with KeyCertSign key usage",
        ),
        (
            "leaf has KeyUsageCRLSign",
            vec![signed(&|p| p.key_usages.push(KeyUsagePurpose::CrlSign))],
            bundle1.clone(),
            "leaf certificate with KeyCrlSign key usage",
        ),
        (
            "with time (after NotAfter)",
            vec![signed(&|p| {
                p.not_before = OffsetDateTime::now_utc() - Duration::from_secs(7200);
                p.not_after = OffsetDateTime::now_utc() - Duration::from_secs(1);
            })],
            bundle1.clone(),
            "certificate has expired",
        ),
    ];
    for (case, chain, bundle, text) in cases {
        assert_upstream_text(verify(&bundle, &chain), case, text);
    }
}

#[test]
fn upstream_parse_error_texts() {
    // go-spiffe x509svid svid_test TestParse: the leaf and signing certificate
    // rules checked when an SVID (our own Credentials) is loaded.
    let root = TestCa::new(TD);
    let creds = |chain: Vec<CertificateDer<'static>>, key: rcgen::KeyPair| {
        let key = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
        palisade_identity::Credentials::new(chain, key, root.bundle(TD)).map(|c| c.id().clone())
    };
    let leaf = |tweak: &dyn Fn(&mut rcgen::CertificateParams)| {
        let mut p = good_leaf(ID);
        tweak(&mut p);
        root.sign(&p)
    };
    let (l, k) = leaf(&|p| p.subject_alt_names.clear());
    assert_upstream_text(
        creds(vec![l], k),
        "Certificate without SPIFFE ID",
        "certificate contains no URI SAN",
    );
    let (l, k) = leaf(&|p| p.key_usages = vec![KeyUsagePurpose::KeyEncipherment]);
    assert_upstream_text(
        creds(vec![l], k),
        "Leaf certificate without digitalSignature as key usage",
        "leaf certificate must have 'digitalSignature' set as key usage",
    );
    // "Leaf certificate with CA flag set to true", "Leaf certificate with
    // certSign as key usage", "Leaf certificate with cRLSign as key usage":
    // Parse words these rules apart from Verify ("leaf certificate with CA
    // flag set to true", ...); our one text per rule carries both.
    let (l, k) = leaf(&|p| p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained));
    assert_upstream_text(
        creds(vec![l], k),
        "Leaf certificate with CA flag set to true",
        "leaf certificate must not have CA flag set to true",
    );
    let (l, k) = leaf(&|p| p.key_usages.push(KeyUsagePurpose::KeyCertSign));
    assert_upstream_text(
        creds(vec![l], k),
        "Leaf certificate with certSign as key usage",
        "leaf certificate must not have 'keyCertSign' set as key usage",
    );
    let (l, k) = leaf(&|p| p.key_usages.push(KeyUsagePurpose::CrlSign));
    assert_upstream_text(
        creds(vec![l], k),
        "Leaf certificate with cRLSign as key usage",
        "leaf certificate must not have 'cRLSign' set as key usage",
    );
    let via = |tweak: &dyn Fn(&mut rcgen::CertificateParams)| {
        let int = root.intermediate_with(TD, "tweaked intermediate", |p| tweak(p));
        let (l, k) = int.sign(&good_leaf(ID));
        creds(vec![l, int.cert.clone()], k)
    };
    assert_upstream_text(
        via(&|p| p.is_ca = IsCa::ExplicitNoCa),
        "Signing certificate without CA flag",
        "signing certificate must have CA flag set to true",
    );
    assert_upstream_text(
        via(&|p| p.key_usages = vec![KeyUsagePurpose::CrlSign]),
        "Signing certificate without 'keyCertSign' usage",
        "signing certificate must have 'keyCertSign' set as key usage",
    );
}

// === The anchoring root's own limits ===
//
// webpki turns a root into a trust anchor of subject, key and name
// constraints only; crypto/x509 (go-spiffe) and OpenSSL also hold the root
// to its validity window and its pathLenConstraint.

/// A root of `TD` whose parameters `tweak` changed.
fn root_with(cn: &str, tweak: impl FnOnce(&mut rcgen::CertificateParams)) -> TestCa {
    TestCa::root_with(TD, cn, tweak)
}

fn expired(p: &mut rcgen::CertificateParams) {
    p.not_before = OffsetDateTime::now_utc() - Duration::from_secs(400 * 86400);
    p.not_after = OffsetDateTime::now_utc() - Duration::from_secs(86400);
}

#[test]
fn rejects_an_svid_whose_root_has_expired() {
    let root = root_with("expired root", expired);
    // The leaf itself is within its validity window.
    let (leaf, _) = root.sign(&good_leaf(ID));
    let err = verify(&root.bundle(TD), &[leaf]).unwrap_err();
    assert!(matches!(err, SvidError::RootExpired { .. }), "{err}");
    assert_eq!(err.code(), "root-validity");
    assert!(err.to_string().contains("expired root"), "{err}");
    // Through an intermediate too.
    let int = root.intermediate(TD);
    let (leaf, _) = int.sign(&good_leaf(ID));
    let err = verify(&root.bundle(TD), &[leaf, int.cert.clone()]).unwrap_err();
    assert!(matches!(err, SvidError::RootExpired { .. }), "{err}");
}

#[test]
fn rejects_an_svid_whose_root_is_not_yet_valid() {
    let root = root_with("future root", |p| {
        p.not_before = OffsetDateTime::now_utc() + Duration::from_secs(86400);
        p.not_after = OffsetDateTime::now_utc() + Duration::from_secs(30 * 86400);
    });
    let (leaf, _) = root.sign(&good_leaf(ID));
    let err = verify(&root.bundle(TD), &[leaf]).unwrap_err();
    assert!(matches!(err, SvidError::RootNotYetValid { .. }), "{err}");
}

#[test]
fn a_root_is_checked_at_the_verification_time() {
    use palisade_identity::provider::default_provider;
    use palisade_identity::{PeerRole, verify_svid_chain};
    use rustls::pki_types::UnixTime;
    let root = root_with("short root", |p| {
        p.not_after = OffsetDateTime::now_utc() + Duration::from_secs(600);
    });
    let mut params = good_leaf(ID);
    params.not_after = OffsetDateTime::now_utc() + Duration::from_secs(86400);
    let (leaf, _) = root.sign(&params);
    let at = |secs_from_now: u64| {
        let t = std::time::SystemTime::now() + Duration::from_secs(secs_from_now);
        verify_svid_chain(
            &root.bundle(TD),
            std::slice::from_ref(&leaf),
            UnixTime::since_unix_epoch(t.duration_since(std::time::UNIX_EPOCH).unwrap()),
            PeerRole::Client,
            &default_provider(),
        )
    };
    assert_eq!(at(0).unwrap(), id(ID));
    // An hour on the leaf is still valid, the root is not.
    let err = at(3600).unwrap_err();
    assert!(matches!(err, SvidError::RootExpired { .. }), "{err}");
}

#[test]
fn a_root_path_length_constraint_limits_the_intermediates_below_it() {
    // pathLenConstraint 0: the root signs leaves only.
    let pl0 = root_with("root pathlen 0", |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0))
    });
    let (leaf, _) = pl0.sign(&good_leaf(ID));
    assert_eq!(verify(&pl0.bundle(TD), &[leaf]).unwrap(), id(ID));
    let int = pl0.intermediate(TD);
    let (leaf, _) = int.sign(&good_leaf(ID));
    let err = verify(&pl0.bundle(TD), &[leaf, int.cert.clone()]).unwrap_err();
    assert!(
        matches!(
            err,
            SvidError::RootPathLenExceeded {
                max_intermediates: 0,
                intermediates: 1,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(err.code(), "root-path-length");
    // pathLenConstraint 1: one intermediate is fine.
    let pl1 = root_with("root pathlen 1", |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1))
    });
    let int = pl1.intermediate(TD);
    let (leaf, _) = int.sign(&good_leaf(ID));
    assert_eq!(
        verify(&pl1.bundle(TD), &[leaf, int.cert.clone()]).unwrap(),
        id(ID)
    );
}

#[test]
fn a_reissued_root_vouches_when_its_expired_predecessor_does_not() {
    // The same name and key under two certificates, the expired one first:
    // path building goes on to the valid one.
    let cn = "reissued root";
    let old = root_with(cn, expired);
    let new = old.reissued(TD, cn, |_| {});
    let (leaf, _) = old.sign(&good_leaf(ID));
    let both = TrustBundle::new(td(TD), vec![old.cert.clone(), new.cert.clone()]).unwrap();
    assert_eq!(verify(&both, std::slice::from_ref(&leaf)).unwrap(), id(ID));
    let err = verify(&old.bundle(TD), &[leaf]).unwrap_err();
    assert!(matches!(err, SvidError::RootExpired { .. }), "{err}");
}

#[test]
fn an_expired_root_beside_a_valid_one_vouches_for_nothing() {
    // During a rotation: the old root expired, the new one vouches for its
    // own SVIDs only.
    let old = root_with("old root", expired);
    let new = TestCa::named(TD, "new root");
    let bundle = TrustBundle::new(td(TD), vec![old.cert.clone(), new.cert.clone()]).unwrap();
    let (from_new, _) = new.sign(&good_leaf(ID));
    assert_eq!(verify(&bundle, &[from_new]).unwrap(), id(ID));
    let (from_old, _) = old.sign(&good_leaf(ID));
    let err = verify(&bundle, std::slice::from_ref(&from_old)).unwrap_err();
    assert!(matches!(err, SvidError::RootExpired { .. }), "{err}");
    // And it anchors nothing for the rotation bookkeeping either.
    assert!(palisade_identity::verify::anchoring_root(&bundle, &[from_old]).is_none());
}
