//! The trust bundle: the roots a trust domain's SVIDs chain to. It holds several
//! roots, so a CA rotates with the old and the new root side by side.
use rustls::pki_types::{CertificateDer, Der, TrustAnchor};

use crate::b64;
use crate::name_constraints::{NameConstraints, without_uri_subtrees};
use crate::pem::{self, PemError};
use crate::spiffe_id::{SpiffeId, SpiffeIdError, TrustDomain};

/// Why a trust bundle could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BundleError {
    #[error("trust bundle holds no certificate")]
    Empty,
    #[error("trust bundle root {index} is not a usable trust anchor: {source}")]
    BadRoot { index: usize, source: webpki::Error },
    #[error(
        "trust bundle root {index}: cannot read its validity, basic constraints or name constraints: {reason}"
    )]
    UnreadableRoot { index: usize, reason: String },
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
    #[error(
        "cannot tell the trust domain: a bundle root carries an invalid SPIFFE ID ({0}); give the trust domain explicitly"
    )]
    BadRootId(SpiffeIdError),
    #[error("SPIFFE bundle: {0}")]
    SpiffeBundle(#[from] SpiffeBundleError),
}

/// Roots of one trust domain (plus optional aliases whose IDs are also accepted).
#[derive(Debug, Clone)]
pub struct TrustBundle {
    trust_domain: TrustDomain,
    aliases: Vec<TrustDomain>,
    roots: Vec<CertificateDer<'static>>,
    anchors: Vec<TrustAnchor<'static>>,
    /// What webpki drops of each root when it makes it a trust anchor, in
    /// the order of `roots`.
    root_limits: Vec<RootLimits>,
}

/// The parts of a root certificate that a trust anchor does not keep
/// (webpki keeps its subject, key and name constraints), and that path
/// validation must still honour as Go's crypto/x509 and OpenSSL do: the
/// validity window and the basic constraints' pathLenConstraint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RootLimits {
    /// The root's subject, for messages.
    pub(crate) subject: String,
    /// notBefore and notAfter, seconds since the Unix epoch.
    pub(crate) not_before_unix: i64,
    pub(crate) not_after_unix: i64,
    /// pathLenConstraint: how many intermediates may sit below the root.
    pub(crate) max_intermediates: Option<u32>,
    /// The root's name constraints, if any. Its URI subtrees are left out
    /// of its trust anchor (webpki refuses them) and checked on each path.
    pub(crate) name_constraints: Option<NameConstraints>,
}

