//! Reading the cluster from a Kubernetes API server: every kind the loader
//! knows is listed and watched cluster-wide (kube's watcher, which relists
//! when a watch expires), and the objects are mirrored as manifests into a
//! directory the control plane compiles like any other. The same loader
//! then validates them, and the directory shows exactly what the control
//! plane saw (`palisade check --config` and `lint` run on it).
//!
//! Fail closed: nothing is written until every kind has been listed in
//! full, so the first compile never sees the pods without their policies.
//! A relist replaces a kind's objects only when it is complete. While the
//! API server is away, the mirror keeps the last state it saw.
//!
//! Kinds served by CRDs (Istio's, Palisade's `MeshConfig`) may be missing:
//! a cluster without the CRD has none of them. Whether the CRD exists is
//! asked again every `crd_probe_interval`, so installing Istio's CRDs later
//! needs no restart.
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
use kube::api::{Api, DynamicObject, ListParams};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use tokio::sync::mpsc;

pub mod files;
pub mod kinds;

use files::MirrorDir;
use kinds::{KINDS, Kind};

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("Kubernetes client configuration: {0}")]
    Config(String),
    #[error("writing the mirror directory {dir}: {source}")]
    Write {
        dir: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the API server connection ended before every kind was listed")]
    Ended,
}

/// How the mirror runs.
#[derive(Debug, Clone)]
pub struct MirrorOptions {
    /// Where the manifests are written.
    pub dir: PathBuf,
    /// How often a missing CRD is looked for again.
    pub crd_probe_interval: Duration,
    /// How long changes are gathered before the directory is rewritten.
    pub settle: Duration,
}

impl MirrorOptions {
    pub fn new(dir: PathBuf) -> Self {
        Self {
            dir,
            crd_probe_interval: Duration::from_secs(30),
            settle: Duration::from_millis(50),
        }
    }
}

/// Each kind's state, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KindStatus {
    /// Listed in full at least once (or known to be absent).
    pub synced: bool,
    /// The API server does not serve it (no CRD).
    pub absent: bool,
    pub objects: usize,
    /// The last error from listing or watching it.
    pub last_error: Option<String>,
}

/// A running mirror; dropping it stops the watches.
pub struct Mirror {
    tasks: Vec<tokio::task::JoinHandle<()>>,
    status: Arc<Mutex<BTreeMap<String, KindStatus>>>,
    pub dir: PathBuf,
}

