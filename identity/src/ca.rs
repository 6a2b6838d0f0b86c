//! The mesh certificate authority: creates a root (ECDSA P-256, optionally with
//! an intermediate) or loads an existing CA from PEM (cert-manager, Vault), and
//! issues X509-SVIDs from a PKCS#10 CSR or a freshly generated key.
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer, UnixTime};
use time::OffsetDateTime;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::bundle::{BundleError, TrustBundle, infer_trust_domain};
use crate::pem::{self, PemError};
use crate::provider::default_provider;
use crate::spiffe_id::{SpiffeId, TrustDomain};
use crate::verify::{
    NotASigner, PeerRole, SvidError, roots_vouching_for, signing_cert_rules, verify_svid_chain,
};

/// Default SVID lifetime.
pub const DEFAULT_SVID_TTL: Duration = Duration::from_secs(24 * 3600);
/// How far `notBefore` is set in the past, so peers with a clock slightly behind
/// accept a fresh SVID.
pub const BACKDATE: Duration = Duration::from_secs(5 * 60);

/// File names of a CA directory written by [`CertificateAuthority::write_dir`].
pub const CA_CERT_FILE: &str = "ca.pem";
pub const CA_KEY_FILE: &str = "ca.key";
pub const BUNDLE_FILE: &str = "bundle.pem";
pub const ROOT_CERT_FILE: &str = "root.pem";
pub const ROOT_KEY_FILE: &str = "root.key";

/// Why the CA could not be created, loaded or could not issue.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    #[error("certificate generation failed: {0}")]
    Rcgen(#[from] rcgen::Error),
    #[error(transparent)]
    Pem(#[from] PemError),
    #[error(transparent)]
    Bundle(#[from] BundleError),
    #[error("CA certificate is unreadable: {0}")]
    BadCaCert(String),
    #[error("CA certificate is not a CA (basic constraints cA is not true)")]
    NotACa,
    #[error("CA certificate may not sign certificates (no key usage extension with keyCertSign)")]
    NoKeyCertSign,
    #[error(
        "CA certificate SPIFFE ID {0} has a path: the SPIFFE ID of a signing certificate MUST NOT have a path component"
    )]
    SigningIdWithPath(String),
    #[error("CA private key does not match the CA certificate's public key")]
    KeyMismatch,
    #[error("CA private key is unreadable: {0}")]
    BadKey(rcgen::Error),
    #[error("CA cannot issue a verifiable SVID with these files: {0}")]
    SelfCheck(SvidError),
    #[error("CSR is invalid or its signature does not verify: {0}")]
    BadCsr(rcgen::Error),
    #[error("CSR asks for {asked}, but the SVID is for {id}")]
    CsrIdMismatch { asked: String, id: String },
    #[error("SPIFFE ID {id} is not in this CA's trust domain {td}")]
    ForeignId { id: String, td: String },
    #[error("a leaf SVID needs a path: {0} names a trust domain, not a workload")]
    IdWithoutPath(String),
    #[error("TTL must be positive")]
    ZeroTtl,
    #[error("the CA expired at {0}; rotate it")]
    CaExpired(OffsetDateTime),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
}

/// How to create a new CA.
#[derive(Debug, Clone)]
pub struct CaOptions {
    /// Also create an intermediate that signs the SVIDs (the root stays offline).
    pub intermediate: bool,
    pub root_ttl: Duration,
    pub intermediate_ttl: Duration,
}

impl Default for CaOptions {
    fn default() -> Self {
        Self {
            intermediate: false,
            root_ttl: Duration::from_secs(10 * 365 * 24 * 3600),
            intermediate_ttl: Duration::from_secs(365 * 24 * 3600),
        }
    }
}

/// An issued SVID: the chain to present (leaf then intermediates) and, when the
/// CA generated it, the private key.
#[derive(Debug)]
pub struct IssuedSvid {
    pub id: SpiffeId,
    pub chain: Vec<CertificateDer<'static>>,
    pub key: Option<PrivateKeyDer<'static>>,
}

