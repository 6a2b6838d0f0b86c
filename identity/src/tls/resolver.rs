//! Picks the certificate to present, per handshake, from the credential store.
use std::sync::Arc;

use rustls::SignatureScheme;
use rustls::client::ResolvesClientCert;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use crate::credentials::CredentialStore;

/// Presents the store's current SVID, as server and as client.
#[derive(Debug)]
pub struct StoreCertResolver {
    store: Arc<CredentialStore>,
}

impl StoreCertResolver {
    /// A resolver reading `store`.
    pub fn new(store: Arc<CredentialStore>) -> Self {
        Self { store }
    }
}

impl ResolvesServerCert for StoreCertResolver {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.store.current().certified_key().clone())
    }
}

impl ResolvesClientCert for StoreCertResolver {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.store.current().certified_key().clone())
    }

    fn has_certs(&self) -> bool {
        true
    }
}
