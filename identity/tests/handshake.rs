//! Real mTLS handshakes over TCP on loopback between our server and client
//! configs: both sides learn the peer's SPIFFE ID; the wrong expected ID, a
//! foreign trust domain or a missing client certificate fail the handshake.
mod common;

use std::sync::Arc;

use common::{TD, connect, echo, echo_server, id, mesh_ca, store, svid_error, td};
use palisade_identity::{CaOptions, CertificateAuthority, SvidError, TlsOptions, peer_spiffe_id};
use tokio_rustls::TlsConnector;

const SERVER: &str = "spiffe://mesh.test/ns/prod/sa/db";
const CLIENT: &str = "spiffe://mesh.test/ns/prod/sa/api";

#[tokio::test]
async fn mtls_handshake_gives_both_sides_the_peer_id() {
    let ca = mesh_ca();
    let opts = TlsOptions {
        alpn: vec![b"palisade-mesh/h2".to_vec()],
        ..TlsOptions::default()
    };
    let (addr, mut accepted) = echo_server(store(&ca, SERVER), opts.clone()).await;
    let mut tls = connect(addr, &store(&ca, CLIENT), SERVER, &opts)
        .await
        .unwrap();
    let (_, conn) = tls.get_ref();
    assert_eq!(peer_spiffe_id(conn), Some(id(SERVER)));
    assert_eq!(
        conn.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
    assert_eq!(conn.alpn_protocol(), Some(&b"palisade-mesh/h2"[..]));
    // Mesh links use AES-128-GCM, as Envoy's BoringSSL prefers (provider.rs).
    assert_eq!(
        conn.negotiated_cipher_suite().map(|s| s.suite()),
        Some(rustls::CipherSuite::TLS13_AES_128_GCM_SHA256)
    );
    assert_eq!(accepted.recv().await.unwrap().unwrap(), CLIENT);
    assert_eq!(echo(&mut tls, b"hello").await, b"hello");
}

#[tokio::test]
async fn intermediates_sent_by_the_peer_are_used_for_path_validation() {
    let opts = CaOptions {
        intermediate: true,
        ..CaOptions::default()
    };
    let ca = CertificateAuthority::create(&td(TD), &opts).unwrap();
    let (addr, mut accepted) = echo_server(store(&ca, SERVER), TlsOptions::default()).await;
    let mut tls = connect(addr, &store(&ca, CLIENT), SERVER, &TlsOptions::default())
        .await
        .unwrap();
    assert_eq!(accepted.recv().await.unwrap().unwrap(), CLIENT);
    assert_eq!(echo(&mut tls, b"x").await, b"x");
}

#[tokio::test]
async fn a_wrong_expected_id_fails_the_handshake() {
    let ca = mesh_ca();
    let (addr, mut accepted) = echo_server(store(&ca, SERVER), TlsOptions::default()).await;
    let err = connect(
        addr,
        &store(&ca, CLIENT),
        "spiffe://mesh.test/ns/prod/sa/cache",
        &TlsOptions::default(),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(svid_error(&err), Some(SvidError::UnexpectedId { .. })),
        "{err}"
    );
    // The server saw the handshake aborted by the client.
    assert!(accepted.recv().await.unwrap().is_err());
}

#[tokio::test]
async fn the_server_rejects_a_client_of_another_trust_domain_or_ca() {
    let ca = mesh_ca();
    let (addr, mut accepted) = echo_server(store(&ca, SERVER), TlsOptions::default()).await;
    // Same trust domain name, other CA: the client cannot be verified.
    let other = ca_for("mesh.test");
    let client = store(&other, CLIENT);
    // The client trusts our CA too, so only the server side can fail.
    client.update_bundle(other.bundle().merged_with(ca.bundle()));
    let res = connect(addr, &client, SERVER, &TlsOptions::default()).await;
    let server_side = accepted.recv().await.unwrap();
    let msg = server_side.unwrap_err();
    assert!(msg.contains("BadSignature"), "{msg}");
    // In TLS 1.3 the client may finish before the server's alert arrives;
    // then its first read fails.
    if let Ok(mut tls) = res {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let _ = tls.write_all(b"x").await;
        let mut buf = [0u8; 1];
        assert!(tls.read(&mut buf).await.map(|n| n == 0).unwrap_or(true));
    }
}

fn ca_for(name: &str) -> CertificateAuthority {
    CertificateAuthority::create(&td(name), &CaOptions::default()).unwrap()
}

#[tokio::test]
async fn the_server_requires_a_client_certificate() {
    let ca = mesh_ca();
    let (addr, mut accepted) = echo_server(store(&ca, SERVER), TlsOptions::default()).await;
    // A client that verifies the server properly but presents no certificate.
    let verifier = palisade_identity::tls::SvidServerVerifier::new(
        store(&ca, CLIENT),
        id(SERVER),
        palisade_identity::provider::default_provider(),
    );
    let config = rustls::ClientConfig::builder_with_provider(
        palisade_identity::provider::default_provider(),
    )
    .with_protocol_versions(&[&rustls::version::TLS13])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(verifier))
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    let res = TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await;
    let server_side = accepted.recv().await.unwrap().unwrap_err();
    assert!(server_side.contains("certificate"), "{server_side}");
    if let Ok(mut tls) = res {
        use tokio::io::AsyncReadExt;
        let mut buf = [0u8; 1];
        assert!(tls.read(&mut buf).await.map(|n| n == 0).unwrap_or(true));
    }
}

#[tokio::test]
async fn tls12_only_when_allowed() {
    let ca = mesh_ca();
    let (addr, _accepted) = echo_server(store(&ca, SERVER), TlsOptions::default()).await;
    // A TLS 1.2-only client cannot talk to the default (TLS 1.3) server.
    let config = rustls::ClientConfig::builder_with_provider(
        palisade_identity::provider::default_provider(),
    )
    .with_protocol_versions(&[&rustls::version::TLS12])
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(palisade_identity::tls::SvidServerVerifier::new(
        store(&ca, CLIENT),
        id(SERVER),
        palisade_identity::provider::default_provider(),
    )))
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    assert!(
        TlsConnector::from(Arc::new(config))
            .connect(name, tcp)
            .await
            .is_err()
    );
    // With allow_tls12 on both sides, TLS 1.3 is still chosen.
    let opts = TlsOptions {
        allow_tls12: true,
        ..TlsOptions::default()
    };
    let (addr, _accepted) = echo_server(store(&ca, SERVER), opts.clone()).await;
    let tls = connect(addr, &store(&ca, CLIENT), SERVER, &opts)
        .await
        .unwrap();
    assert_eq!(
        tls.get_ref().1.protocol_version(),
        Some(rustls::ProtocolVersion::TLSv1_3)
    );
}
