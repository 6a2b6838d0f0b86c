//! Every X509-SVID rule of svid_rules.rs, enforced in a real TLS handshake
//! over loopback: a peer built with plain rustls presents a certificate that
//! breaks one rule, and our verifier (server side for a client SVID, client
//! side for a server SVID) fails the handshake naming that rule.
mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{TD, TestCa, good_leaf, id, mesh_ca, store, svid_error};
use palisade_identity::provider::default_provider;
use palisade_identity::{SpiffeId, SvidError, TlsOptions};
use rcgen::{
    BasicConstraints, CertificateParams, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose, SanType,
};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use time::OffsetDateTime;
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

const ID: &str = "spiffe://mesh.test/ns/default/sa/web";

/// A chain (leaf first) and the leaf's key, as a misbehaving peer holds them.
struct BadSvid {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

/// A leaf from `good_leaf(ID)` after `tweak`, signed by `root` (or by an
/// intermediate of it, sent along, when `via` is given).
fn bad_svid(
    root: &TestCa,
    via: Option<&TestCa>,
    tweak: impl FnOnce(&mut CertificateParams),
) -> BadSvid {
    let mut params = good_leaf(ID);
    tweak(&mut params);
    let signer = via.unwrap_or(root);
    let (leaf, key) = signer.sign(&params);
    let mut chain = vec![leaf];
    chain.extend(via.map(|int| int.cert.clone()));
    BadSvid {
        chain,
        key: PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der())),
    }
}

/// One broken rule: its name, the certificate breaking it, the verdict.
struct Case {
    name: &'static str,
    svid: BadSvid,
    expect: fn(&SvidError) -> bool,
}

fn cases(root: &TestCa) -> Vec<Case> {
    let now = OffsetDateTime::now_utc();
    let hour = Duration::from_secs(3600);
    let other_root = TestCa::named(TD, "another root");
    let not_ca = root.intermediate_with(TD, "int not ca", |p| p.is_ca = IsCa::ExplicitNoCa);
    let no_cert_sign = root.intermediate_with(TD, "int no certsign", |p| {
        p.key_usages = vec![KeyUsagePurpose::CrlSign]
    });
    let int_with_path = root.intermediate_with(TD, "int with path", |p| {
        p.subject_alt_names = vec![SanType::URI(
            "spiffe://mesh.test/workload-1".try_into().unwrap(),
        )]
    });
    vec![
        Case {
            name: "no URI SAN",
            svid: bad_svid(root, None, |p| p.subject_alt_names.clear()),
            expect: |e| matches!(e, SvidError::NoUriSan),
        },
        Case {
            name: "more than one URI SAN",
            svid: bad_svid(root, None, |p| {
                let same = p.subject_alt_names.clone();
                p.subject_alt_names.extend(same);
            }),
            expect: |e| matches!(e, SvidError::MultipleUriSans { count: 2 }),
        },
        Case {
            name: "bad leaf cert id (sparfe://)",
            svid: bad_svid(root, None, |p| {
                p.subject_alt_names = vec![SanType::URI(
                    "sparfe://mesh.test/workload".try_into().unwrap(),
                )]
            }),
            expect: |e| matches!(e, SvidError::NotSpiffeScheme { .. }),
        },
        Case {
            name: "leaf ID without path",
            svid: bad_svid(root, None, |p| {
                p.subject_alt_names = vec![SanType::URI("spiffe://mesh.test".try_into().unwrap())]
            }),
            expect: |e| matches!(e, SvidError::IdWithoutPath { .. }),
        },
        Case {
            name: "leaf is CA",
            svid: bad_svid(root, None, |p| {
                p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)
            }),
            expect: |e| matches!(e, SvidError::LeafIsCa),
        },
        Case {
            name: "leaf without key usage",
            svid: bad_svid(root, None, |p| p.key_usages.clear()),
            expect: |e| matches!(e, SvidError::NoKeyUsage),
        },
        Case {
            name: "leaf has KeyUsageCertSign",
            svid: bad_svid(root, None, |p| {
                p.key_usages.push(KeyUsagePurpose::KeyCertSign)
            }),
            expect: |e| matches!(e, SvidError::LeafKeyCertSign),
        },
        Case {
            name: "leaf has KeyUsageCRLSign",
            svid: bad_svid(root, None, |p| p.key_usages.push(KeyUsagePurpose::CrlSign)),
            expect: |e| matches!(e, SvidError::LeafCrlSign),
        },
        Case {
            name: "leaf without digitalSignature",
            svid: bad_svid(root, None, |p| {
                p.key_usages = vec![KeyUsagePurpose::KeyEncipherment]
            }),
            expect: |e| matches!(e, SvidError::NoDigitalSignature),
        },
        Case {
            name: "leaf EKU without serverAuth",
            svid: bad_svid(root, None, |p| {
                p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth]
            }),
            expect: |e| matches!(e, SvidError::MissingEku { .. }),
        },
        Case {
            name: "expired leaf",
            svid: bad_svid(root, None, |p| {
                p.not_before = now - 2 * hour;
                p.not_after = now - hour;
            }),
            expect: |e| matches!(e, SvidError::Expired { .. }),
        },
        Case {
            name: "leaf not yet valid",
            svid: bad_svid(root, None, |p| {
                p.not_before = now + hour;
                p.not_after = now + 2 * hour;
            }),
            expect: |e| matches!(e, SvidError::NotYetValid { .. }),
        },
        Case {
            name: "ID of another trust domain",
            svid: bad_svid(root, None, |p| {
                p.subject_alt_names = vec![SanType::URI(
                    "spiffe://other.test/workload".try_into().unwrap(),
                )]
            }),
            expect: |e| matches!(e, SvidError::TrustDomainMismatch { .. }),
        },
        Case {
            name: "signed by a root outside the bundle",
            svid: bad_svid(&other_root, None, |_| {}),
            expect: |e| matches!(e, SvidError::UnknownIssuer),
        },
        Case {
            name: "signing certificate without CA flag",
            svid: bad_svid(root, Some(&not_ca), |_| {}),
            expect: |e| matches!(e, SvidError::SigningCertNotCa),
        },
        Case {
            name: "signing certificate without keyCertSign",
            svid: bad_svid(root, Some(&no_cert_sign), |_| {}),
            expect: |e| matches!(e, SvidError::SigningCertNoKeyCertSign { .. }),
        },
        Case {
            name: "signing certificate ID with a path",
            svid: bad_svid(root, Some(&int_with_path), |_| {}),
            expect: |e| matches!(e, SvidError::SigningCertIdWithPath { .. }),
        },
    ]
}