/// A certificate authority that issues X509-SVIDs for one trust domain.
pub struct CertificateAuthority {
    trust_domain: TrustDomain,
    signing_cert: CertificateDer<'static>,
    signing_key: KeyPair,
    /// Certificates between the signing certificate and a root (roots excluded).
    upper_chain: Vec<CertificateDer<'static>>,
    bundle: TrustBundle,
    not_after: OffsetDateTime,
    /// The root, when this CA created it with an intermediate.
    root: Option<(CertificateDer<'static>, KeyPair)>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl CertificateAuthority {
    /// Creates a new root (and, if asked, an intermediate) for `trust_domain`.
    pub fn create(trust_domain: &TrustDomain, opts: &CaOptions) -> Result<Self, CaError> {
        let provider = default_provider();
        let now = OffsetDateTime::now_utc();
        let root_key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let root_after = now + opts.root_ttl;
        let root_params = ca_params(
            trust_domain,
            "root",
            now - BACKDATE,
            root_after,
            BasicConstraints::Unconstrained,
            &provider,
        )?;
        let root_cert = root_params.self_signed(&root_key)?.der().clone();
        let bundle = TrustBundle::new(trust_domain.clone(), vec![root_cert.clone()])?;
        if !opts.intermediate {
            return Ok(Self {
                trust_domain: trust_domain.clone(),
                signing_cert: root_cert,
                signing_key: root_key,
                upper_chain: Vec::new(),
                bundle,
                not_after: root_after,
                root: None,
                provider,
            });
        }
        let int_after = (now + opts.intermediate_ttl).min(root_after);
        let (int_cert, int_key) = intermediate(
            trust_domain,
            (&root_cert, &root_key),
            now,
            int_after,
            &provider,
        )?;
        Ok(Self {
            trust_domain: trust_domain.clone(),
            signing_cert: int_cert,
            signing_key: int_key,
            upper_chain: Vec::new(),
            bundle,
            not_after: int_after,
            root: Some((root_cert, root_key)),
            provider,
        })
    }

    /// A new intermediate under an existing root (`root.pem` and `root.key`
    /// of a CA directory): what `palisade ca rotate prepare --keep-root`
    /// makes, so only the signing certificate changes and the bundle stays.
    pub fn create_under_root(
        trust_domain: &TrustDomain,
        root_cert: CertificateDer<'static>,
        root_key_pem: &str,
        intermediate_ttl: Duration,
    ) -> Result<Self, CaError> {
        let provider = default_provider();
        let root_key = KeyPair::from_pem(root_key_pem).map_err(CaError::BadKey)?;
        let info = ca_cert_info(&root_cert)?;
        if info.spki != root_key.subject_public_key_info() {
            return Err(CaError::KeyMismatch);
        }
        let now = OffsetDateTime::now_utc();
        if now >= info.not_after {
            return Err(CaError::CaExpired(info.not_after));
        }
        let int_after = (now + intermediate_ttl).min(info.not_after);
        let (int_cert, int_key) = intermediate(
            trust_domain,
            (&root_cert, &root_key),
            now,
            int_after,
            &provider,
        )?;
        let ca = Self {
            trust_domain: trust_domain.clone(),
            signing_cert: int_cert,
            signing_key: int_key,
            upper_chain: Vec::new(),
            bundle: TrustBundle::new(trust_domain.clone(), vec![root_cert.clone()])?,
            not_after: int_after,
            root: Some((root_cert, root_key)),
            provider,
        };
        ca.self_check()?;
        Ok(ca)
    }

    /// Loads an existing CA: `cert_pem` holds the signing certificate, then any
    /// certificates above it; `key_pem` its private key (PKCS#8, SEC1 or PKCS#1);
    /// `bundle_pem` the roots (if absent: the self-signed certificates of
    /// `cert_pem`). The trust domain is read from the certificates' `spiffe://`
    /// URI SANs unless given (a cert-manager or Vault root usually has none).
    pub fn from_pem(
        cert_pem: &str,
        key_pem: &str,
        bundle_pem: Option<&str>,
        trust_domain: Option<TrustDomain>,
    ) -> Result<Self, CaError> {
        let provider = default_provider();
        let certs = pem::certs(cert_pem)?;
        let signing_key = KeyPair::from_pem(key_pem).map_err(CaError::BadKey)?;
        let (signing_cert, rest) = certs
            .split_first()
            .ok_or(CaError::Pem(PemError::NoCertificate))?;
        let info = ca_cert_info(signing_cert)?;
        if info.spki != signing_key.subject_public_key_info() {
            return Err(CaError::KeyMismatch);
        }
        let mut roots = match bundle_pem {
            Some(text) => pem::certs(text)?,
            None => Vec::new(),
        };
        let mut upper_chain = Vec::new();
        for cert in rest {
            if ca_cert_info(cert)?.self_signed {
                if bundle_pem.is_none() {
                    roots.push(cert.clone());
                }
            } else {
                upper_chain.push(cert.clone());
            }
        }
        if roots.is_empty() && info.self_signed {
            roots.push(signing_cert.clone());
        }
        let td = match trust_domain {
            Some(td) => td,
            None => {
                let mut all = vec![signing_cert.clone()];
                all.extend(roots.iter().cloned());
                infer_trust_domain(&all)?
            }
        };
        let bundle = TrustBundle::new(td.clone(), roots)?;
        let ca = Self {
            trust_domain: td,
            signing_cert: signing_cert.clone(),
            signing_key,
            upper_chain,
            bundle,
            not_after: info.not_after,
            root: None,
            provider,
        };
        ca.self_check()?;
        Ok(ca)
    }

    /// Loads a CA directory: our layout (`ca.pem`, `ca.key`, `bundle.pem`) or a
    /// cert-manager secret's (`tls.crt`, `tls.key`, `ca.crt`).
    pub fn load_dir(dir: &Path, trust_domain: Option<TrustDomain>) -> Result<Self, CaError> {
        let (cert, key, bundle) = if dir.join(CA_CERT_FILE).exists() {
            (CA_CERT_FILE, CA_KEY_FILE, BUNDLE_FILE)
        } else {
            ("tls.crt", "tls.key", "ca.crt")
        };
        let cert_pem = read(&dir.join(cert))?;
        let key_pem = read(&dir.join(key))?;
        let bundle_path = dir.join(bundle);
        let bundle_pem = if bundle_path.exists() {
            Some(read(&bundle_path)?)
        } else {
            None
        };
        Self::from_pem(&cert_pem, &key_pem, bundle_pem.as_deref(), trust_domain)
    }

    /// Writes `ca.pem` (signing certificate and chain), `ca.key` (0600) and
    /// `bundle.pem`; with an intermediate also `root.pem` and `root.key` (0600).
    pub fn write_dir(&self, dir: &Path) -> Result<(), CaError> {
        std::fs::create_dir_all(dir).map_err(|e| io_err(dir, e))?;
        let mut chain = vec![self.signing_cert.clone()];
        chain.extend(self.upper_chain.iter().cloned());
        let p = dir.join(CA_CERT_FILE);
        pem::write_public(&p, &pem::encode_certs(&chain)).map_err(|e| io_err(&p, e))?;
        let p = dir.join(CA_KEY_FILE);
        pem::write_private(&p, &self.signing_key.serialize_pem()).map_err(|e| io_err(&p, e))?;
        let p = dir.join(BUNDLE_FILE);
        pem::write_public(&p, &self.bundle.to_pem()).map_err(|e| io_err(&p, e))?;
        if let Some((root_cert, root_key)) = &self.root {
            let p = dir.join(ROOT_CERT_FILE);
            pem::write_public(&p, &pem::encode_certs(std::slice::from_ref(root_cert)))
                .map_err(|e| io_err(&p, e))?;
            let p = dir.join(ROOT_KEY_FILE);
            pem::write_private(&p, &root_key.serialize_pem()).map_err(|e| io_err(&p, e))?;
        }
        Ok(())
    }

    /// The CA's trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The trust bundle SVIDs of this CA verify against.
    pub fn bundle(&self) -> &TrustBundle {
        &self.bundle
    }

    /// The same CA, its bundle also holding `roots` (a root that signed
    /// until the CA was replaced in place, still trusted for a while).
    pub fn also_trusting(mut self, roots: &[CertificateDer<'static>]) -> Result<Self, CaError> {
        let extra = TrustBundle::new(self.trust_domain.clone(), roots.to_vec())?;
        self.bundle = self.bundle.merged_with(&extra);
        Ok(self)
    }

    /// The certificate that signs SVIDs (the root itself, or an intermediate).
    pub fn signing_cert(&self) -> &CertificateDer<'static> {
        &self.signing_cert
    }

    /// When the signing certificate expires.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// True when SVIDs are signed by an intermediate, not by a root.
    pub fn signs_with_intermediate(&self) -> bool {
        !self.bundle.roots().contains(&self.signing_cert)
    }

    /// The bundle's roots that the SVIDs of this CA chain to. The others
    /// are roots kept for a rotation (a CA being introduced or retired).
    pub fn anchoring_roots(&self) -> Vec<CertificateDer<'static>> {
        let Ok(svid) = self.throwaway_svid() else {
            return Vec::new();
        };
        roots_vouching_for(&self.bundle, &svid.chain)
            .cloned()
            .collect()
    }

