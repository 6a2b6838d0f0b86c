//! The mesh CA in force, and following its directory: a change to the files
//! (`palisade ca rotate`, a renewed cert-manager secret) is loaded, checked
//! and swapped in without a restart. A directory that does not load (a key
//! that does not fit its certificate, a half-copied file, another trust
//! domain) changes nothing: the last good CA keeps signing and
//! `palisade status` shows the error.
//!
//! A CA replaced in place (cert-manager renewing its CA with a new key, an
//! operator copying new files over the old) would cut every sidecar whose
//! SVID the old root vouches for off from those with new ones. So a root
//! that anchored the signer until a reload and is gone after it stays
//! trusted for a grace period (the SVID lifetime by default), written to
//! the state dir so a restart keeps it; sidecars renew early meanwhile. A
//! root that was only kept for a rotation (`palisade ca rotate finish`)
//! goes at once.
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, UNIX_EPOCH};

use arc_swap::ArcSwap;
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

/// Where the CA comes from and how a replaced root is kept.
#[derive(Debug, Clone)]
pub struct CaFollow {
    pub dir: PathBuf,
    /// The trust domain to load `dir` with, when its certificates name none.
    pub trust_domain: Option<String>,
    /// How long a root that signed until the CA was replaced in place stays
    /// trusted; zero drops it at once.
    pub grace_period: Duration,
    /// Where the roots kept for their grace period are written.
    pub grace_file: Option<PathBuf>,
    /// Where the last `spiffe_sequence` served, and the roots it was
    /// served for, are written: the number never goes back, also across
    /// a restart.
    pub sequence_file: Option<PathBuf>,
}

/// A root kept after its CA was replaced in place, and until when.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct GraceRoot {
    pub pem: String,
    pub until_unix: i64,
}

/// The last `spiffe_sequence` of the served bundle, and what it numbered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServedSequence {
    pub sequence: u64,
    /// SHA-256 fingerprints of the roots served with it, in document order.
    pub roots: Vec<String>,
}

/// The CA in force, swapped whole on a reload.
pub struct CaCell {
    current: ArcSwap<CaAuthority>,
    follow: Option<CaFollow>,
    grace: Mutex<Vec<GraceRoot>>,
    /// The last sequence number handed out for the served bundle.
    served: Mutex<Option<ServedSequence>>,
    report: RwLock<CaReport>,
    /// Bumped on every swap, so followers learn of it.
    generation: watch::Sender<u64>,
}

impl CaCell {
    /// A CA that is never reloaded (tests, demos).
    pub fn fixed(ca: Arc<CaAuthority>) -> Arc<Self> {
        Self::new(ca, None)
    }

    /// `ca`, as loaded from `follow.dir`, reloaded when the directory
    /// changes; roots still in their grace period (from `grace_file`) are
    /// trusted again at once.
    pub fn new(ca: Arc<CaAuthority>, follow: Option<CaFollow>) -> Arc<Self> {
        let grace = follow
            .as_ref()
            .and_then(|f| f.grace_file.as_ref())
            .and_then(|path| std::fs::read(path).ok())
            .and_then(|bytes| serde_json::from_slice::<Vec<GraceRoot>>(&bytes).ok())
            .unwrap_or_default();
        let served = follow
            .as_ref()
            .and_then(|f| f.sequence_file.as_ref())
            .and_then(|path| std::fs::read(path).ok())
            .and_then(|bytes| serde_json::from_slice::<ServedSequence>(&bytes).ok());
        let cell = Arc::new(Self {
            current: ArcSwap::new(ca),
            follow,
            grace: Mutex::new(grace),
            served: Mutex::new(served),
            report: RwLock::new(CaReport {
                loaded_unix: now_unix(),
                error: None,
            }),
            generation: watch::channel(0).0,
        });
        if cell.has_grace() {
            cell.reload();
        }
        cell
    }

