//! The control plane's use of the mesh CA (`palisade_identity`): sign a
//! proxy's PKCS#10 CSR for exactly the SPIFFE ID it is entitled to, and issue
//! the control plane's own serving SVID.
//!
//! On top of the CA's own checks (CSR signature, no foreign URI SAN), the
//! control plane insists the CSR asks for exactly one URI SAN and nothing
//! else, and that it is the expected ID: X509-SVID says "An X.509 SVID MUST
//! contain exactly one URI SAN", and a CSR that asks for more is a client bug
//! or an attack; refuse it by name rather than silently drop names.
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade_identity::{CaOptions, CertificateAuthority, SpiffeId, TrustDomain, pem};
use rcgen::{CertificateSigningRequestParams, IsCa, SanType};
use rustls::pki_types::CertificateDer;

/// Why a CSR was not signed or the CA could not be used.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("CSR is not a valid PKCS#10 request with a verifying signature: {0}")]
    BadCsr(String),
    #[error("CSR must ask for exactly one URI SAN ({expected}); it asks for {got}")]
    WrongSans { expected: String, got: String },
    #[error("CSR asks for {got}, but this workload's identity is {expected}")]
    WrongIdentity { expected: String, got: String },
    #[error("CSR asks for a CA certificate; workload SVIDs are leaves")]
    AsksForCa,
    #[error("CA: {0}")]
    Ca(#[from] palisade_identity::CaError),
    #[error("bad SPIFFE ID {id}: {reason}")]
    BadId { id: String, reason: String },
    #[error("issued certificate unreadable: {0}")]
    Issued(String),
}

/// A signed chain as returned to the proxy.
#[derive(Debug, Clone)]
pub struct SignedSvid {
    pub chain_pem: String,
    pub spiffe_id: String,
    pub expires_unix: i64,
}

/// A chain together with its freshly made private key.
#[derive(Debug, Clone)]
pub struct KeyedSvid {
    pub svid: SignedSvid,
    pub key_pem: String,
}

/// The mesh CA as the control plane uses it.
#[derive(Debug)]
pub struct CaAuthority {
    ca: CertificateAuthority,
    trust_domain: String,
    bundle_pem: String,
}

impl CaAuthority {
    pub fn new(ca: CertificateAuthority) -> Self {
        Self {
            trust_domain: ca.trust_domain().as_str().to_owned(),
            bundle_pem: ca.bundle().to_pem(),
            ca,
        }
    }

    /// A fresh CA for `trust_domain` (tests, benches, demos).
    pub fn generate(trust_domain: &str) -> Result<Self, PkiError> {
        let td = TrustDomain::new(trust_domain).map_err(|e| PkiError::BadId {
            id: trust_domain.to_owned(),
            reason: e.to_string(),
        })?;
        Ok(Self::new(CertificateAuthority::create(
            &td,
            &CaOptions::default(),
        )?))
    }

    /// Loads `--ca DIR` as written by `palisade ca init`.
    pub fn load_dir(dir: &Path, trust_domain: Option<&str>) -> Result<Self, PkiError> {
        let td = trust_domain
            .map(|t| {
                TrustDomain::new(t).map_err(|e| PkiError::BadId {
                    id: t.to_owned(),
                    reason: e.to_string(),
                })
            })
            .transpose()?;
        Ok(Self::new(CertificateAuthority::load_dir(dir, td)?))
    }

    /// Writes the CA directory (tests and demos).
    pub fn save_dir(&self, dir: &Path) -> Result<(), PkiError> {
        Ok(self.ca.write_dir(dir)?)
    }

    /// The identity crate's CA (bundle, direct issuance).
    pub fn inner(&self) -> &CertificateAuthority {
        &self.ca
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The trust bundle as PEM.
    pub fn bundle_pem(&self) -> &str {
        &self.bundle_pem
    }

    /// Checks `csr_pem` and signs it for `expected_id`, valid for `ttl`.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        expected_id: &str,
        ttl: Duration,
    ) -> Result<SignedSvid, PkiError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem)
            .map_err(|e| PkiError::BadCsr(e.to_string()))?;
        let uri = match csr.params.subject_alt_names.as_slice() {
            [SanType::URI(uri)] => uri.as_str().to_owned(),
            sans => {
                let got: Vec<String> = sans.iter().map(san_text).collect();
                return Err(PkiError::WrongSans {
                    expected: expected_id.to_owned(),
                    got: if got.is_empty() {
                        "none".into()
                    } else {
                        got.join(", ")
                    },
                });
            }
        };
        if uri != expected_id {
            return Err(PkiError::WrongIdentity {
                expected: expected_id.to_owned(),
                got: uri,
            });
        }
        if matches!(csr.params.is_ca, IsCa::Ca(_)) {
            return Err(PkiError::AsksForCa);
        }
        let issued = self
            .ca
            .issue_from_csr(csr_pem, &parse_id(expected_id)?, ttl)?;
        signed(&issued.chain, expected_id)
    }

    /// Makes a key and an SVID for `id` (the control plane's own, the admin CLI).
    pub fn issue_keyed(&self, id: &str, ttl: Duration) -> Result<KeyedSvid, PkiError> {
        let issued = self.ca.issue(&parse_id(id)?, ttl)?;
        let key = issued
            .key
            .as_ref()
            .ok_or_else(|| PkiError::Issued("CA returned no key".into()))?;
        let key_pem = pem::encode("PRIVATE KEY", key.secret_der());
        Ok(KeyedSvid {
            svid: signed(&issued.chain, id)?,
            key_pem,
        })
    }
}

fn parse_id(id: &str) -> Result<SpiffeId, PkiError> {
    SpiffeId::parse(id).map_err(|e| PkiError::BadId {
        id: id.to_owned(),
        reason: e.to_string(),
    })
}

fn signed(chain: &[CertificateDer<'static>], id: &str) -> Result<SignedSvid, PkiError> {
    let leaf = chain
        .first()
        .ok_or_else(|| PkiError::Issued("empty chain".into()))?;
    Ok(SignedSvid {
        chain_pem: pem::encode_certs(chain),
        spiffe_id: id.to_owned(),
        expires_unix: not_after_unix(leaf).ok_or_else(|| PkiError::Issued("no validity".into()))?,
    })
}

/// The `notAfter` of a certificate, in seconds since the epoch.
pub fn not_after_unix(der: &CertificateDer<'_>) -> Option<i64> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    Some(cert.validity().not_after.timestamp())
}

fn san_text(san: &SanType) -> String {
    match san {
        SanType::URI(u) => format!("URI:{}", u.as_str()),
        SanType::DnsName(d) => format!("DNS:{}", d.as_str()),
        SanType::Rfc822Name(e) => format!("email:{}", e.as_str()),
        SanType::IpAddress(ip) => format!("IP:{ip}"),
        other => format!("{other:?}"),
    }
}

/// Seconds since the epoch, now.
pub fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}
