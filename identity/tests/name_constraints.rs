//! URI name constraints on SVID signing certificates: "X.509 SVID signing
//! certificates MAY apply URI name constraints" (spiffe/spiffe
//! standards/X509-SVID.md 4.2), evaluated as go-spiffe's `x509svid.Verify`
//! does through Go's crypto/x509 (verify.go `matchURIConstraint`,
//! `matchDomainConstraint`, `checkNameConstraints`): a URI constraint is a
//! host, matched exactly, or with a leading '.' any subdomain of it.
//! Certificates made with rcgen (its custom extension: rcgen has no URI
//! subtree), and with the `openssl` command for interop.
mod common;

use std::process::Command;

use common::{TD, TestCa, good_leaf, verify};
use palisade_identity::{SvidError, TrustBundle, TrustDomain};
use rcgen::{BasicConstraints, CertificateParams, CustomExtension, IsCa, KeyPair};
use rustls::pki_types::CertificateDer;

const ID: &str = "spiffe://mesh.test/ns/prod/sa/api";

/// DER of one element.
fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    if contents.len() < 0x80 {
        out.push(contents.len() as u8);
    } else {
        out.push(0x82);
        out.extend_from_slice(&(contents.len() as u16).to_be_bytes());
    }
    out.extend_from_slice(contents);
    out
}

/// A GeneralName: `uri:x` (tag 6) or `dns:x` (tag 2).
fn general_name(name: &str) -> Vec<u8> {
    match name.split_once(':') {
        Some(("uri", v)) => tlv(0x86, v.as_bytes()),
        Some(("dns", v)) => tlv(0x82, v.as_bytes()),
        _ => panic!("name form of {name}"),
    }
}

/// A critical NameConstraints extension.
fn name_constraints(permitted: &[&str], excluded: &[&str]) -> CustomExtension {
    let subtrees = |names: &[&str]| -> Vec<u8> {
        names
            .iter()
            .flat_map(|n| tlv(0x30, &general_name(n)))
            .collect()
    };
    let mut contents = Vec::new();
    if !permitted.is_empty() {
        contents.extend(tlv(0xa0, &subtrees(permitted)));
    }
    if !excluded.is_empty() {
        contents.extend(tlv(0xa1, &subtrees(excluded)));
    }
    let mut ext = CustomExtension::from_oid_content(&[2, 5, 29, 30], tlv(0x30, &contents));
    ext.set_criticality(true);
    ext
}

fn constrained(permitted: &[&str], excluded: &[&str]) -> impl FnOnce(&mut CertificateParams) {
    let ext = name_constraints(permitted, excluded);
    move |p: &mut CertificateParams| p.custom_extensions.push(ext)
}

fn root_constrained(permitted: &[&str], excluded: &[&str]) -> TestCa {
    TestCa::root_with(TD, "constrained root", constrained(permitted, excluded))
}

/// Leaf `id` directly under a root with the given URI constraints.
fn via_root(id: &str, permitted: &[&str], excluded: &[&str]) -> Result<String, SvidError> {
    let root = root_constrained(permitted, excluded);
    let (leaf, _) = root.sign(&good_leaf(id));
    let bundle = TrustBundle::new(
        TrustDomain::new(&trust_domain(id)).unwrap(),
        vec![root.cert.clone()],
    )
    .unwrap();
    verify(&bundle, &[leaf]).map(|id| id.to_string())
}

/// Leaf `id` under an intermediate with the given URI constraints.
fn via_intermediate(id: &str, permitted: &[&str], excluded: &[&str]) -> Result<String, SvidError> {
    let td = trust_domain(id);
    let root = TestCa::new(&td);
    let int = root.intermediate_with(
        &td,
        "constrained intermediate",
        constrained(permitted, excluded),
    );
    let (leaf, _) = int.sign(&good_leaf(id));
    verify(&root.bundle(&td), &[leaf, int.cert.clone()]).map(|id| id.to_string())
}

fn trust_domain(id: &str) -> String {
    id.trim_start_matches("spiffe://")
        .split('/')
        .next()
        .unwrap()
        .to_owned()
}

fn refusal_text(r: Result<String, SvidError>) -> String {
    match r {
        Ok(id) => panic!("{id} accepted"),
        Err(e @ SvidError::UriNameConstraint { .. }) => e.to_string(),
        Err(e) => panic!("refused for another reason: {e}"),
    }
}

