//! A change of the roots in force reaches the connections they vouched
//! for. When the roots of the mesh's own trust domain or of a federated one
//! change (a CA rotation's finish, a root dropped after its grace period, a
//! federated bundle refetched), every established mTLS connection, and
//! every pooled mesh connection, whose peer chain no longer verifies is
//! closed: opaque ones at once, HTTP ones after their in-flight requests
//! (pooled client connections stop taking requests and end when idle). A
//! connection authenticated by a root the mesh stopped trusting does not
//! outlive that decision, as it would in Envoy.
//!
//! The chain is judged as of now, or as of its leaf's last valid second if
//! it expired since: an SVID that aged out under a long-lived connection
//! is not what this checks.
use std::sync::Mutex;
use std::time::Duration;

use palisade_identity::{CredentialStore, PeerRole};
use rustls::pki_types::{CertificateDer, UnixTime};

use crate::ctx::Ctx;

/// What the roots in force are, to tell a change from a config push that
/// left them alone: every trust domain's name and roots.
type Signature = Vec<(String, Vec<CertificateDer<'static>>)>;

/// The roots the last re-check judged by.
pub struct TrustWatch {
    last: Mutex<Option<Signature>>,
}

impl TrustWatch {
    /// Starts from the roots in force now.
    pub fn new(store: &CredentialStore) -> Self {
        Self {
            last: Mutex::new(Some(signature(store))),
        }
    }

    /// After a config is applied or the SVID directory reloaded: when the
    /// roots changed since the last call, re-checks every connection.
    /// Returns how many were closed.
    pub fn recheck_if_changed(&self, ctx: &Ctx, store: &CredentialStore) -> usize {
        let now = signature(store);
        let Ok(mut last) = self.last.lock() else {
            return 0;
        };
        let changed = last.as_ref().is_some_and(|l| *l != now);
        *last = Some(now);
        drop(last);
        if !changed {
            return 0;
        }
        let trusted = |chain: &[CertificateDer<'static>], role| still_trusted(store, chain, role);
        let conns = ctx.tracker.recheck_trust(trusted, &ctx.metrics);
        let pooled = ctx
            .mesh_pool
            .retire_untrusted(|chain| trusted(chain, PeerRole::Server));
        ctx.metrics
            .closed_by_trust_change
            .get_or_create(&crate::metrics::DirectionLabels {
                direction: crate::metrics::Direction::Outbound,
            })
            .inc_by(pooled as u64);
        if conns + pooled > 0 {
            tracing::warn!(
                connections = conns,
                pooled,
                "the roots in force changed: closing the connections they no longer vouch for"
            );
        }
        conns + pooled
    }
}

fn signature(store: &CredentialStore) -> Signature {
    let creds = store.current();
    let pushed = store.pushed_federation();
    let local = creds.bundle();
    let mut sig = vec![(local.trust_domain().to_string(), local.roots().to_vec())];
    for set in [creds.federated(), &pushed] {
        for td in set.trust_domains() {
            if let Some(bundle) = set.get(td) {
                sig.push((td.to_owned(), bundle.roots().to_vec()));
            }
        }
    }
    sig
}

/// Does `chain` still verify against the roots in force?
pub fn still_trusted(
    store: &CredentialStore,
    chain: &[CertificateDer<'static>],
    role: PeerRole,
) -> bool {
    let Some((leaf, intermediates)) = chain.split_first() else {
        return true;
    };
    let now = UnixTime::now();
    let at = x509_parser::parse_x509_certificate(leaf)
        .ok()
        .map(|(_, c)| c.validity().not_after.timestamp())
        .and_then(|t| u64::try_from(t.saturating_sub(1)).ok())
        .map(|t| UnixTime::since_unix_epoch(Duration::from_secs(t)))
        .filter(|at| at.as_secs() < now.as_secs())
        .unwrap_or(now);
    let provider = palisade_identity::provider::default_provider();
    store
        .verify_peer(leaf, intermediates, at, role, &provider)
        .is_ok()
}
