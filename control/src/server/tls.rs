//! TLS for the control plane API: the serving SVID, the client-certificate
//! verifier, and the accept loop that hands tonic connections carrying the
//! verified peer identity (`PeerInfo`) in every request's extensions.
//!
//! A client certificate is optional at the TLS level so that bootstrap (join
//! token, no SVID yet) can connect; every RPC that needs an SVID checks
//! `PeerInfo` (see `auth`). A chain that fails verification still fails the
//! handshake; only an *expired* but otherwise valid SVID is let through the
//! handshake, so the RPC can answer with a clear "SVID expired" error instead
//! of a bare TLS alert.
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use arc_swap::ArcSwap;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{CertificateError, DigitallySignedStruct, DistinguishedName};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tonic::transport::server::Connected;

use palisade_identity::TrustBundle;
use palisade_identity::verify::{PeerRole, SvidError, verify_path_to_bundle};

use super::pki::{KeyedSvid, not_after_unix, now_unix};

/// How long a client may take to finish the TLS handshake.
pub(crate) const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Handshakes in flight at once; more connections wait in the accept queue.
pub(crate) const MAX_CONCURRENT_HANDSHAKES: usize = 512;

/// Errors building the TLS side.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("bad PEM in {what}: {reason}")]
    Pem { what: &'static str, reason: String },
    #[error("rustls: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("client verifier: {0}")]
    Verifier(String),
}

/// The client's SVID as seen at the handshake.
#[derive(Debug, Clone)]
pub struct ClientSvid {
    pub spiffe_id: String,
    pub not_after_unix: i64,
    /// The chain as presented (leaf first): which CA signed it, during a
    /// rotation.
    pub chain: Arc<[CertificateDer<'static>]>,
}

/// What every request learns about its connection.
#[derive(Debug, Clone)]
pub struct PeerInfo {
    pub remote: SocketAddr,
    /// `None`: no client certificate. `Some(Err)`: a certificate that chains
    /// to the bundle but is not a usable SVID (the reason says why).
    pub client: Option<Result<ClientSvid, String>>,
}

pub fn crypto_provider() -> Arc<rustls::crypto::CryptoProvider> {
    palisade_identity::provider::default_provider()
}

pub fn parse_certs(
    pem: &str,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let mut rd = pem.as_bytes();
    let certs: Result<Vec<_>, _> = rustls_pemfile::certs(&mut rd).collect();
    let certs = certs.map_err(|e| TlsError::Pem {
        what,
        reason: e.to_string(),
    })?;
    if certs.is_empty() {
        return Err(TlsError::Pem {
            what,
            reason: "no certificate".into(),
        });
    }
    Ok(certs)
}

pub fn parse_key(pem: &str, what: &'static str) -> Result<PrivateKeyDer<'static>, TlsError> {
    let mut rd = pem.as_bytes();
    rustls_pemfile::private_key(&mut rd)
        .map_err(|e| TlsError::Pem {
            what,
            reason: e.to_string(),
        })?
        .ok_or(TlsError::Pem {
            what,
            reason: "no private key".into(),
        })
}

// === impl ServingCert ===

/// The control plane's own SVID, replaceable while serving.
#[derive(Debug)]
pub struct ServingCert {
    current: RwLock<Arc<CertifiedKey>>,
}

impl ServingCert {
    pub fn new(svid: &KeyedSvid) -> Result<Self, TlsError> {
        Ok(Self {
            current: RwLock::new(certified_key(svid)?),
        })
    }

    pub fn replace(&self, svid: &KeyedSvid) -> Result<(), TlsError> {
        let key = certified_key(svid)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = key;
        Ok(())
    }
}

fn certified_key(svid: &KeyedSvid) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = parse_certs(&svid.svid.chain_pem, "serving certificate")?;
    let key = parse_key(&svid.key_pem, "serving key")?;
    let ck = CertifiedKey::from_der(chain, key, &crypto_provider())?;
    Ok(Arc::new(ck))
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(
            self.current
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
        )
    }
}

// === impl ExpiryTolerantVerifier ===

// === impl ClientRoots ===

/// The roots client SVIDs must chain to: the mesh bundle, replaced when the
/// CA changes (a rotation adds a root, then removes the old one). Each
/// handshake uses the roots in force when it starts.
#[derive(Debug)]
pub struct ClientRoots {
    current: ArcSwap<ClientTrust>,
}

