//! The connected proxies, as `palisade status` shows them: who is connected,
//! with which identity, what was sent and what was acknowledged.
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use rustls::pki_types::CertificateDer;
use std::sync::atomic::{AtomicU64, Ordering};

use palisade_api::stream::ProxyStatus;

use super::pki::now_unix;

/// One watch stream's bookkeeping.
#[derive(Default)]
pub struct Registry {
    next_id: AtomicU64,
    streams: Mutex<BTreeMap<u64, (ProxyStatus, Chain)>>,
}

/// The certificate chain a proxy presented (leaf first).
pub type Chain = Arc<[CertificateDer<'static>]>;

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers a new stream; returns its id for later updates.
    pub fn connect(
        &self,
        workload: &str,
        identity: &str,
        remote: &str,
        cert_expires_unix: i64,
        chain: Chain,
    ) -> u64 {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let status = ProxyStatus {
            workload: workload.to_owned(),
            identity: identity.to_owned(),
            remote_addr: remote.to_owned(),
            cert_expires_unix,
            connected_since_unix: now_unix(),
            ..ProxyStatus::default()
        };
        self.lock().insert(id, (status, chain));
        id
    }

    pub fn sent(&self, id: u64, version: &str) {
        if let Some((s, _)) = self.lock().get_mut(&id) {
            s.sent_version = version.to_owned();
        }
    }

    pub fn acked(&self, id: u64, version: &str) {
        if let Some((s, _)) = self.lock().get_mut(&id) {
            s.applied_version = version.to_owned();
            s.last_response = format!("ACK {version}");
            s.last_response_unix = now_unix();
        }
    }

    pub fn nacked(&self, id: u64, version: &str, error: &str) {
        if let Some((s, _)) = self.lock().get_mut(&id) {
            s.last_response = format!("NACK {version}: {error}");
            s.last_response_unix = now_unix();
        }
    }

    /// The proxy already holds `version` from an earlier stream.
    pub fn resumed(&self, id: u64, version: &str) {
        if let Some((s, _)) = self.lock().get_mut(&id) {
            s.applied_version = version.to_owned();
            s.sent_version = version.to_owned();
        }
    }

    pub fn disconnect(&self, id: u64) {
        self.lock().remove(&id);
    }

    pub fn snapshot(&self) -> Vec<ProxyStatus> {
        self.lock().values().map(|(s, _)| s.clone()).collect()
    }

    /// Every stream's status with the chain its proxy presented.
    pub fn snapshot_with_chains(&self) -> Vec<(ProxyStatus, Chain)> {
        self.lock().values().cloned().collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, (ProxyStatus, Chain)>> {
        self.streams.lock().unwrap_or_else(|p| p.into_inner())
    }
}
