//! Loading the `ProxyConfig` file and reloading it on change (mtime poll)
//! or SIGHUP. A new version is compiled outside the swap, swapped in
//! atomically, and established connections are re-checked against it. A
//! file that fails to load is logged and ignored; the last good config stays.
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use palisade_api::ProxyConfig;
use palisade_identity::CredentialStore;

use crate::metrics::Metrics;
use crate::state::{SharedState, Snapshot};
use crate::tracker::ConnTracker;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is not a valid ProxyConfig: {source}")]
    Parse {
        path: PathBuf,
        source: palisade_api::ConfigError,
    },
    #[error("config file {path} cannot be applied: {source}")]
    Compile {
        path: PathBuf,
        source: crate::state::SnapshotError,
    },
}

/// Reads and compiles a config file.
pub fn load(path: &Path) -> Result<Snapshot, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let config = ProxyConfig::from_yaml_or_json(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })?;
    // The file's version if it has one, else the content hash.
    let version = if config.version.is_empty() {
        config.compute_version()
    } else {
        config.version.clone()
    };
    Snapshot::compile(config, version).map_err(|source| ConfigError::Compile {
        path: path.to_path_buf(),
        source,
    })
}

/// Where a new config version goes: the live state, the connections to
/// re-check, the metrics, the netfilter rules (if kept), and the TLS
/// verifiers' federated bundles.
#[derive(Clone)]
pub struct ConfigSink {
    pub state: SharedState,
    pub tracker: Arc<ConnTracker>,
    pub metrics: Arc<Metrics>,
    pub netfilter: bool,
    pub credentials: Arc<CredentialStore>,
    /// The connections and pooled mesh connections, for a change of roots.
    pub ctx: Arc<crate::ctx::Ctx>,
    pub trust: Arc<crate::trust_change::TrustWatch>,
}

impl ConfigSink {
    /// Swaps in a new snapshot, hands its federated bundles to the TLS
    /// verifiers, and closes what it denies. A version whose netfilter
    /// rules or federated bundles cannot be applied is not applied at all.
    pub fn apply(&self, snapshot: Snapshot) {
        let metrics = &self.metrics;
        if self.netfilter
            && let Err(e) = crate::capture::netfilter::apply(&snapshot.config)
        {
            // Fail closed: without its non-TCP rules the version is not applied.
            tracing::error!(error = %e, version = %snapshot.version, "cannot apply the UDP/SCTP netfilter rules; keeping the previous config");
            metrics.config_reload_errors.inc();
            return;
        }
        if let Err(e) = self
            .credentials
            .set_pushed_federation(snapshot.federation.clone())
        {
            tracing::error!(error = %e, version = %snapshot.version, "cannot take the config's federated bundles; keeping the previous config");
            metrics.config_reload_errors.inc();
            return;
        }
        let snapshot = Arc::new(snapshot);
        let old = self.state.swap(snapshot.clone());
        metrics.set_config_version(&snapshot.version);
        if old.version == snapshot.version {
            return;
        }
        let closed = self.tracker.recheck(&snapshot, metrics)
            + self.trust.recheck_if_changed(&self.ctx, &self.credentials);
        tracing::info!(
            version = %snapshot.version,
            previous = %old.version,
            closed_connections = closed,
            "config swapped"
        );
    }
}

/// What identifies one version of the file on disk (mtime and size).
pub type Stamp = Option<(SystemTime, u64)>;

/// Taken before the first load, so a change made while starting is seen.
pub fn stamp(path: &Path) -> Stamp {
    let md = std::fs::metadata(path).ok()?;
    Some((md.modified().ok()?, md.len()))
}

/// Watches `path` until the task is dropped.
pub async fn watch(path: PathBuf, sink: ConfigSink, poll: Duration, loaded: Stamp) {
    let mut last = loaded;
    let mut hup = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::warn!(error = %e, "cannot listen for SIGHUP; polling the config file only");
            None
        }
    };
    let mut tick = tokio::time::interval(poll);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let forced = tokio::select! {
            _ = tick.tick() => false,
            Some(()) = async { match hup.as_mut() { Some(h) => h.recv().await, None => None } } => true,
        };
        let now = stamp(&path);
        if !forced && now == last {
            continue;
        }
        last = now;
        match load(&path) {
            Ok(snapshot) => sink.apply(snapshot),
            Err(e) => {
                sink.metrics.config_reload_errors.inc();
                tracing::error!(error = %e, "config reload failed; keeping the last good config");
            }
        }
    }
}
