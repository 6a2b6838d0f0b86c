//! Rotating the mesh CA in its directory, in the three steps of
//! `palisade ca rotate`, each one a change the control plane picks up
//! without a restart:
//!
//! 1. **prepare**: a new CA is made in `DIR/next/` and its root is added to
//!    `DIR/bundle.pem`. The old CA still signs; every sidecar is pushed the
//!    bundle with both roots.
//! 2. **activate**: the new CA moves into `DIR` and signs from now on; the
//!    old signing files move to `DIR/retired/<unix time>/`. Sidecars whose
//!    SVID the old CA signed renew it early. Both roots stay trusted, so an
//!    SVID of either CA verifies everywhere.
//! 3. **finish**: the roots the signing CA does not chain to leave
//!    `DIR/bundle.pem`, and the retired private keys are deleted.
//!
//! With `--keep-root` (a CA that signs with an intermediate and holds its
//! root key in `root.pem`/`root.key`) prepare makes a new intermediate under
//! the same root: the bundle does not change and finish has nothing to drop.
//!
//! Every file is written beside its final name and renamed into place, so a
//! reader sees the old file or the new one, never a torn one.
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rustls::pki_types::CertificateDer;

use crate::bundle::TrustBundle;
use crate::ca::{
    BUNDLE_FILE, CA_CERT_FILE, CA_KEY_FILE, CaError, CaOptions, CertificateAuthority,
    ROOT_CERT_FILE, ROOT_KEY_FILE,
};
use crate::pem;
use crate::spiffe_id::TrustDomain;
use crate::verify::fingerprint;

/// Where prepare puts the new CA.
pub const NEXT_DIR: &str = "next";
/// Where activate moves the old signing files.
pub const RETIRED_DIR: &str = "retired";

/// Why a rotation step cannot run.
#[derive(Debug, thiserror::Error)]
pub enum RotationError {
    #[error(transparent)]
    Ca(#[from] CaError),
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(
        "{0} is not a Palisade CA directory (no ca.pem): rotate a cert-manager or Vault CA there, with both roots in ca.crt until every SVID is renewed"
    )]
    NotOurLayout(String),
    #[error("a rotation is already prepared in {0}: run `palisade ca rotate activate`")]
    AlreadyPrepared(String),
    #[error("no rotation is prepared ({0} does not exist): run `palisade ca rotate prepare`")]
    NotPrepared(String),
    #[error(
        "--keep-root needs the root's key in {0} (root.pem and root.key, as `palisade ca init --intermediate` writes them)"
    )]
    NoRootKey(String),
    #[error(
        "bundle.pem no longer holds the prepared CA's root {0}: the new CA would sign SVIDs no sidecar trusts; run prepare again"
    )]
    NextRootNotTrusted(String),
}

/// How to make the new CA.
#[derive(Debug, Clone, Default)]
pub struct PrepareOptions {
    /// A new intermediate under the existing root instead of a new root.
    pub keep_root: bool,
    /// Lifetimes of a new root and intermediate (default: [`CaOptions`]'s).
    pub root_ttl: Option<Duration>,
    pub intermediate_ttl: Option<Duration>,
}

/// What a step did, for the operator.
#[derive(Debug, Clone)]
pub struct StepReport {
    /// SHA-256 of the signing certificate in force after the step.
    pub signer: String,
    /// SHA-256 of every root in the bundle after the step.
    pub roots: Vec<String>,
    /// Roots the step added to or removed from the bundle.
    pub added: Vec<String>,
    pub removed: Vec<String>,
    /// The new CA's signing certificate (prepare, activate).
    pub next_signer: Option<String>,
}

