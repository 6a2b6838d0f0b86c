//! SPIFFE Federation on the control plane: the bundles of federated trust
//! domains fetched from their bundle endpoints (SPIFFE Federation, sections
//! 4 to 6), and the mesh's own bundle served at one (`serve`).
//!
//! A fetched bundle replaces the MeshConfig's `trustDomainBundle` for its
//! trust domain in every compiled `ProxyConfig`, so a remote CA's rotation
//! reaches the sidecars without anyone editing a manifest. A fetched
//! bundle without `x509-svid` entries replaces it too: the trust domain
//! no longer supports X509-SVID (X509-SVID 6.2), and no sidecar accepts
//! its SVIDs until a bundle with roots is fetched again. A fetch that
//! fails, or returns a bundle older than the one held (by
//! `spiffe_sequence`), changes nothing: the last good bundle stays.
//!
//! An operator's local update of a trust domain's bundle (a changed
//! `trustDomainBundle`) "is considered the latest until replaced by a
//! subsequent refresh" (SPIFFE Federation 4.2): it replaces the fetched
//! bundle, in force and on disk, and authenticates the next fetch of a
//! self-serving endpoint, so a relationship whose kept bundle no longer
//! verifies the endpoint recovers by re-bootstrapping, across a restart too.
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use palisade_identity::bundle::SpiffeBundle;
use palisade_identity::{TrustBundle, TrustDomain};

use crate::cluster::{BundleEndpoint, Mesh};

mod fetch;
pub mod serve;

pub use fetch::{FetchError, MAX_BUNDLE_BYTES, WebRoots, fetch as fetch_bundle};

/// Poll interval when a bundle has no `spiffe_refresh_hint` (SPIFFE
/// Federation 4: "five minutes is recommended").
pub const DEFAULT_REFRESH: Duration = Duration::from_secs(300);
/// Bounds on a served refresh hint, so a bundle cannot make the control
/// plane poll in a tight loop or stop polling.
pub const MIN_REFRESH: Duration = Duration::from_secs(1);
pub const MAX_REFRESH: Duration = Duration::from_secs(24 * 3600);
/// Where fetched bundles are kept across restarts, under the state dir.
pub const FETCHED_DIR: &str = "federation";
/// Next to a kept `<td>.json`: the configured bundle (PEM; empty when
/// none) at the time, to tell a local update made while the control plane
/// was down.
const CONFIGURED_SUFFIX: &str = ".configured.pem";

/// A bundle fetched from a bundle endpoint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedBundle {
    /// The X.509 authorities as PEM; empty when the document has none (the
    /// trust domain does not support X509-SVID).
    pub pem: String,
    pub sequence: Option<u64>,
    pub refresh_hint: Option<Duration>,
    /// The document as served (kept on disk).
    pub json: String,
}

impl FetchedBundle {
    /// Parses a served SPIFFE bundle for trust domain `td`.
    pub fn parse(td: &str, json: &str) -> Result<Self, FetchError> {
        let trust_domain =
            TrustDomain::new(td).map_err(|e| FetchError::Bundle(format!("trust domain: {e}")))?;
        let doc = SpiffeBundle::parse(json).map_err(|e| FetchError::Bundle(e.to_string()))?;
        // "If no x509-svid JWK entries are present in the bundle, then the
        // trust domain does not support X509-SVID" (X509-SVID 6.2): a valid
        // document without them is the trust domain's latest bundle all the
        // same, and it vouches for no X509-SVID.
        let pem = if doc.x509_authorities.is_empty() {
            String::new()
        } else {
            TrustBundle::new(trust_domain, doc.x509_authorities)
                .map_err(|e| FetchError::Bundle(e.to_string()))?
                .to_pem()
        };
        let refresh_hint = doc
            .refresh_hint
            .map(|s| Duration::from_secs(u64::try_from(s.max(0)).unwrap_or(0)));
        Ok(Self {
            pem,
            sequence: doc.sequence_number,
            refresh_hint,
            json: json.to_string(),
        })
    }

    /// False when the document has no `x509-svid` entry: the trust domain's
    /// X509-SVIDs are refused while it is the bundle in force.
    pub fn has_x509_roots(&self) -> bool {
        !self.pem.is_empty()
    }