/// One set of roots: the bundle whose roots client SVIDs must chain to,
/// with the SVID path rules of every Palisade verifier (the anchoring
/// root's validity window and pathLenConstraint, URI name constraints).
#[derive(Debug)]
struct ClientTrust {
    bundle: TrustBundle,
}

impl ClientTrust {
    fn new(bundle: &TrustBundle) -> Result<Self, TlsError> {
        if bundle.roots().is_empty() {
            return Err(TlsError::Verifier(
                "the mesh bundle holds no root to verify client certificates with".into(),
            ));
        }
        Ok(Self {
            bundle: bundle.clone(),
        })
    }
}

impl ClientRoots {
    pub fn new(bundle: &TrustBundle) -> Result<Arc<Self>, TlsError> {
        Ok(Arc::new(Self {
            current: ArcSwap::from_pointee(ClientTrust::new(bundle)?),
        }))
    }

    /// Verifies client certificates against `bundle` from now on.
    pub fn set(&self, bundle: &TrustBundle) -> Result<(), TlsError> {
        self.current.store(Arc::new(ClientTrust::new(bundle)?));
        Ok(())
    }

    fn trust(&self) -> Arc<ClientTrust> {
        self.current.load_full()
    }
}

// === impl ExpiryTolerantVerifier ===

/// SVID path validation against the mesh bundle, with expiry deferred
/// to the RPC layer (see module docs).
#[derive(Debug)]
struct ExpiryTolerantVerifier {
    roots: Arc<ClientRoots>,
}

impl ClientCertVerifier for ExpiryTolerantVerifier {
    fn offer_client_auth(&self) -> bool {
        true
    }

    fn client_auth_mandatory(&self) -> bool {
        false
    }