/// Step 1: makes the new CA in `DIR/next` and trusts its root beside the old.
pub fn prepare(
    dir: &Path,
    trust_domain: Option<TrustDomain>,
    opts: &PrepareOptions,
) -> Result<StepReport, RotationError> {
    let current = load_ours(dir, trust_domain)?;
    let next_dir = dir.join(NEXT_DIR);
    if next_dir.exists() {
        return Err(RotationError::AlreadyPrepared(
            next_dir.display().to_string(),
        ));
    }
    let td = current.trust_domain().clone();
    let defaults = CaOptions::default();
    let next = if opts.keep_root {
        let (root_pem, root_key) = (dir.join(ROOT_CERT_FILE), dir.join(ROOT_KEY_FILE));
        if !root_pem.exists() || !root_key.exists() {
            return Err(RotationError::NoRootKey(dir.display().to_string()));
        }
        let root = pem::certs(&read(&root_pem)?)
            .map_err(CaError::from)?
            .into_iter()
            .next()
            .ok_or(CaError::Pem(pem::PemError::NoCertificate))?;
        CertificateAuthority::create_under_root(
            &td,
            root,
            &read(&root_key)?,
            opts.intermediate_ttl.unwrap_or(defaults.intermediate_ttl),
        )?
    } else {
        CertificateAuthority::create(
            &td,
            &CaOptions {
                intermediate: current.signs_with_intermediate(),
                root_ttl: opts.root_ttl.unwrap_or(defaults.root_ttl),
                intermediate_ttl: opts.intermediate_ttl.unwrap_or(defaults.intermediate_ttl),
            },
        )?
    };
    // The new CA's files first, then the bundle that trusts it: the control
    // plane never sees a bundle naming a CA that is not on disk.
    let staging = dir.join(".next.tmp");
    remove_dir_if_exists(&staging)?;
    next.write_dir(&staging)?;
    std::fs::rename(&staging, &next_dir).map_err(|e| io_err(&next_dir, e))?;
    let merged = current.bundle().merged_with(next.bundle());
    write_bundle(dir, &merged)?;
    Ok(StepReport {
        signer: fingerprint(current.signing_cert()),
        roots: fingerprints(merged.roots()),
        added: new_roots(current.bundle(), &merged),
        removed: Vec::new(),
        next_signer: Some(fingerprint(next.signing_cert())),
    })
}

/// Step 2: the prepared CA signs from now on.
pub fn activate(
    dir: &Path,
    trust_domain: Option<TrustDomain>,
) -> Result<StepReport, RotationError> {
    let current = load_ours(dir, trust_domain)?;
    let next_dir = dir.join(NEXT_DIR);
    if !next_dir.join(CA_CERT_FILE).exists() {
        return Err(RotationError::NotPrepared(next_dir.display().to_string()));
    }
    let td = current.trust_domain().clone();
    // The next CA as it will load in DIR: its files with DIR's bundle.
    let next_alone = CertificateAuthority::load_dir(&next_dir, Some(td.clone()))?;
    let bundle = current.bundle();
    for root in next_alone.bundle().roots() {
        if !bundle.roots().contains(root) {
            return Err(RotationError::NextRootNotTrusted(fingerprint(root)));
        }
    }
    let retired = fresh_dir(&dir.join(RETIRED_DIR), &unix_now().to_string())?;
    // The key before the certificate in both moves: DIR holds either the old
    // pair, or a certificate without its key (which the control plane
    // refuses, keeping the old CA), or the new pair.
    for name in [CA_KEY_FILE, CA_CERT_FILE, ROOT_KEY_FILE, ROOT_CERT_FILE] {
        let from = dir.join(name);
        if from.exists() {
            let to = retired.join(name);
            std::fs::rename(&from, &to).map_err(|e| io_err(&to, e))?;
        }
    }
    for name in [CA_KEY_FILE, CA_CERT_FILE, ROOT_KEY_FILE, ROOT_CERT_FILE] {
        let from = next_dir.join(name);
        if from.exists() {
            let to = dir.join(name);
            std::fs::rename(&from, &to).map_err(|e| io_err(&to, e))?;
        }
    }
    std::fs::remove_dir_all(&next_dir).map_err(|e| io_err(&next_dir, e))?;
    let now = load_ours(dir, Some(td))?;
    Ok(StepReport {
        signer: fingerprint(now.signing_cert()),
        roots: fingerprints(now.bundle().roots()),
        added: Vec::new(),
        removed: Vec::new(),
        next_signer: None,
    })
}