    /// How long until the next poll.
    pub fn poll_interval(&self) -> Duration {
        self.refresh_hint
            .unwrap_or(DEFAULT_REFRESH)
            .clamp(MIN_REFRESH, MAX_REFRESH)
    }
}

/// What a fetch changed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// The bundle in force for the trust domain is another one now.
    pub changed: bool,
    /// A new document to keep on disk.
    pub keep: Option<String>,
}

/// The state of one federation relationship, for `status` and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EndpointStatus {
    pub url: String,
    /// Sequence number of the bundle in force, if fetched.
    pub sequence: Option<u64>,
    pub fetched: bool,
    pub fetches: u64,
    pub failures: u64,
    pub last_error: Option<String>,
    /// Seconds since the Unix epoch; 0 before the first.
    pub last_attempt_unix: i64,
    pub last_success_unix: i64,
}

/// Where the bundle in force for a federated trust domain comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BundleSource {
    /// Fetched from its bundle endpoint.
    Fetched,
    /// Fetched by an earlier run and kept in the state dir; no fetch has
    /// succeeded since this control plane started.
    Kept,
    /// The MeshConfig's `trustDomainBundle`.
    Configured,
    /// Neither yet: its workloads are refused.
    None,
}

impl BundleSource {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fetched => "fetched",
            Self::Kept => "kept",
            Self::Configured => "configured",
            Self::None => "none",
        }
    }
}

/// One federation relationship as `palisade status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Relationship {
    pub trust_domain: String,
    /// The endpoint's state; `None` for a configured bundle only.
    pub endpoint: Option<EndpointStatus>,
    pub source: BundleSource,
    /// `spiffe_sequence` of the fetched (or kept) bundle in force.
    pub sequence: Option<u64>,
    /// The number of roots in force, and the earliest of their notAfter.
    pub roots: usize,
    pub roots_expire_unix: Option<i64>,
}

/// The number of certificates in `pem` and the earliest notAfter.
fn roots_and_expiry(pem: &str) -> (usize, Option<i64>) {
    let Ok(certs) = palisade_identity::pem::certs(pem) else {
        return (0, None);
    };
    let expiry = certs
        .iter()
        .filter_map(|der| x509_parser::parse_x509_certificate(der).ok())
        .map(|(_, c)| c.validity().not_after.timestamp())
        .min();
    (certs.len(), expiry)
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

#[derive(Default)]
struct Inner {
    /// From the last MeshConfig that loaded.
    endpoints: BTreeMap<String, BundleEndpoint>,
    /// The configured bundles (PEM) of every federated trust domain.
    configured: BTreeMap<String, String>,
    fetched: BTreeMap<String, FetchedBundle>,
    status: BTreeMap<String, EndpointStatus>,
    /// A MeshConfig has been applied: `configured` is the last one's.
    applied: bool,
    /// From `load_kept`: the configured bundle when each kept bundle was
    /// fetched (`None`: none was configured).
    kept_configured: BTreeMap<String, Option<String>>,
    /// Where fetched bundles are kept, once `load_kept` has run.
    state_dir: Option<PathBuf>,
}

/// Federated bundles shared by the manifest compiler (which puts the
/// fetched ones in place) and the fetcher (which refreshes them).
#[derive(Default)]
pub struct Federation {
    inner: RwLock<Inner>,
    /// Woken when a fetch changed a bundle: the manifests are recompiled.
    changed: tokio::sync::Notify,
}

impl std::fmt::Debug for Federation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Federation")
            .field("status", &self.status())
            .finish()
    }
}

