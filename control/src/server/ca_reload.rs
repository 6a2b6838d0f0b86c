//! The mesh CA in force, and following its directory: a change to the files
//! (`palisade ca rotate`, a renewed cert-manager secret) is loaded, checked
//! and swapped in without a restart. A directory that does not load (a key
//! that does not fit its certificate, a half-copied file, another trust
//! domain) changes nothing: the last good CA keeps signing and
//! `palisade status` shows the error.
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, UNIX_EPOCH};

use arc_swap::ArcSwap;
use palisade_identity::ca::BUNDLE_FILE;
use tokio::sync::watch;

use super::pki::{CaAuthority, now_unix};

/// The files a CA directory may hold (ours, then cert-manager's).
const CA_FILES: &[&str] = &[
    "ca.pem",
    "ca.key",
    "bundle.pem",
    "root.pem",
    "tls.crt",
    "tls.key",
    "ca.crt",
];

/// What `palisade status` reports of the CA.
#[derive(Debug, Clone, Default)]
pub struct CaReport {
    /// When the CA in force was loaded.
    pub loaded_unix: i64,
    /// The last reload that failed, while the CA in force stays.
    pub error: Option<String>,
}

/// The CA in force, swapped whole on a reload.
pub struct CaCell {
    current: ArcSwap<CaAuthority>,
    dir: Option<PathBuf>,
    trust_domain: Option<String>,
    report: RwLock<CaReport>,
    /// Bumped on every swap, so followers learn of it.
    generation: watch::Sender<u64>,
}

impl CaCell {
    /// A CA that is never reloaded (tests, demos).
    pub fn fixed(ca: Arc<CaAuthority>) -> Arc<Self> {
        Self::new(ca, None, None)
    }

    /// `ca`, loaded from `dir`, reloaded when the directory changes.
    pub fn new(
        ca: Arc<CaAuthority>,
        dir: Option<PathBuf>,
        trust_domain: Option<String>,
    ) -> Arc<Self> {
        Arc::new(Self {
            current: ArcSwap::new(ca),
            dir,
            trust_domain,
            report: RwLock::new(CaReport {
                loaded_unix: now_unix(),
                error: None,
            }),
            generation: watch::channel(0).0,
        })
    }

    /// The CA in force.
    pub fn current(&self) -> Arc<CaAuthority> {
        self.current.load_full()
    }

    pub fn report(&self) -> CaReport {
        self.report
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Follows swaps: the receiver changes after each one.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// `spiffe_sequence` of the served bundle: when `bundle.pem` last
    /// changed, in milliseconds since the epoch (every rotation step
    /// rewrites it); without the file, the newest root's `notBefore` in
    /// seconds. It grows with each change and survives a restart.
    pub fn bundle_sequence(&self) -> Option<u64> {
        let ca = self.current();
        let newest_root = ca
            .inner()
            .bundle()
            .roots()
            .iter()
            .filter_map(|der| {
                x509_parser::parse_x509_certificate(der)
                    .ok()
                    .map(|(_, c)| c.validity().not_before.timestamp())
            })
            .max()
            .and_then(|t| u64::try_from(t).ok());
        let written = self
            .dir
            .as_ref()
            .and_then(|d| std::fs::metadata(d.join(BUNDLE_FILE)).ok())
            .and_then(|m| m.modified().ok())
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .and_then(|d| u64::try_from(d.as_millis()).ok());
        newest_root.max(written)
    }

    /// Loads the directory again; swaps if it loads and differs. Returns
    /// whether the CA in force changed.
    pub fn reload(&self) -> bool {
        let Some(dir) = &self.dir else {
            return false;
        };
        let loaded = CaAuthority::load_dir(dir, self.trust_domain.as_deref())
            .map_err(|e| e.to_string())
            .and_then(|ca| {
                let was = self.current();
                if ca.trust_domain() != was.trust_domain() {
                    return Err(format!(
                        "the CA is for trust domain {}, not {}: a CA change cannot move the mesh to another trust domain",
                        ca.trust_domain(),
                        was.trust_domain()
                    ));
                }
                Ok(ca)
            });
        let mut report = self.report.write().unwrap_or_else(|p| p.into_inner());
        match loaded {
            Err(e) => {
                if report.error.as_deref() != Some(e.as_str()) {
                    tracing::error!(dir = %dir.display(), error = %e, "CA directory does not load; the CA in force keeps signing");
                }
                report.error = Some(e);
                false
            }
            Ok(ca) => {
                report.error = None;
                let was = self.current();
                let same = ca.inner().signing_cert() == was.inner().signing_cert()
                    && ca.inner().bundle().roots() == was.inner().bundle().roots();
                if same {
                    return false;
                }
                tracing::info!(
                    dir = %dir.display(),
                    signer = %palisade_identity::verify::fingerprint(ca.inner().signing_cert()),
                    roots = ca.inner().bundle().roots().len(),
                    "CA changed: new SVIDs come from the signer shown, peers trust the roots shown"
                );
                self.current.store(Arc::new(ca));
                report.loaded_unix = now_unix();
                drop(report);
                self.generation.send_modify(|g| *g += 1);
                true
            }
        }
    }

    /// Polls the directory every `poll`; a change is loaded once the files
    /// have held still for one more poll. Runs until the task is aborted.
    pub async fn follow(self: Arc<Self>, poll: Duration) {
        let Some(dir) = self.dir.clone() else {
            return;
        };
        let mut last = fingerprint(&dir);
        loop {
            tokio::time::sleep(poll).await;
            let now = fingerprint(&dir);
            if now == last {
                continue;
            }
            tokio::time::sleep(poll).await;
            let settled = fingerprint(&dir);
            if settled != now {
                continue;
            }
            last = settled;
            let cell = self.clone();
            let _ = tokio::task::spawn_blocking(move || cell.reload()).await;
        }
    }
}

/// Names, sizes and modification times of the CA files.
fn fingerprint(dir: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    for name in CA_FILES {
        name.hash(&mut h);
        if let Ok(md) = std::fs::metadata(dir.join(name)) {
            md.len().hash(&mut h);
            if let Ok(m) = md.modified() {
                m.hash(&mut h);
            }
        }
    }
    h.finish()
}
