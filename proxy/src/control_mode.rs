//! Running from the control plane instead of files: bootstrap the SVID with
//! the join token, wait for the first config, then follow every config the
//! control plane pushes with the same swap (and re-check of live
//! connections) that a config file change gets. A config that does not
//! compile is NACKed by the client and never applied.
use std::sync::Arc;
use std::time::Duration;

use palisade_api::ProxyConfig;
use tokio::sync::watch;

use crate::config_watch::ConfigSink;
use crate::control_client::{self, ClientError, ClientOptions, ControlClient};
use crate::state::Snapshot;

#[derive(Debug, thiserror::Error)]
pub enum ControlModeError {
    #[error("control plane: {0}")]
    Client(#[from] ClientError),
    #[error("no config from the control plane within {0:?} (is the workload in its manifests?)")]
    NoConfig(Duration),
    #[error("the control plane's config does not compile: {0}")]
    Compile(String),
}

fn compile(config: &ProxyConfig) -> Result<Snapshot, String> {
    let version = if config.version.is_empty() {
        config.compute_version()
    } else {
        config.version.clone()
    };
    Snapshot::compile(config.clone(), version).map_err(|e| e.to_string())
}

/// Bootstraps and waits for the first config; returns the running client and
/// the first snapshot.
pub async fn bootstrap(
    mut opts: ClientOptions,
    first_config_timeout: Duration,
) -> Result<(ControlClient, Snapshot), ControlModeError> {
    // NACK what the data plane could not apply.
    opts.validate = Some(Arc::new(|config: &ProxyConfig| compile(config).map(|_| ())));
    let mut client = control_client::start(opts).await?;
    let config = client
        .wait_for_config(first_config_timeout)
        .await
        .ok_or(ControlModeError::NoConfig(first_config_timeout))?;
    let snapshot = compile(&config).map_err(ControlModeError::Compile)?;
    Ok((client, snapshot))
}

/// Applies every config the control plane pushes until the client stops.
pub async fn follow(mut configs: watch::Receiver<Option<Arc<ProxyConfig>>>, sink: ConfigSink) {
    while configs.changed().await.is_ok() {
        let Some(config) = configs.borrow_and_update().clone() else {
            continue;
        };
        match compile(&config) {
            Ok(snapshot) => sink.apply(snapshot),
            Err(e) => {
                sink.metrics.config_reload_errors.inc();
                tracing::error!(error = %e, "pushed config does not compile; keeping the last good one");
            }
        }
    }
    tracing::warn!("control plane client stopped; keeping the last config");
}