    /// Issues an SVID for `id` with a freshly generated ECDSA P-256 key.
    pub fn issue(&self, id: &SpiffeId, ttl: Duration) -> Result<IssuedSvid, CaError> {
        let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
        let chain = self.sign_leaf(id, &key, ttl)?;
        let key_der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok(IssuedSvid {
            id: id.clone(),
            chain,
            key: Some(key_der),
        })
    }

    /// Issues an SVID for `id` to the key of a PKCS#10 CSR (PEM), after checking
    /// the CSR's signature. Names asked for in the CSR are not copied; a CSR that
    /// asks for a URI SAN other than `id` is refused.
    pub fn issue_from_csr(
        &self,
        csr_pem: &str,
        id: &SpiffeId,
        ttl: Duration,
    ) -> Result<IssuedSvid, CaError> {
        let csr = CertificateSigningRequestParams::from_pem(csr_pem).map_err(CaError::BadCsr)?;
        for san in &csr.params.subject_alt_names {
            if let SanType::URI(uri) = san
                && uri.as_str() != id.as_str()
            {
                return Err(CaError::CsrIdMismatch {
                    asked: uri.as_str().to_owned(),
                    id: id.to_string(),
                });
            }
        }
        let chain = self.sign_leaf(id, &csr.public_key, ttl)?;
        Ok(IssuedSvid {
            id: id.clone(),
            chain,
            key: None,
        })
    }

