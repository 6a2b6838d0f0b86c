//! The SPIFFE bundle format (an RFC 7517 JWK Set): "The SPIFFE Trust Domain
//! and Bundle" section 4 and X509-SVID section 6, with the parse errors of
//! go-spiffe `bundle/spiffebundle` (bundle_test.go `testCases`). Documents are
//! built here from our own test CA, in the shape of go-spiffe's testdata.
mod common;

use common::{TD, TestCa, good_leaf, id, td, verify};
use palisade_identity::bundle::is_spiffe_bundle;
use palisade_identity::{BundleError, SpiffeBundle, SpiffeBundleError, TrustBundle};
use serde_json::{Value, json};

fn b64(der: &[u8]) -> String {
    // Standard padded base64 (RFC 7517 4.7 `x5c`), via our PEM encoder.
    palisade_identity::pem::encode("X", der)
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

/// The `x509-svid` JWK our encoder writes for `ca`'s root.
fn x509_entry(ca: &TestCa) -> Value {
    let doc: Value =
        serde_json::from_str(&ca.bundle(TD).to_spiffe_bundle(None, None).unwrap()).unwrap();
    doc["keys"][0].clone()
}

/// A `jwt-svid` JWK (an EC P-256 key with a key ID), as go-spiffe's testdata.
fn jwt_entry() -> Value {
    json!({
        "use": "jwt-svid",
        "kty": "EC",
        "kid": "C6vs25welZOx6WksNYfbMfiw9l96pMnD",
        "crv": "P-256",
        "x": "ngLYQnlfF6GsojUwqtcEE3WgTNG2RUlsGhK73RNEl5k",
        "y": "tKbiDSUSsQ3F1P7wteeHNXIcU-cx6CgSbroeQrQHTLM"
    })
}

fn parse(doc: &Value) -> Result<SpiffeBundle, SpiffeBundleError> {
    SpiffeBundle::parse(&doc.to_string())
}

#[test]
fn writes_one_x509_svid_jwk_per_root_with_exactly_one_x5c_and_no_kid() {
    // "The `use` parameter of each JWK entry MUST be set to `x509-svid`.
    // Additionally, the `kid` parameter of each JWK entry MUST NOT be set." and
    // "MUST contain the `x5c` parameter ... exactly one CA certificate"
    // (X509-SVID 6.1); `kty` MUST be set (Trust Domain and Bundle 4.2.1).
    let old = TestCa::new(TD);
    let new = TestCa::new(TD);
    let bundle = TrustBundle::new(td(TD), vec![old.cert.clone(), new.cert.clone()]).unwrap();
    let doc: Value =
        serde_json::from_str(&bundle.to_spiffe_bundle(Some(2), Some(2_419_200)).unwrap()).unwrap();
    assert_eq!(doc["spiffe_sequence"], 2);
    assert_eq!(doc["spiffe_refresh_hint"], 2_419_200);
    let keys = doc["keys"].as_array().unwrap();
    assert_eq!(keys.len(), 2);
    for (key, root) in keys.iter().zip([&old.cert, &new.cert]) {
        assert_eq!(key["use"], "x509-svid");
        assert_eq!(key["kty"], "EC");
        assert_eq!(key["crv"], "P-256");
        assert!(key.get("kid").is_none(), "{key}");
        assert_eq!(key["x5c"], json!([b64(root)]));
        // RFC 7518 6.2.1.2: x and y are 32 bytes each for P-256, base64url.
        for c in ["x", "y"] {
            let s = key[c].as_str().unwrap();
            assert_eq!(s.len(), 43, "{c}={s}");
            assert!(!s.contains(['+', '/', '=']), "{c}={s}");
        }
    }
    // Without sequence and refresh hint, neither member is written.
    let doc: Value = serde_json::from_str(&bundle.to_spiffe_bundle(None, None).unwrap()).unwrap();
    assert!(doc.get("spiffe_sequence").is_none() && doc.get("spiffe_refresh_hint").is_none());
}

#[test]
fn round_trips_and_verifies_svids_against_the_parsed_roots() {
    let ca = TestCa::new(TD);
    let json = ca.bundle(TD).to_spiffe_bundle(Some(7), Some(300)).unwrap();
    assert!(is_spiffe_bundle(&json));
    assert!(!is_spiffe_bundle(&ca.bundle(TD).to_pem()));
    let parsed = SpiffeBundle::parse(&json).unwrap();
    assert_eq!(parsed.x509_authorities, vec![ca.cert.clone()]);
    assert_eq!(parsed.sequence_number, Some(7));
    assert_eq!(parsed.refresh_hint, Some(300));
    assert_eq!(parsed.to_json().unwrap(), json);
    let (leaf, _) = ca.sign(&good_leaf("spiffe://mesh.test/workload"));
    for bundle in [
        TrustBundle::from_spiffe_bundle(td(TD), &json).unwrap(),
        TrustBundle::from_spiffe_bundle_infer(&json).unwrap(),
    ] {
        assert_eq!(bundle.trust_domain().as_str(), TD);
        assert_eq!(
            verify(&bundle, std::slice::from_ref(&leaf)).unwrap(),
            id("spiffe://mesh.test/workload")
        );
    }
}

#[test]
fn upstream_parse_cases() {
    // go-spiffe spiffebundle bundle_test.go TestParse, case by case.
    let ca = TestCa::new(TD);
    let x509 = x509_entry(&ca);
    // "spiffebundle_valid_1.json": one x509-svid and one jwt-svid entry.
    let b = parse(&json!({ "keys": [x509, jwt_entry()] })).unwrap();
    assert_eq!(b.x509_authorities, vec![ca.cert.clone()]);
    assert_eq!((b.sequence_number, b.refresh_hint), (None, None));
    // "spiffebundle_valid_2.json": refresh hint 60 s, sequence number 1.
    let b = parse(&json!({
        "keys": [x509, jwt_entry()], "spiffe_refresh_hint": 60, "spiffe_sequence": 1
    }))
    .unwrap();
    assert_eq!((b.sequence_number, b.refresh_hint), (Some(1), Some(60)));
    // "spiffebundle_missing_kid.json":
    // "spiffebundle: error adding authority 1 of JWKS: keyID cannot be empty"
    let mut no_kid = jwt_entry();
    no_kid.as_object_mut().unwrap().remove("kid");
    let err = parse(&json!({ "keys": [x509, no_kid] })).unwrap_err();
    assert_eq!(err, SpiffeBundleError::MissingKeyId { index: 1 });
    assert_eq!(
        err.to_string(),
        "error adding authority 1 of JWKS: keyID cannot be empty"
    );
    // "spiffebundle_no_keys.json": "spiffebundle: no authorities found"
    // ("The parameter `keys` MUST be present", Trust Domain and Bundle 4.1.3).
    for doc in [json!({}), json!({ "keys": null, "spiffe_sequence": 1 })] {
        let err = parse(&doc).unwrap_err();
        assert_eq!(err, SpiffeBundleError::NoKeys);
        assert_eq!(err.to_string(), "no authorities found");
    }
    // "spiffebundle_multiple_x509.json": "spiffebundle: expected a single
    // certificate in x509-svid entry 0; got 2"
    let mut two = x509.clone();
    let cert = two["x5c"][0].clone();
    two["x5c"] = json!([cert.clone(), cert]);
    let err = parse(&json!({ "keys": [two, jwt_entry()] })).unwrap_err();
    assert_eq!(err, SpiffeBundleError::X5cCount { index: 0, count: 2 });
    assert_eq!(
        err.to_string(),
        "expected a single certificate in x509-svid entry 0; got 2"
    );
    // TestParse "testdata/does-not-exist.json" (no bytes): "spiffebundle:
    // unable to parse JWKS: unexpected end of JSON input"
    let err = SpiffeBundle::parse("").unwrap_err();
    assert!(err.to_string().starts_with("unable to parse JWKS"), "{err}");
}

#[test]
fn ignores_entries_of_unknown_or_missing_use_and_unknown_key_type() {
    // "Clients encountering unknown `use` values MUST ignore the entire JWK
    // element" (Trust Domain and Bundle 4.2.2); go-spiffe testdata
    // spiffebundle_unrecognized_use.json and spiffebundle_missing_use.json.
    let ca = TestCa::new(TD);
    let x509 = x509_entry(&ca);
    let mut other_use = jwt_entry();
    other_use["use"] = json!("invalid");
    let mut no_use = jwt_entry();
    no_use.as_object_mut().unwrap().remove("use");
    // Case-sensitive ("The values are case sensitive").
    let mut upper = x509.clone();
    upper["use"] = json!("X509-SVID");
    // "Clients encountering an unknown key type MUST ignore the entire JWK
    // element" (4.2.1), and unknown members are not required (4.1).
    let mut unknown_kty = x509.clone();
    unknown_kty["kty"] = json!("XYZ");
    let b = parse(&json!({
        "keys": [other_use, x509, no_use, upper, unknown_kty],
        "spiffe_extension": {"a": 1}
    }))
    .unwrap();
    assert_eq!(b.x509_authorities, vec![ca.cert.clone()]);
}

#[test]
fn a_bundle_without_x509_svid_entries_supports_no_x509_svid() {
    // "If no `x509-svid` JWK entries are present in the bundle, then the trust
    // domain does not support X509-SVID" (X509-SVID 6.2).
    let doc = json!({ "keys": [jwt_entry()] }).to_string();
    assert!(
        SpiffeBundle::parse(&doc)
            .unwrap()
            .x509_authorities
            .is_empty()
    );
    assert!(matches!(
        TrustBundle::from_spiffe_bundle(td(TD), &doc),
        Err(BundleError::Empty)
    ));
    assert!(matches!(
        TrustBundle::from_spiffe_bundle_infer(&doc),
        Err(BundleError::Empty)
    ));
}

#[test]
fn refuses_malformed_x509_svid_entries() {
    let ca = TestCa::new(TD);
    let x509 = x509_entry(&ca);
    // x5c absent or empty: go-spiffe counts 0 certificates.
    for x5c in [None, Some(json!([]))] {
        let mut e = x509.clone();
        match x5c {
            Some(v) => e["x5c"] = v,
            None => {
                e.as_object_mut().unwrap().remove("x5c");
            }
        }
        assert_eq!(
            parse(&json!({ "keys": [e] })).unwrap_err(),
            SpiffeBundleError::X5cCount { index: 0, count: 0 }
        );
    }
    // Not base64 (RFC 7517 4.7: standard base64, not base64url), not DER.
    for bad in [json!("%%%"), json!(b64(b"not a certificate")), json!(12)] {
        let mut e = x509.clone();
        e["x5c"] = json!([bad]);
        assert!(
            matches!(
                parse(&json!({ "keys": [e] })),
                Err(SpiffeBundleError::BadCertificate { index: 0, .. })
            ),
            "{bad}"
        );
    }
    // The JWK's key is not the certificate's (go-jose: "invalid JWK, public
    // keys mismatch").
    let other = x509_entry(&TestCa::new(TD));
    let mut e = x509.clone();
    e["x"] = other["x"].clone();
    assert_eq!(
        parse(&json!({ "keys": [e] })).unwrap_err(),
        SpiffeBundleError::KeyMismatch { index: 0 }
    );
    // Wrong JSON types.
    for doc in [
        json!([]),
        json!({ "keys": {} }),
        json!({ "keys": [1] }),
        json!({ "keys": [], "spiffe_sequence": -1 }),
        json!({ "keys": [], "spiffe_sequence": "1" }),
        json!({ "keys": [], "spiffe_refresh_hint": 1.5 }),
    ] {
        assert!(
            matches!(parse(&doc), Err(SpiffeBundleError::Json(_))),
            "{doc}"
        );
    }
}

#[test]
fn reads_base64_as_go_spiffe_does() {
    // go-spiffe reads x5c with Go's base64.StdEncoding, which skips line
    // breaks (a PEM-style wrapped x5c), and key parameters with go-jose's
    // base64URLDecode, which drops trailing '=' first.
    let ca = TestCa::new(TD);
    let x509 = x509_entry(&ca);
    let mut wrapped = x509.clone();
    let pem_body = palisade_identity::pem::encode("X", ca.cert.as_ref())
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .collect::<Vec<_>>()
        .join("\r\n");
    assert!(pem_body.contains('\n'));
    wrapped["x5c"] = json!([pem_body]);
    let padded = |v: &Value| json!(format!("{}==", v.as_str().unwrap()));
    wrapped["x"] = padded(&x509["x"]);
    wrapped["y"] = padded(&x509["y"]);
    let b = parse(&json!({ "keys": [wrapped] })).unwrap();
    assert_eq!(b.x509_authorities, vec![ca.cert.clone()]);
    // Other whitespace is not skipped.
    let mut spaced = x509.clone();
    spaced["x5c"] = json!([format!(" {}", x509["x5c"][0].as_str().unwrap())]);
    assert!(matches!(
        parse(&json!({ "keys": [spaced] })),
        Err(SpiffeBundleError::BadCertificate { index: 0, .. })
    ));
}

#[test]
fn the_same_root_twice_is_kept_once() {
    // go-spiffe AddX509Authority: "If the authority already exists in the
    // bundle, the contents of the bundle will remain unchanged."
    let ca = TestCa::new(TD);
    let x509 = x509_entry(&ca);
    let b = parse(&json!({ "keys": [x509, x509] })).unwrap();
    assert_eq!(b.x509_authorities.len(), 1);
}

#[test]
fn writes_rsa_roots_with_n_and_e() {
    // RFC 7518 6.3.1: an RSA root has kty RSA, n and e (e = AQAB for 65537);
    // the document parses back to the same root.
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
    let mut params = rcgen::CertificateParams::default();
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![rcgen::KeyUsagePurpose::KeyCertSign];
    params.subject_alt_names = vec![rcgen::SanType::URI(
        format!("spiffe://{TD}").try_into().unwrap(),
    )];
    let root = params.self_signed(&key).unwrap().der().clone();
    let bundle = TrustBundle::new(td(TD), vec![root.clone()]).unwrap();
    let json = bundle.to_spiffe_bundle(None, None).unwrap();
    let doc: Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["keys"][0]["kty"], "RSA");
    assert_eq!(doc["keys"][0]["e"], "AQAB");
    assert!(doc["keys"][0]["n"].as_str().unwrap().len() > 300);
    assert_eq!(
        SpiffeBundle::parse(&json).unwrap().x509_authorities,
        vec![root]
    );
}