/// (SPIFFE ID, permitted, excluded, accepted?) after crypto/x509's
/// matchURIConstraint: exact host, '.'-prefixed subdomains, excluded wins.
const CASES: &[(&str, &[&str], &[&str], bool)] = &[
    ("spiffe://domain1.test/w", &["uri:domain1.test"], &[], true),
    ("spiffe://domain2.test/w", &["uri:domain1.test"], &[], false),
    ("spiffe://a.example.org/w", &["uri:.example.org"], &[], true),
    ("spiffe://example.org/w", &["uri:.example.org"], &[], false),
    (
        "spiffe://sub.domain1.test/w",
        &["uri:domain1.test"],
        &[],
        true,
    ),
    (
        "spiffe://badexample.org/w",
        &["uri:example.org"],
        &[],
        false,
    ),
    (
        "spiffe://mesh.test/w",
        &["uri:other.test", "uri:mesh.test"],
        &[],
        true,
    ),
    ("spiffe://mesh.test/w", &[], &["uri:mesh.test"], false),
    ("spiffe://mesh.test/w", &[], &["uri:.mesh.test"], true),
    (
        "spiffe://a.mesh.test/w",
        &["uri:mesh.test"],
        &["uri:.mesh.test"],
        false,
    ),
    // A DNS subtree beside: a leaf without DNS SAN is unaffected.
    (
        "spiffe://mesh.test/w",
        &["uri:mesh.test", "dns:example.org"],
        &[],
        true,
    ),
];

/// Verifies an SVID of an ID under a CA with permitted and excluded subtrees.
type VerifyUnder = fn(&str, &[&str], &[&str]) -> Result<String, SvidError>;

/// Every case of [`CASES`] through `verify`.
fn enforce_cases(verify: VerifyUnder) {
    for (id, permitted, excluded, accepted) in CASES {
        let got = verify(id, permitted, excluded);
        assert_eq!(
            got.is_ok(),
            *accepted,
            "{id} {permitted:?} {excluded:?}: {got:?}"
        );
        if !accepted {
            refusal_text(got);
        }
    }
}

#[test]
fn root_uri_name_constraints_are_enforced() {
    enforce_cases(via_root);
}

#[test]
fn intermediate_uri_name_constraints_are_enforced() {
    enforce_cases(via_intermediate);
}

#[test]
fn the_refusal_names_the_constraint_and_the_certificate() {
    let text = refusal_text(via_root(ID, &["uri:other.test"], &[]));
    assert!(text.contains("\"other.test\""), "{text}");
    assert!(text.contains("constrained root"), "{text}");
    assert!(text.contains(ID), "{text}");
    let text = refusal_text(via_intermediate(ID, &[], &["uri:mesh.test"]));
    assert!(
        text.contains("excluded by constraint \"mesh.test\""),
        "{text}"
    );
    assert!(text.contains("constrained intermediate"), "{text}");
}

#[test]
fn two_constrained_intermediates_each_apply() {
    let root = TestCa::new(TD);
    let upper = root.intermediate_with(TD, "upper", |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        constrained(&["uri:.test"], &[])(p);
    });
    let lower = upper.intermediate_with(TD, "lower", constrained(&["uri:mesh.test"], &[]));
    let (leaf, _) = lower.sign(&good_leaf(ID));
    let bundle = root.bundle(TD);
    // Sent in either order.
    let chain = [leaf.clone(), lower.cert.clone(), upper.cert.clone()];
    assert_eq!(verify(&bundle, &chain).unwrap().to_string(), ID);
    let chain = [leaf.clone(), upper.cert.clone(), lower.cert.clone()];
    assert_eq!(verify(&bundle, &chain).unwrap().to_string(), ID);

    // The upper one excludes the trust domain: refused though the lower permits it.
    let upper = root.intermediate_with(TD, "upper", |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
        constrained(&[], &["uri:mesh.test"])(p);
    });
    let lower = upper.intermediate_with(TD, "lower", constrained(&["uri:mesh.test"], &[]));
    let (leaf, _) = lower.sign(&good_leaf(ID));
    let text = refusal_text(
        verify(&bundle, &[leaf, lower.cert.clone(), upper.cert.clone()]).map(|i| i.to_string()),
    );
    assert!(text.contains("upper"), "{text}");
}