impl Drop for Mirror {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

impl Mirror {
    /// Each kind's state, by `plural.group`.
    pub fn status(&self) -> BTreeMap<String, KindStatus> {
        self.status.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// A function giving, at each call, the kinds that are not simply
    /// mirrored: not served (no CRD), not listed yet, or failing.
    pub fn notes(&self) -> impl Fn() -> Vec<String> + Send + Sync + 'static {
        let status = self.status.clone();
        move || {
            let Ok(status) = status.lock() else {
                return Vec::new();
            };
            status
                .iter()
                .filter_map(|(name, s)| {
                    if s.absent {
                        Some(format!(
                            "{name}: not served by the API server (its CRD is not installed): none"
                        ))
                    } else if let Some(e) = &s.last_error {
                        Some(format!("{name}: {e} (the last state stays)"))
                    } else if !s.synced {
                        Some(format!("{name}: not listed yet"))
                    } else {
                        None
                    }
                })
                .collect()
        }
    }
}

/// A client from `kubeconfig`, else as kubectl finds one (`KUBECONFIG`,
/// `~/.kube/config`, or the pod's service account inside a cluster).
pub async fn client(kubeconfig: Option<&std::path::Path>) -> Result<kube::Client, MirrorError> {
    let config = match kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| MirrorError::Config(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| MirrorError::Config(format!("{}: {e}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| MirrorError::Config(e.to_string()))?,
    };
    kube::Client::try_from(config).map_err(|e| MirrorError::Config(e.to_string()))
}

/// What a kind's task reports to the writer.
enum Update {
    /// The kind's complete set of objects (after a full list).
    Replace(usize, BTreeMap<PathBuf, Vec<u8>>),
    Apply(usize, PathBuf, Vec<u8>),
    Delete(usize, PathBuf),
    /// The API server does not serve the kind.
    Absent(usize),
}

/// Starts mirroring and returns once every kind has been listed and the
/// directory written.
pub async fn start(client: kube::Client, opts: MirrorOptions) -> Result<Mirror, MirrorError> {
    let status: Arc<Mutex<BTreeMap<String, KindStatus>>> = Arc::new(Mutex::new(
        KINDS
            .iter()
            .map(|k| (k.resource_name(), KindStatus::default()))
            .collect(),
    ));
    let (tx, rx) = mpsc::channel(1024);
    let mut tasks: Vec<tokio::task::JoinHandle<()>> = KINDS
        .iter()
        .enumerate()
        .map(|(i, kind)| {
            tokio::spawn(watch_kind(
                client.clone(),
                i,
                *kind,
                tx.clone(),
                status.clone(),
                opts.crd_probe_interval,
            ))
        })
        .collect();
    drop(tx);
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    tasks.push(tokio::spawn(write_loop(
        rx,
        MirrorDir::new(opts.dir.clone()),
        opts.settle,
        status.clone(),
        ready_tx,
    )));
    let mirror = Mirror {
        tasks,
        status,
        dir: opts.dir,
    };
    match ready_rx.await {
        Ok(Ok(())) => Ok(mirror),
        Ok(Err(e)) => Err(e),
        Err(_) => Err(MirrorError::Ended),
    }
}

fn set_status(
    status: &Mutex<BTreeMap<String, KindStatus>>,
    kind: &Kind,
    f: impl FnOnce(&mut KindStatus),
) {
    if let Ok(mut s) = status.lock() {
        f(s.entry(kind.resource_name()).or_default());
    }
}

/// Lists and watches one kind for as long as the mirror runs.
async fn watch_kind(
    client: kube::Client,
    index: usize,
    kind: Kind,
    tx: mpsc::Sender<Update>,
    status: Arc<Mutex<BTreeMap<String, KindStatus>>>,
    crd_probe_interval: Duration,
) {
    let ar = kind.api_resource();
    let api: Api<DynamicObject> = Api::all_with(client, &ar);
    if !kind.built_in {
        // A CRD kind: is it served at all?
        let mut reported_absent = false;
        loop {
            match api.list(&ListParams::default().limit(1)).await {
                Ok(_) => break,
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    if !reported_absent {
                        tracing::info!(kind = kind.kind, resource = %kind.resource_name(), "not served by the API server (its CRD is not installed): none; looking again every {crd_probe_interval:?}");
                        set_status(&status, &kind, |s| {
                            s.absent = true;
                            s.synced = true;
                        });
                        if tx.send(Update::Absent(index)).await.is_err() {
                            return;
                        }
                        reported_absent = true;
                    }
                    tokio::time::sleep(crd_probe_interval).await;
                }
                Err(e) => {
                    tracing::warn!(kind = kind.kind, error = %e, "cannot list; retrying");
                    set_status(&status, &kind, |s| s.last_error = Some(e.to_string()));
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
        if reported_absent {
            tracing::info!(
                kind = kind.kind,
                "now served by the API server; watching it"
            );
            set_status(&status, &kind, |s| s.absent = false);
        }
    }
    let mut events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .boxed();
    let mut init: Option<BTreeMap<PathBuf, Vec<u8>>> = None;
    while let Some(event) = events.next().await {
        let update = match event {
            Err(e) => {
                tracing::warn!(kind = kind.kind, error = %e, "watch failed; the last state stays while it retries");
                set_status(&status, &kind, |s| s.last_error = Some(e.to_string()));
                continue;
            }
            Ok(Event::Init) => {
                init = Some(BTreeMap::new());
                continue;
            }
            Ok(Event::InitApply(obj)) => {
                if let (Some(buffer), Some((path, bytes))) = (init.as_mut(), manifest(&kind, obj)) {
                    buffer.insert(path, bytes);
                }
                continue;
            }
            Ok(Event::InitDone) => {
                let objects = init.take().unwrap_or_default();
                set_status(&status, &kind, |s| {
                    s.synced = true;
                    s.last_error = None;
                });
                Update::Replace(index, objects)
            }
            Ok(Event::Apply(obj)) => match manifest(&kind, obj) {
                Some((path, bytes)) => Update::Apply(index, path, bytes),
                None => continue,
            },
            Ok(Event::Delete(obj)) => match manifest(&kind, obj) {
                Some((path, _)) => Update::Delete(index, path),
                None => continue,
            },
        };
        if tx.send(update).await.is_err() {
            return;
        }
    }
}

/// An object as a manifest: its file and its JSON, with `apiVersion` and
/// `kind` set (list items come without them) and `managedFields` dropped.
fn manifest(kind: &Kind, obj: DynamicObject) -> Option<(PathBuf, Vec<u8>)> {
    let name = obj.metadata.name.clone()?;
    let namespace = obj.metadata.namespace.clone();
    let mut value = serde_json::to_value(&obj).ok()?;
    let map = value.as_object_mut()?;
    map.insert("apiVersion".into(), kind.api_version().into());
    map.insert("kind".into(), kind.kind.into());
    if let Some(meta) = map.get_mut("metadata").and_then(|m| m.as_object_mut()) {
        meta.remove("managedFields");
    }
    let path = files::object_path(
        kind.kind,
        kind.namespaced
            .then_some(namespace.as_deref().unwrap_or("default")),
        &name,
    );
    let mut bytes = serde_json::to_vec_pretty(&value).ok()?;
    bytes.push(b'\n');
    Some((path, bytes))
}

/// Gathers the kinds' updates and rewrites the directory: first when every
/// kind is synced, then after each burst of changes.
async fn write_loop(
    mut rx: mpsc::Receiver<Update>,
    mut dir: MirrorDir,
    settle: Duration,
    status: Arc<Mutex<BTreeMap<String, KindStatus>>>,
    ready: tokio::sync::oneshot::Sender<Result<(), MirrorError>>,
) {
    let mut objects: Vec<BTreeMap<PathBuf, Vec<u8>>> = vec![BTreeMap::new(); KINDS.len()];
    let mut synced = vec![false; KINDS.len()];
    let mut ready = Some(ready);
    let mut waiting_logged = tokio::time::Instant::now();
    loop {
        let first = match ready {
            // Before the first write, log which kinds are still missing.
            Some(_) => match tokio::time::timeout(Duration::from_secs(10), rx.recv()).await {
                Ok(u) => u,
                Err(_) => {
                    let missing: Vec<String> = KINDS
                        .iter()
                        .zip(&synced)
                        .filter(|(_, s)| !**s)
                        .map(|(k, _)| k.resource_name())
                        .collect();
                    tracing::warn!(waiting_for = ?missing, since = ?waiting_logged.elapsed(), "waiting for the API server to list every kind; nothing is compiled before");
                    waiting_logged = tokio::time::Instant::now();
                    continue;
                }
            },
            None => rx.recv().await,
        };
        let Some(first) = first else {
            if let Some(r) = ready.take() {
                let _ = r.send(Err(MirrorError::Ended));
            }
            return;
        };
        apply(&mut objects, &mut synced, first);
        // Take whatever else arrives within the settle time as one change.
        let deadline = tokio::time::Instant::now() + settle;
        while let Ok(Some(u)) = tokio::time::timeout_at(deadline, rx.recv()).await {
            apply(&mut objects, &mut synced, u);
        }
        if !synced.iter().all(|s| *s) {
            continue;
        }
        let desired: BTreeMap<PathBuf, Vec<u8>> = objects
            .iter()
            .flat_map(|m| m.iter().map(|(p, b)| (p.clone(), b.clone())))
            .collect();
        if let Ok(mut s) = status.lock() {
            for (k, m) in KINDS.iter().zip(&objects) {
                s.entry(k.resource_name()).or_default().objects = m.len();
            }
        }
        match dir.sync(&desired) {
            Ok(s) => {
                if s.written + s.removed > 0 {
                    tracing::info!(written = s.written, removed = s.removed, objects = desired.len(), dir = %dir.root().display(), "mirrored the API server's objects");
                }
                if let Some(r) = ready.take() {
                    let _ = r.send(Ok(()));
                }
            }
            Err(source) => {
                let e = MirrorError::Write {
                    dir: dir.root().display().to_string(),
                    source,
                };
                tracing::error!(error = %e, "cannot write the mirror; the control plane keeps its last state");
                if let Some(r) = ready.take() {
                    let _ = r.send(Err(e));
                    return;
                }
            }
        }
    }
}

fn apply(objects: &mut [BTreeMap<PathBuf, Vec<u8>>], synced: &mut [bool], u: Update) {
    match u {
        Update::Replace(i, all) => {
            objects[i] = all;
            synced[i] = true;
        }
        Update::Apply(i, path, bytes) => {
            objects[i].insert(path, bytes);
        }
        Update::Delete(i, path) => {
            objects[i].remove(&path);
        }
        Update::Absent(i) => {
            objects[i].clear();
            synced[i] = true;
        }
    }
}