#[test]
fn a_root_whose_uri_san_is_no_valid_spiffe_id_names_no_trust_domain() {
    // SPIFFE Trust Domain and Bundle, Appendix A: the example root carries
    // `URI:spiffe://example.com/`, which go-spiffe's parser refuses ("path
    // cannot have a trailing slash"). The trust domain cannot be read from
    // it; the message says to give it, and with it the root is a root.
    let root = TestCa::root_with("example.com", "example.com", |p| {
        p.subject_alt_names = vec![rcgen::SanType::URI(
            "spiffe://example.com/".try_into().unwrap(),
        )];
    });
    let pem = palisade_identity::pem::encode_certs(std::slice::from_ref(&root.cert));
    let err = TrustBundle::from_pem_infer(&pem).unwrap_err();
    assert!(matches!(err, BundleError::BadRootId(_)), "{err:?}");
    let text = err.to_string();
    assert!(
        text.contains("trailing slash") && text.contains("give the trust domain explicitly"),
        "{text}"
    );
    let bundle = TrustBundle::from_pem(td("example.com"), &pem).unwrap();
    let (leaf, _) = root.sign(&good_leaf("spiffe://example.com/workload"));
    assert_eq!(
        verify(&bundle, &[leaf]).unwrap(),
        id("spiffe://example.com/workload")
    );
}