impl RootLimits {
    fn of(der: &CertificateDer<'_>) -> Result<Self, String> {
        use x509_parser::prelude::{FromDer, X509Certificate};
        let cert = match X509Certificate::from_der(der) {
            Ok(([], cert)) => cert,
            Ok(_) => return Err("trailing data after certificate".into()),
            Err(e) => return Err(e.to_string()),
        };
        let max_intermediates = cert
            .basic_constraints()
            .map_err(|e| e.to_string())?
            .filter(|bc| bc.value.ca)
            .and_then(|bc| bc.value.path_len_constraint);
        Ok(Self {
            subject: cert.subject().to_string(),
            not_before_unix: cert.validity().not_before.timestamp(),
            not_after_unix: cert.validity().not_after.timestamp(),
            max_intermediates,
            name_constraints: NameConstraints::of(&cert)?,
        })
    }
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
                let mut anchor = webpki::anchor_from_trusted_cert(der)
                    .map(|a| a.to_owned())
                    .map_err(|source| BundleError::BadRoot { index, source })?;
                // webpki refuses every SVID below a URI subtree; path
                // validation checks the root's URI subtrees itself
                // (`RootLimits::name_constraints`), webpki the others.
                if let Some(nc) = &anchor.name_constraints {
                    anchor.name_constraints = without_uri_subtrees(nc.as_ref())
                        .map_err(|reason| BundleError::UnreadableRoot { index, reason })?
                        .map(Der::from);
                }
                Ok::<_, BundleError>(anchor)
            })
            .collect::<Result<Vec<_>, _>>()?;
        let root_limits = roots
            .iter()
            .enumerate()
            .map(|(index, der)| {
                RootLimits::of(der).map_err(|reason| BundleError::UnreadableRoot { index, reason })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            trust_domain,
            aliases: Vec::new(),
            roots,
            anchors,
            root_limits,
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
        for ((root, anchor), limits) in other
            .roots
            .iter()
            .zip(&other.anchors)
            .zip(&other.root_limits)
        {
            if !merged.roots.contains(root) {
                merged.roots.push(root.clone());
                merged.anchors.push(anchor.clone());
                merged.root_limits.push(limits.clone());
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

    /// What the trust anchors drop of each root, in the order of `roots`.
    pub(crate) fn root_limits(&self) -> &[RootLimits] {
        &self.root_limits
    }

    /// The validity windows and path length limits of the roots whose
    /// trust anchor is `anchor` (usually one; a root reissued with the same
    /// name and key gives two).
    pub(crate) fn limits_of_anchor<'a>(
        &'a self,
        anchor: &'a TrustAnchor<'a>,
    ) -> impl Iterator<Item = &'a RootLimits> + 'a {
        self.anchors
            .iter()
            .zip(&self.root_limits)
            .filter(move |(a, _)| **a == *anchor)
            .map(|(_, limits)| limits)
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

// === SPIFFE bundle format ===

/// The `use` of a JWK holding an X509-SVID CA certificate (X509-SVID 6.1).
const X509_SVID_USE: &str = "x509-svid";
/// The `use` of a JWK holding a JWT-SVID signing key (JWT-SVID 6).
const JWT_SVID_USE: &str = "jwt-svid";

/// Why a SPIFFE bundle document could not be read or written. Texts follow
/// go-spiffe `bundle/spiffebundle`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpiffeBundleError {
    #[error("unable to parse JWKS: {0}")]
    Json(String),
    /// "The parameter `keys` MUST be present." (SPIFFE Trust Domain and Bundle 4.1.3)
    #[error("no authorities found")]
    NoKeys,
    /// go-spiffe: an `x509-svid` entry carries exactly one certificate in `x5c`
    /// (X509-SVID 6.1: "The value MUST include exactly one CA certificate").
    #[error("expected a single certificate in x509-svid entry {index}; got {count}")]
    X5cCount { index: usize, count: usize },
    #[error("x509-svid entry {index}: x5c certificate is not base64 DER X.509: {reason}")]
    BadCertificate { index: usize, reason: String },
    #[error(
        "unable to parse JWKS: invalid JWK {index}: public key does not match its x5c certificate"
    )]
    KeyMismatch { index: usize },
    /// go-jose: an `x5t` or `x5t#S256` thumbprint that is not base64url, is
    /// not a SHA-1 (SHA-256) digest long, or is not the digest of the `x5c`
    /// certificate (RFC 7517 4.8, 4.9).
    #[error("unable to parse JWKS: invalid JWK {index}: {reason}")]
    Thumbprint { index: usize, reason: String },
    /// go-spiffe: a `jwt-svid` entry needs a key ID.
    #[error("error adding authority {index} of JWKS: keyID cannot be empty")]
    MissingKeyId { index: usize },
    #[error("root {index}: cannot express its public key as a JWK: {reason}")]
    UnsupportedKey { index: usize, reason: String },
}

/// The X509-SVID part of a SPIFFE bundle: an RFC 7517 JWK Set per "The SPIFFE
/// Trust Domain and Bundle" section 4 and X509-SVID section 6. The trust
/// domain is not part of the document; keep it beside (section 3).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SpiffeBundle {
    /// The CA certificates of the `x509-svid` entries, DER, in document order,
    /// without duplicates.
    pub x509_authorities: Vec<CertificateDer<'static>>,
    /// `spiffe_sequence` (section 4.1.1).
    pub sequence_number: Option<u64>,
    /// `spiffe_refresh_hint` in seconds (section 4.1.2).
    pub refresh_hint: Option<i64>,
}