/// A client verifier that accepts any server: the misbehaving client only
/// wants to present its certificate.
#[derive(Debug)]
struct AcceptAnyServer(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAnyServer {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Our server (bundle: `root`) accepts one connection from a client
/// presenting `svid`; returns the server's side of the handshake: the
/// client's SPIFFE ID, or the error.
async fn our_server_handshake(
    root: &TestCa,
    svid: BadSvid,
) -> Result<Option<SpiffeId>, std::io::Error> {
    let server = store(&mesh_ca(), "spiffe://mesh.test/ns/default/sa/server");
    server.update_bundle(root.bundle(TD));
    let config = palisade_identity::server_config(&server).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let accept = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        TlsAcceptor::from(Arc::new(config))
            .accept(tcp)
            .await
            .map(|tls| palisade_identity::peer_spiffe_id(tls.get_ref().1))
    });
    let provider = default_provider();
    let client = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServer(provider)))
        .with_client_auth_cert(svid.chain, svid.key)
        .unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    // The client may finish its side before the server's alert arrives.
    let _ = TlsConnector::from(Arc::new(client))
        .connect(name, tcp)
        .await;
    accept.await.unwrap()
}

async fn our_server_rejects(root: &TestCa, svid: BadSvid) -> std::io::Error {
    our_server_handshake(root, svid)
        .await
        .expect_err("the server accepted a client SVID that breaks a rule")
}

/// A server presenting `svid`; our client (bundle: `root`, expecting the
/// leaf's ID) connects; returns the client's side of the handshake.
async fn our_client_handshake(
    root: &TestCa,
    svid: BadSvid,
) -> Result<tokio_rustls::client::TlsStream<TcpStream>, std::io::Error> {
    let server = rustls::ServerConfig::builder_with_provider(default_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(svid.chain, svid.key)
        .unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = TlsAcceptor::from(Arc::new(server)).accept(tcp).await;
    });
    let client = store(&mesh_ca(), "spiffe://mesh.test/ns/default/sa/client");
    client.update_bundle(root.bundle(TD));
    let config =
        palisade_identity::client_config_with(&client, id(ID), &TlsOptions::default()).unwrap();
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::IpAddress(addr.ip().into());
    TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
}