impl Federation {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Called with each mesh the compiler loads: records its bundle
    /// endpoints and puts the fetched bundles in place of the configured
    /// ones. A trust domain whose endpoint is gone from the MeshConfig
    /// loses its fetched bundle (SPIFFE Federation 6.3), and so does one
    /// whose configured bundle changed (a local update, SPIFFE Federation
    /// 4.2: the latest until the next refresh).
    pub fn apply(&self, mesh: &mut Mesh) {
        let mut inner = self.write();
        let updated = inner.locally_updated(&mesh.federated_bundles);
        inner.applied = true;
        inner.kept_configured.clear();
        inner.endpoints = mesh.bundle_endpoints.clone();
        inner.configured = mesh.federated_bundles.clone();
        let Inner {
            endpoints,
            fetched,
            status,
            state_dir,
            ..
        } = &mut *inner;
        for td in &updated {
            if fetched.remove(td).is_some() {
                tracing::info!(trust_domain = %td, "the configured bundle changed: it replaces the fetched one until the next fetch (SPIFFE Federation 4.2)");
            }
            if let Some(s) = status.get_mut(td) {
                s.fetched = false;
                s.sequence = None;
            }
            if let Some(dir) = state_dir {
                forget_kept(dir, td);
            }
        }
        fetched.retain(|td, _| {
            let keep = endpoints.contains_key(td);
            if let (false, Some(dir)) = (keep, &state_dir) {
                // "Deleting the local copy" (SPIFFE Federation 6.3): a
                // relationship set up again starts over.
                forget_kept(dir, td);
            }
            keep
        });
        status.retain(|td, _| endpoints.contains_key(td));
        for (td, endpoint) in endpoints.iter() {
            let s = status.entry(td.clone()).or_default();
            s.url.clone_from(&endpoint.url);
        }
        for (td, f) in fetched.iter() {
            if f.has_x509_roots() {
                mesh.federated_bundles.insert(td.clone(), f.pem.clone());
            } else {
                // The latest bundle has no X.509 roots: no root, neither
                // fetched before nor configured, vouches for the trust
                // domain's X509-SVIDs any more (fail closed).
                mesh.federated_bundles.remove(td);
            }
        }
    }

    /// Keeps a fetched document of `td` in `state_dir`, with the bundle
    /// configured for it now.
    fn keep(&self, state_dir: &Path, td: &str, json: &str) {
        let configured = self.read().configured.get(td).cloned().unwrap_or_default();
        keep(state_dir, td, json, &configured);
    }

    /// The bundle endpoints of the last MeshConfig that loaded.
    pub fn endpoints(&self) -> BTreeMap<String, BundleEndpoint> {
        self.read().endpoints.clone()
    }

    /// The X.509 roots (PEM) of federated trust domain `td` in force:
    /// fetched, else configured; none when the fetched bundle has none.
    pub fn current_pem(&self, td: &str) -> Option<String> {
        let inner = self.read();
        match inner.fetched.get(td) {
            Some(f) => f.has_x509_roots().then(|| f.pem.clone()),
            None => inner.configured.get(td).cloned(),
        }
    }

    pub fn fetched(&self, td: &str) -> Option<FetchedBundle> {
        self.read().fetched.get(td).cloned()
    }

    pub fn status(&self) -> BTreeMap<String, EndpointStatus> {
        self.read().status.clone()
    }

    /// Every federated trust domain of the last MeshConfig (configured
    /// bundles and bundle endpoints), with the bundle in force.
    pub fn relationships(&self) -> Vec<Relationship> {
        let inner = self.read();
        let names: std::collections::BTreeSet<&String> = inner
            .configured
            .keys()
            .chain(inner.endpoints.keys())
            .collect();
        names
            .into_iter()
            .map(|td| {
                let fetched_now = inner
                    .status
                    .get(td)
                    .is_some_and(|s| s.last_success_unix > 0);
                let (source, pem) = match (inner.fetched.get(td), inner.configured.get(td)) {
                    (Some(f), _) if fetched_now => (BundleSource::Fetched, Some(f.pem.as_str())),
                    (Some(f), _) => (BundleSource::Kept, Some(f.pem.as_str())),
                    (None, Some(pem)) => (BundleSource::Configured, Some(pem.as_str())),
                    (None, None) => (BundleSource::None, None),
                };
                let (roots, roots_expire_unix) = pem.map_or((0, None), roots_and_expiry);
                Relationship {
                    trust_domain: td.clone(),
                    endpoint: inner
                        .endpoints
                        .contains_key(td)
                        .then(|| inner.status.get(td).cloned().unwrap_or_default()),
                    source,
                    sequence: inner.fetched.get(td).and_then(|f| f.sequence),
                    roots,
                    roots_expire_unix,
                }
            })
            .collect()
    }