    /// No hints: the roots change, and our clients have one SVID to offer.
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        let trust = self.roots.trust();
        let provider = crypto_provider();
        let verify_at = |at: UnixTime| {
            verify_path_to_bundle(
                &trust.bundle,
                end_entity,
                intermediates,
                at,
                PeerRole::Client,
                &provider,
            )
        };
        let refused = |e: SvidError| {
            rustls::Error::InvalidCertificate(CertificateError::Other(rustls::OtherError(
                Arc::new(e),
            )))
        };
        match verify_at(now) {
            Ok(()) => {}
            Err(SvidError::Expired { .. }) => {
                // Valid apart from its age? Check the chain as of one second
                // before the leaf expired; the RPC layer refuses it by name.
                let not_after = not_after_unix(end_entity).ok_or(
                    rustls::Error::InvalidCertificate(CertificateError::BadEncoding),
                )?;
                let at =
                    UnixTime::since_unix_epoch(Duration::from_secs((not_after - 1).max(0) as u64));
                verify_at(at).map_err(refused)?;
            }
            Err(e) => return Err(refused(e)),
        }
        Ok(ClientCertVerified::assertion())
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
            &crypto_provider().signature_verification_algorithms,
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
            &crypto_provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        crypto_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// Reads the SPIFFE ID and expiry of a leaf that already chained to the
/// bundle. X509-SVID: "An X.509 SVID MUST contain exactly one URI SAN".
pub fn client_svid(der: &CertificateDer<'_>, trust_domain: &str) -> Result<ClientSvid, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(der)
        .map_err(|e| format!("client certificate does not parse: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("client certificate SAN: {e}"))?
        .ok_or("client certificate has no SAN; an SVID carries one spiffe:// URI")?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    let [uri] = uris.as_slice() else {
        return Err(format!(
            "client certificate has {} URI SANs; an SVID has exactly one",
            uris.len()
        ));
    };
    let prefix = format!("spiffe://{trust_domain}/");
    if !uri.starts_with(&prefix) {
        return Err(format!(
            "client SVID {uri} is not in trust domain {trust_domain}"
        ));
    }
    Ok(ClientSvid {
        spiffe_id: (*uri).to_owned(),
        not_after_unix: cert.validity().not_after.timestamp(),
        chain: Arc::from([der.clone().into_owned()]),
    })
}

/// The rustls server config: our SVID, optional client SVIDs, HTTP/2.
pub fn server_config(
    serving: Arc<ServingCert>,
    roots: Arc<ClientRoots>,
) -> Result<rustls::ServerConfig, TlsError> {
    let mut cfg = rustls::ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_client_cert_verifier(Arc::new(ExpiryTolerantVerifier { roots }))
        .with_cert_resolver(serving);
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

// === impl TlsConn ===

/// A server-side TLS connection that tells tonic who is on the other end.
pub struct TlsConn {
    inner: TlsStream<TcpStream>,
    info: PeerInfo,
}

impl Connected for TlsConn {
    type ConnectInfo = PeerInfo;

    fn connect_info(&self) -> PeerInfo {
        self.info.clone()
    }
}

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts TCP, runs handshakes concurrently (each bounded by a timeout) and
/// yields finished TLS connections. Failed handshakes are logged and dropped.
pub fn accept_loop(
    listener: TcpListener,
    config: Arc<rustls::ServerConfig>,
    trust_domain: String,
) -> mpsc::Receiver<Result<TlsConn, io::Error>> {
    let (tx, rx) = mpsc::channel(256);
    let acceptor = TlsAcceptor::from(config);
    let handshakes = Arc::new(tokio::sync::Semaphore::new(MAX_CONCURRENT_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let Ok(permit) = handshakes.clone().acquire_owned().await else {
                break;
            };
            let (tcp, remote) = match listener.accept().await {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let conn_tx = tx.clone();
            let td = trust_domain.clone();
            tokio::spawn(async move {
                let handshake = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await;
                drop(permit);
                let tls = match handshake {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::info!(%remote, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::info!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
                let client = tls.get_ref().1.peer_certificates().and_then(|certs| {
                    let svid = client_svid(certs.first()?, &td).map(|svid| ClientSvid {
                        chain: certs.iter().map(|c| c.clone().into_owned()).collect(),
                        ..svid
                    });
                    Some(svid)
                });
                let info = PeerInfo { remote, client };
                let _ = conn_tx.send(Ok(TlsConn { inner: tls, info })).await;
            });
            if tx.is_closed() {
                break;
            }
        }
    });
    rx
}

/// Is this SVID still valid now?
pub fn check_not_expired(svid: &ClientSvid) -> Result<(), String> {
    let now = now_unix();
    if now >= svid.not_after_unix {
        Err(format!(
            "client SVID {} expired {}s ago; renew before expiry, or bootstrap again with a new join token",
            svid.spiffe_id,
            now - svid.not_after_unix
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };
    use time::OffsetDateTime;

    const TD: &str = "mesh.test";

    struct Ca {
        cert: CertificateDer<'static>,
        key: KeyPair,
    }

    fn ca_params(cn: &str, path_len: BasicConstraints) -> CertificateParams {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names = vec![SanType::URI(format!("spiffe://{TD}").try_into().unwrap())];
        p.is_ca = IsCa::Ca(path_len);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = OffsetDateTime::now_utc() - Duration::from_secs(3600);
        p.not_after = OffsetDateTime::now_utc() + Duration::from_secs(30 * 86400);
        p
    }

    fn root(cn: &str, tweak: impl FnOnce(&mut CertificateParams)) -> Ca {
        let key = KeyPair::generate().unwrap();
        let mut p = ca_params(cn, BasicConstraints::Unconstrained);
        tweak(&mut p);
        let cert = p.self_signed(&key).unwrap().der().clone();
        Ca { cert, key }
    }

    fn signed_by(issuer: &Ca, params: &CertificateParams) -> Ca {
        let key = KeyPair::generate().unwrap();
        let issuer = Issuer::from_ca_cert_der(&issuer.cert, &issuer.key).unwrap();
        let cert = params.signed_by(&key, &issuer).unwrap().der().clone();
        Ca { cert, key }
    }

    fn leaf_params() -> CertificateParams {
        let mut p = CertificateParams::default();
        p.subject_alt_names = vec![SanType::URI(
            format!("spiffe://{TD}/ns/shop/sa/web").try_into().unwrap(),
        )];
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.not_before = OffsetDateTime::now_utc() - Duration::from_secs(300);
        p.not_after = OffsetDateTime::now_utc() + Duration::from_secs(3600);
        p
    }

    /// The control plane's client verifier, trusting `root` alone, on
    /// `chain` (leaf first).
    fn verify_client(
        root: &Ca,
        chain: &[CertificateDer<'static>],
    ) -> Result<ClientCertVerified, rustls::Error> {
        let bundle = TrustBundle::new(
            palisade_identity::TrustDomain::new(TD).unwrap(),
            vec![root.cert.clone()],
        )
        .unwrap();
        let verifier = ExpiryTolerantVerifier {
            roots: ClientRoots::new(&bundle).unwrap(),
        };
        verifier.verify_client_cert(&chain[0], &chain[1..], UnixTime::now())
    }

    fn svid_rule(err: &rustls::Error) -> Option<&palisade_identity::SvidError> {
        palisade_identity::SvidError::from_tls_error(err)
    }

    #[test]
    fn client_auth_refuses_an_svid_whose_root_has_expired() {
        let expired = root("expired root", |p| {
            p.not_before = OffsetDateTime::now_utc() - Duration::from_secs(400 * 86400);
            p.not_after = OffsetDateTime::now_utc() - Duration::from_secs(86400);
        });
        let leaf = signed_by(&expired, &leaf_params());
        let err = verify_client(&expired, &[leaf.cert]).unwrap_err();
        assert!(
            matches!(
                svid_rule(&err),
                Some(palisade_identity::SvidError::RootExpired { .. })
            ),
            "{err}"
        );
    }

    #[test]
    fn client_auth_holds_a_root_to_its_path_length_constraint() {
        let pathlen0 = root("root pathlen 0", |p| {
            p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        });
        let pathlen1 = root("root pathlen 1", |p| {
            p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        });
        for (root, accepted) in [(pathlen0, false), (pathlen1, true)] {
            let int = signed_by(
                &root,
                &ca_params("intermediate", BasicConstraints::Constrained(0)),
            );
            let leaf = signed_by(&int, &leaf_params());
            let verdict = verify_client(&root, &[leaf.cert.clone(), int.cert.clone()]);
            if accepted {
                assert!(verdict.is_ok(), "{verdict:?}");
            } else {
                let err = verdict.unwrap_err();
                assert!(
                    matches!(
                        svid_rule(&err),
                        Some(palisade_identity::SvidError::RootPathLenExceeded { .. })
                    ),
                    "{err}"
                );
            }
            // The root signing the leaf itself is fine either way.
            let direct = signed_by(&root, &leaf_params());
            assert!(verify_client(&root, &[direct.cert]).is_ok());
        }
    }

    /// A critical nameConstraints extension with one permitted URI subtree
    /// (rcgen has no URI subtree of its own).
    fn permitted_uri(host: &str) -> rcgen::CustomExtension {
        let der = |tag: u8, body: &[u8]| [&[tag, body.len() as u8][..], body].concat();
        let value = der(0x30, &der(0xa0, &der(0x30, &der(0x86, host.as_bytes()))));
        let mut ext = rcgen::CustomExtension::from_oid_content(&[2, 5, 29, 30], value);
        ext.set_criticality(true);
        ext
    }

    /// X509-SVID 4.2: signing certificates MAY carry URI name constraints;
    /// the control plane's client auth enforces them (go-spiffe/crypto/x509
    /// do) instead of refusing every such chain as webpki alone does.
    #[test]
    fn client_auth_enforces_uri_name_constraints() {
        for (host, accepted) in [(TD, true), ("other.test", false)] {
            let constrained = root("constrained root", |p| {
                p.custom_extensions.push(permitted_uri(host));
            });
            let leaf = signed_by(&constrained, &leaf_params());
            let verdict = verify_client(&constrained, &[leaf.cert]);
            assert_eq!(verdict.is_ok(), accepted, "root {host}: {verdict:?}");

            let plain = root("plain root", |_| {});
            let mut params =
                ca_params("constrained intermediate", BasicConstraints::Constrained(0));
            params.custom_extensions.push(permitted_uri(host));
            let int = signed_by(&plain, &params);
            let leaf = signed_by(&int, &leaf_params());
            let verdict = verify_client(&plain, &[leaf.cert, int.cert]);
            assert_eq!(
                verdict.is_ok(),
                accepted,
                "intermediate {host}: {verdict:?}"
            );
            if let Err(err) = verdict {
                assert!(
                    matches!(
                        svid_rule(&err),
                        Some(palisade_identity::SvidError::UriNameConstraint { .. })
                    ),
                    "{err}"
                );
            }
        }
    }
}
