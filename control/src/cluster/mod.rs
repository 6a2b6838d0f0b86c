//! The loaded cluster: validated, resolved-enough objects (namespaces, pods,
//! services and the three policy kinds) in one immutable value. Produced only
//! by `load`, consumed by `compile`, `check` and `lint`. Every list is sorted
//! by namespace and name, so nothing depends on file or document order.
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;

use ipnet::IpNet;
use palisade_api::{
    AuthorizationPolicy as ApiAuthorizationPolicy, MtlsMode, PathNormalization, Protocol,
};

pub mod selector;

pub use selector::{Labels, Selector, SelectorError};

/// The label the API server puts on every namespace.
pub const NAMESPACE_NAME_LABEL: &str = "kubernetes.io/metadata.name";

/// Where an object came from: used in error messages and lint findings.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Origin {
    pub file: PathBuf,
    /// 0-based index of the YAML document in the file.
    pub document: usize,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: document {}", self.file.display(), self.document)
    }
}

/// Mesh-wide settings (`MeshConfig`, `palisade.dev/v1alpha1`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mesh {
    pub trust_domain: String,
    pub trust_domain_aliases: Vec<String>,
    pub root_namespace: String,
    pub path_normalization: PathNormalization,
    /// The cluster's DNS domain (MeshConfig `clusterDomain`).
    pub cluster_domain: String,
    /// PEM roots of each federated trust domain (MeshConfig
    /// `federatedTrustDomains`), by trust domain name.
    pub federated_bundles: BTreeMap<String, String>,
    /// Federated trust domains whose bundle the control plane fetches from
    /// a SPIFFE bundle endpoint (`bundleEndpointURL`), by trust domain name.
    pub bundle_endpoints: BTreeMap<String, BundleEndpoint>,
}

/// Where and how to fetch a federated trust domain's bundle (SPIFFE
/// Federation, section 5.1: URL, profile, and the trust domain it is for).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BundleEndpoint {
    /// An `https` URL without userinfo.
    pub url: String,
    pub profile: EndpointProfile,
}

/// How a bundle endpoint is authenticated (SPIFFE Federation 5.2).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointProfile {
    /// Web PKI: a certificate for the URL's host from a trusted CA.
    HttpsWeb,
    /// An X509-SVID naming `endpoint_id`, verified against the bundle of
    /// that ID's trust domain: the mesh's own, a federated one, or (self
    /// serving) the latest fetched bundle of the trust domain itself.
    HttpsSpiffe { endpoint_id: String },
}

impl Mesh {
    /// `td` is the mesh's trust domain or one of its aliases.
    pub fn is_local_trust_domain(&self, td: &str) -> bool {
        td == self.trust_domain || self.trust_domain_aliases.iter().any(|a| a == td)
    }
}

