//! NetworkPolicy resolution: each policy's peers are resolved once to IP sets
//! (selected pods' host prefixes, ipBlocks with excepts) and the pods behind
//! them; then, per workload, the selecting policies' rules are unioned into a
//! `DirectionPolicy`. Named ports resolve against the selected pod on ingress
//! and against the destination pod on egress, where a rule with named ports is
//! expanded into concrete (IP set, port) rules, since the sidecar sees numbers.
use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnet::IpNet;
use palisade_api::{DirectionPolicy, L4Peer, L4Rule, PortRange, Protocol};

use super::index::ClusterIndex;
use crate::cluster::{NetpolPeer, NetpolPort, NetpolRule, NetworkPolicy, Pod, PortRef};

/// Which pods a rule can reach or be reached from (for the peer table).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PodSet {
    All,
    Pods(Vec<usize>),
}

/// One ingress rule with peers resolved and ports left for the workload.
#[derive(Debug, Clone)]
pub struct IngressRule {
    pub index: usize,
    pub peers: Option<Vec<L4Peer>>,
    pub pods: PodSet,
    pub ports: Option<Vec<NetpolPort>>,
}

/// A NetworkPolicy with every selector resolved.
#[derive(Debug, Clone)]
pub struct ResolvedPolicy {
    pub key: String,
    pub affects_ingress: bool,
    pub affects_egress: bool,
    pub ingress: Vec<IngressRule>,
    /// Final egress rules (named ports expanded) and the pods each reaches.
    pub egress: Vec<(L4Rule, PodSet)>,
}

struct ResolvedPeer {
    l4: L4Peer,
    pods: Vec<usize>,
}

fn host_nets(index: &ClusterIndex<'_>, pods: &[usize]) -> Vec<IpNet> {
    let hosts: Vec<IpNet> = pods
        .iter()
        .flat_map(|&i| index.cluster.pods[i].ips.iter().map(|ip| IpNet::from(*ip)))
        .collect();
    IpNet::aggregate(&hosts)
}

/// Whether a rule's resolved peers admit the address `ip`: it lies in one
/// peer's nets and in none of that peer's excepts. No peers (`to`/`from`
/// absent) admits every address.
fn peers_admit(peers: Option<&[ResolvedPeer]>, ip: IpAddr) -> bool {
    peers.is_none_or(|list| {
        list.iter().any(|p| {
            p.l4.nets.iter().any(|n| n.contains(&ip))
                && !p.l4.except.iter().any(|e| e.contains(&ip))
        })
    })
}

fn resolve_peer(index: &ClusterIndex<'_>, np: &NetworkPolicy, peer: &NetpolPeer) -> ResolvedPeer {
    match peer {
        NetpolPeer::Pods { namespaces, pods } => {
            let ns_list: Vec<&str> = match namespaces {
                // "podSelector ... selects particular Pods in the same
                // namespace as the NetworkPolicy"
                None => vec![np.namespace.as_str()],
                Some(sel) => index.namespaces(sel),
            };
            // kubernetes.io, "Network Policies": the most common
            // implementation, Palisade's, "ignores `hostNetwork` pods when
            // matching `podSelector` and `namespaceSelector`": their IP is
            // the node's, and a selector matching one must not let in all of
            // that node's traffic.
            let mut selected: Vec<usize> = ns_list
                .iter()
                .flat_map(|ns| index.pods_in(ns, pods.as_ref()))
                .filter(|&i| !index.cluster.pods[i].host_network)
                .collect();
            selected.sort_unstable();
            ResolvedPeer {
                l4: L4Peer {
                    description: peer.to_string(),
                    nets: host_nets(index, &selected),
                    except: Vec::new(),
                },
                pods: selected,
            }
        }
        NetpolPeer::IpBlock { cidr, except } => ResolvedPeer {
            l4: L4Peer {
                description: peer.to_string(),
                nets: vec![*cidr],
                except: except.clone(),
            },
            pods: index.pods_in_net(cidr, except),
        },
    }
}

fn resolve_peers(
    index: &ClusterIndex<'_>,
    np: &NetworkPolicy,
    rule: &NetpolRule,
) -> Option<Vec<ResolvedPeer>> {
    rule.peers
        .as_ref()
        .map(|peers| peers.iter().map(|p| resolve_peer(index, np, p)).collect())
}