/// The roots `finish` would remove: those the signing CA does not chain to.
pub fn retiring_roots(
    dir: &Path,
    trust_domain: Option<TrustDomain>,
) -> Result<Vec<CertificateDer<'static>>, RotationError> {
    let current = load_ours(dir, trust_domain)?;
    let keep = current.anchoring_roots();
    Ok(current
        .bundle()
        .roots()
        .iter()
        .filter(|r| !keep.contains(r))
        .cloned()
        .collect())
}

/// Step 3: only the signing CA's roots stay trusted; retired keys go. With
/// nothing to remove (a `--keep-root` rotation), only the keys go.
pub fn finish(dir: &Path, trust_domain: Option<TrustDomain>) -> Result<StepReport, RotationError> {
    let current = load_ours(dir, trust_domain)?;
    if dir.join(NEXT_DIR).exists() {
        return Err(RotationError::AlreadyPrepared(
            dir.join(NEXT_DIR).display().to_string(),
        ));
    }
    let keep = current.anchoring_roots();
    let removed: Vec<_> = current
        .bundle()
        .roots()
        .iter()
        .filter(|r| !keep.contains(r))
        .cloned()
        .collect();
    let kept = TrustBundle::new(current.trust_domain().clone(), keep).map_err(CaError::from)?;
    write_bundle(dir, &kept)?;
    shred_retired_keys(&dir.join(RETIRED_DIR))?;
    Ok(StepReport {
        signer: fingerprint(current.signing_cert()),
        roots: fingerprints(kept.roots()),
        added: Vec::new(),
        removed: fingerprints(&removed),
        next_signer: None,
    })
}

fn load_ours(
    dir: &Path,
    trust_domain: Option<TrustDomain>,
) -> Result<CertificateAuthority, RotationError> {
    if !dir.join(CA_CERT_FILE).exists() {
        return Err(RotationError::NotOurLayout(dir.display().to_string()));
    }
    Ok(CertificateAuthority::load_dir(dir, trust_domain)?)
}

fn write_bundle(dir: &Path, bundle: &TrustBundle) -> Result<(), RotationError> {
    let path = dir.join(BUNDLE_FILE);
    pem::write_public(&path, &bundle.to_pem()).map_err(|e| io_err(&path, e))
}

/// Deletes the private keys under `retired/`, keeping the certificates.
fn shred_retired_keys(retired: &Path) -> Result<(), RotationError> {
    let Ok(entries) = std::fs::read_dir(retired) else {
        return Ok(());
    };
    for entry in entries.flatten() {
        for name in [CA_KEY_FILE, ROOT_KEY_FILE] {
            let key: PathBuf = entry.path().join(name);
            if key.exists() {
                std::fs::remove_file(&key).map_err(|e| io_err(&key, e))?;
            }
        }
    }
    Ok(())
}

fn new_roots(before: &TrustBundle, after: &TrustBundle) -> Vec<String> {
    after
        .roots()
        .iter()
        .filter(|r| !before.roots().contains(r))
        .map(|r| fingerprint(r))
        .collect()
}

fn fingerprints(roots: &[CertificateDer<'static>]) -> Vec<String> {
    roots.iter().map(|r| fingerprint(r)).collect()
}

/// `parent/name`, or `parent/name-N` when taken, created.
fn fresh_dir(parent: &Path, name: &str) -> Result<PathBuf, RotationError> {
    std::fs::create_dir_all(parent).map_err(|e| io_err(parent, e))?;
    for n in 0.. {
        let dir = match n {
            0 => parent.join(name),
            n => parent.join(format!("{name}-{n}")),
        };
        match std::fs::create_dir(&dir) {
            Ok(()) => return Ok(dir),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(io_err(&dir, e)),
        }
    }
    unreachable!("an unbounded range ends only by returning")
}

fn remove_dir_if_exists(dir: &Path) -> Result<(), RotationError> {
    match std::fs::remove_dir_all(dir) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io_err(dir, e)),
    }
}

fn read(path: &Path) -> Result<String, RotationError> {
    std::fs::read_to_string(path).map_err(|e| io_err(path, e))
}

fn io_err(path: &Path, source: std::io::Error) -> RotationError {
    RotationError::Io {
        path: path.display().to_string(),
        source,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
