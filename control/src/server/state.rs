//! The mesh state the control plane serves: the last good compiled config of
//! every workload, one `watch` channel per workload that subscribers follow,
//! and the outcome of the last compile.
//!
//! Applying a compile result compares versions per workload and sends only on
//! the channels whose version changed, so a change that affects one workload
//! is pushed to that workload alone. A failed compile changes nothing but the
//! reported errors: the last good state keeps being served.
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, RwLock};

use palisade_api::ProxyConfig;
use palisade_api::stream::ConfigUpdate;
use sha2::{Digest, Sha256};
use tokio::sync::watch;

use super::pki::now_unix;

/// What the last compile did.
#[derive(Debug, Clone, Default)]
pub struct CompileStatus {
    pub last_compile_unix: i64,
    pub last_good_compile_unix: i64,
    pub ok: bool,
    pub errors: Vec<String>,
}

/// Which workloads one applied compile touched.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ApplyReport {
    pub changed: Vec<String>,
    pub added: Vec<String>,
    pub removed: Vec<String>,
}

/// The value a workload's channel carries: its current update, or `None`
/// while the workload is not (or no longer) in the manifests.
pub type Current = Option<Arc<ConfigUpdate>>;

struct Entry {
    identity: String,
    update: Arc<ConfigUpdate>,
}

impl Entry {
    /// Already serving this version for this identity: nothing to push.
    fn serves(&self, version: &str, identity: &str) -> bool {
        self.update.version == version && self.identity == identity
    }
}

/// What every config carries of the CA in force: the mesh's roots and the
/// certificate that signs SVIDs now (`mesh.trustBundle`, `mesh.svidSigner`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct IdentityStamp {
    trust_bundle: String,
    svid_signer: String,
    /// SHA-256 of both, hex: folded into each stamped config's version.
    digest: String,
}

impl IdentityStamp {
    pub fn new(trust_bundle: String, svid_signer: String) -> Self {
        let mut h = Sha256::new();
        h.update(trust_bundle.as_bytes());
        h.update(b"\n");
        h.update(svid_signer.as_bytes());
        Self {
            trust_bundle,
            svid_signer,
            digest: hex::encode(h.finalize()),
        }
    }

    /// Adds the stamp to `config`, whose version (the compiler's content
    /// hash) becomes a hash of that version and the stamp: a new CA gives
    /// every config a new version without serializing each one again.
    fn onto(&self, config: &mut ProxyConfig) {
        if *self == Self::default() {
            return;
        }
        config.mesh.trust_bundle.clone_from(&self.trust_bundle);
        config.mesh.svid_signer.clone_from(&self.svid_signer);
        let mut h = Sha256::new();
        h.update(config.version.as_bytes());
        h.update(b"\n");
        h.update(self.digest.as_bytes());
        config.version = hex::encode(&h.finalize()[..8]);
    }
}

#[derive(Default)]
struct Inner {
    entries: HashMap<String, Entry>,
    channels: HashMap<String, watch::Sender<Current>>,
    compile: CompileStatus,
    /// The last good compile as the compiler made it, so a CA change can be
    /// stamped onto it without compiling again (the manifests may be
    /// broken by then; the configs in force must still get the new roots).
    compiled: BTreeMap<String, ProxyConfig>,
    stamp: IdentityStamp,
}

/// Shared, cheap to read; written once per compile.
#[derive(Default)]
pub struct MeshState {
    inner: RwLock<Inner>,
    /// Serializes `apply` and `set_identity`, so a compile stamped with
    /// the old CA can never land after the new CA's restamp.
    publish: std::sync::Mutex<()>,
}

