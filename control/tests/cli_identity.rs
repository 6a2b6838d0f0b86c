//! `palisade ca`, `palisade cert`, `palisade id`: the real binary, run as a user
//! would, with exit codes 0 (ok), 1 (rule broken, one line naming it), 2 (bad
//! input).
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

fn palisade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .output()
        .unwrap()
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

fn pem_blocks(p: &Path) -> usize {
    std::fs::read_to_string(p)
        .unwrap()
        .matches("-----BEGIN CERTIFICATE-----")
        .count()
}

/// Creates a CA and issues an SVID; returns (ca dir, svid dir).
fn ca_and_svid(intermediate: bool, id: &str, ttl: &str) -> (tempfile::TempDir, tempfile::TempDir) {
    ca_and_svid_in("mesh.test", intermediate, id, ttl)
}

/// [`ca_and_svid`] with a CA of trust domain `td`.
fn ca_and_svid_in(
    td: &str,
    intermediate: bool,
    id: &str,
    ttl: &str,
) -> (tempfile::TempDir, tempfile::TempDir) {
    let ca = tempfile::tempdir().unwrap();
    let mut args = vec!["ca", "init", "--trust-domain", td, "--out", s(ca.path())];
    if intermediate {
        args.push("--intermediate");
    }
    let o = palisade(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = tempfile::tempdir().unwrap();
    let o = palisade(&[
        "cert",
        "issue",
        "--ca",
        s(ca.path()),
        "--id",
        id,
        "--out",
        s(out.path()),
        "--ttl",
        ttl,
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    (ca, out)
}

fn verify(dir: &Path, extra: &[&str]) -> Output {
    let bundle = dir.join("bundle.pem");
    let cert = dir.join("svid.pem");
    let mut args = vec!["cert", "verify", "--bundle", s(&bundle), "--cert", s(&cert)];
    args.extend_from_slice(extra);
    palisade(&args)
}

const ID: &str = "spiffe://mesh.test/ns/prod/sa/api";

#[test]
fn ca_init_issue_verify_round_trip() {
    for intermediate in [false, true] {
        let (ca, out) = ca_and_svid(intermediate, ID, "24h");
        assert_eq!(mode(&ca.path().join("ca.key")), 0o600);
        if intermediate {
            assert_eq!(mode(&ca.path().join("root.key")), 0o600);
        }
        assert_eq!(mode(&out.path().join("svid.key")), 0o600);
        assert_eq!(
            pem_blocks(&out.path().join("svid.pem")),
            if intermediate { 2 } else { 1 }
        );
        assert_eq!(pem_blocks(&out.path().join("bundle.pem")), 1);
        let o = verify(out.path(), &[]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), format!("{ID}\n"), "the ID alone on stdout");
        let o = verify(out.path(), &["--trust-domain", "mesh.test"]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    }
}

#[test]
fn verify_rejects_with_exit_1_and_one_line_naming_the_rule() {
    let (_ca, out) = ca_and_svid(false, ID, "24h");
    let (_other_ca, other) = ca_and_svid(false, ID, "24h");
    // Another CA's SVID against our bundle: path validation fails.
    let o = palisade(&[
        "cert",
        "verify",
        "--bundle",
        s(&out.path().join("bundle.pem")),
        "--cert",
        s(&other.path().join("svid.pem")),
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stdout(&o).is_empty());
    let err = stderr(&o);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("path validation"), "{err}");
    // Right chain, wrong trust domain.
    let o = verify(out.path(), &["--trust-domain", "other.test"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("trust domain"), "{}", stderr(&o));
}

#[test]
fn verify_takes_federated_bundles_each_for_its_own_trust_domain() {
    let (_ca, local) = ca_and_svid(false, ID, "24h");
    let remote_id = "spiffe://remote.test/ns/shop/sa/cart";
    let (_remote_ca, remote) = ca_and_svid_in("remote.test", true, remote_id, "24h");
    let fed = tempfile::tempdir().unwrap();
    let remote_bundle = fed.path().join("remote.test.pem");
    std::fs::copy(remote.path().join("bundle.pem"), &remote_bundle).unwrap();
    let check = |cert: &Path, federated: &[&Path]| {
        let bundle = local.path().join("bundle.pem");
        let cert_path = cert.join("svid.pem");
        let mut args = vec![
            "cert",
            "verify",
            "--bundle",
            s(&bundle),
            "--cert",
            s(&cert_path),
        ];
        for f in federated {
            args.extend(["--federated", s(f)]);
        }
        palisade(&args)
    };
    // Without the federation the remote SVID has no bundle...
    let o = check(remote.path(), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(
        stderr(&o).contains("no X.509 bundle found for trust domain: \"remote.test\""),
        "{}",
        stderr(&o)
    );
    // ...with it, it verifies (its chain has an intermediate), and local
    // SVIDs still verify against the local bundle.
    let o = check(remote.path(), &[&remote_bundle]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert_eq!(stdout(&o), format!("{remote_id}\n"));
    let o = check(local.path(), &[&remote_bundle]);
    assert_eq!(stdout(&o), format!("{ID}\n"), "{}", stderr(&o));
    // The remote bundle under the local trust domain's name is refused, as
    // is a file not named after a trust domain.
    let as_local = fed.path().join("mesh.test.pem");
    std::fs::copy(&remote_bundle, &as_local).unwrap();
    let o = check(local.path(), &[&as_local]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("local trust domain"), "{}", stderr(&o));
    let unnamed = fed.path().join("bundle.crt");
    std::fs::copy(&remote_bundle, &unnamed).unwrap();
    let o = check(remote.path(), &[&unnamed]);
    assert_eq!(o.status.code(), Some(2), "{}", stdout(&o));
    assert!(stderr(&o).contains("--federated"), "{}", stderr(&o));
}

#[test]
fn verify_rejects_an_expired_svid() {
    let (_ca, out) = ca_and_svid(false, ID, "1s");
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let o = verify(out.path(), &[]);
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stderr(&o).contains("validity window"), "{}", stderr(&o));
}

#[test]
fn bad_arguments_and_unreadable_files_exit_2() {
    let (_ca, out) = ca_and_svid(false, ID, "24h");
    let missing = out.path().join("nope.pem");
    let o = palisade(&[
        "cert",
        "verify",
        "--bundle",
        s(&missing),
        "--cert",
        s(&out.path().join("svid.pem")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let junk = out.path().join("junk.pem");
    std::fs::write(&junk, "not pem at all").unwrap();
    let o = palisade(&[
        "cert",
        "verify",
        "--bundle",
        s(&junk),
        "--cert",
        s(&out.path().join("svid.pem")),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = palisade(&[
        "cert",
        "verify",
        "--bundle",
        s(&out.path().join("bundle.pem")),
        "--cert",
        s(&junk),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = palisade(&["cert", "verify", "--bundle", s(&junk)]);
    assert_eq!(o.status.code(), Some(2), "missing --cert");
    let o = palisade(&[
        "cert",
        "issue",
        "--ca",
        s(out.path()),
        "--id",
        ID,
        "--out",
        s(out.path()),
    ]);
    assert_eq!(o.status.code(), Some(2), "not a CA directory");
    let o = palisade(&[
        "ca",
        "init",
        "--trust-domain",
        "Bad_TD!",
        "--out",
        s(out.path()),
    ]);
    assert_eq!(o.status.code(), Some(2));
    let o = palisade(&[
        "cert", "issue", "--ca", "/x", "--id", ID, "--out", "/y", "--ttl", "soon",
    ]);
    assert_eq!(o.status.code(), Some(2), "bad --ttl");
}

#[test]
fn issue_refuses_bad_or_foreign_ids_and_ca_init_does_not_overwrite() {
    let (ca, _out) = ca_and_svid(false, ID, "24h");
    let dst = tempfile::tempdir().unwrap();
    for bad in [
        "spiffe://mesh.test/a/",
        "spiffe://other.test/ns/a/sa/b",
        "spiffe://mesh.test",
    ] {
        let o = palisade(&[
            "cert",
            "issue",
            "--ca",
            s(ca.path()),
            "--id",
            bad,
            "--out",
            s(dst.path()),
        ]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", stderr(&o));
        assert!(!dst.path().join("svid.pem").exists());
    }
    let o = palisade(&[
        "ca",
        "init",
        "--trust-domain",
        "mesh.test",
        "--out",
        s(ca.path()),
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("--force"));
}

#[test]
fn issue_from_an_openssl_csr() {
    let (ca, _) = ca_and_svid(false, ID, "24h");
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("my.key");
    let csr = dir.path().join("my.csr");
    let o = Command::new("openssl")
        .args([
            "req",
            "-new",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
        ])
        .args([
            "-keyout",
            s(&key),
            "-out",
            s(&csr),
            "-subj",
            "/O=me",
            "-config",
            "/dev/null",
        ])
        .output()
        .expect("this test needs the `openssl` command (Debian: apt-get install openssl)");
    assert!(o.status.success(), "{}", stderr(&o));
    let out = dir.path().join("svid");
    let o = palisade(&[
        "cert",
        "issue",
        "--ca",
        s(ca.path()),
        "--id",
        ID,
        "--out",
        s(&out),
        "--csr",
        s(&csr),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!out.join("svid.key").exists(), "no key written for a CSR");
    assert_eq!(stdout(&verify(&out, &[])), format!("{ID}\n"));
    // The certificate is for the CSR's key (OpenSSL checks the pair).
    let o = Command::new("openssl")
        .args(["x509", "-in", s(&out.join("svid.pem")), "-noout", "-pubkey"])
        .output()
        .unwrap();
    let o2 = Command::new("openssl")
        .args(["pkey", "-in", s(&key), "-pubout"])
        .output()
        .unwrap();
    assert_eq!(stdout(&o), stdout(&o2));
    // A CSR with a broken signature is bad input.
    let mut text = std::fs::read_to_string(&csr).unwrap();
    let pos = text.rfind("-----END").unwrap() - 6;
    let c = if &text[pos..pos + 1] == "A" { "B" } else { "A" };
    text.replace_range(pos..pos + 1, c);
    std::fs::write(&csr, text).unwrap();
    let o = palisade(&[
        "cert",
        "issue",
        "--ca",
        s(ca.path()),
        "--id",
        ID,
        "--out",
        s(&out),
        "--csr",
        s(&csr),
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
}

#[test]
fn id_parse_prints_valid_ids_and_names_the_broken_rule() {
    let o = palisade(&["id", "parse", "spiffe://cluster.local/ns/default/sa/web"]);
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(stdout(&o), "spiffe://cluster.local/ns/default/sa/web\n");
    for (bad, rule) in [
        ("spiffe://cluster.local/ns/default/", "trailing slash"),
        ("spiffe://Cluster.local/x", "trust domain character"),
        ("http://cluster.local/x", "scheme"),
        ("spiffe://cluster.local:443/x", "port"),
        ("spiffe://cluster.local/a?b", "query"),
    ] {
        let o = palisade(&["id", "parse", bad]);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        let err = stderr(&o);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(rule), "{bad}: {err}");
        assert!(stdout(&o).is_empty());
    }
}

#[test]
fn verify_accepts_a_spiffe_bundle_document() {
    // A SPIFFE bundle (JWK Set, "The SPIFFE Trust Domain and Bundle" 4 and
    // X509-SVID 6) is accepted wherever a PEM bundle is; like PEM it does not
    // name its trust domain, which comes from --trust-domain or the roots.
    let (_ca, out) = ca_and_svid(true, ID, "24h");
    let pem = std::fs::read_to_string(out.path().join("bundle.pem")).unwrap();
    let roots = palisade_identity::TrustBundle::from_pem_infer(&pem).unwrap();
    let json = out.path().join("bundle.json");
    std::fs::write(&json, roots.to_spiffe_bundle(Some(1), Some(300)).unwrap()).unwrap();
    let cert = out.path().join("svid.pem");
    for extra in [&[][..], &["--trust-domain", "mesh.test"][..]] {
        let mut args = vec!["cert", "verify", "--bundle", s(&json), "--cert", s(&cert)];
        args.extend_from_slice(extra);
        let o = palisade(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        assert_eq!(stdout(&o), format!("{ID}\n"));
    }
    // A malformed document is bad input (exit 2) naming the SPIFFE bundle rule.
    std::fs::write(
        &json,
        r#"{"keys": [{"use": "x509-svid", "kty": "EC", "x5c": []}]}"#,
    )
    .unwrap();
    let o = palisade(&["cert", "verify", "--bundle", s(&json), "--cert", s(&cert)]);
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("expected a single certificate in x509-svid entry 0; got 0"),
        "{}",
        stderr(&o)
    );
}

/// `cert verify` holds the anchoring root to its validity window and its
/// pathLenConstraint, as `openssl verify` and go-spiffe do: an expired root,
/// or a pathlen 0 root above an intermediate, vouches for nothing.
#[test]
fn verify_refuses_an_expired_root_and_a_root_path_length_exceeded() {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer,
        KeyPair, KeyUsagePurpose, SanType,
    };
    use std::time::Duration;
    use time::OffsetDateTime;
    let now = OffsetDateTime::now_utc();
    let day = Duration::from_secs(86400);
    let ca_params = |cn: &str, constraint: BasicConstraints| {
        let mut p = CertificateParams::default();
        p.distinguished_name.push(DnType::CommonName, cn);
        p.subject_alt_names = vec![SanType::URI("spiffe://mesh.test".try_into().unwrap())];
        p.is_ca = IsCa::Ca(constraint);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        p.not_before = now - day;
        p.not_after = now + 30 * day;
        p
    };
    let mut leaf = CertificateParams::default();
    leaf.subject_alt_names = vec![SanType::URI(ID.try_into().unwrap())];
    leaf.is_ca = IsCa::ExplicitNoCa;
    leaf.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    leaf.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    leaf.not_before = now - day;
    leaf.not_after = now + day;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, pems: &[String]| {
        let path = dir.path().join(name);
        std::fs::write(&path, pems.concat()).unwrap();
        path
    };
    let cert_verify = |bundle: &Path, cert: &Path| {
        palisade(&["cert", "verify", "--bundle", s(bundle), "--cert", s(cert)])
    };

    // An expired root; the leaf it signed is within its own window.
    let mut expired = ca_params("expired root", BasicConstraints::Unconstrained);
    expired.not_before = now - 400 * day;
    expired.not_after = now - day;
    let expired_key = KeyPair::generate().unwrap();
    let expired_cert = expired.self_signed(&expired_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf_cert = leaf
        .signed_by(&leaf_key, &Issuer::new(expired, expired_key))
        .unwrap();
    let o = cert_verify(
        &write("expired-root.pem", &[expired_cert.pem()]),
        &write("expired-root-leaf.pem", &[leaf_cert.pem()]),
    );
    assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
    assert!(stdout(&o).is_empty());
    let err = stderr(&o);
    assert!(
        err.contains("expired root") && err.contains("expired"),
        "{err}"
    );

    // A pathlen 0 root above an intermediate; pathlen 1 is fine.
    for (path_len, accepted) in [(0, false), (1, true)] {
        let root = ca_params("root", BasicConstraints::Constrained(path_len));
        let root_key = KeyPair::generate().unwrap();
        let root_cert = root.self_signed(&root_key).unwrap();
        let int = ca_params("intermediate", BasicConstraints::Constrained(0));
        let int_key = KeyPair::generate().unwrap();
        let int_cert = int
            .signed_by(&int_key, &Issuer::new(root, root_key))
            .unwrap();
        let leaf_cert = leaf
            .signed_by(&leaf_key, &Issuer::new(int, int_key))
            .unwrap();
        let o = cert_verify(
            &write("root.pem", &[root_cert.pem()]),
            &write("chain.pem", &[leaf_cert.pem(), int_cert.pem()]),
        );
        if accepted {
            assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
            assert_eq!(stdout(&o), format!("{ID}\n"));
        } else {
            assert_eq!(o.status.code(), Some(1), "{}", stdout(&o));
            assert!(
                stderr(&o).contains("path length constraint"),
                "{}",
                stderr(&o)
            );
        }
    }
}

#[test]
fn verify_refuses_svids_of_a_trust_domain_whose_spiffe_bundle_has_no_x509_svid_entry() {
    // SPIFFE Trust Domain and Bundle 4.1.3: an empty `keys` array revokes
    // every key, and "workloads MUST treat all SVIDs from the trust domain as
    // invalid and untrusted"; go-spiffe x509svid verify_test "no roots":
    // "certificate signed by unknown authority". A rule broken by the chain
    // (exit 1), not bad input (exit 2).
    let (_ca, local) = ca_and_svid(false, ID, "24h");
    let remote_id = "spiffe://remote.test/ns/shop/sa/cart";
    let (_remote_ca, remote) = ca_and_svid_in("remote.test", false, remote_id, "24h");
    let docs = tempfile::tempdir().unwrap();
    let revoked = docs.path().join("remote.test.json");
    std::fs::write(&revoked, r#"{"spiffe_sequence": 2, "keys": []}"#).unwrap();
    let o = palisade(&[
        "cert",
        "verify",
        "--bundle",
        s(&local.path().join("bundle.pem")),
        "--cert",
        s(&remote.path().join("svid.pem")),
        "--federated",
        s(&revoked),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stdout(&o).is_empty());
    assert!(
        stderr(&o).contains("certificate signed by unknown authority")
            && stderr(&o).contains("remote.test"),
        "{}",
        stderr(&o)
    );
    // The same document as the bundle of the chain's own trust domain.
    let o = palisade(&[
        "cert",
        "verify",
        "--bundle",
        s(&revoked),
        "--trust-domain",
        "remote.test",
        "--cert",
        s(&remote.path().join("svid.pem")),
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("certificate signed by unknown authority"),
        "{}",
        stderr(&o)
    );
}
