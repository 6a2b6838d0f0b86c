//! Reloading the SVID directory when `palisade cert issue` (or a rotation
//! job) rewrites it: the new credentials go into the store that the rustls
//! configs read at every handshake, so new connections use them and live
//! ones are untouched, unless the roots changed and no longer vouch for
//! their peer (`after` re-checks them, see `crate::trust_change`). The same
//! goes for the federated trust bundles in its `federated/` folder. A
//! half-written or invalid directory is ignored.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use palisade_identity::federation::FEDERATED_DIR;
use palisade_identity::{CredentialStore, Credentials};

/// Newest mtime of the three files, of the federated bundles' folder
/// (a bundle added or removed) and of each file in it.
pub fn stamp(dir: &Path) -> Option<SystemTime> {
    let federated = dir.join(FEDERATED_DIR);
    let federated_files = std::fs::read_dir(&federated)
        .into_iter()
        .flatten()
        .filter_map(|entry| entry.ok().map(|e| e.path()));
    ["svid.pem", "svid.key", "bundle.pem"]
        .iter()
        .map(|f| dir.join(f))
        .chain(std::iter::once(federated.clone()))
        .chain(federated_files)
        .filter_map(|path| std::fs::metadata(path).and_then(|m| m.modified()).ok())
        .max()
}

pub async fn watch(
    dir: PathBuf,
    store: Arc<CredentialStore>,
    poll: Duration,
    loaded: Option<SystemTime>,
    after: impl Fn() + Send + 'static,
) {
    let mut last = loaded;
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let now = stamp(&dir);
        if now == last {
            continue;
        }
        match Credentials::load_dir(&dir) {
            Ok(creds) => {
                last = now;
                store.update(creds);
                after();
            }
            // Possibly mid-rewrite: try again next tick, keep the old SVID.
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "SVID reload failed; keeping the current SVID")
            }
        }
    }
}