impl MeshState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Applies a successful compile: `configs` maps `NS/POD` to its config.
    /// Configs with an empty `version` get a content hash as version.
    pub fn apply(&self, configs: BTreeMap<String, ProxyConfig>) -> ApplyReport {
        let _publishing = self.publish.lock().unwrap_or_else(|p| p.into_inner());
        let stamp = {
            let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
            inner.compiled = configs.clone();
            inner.stamp.clone()
        };
        let report = self.publish_stamped(configs, &stamp);
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        let now = now_unix();
        inner.compile = CompileStatus {
            last_compile_unix: now,
            last_good_compile_unix: now,
            ok: report.1.is_empty(),
            errors: report.1,
        };
        report.0
    }

    /// Stamps the CA in force onto every config and pushes those that
    /// changed: the last good compile, without compiling again.
    pub fn set_identity(&self, stamp: IdentityStamp) -> ApplyReport {
        let _publishing = self.publish.lock().unwrap_or_else(|p| p.into_inner());
        let compiled = {
            let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
            inner.stamp = stamp.clone();
            inner.compiled.clone()
        };
        if compiled.is_empty() {
            return ApplyReport::default();
        }
        self.publish_stamped(compiled, &stamp).0
    }

    /// The stamp configs carry now.
    pub fn identity(&self) -> IdentityStamp {
        self.inner
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .stamp
            .clone()
    }

    /// Publishes `configs` as the whole served set; returns the report and
    /// the configs that could not be serialized.
    fn publish_stamped(
        &self,
        mut configs: BTreeMap<String, ProxyConfig>,
        stamp: &IdentityStamp,
    ) -> (ApplyReport, Vec<String>) {
        // Serialize outside the lock; only the swap happens under it. A
        // config already served at its version is not serialized again.
        for config in configs.values_mut() {
            if config.version.is_empty() {
                config.version = content_version(config);
            }
            stamp.onto(config);
        }
        let (unchanged, configs): (Vec<_>, Vec<_>) = {
            let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
            configs.into_iter().partition(|(workload, config)| {
                inner
                    .entries
                    .get(workload)
                    .is_some_and(|e| e.serves(&config.version, &config.workload.identity))
            })
        };
        let mut seen: HashSet<String> = unchanged.into_iter().map(|(w, _)| w).collect();
        let mut prepared = Vec::with_capacity(configs.len());
        let mut failed = Vec::new();
        for (workload, config) in configs {
            match ConfigUpdate::from_config(&workload, &config) {
                Ok(update) => {
                    prepared.push((workload, config.workload.identity, update));
                }
                Err(e) => failed.push(format!("{workload}: cannot serialize config: {e}")),
            }
        }
        let mut report = ApplyReport::default();
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        for (workload, identity, update) in prepared {
            seen.insert(workload.clone());
            let same = inner
                .entries
                .get(&workload)
                .is_some_and(|e| e.serves(&update.version, &identity));
            if same {
                continue;
            }
            let update = Arc::new(update);
            match inner.entries.insert(
                workload.clone(),
                Entry {
                    identity,
                    update: update.clone(),
                },
            ) {
                Some(_) => report.changed.push(workload.clone()),
                None => report.added.push(workload.clone()),
            }
            let tx = inner
                .channels
                .entry(workload)
                .or_insert_with(|| watch::channel(None).0);
            tx.send_replace(Some(update));
        }
        let gone: Vec<String> = inner
            .entries
            .keys()
            .filter(|w| !seen.contains(*w))
            .cloned()
            .collect();
        for workload in gone {
            inner.entries.remove(&workload);
            if let Some(tx) = inner.channels.get(&workload) {
                tx.send_replace(None);
            }
            report.removed.push(workload);
        }
        (report, failed)
    }

    /// Records a failed compile; the served state stays as it was.
    pub fn record_failure(&self, errors: Vec<String>) {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner.compile.last_compile_unix = now_unix();
        inner.compile.ok = false;
        inner.compile.errors = errors;
    }

    /// The SPIFFE ID the manifests give `workload`, if it exists.
    pub fn identity_of(&self, workload: &str) -> Option<String> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.entries.get(workload).map(|e| e.identity.clone())
    }

    /// Follows `workload`'s config. The receiver's current value is the
    /// config to send first.
    pub fn subscribe(&self, workload: &str) -> watch::Receiver<Current> {
        let mut inner = self.inner.write().unwrap_or_else(|p| p.into_inner());
        inner
            .channels
            .entry(workload.to_owned())
            .or_insert_with(|| watch::channel(None).0)
            .subscribe()
    }

    pub fn compile_status(&self) -> CompileStatus {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.compile.clone()
    }

    pub fn workload_count(&self) -> usize {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner.entries.len()
    }

    /// `NS/POD -> SPIFFE ID` of every workload served.
    pub fn identities(&self) -> BTreeMap<String, String> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner
            .entries
            .iter()
            .map(|(w, e)| (w.clone(), e.identity.clone()))
            .collect()
    }

    /// The current version of `workload`'s config.
    pub fn version_of(&self, workload: &str) -> Option<String> {
        let inner = self.inner.read().unwrap_or_else(|p| p.into_inner());
        inner
            .entries
            .get(workload)
            .map(|e| e.update.version.clone())
    }
}

/// Content hash used when the compiler left `version` empty.
pub fn content_version(config: &ProxyConfig) -> String {
    let mut c = config.clone();
    c.version.clear();
    let bytes = serde_json::to_vec(&c).unwrap_or_default();
    hex::encode(&Sha256::digest(&bytes)[..12])
}
