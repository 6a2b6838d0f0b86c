//! `ProxyConfig`: the self-contained, per-workload configuration the control
//! plane compiles and the sidecar enforces. Everything here is already
//! resolved: no label selectors, no named ports, no policy precedence left.
//! Lists are sorted by the compiler so the serialized form is deterministic.
use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// One workload's whole configuration, as pushed to its sidecar.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyConfig {
    /// Content hash of everything below (see `ProxyConfig::compute_version`).
    #[serde(default)]
    pub version: String,
    pub mesh: MeshSettings,
    pub workload: Workload,
    pub inbound: Inbound,
    pub outbound: Outbound,
    /// Every workload this one may exchange traffic with: IP to identity and
    /// per-port mTLS mode. Used outbound (whom to expect) and inbound (does a
    /// presented identity own the source IP).
    #[serde(default)]
    pub peers: Vec<Peer>,
    /// Services this workload may call, resolved to endpoints.
    #[serde(default)]
    pub services: Vec<Service>,
    /// Authorization policies that apply to this workload (inbound), in the
    /// order they are reported; evaluation order is fixed by action.
    #[serde(default)]
    pub authorization: Vec<AuthorizationPolicy>,
}

/// Mesh-wide settings that the data plane needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshSettings {
    pub trust_domain: String,
    #[serde(default)]
    pub trust_domain_aliases: Vec<String>,
    #[serde(default)]
    pub path_normalization: PathNormalization,
    /// The cluster's DNS domain (kubelet's `--cluster-domain`): the suffix
    /// of the Service names in the server names sidecars send, which
    /// `connection.sni` conditions match. Left out when it is the default.
    #[serde(
        default = "default_cluster_domain",
        deserialize_with = "cluster_domain",
        skip_serializing_if = "is_default_cluster_domain"
    )]
    pub cluster_domain: String,
    /// The X.509 roots (PEM) of each federated trust domain, by name: peers
    /// of those trust domains verify against them (MeshConfig
    /// `federatedTrustDomains`). Left out when there are none.
    #[serde(
        default,
        deserialize_with = "federated_bundles",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub federated_bundles: BTreeMap<String, String>,
    /// The roots (PEM) of the mesh's own trust domain, as the control plane
    /// holds them now: a sidecar run by the control plane verifies peers
    /// against these, so roots added for a CA rotation reach every sidecar
    /// before the new CA signs. Left out (a static config): the SVID
    /// directory's bundle stays.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub trust_bundle: String,
    /// The certificate (PEM) that signs SVIDs now. A sidecar whose SVID was
    /// signed by another (a CA being retired) renews it early. Left out: no
    /// early renewal.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub svid_signer: String,
}

impl MeshSettings {
    /// `td` is the mesh's trust domain or one of its aliases: the SVID's
    /// bundle covers it, and no federated bundle may.
    pub fn is_local_trust_domain(&self, td: &str) -> bool {
        td == self.trust_domain || self.trust_domain_aliases.iter().any(|a| a == td)
    }
}

/// The trust domain of a `spiffe://` ID, `None` when `id` is not one.
pub fn trust_domain_of(id: &str) -> Option<&str> {
    id.strip_prefix("spiffe://")?.split('/').next()
}

fn federated_bundles<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    let bundles = BTreeMap::<String, String>::deserialize(d)?;
    // SPIFFE-ID.md: "Trust domain names ... MUST contain only lowercase
    // letters, numbers, dots, dashes, and underscores."
    for td in bundles.keys() {
        let valid = !td.is_empty()
            && td.len() <= 255
            && td
                .bytes()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || b".-_".contains(&c));
        if !valid {
            return Err(serde::de::Error::custom(format!(
                "federatedBundles: {td:?} is not a trust domain name"
            )));
        }
    }
    Ok(bundles)
}

fn default_cluster_domain() -> String {
    crate::sni::DEFAULT_CLUSTER_DOMAIN.to_string()
}

fn is_default_cluster_domain(domain: &str) -> bool {
    domain == crate::sni::DEFAULT_CLUSTER_DOMAIN
}

fn cluster_domain<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let domain = String::deserialize(d)?;
    if crate::sni::valid_cluster_domain(&domain) {
        Ok(domain)
    } else {
        Err(serde::de::Error::custom(format!(
            "clusterDomain {domain:?} is not a DNS subdomain"
        )))
    }
}

