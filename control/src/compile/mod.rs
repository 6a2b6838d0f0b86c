//! The policy compiler: from a loaded `Cluster` to one self-contained
//! `ProxyConfig` per workload. Everything cluster-wide (selector resolution,
//! Service endpoints, peer entries) is computed once in `Compiler::new`;
//! per-workload work is a union of precomputed parts, and the egress side is
//! cached by the set of selecting policies, which many workloads share.
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use palisade_api::{
    ContainerPort, DirectionPolicy, Inbound, MeshSettings, Outbound, Peer, ProxyConfig,
    Service as ApiService, Workload,
};

pub mod authz;
pub mod index;
pub mod mtls;
pub mod netpol;
pub mod service_entries;
pub mod services;

use crate::cluster::{Cluster, Pod};
use index::ClusterIndex;
use netpol::{PodSet, ResolvedPolicy};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CompileError {
    #[error("no pod {0} in the configuration")]
    UnknownWorkload(String),
    #[error("workload {0:?} must be written NS/POD")]
    BadWorkloadName(String),
    /// kubernetes.io, "Network Policies", "NetworkPolicy and `hostNetwork`
    /// pods": Palisade ignores them, and no sidecar runs in a node's network
    /// namespace.
    #[error(
        "pod {0} has spec.hostNetwork: true: it runs in its node's network namespace, where no sidecar can run, so it has no proxy config (NetworkPolicy does not apply to it; its traffic is the node's)"
    )]
    HostNetwork(String),
    /// Its injection was opted out: no sidecar asks for a config.
    #[error(
        "pod {0} runs no sidecar ({1}), so it has no proxy config: it is outside the mesh, reached in plaintext, and nothing enforces policy at it"
    )]
    NoSidecar(String, String),
}

struct EgressView {
    policy: DirectionPolicy,
    reach: PodSet,
    services: Vec<usize>,
}

pub struct Compiler<'a> {
    index: ClusterIndex<'a>,
    policies: Vec<ResolvedPolicy>,
    policies_by_ns: HashMap<&'a str, Vec<usize>>,
    mtls: Vec<mtls::EffectiveMtls>,
    opaque: Vec<Vec<u16>>,
    peers: Vec<Vec<Peer>>,
    /// Every address in `peers`: where a ServiceEntry endpoint yields to
    /// the pod there.
    peer_ips: std::collections::BTreeSet<std::net::IpAddr>,
    services: Vec<ApiService>,
    authz: authz::AuthzIndex<'a>,
    egress_cache: Mutex<HashMap<Vec<usize>, Arc<EgressView>>>,
}

