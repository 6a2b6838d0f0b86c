//! rustls verifiers that check the peer's X509-SVID inside the handshake: path
//! validation against the bundle of the peer's trust domain (the store's
//! current bundle, or a federated trust domain's), the SVID leaf rules, and
//! (client side) the expected SPIFFE ID.
use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    CertificateError, DigitallySignedStruct, DistinguishedName, OtherError, SignatureScheme,
};

use crate::bundle::TrustBundle;
use crate::credentials::CredentialStore;
use crate::spiffe_id::SpiffeId;
use crate::verify::{PeerRole, SvidError, verify_svid};

fn reject(err: SvidError, side: &str) -> rustls::Error {
    tracing::warn!(peer = side, reason = %err, "peer SVID rejected");
    rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(err))))
}

// === impl SvidServerVerifier ===

/// Where a verifier finds the trust bundle.
#[derive(Debug)]
enum BundleSource {
    /// The store's current bundle, read at every handshake (rotation).
    Store(Arc<CredentialStore>),
    /// A fixed bundle, for a client that has no SVID yet (bootstrap).
    Fixed(Arc<TrustBundle>),
}

impl BundleSource {
    /// Verifies against the current local bundle and federated bundles.
    fn verify(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        provider: &CryptoProvider,
    ) -> Result<SpiffeId, SvidError> {
        match self {
            BundleSource::Store(store) => {
                store.verify_peer(end_entity, intermediates, now, PeerRole::Server, provider)
            }
            BundleSource::Fixed(bundle) => verify_svid(
                bundle,
                end_entity,
                intermediates,
                now,
                PeerRole::Server,
                provider,
            ),
        }
    }
}

/// Client side: the server must present a valid SVID naming `expected`.
#[derive(Debug)]
pub struct SvidServerVerifier {
    bundle: BundleSource,
    expected: SpiffeId,
    provider: Arc<CryptoProvider>,
}

impl SvidServerVerifier {
    /// A verifier for servers that must be `expected`, against the store's
    /// current bundle.
    pub fn new(
        store: Arc<CredentialStore>,
        expected: SpiffeId,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Self {
            bundle: BundleSource::Store(store),
            expected,
            provider,
        }
    }

    /// A verifier against a fixed bundle (before the first SVID exists).
    pub fn with_bundle(
        bundle: TrustBundle,
        expected: SpiffeId,
        provider: Arc<CryptoProvider>,
    ) -> Self {
        Self {
            bundle: BundleSource::Fixed(Arc::new(bundle)),
            expected,
            provider,
        }
    }
}

impl ServerCertVerifier for SvidServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let id = self
            .bundle
            .verify(end_entity, intermediates, now, &self.provider)
            .map_err(|e| reject(e, "server"))?;
        if id != self.expected {
            return Err(reject(
                SvidError::UnexpectedId {
                    got: id.to_string(),
                    expected: self.expected.to_string(),
                },
                "server",
            ));
        }
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

// === impl SvidClientVerifier ===

/// Server side: every client must present a valid SVID of our trust domain
/// or of a federated one.
/// Which identities may do what is the authorization layer's business.
#[derive(Debug)]
pub struct SvidClientVerifier {
    store: Arc<CredentialStore>,
    provider: Arc<CryptoProvider>,
}

impl SvidClientVerifier {
    /// A verifier reading the bundle from `store` at each handshake.
    pub fn new(store: Arc<CredentialStore>, provider: Arc<CryptoProvider>) -> Self {
        Self { store, provider }
    }
}

impl ClientCertVerifier for SvidClientVerifier {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.store
            .verify_peer(
                end_entity,
                intermediates,
                now,
                PeerRole::Client,
                &self.provider,
            )
            .map_err(|e| reject(e, "client"))?;
        Ok(ClientCertVerified::assertion())
    }

    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn offer_client_auth(&self) -> bool {
        true
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
