//! AuthorizationPolicy scoping: which converted policies apply to which
//! workload (root namespace = mesh-wide, namespace-wide, `selector.matchLabels`
//! narrows).
use palisade_api::AuthorizationPolicy as ApiPolicy;

use crate::cluster::{Cluster, Pod};

/// The authorization policies that apply to `pod`, sorted by `ns/name`.
pub fn policies_for(cluster: &Cluster, pod: &Pod) -> Vec<ApiPolicy> {
    let root = cluster.mesh.root_namespace.as_str();
    cluster
        .authorization_policies
        .iter()
        .filter(|p| p.namespace == root || p.namespace == pod.namespace)
        .filter(|p| p.selector.as_ref().is_none_or(|s| s.matches(&pod.labels)))
        .map(|p| p.policy.clone())
        .collect()
}
