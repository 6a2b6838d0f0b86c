//! X509-SVID verification: the SVID leaf rules of X509-SVID sections 4 and 5
//! (x509-parser), then the trust domain check, then path validation to a root
//! of the trust bundle (webpki, RFC 5280) with the signing-certificate rules.
//! Each rejection names its rule.
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use crate::bundle::{RootLimits, TrustBundle};
use crate::federation::FederatedBundles;
use crate::name_constraints::NameConstraints;
use crate::spiffe_id::{SpiffeId, SpiffeIdError};

/// Which side the peer plays: decides the extended key usage webpki demands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerRole {
    /// The peer is a TLS client (needs id-kp-clientAuth when EKU is present).
    Client,
    /// The peer is a TLS server (needs id-kp-serverAuth when EKU is present).
    Server,
}

/// Why a certificate chain is not an acceptable X509-SVID. One variant per rule.
/// Each text starts with go-spiffe's (`svid/x509svid` `Verify`), carries its
/// `Parse` text where that differs, and names the X509-SVID rule.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SvidError {
    #[error("empty certificates chain: the peer presented no certificate")]
    NoCertificate,
    #[error("certificate is not valid DER X.509: {0}")]
    Malformed(String),
    #[error(
        "certificate signed by unknown authority: path validation found no path to a root of the trust bundle"
    )]
    UnknownIssuer,
    #[error(
        "certificate signed by unknown authority: the bundle of trust domain {trust_domain} holds no X.509 root (its SPIFFE bundle has no x509-svid entry), so every X509-SVID of the trust domain is refused"
    )]
    NoRoots { trust_domain: String },
    #[error(
        "certificate signed by unknown authority: path validation found a signature in the chain that does not verify under the trust bundle's keys"
    )]
    BadSignature,
    #[error(
        "certificate has expired: its validity window ended at {not_after} (unix), now is {now}"
    )]
    Expired { not_after: u64, now: u64 },
    #[error(
        "certificate is not yet valid: its validity window starts at {not_before} (unix), now is {now}"
    )]
    NotYetValid { not_before: u64, now: u64 },
    #[error("path validation failed: {0}")]
    Path(String),
    #[error(
        "certificate has expired or is not yet valid: the trust bundle root {subject} expired at {not_after} (unix), now is {now}; an expired root vouches for no SVID (RFC 5280 6.1.3, as crypto/x509 and OpenSSL check)"
    )]
    RootExpired {
        subject: String,
        not_after: i64,
        now: i64,
    },
    #[error(
        "certificate has expired or is not yet valid: the trust bundle root {subject} is valid from {not_before} (unix), now is {now}; a root vouches for no SVID before its validity window starts"
    )]
    RootNotYetValid {
        subject: String,
        not_before: i64,
        now: i64,
    },
    #[error(
        "too many intermediates for path length constraint: the trust bundle root {subject} allows {max_intermediates} intermediate certificate(s) below it (pathLenConstraint), the chain has {intermediates}"
    )]
    RootPathLenExceeded {
        subject: String,
        max_intermediates: u32,
        intermediates: usize,
    },
    #[error("certificate contains no URI SAN: an X509-SVID carries exactly one")]
    NoUriSan,
    #[error(
        "certificate contains more than one URI SAN ({count}): SVIDs containing more than one URI SAN MUST be rejected"
    )]
    MultipleUriSans { count: usize },
    #[error(
        "could not get leaf SPIFFE ID from URI SAN {uri:?}: scheme is missing or invalid (the scheme of a SPIFFE ID is spiffe)"
    )]
    NotSpiffeScheme { uri: String },
    #[error("could not get leaf SPIFFE ID from URI SAN {uri:?}: {source}")]
    InvalidSpiffeId { uri: String, source: SpiffeIdError },
    #[error("leaf SVID SPIFFE ID {id} has no path: a leaf SPIFFE ID MUST have a non-root path")]
    IdWithoutPath { id: String },
    #[error(
        "leaf certificate with CA flag set to true: the leaf certificate must not have CA flag set to true (basic constraints cA MUST be false on a leaf SVID)"
    )]
    LeafIsCa,
    #[error(
        "leaf certificate must have 'digitalSignature' set as key usage: it has no key usage extension, which MUST be set on all SVIDs"
    )]
    NoKeyUsage,
    #[error(
        "leaf certificate with KeyCertSign key usage: the leaf certificate must not have 'keyCertSign' set as key usage (leaf SVIDs MUST NOT set keyCertSign)"
    )]
    LeafKeyCertSign,
    #[error(
        "leaf certificate with KeyCrlSign key usage: the leaf certificate must not have 'cRLSign' set as key usage (leaf SVIDs MUST NOT set cRLSign)"
    )]
    LeafCrlSign,
    #[error(
        "leaf certificate must have 'digitalSignature' set as key usage: leaf SVIDs MUST set digitalSignature"
    )]
    NoDigitalSignature,
    #[error(
        "leaf SVID extended key usage lacks {purpose}: when present, serverAuth and clientAuth MUST be set"
    )]
    MissingEku { purpose: &'static str },
    #[error(
        "signing certificate extended key usage lacks {purpose}: the verifier imposes a signing certificate's EKU on the certificates below it (X509-SVID 4.4)"
    )]
    SigningCertMissingEku { purpose: &'static str },
    #[error(
        "signing certificate must have CA flag set to true: signing certificates MUST set basic constraints cA"
    )]
    SigningCertNotCa,
    #[error(
        "signing certificate must have 'keyCertSign' set as key usage: {subject} does not set it"
    )]
    SigningCertNoKeyCertSign { subject: String },
    #[error(
        "signing certificate SPIFFE ID {id} has a path: the SPIFFE ID of a signing certificate MUST NOT have a path component"
    )]
    SigningCertIdWithPath { id: String },
    #[error(
        "no X.509 bundle found for trust domain: {:?} (peer {id}; the bundle is for {expected})",
        trust_domain_of(.id)
    )]
    TrustDomainMismatch { id: String, expected: String },
    #[error(
        "a root or intermediate certificate is not authorized for this name: the URI name constraints of signing certificate {subject} refuse the chain: {detail} (RFC 5280 4.2.1.10, X509-SVID 4.2)"
    )]
    UriNameConstraint { subject: String, detail: String },
    #[error(
        "cannot evaluate the name constraints of signing certificate {subject}: {detail}; the chain is refused"
    )]
    NameConstraintUnsupported { subject: String, detail: String },
    #[error("peer identity: got {got}, expected {expected}")]
    UnexpectedId { got: String, expected: String },
}

