//! Rotating a CA directory in place (`palisade ca rotate`): prepare trusts a
//! new root beside the old, activate makes the new CA sign, finish drops the
//! old root and its keys. At every step an SVID of either CA that should
//! verify does, and after finish the old one does not.
mod common;

use std::path::Path;
use std::time::Duration;

use common::{id, mesh_ca_with, verify};
use palisade_identity::ca_rotation::{self, NEXT_DIR, PrepareOptions, RETIRED_DIR, RotationError};
use palisade_identity::verify::{anchoring_root, fingerprint, issued_by};
use palisade_identity::{CertificateAuthority, IssuedSvid};

const ID: &str = "spiffe://mesh.test/ns/prod/sa/api";

fn init(dir: &Path, intermediate: bool) -> CertificateAuthority {
    mesh_ca_with(intermediate).write_dir(dir).unwrap();
    CertificateAuthority::load_dir(dir, None).unwrap()
}

fn load(dir: &Path) -> CertificateAuthority {
    CertificateAuthority::load_dir(dir, None).unwrap()
}

fn svid(ca: &CertificateAuthority) -> IssuedSvid {
    ca.issue(&id(ID), Duration::from_secs(600)).unwrap()
}

#[test]
fn prepare_activate_finish_moves_trust_and_signing_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let old = init(dir.path(), false);
    let old_svid = svid(&old);

    // 1. prepare: both roots trusted, the old CA still signs.
    let report = ca_rotation::prepare(dir.path(), None, &PrepareOptions::default()).unwrap();
    assert_eq!(report.signer, fingerprint(old.signing_cert()));
    assert_eq!(report.roots.len(), 2);
    assert_eq!(report.added.len(), 1);
    let prepared = load(dir.path());
    assert_eq!(prepared.signing_cert(), old.signing_cert());
    assert_eq!(prepared.bundle().roots().len(), 2);
    let next = CertificateAuthority::load_dir(&dir.path().join(NEXT_DIR), None).unwrap();
    let next_svid = svid(&next);
    // Sidecars with the prepared bundle accept SVIDs of both CAs.
    verify(prepared.bundle(), &old_svid.chain).unwrap();
    verify(prepared.bundle(), &next_svid.chain).unwrap();
    assert!(matches!(
        ca_rotation::prepare(dir.path(), None, &PrepareOptions::default()),
        Err(RotationError::AlreadyPrepared(_))
    ));
    // finish refuses while a prepared CA waits: it would drop its root.
    assert!(matches!(
        ca_rotation::finish(dir.path(), None),
        Err(RotationError::AlreadyPrepared(_))
    ));

    // 2. activate: the new CA signs; both roots still trusted.
    let report = ca_rotation::activate(dir.path(), None).unwrap();
    assert_eq!(report.signer, fingerprint(next.signing_cert()));
    let active = load(dir.path());
    assert_eq!(active.signing_cert(), next.signing_cert());
    assert!(!dir.path().join(NEXT_DIR).exists());
    let new_svid = svid(&active);
    assert!(issued_by(&new_svid.chain[0], active.signing_cert()));
    assert!(!issued_by(&old_svid.chain[0], active.signing_cert()));
    assert!(issued_by(&old_svid.chain[0], old.signing_cert()));
    verify(active.bundle(), &old_svid.chain).unwrap();
    verify(active.bundle(), &new_svid.chain).unwrap();
    assert_eq!(
        anchoring_root(active.bundle(), &old_svid.chain),
        Some(&old.bundle().roots()[0])
    );
    assert_eq!(
        anchoring_root(active.bundle(), &new_svid.chain),
        Some(&next.bundle().roots()[0])
    );
    let retired: Vec<_> = std::fs::read_dir(dir.path().join(RETIRED_DIR))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(retired.len(), 1);
    assert!(retired[0].join("ca.key").exists());
    assert_eq!(
        ca_rotation::retiring_roots(dir.path(), None).unwrap(),
        old.bundle().roots().to_vec()
    );

    // 3. finish: the old root and the retired key are gone.
    let report = ca_rotation::finish(dir.path(), None).unwrap();
    assert_eq!(report.removed, vec![fingerprint(&old.bundle().roots()[0])]);
    let done = load(dir.path());
    assert_eq!(done.bundle().roots(), next.bundle().roots());
    assert!(verify(done.bundle(), &old_svid.chain).is_err());
    verify(done.bundle(), &new_svid.chain).unwrap();
    assert_eq!(anchoring_root(done.bundle(), &old_svid.chain), None);
    assert!(!retired[0].join("ca.key").exists());
    assert!(
        retired[0].join("ca.pem").exists(),
        "certificates stay for the record"
    );
    assert!(
        ca_rotation::retiring_roots(dir.path(), None)
            .unwrap()
            .is_empty()
    );
}

