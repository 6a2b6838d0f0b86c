//! rustls configs for talking to the control plane. With an SVID: mutual TLS
//! from the identity crate (server must be the control plane's SPIFFE ID).
//! Before the first SVID (bootstrap): no client certificate, but the server
//! is still verified against the bundle from the token file and must be the
//! control plane's SPIFFE ID, inside the rustls verifier.
use std::sync::Arc;

use palisade_identity::{CredentialStore, SpiffeId, TlsOptions, TrustBundle};

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

/// Server-verified TLS without a client certificate (bootstrap): the
/// control plane must still present an SVID of the token's bundle naming
/// `control`, checked inside the handshake.
pub fn bootstrap_config(
    bundle: TrustBundle,
    control: SpiffeId,
) -> Result<rustls::ClientConfig, rustls::Error> {
    let opts = TlsOptions {
        alpn: vec![b"h2".to_vec()],
        ..TlsOptions::default()
    };
    palisade_identity::server_verified_client_config(bundle, control, &opts).map_err(|e| match e {
        palisade_identity::TlsError::Rustls(e) => e,
    })
}