impl SvidError {
    /// A short, stable name of the rule that refused the SVID, for metric
    /// labels (the message says the rest).
    pub fn code(&self) -> &'static str {
        match self {
            SvidError::NoCertificate => "no-certificate",
            SvidError::Malformed(_) => "malformed",
            SvidError::UnknownIssuer | SvidError::NoRoots { .. } => "unknown-issuer",
            SvidError::BadSignature => "bad-signature",
            SvidError::Expired { .. } => "expired",
            SvidError::NotYetValid { .. } => "not-yet-valid",
            SvidError::Path(_) => "path-validation",
            SvidError::RootExpired { .. } | SvidError::RootNotYetValid { .. } => "root-validity",
            SvidError::RootPathLenExceeded { .. } => "root-path-length",
            SvidError::NoUriSan => "no-uri-san",
            SvidError::MultipleUriSans { .. } => "multiple-uri-sans",
            SvidError::NotSpiffeScheme { .. } | SvidError::InvalidSpiffeId { .. } => {
                "invalid-spiffe-id"
            }
            SvidError::IdWithoutPath { .. } => "id-without-path",
            SvidError::LeafIsCa => "leaf-is-ca",
            SvidError::NoKeyUsage
            | SvidError::LeafKeyCertSign
            | SvidError::LeafCrlSign
            | SvidError::NoDigitalSignature => "leaf-key-usage",
            SvidError::MissingEku { .. } | SvidError::SigningCertMissingEku { .. } => {
                "extended-key-usage"
            }
            SvidError::SigningCertNotCa
            | SvidError::SigningCertNoKeyCertSign { .. }
            | SvidError::SigningCertIdWithPath { .. } => "signing-certificate",
            SvidError::UriNameConstraint { .. } | SvidError::NameConstraintUnsupported { .. } => {
                "name-constraints"
            }
            SvidError::TrustDomainMismatch { .. } => "unknown-trust-domain",
            SvidError::UnexpectedId { .. } => "unexpected-identity",
        }
    }

    /// The SVID rule behind a failed handshake, if an SVID rule refused it
    /// (the verifiers of [`crate::tls`] report them this way).
    pub fn from_tls_error(err: &rustls::Error) -> Option<&SvidError> {
        match err {
            rustls::Error::InvalidCertificate(rustls::CertificateError::Other(other)) => {
                other.0.downcast_ref::<SvidError>()
            }
            _ => None,
        }
    }
}