/// Istio's HTTP path normalization modes. Palisade defaults to
/// `MERGE_SLASHES`, stricter than Istio's default `BASE`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum PathNormalization {
    None,
    Base,
    #[default]
    MergeSlashes,
    DecodeAndMergeSlashes,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Workload {
    pub namespace: String,
    pub name: String,
    pub service_account: String,
    /// `spiffe://<td>/ns/<ns>/sa/<sa>`
    pub identity: String,
    pub ips: Vec<IpAddr>,
    #[serde(default)]
    pub ports: Vec<ContainerPort>,
    /// Ports on which inbound protocol detection is skipped (server-first).
    #[serde(default)]
    pub opaque_ports: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ContainerPort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
}

#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum Protocol {
    #[default]
    Tcp,
    Udp,
    Sctp,
}

/// Effective PeerAuthentication mode of a port (after UNSET inheritance).
#[derive(
    Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize,
)]
#[serde(rename_all = "UPPERCASE")]
pub enum MtlsMode {
    Strict,
    #[default]
    Permissive,
    Disable,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Inbound {
    /// Mode for ports without a port-level override.
    pub mtls: MtlsMode,
    /// Port-level overrides (by container port number).
    #[serde(default)]
    pub port_mtls: BTreeMap<u16, MtlsMode>,
    /// Resolved ingress NetworkPolicy of this workload.
    pub ingress: DirectionPolicy,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Outbound {
    /// Resolved egress NetworkPolicy of this workload.
    pub egress: DirectionPolicy,
}

/// The resolved NetworkPolicy rules of one direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DirectionPolicy {
    /// True once any NetworkPolicy with this direction's type selects the
    /// workload; then only traffic some rule allows passes.
    pub isolated: bool,
    /// The policies (`ns/name`) that isolate the workload in this direction.
    #[serde(default)]
    pub policies: Vec<String>,
    /// Allow rules, the union of every selecting policy's rules; when
    /// isolated and the node is known, led by `L4Rule::node_traffic`.
    #[serde(default)]
    pub rules: Vec<L4Rule>,
}

/// One `ingress[i]` / `egress[i]` rule, resolved. It matches when the remote
/// IP matches one of `peers` (or `peers` is `None`: all peers) and the
/// (protocol, port) matches one of `ports` (or `ports` is `None`: all ports).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4Rule {
    /// `ns/name` of the NetworkPolicy.
    pub policy: String,
    /// Index of the rule in the policy's `ingress` or `egress` list.
    pub rule: usize,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peers: Option<Vec<L4Peer>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ports: Option<Vec<PortRange>>,
}

impl L4Rule {
    /// The `policy` of the rule that carries the node exemption. Never the
    /// key of a NetworkPolicy, which is always `ns/name`.
    pub const NODE_TRAFFIC: &'static str = "(node)";

    /// kubernetes.io, "Network Policies": "traffic to and from the node where
    /// a Pod is running is always allowed, regardless of the IP address of
    /// the Pod or the node". As an ordinary rule (any port, any protocol, the
    /// node's host prefixes), every evaluator of a `DirectionPolicy`
    /// enforces it without knowing about it. `None` without node addresses.
    pub fn node_traffic(node_ips: &[IpAddr]) -> Option<L4Rule> {
        if node_ips.is_empty() {
            return None;
        }
        let mut nets: Vec<IpNet> = node_ips.iter().map(|ip| IpNet::from(*ip)).collect();
        nets.sort();
        nets.dedup();
        let list: Vec<String> = nets.iter().map(|n| n.addr().to_string()).collect();
        Some(L4Rule {
            policy: Self::NODE_TRAFFIC.to_string(),
            rule: 0,
            peers: Some(vec![L4Peer {
                description: format!("node {}", list.join(", ")),
                nets,
                except: Vec::new(),
            }]),
            ports: None,
        })
    }

    /// Whether this is the rule `L4Rule::node_traffic` makes.
    pub fn is_node_traffic(&self) -> bool {
        self.policy == Self::NODE_TRAFFIC
    }
}