    fn sign_leaf(
        &self,
        id: &SpiffeId,
        public_key: &impl PublicKeyData,
        ttl: Duration,
    ) -> Result<Vec<CertificateDer<'static>>, CaError> {
        if !self.bundle.accepts_trust_domain(id.trust_domain_str()) {
            return Err(CaError::ForeignId {
                id: id.to_string(),
                td: self.trust_domain.to_string(),
            });
        }
        if id.path().is_empty() {
            return Err(CaError::IdWithoutPath(id.to_string()));
        }
        if ttl.is_zero() {
            return Err(CaError::ZeroTtl);
        }
        let now = OffsetDateTime::now_utc();
        if now >= self.not_after {
            return Err(CaError::CaExpired(self.not_after));
        }
        let mut params = CertificateParams::default();
        params.distinguished_name = DistinguishedName::new();
        params
            .distinguished_name
            .push(DnType::OrganizationName, "Palisade");
        params.subject_alt_names = vec![SanType::URI(id.as_str().try_into()?)];
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
            KeyUsagePurpose::KeyAgreement,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.not_before = now - BACKDATE;
        // An SVID never outlives its issuer: path validation would fail anyway.
        params.not_after = (now + ttl).min(self.not_after);
        params.serial_number = Some(random_serial(&self.provider)?);
        params.use_authority_key_identifier_extension = true;
        let issuer = Issuer::from_ca_cert_der(&self.signing_cert, &self.signing_key)?;
        let leaf = params.signed_by(public_key, &issuer)?.der().clone();
        Ok(self.chain_for(leaf))
    }

    /// Leaf, then the intermediates a peer needs to reach a bundle root.
    fn chain_for(&self, leaf: CertificateDer<'static>) -> Vec<CertificateDer<'static>> {
        let mut chain = vec![leaf];
        if !self.bundle.roots().contains(&self.signing_cert) {
            chain.push(self.signing_cert.clone());
        }
        chain.extend(self.upper_chain.iter().cloned());
        chain
    }

    /// A one-minute SVID for a path no workload has, to test the CA with.
    fn throwaway_svid(&self) -> Result<IssuedSvid, CaError> {
        let id = SpiffeId::from_parts(&self.trust_domain, "/palisade/ca-self-check")
            .map_err(|e| CaError::BadCaCert(e.to_string()))?;
        self.issue(&id, Duration::from_secs(60))
    }

    /// Issues a throwaway SVID and verifies it: proves the loaded files fit.
    fn self_check(&self) -> Result<(), CaError> {
        let svid = self.throwaway_svid()?;
        verify_svid_chain(
            &self.bundle,
            &svid.chain,
            UnixTime::now(),
            PeerRole::Client,
            &self.provider,
        )
        .map(|_| ())
        .map_err(CaError::SelfCheck)
    }
}