async fn our_client_rejects(root: &TestCa, svid: BadSvid) -> std::io::Error {
    our_client_handshake(root, svid)
        .await
        .expect_err("the client accepted a server SVID that breaks a rule")
}

#[tokio::test]
async fn our_server_fails_the_handshake_of_a_client_svid_breaking_any_rule() {
    let root = TestCa::new(TD);
    for case in cases(&root) {
        let err = our_server_rejects(&root, case.svid).await;
        let rule = svid_error(&err);
        assert!(
            rule.as_ref().is_some_and(case.expect),
            "{}: server side got {rule:?} ({err})",
            case.name
        );
    }
}

#[tokio::test]
async fn our_client_fails_the_handshake_of_a_server_svid_breaking_any_rule() {
    let root = TestCa::new(TD);
    for case in cases(&root) {
        let err = our_client_rejects(&root, case.svid).await;
        let rule = svid_error(&err);
        assert!(
            rule.as_ref().is_some_and(case.expect),
            "{}: client side got {rule:?} ({err})",
            case.name
        );
    }
}

#[tokio::test]
async fn a_well_formed_peer_svid_passes_both_ways() {
    // The control case: the same plumbing with an unbroken SVID succeeds, so
    // the failures above come from the broken rule alone.
    let root = TestCa::new(TD);
    let tls = our_client_handshake(&root, bad_svid(&root, None, |_| {}))
        .await
        .unwrap();
    assert_eq!(
        palisade_identity::peer_spiffe_id(tls.get_ref().1),
        Some(id(ID))
    );
    let client_id = our_server_handshake(&root, bad_svid(&root, None, |_| {}))
        .await
        .unwrap();
    assert_eq!(client_id, Some(id(ID)));
}

/// The anchoring root's own limits (validity window, pathLenConstraint),
/// which webpki's trust anchors do not carry, fail the handshake both ways.
#[tokio::test]
async fn a_root_out_of_its_validity_or_path_length_fails_the_handshake_both_ways() {
    let now = OffsetDateTime::now_utc();
    let day = Duration::from_secs(86400);
    let expired = TestCa::root_with(TD, "expired root", |p| {
        p.not_before = now - 400 * day;
        p.not_after = now - day;
    });
    let future = TestCa::root_with(TD, "future root", |p| {
        p.not_before = now + day;
        p.not_after = now + 30 * day;
    });
    let pathlen0 = TestCa::root_with(TD, "root pathlen 0", |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    });
    let pathlen0_int = pathlen0.intermediate(TD);
    /// A case's name, its root, the intermediate sent along, the verdict.
    type RootCase<'a> = (
        &'a str,
        &'a TestCa,
        Option<&'a TestCa>,
        fn(&SvidError) -> bool,
    );
    let cases: [RootCase<'_>; 3] = [
        ("expired root", &expired, None, |e| {
            matches!(e, SvidError::RootExpired { .. })
        }),
        ("root not yet valid", &future, None, |e| {
            matches!(e, SvidError::RootNotYetValid { .. })
        }),
        (
            "pathlen 0 root with an intermediate",
            &pathlen0,
            Some(&pathlen0_int),
            |e| matches!(e, SvidError::RootPathLenExceeded { .. }),
        ),
    ];
    for (name, root, via, expect) in cases {
        let err = our_server_rejects(root, bad_svid(root, via, |_| {})).await;
        let rule = svid_error(&err);
        assert!(
            rule.as_ref().is_some_and(expect),
            "{name}: server side got {rule:?} ({err})"
        );
        let err = our_client_rejects(root, bad_svid(root, via, |_| {})).await;
        let rule = svid_error(&err);
        assert!(
            rule.as_ref().is_some_and(expect),
            "{name}: client side got {rule:?} ({err})"
        );
    }
    // The control case: a pathlen 0 root signing the leaf itself.
    let client_id = our_server_handshake(&pathlen0, bad_svid(&pathlen0, None, |_| {}))
        .await
        .unwrap();
    assert_eq!(client_id, Some(id(ID)));
}