    /// Records a fetch of `td`'s bundle. An older sequence number than the
    /// one held is refused (SPIFFE Federation 4.2).
    pub fn record(&self, td: &str, result: Result<FetchedBundle, FetchError>) -> Recorded {
        let mut inner = self.write();
        let held = inner.fetched.get(td).and_then(|f| f.sequence);
        let result = result.and_then(|new| match (held, new.sequence) {
            (Some(held), Some(seq)) if seq < held => Err(FetchError::Stale { seq, held }),
            _ => Ok(new),
        });
        let in_force = inner
            .fetched
            .get(td)
            .map(|f| f.pem.clone())
            .or_else(|| inner.configured.get(td).cloned());
        let new_document = match (&result, inner.fetched.get(td)) {
            (Ok(new), Some(old)) => new.json != old.json,
            (Ok(_), None) => true,
            (Err(_), _) => false,
        };
        let status = inner.status.entry(td.to_string()).or_default();
        status.fetches += 1;
        status.last_attempt_unix = now_unix();
        match result {
            Ok(new) => {
                status.last_error = None;
                status.last_success_unix = status.last_attempt_unix;
                status.fetched = true;
                status.sequence = new.sequence;
                let recorded = Recorded {
                    changed: in_force.as_deref() != Some(new.pem.as_str()),
                    keep: new_document.then(|| new.json.clone()),
                };
                inner.fetched.insert(td.to_string(), new);
                recorded
            }
            Err(e) => {
                status.failures += 1;
                status.last_error = Some(e.to_string());
                Recorded::default()
            }
        }
    }

    /// Waits until a fetch changes a bundle in force.
    pub async fn changed(&self) {
        self.changed.notified().await;
    }

    fn notify_changed(&self) {
        self.changed.notify_one();
    }

    /// Loads the bundles kept in `state_dir` by an earlier run, so a
    /// self-serving endpoint is authenticated with the latest bundle, not
    /// the (possibly rotated-away) configured one.
    pub fn load_kept(&self, state_dir: &Path) {
        self.write().state_dir = Some(state_dir.to_path_buf());
        let dir = state_dir.join(FETCHED_DIR);
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return;
        };
        let mut inner = self.write();
        for entry in entries.flatten() {
            let path = entry.path();
            let Some(td) = path
                .file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.strip_suffix(".json"))
            else {
                continue;
            };
            match std::fs::read_to_string(&path)
                .map_err(|e| FetchError::Bundle(e.to_string()))
                .and_then(|json| FetchedBundle::parse(td, &json))
            {
                Ok(f) => {
                    inner.fetched.insert(td.to_string(), f);
                    let marker = dir.join(format!("{td}{CONFIGURED_SUFFIX}"));
                    if let Ok(configured) = std::fs::read_to_string(marker) {
                        let configured = (!configured.is_empty()).then_some(configured);
                        inner.kept_configured.insert(td.to_string(), configured);
                    }
                }
                Err(e) => {
                    tracing::warn!(path = %path.display(), error = %e, "ignoring a kept federated bundle");
                }
            }
        }
    }
}

impl Inner {
    /// The trust domains whose configured bundle in `configured` is a local
    /// update: set, and not the one configured before (by the last
    /// MeshConfig, or, first after a restart, when the kept bundle was
    /// fetched).
    fn locally_updated(&self, configured: &BTreeMap<String, String>) -> Vec<String> {
        configured
            .iter()
            .filter(|(td, pem)| {
                let before = if self.applied {
                    Some(self.configured.get(*td))
                } else {
                    self.kept_configured.get(*td).map(Option::as_ref)
                };
                before.is_some_and(|b| b != Some(*pem))
            })
            .map(|(td, _)| td.clone())
            .collect()
    }
}

/// Writes `name` in `dir` by write-then-rename.
fn write_file(dir: &Path, name: &str, text: &str) -> std::io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::create_dir_all(dir)
        .and_then(|()| std::fs::write(&tmp, text))
        .and_then(|()| std::fs::rename(&tmp, dir.join(name)))
}

fn keep(state_dir: &Path, td: &str, json: &str, configured: &str) {
    let dir = state_dir.join(FETCHED_DIR);
    // The document first: should the marker not follow, the bundle looks
    // superseded at the next start and the configured one is used, rather
    // than an older document passing for a newer local update's successor.
    let written = write_file(&dir, &format!("{td}.json"), json)
        .and_then(|()| write_file(&dir, &format!("{td}{CONFIGURED_SUFFIX}"), configured));
    if let Err(e) = written {
        tracing::warn!(dir = %dir.display(), trust_domain = %td, error = %e, "cannot keep the fetched bundle");
    }
}