/// A new intermediate (path length 0) signed by `root`, valid from a
/// little before `now` until `not_after`.
fn intermediate(
    td: &TrustDomain,
    root: (&CertificateDer<'static>, &KeyPair),
    now: OffsetDateTime,
    not_after: OffsetDateTime,
    provider: &CryptoProvider,
) -> Result<(CertificateDer<'static>, KeyPair), CaError> {
    let key = KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)?;
    let mut params = ca_params(
        td,
        "intermediate",
        now - BACKDATE,
        not_after,
        BasicConstraints::Constrained(0),
        provider,
    )?;
    params.use_authority_key_identifier_extension = true;
    let issuer = Issuer::from_ca_cert_der(root.0, root.1)?;
    let cert = params.signed_by(&key, &issuer)?.der().clone();
    Ok((cert, key))
}

fn ca_params(
    td: &TrustDomain,
    role: &str,
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    constraints: BasicConstraints,
    provider: &CryptoProvider,
) -> Result<CertificateParams, CaError> {
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params
        .distinguished_name
        .push(DnType::OrganizationName, "Palisade");
    params
        .distinguished_name
        .push(DnType::CommonName, format!("Palisade {role} CA {td}"));
    // "If present, the SPIFFE ID of a signing certificate MUST NOT have a path
    // component" (X509-SVID 3.2).
    params.subject_alt_names = vec![SanType::URI(td.id().as_str().try_into()?)];
    params.is_ca = IsCa::Ca(constraints);
    // "SVID signing certificates MUST set keyCertSign. They MAY set cRLSign."
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    params.not_before = not_before;
    params.not_after = not_after;
    params.serial_number = Some(random_serial(provider)?);
    Ok(params)
}

fn random_serial(provider: &CryptoProvider) -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    provider
        .secure_random
        .fill(&mut bytes)
        .map_err(|_| CaError::Rcgen(rcgen::Error::RingUnspecified))?;
    // Positive, and no leading zero byte: DER INTEGER stays 16 bytes.
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

struct CaCertInfo {
    spki: Vec<u8>,
    self_signed: bool,
    not_after: OffsetDateTime,
}

fn ca_cert_info(der: &CertificateDer<'_>) -> Result<CaCertInfo, CaError> {
    let (_, cert) =
        X509Certificate::from_der(der).map_err(|e| CaError::BadCaCert(e.to_string()))?;
    // "SVID signing certificates MUST set `keyCertSign`" (X509-SVID 4.3):
    // no key usage extension, no keyCertSign.
    signing_cert_rules(&cert).map_err(|e| match e {
        NotASigner::NotCa => CaError::NotACa,
        NotASigner::NoKeyCertSign => CaError::NoKeyCertSign,
        NotASigner::IdWithPath(id) => CaError::SigningIdWithPath(id),
        NotASigner::Malformed(m) => CaError::BadCaCert(m),
    })?;
    Ok(CaCertInfo {
        spki: cert.public_key().raw.to_vec(),
        self_signed: cert.subject() == cert.issuer() && cert.verify_signature(None).is_ok(),
        not_after: cert.validity().not_after.to_datetime(),
    })
}

fn read(path: &Path) -> Result<String, CaError> {
    std::fs::read_to_string(path).map_err(|e| io_err(path, e))
}

fn io_err(path: &Path, source: std::io::Error) -> CaError {
    CaError::Io {
        path: path.display().to_string(),
        source,
    }
}