impl SpiffeBundle {
    /// Parses a SPIFFE bundle document, as go-spiffe `spiffebundle.Parse`:
    /// `keys` must be present; an `x509-svid` entry must carry exactly one
    /// `x5c` certificate whose public key is the entry's key (and whose
    /// digests are the `x5t`/`x5t#S256` thumbprints where given); a `jwt-svid`
    /// entry must have a `kid` (JWT keys are checked, not kept). Entries with
    /// another or no `use`, or with a key type other than `EC`, `RSA` or `OKP`,
    /// are ignored ("Clients encountering unknown key types or uses MUST ignore
    /// the corresponding JWK element", section 4.1.3). Unknown members are
    /// ignored (section 4.1).
    pub fn parse(text: &str) -> Result<Self, SpiffeBundleError> {
        use serde_json::Value;
        let doc: Value =
            serde_json::from_str(text).map_err(|e| SpiffeBundleError::Json(e.to_string()))?;
        let Value::Object(doc) = doc else {
            return Err(SpiffeBundleError::Json(
                "a SPIFFE bundle is a JSON object".into(),
            ));
        };
        let member = |name: &str| doc.get(name).filter(|v| !v.is_null());
        let sequence_number = member("spiffe_sequence")
            .map(|v| {
                v.as_u64().ok_or_else(|| {
                    SpiffeBundleError::Json(
                        "spiffe_sequence is not an unsigned 64-bit integer".into(),
                    )
                })
            })
            .transpose()?;
        let refresh_hint = member("spiffe_refresh_hint")
            .map(|v| {
                v.as_i64().ok_or_else(|| {
                    SpiffeBundleError::Json("spiffe_refresh_hint is not a 64-bit integer".into())
                })
            })
            .transpose()?;
        let keys = match member("keys") {
            None => return Err(SpiffeBundleError::NoKeys),
            Some(Value::Array(keys)) => keys,
            Some(_) => return Err(SpiffeBundleError::Json("keys is not an array".into())),
        };
        let mut x509_authorities: Vec<CertificateDer<'static>> = Vec::new();
        for (index, key) in keys.iter().enumerate() {
            let Value::Object(key) = key else {
                return Err(SpiffeBundleError::Json(format!(
                    "key {index} is not an object"
                )));
            };
            let string = |name: &str| key.get(name).and_then(Value::as_str);
            if !matches!(string("kty"), Some("EC" | "RSA" | "OKP")) {
                continue;
            }
            let thumbprints = Thumbprints::of(key, index)?;
            match string("use") {
                Some(X509_SVID_USE) => {
                    let x5c = match key.get("x5c") {
                        None | Some(Value::Null) => Vec::new(),
                        Some(Value::Array(certs)) => certs.iter().collect(),
                        Some(_) => {
                            return Err(SpiffeBundleError::Json(format!(
                                "x5c of key {index} is not an array"
                            )));
                        }
                    };
                    let [cert] = x5c.as_slice() else {
                        return Err(SpiffeBundleError::X5cCount {
                            index,
                            count: x5c.len(),
                        });
                    };
                    let der = cert
                        .as_str()
                        .and_then(b64::decode_standard)
                        .ok_or_else(|| SpiffeBundleError::BadCertificate {
                            index,
                            reason: "not standard padded base64".into(),
                        })?;
                    let jwk = cert_jwk(&der)
                        .map_err(|reason| SpiffeBundleError::BadCertificate { index, reason })?;
                    if !jwk_matches(key, &jwk) {
                        return Err(SpiffeBundleError::KeyMismatch { index });
                    }
                    thumbprints.check(&der, index)?;
                    let der = CertificateDer::from(der);
                    if !x509_authorities.contains(&der) {
                        x509_authorities.push(der);
                    }
                }
                Some(JWT_SVID_USE) if string("kid").is_none_or(str::is_empty) => {
                    return Err(SpiffeBundleError::MissingKeyId { index });
                }
                _ => {}
            }
        }
        Ok(Self {
            x509_authorities,
            sequence_number,
            refresh_hint,
        })
    }

    /// The document: one `x509-svid` JWK per CA certificate with its public key
    /// parameters and `x5c` holding just that certificate, no `kid` (X509-SVID
    /// 6.1), then `spiffe_sequence` and `spiffe_refresh_hint` when set.
    pub fn to_json(&self) -> Result<String, SpiffeBundleError> {
        let mut keys = Vec::with_capacity(self.x509_authorities.len());
        for (index, der) in self.x509_authorities.iter().enumerate() {
            let mut jwk = cert_jwk(der)
                .map_err(|reason| SpiffeBundleError::UnsupportedKey { index, reason })?;
            jwk.insert("use".into(), X509_SVID_USE.into());
            jwk.insert(
                "x5c".into(),
                serde_json::Value::Array(vec![b64::encode_standard(der).into()]),
            );
            keys.push(serde_json::Value::Object(jwk));
        }
        let mut doc = serde_json::Map::new();
        doc.insert("keys".into(), keys.into());
        if let Some(seq) = self.sequence_number {
            doc.insert("spiffe_sequence".into(), seq.into());
        }
        if let Some(hint) = self.refresh_hint {
            doc.insert("spiffe_refresh_hint".into(), hint.into());
        }
        serde_json::to_string_pretty(&serde_json::Value::Object(doc))
            .map_err(|e| SpiffeBundleError::Json(e.to_string()))
    }
}

/// Looks like a SPIFFE bundle (JSON) rather than PEM.
pub fn is_spiffe_bundle(text: &str) -> bool {
    text.trim_start().starts_with('{')
}