/// Removes the kept bundle of `td`: superseded by a local update, or the
/// relationship ended.
fn forget_kept(state_dir: &Path, td: &str) {
    let dir = state_dir.join(FETCHED_DIR);
    for name in [format!("{td}.json"), format!("{td}{CONFIGURED_SUFFIX}")] {
        let path = dir.join(name);
        match std::fs::remove_file(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "cannot remove the superseded kept bundle");
            }
        }
    }
}

/// The mesh's own bundle, as the fetcher reads it.
pub type LocalBundle = arc_swap::ArcSwap<TrustBundle>;

/// What the fetcher needs besides the federation state.
#[derive(Clone)]
pub struct FetchContext {
    /// The mesh's own bundle in force, for endpoints whose SPIFFE ID is
    /// local: replaced at each CA change, so such an endpoint is verified
    /// against "the latest available SPIFFE bundle" of its trust domain
    /// (SPIFFE Federation 5.2.2.4), not the roots of the control plane's
    /// start.
    pub local: Arc<LocalBundle>,
    pub web_roots: WebRoots,
    pub state_dir: Option<PathBuf>,
    pub timeout: Duration,
}

/// Runs forever: polls each bundle endpoint at its bundle's refresh hint
/// (five minutes without one), retries a failed fetch after 1 s, doubling
/// up to the poll interval, and wakes the compiler when a bundle changed.
pub async fn refresh_loop(federation: Arc<Federation>, ctx: FetchContext) {
    // When each endpoint is due, the retry backoff, and the endpoint it was
    // scheduled for: one whose URL or profile changed is a new relationship
    // (SPIFFE Federation 6.1), fetched at once, not at the old one's
    // refresh hint (up to a day away).
    let mut due: BTreeMap<String, (Instant, Duration, BundleEndpoint)> = BTreeMap::new();
    loop {
        let endpoints = federation.endpoints();
        due.retain(|td, (_, _, scheduled)| endpoints.get(td) == Some(&*scheduled));
        let now = Instant::now();
        for (td, endpoint) in &endpoints {
            let (at, backoff, _) = due
                .entry(td.clone())
                .or_insert_with(|| (now, Duration::from_secs(1), endpoint.clone()));
            let (at, backoff) = (*at, *backoff);
            if at > now {
                continue;
            }
            let result = fetch::fetch(td, endpoint, &federation, &ctx).await;
            let interval = match &result {
                Ok(f) => f.poll_interval(),
                Err(_) => federation
                    .fetched(td)
                    .map_or(DEFAULT_REFRESH, |f| f.poll_interval()),
            };
            match &result {
                Ok(f) => {
                    tracing::debug!(trust_domain = %td, url = %endpoint.url, sequence = ?f.sequence, "fetched federated bundle");
                    due.insert(
                        td.clone(),
                        (
                            Instant::now() + interval,
                            Duration::from_secs(1),
                            endpoint.clone(),
                        ),
                    );
                }
                Err(e) => {
                    tracing::warn!(trust_domain = %td, url = %endpoint.url, error = %e, retry_in = ?backoff, "cannot fetch federated bundle; the last good one stays");
                    let next = (backoff * 2).min(interval);
                    due.insert(
                        td.clone(),
                        (Instant::now() + backoff, next, endpoint.clone()),
                    );
                }
            }
            let recorded = federation.record(td, result);
            if let (Some(dir), Some(json)) = (&ctx.state_dir, &recorded.keep) {
                federation.keep(dir, td, json);
            }
            if recorded.changed {
                if federation.fetched(td).is_some_and(|f| !f.has_x509_roots()) {
                    tracing::warn!(trust_domain = %td, url = %endpoint.url, "the federated bundle has no x509-svid entries: the trust domain does not support X509-SVID, and its SVIDs are refused from now on; recompiling");
                } else {
                    tracing::info!(trust_domain = %td, url = %endpoint.url, "federated bundle changed; recompiling");
                }
                federation.notify_changed();
            }
        }
        let next = due
            .values()
            .map(|(at, _, _)| *at)
            .min()
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(1));
        // Re-read the endpoints at least every second: a MeshConfig change
        // may add one.
        let wait = next
            .saturating_duration_since(Instant::now())
            .min(Duration::from_secs(1));
        tokio::time::sleep(wait).await;
    }
}