/// go-jose's `JSONWebKey.UnmarshalJSON`, through which go-spiffe parses
/// every key: `x5t` and `x5t#S256` (RFC 7517 4.8, 4.9), where given, are the
/// SHA-1 and SHA-256 digests of the `x5c` certificate, in unpadded base64url,
/// of the digest itself or of its hex.
#[test]
fn x5t_thumbprints_must_be_the_digests_of_the_x5c_certificate() {
    use sha2::Digest as _;
    let ca = TestCa::new(TD);
    let der = ca.cert.as_ref().to_vec();
    let url = |b: &[u8]| {
        use base64::Engine as _;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    };
    let hex = |b: &[u8]| b.iter().map(|x| format!("{x:02x}")).collect::<String>();
    let sha1 = sha1::Sha1::digest(&der).to_vec();
    let sha256 = sha2::Sha256::digest(&der).to_vec();
    let with = |member: &str, value: Value| {
        let mut key = x509_entry(&ca);
        key[member] = value;
        json!({ "keys": [key] })
    };
    // Accepted: the digests, raw or as hex, and an empty value (none given).
    for (member, value) in [
        ("x5t", url(&sha1)),
        ("x5t", url(hex(&sha1).as_bytes())),
        ("x5t#S256", url(&sha256)),
        ("x5t#S256", url(hex(&sha256).as_bytes())),
        ("x5t", String::new()),
    ] {
        let parsed = parse(&with(member, json!(value)));
        assert_eq!(
            parsed.map(|b| b.x509_authorities.len()),
            Ok(1),
            "{member}: {value}"
        );
    }
    // Refused, each with go-jose's reason.
    let other = sha2::Sha256::digest(b"another certificate").to_vec();
    for (member, value, reason) in [
        (
            "x5t",
            url(&other[..20]),
            "x5c thumbprint does not match x5t value",
        ),
        (
            "x5t#S256",
            url(&other),
            "x5c thumbprint does not match x5t#S256 value",
        ),
        ("x5t", url(&sha256), "x5t header is of incorrect size"),
        (
            "x5t#S256",
            url(&sha1),
            "x5t#S256 header is of incorrect size",
        ),
        (
            "x5t",
            format!("{}=", url(&sha1)),
            "x5t header has invalid encoding",
        ),
        (
            "x5t",
            "not base64!".into(),
            "x5t header has invalid encoding",
        ),
        ("x5t", url(&[b'z'; 40]), "unable to hex decode x5t"),
    ] {
        let err = parse(&with(member, json!(value))).unwrap_err();
        assert!(
            matches!(err, SpiffeBundleError::Thumbprint { index: 0, .. }),
            "{member}: {value}: {err:?}"
        );
        assert!(err.to_string().contains(reason), "{err}");
    }
    assert!(matches!(
        parse(&with("x5t", json!(42))).unwrap_err(),
        SpiffeBundleError::Thumbprint { .. }
    ));
    // A jwt-svid key's malformed thumbprint fails the document too (go-jose
    // reads every key before go-spiffe looks at its use).
    let mut jwt = jwt_entry();
    jwt["x5t"] = json!("%%%");
    assert!(matches!(
        parse(&json!({ "keys": [x509_entry(&ca), jwt] })).unwrap_err(),
        SpiffeBundleError::Thumbprint { index: 1, .. }
    ));
}