impl TrustBundle {
    /// A bundle for `trust_domain` from a SPIFFE bundle document (its
    /// `x509-svid` entries). "If no `x509-svid` JWK entries are present in the
    /// bundle, then the trust domain does not support X509-SVID" (X509-SVID
    /// 6.2): [`BundleError::Empty`].
    pub fn from_spiffe_bundle(trust_domain: TrustDomain, json: &str) -> Result<Self, BundleError> {
        Self::new(trust_domain, SpiffeBundle::parse(json)?.x509_authorities)
    }

    /// Like [`TrustBundle::from_spiffe_bundle`], but a valid document without
    /// `x509-svid` entries (an empty `keys` array included) gives a bundle
    /// without roots, which vouches for no X509-SVID, instead of an error: "A
    /// trust domain which publishes an empty key array indicates that the
    /// trust domain has revoked any previously-published keys ... workloads
    /// MUST treat all SVIDs from the trust domain as invalid and untrusted"
    /// (SPIFFE Trust Domain and Bundle 4.1.3; X509-SVID 6.2). For the bundle
    /// of a trust domain a document names the latest keys of (federation).
    pub fn from_spiffe_bundle_or_none(
        trust_domain: TrustDomain,
        json: &str,
    ) -> Result<Self, BundleError> {
        let roots = SpiffeBundle::parse(json)?.x509_authorities;
        if roots.is_empty() {
            return Ok(Self::without_roots(trust_domain));
        }
        Self::new(trust_domain, roots)
    }

    /// A bundle of `trust_domain` with no root: every X509-SVID of the trust
    /// domain is refused ([`crate::SvidError::NoRoots`]), as go-spiffe's
    /// `x509svid.Verify` refuses them with an X.509 bundle without authorities.
    pub fn without_roots(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            aliases: Vec::new(),
            roots: Vec::new(),
            anchors: Vec::new(),
            root_limits: Vec::new(),
        }
    }

    /// Like [`TrustBundle::from_spiffe_bundle`], the trust domain read from
    /// the roots' `spiffe://<td>` URI SAN.
    pub fn from_spiffe_bundle_infer(json: &str) -> Result<Self, BundleError> {
        let roots = SpiffeBundle::parse(json)?.x509_authorities;
        if roots.is_empty() {
            return Err(BundleError::Empty);
        }
        let td = infer_trust_domain(&roots)?;
        Self::new(td, roots)
    }

    /// The roots as a SPIFFE bundle document.
    pub fn to_spiffe_bundle(
        &self,
        sequence_number: Option<u64>,
        refresh_hint: Option<i64>,
    ) -> Result<String, SpiffeBundleError> {
        SpiffeBundle {
            x509_authorities: self.roots.clone(),
            sequence_number,
            refresh_hint,
        }
        .to_json()
    }
}

/// The RFC 7518 section 6 public key parameters (`kty` and its members) of a
/// certificate's key: EC P-256/P-384/P-521, RSA, or Ed25519 (RFC 8037).
fn cert_jwk(der: &[u8]) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    use x509_parser::oid_registry::{
        OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_NIST_EC_P521,
        OID_PKCS1_RSAENCRYPTION, OID_SIG_ED25519,
    };
    use x509_parser::prelude::{FromDer, X509Certificate};
    let cert = match X509Certificate::from_der(der) {
        Ok(([], cert)) => cert,
        Ok(_) => return Err("trailing data after certificate".into()),
        Err(e) => return Err(e.to_string()),
    };
    let spki = cert.public_key();
    let b64 = |b: &[u8]| serde_json::Value::from(b64::encode_url_safe(b));
    let mut jwk = serde_json::Map::new();
    let alg = &spki.algorithm.algorithm;
    if *alg == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = spki
            .algorithm
            .parameters
            .as_ref()
            .and_then(|p| p.as_oid().ok())
            .ok_or("EC key without a named curve")?;
        let (crv, size) = if curve == OID_EC_P256 {
            ("P-256", 32)
        } else if curve == OID_NIST_EC_P384 {
            ("P-384", 48)
        } else if curve == OID_NIST_EC_P521 {
            ("P-521", 66)
        } else {
            return Err(format!("unsupported EC curve {curve}"));
        };
        let point = spki.subject_public_key.data.as_ref();
        match point.split_first() {
            Some((4, xy)) if xy.len() == 2 * size => {
                jwk.insert("kty".into(), "EC".into());
                jwk.insert("crv".into(), crv.into());
                jwk.insert("x".into(), b64(&xy[..size]));
                jwk.insert("y".into(), b64(&xy[size..]));
            }
            _ => return Err("EC point is not an uncompressed point of its curve".into()),
        }
    } else if *alg == OID_PKCS1_RSAENCRYPTION {
        let Ok(x509_parser::public_key::PublicKey::RSA(rsa)) = spki.parsed() else {
            return Err("malformed RSA public key".into());
        };
        jwk.insert("kty".into(), "RSA".into());
        jwk.insert("n".into(), b64(strip_leading_zeros(rsa.modulus)));
        jwk.insert("e".into(), b64(strip_leading_zeros(rsa.exponent)));
    } else if *alg == OID_SIG_ED25519 {
        jwk.insert("kty".into(), "OKP".into());
        jwk.insert("crv".into(), "Ed25519".into());
        jwk.insert("x".into(), b64(spki.subject_public_key.data.as_ref()));
    } else {
        return Err(format!("unsupported public key algorithm {alg}"));
    }
    Ok(jwk)
}

