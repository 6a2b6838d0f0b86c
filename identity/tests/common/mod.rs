//! Test helpers: a hand-built CA (rcgen directly, not our CA code) so tests can
//! craft certificates that break exactly one SVID rule.
#![allow(dead_code)]
use std::time::Duration;

use palisade_identity::{
    PeerRole, SpiffeId, SvidError, TrustBundle, TrustDomain, provider::default_provider,
    verify_svid_chain,
};
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, SanType,
};
use rustls::pki_types::{CertificateDer, UnixTime};
use time::OffsetDateTime;

pub const TD: &str = "mesh.test";

/// A root CA built with rcgen.
pub struct TestCa {
    pub cert: CertificateDer<'static>,
    pub key: KeyPair,
}

impl TestCa {
    pub fn new(td: &str) -> Self {
        Self::named(td, &format!("test root {td}"))
    }

    /// A root with the given common name (same name, other key: an impostor).
    pub fn named(td: &str, cn: &str) -> Self {
        Self::root_with(td, cn, |_| {})
    }

    /// A root named `cn`, its parameters changed by `tweak` before it signs
    /// itself (a validity window or a path length constraint).
    pub fn root_with(td: &str, cn: &str, tweak: impl FnOnce(&mut CertificateParams)) -> Self {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        Self::self_signed(key, td, cn, tweak)
    }

    /// `key` under a self-signed certificate made from `root_params`.
    fn self_signed(
        key: KeyPair,
        td: &str,
        cn: &str,
        tweak: impl FnOnce(&mut CertificateParams),
    ) -> Self {
        let cert = root_params(td, cn, tweak)
            .self_signed(&key)
            .unwrap()
            .der()
            .clone();
        Self { cert, key }
    }

    /// This root's key under another self-signed certificate of the same
    /// name made from `root_params(td, cn, tweak)`: a reissued root.
    pub fn reissued(&self, td: &str, cn: &str, tweak: impl FnOnce(&mut CertificateParams)) -> Self {
        let key = KeyPair::from_pem(&self.key.serialize_pem()).unwrap();
        Self::self_signed(key, td, cn, tweak)
    }

    pub fn bundle(&self, td: &str) -> TrustBundle {
        TrustBundle::new(TrustDomain::new(td).unwrap(), vec![self.cert.clone()]).unwrap()
    }

    /// Signs `params` for a fresh key; returns the leaf and its key.
    pub fn sign(&self, params: &CertificateParams) -> (CertificateDer<'static>, KeyPair) {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let issuer = Issuer::from_ca_cert_der(&self.cert, &self.key).unwrap();
        (params.signed_by(&key, &issuer).unwrap().der().clone(), key)
    }

    /// An intermediate CA signed by this root.
    pub fn intermediate(&self, td: &str) -> TestCa {
        self.intermediate_with(td, &format!("test intermediate {td}"), |_| {})
    }

    /// An intermediate named `cn`, its parameters changed by `tweak` before
    /// signing (to break one signing-certificate rule).
    pub fn intermediate_with(
        &self,
        td: &str,
        cn: &str,
        tweak: impl FnOnce(&mut CertificateParams),
    ) -> TestCa {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.distinguished_name.push(DnType::CommonName, cn);
        params.subject_alt_names = vec![SanType::URI(format!("spiffe://{td}").try_into().unwrap())];
        params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = OffsetDateTime::now_utc() - Duration::from_secs(3600);
        params.not_after = OffsetDateTime::now_utc() + Duration::from_secs(7 * 86400);
        tweak(&mut params);
        let issuer = Issuer::from_ca_cert_der(&self.cert, &self.key).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap().der().clone();
        TestCa { cert, key }
    }
}

/// Parameters of a root CA for `td` named `cn`, valid from an hour ago for
/// 30 days, after `tweak`.
pub fn root_params(
    td: &str,
    cn: &str,
    tweak: impl FnOnce(&mut CertificateParams),
) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.distinguished_name.push(DnType::CommonName, cn);
    params.subject_alt_names = vec![SanType::URI(format!("spiffe://{td}").try_into().unwrap())];
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = OffsetDateTime::now_utc() - Duration::from_secs(3600);
    params.not_after = OffsetDateTime::now_utc() + Duration::from_secs(30 * 86400);
    tweak(&mut params);
    params
}