fn numbered(p: &NetpolPort) -> Option<PortRange> {
    match &p.port {
        None => Some(PortRange {
            protocol: p.protocol,
            port: 1,
            end_port: u16::MAX,
        }),
        Some(PortRef::Number(n)) => Some(PortRange {
            protocol: p.protocol,
            port: *n,
            end_port: p.end_port.unwrap_or(*n),
        }),
        Some(PortRef::Name(_)) => None,
    }
}

fn pod_set(peers: &Option<Vec<ResolvedPeer>>) -> PodSet {
    match peers {
        None => PodSet::All,
        Some(list) => {
            let mut all: Vec<usize> = list.iter().flat_map(|p| p.pods.iter().copied()).collect();
            all.sort_unstable();
            all.dedup();
            PodSet::Pods(all)
        }
    }
}

pub fn resolve(index: &ClusterIndex<'_>, np: &NetworkPolicy) -> ResolvedPolicy {
    let key = np.key();
    let ingress = if np.affects_ingress {
        np.ingress
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let peers = resolve_peers(index, np, rule);
                IngressRule {
                    index: i,
                    pods: pod_set(&peers),
                    peers: peers.map(|l| l.into_iter().map(|p| p.l4).collect()),
                    ports: rule.ports.clone(),
                }
            })
            .collect()
    } else {
        Vec::new()
    };
    let mut egress = Vec::new();
    if np.affects_egress {
        for (i, rule) in np.egress.iter().enumerate() {
            let peers = resolve_peers(index, np, rule);
            let Some(ports) = &rule.ports else {
                egress.push((
                    L4Rule {
                        policy: key.clone(),
                        rule: i,
                        peers: None,
                        ports: None,
                    },
                    pod_set(&peers),
                ));
                if let (Some(last), Some(peers)) = (egress.last_mut(), peers) {
                    last.0.peers = Some(peers.into_iter().map(|p| p.l4).collect());
                }
                continue;
            };
            let nums: Vec<PortRange> = ports.iter().filter_map(numbered).collect();
            let names: Vec<(&str, Protocol)> = ports
                .iter()
                .filter_map(|p| match &p.port {
                    Some(PortRef::Name(n)) => Some((n.as_str(), p.protocol)),
                    _ => None,
                })
                .collect();
            // Candidate destination pods for named ports.
            let candidates: Vec<usize> = match pod_set(&peers) {
                PodSet::All => (0..index.cluster.pods.len()).collect(),
                PodSet::Pods(list) => list,
            };
            if !nums.is_empty() {
                egress.push((
                    L4Rule {
                        policy: key.clone(),
                        rule: i,
                        peers: peers
                            .as_ref()
                            .map(|l| l.iter().map(|p| p.l4.clone()).collect()),
                        ports: Some(nums),
                    },
                    pod_set(&peers),
                ));
            }
            // "egress: the destination pod's" container port of that name,
            // towards those of its addresses the rule's peers admit: the
            // destination IP itself must be in a peer (an ipBlock's cidr
            // minus except), not merely some other address of the same pod
            // (a dual-stack pod's other family, or an excepted address).
            let mut by_port: BTreeMap<PortRange, (Vec<usize>, Vec<IpNet>)> = BTreeMap::new();
            for &pi in &candidates {
                let pod = &index.cluster.pods[pi];
                if pod.host_network {
                    // Ignored when matching, like a selector: its named
                    // ports would open its node's address.
                    continue;
                }
                let admitted: Vec<IpNet> = pod
                    .ips
                    .iter()
                    .filter(|ip| peers_admit(peers.as_deref(), **ip))
                    .map(|ip| IpNet::from(*ip))
                    .collect();
                if admitted.is_empty() {
                    continue;
                }
                for (name, proto) in &names {
                    if let Some(n) = pod.named_port(name, *proto) {
                        let (pods, hosts) = by_port
                            .entry(PortRange {
                                protocol: *proto,
                                port: n,
                                end_port: n,
                            })
                            .or_default();
                        pods.push(pi);
                        hosts.extend_from_slice(&admitted);
                    }
                }
            }
            for (range, (mut pods, hosts)) in by_port {
                pods.sort_unstable();
                pods.dedup();
                let names_desc: Vec<&str> = names.iter().map(|(n, _)| *n).collect();
                egress.push((
                    L4Rule {
                        policy: key.clone(),
                        rule: i,
                        peers: Some(vec![L4Peer {
                            description: format!(
                                "pods with named port {} = {}",
                                names_desc.join("|"),
                                range.port
                            ),
                            nets: IpNet::aggregate(&hosts),
                            except: Vec::new(),
                        }]),
                        ports: Some(vec![range]),
                    },
                    PodSet::Pods(pods),
                ));
            }
        }
    }
    ResolvedPolicy {
        key,
        affects_ingress: np.affects_ingress,
        affects_egress: np.affects_egress,
        ingress,
        egress,
    }
}

