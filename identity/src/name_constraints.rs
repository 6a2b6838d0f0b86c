//! URI name constraints (RFC 5280 4.2.1.10) of SVID signing certificates.
//! "X.509 SVID signing certificates MAY apply URI name constraints"
//! (X509-SVID 4.2), and go-spiffe's `x509svid.Verify` (Go's crypto/x509)
//! enforces them, but webpki refuses every chain below a certificate with a
//! URI subtree. So this module reads the name constraints extension, drops
//! the URI subtrees from what webpki sees of a trust anchor, and evaluates
//! them the way crypto/x509 `matchURIConstraint` does: a URI constraint names
//! a host, exactly, or with a leading '.' any of its subdomains.

use x509_parser::prelude::X509Certificate;

/// DER tags of the parts of a NameConstraints extension.
const TAG_SEQUENCE: u8 = 0x30;
const TAG_PERMITTED: u8 = 0xa0;
const TAG_EXCLUDED: u8 = 0xa1;
/// GeneralName uniformResourceIdentifier, `[6] IMPLICIT IA5String`.
const TAG_URI: u8 = 0x86;

/// The name constraints of one signing certificate, as far as SVIDs care.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub(crate) struct NameConstraints {
    /// URI subtrees of permittedSubtrees: a URI SAN below must match one.
    pub(crate) permitted_uris: Vec<String>,
    /// URI subtrees of excludedSubtrees: a URI SAN below must match none.
    pub(crate) excluded_uris: Vec<String>,
    /// Subtrees of another name form (DNS, IP, directory name, e-mail...):
    /// webpki evaluates them where it sees the extension; elsewhere they
    /// cannot be evaluated and the chain is refused.
    pub(crate) other_forms: bool,
}

impl NameConstraints {
    /// The name constraints of `cert`, if it carries the extension.
    pub(crate) fn of(cert: &X509Certificate<'_>) -> Result<Option<Self>, String> {
        let mut found = None;
        for ext in cert.extensions() {
            if ext.oid == x509_parser::oid_registry::OID_X509_EXT_NAME_CONSTRAINTS {
                if found.is_some() {
                    return Err("the name constraints extension appears twice".into());
                }
                found = Some(ext.value);
            }
        }
        let Some(value) = found else {
            return Ok(None);
        };
        let (tag, contents, rest) = tlv(value).ok_or("name constraints: bad DER")?;
        if tag != TAG_SEQUENCE || !rest.is_empty() {
            return Err("name constraints: not a DER SEQUENCE".into());
        }
        Self::from_contents(contents).map(Some)
    }

    /// Parses the contents of the NameConstraints SEQUENCE (what a webpki
    /// trust anchor keeps).
    pub(crate) fn from_contents(contents: &[u8]) -> Result<Self, String> {
        let mut out = Self::default();
        for_each_subtree(contents, |excluded, base_tag, base, _whole| {
            if base_tag != TAG_URI {
                out.other_forms = true;
                return Ok(());
            }
            let uri = std::str::from_utf8(base)
                .ok()
                .filter(|s| s.is_ascii())
                .ok_or("name constraints: a URI subtree is not IA5String")?;
            if excluded {
                out.excluded_uris.push(uri.to_owned());
            } else {
                out.permitted_uris.push(uri.to_owned());
            }
            Ok(())
        })?;
        Ok(out)
    }

    /// True when a URI subtree is present (webpki would refuse the chain).
    pub(crate) fn has_uri(&self) -> bool {
        !self.permitted_uris.is_empty() || !self.excluded_uris.is_empty()
    }

    /// Whether the certificate may vouch for a certificate below it that
    /// carries the URI SAN `uri` (crypto/x509 `checkNameConstraints`: the
    /// excluded subtrees first, then at least one permitted one, if any).
    /// The refusal says why.
    pub(crate) fn check_uri(&self, uri: &str) -> Result<(), String> {
        for constraint in &self.excluded_uris {
            if match_uri_constraint(uri, constraint)? {
                return Err(format!(
                    "URI {uri:?} is excluded by constraint {constraint:?}"
                ));
            }
        }
        if self.permitted_uris.is_empty() {
            return Ok(());
        }
        for constraint in &self.permitted_uris {
            if match_uri_constraint(uri, constraint)? {
                return Ok(());
            }
        }
        Err(format!(
            "URI {uri:?} is not permitted by any constraint (permitted: {})",
            self.permitted_uris
                .iter()
                .map(|c| format!("{c:?}"))
                .collect::<Vec<_>>()
                .join(", ")
        ))
    }
}