/// The trust domain part of a SPIFFE ID string, for messages.
fn trust_domain_of(id: &str) -> &str {
    let rest = id.strip_prefix("spiffe://").unwrap_or(id);
    rest.split('/').next().unwrap_or(rest)
}

/// Verifies `chain` (leaf first, then any intermediates the peer sent) against
/// `bundle` at time `now`, and returns the peer's SPIFFE ID.
pub fn verify_svid_chain(
    bundle: &TrustBundle,
    chain: &[CertificateDer<'_>],
    now: UnixTime,
    role: PeerRole,
    provider: &CryptoProvider,
) -> Result<SpiffeId, SvidError> {
    let (leaf, intermediates) = chain.split_first().ok_or(SvidError::NoCertificate)?;
    verify_svid(bundle, leaf, intermediates, now, role, provider)
}

/// [`verify_svid_chain`] at the current time with the default provider, for a
/// certificate of either role (the leaf rules demand both EKU purposes anyway).
pub fn verify_svid_chain_now(
    bundle: &TrustBundle,
    chain: &[CertificateDer<'_>],
) -> Result<SpiffeId, SvidError> {
    verify_svid_chain_federated_now(bundle, &FederatedBundles::none(), chain)
}

/// [`verify_svid_chain_now`] with the bundles of federated trust domains.
pub fn verify_svid_chain_federated_now(
    local: &TrustBundle,
    federated: &FederatedBundles,
    chain: &[CertificateDer<'_>],
) -> Result<SpiffeId, SvidError> {
    let provider = crate::provider::default_provider();
    let (leaf, intermediates) = chain.split_first().ok_or(SvidError::NoCertificate)?;
    verify_svid_federated(
        local,
        &[federated],
        leaf,
        intermediates,
        UnixTime::now(),
        PeerRole::Client,
        &provider,
    )
}

/// [`verify_svid_chain`] with the leaf and intermediates apart (rustls' shape).
pub fn verify_svid(
    bundle: &TrustBundle,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    role: PeerRole,
    provider: &CryptoProvider,
) -> Result<SpiffeId, SvidError> {
    verify_svid_federated(bundle, &[], leaf, intermediates, now, role, provider)
}

/// [`verify_svid`] against the local bundle and the bundles of federated
/// trust domains (several sets, looked up in order): the bundle of the peer
/// ID's trust domain is the only one its chain may verify to.
pub fn verify_svid_federated(
    local: &TrustBundle,
    federated: &[&FederatedBundles],
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    role: PeerRole,
    provider: &CryptoProvider,
) -> Result<SpiffeId, SvidError> {
    // 1. Leaf rules (X509-SVID 4 and 5.2).
    let id = check_leaf(leaf)?;

    // 2. Trust domain: the chain must verify to the bundle of the ID's trust
    // domain, so an ID of a trust domain without a bundle fails here, before
    // path validation, and no bundle vouches for another trust domain's IDs
    // (as go-spiffe's x509svid.Verify picks the bundle from its set by the ID).
    let td = id.trust_domain_str();
    let bundle = if local.accepts_trust_domain(td) {
        local
    } else if let Some(bundle) = federated.iter().find_map(|set| set.get(td)) {
        bundle
    } else {
        let mut expected = local.trust_domain().to_string();
        let mut names: Vec<&str> = federated.iter().flat_map(|s| s.trust_domains()).collect();
        if !names.is_empty() {
            names.sort_unstable();
            names.dedup();
            expected.push_str(&format!(" (federated: {})", names.join(", ")));
        }
        return Err(SvidError::TrustDomainMismatch {
            id: id.to_string(),
            expected,
        });
    };

    // 3. Path validation (X509-SVID 5.1: "MUST follow RFC 5280 path validation").
    verify_path_to_bundle(bundle, leaf, intermediates, now, role, provider)?;
    Ok(id)
}

/// Path validation of `leaf` (with the `intermediates` the peer sent) to a
/// root of `bundle` at `now` (X509-SVID 5.1: "MUST follow RFC 5280 path
/// validation"): webpki's checks, the anchoring root's validity window and
/// pathLenConstraint, and the signing-certificate rules for each
/// intermediate. No leaf rule and no trust domain check: for a verifier
/// that checks those its own way (the control plane's client auth).
pub fn verify_path_to_bundle(
    bundle: &TrustBundle,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    role: PeerRole,
    provider: &CryptoProvider,
) -> Result<(), SvidError> {
    // A trust domain whose bundle has no root (it revoked its keys, or does
    // not support X509-SVID) vouches for nothing.
    if bundle.roots().is_empty() {
        return Err(SvidError::NoRoots {
            trust_domain: bundle.trust_domain().to_string(),
        });
    }
    let ee =
        webpki::EndEntityCert::try_from(leaf).map_err(|e| SvidError::Malformed(e.to_string()))?;
    let usage = match role {
        PeerRole::Client => webpki::KeyUsage::client_auth(),
        PeerRole::Server => webpki::KeyUsage::server_auth(),
    };
    // webpki keeps a root's subject, key and name constraints only; the
    // root's own validity window and pathLenConstraint are checked on each
    // candidate path here, so that path building goes on to another root
    // (a reissued one) when one is refused, and the refusal is reported
    // when no root is left.
    let root_refusal = std::cell::RefCell::new(None);
    let check_root = |path: &webpki::VerifiedPath<'_>| {
        let certs: Vec<CertificateDer<'_>> = std::iter::once(path.end_entity().der())
            .chain(path.intermediate_certificates().map(|c| c.der()))
            .collect();
        check_anchoring_root(bundle, path.anchor(), &certs, now).map_err(|refusal| {
            root_refusal.borrow_mut().get_or_insert(refusal);
            webpki::Error::UnknownIssuer
        })
    };
    let path = match ee.verify_for_usage(
        provider.signature_verification_algorithms.all,
        bundle.anchors(),
        intermediates,
        now,
        usage,
        None,
        Some(&check_root),
    ) {
        Ok(path) => path,
        Err(e) => {
            let refusal = root_refusal
                .take()
                .unwrap_or_else(|| map_path_error(e, now, role));
            // webpki refuses any chain through an intermediate with URI
            // name constraints: try those paths the way crypto/x509 does.
            return match crate::constrained_path::verify_through_uri_constrained(
                bundle,
                leaf,
                intermediates,
                now,
                role,
                provider,
            ) {
                Some(result) => result,
                None => Err(refusal),
            };
        }
    };
    // webpki ignores key usage on CA certificates; RFC 5280 6.1.4 (n) and
    // X509-SVID 4.3 do not: each signing certificate of the path (the trust
    // anchor is not one) must set keyCertSign.
    for cert in path.intermediate_certificates() {
        check_signing_cert(&cert.der())?;
    }
    Ok(())
}

/// The rules for the root a path ends at, which webpki does not keep in a
/// trust anchor: the root is within its validity window at `now`, its
/// pathLenConstraint, if any, allows the `intermediates` below it (RFC 5280
/// 6.1: the trust anchor's own constraints; crypto/x509 `isValid` checks
/// both for the root too), and its URI name constraints, if any, permit the
/// URI SANs of the certificates below it (`path`: leaf first). When several
/// roots of `bundle` share the anchor (a root reissued with the same name
/// and key), one that passes is enough; otherwise the first refusal is
/// returned.
fn check_anchoring_root(
    bundle: &TrustBundle,
    anchor: &rustls::pki_types::TrustAnchor<'_>,
    path: &[CertificateDer<'_>],
    now: UnixTime,
) -> Result<(), SvidError> {
    let intermediates = path.len().saturating_sub(1);
    let mut names = None;
    let mut refusal = None;
    for root in bundle.limits_of_anchor(anchor) {
        let mut verdict = check_root_limits(root, intermediates, now);
        if verdict.is_ok()
            && let Some(nc) = root.name_constraints.as_ref().filter(|nc| nc.has_uri())
        {
            if names.is_none() {
                names = Some(uri_sans_of_path(path)?);
            }
            verdict = check_uri_constraints(&root.subject, nc, names.iter().flatten());
        }
        match verdict {
            Ok(()) => return Ok(()),
            Err(e) => {
                refusal.get_or_insert(e);
            }
        }
    }
    // Every anchor comes from the bundle, so a root was found; fail closed
    // anyway if not.
    Err(refusal.unwrap_or(SvidError::UnknownIssuer))
}

/// A root's validity window at `now` and pathLenConstraint over the
/// `intermediates` below it.
pub(crate) fn check_root_limits(
    root: &RootLimits,
    intermediates: usize,
    now: UnixTime,
) -> Result<(), SvidError> {
    let now = i64::try_from(now.as_secs()).unwrap_or(i64::MAX);
    if now > root.not_after_unix {
        return Err(SvidError::RootExpired {
            subject: root.subject.clone(),
            not_after: root.not_after_unix,
            now,
        });
    }
    if now < root.not_before_unix {
        return Err(SvidError::RootNotYetValid {
            subject: root.subject.clone(),
            not_before: root.not_before_unix,
            now,
        });
    }
    match root.max_intermediates {
        Some(max) if usize::try_from(max).is_ok_and(|max| intermediates > max) => {
            Err(SvidError::RootPathLenExceeded {
                subject: root.subject.clone(),
                max_intermediates: max,
                intermediates,
            })
        }
        _ => Ok(()),
    }
}

/// The URI SANs of every certificate of `path`.
pub(crate) fn uri_sans_of_path(path: &[CertificateDer<'_>]) -> Result<Vec<String>, SvidError> {
    let mut names = Vec::new();
    for cert in path {
        names.extend(uri_sans(cert)?);
    }
    Ok(names)
}

/// The URI name constraints of the signing certificate `subject` against
/// the URI SANs of the certificates below it (crypto/x509 checks each).
pub(crate) fn check_uri_constraints<'n>(
    subject: &str,
    constraints: &NameConstraints,
    names: impl IntoIterator<Item = &'n String>,
) -> Result<(), SvidError> {
    for name in names {
        constraints
            .check_uri(name)
            .map_err(|detail| SvidError::UriNameConstraint {
                subject: subject.to_owned(),
                detail,
            })?;
    }
    Ok(())
}

/// True when `signer`'s key signed `cert`: the question a sidecar asks of
/// its own SVID when the control plane names a new signing certificate.
pub fn issued_by(cert: &CertificateDer<'_>, signer: &CertificateDer<'_>) -> bool {
    let (Ok(cert), Ok(signer)) = (parse(cert), parse(signer)) else {
        return false;
    };
    cert.issuer() == signer.subject() && cert.verify_signature(Some(signer.public_key())).is_ok()
}

/// The root of `bundle` that `chain` (leaf first) verifies to now, if any:
/// during a CA rotation, which CA an SVID comes from.
pub fn anchoring_root<'b>(
    bundle: &'b TrustBundle,
    chain: &[CertificateDer<'_>],
) -> Option<&'b CertificateDer<'static>> {
    roots_vouching_for(bundle, chain).next()
}

/// Every root of `bundle` that `chain` (leaf first) verifies to now, each
/// tried alone (a root and its cross-signed successor both vouch).
pub fn roots_vouching_for<'b, 'c>(
    bundle: &'b TrustBundle,
    chain: &'c [CertificateDer<'c>],
) -> impl Iterator<Item = &'b CertificateDer<'static>> + use<'b, 'c> {
    let provider = crate::provider::default_provider();
    let split = chain.split_first();
    bundle.roots().iter().filter(move |root| {
        let Some((leaf, intermediates)) = split else {
            return false;
        };
        TrustBundle::new(bundle.trust_domain().clone(), vec![(*root).clone()]).is_ok_and(|one| {
            verify_svid(
                &one,
                leaf,
                intermediates,
                UnixTime::now(),
                PeerRole::Client,
                &provider,
            )
            .is_ok()
        })
    })
}

/// SHA-256 of a certificate's DER, lowercase hex: how `palisade status` and
/// `palisade ca rotate` name a root or a signing certificate.
pub fn fingerprint(der: &CertificateDer<'_>) -> String {
    use sha2::Digest;
    hex_lower(&sha2::Sha256::digest(der.as_ref()))
}

fn hex_lower(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The X509-SVID rules for a signing certificate (an intermediate of a chain):
/// "Signing certificates MUST set the `cA` field to `true`" (X509-SVID 4.1) and
/// "SVID signing certificates MUST set `keyCertSign`" (X509-SVID 4.3), and a
/// SPIFFE ID, if it carries one, has no path (X509-SVID 3.2).
pub fn check_signing_cert(der: &CertificateDer<'_>) -> Result<(), SvidError> {
    let cert = parse(der)?;
    signing_cert_rules(&cert).map_err(|e| match e {
        NotASigner::NotCa => SvidError::SigningCertNotCa,
        NotASigner::NoKeyCertSign => SvidError::SigningCertNoKeyCertSign {
            subject: cert.subject().to_string(),
        },
        NotASigner::IdWithPath(id) => SvidError::SigningCertIdWithPath { id },
        NotASigner::Malformed(m) => SvidError::Malformed(m),
    })
}

/// Why a certificate may not sign SVIDs.
pub(crate) enum NotASigner {
    /// Basic constraints absent or `cA` false (X509-SVID 4.1).
    NotCa,
    /// Key usage absent or without `keyCertSign` (X509-SVID 4.3: "The key
    /// usage extension MUST be set on all SVIDs").
    NoKeyCertSign,
    /// A `spiffe://` URI SAN with a path (X509-SVID 3.2: "If present, the
    /// SPIFFE ID of a signing certificate MUST NOT have a path component").
    IdWithPath(String),
    Malformed(String),
}

/// The X509-SVID signing-certificate rules on a parsed certificate; shared
/// by chain verification and the CA's own certificates.
pub(crate) fn signing_cert_rules(cert: &X509Certificate<'_>) -> Result<(), NotASigner> {
    let bc = cert
        .basic_constraints()
        .map_err(|e| NotASigner::Malformed(e.to_string()))?;
    if !bc.is_some_and(|bc| bc.value.ca) {
        return Err(NotASigner::NotCa);
    }
    let ku = cert
        .key_usage()
        .map_err(|e| NotASigner::Malformed(e.to_string()))?;
    if !ku.is_some_and(|ku| ku.value.key_cert_sign()) {
        return Err(NotASigner::NoKeyCertSign);
    }
    // "A signing certificate SHOULD itself be an SVID. If present, the SPIFFE
    // ID of a signing certificate MUST NOT have a path component" (X509-SVID
    // 3.2). No SPIFFE ID, or a URI of another scheme, is allowed.
    let sans = cert
        .subject_alternative_name()
        .map_err(|e| NotASigner::Malformed(e.to_string()))?;
    for name in sans.iter().flat_map(|s| s.value.general_names.iter()) {
        if let GeneralName::URI(uri) = name
            && let Ok(id) = SpiffeId::parse(uri)
            && !id.path().is_empty()
        {
            return Err(NotASigner::IdWithPath(id.to_string()));
        }
    }
    Ok(())
}

/// The X509-SVID leaf rules alone (no path validation): returns the SPIFFE ID.
pub fn check_leaf(leaf: &CertificateDer<'_>) -> Result<SpiffeId, SvidError> {
    let cert = parse(leaf)?;
    let id = leaf_id(&cert)?;
    // "the validator MUST ensure that the `CA` field in the basic constraints
    // extension is set to `false`" (X509-SVID 5.2)
    let bc = cert
        .basic_constraints()
        .map_err(|e| SvidError::Malformed(e.to_string()))?;
    if bc.is_some_and(|bc| bc.value.ca) {
        return Err(SvidError::LeafIsCa);
    }
    // "The key usage extension MUST be set on all SVIDs" (X509-SVID 4.3)
    let ku = cert
        .key_usage()
        .map_err(|e| SvidError::Malformed(e.to_string()))?
        .ok_or(SvidError::NoKeyUsage)?
        .value;
    // "... and that `keyCertSign` and `cRLSign` are not set" (X509-SVID 5.2)
    if ku.key_cert_sign() {
        return Err(SvidError::LeafKeyCertSign);
    }
    if ku.crl_sign() {
        return Err(SvidError::LeafCrlSign);
    }
    // "Leaf SVIDs MUST set `digitalSignature`." (X509-SVID 4.3)
    if !ku.digital_signature() {
        return Err(SvidError::NoDigitalSignature);
    }
    // "When included, fields `id-kp-serverAuth` and `id-kp-clientAuth` MUST be
    // set." (X509-SVID 4.4)
    if let Some(eku) = cert
        .extended_key_usage()
        .map_err(|e| SvidError::Malformed(e.to_string()))?
    {
        if !eku.value.server_auth {
            return Err(SvidError::MissingEku {
                purpose: "serverAuth",
            });
        }
        if !eku.value.client_auth {
            return Err(SvidError::MissingEku {
                purpose: "clientAuth",
            });
        }
    }
    Ok(id)
}

/// The SPIFFE ID of a certificate that rustls already verified (our verifiers
/// ran the full rules in the handshake). Enforces the one-URI-SAN rule again.
pub fn spiffe_id_of(der: &CertificateDer<'_>) -> Result<SpiffeId, SvidError> {
    leaf_id(&parse(der)?)
}

/// All URI SANs of a certificate (for CA certificates and bundles).
pub fn uri_sans(der: &[u8]) -> Result<Vec<String>, SvidError> {
    let cert = parse(der)?;
    let sans = cert
        .subject_alternative_name()
        .map_err(|e| SvidError::Malformed(e.to_string()))?;
    Ok(sans
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some((*u).to_owned()),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default())
}

pub(crate) fn parse<'a>(der: &'a [u8]) -> Result<X509Certificate<'a>, SvidError> {
    match X509Certificate::from_der(der) {
        Ok(([], cert)) => Ok(cert),
        Ok(_) => Err(SvidError::Malformed(
            "trailing data after certificate".into(),
        )),
        Err(e) => Err(SvidError::Malformed(e.to_string())),
    }
}

fn leaf_id(cert: &X509Certificate<'_>) -> Result<SpiffeId, SvidError> {
    let sans = cert
        .subject_alternative_name()
        .map_err(|e| SvidError::Malformed(e.to_string()))?;
    let uris: Vec<&str> = sans
        .map(|s| {
            s.value
                .general_names
                .iter()
                .filter_map(|n| match n {
                    GeneralName::URI(u) => Some(*u),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    // "SVIDs containing more than one URI SAN MUST be rejected." (X509-SVID 5.2)
    let uri = match uris.as_slice() {
        [] => return Err(SvidError::NoUriSan),
        [one] => *one,
        many => return Err(SvidError::MultipleUriSans { count: many.len() }),
    };
    // "The validator MUST also ensure that the scheme of the SPIFFE ID is set to
    // `spiffe`" (X509-SVID 5.2)
    if !uri.to_ascii_lowercase().starts_with("spiffe:") {
        return Err(SvidError::NotSpiffeScheme { uri: uri.into() });
    }
    let id = SpiffeId::parse(uri).map_err(|source| SvidError::InvalidSpiffeId {
        uri: uri.into(),
        source,
    })?;
    // "... and MUST ensure that the SPIFFE ID has a non-root path component"
    if id.path().is_empty() {
        return Err(SvidError::IdWithoutPath { id: id.to_string() });
    }
    Ok(id)
}

#[allow(deprecated)] // older webpki variants may still be returned
pub(crate) fn map_path_error(e: webpki::Error, now: UnixTime, role: PeerRole) -> SvidError {
    use webpki::Error as E;
    let now_s = now.as_secs();
    match e {
        E::UnknownIssuer => SvidError::UnknownIssuer,
        E::InvalidSignatureForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKey
        | E::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => SvidError::BadSignature,
        E::CertExpired { not_after, .. } => SvidError::Expired {
            not_after: not_after.as_secs(),
            now: now_s,
        },
        E::CertNotValidYet { not_before, .. } => SvidError::NotYetValid {
            not_before: not_before.as_secs(),
            now: now_s,
        },
        E::CaUsedAsEndEntity => SvidError::LeafIsCa,
        E::EndEntityUsedAsCa => SvidError::SigningCertNotCa,
        // check_leaf has already required both purposes of a leaf EKU, so
        // webpki's EKU failure is a signing certificate's.
        E::RequiredEkuNotFound | E::RequiredEkuNotFoundContext(_) => {
            SvidError::SigningCertMissingEku {
                purpose: match role {
                    PeerRole::Client => "clientAuth",
                    PeerRole::Server => "serverAuth",
                },
            }
        }
        E::BadDer | E::BadDerTime | E::TrailingData(_) => SvidError::Malformed(format!("{e:?}")),
        other => SvidError::Path(format!("{other:?}")),
    }
}