/// kubernetes.io, "Network Policies", on IP blocks: "exception: traffic to
/// and from the node where a Pod is running is always allowed, regardless of
/// the IP address of the Pod or the node". In an isolated direction, the
/// pod's own node (`status.hostIPs`) gets a rule of its own, first, so it is
/// both enforced by the sidecar and reported as the reason. Not isolated,
/// everything is allowed already and nothing is added. Another node's
/// address is not exempt, and a pod without `status.hostIP` gets nothing.
pub fn exempt_node(dp: &mut DirectionPolicy, node_ips: &[IpAddr]) {
    if !dp.isolated {
        return;
    }
    if let Some(rule) = L4Rule::node_traffic(node_ips) {
        dp.rules.insert(0, rule);
    }
}

/// Ingress of `pod` given the resolved policies that select it.
pub fn ingress_for(policies: &[&ResolvedPolicy], pod: &Pod) -> (DirectionPolicy, PodSet) {
    let mut dp = DirectionPolicy::default();
    let mut reach: Vec<usize> = Vec::new();
    let mut all = false;
    for p in policies.iter().filter(|p| p.affects_ingress) {
        dp.isolated = true;
        dp.policies.push(p.key.clone());
        for r in &p.ingress {
            let ports = match &r.ports {
                None => None,
                Some(list) => {
                    // "ingress: the selected pod's container port of that name";
                    // a name the pod does not declare matches nothing.
                    let resolved: Vec<PortRange> = list
                        .iter()
                        .filter_map(|pp| match &pp.port {
                            Some(PortRef::Name(n)) => {
                                pod.named_port(n, pp.protocol).map(|num| PortRange {
                                    protocol: pp.protocol,
                                    port: num,
                                    end_port: num,
                                })
                            }
                            _ => numbered(pp),
                        })
                        .collect();
                    if resolved.is_empty() {
                        continue;
                    }
                    Some(resolved)
                }
            };
            match &r.pods {
                PodSet::All => all = true,
                PodSet::Pods(l) => reach.extend_from_slice(l),
            }
            dp.rules.push(L4Rule {
                policy: p.key.clone(),
                rule: r.index,
                peers: r.peers.clone(),
                ports,
            });
        }
    }
    finish(&mut dp);
    exempt_node(&mut dp, &pod.node_ips);
    let reach = reach_set(all || !dp.isolated, reach);
    (dp, reach)
}

/// Egress of a workload given the resolved policies that select it, without
/// the node exemption (shared by every pod with the same policies; the
/// caller adds `exempt_node` for the pod's node).
pub fn egress_for(policies: &[&ResolvedPolicy]) -> (DirectionPolicy, PodSet) {
    let mut dp = DirectionPolicy::default();
    let mut reach: Vec<usize> = Vec::new();
    let mut all = false;
    for p in policies.iter().filter(|p| p.affects_egress) {
        dp.isolated = true;
        dp.policies.push(p.key.clone());
        for (rule, pods) in &p.egress {
            match pods {
                PodSet::All => all = true,
                PodSet::Pods(l) => reach.extend_from_slice(l),
            }
            dp.rules.push(rule.clone());
        }
    }
    finish(&mut dp);
    let reach = reach_set(all || !dp.isolated, reach);
    (dp, reach)
}

fn reach_set(all: bool, mut reach: Vec<usize>) -> PodSet {
    if all {
        PodSet::All
    } else {
        reach.sort_unstable();
        reach.dedup();
        PodSet::Pods(reach)
    }
}

fn finish(dp: &mut DirectionPolicy) {
    dp.policies.sort();
    dp.policies.dedup();
    dp.rules
        .sort_by(|a, b| (&a.policy, a.rule).cmp(&(&b.policy, b.rule)));
}