/// The contents of a NameConstraints SEQUENCE without its URI subtrees, or
/// None when nothing is left: what webpki must see of a trust anchor whose
/// URI constraints Palisade evaluates itself.
pub(crate) fn without_uri_subtrees(contents: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut permitted = Vec::new();
    let mut excluded = Vec::new();
    for_each_subtree(contents, |is_excluded, base_tag, _base, whole| {
        if base_tag != TAG_URI {
            let out = if is_excluded {
                &mut excluded
            } else {
                &mut permitted
            };
            out.extend_from_slice(whole);
        }
        Ok(())
    })?;
    let mut out = Vec::new();
    if !permitted.is_empty() {
        push_tlv(&mut out, TAG_PERMITTED, &permitted);
    }
    if !excluded.is_empty() {
        push_tlv(&mut out, TAG_EXCLUDED, &excluded);
    }
    Ok((!out.is_empty()).then_some(out))
}

/// Calls `f(excluded, base_tag, base_contents, subtree_der)` for each
/// GeneralSubtree of the NameConstraints contents. A subtree with a
/// minimum or maximum is refused: "the minimum MUST be zero, and maximum
/// MUST be absent" (RFC 5280 4.2.1.10), and DER omits a zero minimum.
fn for_each_subtree(
    contents: &[u8],
    mut f: impl FnMut(bool, u8, &[u8], &[u8]) -> Result<(), String>,
) -> Result<(), String> {
    let mut rest = contents;
    let mut last_tag = 0;
    while !rest.is_empty() {
        let (tag, subtrees, after) = tlv(rest).ok_or("name constraints: bad DER")?;
        if !(tag == TAG_PERMITTED || tag == TAG_EXCLUDED) || tag <= last_tag {
            return Err(format!(
                "name constraints: unexpected element (tag {tag:#04x})"
            ));
        }
        last_tag = tag;
        let mut list = subtrees;
        while !list.is_empty() {
            let (st_tag, subtree, next) = tlv(list).ok_or("name constraints: bad DER")?;
            if st_tag != TAG_SEQUENCE {
                return Err("name constraints: a GeneralSubtree is not a SEQUENCE".into());
            }
            let (base_tag, base, tail) = tlv(subtree).ok_or("name constraints: bad DER")?;
            if !tail.is_empty() {
                return Err(
                    "name constraints: a subtree sets minimum or maximum, which RFC 5280 forbids"
                        .into(),
                );
            }
            f(
                tag == TAG_EXCLUDED,
                base_tag,
                base,
                &list[..list.len() - next.len()],
            )?;
            list = next;
        }
        rest = after;
    }
    Ok(())
}

/// crypto/x509 `matchURIConstraint`: a URI "that does not include an
/// authority component with a host name specified as a fully qualified
/// domain name ... the application MUST reject" (RFC 5280 4.2.1.10).
pub(crate) fn match_uri_constraint(uri: &str, constraint: &str) -> Result<bool, String> {
    let authority = uri
        .split_once("://")
        .map(|(_, rest)| rest.split(['/', '?', '#']).next().unwrap_or(""))
        .unwrap_or("");
    let mut host = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    if host.is_empty() {
        return Err(format!(
            "URI with empty host ({uri:?}) cannot be matched against constraints"
        ));
    }
    if host.contains(':') && !host.ends_with(']') {
        match host.rsplit_once(':') {
            Some((h, _port)) if !h.contains(':') => host = h,
            _ => return Err(format!("URI {uri:?}: too many colons in its host")),
        }
    }
    if (host.starts_with('[') && host.ends_with(']')) || host.parse::<std::net::IpAddr>().is_ok() {
        return Err(format!(
            "URI with IP ({uri:?}) cannot be matched against constraints"
        ));
    }
    match_domain_constraint(host, constraint)
}

/// crypto/x509 `matchDomainConstraint`: an empty constraint matches
/// everything; a leading '.' demands at least one more label.
fn match_domain_constraint(domain: &str, constraint: &str) -> Result<bool, String> {
    if constraint.is_empty() {
        return Ok(true);
    }
    let domain_labels =
        reversed_labels(domain).ok_or_else(|| format!("cannot parse domain {domain:?}"))?;
    let (must_have_subdomains, constraint) = match constraint.strip_prefix('.') {
        Some(rest) => (true, rest),
        None => (false, constraint),
    };
    let constraint_labels = reversed_labels(constraint)
        .ok_or_else(|| format!("cannot parse URI constraint {constraint:?}"))?;
    if domain_labels.len() < constraint_labels.len()
        || (must_have_subdomains && domain_labels.len() == constraint_labels.len())
    {
        return Ok(false);
    }
    Ok(constraint_labels
        .iter()
        .zip(&domain_labels)
        .all(|(c, d)| c.eq_ignore_ascii_case(d)))
}

