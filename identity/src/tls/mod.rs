//! rustls configs for mesh mTLS: a server that requires and verifies client
//! SVIDs, and a client that verifies the server is the *expected* SPIFFE ID
//! (never a DNS name). Both read the [`CredentialStore`] at every handshake
//! (except the bootstrap client of [`server_verified_client_config`], which has
//! no SVID yet and checks the server against a fixed bundle).
//!
//! Session resumption is off on both sides: a resumed session skips
//! certificate verification, so it would outlive a bundle rotation that should
//! have rejected the peer. The proxy pools connections instead.
mod resolver;
mod verifier;

use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::server::NoServerSessionStorage;
use rustls::{ClientConfig, CommonState, ServerConfig, SupportedProtocolVersion};

use crate::bundle::TrustBundle;
use crate::credentials::CredentialStore;
use crate::provider::default_provider;
use crate::spiffe_id::SpiffeId;
use crate::verify::spiffe_id_of;

pub use resolver::StoreCertResolver;
pub use verifier::{SvidClientVerifier, SvidServerVerifier};

/// Why a TLS config could not be built.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("TLS config: {0}")]
    Rustls(#[from] rustls::Error),
}

/// Knobs shared by the server and client configs.
#[derive(Debug, Clone)]
pub struct TlsOptions {
    /// The crypto provider (default: [`default_provider`]).
    pub provider: Arc<CryptoProvider>,
    /// ALPN protocols, most preferred first (e.g. `palisade-mesh/h2`).
    pub alpn: Vec<Vec<u8>>,
    /// Also allow TLS 1.2 (default: TLS 1.3 only).
    pub allow_tls12: bool,
}

impl Default for TlsOptions {
    fn default() -> Self {
        Self {
            provider: default_provider(),
            alpn: Vec::new(),
            allow_tls12: false,
        }
    }
}

impl TlsOptions {
    fn versions(&self) -> &'static [&'static SupportedProtocolVersion] {
        static TLS13: &[&SupportedProtocolVersion] = &[&rustls::version::TLS13];
        static BOTH: &[&SupportedProtocolVersion] =
            &[&rustls::version::TLS13, &rustls::version::TLS12];
        if self.allow_tls12 { BOTH } else { TLS13 }
    }
}

/// A server config that requires a client SVID of the store's trust domain.
pub fn server_config(store: &Arc<CredentialStore>) -> Result<ServerConfig, TlsError> {
    server_config_with(store, &TlsOptions::default())
}

/// [`server_config`] with options.
pub fn server_config_with(
    store: &Arc<CredentialStore>,
    opts: &TlsOptions,
) -> Result<ServerConfig, TlsError> {
    let verifier = SvidClientVerifier::new(store.clone(), opts.provider.clone());
    let mut config = ServerConfig::builder_with_provider(opts.provider.clone())
        .with_protocol_versions(opts.versions())?
        .with_client_cert_verifier(Arc::new(verifier))
        .with_cert_resolver(Arc::new(StoreCertResolver::new(store.clone())));
    config.session_storage = Arc::new(NoServerSessionStorage {});
    config.send_tls13_tickets = 0;
    config.alpn_protocols = opts.alpn.clone();
    Ok(config)
}

/// A client config that presents our SVID and accepts only a server whose SVID
/// verifies against the current bundle and names exactly `expected`.
///
/// The server name given to `connect` is not checked (use the peer's IP address
/// so that no SNI is sent). Building a config is cheap (a few `Arc` clones);
/// callers with many peers may still cache one per expected ID.
pub fn client_config(
    store: &Arc<CredentialStore>,
    expected: SpiffeId,
) -> Result<ClientConfig, TlsError> {
    client_config_with(store, expected, &TlsOptions::default())
}

/// [`client_config`] with options.
pub fn client_config_with(
    store: &Arc<CredentialStore>,
    expected: SpiffeId,
    opts: &TlsOptions,
) -> Result<ClientConfig, TlsError> {
    let verifier = SvidServerVerifier::new(store.clone(), expected, opts.provider.clone());
    let resolver = Arc::new(StoreCertResolver::new(store.clone()));
    verifying_client_config(verifier, Some(resolver), opts)
}

/// A client config without a client certificate that accepts only a server
/// whose SVID verifies against `bundle` and names exactly `expected`: how a
/// workload with no SVID yet (bootstrap) still authenticates the server.
pub fn server_verified_client_config(
    bundle: TrustBundle,
    expected: SpiffeId,
    opts: &TlsOptions,
) -> Result<ClientConfig, TlsError> {
    let verifier = SvidServerVerifier::with_bundle(bundle, expected, opts.provider.clone());
    verifying_client_config(verifier, None, opts)
}

/// What every client config shares: `verifier` checks the server, the
/// client certificate comes from `resolver` (none without one), and session
/// resumption is off (see the module documentation).
fn verifying_client_config(
    verifier: SvidServerVerifier,
    resolver: Option<Arc<StoreCertResolver>>,
    opts: &TlsOptions,
) -> Result<ClientConfig, TlsError> {
    let builder = ClientConfig::builder_with_provider(opts.provider.clone())
        .with_protocol_versions(opts.versions())?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier));
    let mut config = match resolver {
        Some(resolver) => builder.with_client_cert_resolver(resolver),
        None => builder.with_no_client_auth(),
    };
    config.resumption = Resumption::disabled();
    config.alpn_protocols = opts.alpn.clone();
    Ok(config)
}

/// The peer's SPIFFE ID once the handshake is done (verified by our verifiers
/// during the handshake). `None` before the handshake or without a certificate.
pub fn peer_spiffe_id(conn: &CommonState) -> Option<SpiffeId> {
    let leaf = conn.peer_certificates()?.first()?;
    spiffe_id_of(leaf).ok()
}