    fn has_grace(&self) -> bool {
        !self
            .grace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// The roots kept after their CA was replaced in place.
    pub fn grace_roots(&self) -> Vec<GraceRoot> {
        self.grace.lock().unwrap_or_else(|p| p.into_inner()).clone()
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

    /// `spiffe_sequence` for serving `bundle` (the roots of the CA in
    /// force): the number served last while the roots are the same, and a
    /// greater one as soon as they differ in any way (a rotation step, a
    /// root leaving at the end of its grace period, a CA replaced while the
    /// control plane was down), as SPIFFE Trust Domain and Bundle 4.1.1
    /// demands ("MUST be changed whenever the contents of the bundle are
    /// updated", monotonically increasing). The new number is the greater of
    /// the last one plus one and [`Self::sequence_from_files`]; it is written
    /// to the state dir, so a restart continues from it.
    pub fn bundle_sequence(&self, bundle: &palisade_identity::TrustBundle) -> u64 {
        let roots: Vec<String> = bundle
            .roots()
            .iter()
            .map(palisade_identity::verify::fingerprint)
            .collect();
        let mut served = self.served.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(last) = served.as_ref()
            && last.roots == roots
        {
            return last.sequence;
        }
        let from_files = self.sequence_from_files(bundle);
        let sequence = match served.as_ref() {
            Some(last) => from_files.max(last.sequence.saturating_add(1)),
            None => from_files,
        };
        let next = ServedSequence { sequence, roots };
        if let Some(path) = self
            .follow
            .as_ref()
            .and_then(|f| f.sequence_file.as_deref())
        {
            persist_json(path, &next, "cannot keep the bundle's sequence number");
        }
        *served = Some(next);
        sequence
    }

    /// The sequence number the CA files alone suggest: when a file of the
    /// CA directory last changed, in milliseconds since the epoch (every
    /// rotation step rewrites `bundle.pem`, cert-manager rewrites
    /// `ca.crt`), and never less than the newest root's `notBefore` in
    /// seconds. The numbering starts there, and a change the files show
    /// moves it on by more than one; a change they do not show (a root
    /// leaving at the end of its grace period) is numbered by
    /// [`Self::bundle_sequence`] all the same.
    fn sequence_from_files(&self, bundle: &palisade_identity::TrustBundle) -> u64 {
        let newest_root = bundle
            .roots()
            .iter()
            .filter_map(|der| {
                x509_parser::parse_x509_certificate(der)
                    .ok()
                    .map(|(_, c)| c.validity().not_before.timestamp())
            })
            .max()
            .and_then(|t| u64::try_from(t).ok());
        let written = self.follow.as_ref().and_then(|f| {
            CA_FILES
                .iter()
                .filter_map(|name| std::fs::metadata(f.dir.join(name)).ok())
                .filter_map(|m| m.modified().ok())
                .filter_map(|t| t.duration_since(UNIX_EPOCH).ok())
                .filter_map(|d| u64::try_from(d.as_millis()).ok())
                .max()
        });
        newest_root.max(written).unwrap_or(0)
    }

    /// Loads the directory again, with the roots in their grace period;
    /// swaps if it loads and differs. Returns whether the CA in force
    /// changed.
    pub fn reload(&self) -> bool {
        let Some(follow) = &self.follow else {
            return false;
        };
        let dir = &follow.dir;
        let was = self.current();
        let loaded = load_dir(follow).and_then(|ca| {
            if ca.trust_domain() != was.inner().trust_domain() {
                return Err(format!(
                    "the CA is for trust domain {}, not {}: a CA change cannot move the mesh to another trust domain",
                    ca.trust_domain(),
                    was.trust_domain()
                ));
            }
            Ok(ca)
        });
        let mut report = self.report.write().unwrap_or_else(|p| p.into_inner());
        let loaded = match loaded {
            Err(e) => {
                if report.error.as_deref() != Some(e.as_str()) {
                    tracing::error!(dir = %dir.display(), error = %e, "CA directory does not load; the CA in force keeps signing");
                }
                report.error = Some(e);
                return false;
            }
            Ok(ca) => ca,
        };
        report.error = None;
        let ca = match self.keep_replaced_roots(follow, &was, loaded) {
            Ok(ca) => ca,
            Err(e) => {
                report.error = Some(e);
                return false;
            }
        };
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

    /// `loaded` plus the roots in their grace period: those kept before,
    /// and those that anchored the signer in force until now and are gone
    /// from the files (the CA was replaced in place).
    fn keep_replaced_roots(
        &self,
        follow: &CaFollow,
        was: &CaAuthority,
        loaded: palisade_identity::CertificateAuthority,
    ) -> Result<CaAuthority, String> {
        let now = now_unix();
        let mut grace = self.grace.lock().unwrap_or_else(|p| p.into_inner());
        let before = grace.clone();
        let in_files = loaded.bundle().roots().to_vec();
        let period = i64::try_from(follow.grace_period.as_secs()).unwrap_or(i64::MAX);
        if period > 0 {
            for root in was.inner().anchoring_roots() {
                let pem = palisade_identity::pem::encode_certs(std::slice::from_ref(&root));
                if !in_files.contains(&root) && !grace.iter().any(|g| g.pem == pem) {
                    tracing::warn!(
                        root = %palisade_identity::verify::fingerprint(&root),
                        seconds = period,
                        "the CA was replaced in place: its old root stays trusted for the grace period, while sidecars renew"
                    );
                    grace.push(GraceRoot {
                        pem,
                        until_unix: now.saturating_add(period),
                    });
                }
            }
        }
        grace.retain(|g| {
            g.until_unix > now
                && palisade_identity::pem::certs(&g.pem)
                    .is_ok_and(|certs| certs.iter().all(|c| !in_files.contains(c)))
        });
        let mut extra = Vec::new();
        for g in grace.iter() {
            extra.extend(palisade_identity::pem::certs(&g.pem).map_err(|e| e.to_string())?);
        }
        if *grace != before {
            persist(follow.grace_file.as_deref(), &grace);
        }
        drop(grace);
        let ca = if extra.is_empty() {
            loaded
        } else {
            loaded.also_trusting(&extra).map_err(|e| e.to_string())?
        };
        Ok(CaAuthority::new(ca))
    }

    /// Drops roots whose grace period is over.
    fn expire_grace(&self) -> bool {
        let now = now_unix();
        let expired = self
            .grace
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|g| g.until_unix <= now);
        expired && self.reload()
    }

    /// Polls the directory every `poll`; a change is loaded once the files
    /// have held still for one more poll. Runs until the task is aborted.
    pub async fn follow(self: Arc<Self>, poll: Duration) {
        let Some(dir) = self.follow.as_ref().map(|f| f.dir.clone()) else {
            return;
        };
        let mut last = fingerprint(&dir);
        loop {
            tokio::time::sleep(poll).await;
            let now = fingerprint(&dir);
            if now == last {
                if self.has_grace() {
                    let cell = self.clone();
                    let _ = tokio::task::spawn_blocking(move || cell.expire_grace()).await;
                }
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

fn load_dir(follow: &CaFollow) -> Result<palisade_identity::CertificateAuthority, String> {
    let td = follow
        .trust_domain
        .as_deref()
        .map(palisade_identity::TrustDomain::new)
        .transpose()
        .map_err(|e| e.to_string())?;
    palisade_identity::CertificateAuthority::load_dir(&follow.dir, td).map_err(|e| e.to_string())
}

fn persist(path: Option<&Path>, grace: &[GraceRoot]) {
    let Some(path) = path else {
        return;
    };
    persist_json(path, &grace, "cannot keep the roots in their grace period");
}

/// Writes `value` as JSON to `path` (atomically); logs `what` on failure.
fn persist_json(path: &Path, value: &impl serde::Serialize, what: &str) {
    let written = serde_json::to_string_pretty(value)
        .map_err(std::io::Error::other)
        .and_then(|body| palisade_identity::pem::write_public(path, &body));
    if let Err(e) = written {
        tracing::error!(path = %path.display(), error = %e, "{what}");
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
