//! The `x-forwarded-client-cert` (XFCC) header the app receives, as Istio's
//! sidecars set it (Envoy's `forward_client_cert_details: SANITIZE_SET`
//! with the subject, URI and DNS of the current client certificate): any
//! XFCC the caller sent is dropped, and on an mTLS connection one element
//! names the sidecar (`By`, our SPIFFE ID), the client certificate's
//! SHA-256 (`Hash`), its subject in RFC 2253 form (`Subject`, always
//! quoted), its URI SAN (`URI`, the peer's SPIFFE ID) and its DNS SANs.
//! Built once per connection; each request clones it.
use http::{HeaderName, HeaderValue};
use sha2::{Digest, Sha256};
use x509_parser::prelude::{FromDer, GeneralName, X509Certificate};

/// The header name.
pub static XFCC: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// The XFCC element for a peer whose leaf certificate is `peer_leaf` (DER),
/// received by the sidecar whose SPIFFE ID is `own_id`. `None` if the
/// certificate does not parse (never the case after a verified handshake).
pub fn element(own_id: &str, peer_leaf: &[u8]) -> Option<HeaderValue> {
    let (_, cert) = X509Certificate::from_der(peer_leaf).ok()?;
    let mut out = format!(
        "By={};Hash={}",
        value(own_id),
        hex::encode(Sha256::digest(peer_leaf))
    );
    out.push_str(";Subject=\"");
    out.push_str(&rfc2253(cert.subject()).replace('"', "\\\""));
    out.push('"');
    let sans = cert
        .subject_alternative_name()
        .ok()
        .flatten()
        .map(|ext| ext.value.general_names.clone())
        .unwrap_or_default();
    for name in &sans {
        if let GeneralName::URI(uri) = name {
            out.push_str(";URI=");
            out.push_str(&value(uri));
        }
    }
    for name in &sans {
        if let GeneralName::DNSName(dns) = name {
            out.push_str(";DNS=");
            out.push_str(&value(dns));
        }
    }
    HeaderValue::from_str(&out).ok()
}