/// Above the constrained intermediate, path validation still holds every
/// rule: validity, pathLenConstraint, the issuer's signature, the signing
/// certificate rules, and constraints it cannot evaluate refuse the chain.
#[test]
fn the_rest_of_the_path_is_still_validated() {
    let uri = constrained(&["uri:mesh.test"], &[]);
    let root = TestCa::new(TD);
    let bundle = root.bundle(TD);

    // Expired constrained intermediate.
    let int = root.intermediate_with(TD, "expired", |p| {
        constrained(&["uri:mesh.test"], &[])(p);
        p.not_after = time::OffsetDateTime::now_utc() - std::time::Duration::from_secs(60);
    });
    let (leaf, _) = int.sign(&good_leaf(ID));
    let got = verify(&bundle, &[leaf, int.cert.clone()]);
    assert!(matches!(got, Err(SvidError::Expired { .. })), "{got:?}");

    // Signed by a root outside the bundle (same name, other key).
    let impostor = TestCa::named(TD, &format!("test root {TD}"));
    let int = impostor.intermediate_with(TD, "impostor's", uri);
    let (leaf, _) = int.sign(&good_leaf(ID));
    let got = verify(&bundle, &[leaf, int.cert.clone()]);
    assert!(matches!(got, Err(SvidError::UnknownIssuer)), "{got:?}");

    // Without keyCertSign.
    let int = root.intermediate_with(TD, "no keyCertSign", |p| {
        constrained(&["uri:mesh.test"], &[])(p);
        p.key_usages = vec![rcgen::KeyUsagePurpose::CrlSign];
    });
    let (leaf, _) = int.sign(&good_leaf(ID));
    let got = verify(&bundle, &[leaf, int.cert.clone()]);
    assert!(
        matches!(got, Err(SvidError::SigningCertNoKeyCertSign { .. })),
        "{got:?}"
    );

    // pathLenConstraint 0 with an intermediate below it.
    let int = root.intermediate_with(TD, "pathlen 0", constrained(&["uri:mesh.test"], &[]));
    let below = int.intermediate(TD);
    let (leaf, _) = below.sign(&good_leaf(ID));
    let got = verify(&bundle, &[leaf, below.cert.clone(), int.cert.clone()]);
    assert!(
        matches!(&got, Err(SvidError::Path(m)) if m.contains("pathLenConstraint")),
        "{got:?}"
    );

    // The root's pathLenConstraint counts the constrained intermediate.
    let root0 = TestCa::root_with(TD, "root pathlen 0", |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    });
    let upper = root0.intermediate_with(TD, "upper", |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(1));
    });
    let int = upper.intermediate_with(TD, "constrained", constrained(&["uri:mesh.test"], &[]));
    let (leaf, _) = int.sign(&good_leaf(ID));
    let got = verify(
        &root0.bundle(TD),
        &[leaf, int.cert.clone(), upper.cert.clone()],
    );
    assert!(
        matches!(got, Err(SvidError::RootPathLenExceeded { .. })),
        "{got:?}"
    );

    // A DNS constraint on the root above a URI-constrained intermediate:
    // not evaluated there, so refused (fail closed).
    let dns_root = root_constrained(&["dns:example.org"], &[]);
    let int = dns_root.intermediate_with(TD, "constrained", constrained(&["uri:mesh.test"], &[]));
    let (leaf, _) = int.sign(&good_leaf(ID));
    let got = verify(&dns_root.bundle(TD), &[leaf, int.cert.clone()]);
    assert!(
        matches!(got, Err(SvidError::NameConstraintUnsupported { .. })),
        "{got:?}"
    );

    // A tampered constrained intermediate (its issuer's signature broken).
    let int = root.intermediate_with(TD, "tampered", constrained(&["uri:mesh.test"], &[]));
    let (leaf, _) = int.sign(&good_leaf(ID));
    let mut bytes = int.cert.to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    let got = verify(&bundle, &[leaf, CertificateDer::from(bytes)]);
    assert!(matches!(got, Err(SvidError::UnknownIssuer)), "{got:?}");
}

fn openssl(dir: &std::path::Path, args: &[&str]) {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("these interop tests need the `openssl` command (Debian: apt-get install openssl)");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A root made by the `openssl` command with `nameConstraints=` URI
/// subtrees; leaves signed by its key with rcgen.
#[test]
fn openssl_made_roots_with_uri_constraints() {
    for (constraint, accepted, refused) in [
        (
            "critical,permitted;URI:domain1.test",
            "spiffe://domain1.test/w",
            "spiffe://domain2.test/w",
        ),
        (
            "permitted;URI:.example.org",
            "spiffe://a.example.org/w",
            "spiffe://example.org/w",
        ),
        (
            "critical,excluded;URI:bad.test",
            "spiffe://good.test/w",
            "spiffe://bad.test/w",
        ),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        openssl(
            d,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                "ec.pem",
            ],
        );
        openssl(
            d,
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", "ec.pem", "-out", "key.pem",
            ],
        );
        openssl(
            d,
            &[
                "req",
                "-x509",
                "-new",
                "-key",
                "key.pem",
                "-out",
                "root.pem",
                "-days",
                "2",
                "-subj",
                "/CN=openssl constrained root",
                "-addext",
                "basicConstraints=critical,CA:TRUE",
                "-addext",
                "keyUsage=critical,keyCertSign,cRLSign",
                "-addext",
                &format!("nameConstraints={constraint}"),
            ],
        );
        let root_pem = std::fs::read_to_string(d.join("root.pem")).unwrap();
        let root_der = palisade_identity::pem::certs(&root_pem).unwrap().remove(0);
        let key = KeyPair::from_pem(&std::fs::read_to_string(d.join("key.pem")).unwrap()).unwrap();
        let root = TestCa {
            cert: root_der,
            key,
        };
        for (id, ok) in [(accepted, true), (refused, false)] {
            let bundle = TrustBundle::new(
                TrustDomain::new(&trust_domain(id)).unwrap(),
                vec![root.cert.clone()],
            )
            .unwrap();
            let (leaf, _) = root.sign(&good_leaf(id));
            let got = verify(&bundle, &[leaf]);
            assert_eq!(got.is_ok(), ok, "{constraint} {id}: {got:?}");
            if !ok {
                refusal_text(got.map(|i| i.to_string()));
            }
        }
    }
}
