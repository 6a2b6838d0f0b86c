//! The sidecar's identity as metrics, read when `/metrics` is scraped: when
//! its SVID expires, how many roots of its own trust domain it trusts (two
//! during a CA rotation), and in control mode how many renewals it made
//! and whether the control plane stream is up. The figures a platform team
//! alerts on before certificates lapse (Linkerd's
//! `identity_cert_expiration_timestamp_seconds`).
use std::sync::OnceLock;
use std::sync::atomic::AtomicI64;

use palisade_identity::CredentialStore;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use tokio::sync::watch;

use crate::control_client::ClientStatus;

/// The identity gauges and the sources they are read from.
#[derive(Default)]
pub struct IdentityMetrics {
    svid_expiry: Gauge<i64, AtomicI64>,
    trust_bundle_roots: Gauge<i64, AtomicI64>,
    svid_renewals: Counter,
    control_plane_connected: Gauge<i64, AtomicI64>,
    /// The control client's status, in control mode.
    client: OnceLock<watch::Receiver<ClientStatus>>,
}

impl IdentityMetrics {
    pub fn register(&self, registry: &mut Registry, control_mode: bool) {
        registry.register(
            "svid_expiry_timestamp_seconds",
            "When this sidecar's SVID expires (its notAfter, Unix seconds); close to now means renewal is failing",
            self.svid_expiry.clone(),
        );
        registry.register(
            "trust_bundle_roots",
            "Roots of the mesh's own trust domain this sidecar verifies peers against; more than one during a CA rotation",
            self.trust_bundle_roots.clone(),
        );
        if control_mode {
            registry.register(
                "svid_renewals",
                "SVIDs renewed through the control plane (at half-life, or early after a CA rotation)",
                self.svid_renewals.clone(),
            );
            registry.register(
                "control_plane_connected",
                "1 while the config stream from the control plane is up; the last config stays in force while it is 0",
                self.control_plane_connected.clone(),
            );
        }
    }

    /// Follows the control client's status (control mode).
    pub fn follow_client(&self, status: watch::Receiver<ClientStatus>) {
        let _ = self.client.set(status);
    }

    /// Reads the current values into the gauges.
    pub fn refresh(&self, credentials: &CredentialStore) {
        let creds = credentials.current();
        if let Some(not_after) = creds
            .certified_key()
            .cert
            .first()
            .and_then(|leaf| x509_parser::parse_x509_certificate(leaf).ok())
            .map(|(_, c)| c.validity().not_after.timestamp())
        {
            self.svid_expiry.set(not_after);
        }
        self.trust_bundle_roots
            .set(i64::try_from(creds.bundle().roots().len()).unwrap_or(i64::MAX));
        if let Some(status) = self.client.get() {
            let status = status.borrow();
            let counted = self.svid_renewals.get();
            if status.renewals > counted {
                self.svid_renewals.inc_by(status.renewals - counted);
            }
            self.control_plane_connected
                .set(i64::from(status.connected));
        }
    }
}