/// crypto/x509 `domainToReverseLabels`: no empty label (so no trailing
/// dot), printable ASCII only.
fn reversed_labels(domain: &str) -> Option<Vec<&str>> {
    let labels: Vec<&str> = domain.rsplit('.').collect();
    labels
        .iter()
        .all(|l| !l.is_empty() && l.bytes().all(|c| (33..=126).contains(&c)))
        .then_some(labels)
}

/// One DER element: (tag, contents, rest). Single-byte tags and lengths up
/// to four bytes, which is all a certificate holds.
pub(crate) fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

fn push_tlv(out: &mut Vec<u8>, tag: u8, contents: &[u8]) {
    out.push(tag);
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(contents);
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Go crypto/x509 name_constraints_test.go's URI cases, and the domain
    /// rules of matchDomainConstraint.
    #[test]
    fn uri_constraint_matching() {
        let cases: &[(&str, &str, Result<bool, ()>)] = &[
            ("spiffe://domain1.test/a", "domain1.test", Ok(true)),
            ("spiffe://DOMAIN1.test/a", "domain1.TEST", Ok(true)),
            ("spiffe://sub.domain1.test/a", "domain1.test", Ok(true)),
            ("spiffe://domain1.test/a", ".domain1.test", Ok(false)),
            ("spiffe://a.example.org/w", ".example.org", Ok(true)),
            ("spiffe://example.org/w", ".example.org", Ok(false)),
            ("spiffe://badexample.org/w", "example.org", Ok(false)),
            ("spiffe://other.test/w", "domain1.test", Ok(false)),
            ("spiffe://anything.test/w", "", Ok(true)),
            ("http://foo.com:8080/x", "foo.com", Ok(true)),
            ("http://user@foo.com/x", "foo.com", Ok(true)),
            ("urn:example:thing", "example.org", Err(())),
            ("http://1.2.3.4/", "1.2.3.4", Err(())),
            ("http://[2001:db8::1]/", "example.org", Err(())),
            ("spiffe://ok.test/w", "bad..test", Err(())),
        ];
        for (uri, constraint, want) in cases {
            let got = match_uri_constraint(uri, constraint).map_err(|_| ());
            assert_eq!(&got, want, "{uri} against {constraint:?}");
        }
    }

    #[test]
    fn strips_only_uri_subtrees() {
        // permitted: URI .example.org, DNS example.org; excluded: URI bad.test
        let mut permitted = Vec::new();
        let mut st = Vec::new();
        push_tlv(&mut st, TAG_URI, b".example.org");
        push_tlv(&mut permitted, TAG_SEQUENCE, &st);
        let mut dns = Vec::new();
        push_tlv(&mut dns, 0x82, b"example.org");
        let mut dns_st = Vec::new();
        push_tlv(&mut dns_st, TAG_SEQUENCE, &dns);
        permitted.extend_from_slice(&dns_st);
        let mut excluded = Vec::new();
        let mut st = Vec::new();
        push_tlv(&mut st, TAG_URI, b"bad.test");
        push_tlv(&mut excluded, TAG_SEQUENCE, &st);
        let mut contents = Vec::new();
        push_tlv(&mut contents, TAG_PERMITTED, &permitted);
        push_tlv(&mut contents, TAG_EXCLUDED, &excluded);

        let nc = NameConstraints::from_contents(&contents).unwrap();
        assert_eq!(nc.permitted_uris, vec![".example.org"]);
        assert_eq!(nc.excluded_uris, vec!["bad.test"]);
        assert!(nc.other_forms);

        let stripped = without_uri_subtrees(&contents).unwrap().unwrap();
        let mut want = Vec::new();
        push_tlv(&mut want, TAG_PERMITTED, &dns_st);
        assert_eq!(stripped, want);
        let only_uri = &contents[..2 + permitted.len() - dns_st.len()];
        let mut only = Vec::new();
        push_tlv(&mut only, TAG_PERMITTED, &only_uri[2..]);
        assert_eq!(without_uri_subtrees(&only).unwrap(), None);
    }
}
