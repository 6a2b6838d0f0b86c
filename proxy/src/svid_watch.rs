//! Reloading the SVID directory when `palisade cert issue` (or a rotation
//! job) rewrites it: the new credentials go into the store that the rustls
//! configs read at every handshake, so new connections use them and live
//! ones are untouched. A half-written or invalid directory is ignored.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use palisade_identity::{CredentialStore, Credentials};

/// Newest mtime of the three files.
pub fn stamp(dir: &Path) -> Option<SystemTime> {
    ["svid.pem", "svid.key", "bundle.pem"]
        .iter()
        .filter_map(|f| {
            std::fs::metadata(dir.join(f))
                .and_then(|m| m.modified())
                .ok()
        })
        .max()
}

pub async fn watch(
    dir: PathBuf,
    store: Arc<CredentialStore>,
    poll: Duration,
    loaded: Option<SystemTime>,
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
            }
            // Possibly mid-rewrite: try again next tick, keep the old SVID.
            Err(e) => {
                tracing::warn!(dir = %dir.display(), error = %e, "SVID reload failed; keeping the current SVID")
            }
        }
    }
}