/// Parameters of a well-formed leaf SVID for `id`; tests change one field.
pub fn good_leaf(id: &str) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "test");
    params.subject_alt_names = vec![SanType::URI(id.try_into().unwrap())];
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.not_before = OffsetDateTime::now_utc() - Duration::from_secs(300);
    params.not_after = OffsetDateTime::now_utc() + Duration::from_secs(3600);
    params
}

/// Verifies `chain` as a client SVID against `bundle`, now.
pub fn verify(bundle: &TrustBundle, chain: &[CertificateDer<'_>]) -> Result<SpiffeId, SvidError> {
    verify_svid_chain(
        bundle,
        chain,
        UnixTime::now(),
        PeerRole::Client,
        &default_provider(),
    )
}

pub fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).unwrap()
}

pub fn td(s: &str) -> TrustDomain {
    TrustDomain::new(s).unwrap()
}

// === TLS helpers ===

use std::sync::Arc;

use palisade_identity::{CertificateAuthority, CredentialStore, Credentials, TlsOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::{TlsAcceptor, TlsConnector};

/// Our own CA (not the hand-built one) for the test trust domain.
pub fn mesh_ca() -> CertificateAuthority {
    mesh_ca_with(false)
}

/// Our own CA for the test trust domain, signing with an intermediate or not.
pub fn mesh_ca_with(intermediate: bool) -> CertificateAuthority {
    CertificateAuthority::create(
        &td(TD),
        &palisade_identity::CaOptions {
            intermediate,
            ..palisade_identity::CaOptions::default()
        },
    )
    .unwrap()
}

/// The SVID rule inside a handshake error, if our verifier produced it.
pub fn svid_error(e: &std::io::Error) -> Option<SvidError> {
    let tls = e.get_ref()?.downcast_ref::<rustls::Error>()?;
    match tls {
        rustls::Error::InvalidCertificate(rustls::CertificateError::Other(o)) => {
            o.0.downcast_ref::<SvidError>().cloned()
        }
        _ => None,
    }
}

/// A credential store holding a fresh SVID for `id` from `ca`.
pub fn store(ca: &CertificateAuthority, id_str: &str) -> Arc<CredentialStore> {
    CredentialStore::new(credentials(ca, id_str))
}

pub fn credentials(ca: &CertificateAuthority, id_str: &str) -> Credentials {
    let svid = ca.issue(&id(id_str), Duration::from_secs(3600)).unwrap();
    Credentials::from_issued(svid, ca.bundle().clone()).unwrap()
}

/// An mTLS echo server on loopback. Each accepted connection reports its
/// handshake outcome (the client's SPIFFE ID, or the error) on the channel.
pub async fn echo_server(
    store: Arc<CredentialStore>,
    opts: TlsOptions,
) -> (
    std::net::SocketAddr,
    tokio::sync::mpsc::UnboundedReceiver<Result<String, String>>,
) {
    let config = palisade_identity::server_config_with(&store, &opts).unwrap();
    let acceptor = TlsAcceptor::from(Arc::new(config));
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let acceptor = acceptor.clone();
            let tx = tx.clone();
            tokio::spawn(async move {
                match acceptor.accept(tcp).await {
                    Ok(mut tls) => {
                        let peer = palisade_identity::peer_spiffe_id(tls.get_ref().1);
                        let _ = tx.send(Ok(peer.map(|p| p.to_string()).unwrap_or_default()));
                        let mut buf = [0u8; 1024];
                        loop {
                            match tls.read(&mut buf).await {
                                Ok(0) | Err(_) => return,
                                Ok(n) => {
                                    if tls.write_all(&buf[..n]).await.is_err() {
                                        return;
                                    }
                                }
                            }
                        }
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e.to_string()));
                    }
                }
            });
        }
    });
    (addr, rx)
}

/// Connects with our client config expecting `expected`.
pub async fn connect(
    addr: std::net::SocketAddr,
    store: &Arc<CredentialStore>,
    expected: &str,
    opts: &TlsOptions,
) -> std::io::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let config = palisade_identity::client_config_with(store, id(expected), opts).unwrap();
    let connector = TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await?;
    let name = rustls::pki_types::ServerName::IpAddress(addr.ip().into());
    connector.connect(name, tcp).await
}

/// Writes `msg` and reads the echo.
pub async fn echo<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin>(
    s: &mut S,
    msg: &[u8],
) -> Vec<u8> {
    s.write_all(msg).await.unwrap();
    let mut buf = vec![0u8; msg.len()];
    s.read_exact(&mut buf).await.unwrap();
    buf
}