impl<'a> Compiler<'a> {
    pub fn new(cluster: &'a Cluster) -> Self {
        let index = ClusterIndex::new(cluster);
        let policies: Vec<ResolvedPolicy> = cluster
            .network_policies
            .iter()
            .map(|np| netpol::resolve(&index, np))
            .collect();
        let mut policies_by_ns: HashMap<&str, Vec<usize>> = HashMap::new();
        for (i, np) in cluster.network_policies.iter().enumerate() {
            policies_by_ns
                .entry(np.namespace.as_str())
                .or_default()
                .push(i);
        }
        let mtls: Vec<_> = cluster
            .pods
            .iter()
            .map(|p| mtls::effective(cluster, p))
            .collect();
        // Opaque ports: annotation, server-first container ports, and the
        // target ports of opaque Service ports selecting the pod.
        let mut opaque: Vec<Vec<u16>> = cluster
            .pods
            .iter()
            .map(|p| {
                let mut v = p.opaque_ports.clone();
                v.extend(
                    p.ports
                        .iter()
                        .map(|cp| cp.port)
                        .filter(|n| services::SERVER_FIRST_PORTS.contains(n)),
                );
                v
            })
            .collect();
        for svc in &cluster.services {
            let opaque_ports: Vec<_> = svc
                .ports
                .iter()
                .filter(|sp| services::is_opaque(sp))
                .collect();
            if opaque_ports.is_empty() {
                continue;
            }
            for i in services::selected_pods(&index, svc) {
                for sp in &opaque_ports {
                    if let Some(n) =
                        services::target_port(&cluster.pods[i], &sp.target, sp.protocol)
                    {
                        opaque[i].push(n);
                    }
                }
            }
        }
        for v in &mut opaque {
            v.sort_unstable();
            v.dedup();
        }
        let peers: Vec<Vec<Peer>> = cluster
            .pods
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let identity = cluster.identity(p);
                // A hostNetwork pod is no mesh peer: no sidecar answers at
                // its (node's) address, so traffic to it is plain; nor is a
                // pod whose injection was opted out (Istio's auto mTLS
                // sends plaintext to a workload without a sidecar).
                let ips: &[std::net::IpAddr] = if p.has_sidecar() { &p.ips } else { &[] };
                ips.iter()
                    .map(|ip| Peer {
                        ip: *ip,
                        workload: p.key(),
                        identity: identity.clone(),
                        mtls: mtls[i].mode,
                        port_mtls: mtls[i].port_mtls.clone(),
                        opaque_ports: opaque[i].clone(),
                    })
                    .collect()
            })
            .collect();
        let peer_ips = peers.iter().flatten().map(|p: &Peer| p.ip).collect();
        let services = cluster
            .services
            .iter()
            .map(|s| services::resolve(&index, s))
            .collect();
        Self {
            authz: authz::AuthzIndex::new(cluster),
            index,
            policies,
            policies_by_ns,
            mtls,
            opaque,
            peers,
            peer_ips,
            services,
            egress_cache: Mutex::new(HashMap::new()),
        }
    }

    pub fn cluster(&self) -> &'a Cluster {
        self.index.cluster
    }

    pub fn index(&self) -> &ClusterIndex<'a> {
        &self.index
    }

    pub fn effective_mtls(&self, pod: usize) -> &mtls::EffectiveMtls {
        &self.mtls[pod]
    }

    /// Indices of the NetworkPolicies whose podSelector selects `pod`; none
    /// for a hostNetwork pod, which Palisade "ignores [...] when matching
    /// `podSelector`" (kubernetes.io, "NetworkPolicy and `hostNetwork` pods"),
    /// so no policy isolates it.
    pub fn selecting_policies(&self, pod: &Pod) -> Vec<usize> {
        if pod.host_network {
            return Vec::new();
        }
        let nps = &self.index.cluster.network_policies;
        self.policies_by_ns
            .get(pod.namespace.as_str())
            .map(|l| {
                l.iter()
                    .copied()
                    .filter(|&i| nps[i].pod_selector.matches(&pod.labels))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn egress(&self, selecting: &[usize]) -> Arc<EgressView> {
        if let Ok(cache) = self.egress_cache.lock()
            && let Some(v) = cache.get(selecting)
        {
            return v.clone();
        }
        let refs: Vec<&ResolvedPolicy> = selecting.iter().map(|&i| &self.policies[i]).collect();
        let (policy, reach) = netpol::egress_for(&refs);
        // Services with at least one endpoint the egress policy allows, and
        // those with a virtual IP the policy allows as a plain address (an
        // ipBlock such as 0.0.0.0/0): kube-proxy would lead a connection to
        // that address on to the endpoints, which the policy may deny
        // (policy applies to pods, after translation). Known as a Service,
        // the sidecar judges the endpoints instead, as `check` does.
        let compiled = palisade_api::l4::CompiledDirection::new(&policy);
        let services = self
            .services
            .iter()
            .enumerate()
            .filter(|(_, s)| {
                s.ports.iter().any(|sp| {
                    let allowed = |ip, port| compiled.evaluate(ip, port, sp.protocol).is_allowed();
                    sp.endpoints.iter().any(|e| allowed(e.ip, e.port))
                        || s.cluster_ips
                            .iter()
                            .chain(&s.external_ips)
                            .any(|vip| allowed(*vip, sp.port))
                })
            })
            .map(|(i, _)| i)
            .collect();
        let view = Arc::new(EgressView {
            policy,
            reach,
            services,
        });
        if let Ok(mut cache) = self.egress_cache.lock() {
            cache.insert(selecting.to_vec(), view.clone());
        }
        view
    }

    /// Compiles the config of `NS/POD`.
    pub fn compile_named(&self, workload: &str) -> Result<ProxyConfig, CompileError> {
        let (ns, name) = workload
            .split_once('/')
            .filter(|(n, p)| !n.is_empty() && !p.is_empty() && !p.contains('/'))
            .ok_or_else(|| CompileError::BadWorkloadName(workload.to_string()))?;
        let i = self
            .index
            .cluster
            .pod_index(ns, name)
            .ok_or_else(|| CompileError::UnknownWorkload(workload.to_string()))?;
        let pod = &self.index.cluster.pods[i];
        if pod.host_network {
            return Err(CompileError::HostNetwork(workload.to_string()));
        }
        if let Some(why) = &pod.no_sidecar {
            return Err(CompileError::NoSidecar(workload.to_string(), why.clone()));
        }
        Ok(self.compile(i))
    }

    /// Compiles the config of the pod at `pod` in `cluster.pods`. A
    /// hostNetwork pod runs no sidecar: `compile_named` refuses it and
    /// `compile_all` leaves it out; here it compiles as a pod that no policy
    /// selects.
    pub fn compile(&self, pod_index: usize) -> ProxyConfig {
        let cluster = self.index.cluster;
        let pod = &cluster.pods[pod_index];
        let selecting = self.selecting_policies(pod);
        let refs: Vec<&ResolvedPolicy> = selecting.iter().map(|&i| &self.policies[i]).collect();
        let (ingress, in_reach) = netpol::ingress_for(&refs, pod);
        let egress = self.egress(&selecting);
        let mut egress_policy = egress.policy.clone();
        netpol::exempt_node(&mut egress_policy, &pod.node_ips);
        // The peer table: every pod this one may reach or be reached from.
        let mut peers: Vec<Peer> = Vec::new();
        match (&in_reach, &egress.reach) {
            (PodSet::All, _) | (_, PodSet::All) => {
                for (i, entries) in self.peers.iter().enumerate() {
                    if i != pod_index {
                        peers.extend(entries.iter().cloned());
                    }
                }
            }
            (PodSet::Pods(a), PodSet::Pods(b)) => {
                let mut all: Vec<usize> = a.iter().chain(b.iter()).copied().collect();
                all.sort_unstable();
                all.dedup();
                for i in all.into_iter().filter(|&i| i != pod_index) {
                    peers.extend(self.peers[i].iter().cloned());
                }
            }
        }
        peers.extend(service_entries::peers(cluster, &pod.namespace, |ip| {
            self.peer_ips.contains(ip) || pod.ips.contains(ip)
        }));
        peers.sort_by_key(|p| p.ip);
        let mut ports: Vec<ContainerPort> = pod
            .ports
            .iter()
            .map(|p| ContainerPort {
                name: p.name.clone(),
                port: p.port,
                protocol: p.protocol,
            })
            .collect();
        ports.sort();
        ports.dedup();
        let mut ips = pod.ips.clone();
        ips.sort();
        let mtls = &self.mtls[pod_index];
        let mut config = ProxyConfig {
            version: String::new(),
            mesh: MeshSettings {
                trust_domain: cluster.mesh.trust_domain.clone(),
                trust_domain_aliases: cluster.mesh.trust_domain_aliases.clone(),
                path_normalization: cluster.mesh.path_normalization,
                cluster_domain: cluster.mesh.cluster_domain.clone(),
                federated_bundles: cluster.mesh.federated_bundles.clone(),
                trust_bundle: String::new(),
                svid_signer: String::new(),
            },
            workload: Workload {
                namespace: pod.namespace.clone(),
                name: pod.name.clone(),
                service_account: pod.service_account.clone(),
                identity: cluster.identity(pod),
                ips,
                ports,
                opaque_ports: self.opaque[pod_index].clone(),
            },
            inbound: Inbound {
                mtls: mtls.mode,
                port_mtls: mtls.port_mtls.clone(),
                ingress,
            },
            outbound: Outbound {
                egress: egress_policy,
            },
            peers,
            // Services egress lets it reach, and those that select the pod
            // itself or have an endpoint on its node (a hostNetwork pod):
            // traffic to itself and to its own node is always allowed.
            services: self
                .services
                .iter()
                .enumerate()
                .filter(|(i, s)| {
                    egress.services.binary_search(i).is_ok()
                        || s.ports.iter().any(|sp| {
                            sp.endpoints
                                .iter()
                                .any(|e| pod.ips.contains(&e.ip) || pod.node_ips.contains(&e.ip))
                        })
                })
                .map(|(i, s)| {
                    services::for_client(&self.index, &cluster.services[i], s, &pod.node_ips)
                })
                .chain(service_entries::services(cluster, &pod.namespace))
                .collect(),
            authorization: self.authz.policies_for(pod),
        };
        config.version = config.compute_version();
        config
    }

    /// Compiles every workload that runs a sidecar, in pod order: every pod
    /// but the hostNetwork ones (`CompileError::HostNetwork`) and those
    /// opted out of injection (`CompileError::NoSidecar`).
    pub fn compile_all(&self) -> Vec<ProxyConfig> {
        let pods = &self.index.cluster.pods;
        (0..pods.len())
            .filter(|&i| pods[i].has_sidecar())
            .map(|i| self.compile(i))
            .collect()
    }
}