/// A resolved `from`/`to` peer: a set of networks minus exceptions. Pod and
/// namespace selectors are resolved to the selected pods' IPs (host prefixes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4Peer {
    /// Human-readable origin, e.g. `ipBlock 10.0.0.0/8` or
    /// `namespaceSelector{team=a} podSelector{app=web}`; used in explanations.
    pub description: String,
    pub nets: Vec<IpNet>,
    #[serde(default)]
    pub except: Vec<IpNet>,
}

/// `protocol` and `port..=end_port` (inclusive); named ports already resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortRange {
    pub protocol: Protocol,
    pub port: u16,
    pub end_port: u16,
}

/// A workload this one may talk to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Peer {
    pub ip: IpAddr,
    /// `NS/POD`
    pub workload: String,
    /// Its SPIFFE ID.
    pub identity: String,
    /// Its inbound default mode and port overrides.
    pub mtls: MtlsMode,
    #[serde(default)]
    pub port_mtls: BTreeMap<u16, MtlsMode>,
    #[serde(default)]
    pub opaque_ports: Vec<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Service {
    /// `ns/name`
    pub name: String,
    pub cluster_ips: Vec<IpAddr>,
    /// `spec.externalIPs` and load-balancer ingress IPs, which kube-proxy
    /// also leads to the endpoints when a pod calls them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_ips: Vec<IpAddr>,
    pub ports: Vec<ServicePort>,
    /// `spec.sessionAffinity: ClientIP`; absent for `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_affinity: Option<SessionAffinity>,
}

/// Client-IP session affinity, as kube-proxy applies it: each Service port
/// sends a client back to the endpoint it last reached while that endpoint
/// stays an endpoint, until `timeout_seconds` pass without a new connection
/// from that client.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SessionAffinity {
    /// `sessionAffinityConfig.clientIP.timeoutSeconds` (1 to 86400; 10800
    /// when not set).
    #[serde(deserialize_with = "affinity_timeout")]
    pub timeout_seconds: u32,
}

/// Kubernetes' default `timeoutSeconds` (three hours).
pub const DEFAULT_AFFINITY_TIMEOUT_SECONDS: u32 = 10800;

/// The range `validateClientIPAffinityConfig` allows: more than 0, at most a day.
fn affinity_timeout<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    let t = u32::deserialize(d)?;
    if (1..=86400).contains(&t) {
        Ok(t)
    } else {
        Err(serde::de::Error::custom(format!(
            "timeoutSeconds {t} is out of range 1-86400"
        )))
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    pub port: u16,
    pub protocol: Protocol,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_protocol: Option<String>,
    /// Ready endpoints with their resolved target port.
    pub endpoints: Vec<Endpoint>,
}

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Endpoint {
    pub ip: IpAddr,
    pub port: u16,
    /// `NS/POD`
    pub workload: String,
}

/// An Istio AuthorizationPolicy that applies to this workload, normalized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicy {
    /// `ns/name`
    pub name: String,
    pub action: AuthzAction,
    /// `istio.io/dry-run: "true"`: evaluated and logged, never enforced.
    #[serde(default)]
    pub dry_run: bool,
    /// Empty: the policy matches nothing (`spec: {}` or `rules: []`).
    #[serde(default)]
    pub rules: Vec<AuthzRule>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AuthzAction {
    Allow,
    Deny,
    Audit,
}

/// A rule matches when some `from` matches (or `from` is empty), some `to`
/// matches (or `to` is empty), and every `when` condition matches.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthzRule {
    #[serde(default)]
    pub from: Vec<AuthzSource>,
    #[serde(default)]
    pub to: Vec<AuthzOperation>,
    #[serde(default)]
    pub when: Vec<AuthzCondition>,
}

/// Fields AND'ed, values within a field OR'ed; an empty list is "not set".
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthzSource {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<IpNet>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<IpNet>,
    /// The trust domain of the peer's SPIFFE ID (Istio's `trustDomains`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_domains: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_trust_domains: Vec<String>,
}

/// Fields AND'ed, values within a field OR'ed; an empty list is "not set".
/// `methods`, `paths` (and their `not_` forms) are HTTP-only fields.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthzOperation {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<u16>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

/// A `when` condition; `key` is one of the supported Istio condition keys
/// (validated by the compiler), e.g. `request.headers[x-token]`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthzCondition {
    pub key: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}
