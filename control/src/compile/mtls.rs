//! PeerAuthentication precedence: mesh-wide (root namespace, no selector) <
//! namespace-wide (no selector) < workload (selector, not in the root
//! namespace, where Istio ignores it); `portLevelMtls` by
//! container port on the workload level; `UNSET` inherits from the parent
//! level; `PERMISSIVE` where nothing is set. Two policies on the same level
//! are resolved as Istio does: the oldest by `metadata.creationTimestamp`
//! wins, then the first by name (then namespace); a policy without a
//! timestamp counts as Go's zero time, older than any other
//! (`sortConfigByCreationTime` in pilot/pkg/model, applied by
//! `AuthenticationPolicies.addPeerAuthentication`, and
//! `ComposePeerAuthentication` in pilot/pkg/security/authn/policy_applier.go).
//! `lint` still warns about such conflicts.
use std::collections::BTreeMap;

use palisade_api::MtlsMode;

use crate::cluster::{Cluster, PeerAuthMode, PeerAuthentication, Pod};

/// The effective mode of one workload, with the policies that decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EffectiveMtls {
    pub mode: MtlsMode,
    pub port_mtls: BTreeMap<u16, MtlsMode>,
    /// `ns/name` of the policy that set `mode`, or `None` for the default.
    pub decided_by: Option<String>,
    /// `ns/name` of the workload-level policy, if any (decides port modes).
    pub workload_policy: Option<String>,
}

/// The policy Istio picks among several on one level: the smallest
/// [`PeerAuthentication::istio_age_key`] (oldest, then by name).
pub fn oldest<'a>(
    it: impl Iterator<Item = &'a PeerAuthentication>,
) -> Option<&'a PeerAuthentication> {
    it.min_by(|a, b| a.istio_age_key().cmp(&b.istio_age_key()))
}

/// The mesh-wide, namespace-wide and workload-level policies of `pod`.
pub fn levels<'a>(cluster: &'a Cluster, pod: &Pod) -> [Option<&'a PeerAuthentication>; 3] {
    let root = cluster.mesh.root_namespace.as_str();
    let pas = &cluster.peer_authentications;
    let mesh = oldest(
        pas.iter()
            .filter(|p| p.namespace == root && p.selector.is_none()),
    );
    let ns = oldest(
        pas.iter()
            .filter(|p| p.namespace == pod.namespace && p.selector.is_none()),
    );
    // Istio ignores selector policies in the root namespace ("Workload-level
    // configs should not be in root namespace").
    let workload = oldest(pas.iter().filter(|p| {
        p.namespace == pod.namespace
            && p.namespace != root
            && p.selector.as_ref().is_some_and(|s| s.matches(&pod.labels))
    }));
    [mesh, ns, workload]
}

pub fn effective(cluster: &Cluster, pod: &Pod) -> EffectiveMtls {
    let [mesh, ns, workload] = levels(cluster, pod);
    let mut mode = MtlsMode::Permissive;
    let mut decided_by = None;
    // Most specific level first; UNSET falls through to the parent.
    for pa in [workload, ns, mesh].into_iter().flatten() {
        if let PeerAuthMode::Set(m) = pa.mode {
            mode = m;
            decided_by = Some(format!("{}/{}", pa.namespace, pa.name));
            break;
        }
    }
    let mut port_mtls = BTreeMap::new();
    if let Some(w) = workload {
        for (port, m) in &w.port_level {
            if let PeerAuthMode::Set(m) = m
                && *m != mode
            {
                port_mtls.insert(*port, *m);
            }
        }
    }
    EffectiveMtls {
        mode,
        port_mtls,
        decided_by,
        workload_policy: workload.map(|w| format!("{}/{}", w.namespace, w.name)),
    }
}
