//! The trust bundle: the roots a trust domain's SVIDs chain to. It holds several
//! roots, so a CA rotates with the old and the new root side by side.
use rustls::pki_types::{CertificateDer, TrustAnchor};

use crate::pem::{self, PemError};
use crate::spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};

/// Why a trust bundle could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("trust bundle holds no certificate")]
    Empty,
    #[error("trust bundle root {index} is not a usable trust anchor: {source}")]
    BadRoot { index: usize, source: webpki::Error },
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error(
        "cannot tell the trust domain: bundle roots carry no spiffe:// URI SAN; give the trust domain explicitly"
    )]
    NoTrustDomain,
    #[error(
        "bundle roots name different trust domains ({0} and {1}); give the trust domain explicitly"
    )]
    MixedTrustDomains(TrustDomain, TrustDomain),
    #[error("bundle root carries an invalid SPIFFE ID: {0}")]
    BadRootId(SpiffeIdError),
}

/// Roots of one trust domain (plus optional aliases whose IDs are also accepted).
#[derive(Debug, Clone)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    aliases: Vec<TrustDomain>,
    roots: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
}

impl TrustBundle {
    /// A bundle for `trust_domain` with the given DER roots.
    pub fn new(
        trust_domain: TrustDomain,
        roots: Vec<CertificateDer<'static>>,
    ) -> Result<Self, BundleError> {
        if roots.is_empty() {
            return Err(BundleError::Empty);
        }
        let anchors = roots
            .iter()
            .enumerate()
            .map(|(index, der)| {
                webpki::anchor_from_trusted_cert(der)
                    .map(|a| a.to_owned())
                    .map_err(|source| BundleError::BadRoot { index, source })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            trust_domain,
            aliases: Vec::new(),
            roots,
            anchors,
        })
    }

    /// A bundle for `trust_domain` from PEM text holding one or more certificates.
    pub fn from_pem(trust_domain: TrustDomain, pem_text: &str) -> Result<Self, BundleError> {
        Self::new(trust_domain, pem::certs(pem_text)?)
    }

    /// A bundle whose trust domain is read from the roots' `spiffe://<td>` URI SAN.
    pub fn from_pem_infer(pem_text: &str) -> Result<Self, BundleError> {
        let roots = pem::certs(pem_text)?;
        let td = infer_trust_domain(&roots)?;
        Self::new(td, roots)
    }

    /// Also accept peer IDs of `alias` (e.g. during a trust domain migration).
    pub fn with_alias(mut self, alias: TrustDomain) -> Self {
        self.aliases.push(alias);
        self
    }

    /// A bundle with the roots of both `self` and `other` (for CA rotation).
    pub fn merged_with(&self, other: &TrustBundle) -> Self {
        let mut merged = self.clone();
        for (root, anchor) in other.roots.iter().zip(&other.anchors) {
            if !merged.roots.contains(root) {
                merged.roots.push(root.clone());
                merged.anchors.push(anchor.clone());
            }
        }
        merged
    }

    /// The bundle's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// True if an ID of `td` is accepted by this bundle.
    pub fn accepts_trust_domain(&self, td: &str) -> bool {
        self.trust_domain.as_str() == td || self.aliases.iter().any(|a| a.as_str() == td)
    }

    /// The roots, DER.
    pub fn roots(&self) -> &[CertificateDer<'static>] {
        &self.roots
    }

    /// The roots as webpki trust anchors.
    pub fn anchors(&self) -> &[TrustAnchor<'static>] {
        &self.anchors
    }

    /// The roots as PEM text.
    pub fn to_pem(&self) -> String {
        pem::encode_certs(&self.roots)
    }
}

/// The trust domain named by the `spiffe://` URI SANs of the given CA certificates.
pub fn infer_trust_domain(certs: &[CertificateDer<'_>]) -> Result<TrustDomain, BundleError> {
    let mut found: Option<TrustDomain> = None;
    for der in certs {
        for uri in crate::verify::uri_sans(der).unwrap_or_default() {
            if !uri.starts_with("spiffe://") {
                continue;
            }
            let td = SpiffeId::parse(&uri)
                .map_err(BundleError::BadRootId)?
                .trust_domain();
            match &found {
                Some(prev) if *prev != td => {
                    return Err(BundleError::MixedTrustDomains(prev.clone(), td));
                }
                _ => found = Some(td),
            }
        }
    }
    found.ok_or(BundleError::NoTrustDomain)
}