impl Default for Mesh {
    fn default() -> Self {
        Self {
            trust_domain: "cluster.local".into(),
            trust_domain_aliases: Vec::new(),
            root_namespace: "istio-system".into(),
            path_normalization: PathNormalization::MergeSlashes,
            cluster_domain: palisade_api::sni::DEFAULT_CLUSTER_DOMAIN.into(),
            federated_bundles: BTreeMap::new(),
            bundle_endpoints: BTreeMap::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    pub name: String,
    /// Always carries `kubernetes.io/metadata.name`.
    pub labels: Labels,
    /// False for a namespace only referenced by another object.
    pub declared: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pod {
    pub namespace: String,
    pub name: String,
    pub labels: Labels,
    pub service_account: String,
    /// The pod's live addresses: `status.podIPs` (or `status.podIP`); empty
    /// when not scheduled yet, and when finished (see `Pod::finished`).
    pub ips: Vec<IpAddr>,
    /// Its node's addresses: `status.hostIPs` (or `status.hostIP`); empty
    /// when not started yet or finished. Traffic to and from them is always
    /// allowed (kubernetes.io, "Network Policies").
    pub node_ips: Vec<IpAddr>,
    /// `status.phase` as written (`Pending`, `Running`, `Succeeded`, ...).
    pub phase: Option<String>,
    /// `spec.hostNetwork`: the pod runs in its node's network namespace, so
    /// its addresses are the node's. kubernetes.io, "Network Policies",
    /// "NetworkPolicy and `hostNetwork` pods": Palisade is the most common
    /// implementation, which "ignores `hostNetwork` pods when matching
    /// `podSelector` and `namespaceSelector`. Traffic to/from `hostNetwork`
    /// pods is treated the same as all other traffic to/from the node IP."
    /// Such a pod is in no selector's IP set, is isolated by no policy, runs
    /// no sidecar (no config, no peer entry), but stays a Service endpoint.
    pub host_network: bool,
    /// Why the pod runs no sidecar although it is on the pod network: its
    /// injection was opted out (`load::injection_opt_out`). Istio's
    /// "naked" workload: it stays in selectors and Service endpoints, but
    /// gets no config and is no mesh peer, so it presents no identity, is
    /// reached in plaintext, and nothing enforces policy at it.
    pub no_sidecar: Option<String>,
    pub ports: Vec<PodPort>,
    /// From the `palisade.dev/opaque-ports` annotation.
    pub opaque_ports: Vec<u16>,
    /// The pod's `Ready` condition is `True` (podutil.IsPodReady; the
    /// condition already folds in `spec.readinessGates`), and it is not
    /// finished. A pod whose status lists no condition at all (a
    /// hand-written manifest) counts as ready: see `load::kube::pod`.
    pub ready: bool,
    /// `metadata.deletionTimestamp` is set: the pod is shutting down. The
    /// EndpointSlice controller marks its endpoint not ready (`serving` per
    /// readiness, `terminating` true) unless `publishNotReadyAddresses`.
    pub terminating: bool,
    pub origin: Origin,
}

impl Pod {
    /// `NS/POD`
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether a sidecar runs beside the pod: not for a hostNetwork pod,
    /// nor for one whose injection was opted out.
    pub fn has_sidecar(&self) -> bool {
        !self.host_network && self.no_sidecar.is_none()
    }

    /// In phase `Succeeded` or `Failed`: every container has terminated and
    /// none will be restarted (kubernetes.io, "Pod Lifecycle"), so the pod
    /// has no network presence and its addresses may belong to another pod.
    pub fn finished(&self) -> bool {
        is_finished_phase(self.phase.as_deref())
    }

    /// The container port of that name and protocol.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name.as_deref() == Some(name) && p.protocol == protocol)
            .map(|p| p.port)
    }
}

/// `Succeeded` or `Failed`: the terminal pod phases.
pub fn is_finished_phase(phase: Option<&str>) -> bool {
    matches!(phase, Some("Succeeded" | "Failed"))
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortRef {
    Number(u16),
    Name(String),
}

impl fmt::Display for PortRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PortRef::Number(n) => write!(f, "{n}"),
            PortRef::Name(s) => write!(f, "{s}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
    pub app_protocol: Option<String>,
    pub target: PortRef,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Service {
    pub namespace: String,
    pub name: String,
    /// The virtual IPs; empty for a headless (`clusterIP: None`) or an
    /// `ExternalName` Service, which clients do not reach through a VIP.
    pub cluster_ips: Vec<IpAddr>,
    /// Other addresses kube-proxy leads to the endpoints for a pod's
    /// traffic: `spec.externalIPs` and a LoadBalancer's
    /// `status.loadBalancer.ingress[].ip` (unless its `ipMode` is `Proxy`,
    /// which kube-proxy leaves to the load balancer).
    pub external_ips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    /// `None`: no selector (endpoints managed elsewhere; none here), and
    /// always for an `ExternalName` Service, which the EndpointSlice
    /// controller gives no endpoints (kubernetes/kubernetes#105986).
    pub selector: Option<Selector>,
    /// `spec.publishNotReadyAddresses`: not-ready and terminating pods are
    /// ready endpoints.
    pub publish_not_ready_addresses: bool,
    /// The address families whose pod IPs become endpoints (the
    /// EndpointSlice controller's getAddressTypesForService):
    /// `spec.ipFamilies`, else the family of the cluster IP, else (headless,
    /// not defaulted) both.
    pub ipv4: bool,
    pub ipv6: bool,
    /// `spec.internalTrafficPolicy: Local`: a client in the cluster reaches
    /// only the endpoints on its own node, and none when its node has none
    /// (kube-proxy CategorizeEndpoints: no fallback to other nodes).
    pub internal_local: bool,
    /// `spec.sessionAffinity: ClientIP`: its timeout in seconds
    /// (`sessionAffinityConfig.clientIP.timeoutSeconds`, 10800 by default).
    pub client_ip_affinity: Option<u32>,
    /// The label that takes the Service away from kube-proxy, and so from
    /// the mesh's cluster-IP translation: `service.kubernetes.io/service-proxy-name`
    /// (another proxy serves it) or `service.kubernetes.io/headless`.
    /// kube-proxy watches only Services without either.
    pub unproxied_by: Option<&'static str>,
    pub origin: Origin,
}

/// Labels whose presence (any value) makes kube-proxy ignore a Service
/// (cmd/kube-proxy: the informers' `!service.kubernetes.io/service-proxy-name,
/// !service.kubernetes.io/headless` selector).
pub const UNPROXIED_LABELS: [&str; 2] = [
    "service.kubernetes.io/service-proxy-name",
    "service.kubernetes.io/headless",
];

impl Service {
    /// Whether pod address `ip` is of a family this Service publishes.
    pub fn serves_family(&self, ip: &IpAddr) -> bool {
        if ip.is_ipv4() { self.ipv4 } else { self.ipv6 }
    }
}

/// A `networking.k8s.io/v1` NetworkPolicy, validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkPolicy {
    pub namespace: String,
    pub name: String,
    pub pod_selector: Selector,
    /// `policyTypes` after defaulting.
    pub affects_ingress: bool,
    pub affects_egress: bool,
    pub ingress: Vec<NetpolRule>,
    pub egress: Vec<NetpolRule>,
    pub origin: Origin,
}

impl NetworkPolicy {
    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetpolRule {
    /// `None`: `from`/`to` empty or missing, all peers.
    pub peers: Option<Vec<NetpolPeer>>,
    /// `None`: `ports` empty or missing, all ports.
    pub ports: Option<Vec<NetpolPort>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetpolPeer {
    /// `podSelector` and/or `namespaceSelector`. `namespaces: None` means the
    /// policy's own namespace; `pods: None` means every pod.
    Pods {
        namespaces: Option<Selector>,
        pods: Option<Selector>,
    },
    IpBlock {
        cidr: IpNet,
        except: Vec<IpNet>,
    },
}

impl fmt::Display for NetpolPeer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NetpolPeer::Pods { namespaces, pods } => {
                let mut parts = Vec::new();
                if let Some(ns) = namespaces {
                    parts.push(format!("namespaceSelector{ns}"));
                }
                if let Some(p) = pods {
                    parts.push(format!("podSelector{p}"));
                }
                write!(f, "{}", parts.join(" "))
            }
            NetpolPeer::IpBlock { cidr, except } => {
                write!(f, "ipBlock {cidr}")?;
                if !except.is_empty() {
                    let ex: Vec<String> = except.iter().map(|e| e.to_string()).collect();
                    write!(f, " except {}", ex.join(","))?;
                }
                Ok(())
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetpolPort {
    pub protocol: Protocol,
    /// `None`: every port of the protocol.
    pub port: Option<PortRef>,
    pub end_port: Option<u16>,
}

/// Istio PeerAuthentication mode as written (UNSET inherits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerAuthMode {
    Unset,
    Set(MtlsMode),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAuthentication {
    pub namespace: String,
    pub name: String,
    /// `selector.matchLabels`; `None` for namespace- or mesh-wide.
    pub selector: Option<Selector>,
    /// A `selector` was given without labels (Istio warns: it is read as
    /// no selector).
    pub selector_without_labels: bool,
    pub mode: PeerAuthMode,
    /// `portLevelMtls`, by container port.
    pub port_level: BTreeMap<u16, PeerAuthMode>,
    /// `metadata.creationTimestamp`; `None` when absent (or `null`), which
    /// Istio sees as Go's zero `time.Time` (older than any real time).
    pub creation_timestamp: Option<time::OffsetDateTime>,
    pub origin: Origin,
}

/// Go's zero `time.Time` (0001-01-01T00:00:00Z) in Unix nanoseconds: what a
/// config without `metadata.creationTimestamp` carries in Istio.
const GO_ZERO_TIME_UNIX_NANOS: i128 = -62_135_596_800 * 1_000_000_000;

impl PeerAuthentication {
    /// Istio's precedence among policies on the same level (mesh, namespace
    /// or workload), smallest first: `sortConfigByCreationTime`
    /// (pilot/pkg/model) orders by `CreationTimestamp`, then `Name`, then
    /// `Namespace`, and `ComposePeerAuthentication` keeps the first of that
    /// order (`cfg.CreationTimestamp.Before(...)` is strict). A missing
    /// timestamp is Go's zero time, so it sorts before every real one.
    pub fn istio_age_key(&self) -> (i128, &str, &str) {
        (
            self.creation_timestamp
                .map_or(GO_ZERO_TIME_UNIX_NANOS, |t| t.unix_timestamp_nanos()),
            self.name.as_str(),
            self.namespace.as_str(),
        )
    }
}

/// An Istio AuthorizationPolicy, converted into the wire form.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuthorizationPolicy {
    pub namespace: String,
    pub name: String,
    /// `selector.matchLabels`; `None`: every workload in scope.
    pub selector: Option<Selector>,
    pub policy: ApiAuthorizationPolicy,
    pub origin: Origin,
}

/// Everything loaded from one configuration directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Cluster {
    pub mesh: Mesh,
    pub namespaces: BTreeMap<String, Namespace>,
    pub pods: Vec<Pod>,
    pub services: Vec<Service>,
    pub network_policies: Vec<NetworkPolicy>,
    pub peer_authentications: Vec<PeerAuthentication>,
    pub authorization_policies: Vec<AuthorizationPolicy>,
    pub service_entries: Vec<ServiceEntry>,
    /// Client TLS modes set by DestinationRules, which Palisade does not
    /// apply (its sidecars use Istio's auto mTLS); `lint` warns of each.
    pub ignored_client_tls: Vec<IgnoredClientTls>,
}

/// A `tls.mode` of a DestinationRule (`networking.istio.io`), read only to
/// say that it is not applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IgnoredClientTls {
    /// `DestinationRule ns/name`
    pub object: String,
    /// The field path, such as `spec.trafficPolicy.tls.mode`.
    pub field: String,
    pub mode: String,
    pub origin: Origin,
}

/// An Istio `ServiceEntry` with `resolution: STATIC` (the subset the
/// sidecar can act on without DNS): endpoints at fixed IPs, behind virtual
/// IPs (`addresses`) or called directly. A `MESH_INTERNAL` entry's
/// endpoints are mesh peers, reached over mTLS with the identity the entry
/// names: how a workload calls one of a federated trust domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntry {
    pub namespace: String,
    pub name: String,
    pub hosts: Vec<String>,
    pub addresses: Vec<IpAddr>,
    pub ports: Vec<ServiceEntryPort>,
    pub mesh_internal: bool,
    pub endpoints: Vec<ServiceEntryEndpoint>,
    /// `exportTo`: `None` for every namespace, else the namespaces (`.`
    /// already replaced by the entry's own).
    pub export_to: Option<Vec<String>>,
    pub origin: Origin,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntryPort {
    pub number: u16,
    pub name: String,
    /// Upper case: HTTP, HTTPS, GRPC, HTTP2, MONGO, TCP, TLS.
    pub protocol: String,
    pub target_port: Option<u16>,
}

impl ServiceEntryPort {
    /// Not HTTP: the sidecar must not sniff it (Istio's protocol selection).
    pub fn is_opaque(&self) -> bool {
        matches!(self.protocol.as_str(), "TCP" | "TLS" | "MONGO" | "HTTPS")
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceEntryEndpoint {
    pub address: IpAddr,
    /// Port name to this endpoint's port.
    pub ports: BTreeMap<String, u16>,
    /// The identity its sidecar presents (MESH_INTERNAL only): its
    /// `serviceAccount` in the entry's namespace, else the entry's
    /// `subjectAltNames`.
    pub identity: Option<EndpointIdentity>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EndpointIdentity {
    /// A service account of the entry's namespace, in the mesh's trust
    /// domain.
    ServiceAccount(String),
    /// A SPIFFE ID as written (any trust domain, federated ones included).
    SpiffeId(String),
}

impl ServiceEntryEndpoint {
    /// The endpoint's port for service port `p` (Istio: the endpoint's
    /// port of that name, else the port's `targetPort`, else its number).
    pub fn port_for(&self, p: &ServiceEntryPort) -> u16 {
        self.ports
            .get(&p.name)
            .copied()
            .or(p.target_port)
            .unwrap_or(p.number)
    }
}

impl ServiceEntry {
    /// The SPIFFE ID `endpoint`'s sidecar presents, for a mesh of trust
    /// domain `td`.
    pub fn identity_of(&self, endpoint: &ServiceEntryEndpoint, td: &str) -> Option<String> {
        match endpoint.identity.as_ref()? {
            EndpointIdentity::ServiceAccount(sa) => {
                Some(format!("spiffe://{td}/ns/{}/sa/{sa}", self.namespace))
            }
            EndpointIdentity::SpiffeId(id) => Some(id.clone()),
        }
    }

    pub fn key(&self) -> String {
        format!("{}/{}", self.namespace, self.name)
    }

    /// Whether a workload of namespace `ns` sees this entry.
    pub fn exported_to(&self, ns: &str) -> bool {
        self.export_to
            .as_ref()
            .is_none_or(|list| list.iter().any(|n| n == ns || n == "*"))
    }
}

impl Cluster {
    pub fn pod(&self, namespace: &str, name: &str) -> Option<&Pod> {
        self.pods
            .binary_search_by(|p| (p.namespace.as_str(), p.name.as_str()).cmp(&(namespace, name)))
            .ok()
            .map(|i| &self.pods[i])
    }

    pub fn pod_index(&self, namespace: &str, name: &str) -> Option<usize> {
        self.pods
            .binary_search_by(|p| (p.namespace.as_str(), p.name.as_str()).cmp(&(namespace, name)))
            .ok()
    }

    pub fn service(&self, namespace: &str, name: &str) -> Option<&Service> {
        self.services
            .iter()
            .find(|s| s.namespace == namespace && s.name == name)
    }

    /// The SPIFFE ID of a pod: `spiffe://TD/ns/NS/sa/SA`.
    pub fn identity(&self, pod: &Pod) -> String {
        format!(
            "spiffe://{}/ns/{}/sa/{}",
            self.mesh.trust_domain, pod.namespace, pod.service_account
        )
    }

    /// Sorts every list by namespace and name, and adds implicit namespaces.
    pub(crate) fn finish(&mut self) {
        self.pods
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.services
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.network_policies
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.peer_authentications
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.authorization_policies
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        self.service_entries
            .sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
        let referenced: Vec<String> = self
            .pods
            .iter()
            .map(|p| p.namespace.clone())
            .chain(self.services.iter().map(|s| s.namespace.clone()))
            .chain(self.network_policies.iter().map(|s| s.namespace.clone()))
            .chain(
                self.peer_authentications
                    .iter()
                    .map(|s| s.namespace.clone()),
            )
            .chain(
                self.authorization_policies
                    .iter()
                    .map(|s| s.namespace.clone()),
            )
            .collect();
        for ns in referenced {
            self.namespaces
                .entry(ns.clone())
                .or_insert_with(|| Namespace {
                    labels: [(NAMESPACE_NAME_LABEL.to_string(), ns.clone())]
                        .into_iter()
                        .collect(),
                    name: ns,
                    declared: false,
                });
        }
    }
}
