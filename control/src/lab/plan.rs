//! The lab's plan: which namespace each pod gets, its address and ports,
//! each Service's cluster IP, and the outside addresses. Pods and Services
//! without an address get one, written into a copy of the manifests so the
//! control plane and `palisade check` see the same addresses as the lab.
use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use ipnet::{IpNet, Ipv4Net};
use palisade_api::Protocol;
use serde::{Deserialize, Serialize};
use serde_yaml::Value;

use super::LabError;
use crate::cluster::{Cluster, NetpolPeer};
use crate::load::yaml11;

/// Pods live in 198.18.0.0/15 (RFC 2544), Services in 198.19.255.0/24.
pub const POD_RANGE: Ipv4Net = ipv4net(198, 18, 0, 0, 15);
pub const SERVICE_RANGE: Ipv4Net = ipv4net(198, 19, 255, 0, 24);
/// The hub's bridge address and the outside namespace's address on it.
pub const HUB_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 254, 1);
pub const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(198, 19, 254, 2);

const fn ipv4net(a: u8, b: u8, c: u8, d: u8, len: u8) -> Ipv4Net {
    match Ipv4Net::new(Ipv4Addr::new(a, b, c, d), len) {
        Ok(n) => n,
        Err(_) => panic!("bad constant network"),
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabPod {
    /// `NS/POD`
    pub key: String,
    pub netns: String,
    pub ip: Ipv4Addr,
    pub tcp_ports: Vec<u16>,
    pub udp_ports: Vec<u16>,
    /// False when the pod opted out of injection.
    pub meshed: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabService {
    /// `NS/NAME`
    pub key: String,
    pub ip: Ipv4Addr,
    pub ports: Vec<(u16, Protocol)>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LabPlan {
    /// The manifests with assigned addresses, as the lab runs them.
    pub manifests: PathBuf,
    pub pods: Vec<LabPod>,
    pub services: Vec<LabService>,
    pub externals: Vec<Ipv4Addr>,
}

impl LabPlan {
    /// Copies `config` into `state/manifests` with addresses assigned,
    /// loads it, and plans the lab.
    pub fn make(
        config: &Path,
        state: &Path,
        extra_externals: &[Ipv4Addr],
    ) -> Result<(LabPlan, Cluster), LabError> {
        let manifests = state.join("manifests");
        let opted_out = assign_addresses(config, &manifests)?;
        let cluster = crate::load::load_dir(&manifests).map_err(|e| {
            LabError::Precondition(format!(
                "the manifests in {} do not load:\n{e}",
                config.display()
            ))
        })?;
        let mut pods = Vec::new();
        for (i, pod) in cluster.pods.iter().enumerate() {
            if pod.finished() {
                // Lab pods are indexed like `cluster.pods`; a finished pod
                // has no address (and no network presence) to run.
                return Err(LabError::Precondition(format!(
                    "pod {} is in phase {}: a finished pod has no network presence, so the lab cannot run it (remove it or make it Running)",
                    pod.key(),
                    pod.phase.as_deref().unwrap_or_default()
                )));
            }
            let ip = pod
                .ips
                .iter()
                .find_map(|ip| match ip {
                    IpAddr::V4(v4) => Some(*v4),
                    IpAddr::V6(_) => None,
                })
                .ok_or_else(|| LabError::Setup(format!("pod {} has no IPv4 address", pod.key())))?;
            let ports = |proto| {
                let set: BTreeSet<u16> = pod
                    .ports
                    .iter()
                    .filter(|p| p.protocol == proto)
                    .map(|p| p.port)
                    .collect();
                set.into_iter().collect::<Vec<_>>()
            };
            pods.push(LabPod {
                key: pod.key(),
                netns: format!("palisade-lab-p{i}"),
                ip,
                tcp_ports: ports(Protocol::Tcp),
                udp_ports: ports(Protocol::Udp),
                meshed: !opted_out.contains(&pod.key()) && pod.no_sidecar.is_none(),
            });
        }
        let services = cluster
            .services
            .iter()
            // A Service kube-proxy leaves alone has no working cluster IP
            // here: nothing to probe (and nothing to send out of the lab).
            .filter(|svc| svc.unproxied_by.is_none())
            .filter_map(|svc| {
                let ip = svc.cluster_ips.iter().find_map(|ip| match ip {
                    IpAddr::V4(v4) => Some(*v4),
                    IpAddr::V6(_) => None,
                })?;
                Some(LabService {
                    key: format!("{}/{}", svc.namespace, svc.name),
                    ip,
                    ports: svc.ports.iter().map(|p| (p.port, p.protocol)).collect(),
                })
            })
            .collect();
        let mut externals: BTreeSet<Ipv4Addr> = extra_externals.iter().copied().collect();
        for policy in &cluster.network_policies {
            for rule in policy.ingress.iter().chain(&policy.egress) {
                for peer in rule.peers.iter().flatten() {
                    if let NetpolPeer::IpBlock {
                        cidr: IpNet::V4(cidr),
                        except,
                    } = peer
                    {
                        let except4: Vec<Ipv4Net> = except
                            .iter()
                            .filter_map(|e| match e {
                                IpNet::V4(e) => Some(*e),
                                IpNet::V6(_) => None,
                            })
                            .collect();
                        externals.extend(sample_address(cidr, &except4));
                        for e in &except4 {
                            externals.extend(sample_address(e, &[]));
                        }
                    }
                }
            }
        }
        for ip in &externals {
            if POD_RANGE.contains(ip) {
                return Err(LabError::Precondition(format!(
                    "external address {ip} is inside the pod range {POD_RANGE}"
                )));
            }
        }
        Ok((
            LabPlan {
                manifests,
                pods,
                services,
                externals: externals.into_iter().collect(),
            },
            cluster,
        ))
    }

    pub fn pod(&self, key: &str) -> Option<&LabPod> {
        self.pods.iter().find(|p| p.key == key)
    }
}

/// An address inside `net` and outside every `except`, preferring the
/// documentation ranges; never one in the pod range.
fn sample_address(net: &Ipv4Net, except: &[Ipv4Net]) -> Option<Ipv4Addr> {
    let preferred = [
        Ipv4Addr::new(203, 0, 113, 1),
        Ipv4Addr::new(192, 0, 2, 1),
        Ipv4Addr::new(198, 51, 100, 1),
    ];
    let first = u32::from(net.network()).saturating_add(u32::from(net.prefix_len() < 31));
    let hosts = (0..256u32)
        .filter_map(|i| first.checked_add(i))
        .map(Ipv4Addr::from);
    preferred.into_iter().chain(hosts).find(|ip| {
        net.contains(ip) && !except.iter().any(|e| e.contains(ip)) && !POD_RANGE.contains(ip)
    })
}

/// Copies every manifest from `from` to `to`, giving each Pod without an
/// IPv4 `status.podIP` and each Service without a `clusterIP` an address.
/// Returns the `NS/POD` keys of pods that opted out of injection.
fn assign_addresses(from: &Path, to: &Path) -> Result<BTreeSet<String>, LabError> {
    if to.exists() {
        std::fs::remove_dir_all(to)?;
    }
    let mut files: Vec<PathBuf> = walkdir::WalkDir::new(from)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| e.into_path())
        .filter(|p| matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml")))
        .collect();
    files.sort();
    let mut docs_by_file = Vec::new();
    let mut used_pod: BTreeSet<Ipv4Addr> = BTreeSet::new();
    let mut used_svc: BTreeSet<Ipv4Addr> = BTreeSet::new();
    for file in &files {
        let text = std::fs::read_to_string(file)?;
        let mut docs = Vec::new();
        // Read and written back as the loader (and kubectl) reads YAML.
        let values = yaml11::read_documents(&text).map_err(|(_, e)| {
            LabError::Precondition(format!("{}: not valid YAML: {e}", file.display()))
        })?;
        for value in values {
            // The loader takes lists apart; the lab's own pass over pods
            // (addresses, hostNetwork) reads top-level documents only.
            if value
                .get("kind")
                .and_then(Value::as_str)
                .is_some_and(|k| k.ends_with("List"))
                && value.get("items").is_some_and(Value::is_sequence)
            {
                return Err(LabError::Precondition(format!(
                    "{}: a list (kind {}): the lab reads each object as a document of its own (write the items as separate `---` documents)",
                    file.display(),
                    value
                        .get("kind")
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                )));
            }
            if value.get("kind").and_then(Value::as_str) == Some("Pod")
                && value
                    .get("spec")
                    .and_then(|s| s.get("hostNetwork"))
                    .and_then(Value::as_bool)
                    == Some(true)
            {
                // Checked before its address, which is its node's. The lab
                // gives every pod a network namespace of its own and has no
                // node namespace for a hostNetwork pod to share.
                return Err(LabError::Precondition(format!(
                    "{}: pod {} has spec.hostNetwork: true: the lab runs every pod in a network namespace of its own and cannot model one sharing its node's (remove it; NetworkPolicy does not apply to it: kubernetes.io, NetworkPolicy and hostNetwork pods)",
                    file.display(),
                    pod_key(&value)
                )));
            }
            if let Some(ip) = pod_ip(&value) {
                if !POD_RANGE.contains(&ip) {
                    return Err(LabError::Precondition(format!(
                        "{}: pod {} has IP {ip}; lab pods must be in {POD_RANGE}",
                        file.display(),
                        name_of(&value)
                    )));
                }
                used_pod.insert(ip);
            }
            if let Some(ip) = cluster_ip(&value) {
                used_svc.insert(ip);
            }
            docs.push(value);
        }
        docs_by_file.push((file, docs));
    }
    let mut next_pod = (u32::from(POD_RANGE.network()) + 10..u32::from(POD_RANGE.broadcast()))
        .map(Ipv4Addr::from)
        .filter(|ip| {
            !used_pod.contains(ip) && !SERVICE_RANGE.contains(ip) && ip.octets()[2] != 254
        });
    let mut next_svc = (u32::from(SERVICE_RANGE.network()) + 1
        ..u32::from(SERVICE_RANGE.broadcast()))
        .map(Ipv4Addr::from)
        .filter(|ip| !used_svc.contains(ip));
    let mut opted_out = BTreeSet::new();
    for (file, docs) in &mut docs_by_file {
        let mut out = String::new();
        for (i, doc) in docs.iter_mut().enumerate() {
            match doc.get("kind").and_then(Value::as_str) {
                Some("Pod") => {
                    if annotation(doc, "palisade.dev/inject") == Some("false") {
                        opted_out.insert(pod_key(doc));
                    }
                    if pod_ip(doc).is_none() {
                        let ip = next_pod
                            .next()
                            .ok_or_else(|| LabError::Setup("pod range exhausted".into()))?;
                        set_path(doc, &["status", "podIP"], Value::from(ip.to_string()));
                    }
                }
                Some("Service") => {
                    let headless = doc
                        .get("spec")
                        .and_then(|s| s.get("clusterIP"))
                        .and_then(Value::as_str)
                        == Some("None");
                    if cluster_ip(doc).is_none() && !headless {
                        let ip = next_svc
                            .next()
                            .ok_or_else(|| LabError::Setup("service range exhausted".into()))?;
                        set_path(doc, &["spec", "clusterIP"], Value::from(ip.to_string()));
                    }
                }
                _ => {}
            }
            if i > 0 {
                out.push_str("---\n");
            }
            out.push_str(&yaml11::to_string(doc).map_err(|e| LabError::Setup(e.to_string()))?);
        }
        let rel = file.strip_prefix(from).unwrap_or(file);
        let dest = to.join(rel);
        if let Some(parent) = dest.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(dest, out)?;
    }
    std::fs::create_dir_all(to)?;
    Ok(opted_out)
}

fn annotation<'a>(doc: &'a Value, key: &str) -> Option<&'a str> {
    doc.get("metadata")?.get("annotations")?.get(key)?.as_str()
}

fn name_of(doc: &Value) -> String {
    doc.get("metadata")
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("?")
        .to_string()
}

fn pod_key(doc: &Value) -> String {
    let ns = doc
        .get("metadata")
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    format!("{ns}/{}", name_of(doc))
}

fn pod_ip(doc: &Value) -> Option<Ipv4Addr> {
    if doc.get("kind").and_then(Value::as_str) != Some("Pod") {
        return None;
    }
    let status = doc.get("status")?;
    let single = status.get("podIP").and_then(Value::as_str).into_iter();
    let many = status
        .get("podIPs")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("ip").and_then(Value::as_str));
    single.chain(many).find_map(|s| s.parse().ok())
}

fn cluster_ip(doc: &Value) -> Option<Ipv4Addr> {
    if doc.get("kind").and_then(Value::as_str) != Some("Service") {
        return None;
    }
    doc.get("spec")?.get("clusterIP")?.as_str()?.parse().ok()
}

fn set_path(doc: &mut Value, path: &[&str], value: Value) {
    let mut node = doc;
    for (i, key) in path.iter().enumerate() {
        if !node.is_mapping() {
            *node = Value::Mapping(Default::default());
        }
        let Value::Mapping(map) = node else { return };
        if i + 1 == path.len() {
            map.insert(Value::from(*key), value);
            return;
        }
        node = map
            .entry(Value::from(*key))
            .or_insert_with(|| Value::Mapping(Default::default()));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_avoid_excepts_and_prefer_documentation_ranges() {
        let all: Ipv4Net = "0.0.0.0/0".parse().unwrap();
        let meta: Ipv4Net = "169.254.169.254/32".parse().unwrap();
        assert_eq!(
            sample_address(&all, &[meta]),
            Some(Ipv4Addr::new(203, 0, 113, 1))
        );
        assert_eq!(
            sample_address(&meta, &[]),
            Some(Ipv4Addr::new(169, 254, 169, 254))
        );
        let doc: Ipv4Net = "203.0.113.0/24".parse().unwrap();
        let first: Ipv4Net = "203.0.113.0/30".parse().unwrap();
        assert_eq!(
            sample_address(&doc, &[first]),
            Some(Ipv4Addr::new(203, 0, 113, 4))
        );
        let pods: Ipv4Net = "198.18.0.0/16".parse().unwrap();
        assert_eq!(sample_address(&pods, &[]), None);
    }

    // The lab cannot model a pod in its node's network namespace: a clear
    // precondition, before its (node) address is judged out of range.
    #[test]
    fn host_network_pods_are_refused() {
        let config = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let pod = "apiVersion: v1\nkind: Pod\nmetadata: {namespace: x, name: agent}\nspec: {hostNetwork: true, containers: [{name: c}]}\nstatus: {podIP: 10.0.0.1}\n";
        std::fs::write(config.path().join("a.yaml"), pod).unwrap();
        let err = LabPlan::make(config.path(), state.path(), &[]).unwrap_err();
        let LabError::Precondition(msg) = err else {
            panic!("{err:?}");
        };
        assert!(
            msg.contains("pod x/agent has spec.hostNetwork: true") && msg.contains("cannot model"),
            "{msg}"
        );
        // Without the field, or false, the pod runs.
        let plain = pod.replace("hostNetwork: true, ", "hostNetwork: false, ");
        let plain = plain.replace("status: {podIP: 10.0.0.1}\n", "");
        std::fs::write(config.path().join("a.yaml"), plain).unwrap();
        let (plan, _) = LabPlan::make(config.path(), state.path(), &[]).unwrap();
        assert_eq!(plan.pods.len(), 1);
    }

    // The loader reads lists item by item; the lab's pass over pod
    // addresses does not, so a list is refused before a pod in it could
    // keep an address outside the lab's ranges.
    #[test]
    fn lists_are_refused() {
        let config = tempfile::tempdir().unwrap();
        let state = tempfile::tempdir().unwrap();
        let list = "apiVersion: v1\nkind: List\nitems:\n- apiVersion: v1\n  kind: Pod\n  metadata: {namespace: x, name: a}\n  spec: {containers: [{name: c}]}\n  status: {podIP: 10.0.0.1}\n";
        std::fs::write(config.path().join("a.yaml"), list).unwrap();
        let err = LabPlan::make(config.path(), state.path(), &[]).unwrap_err();
        let LabError::Precondition(msg) = err else {
            panic!("{err:?}");
        };
        assert!(msg.contains("a list (kind List)"), "{msg}");
    }
}
