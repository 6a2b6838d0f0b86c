//! The kinds the control plane reads from a Kubernetes API server: the ones
//! the manifest loader knows, at the API versions it reads.
use kube::core::ApiResource;

/// One kind to list and watch, cluster-wide.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Kind {
    /// Empty for the core group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub namespaced: bool,
    /// Served by every API server. The others come from CRDs (Istio's and
    /// Palisade's); a cluster without the CRD has none of them.
    pub built_in: bool,
}

impl Kind {
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn api_resource(&self) -> ApiResource {
        ApiResource {
            group: self.group.to_string(),
            version: self.version.to_string(),
            api_version: self.api_version(),
            kind: self.kind.to_string(),
            plural: self.plural.to_string(),
        }
    }

    /// `plural.group`, as `kubectl api-resources` names it.
    pub fn resource_name(&self) -> String {
        if self.group.is_empty() {
            self.plural.to_string()
        } else {
            format!("{}.{}", self.plural, self.group)
        }
    }
}

const fn kind(
    group: &'static str,
    version: &'static str,
    kind: &'static str,
    plural: &'static str,
    namespaced: bool,
    built_in: bool,
) -> Kind {
    Kind {
        group,
        version,
        kind,
        plural,
        namespaced,
        built_in,
    }
}

/// Every kind the loader reads. Istio's CRDs serve all their versions from
/// one storage, so asking for `v1` also returns objects written as
/// `v1beta1`.
pub const KINDS: &[Kind] = &[
    kind("", "v1", "Namespace", "namespaces", false, true),
    kind("", "v1", "Pod", "pods", true, true),
    kind("", "v1", "Service", "services", true, true),
    kind(
        "networking.k8s.io",
        "v1",
        "NetworkPolicy",
        "networkpolicies",
        true,
        true,
    ),
    kind(
        "security.istio.io",
        "v1",
        "PeerAuthentication",
        "peerauthentications",
        true,
        false,
    ),
    kind(
        "security.istio.io",
        "v1",
        "AuthorizationPolicy",
        "authorizationpolicies",
        true,
        false,
    ),
    kind(
        "networking.istio.io",
        "v1",
        "ServiceEntry",
        "serviceentries",
        true,
        false,
    ),
    kind(
        "palisade.dev",
        "v1alpha1",
        "MeshConfig",
        "meshconfigs",
        false,
        false,
    ),
];
