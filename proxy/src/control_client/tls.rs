//! rustls configs for talking to the control plane. With an SVID: mutual TLS
//! from the identity crate (server must be the control plane's SPIFFE ID).
//! Before the first SVID (bootstrap): no client certificate, but the server
//! is still verified against the bundle from the token file and must be the
//! control plane's SPIFFE ID, inside the rustls verifier.
use std::sync::Arc;

use palisade_identity::verify::{PeerRole, verify_svid};
use palisade_identity::{CredentialStore, SpiffeId, TlsOptions, TrustBundle};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, DigitallySignedStruct, OtherError};

/// The SPIFFE ID the control plane serves with in trust domain `td`.
pub fn control_id(td: &str) -> String {
    format!("spiffe://{td}/ns/palisade-system/sa/control")
}

/// mTLS with the current SVID of `store`.
pub fn mtls_config(
    store: &Arc<CredentialStore>,
    control: &SpiffeId,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let opts = TlsOptions {
        alpn: vec![b"h2".to_vec()],
        ..TlsOptions::default()
    };
    palisade_identity::client_config_with(store, control.clone(), &opts).map_err(|e| match e {
        palisade_identity::TlsError::Rustls(e) => e,
    })
}

/// Server-verified TLS without a client certificate (bootstrap).
pub fn bootstrap_config(
    bundle: TrustBundle,
    control: SpiffeId,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let provider = palisade_identity::provider::default_provider();
    let verifier = BootstrapVerifier {
        bundle,
        expected: control,
        provider: provider.clone(),
    };
    let mut cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_no_client_auth();
    cfg.alpn_protocols = vec![b"h2".to_vec()];
    Ok(cfg)
}

#[derive(Debug)]
struct BootstrapVerifier {
    bundle: TrustBundle,
    expected: SpiffeId,
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for BootstrapVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let other = |e: String| {
            rustls::Error::InvalidCertificate(CertificateError::Other(OtherError(Arc::new(
                std::io::Error::other(e),
            ))))
        };
        let id = verify_svid(
            &self.bundle,
            end_entity,
            intermediates,
            now,
            PeerRole::Server,
            &self.provider,
        )
        .map_err(|e| other(e.to_string()))?;
        if id != self.expected {
            return Err(other(format!(
                "control plane presented {id}, expected {}",
                self.expected
            )));
        }
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
            &self.provider.signature_verification_algorithms,
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
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