/// A value as XFCC writes it: double-quoted (with `"` escaped) when it
/// holds `,`, `;` or `=`. A byte that is not visible ASCII (a control
/// character, a space or UTF-8; a verified SPIFFE ID has none, a DNS SAN
/// might) is percent-encoded, as a URI would carry it, so the header
/// stays visible ASCII.
fn value(v: &str) -> String {
    let v: std::borrow::Cow<'_, str> = if v.bytes().all(|b| b.is_ascii_graphic()) {
        v.into()
    } else {
        v.bytes()
            .map(|b| {
                if b.is_ascii_graphic() {
                    char::from(b).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect::<String>()
            .into()
    };
    if v.contains([',', ';', '=', '"']) {
        format!("\"{}\"", v.replace('"', "\\\""))
    } else {
        v.into_owned()
    }
}

/// A distinguished name in RFC 2253 form, as OpenSSL's `XN_FLAG_RFC2253`
/// prints it for Envoy: the last RDN first, RDNs joined by `,`, the
/// attributes of one RDN by `+`, short names for the usual attribute types
/// and the dotted OID otherwise, special characters backslash-escaped and
/// values that are not strings as `#` and their DER in hex.
fn rfc2253(name: &x509_parser::x509::X509Name<'_>) -> String {
    let rdns: Vec<String> = name
        .iter()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let oid = attr.attr_type().to_id_string();
                    let key = short_name(&oid).map_or(oid.clone(), str::to_string);
                    let val = match attr.as_str() {
                        Ok(s) => escape(s),
                        Err(_) => format!("#{}", hex::encode(attr.attr_value().data)),
                    };
                    format!("{key}={val}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

fn short_name(oid: &str) -> Option<&'static str> {
    Some(match oid {
        "2.5.4.3" => "CN",
        "2.5.4.6" => "C",
        "2.5.4.7" => "L",
        "2.5.4.8" => "ST",
        "2.5.4.9" => "street",
        "2.5.4.10" => "O",
        "2.5.4.11" => "OU",
        "0.9.2342.19200300.100.1.25" => "DC",
        "0.9.2342.19200300.100.1.1" => "UID",
        _ => return None,
    })
}

/// RFC 2253 section 2.4 escaping, with OpenSSL's `ASN1_STRFLGS_RFC2253`
/// additions that Envoy's subject gets: control characters and every byte
/// of a non-ASCII character's UTF-8 as `\XX` (uppercase hex), so the
/// header stays visible ASCII whatever a certificate holds.
fn escape(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    let last = v.chars().count().saturating_sub(1);
    for (i, c) in v.chars().enumerate() {
        if c.is_ascii_control() || !c.is_ascii() {
            let mut utf8 = [0u8; 4];
            for b in c.encode_utf8(&mut utf8).bytes() {
                out.push_str(&format!("\\{b:02X}"));
            }
            continue;
        }
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    fn cert(dn: &[(DnType, &str)], sans: Vec<SanType>) -> Vec<u8> {
        let mut params = CertificateParams::default();
        let mut name = DistinguishedName::new();
        for (k, v) in dn {
            name.push(k.clone(), *v);
        }
        params.distinguished_name = name;
        params.subject_alt_names = sans;
        let key = KeyPair::generate().unwrap();
        params.self_signed(&key).unwrap().der().to_vec()
    }

    #[test]
    fn an_svid_gives_by_hash_subject_and_uri() {
        let der = cert(
            &[(DnType::OrganizationName, "Palisade")],
            vec![SanType::URI(
                "spiffe://cluster.local/ns/a/sa/client".try_into().unwrap(),
            )],
        );
        let v = element("spiffe://cluster.local/ns/b/sa/server", &der).unwrap();
        let want = format!(
            "By=spiffe://cluster.local/ns/b/sa/server;Hash={};Subject=\"O=Palisade\";URI=spiffe://cluster.local/ns/a/sa/client",
            hex::encode(Sha256::digest(&der))
        );
        assert_eq!(v.to_str().unwrap(), want);
    }

    #[test]
    fn subjects_are_in_rfc2253_order_and_escaping_and_dns_sans_follow() {
        let der = cert(
            &[
                (DnType::CountryName, "US"),
                (DnType::OrganizationName, "Acme, Inc."),
                (DnType::CommonName, "#test \"client\" "),
            ],
            vec![
                SanType::DnsName("a.example.com".try_into().unwrap()),
                SanType::DnsName("b.example.com".try_into().unwrap()),
            ],
        );
        let v = element("spiffe://td/x", &der).unwrap();
        let s = v.to_str().unwrap();
        // Last RDN first; `,` `"` escaped, a leading `#` and trailing space
        // too; the subject's own quotes escaped again for XFCC.
        assert!(
            s.contains(r#";Subject="CN=\#test \\"client\\"\ ,O=Acme\, Inc.,C=US";"#),
            "{s}"
        );
        assert!(s.ends_with(";DNS=a.example.com;DNS=b.example.com"), "{s}");
        assert!(!s.contains("URI="), "{s}");
    }

    #[test]
    fn control_and_non_ascii_characters_are_hex_escaped_as_openssl_does() {
        let der = cert(
            &[
                (DnType::CommonName, "caf\u{e9}\tx"),
                (DnType::OrganizationName, "\u{1F600}"),
            ],
            vec![SanType::URI("spiffe://td/y".try_into().unwrap())],
        );
        let v = element("spiffe://td/x", &der).unwrap();
        let s = v.to_str().unwrap();
        assert!(
            // As `openssl x509 -noout -subject -nameopt RFC2253` prints it.
            s.contains(r#";Subject="O=\F0\9F\98\80,CN=caf\C3\A9\09x";"#),
            "{s}"
        );
    }

    #[test]
    fn sans_that_are_not_visible_ascii_are_percent_encoded() {
        let der = cert(
            &[],
            vec![
                SanType::URI("spiffe://td/y".try_into().unwrap()),
                SanType::DnsName("a b.example".try_into().unwrap()),
            ],
        );
        let v = element("spiffe://td/x", &der).unwrap();
        let s = v.to_str().unwrap();
        assert!(s.ends_with(";URI=spiffe://td/y;DNS=a%20b.example"), "{s}");
        assert_eq!(value("x\u{f3}\ty"), "x%C3%B3%09y");
        assert_eq!(value("a=b c"), "\"a=b%20c\"");
    }

    #[test]
    fn an_empty_subject_is_an_empty_quoted_string() {
        let der = cert(&[], vec![SanType::URI("spiffe://td/y".try_into().unwrap())]);
        let v = element("spiffe://td/x", &der).unwrap();
        assert!(
            v.to_str()
                .unwrap()
                .contains(";Subject=\"\";URI=spiffe://td/y")
        );
    }

    #[test]
    fn garbage_is_no_element() {
        assert!(element("spiffe://td/x", b"not a certificate").is_none());
    }

    proptest::proptest! {
        /// Whatever a peer's certificate holds (here: arbitrary bytes, and
        /// a real certificate with bytes flipped), building the header
        /// never panics, and what comes out is a valid header value.
        #[test]
        fn arbitrary_certificates_never_panic(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..2048),
            flips in proptest::collection::vec((0usize..4096, proptest::prelude::any::<u8>()), 0..8),
        ) {
            let _ = element("spiffe://td/x", &bytes);
            let mut der = cert(
                &[(DnType::CommonName, "a\"b,c"), (DnType::OrganizationName, "#x ")],
                vec![SanType::URI("spiffe://td/y".try_into().unwrap())],
            );
            for (at, v) in flips {
                let n = der.len();
                der[at % n] ^= v;
            }
            if let Some(v) = element("spiffe://td/x", &der) {
                proptest::prop_assert!(v.to_str().is_ok(), "{:?}", v);
            }
        }
    }
}
