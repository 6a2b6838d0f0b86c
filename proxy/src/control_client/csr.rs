//! Key and CSR made in-process (rcgen; the key never leaves the proxy), and
//! the checks on what comes back: the chain verifies against the bundle and
//! its leaf names exactly the SPIFFE ID that was asked for.
use palisade_identity::verify::{PeerRole, check_leaf, verify_svid_chain};
use palisade_identity::{Credentials, TrustBundle, pem};
use rcgen::{CertificateParams, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};
use rustls::pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};

/// A fresh key and a CSR asking for one URI SAN: `id`.
pub struct PendingCsr {
    pub id: String,
    pub csr_pem: String,
    key: KeyPair,
}

#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    #[error("cannot make a key or CSR for {id}: {reason}")]
    Make { id: String, reason: String },
    #[error("control plane returned an unusable certificate: {0}")]
    BadChain(String),
    #[error("asked for {asked}, control plane issued {issued}")]
    WrongIdentity { asked: String, issued: String },
    #[error("issued SVID does not verify against the trust bundle: {0}")]
    Untrusted(String),
    #[error("trust bundle: {0}")]
    Bundle(String),
}

impl PendingCsr {
    pub fn new(id: &str) -> Result<Self, CsrError> {
        let make = |reason: String| CsrError::Make {
            id: id.to_owned(),
            reason,
        };
        let key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(|e| make(e.to_string()))?;
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = vec![SanType::URI(
            id.try_into()
                .map_err(|e: rcgen::Error| make(e.to_string()))?,
        )];
        let csr = params
            .serialize_request(&key)
            .map_err(|e| make(e.to_string()))?;
        let csr_pem = csr.pem().map_err(|e| make(e.to_string()))?;
        Ok(Self {
            id: id.to_owned(),
            csr_pem,
            key,
        })
    }

    /// Checks the returned chain and turns it into credentials.
    pub fn complete(self, chain_pem: &str, bundle_pem: &str) -> Result<Credentials, CsrError> {
        let chain = pem::certs(chain_pem).map_err(|e| CsrError::BadChain(e.to_string()))?;
        let leaf = chain
            .first()
            .ok_or_else(|| CsrError::BadChain("empty chain".into()))?;
        let issued = check_leaf(leaf).map_err(|e| CsrError::BadChain(e.to_string()))?;
        if issued.as_str() != self.id {
            return Err(CsrError::WrongIdentity {
                asked: self.id,
                issued: issued.to_string(),
            });
        }
        let bundle = TrustBundle::from_pem(issued.trust_domain(), bundle_pem)
            .map_err(|e| CsrError::Bundle(e.to_string()))?;
        let provider = palisade_identity::provider::default_provider();
        verify_svid_chain(
            &bundle,
            &chain,
            UnixTime::now(),
            PeerRole::Client,
            &provider,
        )
        .map_err(|e| CsrError::Untrusted(e.to_string()))?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.key.serialize_der()));
        Credentials::new(chain, key, bundle).map_err(|e| CsrError::BadChain(e.to_string()))
    }
}
