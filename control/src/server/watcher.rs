//! Watches the manifest directory and recompiles on change.
//!
//! Polls a fingerprint (path, size, mtime of every manifest file) and waits
//! for the directory to stay unchanged for the debounce period, so an editor's
//! write-rename sequence or a `cp -r` compiles once. Polling needs no inotify
//! and behaves the same on every filesystem.
use std::collections::BTreeMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use palisade_api::ProxyConfig;

use super::state::{ApplyReport, MeshState};

/// Compiles a manifest directory into `NS/POD -> ProxyConfig`, or the list of
/// problems (file, object, field) that stopped it.
pub type CompileFn =
    Arc<dyn Fn(&Path) -> Result<BTreeMap<String, ProxyConfig>, Vec<String>> + Send + Sync>;

/// The compiler of this crate: load the manifests, compile every workload.
pub fn manifest_compiler() -> CompileFn {
    manifest_compiler_with(super::federation::Federation::new())
}

/// [`manifest_compiler`] with the bundles `federation` fetched from bundle
/// endpoints in place of the configured ones.
pub fn manifest_compiler_with(federation: Arc<super::federation::Federation>) -> CompileFn {
    Arc::new(move |dir: &Path| {
        let mut cluster = crate::load::load_dir(dir)
            .map_err(|errs| errs.0.iter().map(ToString::to_string).collect::<Vec<_>>())?;
        federation.apply(&mut cluster.mesh);
        let compiler = crate::compile::Compiler::new(&cluster);
        Ok(compiler
            .compile_all()
            .into_iter()
            .map(|c| (format!("{}/{}", c.workload.namespace, c.workload.name), c))
            .collect())
    })
}

/// Fingerprint of the manifest files under `dir`.
pub fn fingerprint(dir: &Path) -> u64 {
    let mut h = DefaultHasher::new();
    for entry in walkdir::WalkDir::new(dir)
        .sort_by_file_name()
        .into_iter()
        .filter_map(Result::ok)
    {
        let path = entry.path();
        let is_manifest = path
            .extension()
            .and_then(|e| e.to_str())
            .is_some_and(|e| matches!(e, "yaml" | "yml" | "json"));
        if !is_manifest {
            continue;
        }
        path.hash(&mut h);
        if let Ok(md) = entry.metadata() {
            md.len().hash(&mut h);
            if let Ok(m) = md.modified() {
                m.hash(&mut h);
            }
        }
    }
    h.finish()
}

/// Where the control plane publishes `NS/POD -> SPIFFE ID` for
/// `palisade token create` (which writes the identity into the token file).
pub const IDENTITIES_FILE: &str = "identities.json";

/// Compiles `dir` off the async runtime and applies the result. A failed or
/// panicking compile keeps the last good state and records the errors.
/// With `state_dir`, the workload identities are written there.
pub async fn compile_and_apply(
    dir: PathBuf,
    compile: CompileFn,
    state: &MeshState,
    state_dir: Option<&Path>,
) -> Result<ApplyReport, Vec<String>> {
    let result = tokio::task::spawn_blocking(move || compile(&dir))
        .await
        .unwrap_or_else(|e| Err(vec![format!("compiler crashed: {e}")]));
    match result {
        Ok(configs) => {
            let report = state.apply(configs);
            tracing::info!(
                changed = report.changed.len(),
                added = report.added.len(),
                removed = report.removed.len(),
                "manifests compiled"
            );
            if let Some(sd) = state_dir {
                write_identities(sd, state);
            }
            Ok(report)
        }
        Err(errors) => {
            for e in &errors {
                tracing::error!(error = %e, "manifest error; keeping the last good state");
            }
            state.record_failure(errors.clone());
            Err(errors)
        }
    }
}

fn write_identities(state_dir: &Path, state: &MeshState) {
    let path = state_dir.join(IDENTITIES_FILE);
    let tmp = state_dir.join(".identities.json.tmp");
    let body = serde_json::to_vec_pretty(&state.identities()).unwrap_or_default();
    if let Err(e) = std::fs::write(&tmp, body).and_then(|()| std::fs::rename(&tmp, &path)) {
        tracing::warn!(path = %path.display(), error = %e, "cannot write workload identities");
    }
}

/// Runs forever: poll, debounce, recompile. `compiled` is the fingerprint
/// taken before the last compile, so a change made while that compile ran
/// (or before this loop first looked) is compiled too.
pub async fn watch_loop(
    dir: PathBuf,
    compile: CompileFn,
    state: Arc<MeshState>,
    state_dir: Option<PathBuf>,
    poll: Duration,
    debounce: Duration,
    compiled: u64,
) {
    let fp_of = |d: PathBuf| async move {
        tokio::task::spawn_blocking(move || fingerprint(&d))
            .await
            .unwrap_or(0)
    };
    let mut last = compiled;
    loop {
        tokio::time::sleep(poll).await;
        let now = fp_of(dir.clone()).await;
        if now == last {
            continue;
        }
        // Debounce: wait until the directory holds still.
        let mut settled = now;
        loop {
            tokio::time::sleep(debounce).await;
            let again = fp_of(dir.clone()).await;
            if again == settled {
                break;
            }
            settled = again;
        }
        last = settled;
        let _ = compile_and_apply(dir.clone(), compile.clone(), &state, state_dir.as_deref()).await;
    }
}