#[test]
fn an_intermediate_ca_rotates_to_a_new_root_and_intermediate() {
    let dir = tempfile::tempdir().unwrap();
    let old = init(dir.path(), true);
    ca_rotation::prepare(dir.path(), None, &PrepareOptions::default()).unwrap();
    ca_rotation::activate(dir.path(), None).unwrap();
    let active = load(dir.path());
    assert!(active.signs_with_intermediate());
    assert_eq!(active.bundle().roots().len(), 2, "old and new root");
    assert_ne!(active.signing_cert(), old.signing_cert());
    let chain = svid(&active).chain;
    assert_eq!(chain.len(), 2, "leaf and the new intermediate");
    verify(active.bundle(), &chain).unwrap();
    verify(active.bundle(), &svid(&old).chain).unwrap();
    ca_rotation::finish(dir.path(), None).unwrap();
    let done = load(dir.path());
    assert_eq!(done.bundle().roots().len(), 1);
    assert!(verify(done.bundle(), &svid(&old).chain).is_err());
    assert!(
        !std::fs::read_dir(dir.path().join(RETIRED_DIR))
            .unwrap()
            .any(|e| e.unwrap().path().join("root.key").exists())
    );
}

#[test]
fn keep_root_makes_a_new_intermediate_and_leaves_the_bundle_alone() {
    let dir = tempfile::tempdir().unwrap();
    let old = init(dir.path(), true);
    let bundle_before = std::fs::read_to_string(dir.path().join("bundle.pem")).unwrap();
    let report = ca_rotation::prepare(
        dir.path(),
        None,
        &PrepareOptions {
            keep_root: true,
            ..PrepareOptions::default()
        },
    )
    .unwrap();
    assert!(report.added.is_empty());
    assert_eq!(
        std::fs::read_to_string(dir.path().join("bundle.pem")).unwrap(),
        bundle_before
    );
    ca_rotation::activate(dir.path(), None).unwrap();
    let active = load(dir.path());
    assert_ne!(active.signing_cert(), old.signing_cert());
    assert_eq!(active.bundle().roots(), old.bundle().roots());
    let old_svid = svid(&old);
    assert!(!issued_by(&old_svid.chain[0], active.signing_cert()));
    verify(active.bundle(), &old_svid.chain).unwrap();
    let report = ca_rotation::finish(dir.path(), None).unwrap();
    assert!(
        report.removed.is_empty(),
        "one root, still the signing CA's"
    );
    // The old intermediate's key is gone all the same.
    assert!(
        !std::fs::read_dir(dir.path().join(RETIRED_DIR))
            .unwrap()
            .any(|e| e.unwrap().path().join("ca.key").exists())
    );
}

#[test]
fn steps_out_of_order_or_on_foreign_layouts_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    init(dir.path(), false);
    assert!(matches!(
        ca_rotation::activate(dir.path(), None),
        Err(RotationError::NotPrepared(_))
    ));
    // --keep-root without a root key (a root-signing CA).
    assert!(matches!(
        ca_rotation::prepare(
            dir.path(),
            None,
            &PrepareOptions {
                keep_root: true,
                ..PrepareOptions::default()
            }
        ),
        Err(RotationError::NoRootKey(_))
    ));
    // A prepared CA whose root was taken out of the bundle again.
    let before = std::fs::read_to_string(dir.path().join("bundle.pem")).unwrap();
    ca_rotation::prepare(dir.path(), None, &PrepareOptions::default()).unwrap();
    std::fs::write(dir.path().join("bundle.pem"), before).unwrap();
    assert!(matches!(
        ca_rotation::activate(dir.path(), None),
        Err(RotationError::NextRootNotTrusted(_))
    ));
    assert!(dir.path().join("ca.key").exists(), "nothing moved");

    let cert_manager = tempfile::tempdir().unwrap();
    std::fs::write(cert_manager.path().join("tls.crt"), "").unwrap();
    assert!(matches!(
        ca_rotation::prepare(cert_manager.path(), None, &PrepareOptions::default()),
        Err(RotationError::NotOurLayout(_))
    ));
}