/// The `x5t` (SHA-1) and `x5t#S256` (SHA-256) thumbprints of a JWK, read
/// as go-jose's `JSONWebKey.UnmarshalJSON` reads them: unpadded base64url
/// of the digest, or of its hex (RFC 7517 is ambiguous; go-jose takes
/// both), and of the digest's exact length.
struct Thumbprints {
    sha1: Option<Vec<u8>>,
    sha256: Option<Vec<u8>>,
}

impl Thumbprints {
    fn of(
        key: &serde_json::Map<String, serde_json::Value>,
        index: usize,
    ) -> Result<Self, SpiffeBundleError> {
        let read = |name: &str, size: usize| -> Result<Option<Vec<u8>>, SpiffeBundleError> {
            let bad = |reason: String| SpiffeBundleError::Thumbprint { index, reason };
            let text = match key.get(name) {
                None | Some(serde_json::Value::Null) => return Ok(None),
                Some(serde_json::Value::String(text)) => text,
                Some(_) => return Err(bad(format!("{name} is not a string"))),
            };
            let mut digest = b64::decode_raw_url(text)
                .ok_or_else(|| bad(format!("{name} header has invalid encoding")))?;
            if digest.len() == 2 * size {
                digest = std::str::from_utf8(&digest)
                    .ok()
                    .and_then(hex_decode)
                    .ok_or_else(|| bad(format!("unable to hex decode {name}")))?;
            }
            match digest.len() {
                0 => Ok(None),
                n if n == size => Ok(Some(digest)),
                _ => Err(bad(format!("{name} header is of incorrect size"))),
            }
        };
        Ok(Self {
            sha1: read("x5t", 20)?,
            sha256: read("x5t#S256", 32)?,
        })
    }

    /// Both thumbprints, where given, are digests of `cert` (DER).
    fn check(&self, cert: &[u8], index: usize) -> Result<(), SpiffeBundleError> {
        use sha1::Digest as _;
        let mismatch = |name: &str| SpiffeBundleError::Thumbprint {
            index,
            reason: format!("x5c thumbprint does not match {name} value"),
        };
        if let Some(want) = &self.sha1
            && sha1::Sha1::digest(cert).as_slice() != want.as_slice()
        {
            return Err(mismatch("x5t"));
        }
        if let Some(want) = &self.sha256
            && sha2::Sha256::digest(cert).as_slice() != want.as_slice()
        {
            return Err(mismatch("x5t#S256"));
        }
        Ok(())
    }
}

fn hex_decode(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// True if the key parameters of `entry` are those of the certificate
/// (`expected`, from [`cert_jwk`]); integers compare without leading zeros.
fn jwk_matches(
    entry: &serde_json::Map<String, serde_json::Value>,
    expected: &serde_json::Map<String, serde_json::Value>,
) -> bool {
    let decode = |v: Option<&serde_json::Value>| {
        v.and_then(serde_json::Value::as_str)
            .and_then(b64::decode_url_safe)
    };
    expected.iter().all(|(name, want)| match name.as_str() {
        "kty" | "crv" => entry.get(name) == Some(want),
        _ => match (decode(entry.get(name)), decode(Some(want))) {
            (Some(got), Some(want)) => strip_leading_zeros(&got) == strip_leading_zeros(&want),
            _ => false,
        },
    })
}

fn strip_leading_zeros(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|&x| x != 0)
        .unwrap_or(b.len().saturating_sub(1));
    &b[start..]
}
