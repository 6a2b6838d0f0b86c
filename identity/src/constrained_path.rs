//! Path validation through an intermediate that carries URI name
//! constraints (X509-SVID 4.2), which webpki refuses outright. The chain is
//! cut at that intermediate X:
//!
//! - below X, webpki validates the leaf and the intermediates under X with X
//!   as the trust anchor, X's URI subtrees left out (its other name
//!   constraints, the signatures, validity windows, basic constraints,
//!   EKU and name constraints of the certificates below stay webpki's);
//! - from X up to a root of the bundle, each certificate is checked here as
//!   RFC 5280 6.1 and crypto/x509 `isValid` do: webpki's certificate parser
//!   (unknown critical extensions refused), the issuer's signature with the
//!   provider's algorithms, the subject/issuer names, the validity window,
//!   the X509-SVID signing-certificate rules, pathLenConstraint, EKU, and
//!   URI name constraints against every URI SAN below. Name constraints of
//!   other forms above X cannot be evaluated here: the chain is refused.

use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, UnixTime};
use x509_parser::prelude::X509Certificate;

use crate::bundle::TrustBundle;
use crate::name_constraints::{NameConstraints, tlv, without_uri_subtrees};
use crate::verify::{
    PeerRole, SvidError, check_root_limits, check_signing_cert, check_uri_constraints,
    map_path_error, parse, uri_sans_of_path,
};

/// Most signatures one verification checks (crypto/x509's
/// `maxChainSignatureChecks`).
const MAX_SIGNATURE_CHECKS: usize = 100;

/// Verifies `leaf` to a root of `bundle` through one of the `intermediates`
/// that carries URI name constraints; None when none of them does.
pub(crate) fn verify_through_uri_constrained(
    bundle: &TrustBundle,
    leaf: &CertificateDer<'_>,
    intermediates: &[CertificateDer<'_>],
    now: UnixTime,
    role: PeerRole,
    provider: &CryptoProvider,
) -> Option<Result<(), SvidError>> {
    let constrained: Vec<usize> = intermediates
        .iter()
        .enumerate()
        .filter(|(_, der)| {
            parse(der)
                .ok()
                .and_then(|c| NameConstraints::of(&c).ok().flatten())
                .is_some_and(|nc| nc.has_uri())
        })
        .map(|(i, _)| i)
        .collect();
    if constrained.is_empty() {
        return None;
    }
    let walk = Walk {
        bundle,
        intermediates,
        now,
        role,
        provider,
        signature_checks: std::cell::Cell::new(0),
    };
    let mut lower_refusal = None;
    let mut upper_refusal = None;
    for x in constrained {
        match walk.through(x, leaf) {
            Ok(()) => return Some(Ok(())),
            Err(Refusal::Below(e)) => {
                lower_refusal.get_or_insert(e);
            }
            Err(Refusal::Above(e)) => {
                upper_refusal.get_or_insert(e);
            }
        }
    }
    // A refusal above the constrained intermediate says more than webpki's
    // refusal of a path it could not build below it.
    upper_refusal.or(lower_refusal).map(Err)
}

/// Where a cut at one constrained intermediate failed.
enum Refusal {
    Below(SvidError),
    Above(SvidError),
}

struct Walk<'a> {
    bundle: &'a TrustBundle,
    intermediates: &'a [CertificateDer<'a>],
    now: UnixTime,
    role: PeerRole,
    provider: &'a CryptoProvider,
    signature_checks: std::cell::Cell<usize>,
}

