//! AuthorizationPolicy scoping: which converted policies apply to which
//! workload (root namespace = mesh-wide, namespace-wide, `selector.matchLabels`
//! narrows).
use std::collections::HashMap;

use palisade_api::AuthorizationPolicy as ApiPolicy;

use crate::cluster::{AuthorizationPolicy, Cluster, Pod};

/// Authorization policies grouped by namespace, for per-workload lookups.
pub struct AuthzIndex<'a> {
    root: &'a str,
    by_namespace: HashMap<&'a str, Vec<&'a AuthorizationPolicy>>,
}

impl<'a> AuthzIndex<'a> {
    pub fn new(cluster: &'a Cluster) -> Self {
        let mut by_namespace: HashMap<&str, Vec<&AuthorizationPolicy>> = HashMap::new();
        for p in &cluster.authorization_policies {
            by_namespace
                .entry(p.namespace.as_str())
                .or_default()
                .push(p);
        }
        Self {
            root: cluster.mesh.root_namespace.as_str(),
            by_namespace,
        }
    }

    /// The policies that apply to `pod`, sorted by `ns/name`: the root
    /// namespace's (mesh-wide) and its own namespace's, narrowed by selector.
    pub fn policies_for(&self, pod: &Pod) -> Vec<ApiPolicy> {
        let root = self.by_namespace.get(self.root).into_iter().flatten();
        let own = if pod.namespace == self.root {
            None
        } else {
            self.by_namespace.get(pod.namespace.as_str())
        };
        let mut out: Vec<ApiPolicy> = root
            .chain(own.into_iter().flatten())
            .filter(|p| p.selector.as_ref().is_none_or(|s| s.matches(&pod.labels)))
            .map(|p| p.policy.clone())
            .collect();
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }
}