impl Walk<'_> {
    /// The chain cut at intermediate `x`.
    fn through(&self, x: usize, leaf: &CertificateDer<'_>) -> Result<(), Refusal> {
        let x_der = &self.intermediates[x];
        let below = self.below(x_der, leaf).map_err(Refusal::Below)?;
        // The path below X, leaf first, and which supplied certificates it used.
        let mut used = vec![x];
        for cert in &below[1..] {
            if let Some(i) = self.intermediates.iter().position(|c| c == cert) {
                used.push(i);
            }
        }
        let names = uri_sans_of_path(&below).map_err(Refusal::Above)?;
        self.climb(x_der, true, below.len() - 1, &names, &mut used)
            .map_err(Refusal::Above)
    }

    /// webpki's path from `leaf` up to X as the trust anchor (X's URI
    /// subtrees left out): the leaf, then the intermediates below X.
    fn below(
        &self,
        x_der: &CertificateDer<'_>,
        leaf: &CertificateDer<'_>,
    ) -> Result<Vec<CertificateDer<'static>>, SvidError> {
        let malformed = |e: webpki::Error| SvidError::Malformed(e.to_string());
        let mut anchor = webpki::anchor_from_trusted_cert(x_der).map_err(malformed)?;
        if let Some(nc) = &anchor.name_constraints {
            anchor.name_constraints = without_uri_subtrees(nc.as_ref())
                .map_err(|detail| SvidError::NameConstraintUnsupported {
                    subject: subject_of(x_der),
                    detail,
                })?
                .map(Into::into);
        }
        let others: Vec<CertificateDer<'_>> = self
            .intermediates
            .iter()
            .filter(|c| *c != x_der)
            .cloned()
            .collect();
        let ee = webpki::EndEntityCert::try_from(leaf).map_err(malformed)?;
        let usage = match self.role {
            PeerRole::Client => webpki::KeyUsage::client_auth(),
            PeerRole::Server => webpki::KeyUsage::server_auth(),
        };
        let anchors = [anchor];
        let path = ee
            .verify_for_usage(
                self.provider.signature_verification_algorithms.all,
                &anchors,
                &others,
                self.now,
                usage,
                None,
                None,
            )
            .map_err(|e| map_path_error(e, self.now, self.role))?;
        let mut certs = vec![leaf.clone().into_owned()];
        for cert in path.intermediate_certificates() {
            check_signing_cert(&cert.der())?;
            certs.push(cert.der().into_owned());
        }
        Ok(certs)
    }

    /// Checks `der` (with `below` intermediates under it and `names` the URI
    /// SANs of the certificates under it), then finds its issuer: a root of
    /// the bundle, or another supplied intermediate, climbed in turn.
    fn climb(
        &self,
        der: &CertificateDer<'_>,
        is_cut: bool,
        below: usize,
        names: &[String],
        used: &mut Vec<usize>,
    ) -> Result<(), SvidError> {
        let cert = parse(der)?;
        let subject = cert.subject().to_string();
        self.check_signer(der, &cert, &subject, is_cut, below, names)?;
        let mut names_up = names.to_vec();
        names_up.extend(uri_sans_of_path(std::slice::from_ref(der))?);

        let mut refusal = None;
        for (root, limits) in self.bundle.roots().iter().zip(self.bundle.root_limits()) {
            if !self.issued(&cert, der, root)? {
                continue;
            }
            let verdict =
                check_root_limits(limits, below + 1, self.now).and_then(|()| {
                    match &limits.name_constraints {
                        Some(nc) if nc.other_forms => Err(other_forms_refusal(&limits.subject)),
                        Some(nc) => check_uri_constraints(&limits.subject, nc, &names_up),
                        None => Ok(()),
                    }
                });
            match verdict {
                Ok(()) => return Ok(()),
                Err(e) => {
                    refusal.get_or_insert(e);
                }
            }
        }
        for (i, parent) in self.intermediates.iter().enumerate() {
            if used.contains(&i) || !self.issued(&cert, der, parent)? {
                continue;
            }
            used.push(i);
            match self.climb(parent, false, below + 1, &names_up, used) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    refusal.get_or_insert(e);
                }
            }
            used.pop();
        }
        Err(refusal.unwrap_or(SvidError::UnknownIssuer))
    }

    /// The rules of a signing certificate on the path at or above the cut.
    fn check_signer(
        &self,
        der: &CertificateDer<'_>,
        cert: &X509Certificate<'_>,
        subject: &str,
        is_cut: bool,
        below: usize,
        names: &[String],
    ) -> Result<(), SvidError> {
        // webpki's certificate parser refuses unknown critical extensions.
        webpki::EndEntityCert::try_from(der).map_err(|e| map_path_error(e, self.now, self.role))?;
        check_signing_cert(der)?;
        let now = i64::try_from(self.now.as_secs()).unwrap_or(i64::MAX);
        let now_u = self.now.as_secs();
        let validity = cert.validity();
        if now > validity.not_after.timestamp() {
            return Err(SvidError::Expired {
                not_after: u64::try_from(validity.not_after.timestamp()).unwrap_or(0),
                now: now_u,
            });
        }
        if now < validity.not_before.timestamp() {
            return Err(SvidError::NotYetValid {
                not_before: u64::try_from(validity.not_before.timestamp()).unwrap_or(0),
                now: now_u,
            });
        }
        let bc = cert
            .basic_constraints()
            .map_err(|e| SvidError::Malformed(e.to_string()))?;
        if let Some(max) = bc.and_then(|bc| bc.value.path_len_constraint)
            && usize::try_from(max).is_ok_and(|max| below > max)
        {
            return Err(SvidError::Path(format!(
                "PathLenConstraintViolated: signing certificate {subject} allows {max} intermediate certificate(s) below it (pathLenConstraint), the chain has {below}"
            )));
        }
        if let Some(eku) = cert
            .extended_key_usage()
            .map_err(|e| SvidError::Malformed(e.to_string()))?
        {
            let (ok, purpose) = match self.role {
                PeerRole::Client => (eku.value.client_auth, "clientAuth"),
                PeerRole::Server => (eku.value.server_auth, "serverAuth"),
            };
            if !ok {
                return Err(SvidError::SigningCertMissingEku { purpose });
            }
        }
        let constraints =
            NameConstraints::of(cert).map_err(|detail| SvidError::NameConstraintUnsupported {
                subject: subject.to_owned(),
                detail,
            })?;
        if let Some(nc) = constraints {
            // The cut's other forms were webpki's, on the path below it.
            if nc.other_forms && !is_cut {
                return Err(other_forms_refusal(subject));
            }
            check_uri_constraints(subject, &nc, names)?;
        }
        Ok(())
    }

    /// True when `parent` is named as `cert`'s issuer and its key signed
    /// `cert_der` under one of the provider's algorithms.
    fn issued(
        &self,
        cert: &X509Certificate<'_>,
        cert_der: &CertificateDer<'_>,
        parent: &CertificateDer<'_>,
    ) -> Result<bool, SvidError> {
        let Ok(parent_cert) = parse(parent) else {
            return Ok(false);
        };
        if parent_cert.subject().as_raw() != cert.issuer().as_raw() {
            return Ok(false);
        }
        let checks = self.signature_checks.get() + 1;
        if checks > MAX_SIGNATURE_CHECKS {
            return Err(SvidError::Path(
                "too many signature checks while building the path".into(),
            ));
        }
        self.signature_checks.set(checks);
        let Some((tbs, algorithm, signature)) = signed_parts(cert_der) else {
            return Ok(false);
        };
        let Ok(issuer) = webpki::EndEntityCert::try_from(parent) else {
            return Ok(false);
        };
        Ok(self
            .provider
            .signature_verification_algorithms
            .all
            .iter()
            .filter(|alg| alg.signature_alg_id().as_ref() == algorithm)
            .any(|alg| issuer.verify_signature(*alg, tbs, signature).is_ok()))
    }
}

fn other_forms_refusal(subject: &str) -> SvidError {
    SvidError::NameConstraintUnsupported {
        subject: subject.to_owned(),
        detail: "it constrains name forms other than URI above an intermediate with URI name constraints, which this verifier cannot evaluate there".into(),
    }
}

fn subject_of(der: &CertificateDer<'_>) -> String {
    parse(der).map_or_else(|_| "(unparsable)".into(), |c| c.subject().to_string())
}

/// A certificate's signed TBSCertificate (with its header), the contents of
/// its signatureAlgorithm, and its signature bits.
fn signed_parts(der: &[u8]) -> Option<(&[u8], &[u8], &[u8])> {
    let (0x30, cert, []) = tlv(der)? else {
        return None;
    };
    let (0x30, _, after_tbs) = tlv(cert)? else {
        return None;
    };
    let tbs = &cert[..cert.len() - after_tbs.len()];
    let (0x30, algorithm, after_alg) = tlv(after_tbs)? else {
        return None;
    };
    let (0x03, bits, []) = tlv(after_alg)? else {
        return None;
    };
    let (&0, signature) = bits.split_first()? else {
        return None;
    };
    Some((tbs, algorithm, signature))
}
