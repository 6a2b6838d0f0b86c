//! `palisade check`: would this connection or request be allowed, and why?
//! Every layer a real connection passes is judged with the evaluators the
//! sidecar uses (`palisade_api::l4`, `palisade_api::authz`,
//! `palisade_api::normalize`) on the compiled configs of both ends: egress at
//! the source, the destination port's mTLS mode, ingress at the destination,
//! and authorization. A Service destination is judged once per endpoint, as
//! NetworkPolicy applies to the pods behind it. On a port the sidecars treat
//! as opaque (`palisade_api::protocol`, the destination's opaque ports) an
//! HTTP request is judged as the TCP connection the sidecar tunnels.
use std::net::IpAddr;

use palisade_api::authz::{CompiledAuthz, DecisionReason, HttpRequest, RequestContext, Verdict};
use palisade_api::l4::{CompiledDirection, L4Decision, NODE_TRAFFIC_REASON};
use palisade_api::{MtlsMode, Protocol, ProxyConfig};

mod layers;
pub mod report;
pub mod request;
mod service_entry;

pub use layers::{
    AuthzLayer, AuthzMatch, CheckReport, EndpointResult, L4Layer, LayerVerdict, MtlsLayer,
};

pub use request::{CheckInputError, CheckRequest, Destination, HttpSpec, Source};

use palisade_api::protocol::{SERVER_FIRST_PORTS, is_http_app_protocol};

use crate::cluster::{PortRef, Service, ServicePort};
use crate::compile::Compiler;
use crate::compile::services::{is_opaque, selected_pods, target_port};
use crate::load::OPAQUE_PORTS_ANNOTATION;

fn skip_l4(reason: &'static str, detail: impl Into<String>) -> L4Layer {
    L4Layer {
        verdict: LayerVerdict::Skip,
        reason,
        policy: None,
        rule: None,
        peer: None,
        policies: Vec::new(),
        detail: detail.into(),
    }
}

/// The mTLS layer where no sidecar terminates the connection: plain,
/// accepted as such.
fn plain_mtls(detail: impl Into<String>) -> MtlsLayer {
    MtlsLayer {
        verdict: LayerVerdict::Skip,
        mode: None,
        policy: None,
        mtls: false,
        plaintext_accepted: true,
        detail: detail.into(),
    }
}

/// An L4 layer at a pod that runs no sidecar (its injection was opted
/// out): nothing there enforces the NetworkPolicies that select it.
fn no_sidecar_l4(compiler: &Compiler<'_>, pod: usize, at: &str, why: &str) -> L4Layer {
    let cluster = compiler.cluster();
    let p = &cluster.pods[pod];
    let policies: Vec<String> = compiler
        .selecting_policies(p)
        .into_iter()
        .map(|i| {
            let np = &cluster.network_policies[i];
            format!("{}/{}", np.namespace, np.name)
        })
        .collect();
    let unenforced = if policies.is_empty() {
        String::new()
    } else {
        format!(
            "; the NetworkPolicies selecting it ({}) are not enforced there",
            policies.join(", ")
        )
    };
    L4Layer {
        policies,
        ..skip_l4(
            "not-meshed",
            format!(
                "{at}: {} runs no sidecar ({why}): nothing enforces policy there{unenforced}",
                p.key()
            ),
        )
    }
}

/// The authorization layer where it does not apply (not proxied, not TCP,
/// outside the mesh).
fn skip_authz(detail: impl Into<String>) -> AuthzLayer {
    AuthzLayer {
        verdict: LayerVerdict::Skip,
        reason: "not-applicable",
        policy: None,
        rule: None,
        traffic: "tcp",
        sni: None,
        audit: Vec::new(),
        dry_run_verdict: None,
        detail: detail.into(),
    }
}

/// Why NetworkPolicy is not evaluated at a hostNetwork end of a connection.
pub const HOST_NETWORK_REASON: &str = "hostNetwork pod: NetworkPolicy does not apply (kubernetes.io, NetworkPolicy and hostNetwork pods)";

/// kubernetes.io, "Network Policies", "NetworkPolicy and `hostNetwork`
/// pods": the most common implementation, Palisade's, "ignores `hostNetwork`
/// pods when matching `podSelector` and `namespaceSelector`", so no policy
/// isolates the pod; the other end still judges its traffic as the node's.
fn host_network_l4(at: &str) -> L4Layer {
    skip_l4("host-network", format!("{at}: {HOST_NETWORK_REASON}"))
}

fn l4_layer(
    dir: &palisade_api::DirectionPolicy,
    remote: IpAddr,
    port: u16,
    protocol: Protocol,
    at: &str,
) -> L4Layer {
    let decision = CompiledDirection::new(dir).evaluate(remote, port, protocol);
    let policies = dir.policies.clone();
    match decision {
        L4Decision::NotIsolated => L4Layer {
            verdict: LayerVerdict::Allow,
            reason: "not-isolated",
            policy: None,
            rule: None,
            peer: None,
            policies,
            detail: format!(
                "{at}: not isolated (no NetworkPolicy of this type selects it): allowed"
            ),
        },
        // The compiled node rule (`L4Rule::node_traffic`): not a
        // NetworkPolicy, so no policy or rule is named.
        L4Decision::Allowed { ref peer, .. } if decision.is_node_traffic() => L4Layer {
            verdict: LayerVerdict::Allow,
            reason: "node-traffic",
            detail: match peer {
                Some(p) => format!("{at}: allowed: {NODE_TRAFFIC_REASON} ({p})"),
                None => format!("{at}: allowed: {NODE_TRAFFIC_REASON}"),
            },
            policy: None,
            rule: None,
            peer: peer.as_ref().map(|p| p.to_string()),
            policies,
        },
        L4Decision::Allowed { policy, rule, peer } => L4Layer {
            verdict: LayerVerdict::Allow,
            reason: "rule-matched",
            detail: format!(
                "{at}: allowed by NetworkPolicy {policy} rule {rule}, peer {}",
                peer.as_deref().unwrap_or("(all peers)")
            ),
            policy: Some(policy.to_string()),
            rule: Some(rule),
            peer: peer.map(|p| p.to_string()),
            policies,
        },
        L4Decision::Denied { .. } => L4Layer {
            verdict: LayerVerdict::Deny,
            reason: "no-rule-matched",
            detail: format!(
                "{at}: denied: isolated by [{}] and no rule matches",
                policies.join(", ")
            ),
            policy: None,
            rule: None,
            peer: None,
            policies,
        },
    }
}

fn authz_match(m: &palisade_api::authz::PolicyMatch) -> AuthzMatch {
    AuthzMatch {
        policy: m.policy.to_string(),
        rule: m.rule,
        action: format!("{:?}", m.action).to_ascii_uppercase(),
        dry_run: m.dry_run,
    }
}

fn verdict(v: Verdict) -> LayerVerdict {
    match v {
        Verdict::Allow => LayerVerdict::Allow,
        Verdict::Deny => LayerVerdict::Deny,
    }
}

/// Compiled configs by pod, so judging many connections (`palisade diff`)
/// compiles each pod once, not once per connection.
#[derive(Default)]
pub struct ConfigCache {
    configs: std::cell::RefCell<std::collections::HashMap<usize, std::rc::Rc<ProxyConfig>>>,
}

impl ConfigCache {
    fn get(&self, compiler: &Compiler<'_>, pod: usize) -> std::rc::Rc<ProxyConfig> {
        self.configs
            .borrow_mut()
            .entry(pod)
            .or_insert_with(|| std::rc::Rc::new(compiler.compile(pod)))
            .clone()
    }
}

struct Ends<'a> {
    /// `None` outside the cluster and for a hostNetwork pod (no sidecar).
    src_config: Option<std::rc::Rc<ProxyConfig>>,
    configs: &'a ConfigCache,
    src_host_network: bool,
    /// Why the source pod runs no sidecar, when its injection was opted out.
    src_no_sidecar: Option<String>,
    src_name: String,
    src_ip: IpAddr,
    src_pod: Option<usize>,
    identity: Option<String>,
    req: &'a CheckRequest,
    /// The server name the caller's sidecar sends when it calls through a
    /// Service (`palisade_api::sni::outbound_sni`); none to a pod.
    mesh_sni: Option<String>,
    /// When a Service is called on a port whose `appProtocol` is not HTTP:
    /// why the caller's sidecar tunnels it as opaque TCP.
    opaque_app_protocol: Option<String>,
}

/// Judges `req` against the compiled cluster.
pub fn check(compiler: &Compiler<'_>, req: &CheckRequest) -> Result<CheckReport, CheckInputError> {
    check_cached(compiler, req, &ConfigCache::default())
}

/// [`check`] with the configs compiled for earlier checks of the same
/// cluster.
pub fn check_cached(
    compiler: &Compiler<'_>,
    req: &CheckRequest,
    configs: &ConfigCache,
) -> Result<CheckReport, CheckInputError> {
    let cluster = compiler.cluster();
    let (src_pod, src_ip, src_name, identity) = match &req.source {
        Source::Pod { pod, ip } => {
            let p = &cluster.pods[*pod];
            (Some(*pod), *ip, p.key(), Some(cluster.identity(p)))
        }
        Source::Identity { id, ip, pod } => (*pod, *ip, id.clone(), Some(id.clone())),
        Source::External { ip } => (None, *ip, ip.to_string(), None),
    };
    // A hostNetwork pod runs no sidecar: it presents no mesh identity; nor
    // does a pod whose injection was opted out (Istio's "naked" workload).
    let src_host_network = src_pod.is_some_and(|p| cluster.pods[p].host_network);
    let src_no_sidecar = src_pod.and_then(|p| cluster.pods[p].no_sidecar.clone());
    let src_sidecar = !src_host_network && src_no_sidecar.is_none();
    let identity = if req.plaintext || !src_sidecar {
        None
    } else {
        identity
    };
    let ends = Ends {
        src_config: src_pod
            .filter(|_| src_sidecar)
            .map(|p| configs.get(compiler, p)),
        configs,
        src_host_network,
        src_no_sidecar,
        src_name,
        src_ip,
        src_pod,
        identity: identity.clone(),
        req,
        mesh_sni: service_sni(cluster, req),
        opaque_app_protocol: opaque_app_protocol(cluster, req),
    };
    let mut entry_note: Option<String> = None;
    let (to, targets): (String, Vec<(Option<usize>, IpAddr, u16)>) = match &req.destination {
        Destination::Pod { pod, ip: given } => {
            let p = &cluster.pods[*pod];
            let port = match &req.port {
                PortRef::Number(n) => *n,
                PortRef::Name(name) => p.named_port(name, req.protocol).ok_or_else(|| {
                    CheckInputError(format!(
                        "pod {} has no {} container port named {name:?}",
                        p.key(),
                        protocol_name(req.protocol)
                    ))
                })?,
            };
            // The address given, as is; for `NS/POD`, the pod's address in
            // the source's family, else its first.
            let ips = given
                .iter()
                .chain(p.ips.iter().filter(|ip| ip.is_ipv4() == src_ip.is_ipv4()))
                .chain(p.ips.iter())
                .take(1);
            (p.key(), ips.map(|ip| (Some(*pod), *ip, port)).collect())
        }
        Destination::External { ip } => match &req.port {
            PortRef::Number(n) => (ip.to_string(), vec![(None, *ip, *n)]),
            PortRef::Name(name) => {
                return Err(CheckInputError(format!(
                    "--port {name}: a port name needs a pod or Service destination; {ip} is outside the cluster"
                )));
            }
        },
        Destination::Service { service } => {
            let svc = &cluster.services[*service];
            let sp = svc
                .ports
                .iter()
                .find(|sp| {
                    sp.protocol == req.protocol
                        && match &req.port {
                            PortRef::Number(n) => sp.port == *n,
                            PortRef::Name(name) => sp.name.as_deref() == Some(name.as_str()),
                        }
                })
                .ok_or_else(|| {
                    CheckInputError(format!(
                        "Service {}/{} has no {} port {}",
                        svc.namespace,
                        svc.name,
                        protocol_name(req.protocol),
                        req.port
                    ))
                })?;
            let mut targets = Vec::new();
            if let Some(label) = svc.unproxied_by.filter(|_| !svc.cluster_ips.is_empty()) {
                return Ok(CheckReport {
                    verdict: LayerVerdict::Deny,
                    from: ends.src_name.clone(),
                    identity,
                    source_ip: src_ip,
                    to: format!("svc:{}/{}", svc.namespace, svc.name),
                    protocol: req.protocol,
                    endpoints: Vec::new(),
                    detail: format!(
                        "the Service is labelled {label}: kube-proxy leaves its cluster IP alone, and so does the mesh; nothing here answers there"
                    ),
                });
            }
            // internalTrafficPolicy: Local: the endpoints on the client's
            // node only (a client that is not a known pod has none).
            let client_node = src_pod
                .map(|i| cluster.pods[i].node_ips.as_slice())
                .unwrap_or_default();
            for i in crate::compile::services::answering_pods(
                compiler.index(),
                svc,
                sp,
                Some(client_node),
            ) {
                let p = &cluster.pods[i];
                let mut ips = p.ips.iter().filter(|ip| svc.serves_family(ip));
                if let Some(port) = target_port(p, &sp.target, sp.protocol)
                    && let Some(ip) = ips
                        .clone()
                        .find(|ip| ip.is_ipv4() == src_ip.is_ipv4())
                        .or(ips.next())
                {
                    targets.push((Some(i), *ip, port));
                }
            }
            (format!("svc:{}/{}", svc.namespace, svc.name), targets)
        }
        Destination::ServiceEntry { entry } => {
            let se = &cluster.service_entries[*entry];
            let src_ns = ends
                .src_config
                .as_ref()
                .and(src_pod)
                .map(|p| cluster.pods[p].namespace.as_str());
            match service_entry::targets(cluster, se, &req.port, req.protocol, src_ns, src_ip)? {
                service_entry::EntryTargets::Endpoints(targets, note) => {
                    entry_note = Some(note);
                    (format!("se:{}", se.key()), targets)
                }
                service_entry::EntryTargets::Untranslated(why) => {
                    return Ok(CheckReport {
                        verdict: LayerVerdict::Deny,
                        from: ends.src_name.clone(),
                        identity,
                        source_ip: src_ip,
                        to: format!("se:{}", se.key()),
                        protocol: req.protocol,
                        endpoints: Vec::new(),
                        detail: format!("{why}; nothing answers there"),
                    });
                }
            }
        }
    };
    let endpoints: Vec<EndpointResult> = targets
        .into_iter()
        .map(|(pod, ip, port)| judge(compiler, &ends, pod, ip, port))
        .collect::<Result<_, _>>()?;
    let all_allow =
        !endpoints.is_empty() && endpoints.iter().all(|e| e.verdict == LayerVerdict::Allow);
    let mut detail = if endpoints.is_empty() {
        match &entry_note {
            Some(_) => "the ServiceEntry has no endpoint for this port: nothing can answer",
            None => "the Service has no ready endpoint for this port: nothing can answer",
        }
        .to_string()
    } else if endpoints.len() > 1 {
        format!(
            "{} of {} endpoints allowed; `allow` only when all are",
            endpoints
                .iter()
                .filter(|e| e.verdict == LayerVerdict::Allow)
                .count(),
            endpoints.len()
        )
    } else {
        String::new()
    };
    if let Some(note) = entry_note.filter(|_| !endpoints.is_empty()) {
        detail = if detail.is_empty() {
            note
        } else {
            format!("{note}; {detail}")
        };
    }
    if let Destination::Service { service } = &req.destination
        && let Some(timeout) = cluster.services[*service].client_ip_affinity
        && endpoints.len() > 1
    {
        detail.push_str(&format!(
            "; sessionAffinity ClientIP: this client stays with the first endpoint it reaches for {timeout} s after its last connection"
        ));
    }
    Ok(CheckReport {
        verdict: if all_allow {
            LayerVerdict::Allow
        } else {
            LayerVerdict::Deny
        },
        from: ends.src_name.clone(),
        identity,
        source_ip: src_ip,
        to,
        protocol: req.protocol,
        endpoints,
        detail,
    })
}

fn judge(
    compiler: &Compiler<'_>,
    ends: &Ends<'_>,
    dst_pod: Option<usize>,
    dst_ip: IpAddr,
    port: u16,
) -> Result<EndpointResult, CheckInputError> {
    let cluster = compiler.cluster();
    let req = ends.req;
    let proto = req.protocol;
    let workload = dst_pod.map(|p| cluster.pods[p].key());
    // "A pod's traffic to itself is always allowed" (the sidecar does not
    // capture a pod's connections to its own IP).
    if dst_pod.is_some() && dst_pod == ends.src_pod {
        let same = || skip_l4("same-pod", "a pod's traffic to itself is always allowed");
        return Ok(EndpointResult {
            workload,
            ip: dst_ip,
            port,
            verdict: LayerVerdict::Allow,
            egress: same(),
            mtls: plain_mtls("same pod: not proxied"),
            ingress: same(),
            authorization: skip_authz("same pod: not proxied"),
        });
    }
    let egress = match &ends.src_config {
        None if ends.src_host_network => host_network_l4(&format!("egress at {}", ends.src_name)),
        None if let (Some(why), Some(sp)) = (&ends.src_no_sidecar, ends.src_pod) => {
            no_sidecar_l4(compiler, sp, &format!("egress at {}", ends.src_name), why)
        }
        Some(c) => l4_layer(
            &c.outbound.egress,
            dst_ip,
            port,
            proto,
            &format!("egress at {}", ends.src_name),
        ),
        None => skip_l4(
            "outside-cluster",
            format!(
                "egress: {} is not a pod of the cluster; no NetworkPolicy applies",
                ends.src_name
            ),
        ),
    };
    let dst_host_network = dst_pod.filter(|&p| cluster.pods[p].host_network);
    let dst_no_sidecar =
        dst_pod.and_then(|p| cluster.pods[p].no_sidecar.as_deref().map(|why| (p, why)));
    let dst_config = dst_pod
        .filter(|_| dst_host_network.is_none() && dst_no_sidecar.is_none())
        .map(|p| ends.configs.get(compiler, p));
    let tcp = proto == Protocol::Tcp;
    let (mtls, ingress, authorization) = match (&dst_config, dst_pod) {
        (Some(dc), Some(dp)) => {
            let name = &cluster.pods[dp].key();
            let eff = compiler.effective_mtls(dp);
            let mode = dc
                .inbound
                .port_mtls
                .get(&port)
                .copied()
                .unwrap_or(dc.inbound.mtls);
            let policy = if dc.inbound.port_mtls.contains_key(&port) {
                eff.workload_policy.clone()
            } else {
                eff.decided_by.clone()
            };
            let is_mtls = tcp && ends.identity.is_some() && mode != MtlsMode::Disable;
            let plaintext_accepted = mode != MtlsMode::Strict;
            let mtls = if !tcp {
                MtlsLayer {
                    verdict: LayerVerdict::Skip,
                    mode: Some(mode),
                    policy,
                    mtls: false,
                    plaintext_accepted: true,
                    detail: format!(
                        "mtls: {} is not proxied: mTLS does not apply (NetworkPolicy still does)",
                        protocol_name(proto)
                    ),
                }
            } else {
                let ok = is_mtls || plaintext_accepted;
                // A `spiffe://` caller is judged by Istio's rules, which do
                // not tie an identity to an address; the sidecar also does,
                // and the detail says when it would refuse this one.
                let caution = is_mtls
                    .then(|| identity_refusal(cluster, &ends.req.source))
                    .flatten()
                    .map(|why| format!(" (note: {name}'s sidecar also checks the caller's identity against its address and would refuse this one: {why})"))
                    .unwrap_or_default();
                MtlsLayer {
                    verdict: if ok {
                        LayerVerdict::Allow
                    } else {
                        LayerVerdict::Deny
                    },
                    mode: Some(mode),
                    detail: format!(
                        "mtls: port {port} of {name} is {} ({}); the connection is {}{}{caution}",
                        mode_name(mode),
                        policy
                            .as_deref()
                            .map(|p| format!("PeerAuthentication {p}"))
                            .unwrap_or_else(|| "default".into()),
                        if is_mtls { "mTLS" } else { "plaintext" },
                        if ok {
                            ""
                        } else {
                            ": a plaintext caller is refused on a STRICT port"
                        }
                    ),
                    policy,
                    mtls: is_mtls,
                    plaintext_accepted,
                }
            };
            let ingress = l4_layer(
                &dc.inbound.ingress,
                ends.src_ip,
                port,
                proto,
                &format!("ingress at {name}"),
            );
            let authorization = if tcp {
                // The caller's sidecar tunnels a non-HTTP Service port only
                // over mTLS; a plaintext connection is detected at the
                // destination, which knows its own opaque ports.
                let opaque = opaque_port_reason(compiler, dp, dc, port).or_else(|| {
                    ends.opaque_app_protocol
                        .clone()
                        .filter(|_| is_mtls)
                        .map(|why| format!("{why}, so the caller's sidecar tunnels it"))
                });
                authorize(dc, ends, dst_ip, port, is_mtls, opaque.as_deref())?
            } else {
                skip_authz("authorization: not applicable to non-TCP traffic")
            };
            (mtls, ingress, authorization)
        }
        // No sidecar in the node's network namespace: plain, unmeshed.
        _ if let Some(dp) = dst_host_network => {
            let name = cluster.pods[dp].key();
            (
                plain_mtls(format!(
                    "mtls: {name} is a hostNetwork pod, which runs no sidecar: {}",
                    plain_transport(proto)
                )),
                host_network_l4(&format!("ingress at {name}")),
                skip_authz(format!(
                    "authorization: {name} is a hostNetwork pod, which runs no sidecar"
                )),
            )
        }
        // Injection opted out: the caller's sidecar sends plaintext (it is
        // no mesh peer), and nothing at the pod judges the connection.
        _ if let Some((dp, why)) = dst_no_sidecar => {
            let name = cluster.pods[dp].key();
            (
                plain_mtls(format!(
                    "mtls: {name} runs no sidecar ({why}): {}",
                    plain_transport(proto)
                )),
                no_sidecar_l4(compiler, dp, &format!("ingress at {name}"), why),
                skip_authz(format!(
                    "authorization: {name} runs no sidecar ({why}): no policy is enforced there"
                )),
            )
        }
        // A ServiceEntry endpoint in another mesh (or trust domain): mTLS
        // from the caller's sidecar; its own sidecar decides the rest.
        _ if let Some(peer) =
            service_entry::remote_peer(ends.src_config.as_deref(), dst_ip).filter(|_| tcp) =>
        {
            let elsewhere = format!(
                "decided by the sidecar of {} ({}), in the mesh that runs it: not in this configuration",
                dst_ip, peer.identity
            );
            (
                service_entry::remote_mtls(cluster, peer, ends.identity.is_some()),
                skip_l4("remote-mesh", format!("ingress: {elsewhere}")),
                AuthzLayer {
                    reason: "remote-mesh",
                    ..skip_authz(format!("authorization: {elsewhere}"))
                },
            )
        }
        _ => (
            plain_mtls(format!(
                "mtls: {dst_ip} is outside the mesh: {}",
                plain_transport(proto)
            )),
            skip_l4(
                "outside-cluster",
                format!("ingress: {dst_ip} is outside the cluster; no NetworkPolicy applies"),
            ),
            skip_authz("authorization: the destination is outside the mesh"),
        ),
    };
    let denied = [
        egress.verdict,
        mtls.verdict,
        ingress.verdict,
        authorization.verdict,
    ]
    .contains(&LayerVerdict::Deny);
    Ok(EndpointResult {
        workload,
        ip: dst_ip,
        port,
        verdict: if denied {
            LayerVerdict::Deny
        } else {
            LayerVerdict::Allow
        },
        egress,
        mtls,
        ingress,
        authorization,
    })
}

/// Why a destination's sidecar would refuse the identity a `spiffe://`
/// caller presents from its source IP, as the data plane decides it: the
/// handshake needs a bundle for the ID's trust domain (the mesh's, an
/// alias, or a federated one), and the source IP must belong to the
/// identity (a pod of the mesh running as it; for a federated trust
/// domain, whose workloads run elsewhere, an address that is no pod's).
fn identity_refusal(cluster: &crate::cluster::Cluster, source: &Source) -> Option<String> {
    let Source::Identity { id, ip, pod } = source else {
        return None;
    };
    let td = palisade_api::trust_domain_of(id).unwrap_or_default();
    let local = cluster.mesh.is_local_trust_domain(td);
    let federated = cluster.mesh.federated_bundles.contains_key(td);
    let owner = pod.map(|p| (cluster.pods[p].key(), cluster.identity(&cluster.pods[p])));
    match owner {
        _ if !local && !federated => Some(format!(
            "{id} is of trust domain {td:?}, which is neither the mesh's, an alias, nor federated (MeshConfig federatedTrustDomains): no bundle verifies it"
        )),
        Some((name, owner_id)) if owner_id != *id => Some(format!(
            "source IP {ip} belongs to {name} ({owner_id}), not to the presented identity {id}"
        )),
        None if local => Some(format!(
            "source IP {ip} is not a pod of the mesh, so it cannot belong to {id}"
        )),
        _ => None,
    }
}

/// The server name a sidecar sends for `req`'s destination Service port.
fn service_sni(cluster: &crate::cluster::Cluster, req: &CheckRequest) -> Option<String> {
    if let Destination::ServiceEntry { entry } = &req.destination {
        // The sidecar names an entry's virtual IP as it names a Service's
        // (`compile::service_entries` gives it the entry's `NS/NAME`).
        let se = cluster.service_entries.get(*entry)?;
        let sp = se.ports.iter().find(|p| match &req.port {
            PortRef::Number(n) => p.number == *n,
            PortRef::Name(name) => p.name == *name,
        })?;
        return (!se.addresses.is_empty())
            .then(|| {
                palisade_api::sni::outbound_sni(&se.key(), sp.number, &cluster.mesh.cluster_domain)
            })
            .flatten();
    }
    let (svc, sp) = called_service_port(cluster, req)?;
    palisade_api::sni::outbound_sni(
        &format!("{}/{}", svc.namespace, svc.name),
        sp.port,
        &cluster.mesh.cluster_domain,
    )
}

/// The Service and Service port `req` calls, for a Service destination.
fn called_service_port<'c>(
    cluster: &'c crate::cluster::Cluster,
    req: &CheckRequest,
) -> Option<(&'c Service, &'c ServicePort)> {
    let Destination::Service { service } = &req.destination else {
        return None;
    };
    let svc = cluster.services.get(*service)?;
    let sp = svc.ports.iter().find(|sp| {
        sp.protocol == req.protocol
            && match &req.port {
                PortRef::Number(n) => sp.port == *n,
                PortRef::Name(name) => sp.name.as_deref() == Some(name.as_str()),
            }
    })?;
    Some((svc, sp))
}

/// A Service port whose `appProtocol` is not HTTP: the caller's sidecar
/// tunnels connections to it as opaque TCP (and says so in the mesh ALPN),
/// whatever the destination's own ports are.
fn opaque_app_protocol(cluster: &crate::cluster::Cluster, req: &CheckRequest) -> Option<String> {
    let (svc, sp) = called_service_port(cluster, req)?;
    let app = sp.app_protocol.as_deref()?;
    (!is_http_app_protocol(app)).then(|| {
        format!(
            "Service {}/{} port {} has appProtocol {app:?}, which is not HTTP",
            svc.namespace, svc.name, sp.port
        )
    })
}

/// Why the sidecars treat `port` of `dst_pod` as opaque TCP, if they do:
/// the destination's sidecar skips protocol detection on the ports its
/// config lists as opaque (`palisade.dev/opaque-ports`, opaque Service
/// ports that target the pod, server-first container ports) and on the
/// built-in server-first ports, and a caller's sidecar tunnels to those
/// ports without looking at the bytes. Such a connection is authorized
/// once, as TCP.
fn opaque_port_reason(
    compiler: &Compiler<'_>,
    dst_pod: usize,
    dc: &ProxyConfig,
    port: u16,
) -> Option<String> {
    let cluster = compiler.cluster();
    let pod = &cluster.pods[dst_pod];
    if pod.opaque_ports.contains(&port) {
        return Some(format!(
            "port {port} is listed in the pod's {OPAQUE_PORTS_ANNOTATION} annotation"
        ));
    }
    if dc.workload.opaque_ports.contains(&port) {
        for svc in &cluster.services {
            if !selected_pods(compiler.index(), svc).contains(&dst_pod) {
                continue;
            }
            let opaque_sp = svc.ports.iter().find(|sp| {
                is_opaque(sp) && target_port(pod, &sp.target, sp.protocol) == Some(port)
            });
            if let Some(sp) = opaque_sp {
                let what = match (&sp.app_protocol, &sp.name) {
                    (Some(app), _) => format!("has appProtocol {app:?}"),
                    (None, Some(name)) => format!("is named {name:?}"),
                    (None, None) => "is opaque".to_string(),
                };
                return Some(format!(
                    "Service {}/{} port {} targets it and {what} (Istio protocol selection: not HTTP)",
                    svc.namespace, svc.name, sp.port
                ));
            }
        }
    }
    if SERVER_FIRST_PORTS.contains(&port) {
        return Some(format!(
            "port {port} is a well-known server-first port, on which the sidecar skips protocol detection"
        ));
    }
    dc.workload
        .opaque_ports
        .contains(&port)
        .then(|| format!("the destination's config lists port {port} as opaque"))
}

fn authorize(
    dc: &ProxyConfig,
    ends: &Ends<'_>,
    dst_ip: IpAddr,
    port: u16,
    is_mtls: bool,
    opaque: Option<&str>,
) -> Result<AuthzLayer, CheckInputError> {
    let compiled = CompiledAuthz::new(&dc.authorization, &dc.mesh)
        .map_err(|e| CheckInputError(format!("invalid authorization policy: {e}")))?;
    let peer = if is_mtls {
        ends.identity.as_deref()
    } else {
        None
    };
    let mut ctx = RequestContext::tcp(peer, ends.src_ip, dst_ip, port);
    // `--sni` as given; else, between sidecars, the name the caller's
    // sidecar sends for the Service it called.
    let mesh_sni = if is_mtls {
        ends.mesh_sni.as_deref()
    } else {
        None
    };
    let sni = ends.req.sni.as_deref().or(mesh_sni);
    if let Some(sni) = sni {
        ctx = ctx.with_sni(sni);
    }
    let mut headers = http::HeaderMap::new();
    let (decision, traffic, detail_prefix) = match (&ends.req.http, opaque) {
        // Istio: on TCP traffic an ALLOW rule with HTTP-only fields is
        // skipped and a DENY rule matches without them (the evaluator's
        // TCP context does both).
        (Some(h), Some(why)) => (
            compiled.evaluate(&ctx),
            "tcp",
            format!(
                "authorization (TCP connection: {} {} was not considered, because the port is opaque: {why}; the sidecar tunnels it as TCP and authorizes the connection with the L4-applicable fields only)",
                h.method, h.path
            ),
        ),
        (Some(h), None) => {
            let normalized = match palisade_api::normalize::normalize_path(
                &h.path,
                dc.mesh.path_normalization,
            ) {
                Ok(n) => n,
                Err(e) => {
                    return Ok(AuthzLayer {
                        verdict: LayerVerdict::Deny,
                        reason: "invalid-path",
                        policy: None,
                        rule: None,
                        traffic: "http",
                        sni: sni.map(str::to_string),
                        audit: Vec::new(),
                        dry_run_verdict: None,
                        detail: format!(
                            "authorization: the sidecar rejects the path {:?}: {e}",
                            h.path
                        ),
                    });
                }
            };
            for (k, v) in &h.headers {
                if let (Ok(name), Ok(value)) = (
                    http::header::HeaderName::from_bytes(k.as_bytes()),
                    http::header::HeaderValue::from_str(v),
                ) {
                    headers.append(name, value);
                }
            }
            let host = h.host.clone().unwrap_or_else(|| dst_ip.to_string());
            let req = HttpRequest {
                method: &h.method,
                path: normalized.path(),
                host: &host,
                headers: &headers,
            };
            let d = compiled.evaluate(&ctx.with_http(req));
            (
                d,
                "http",
                format!(
                    "authorization ({} {}, normalized {:?})",
                    h.method,
                    h.path,
                    normalized.path()
                ),
            )
        }
        (None, Some(why)) => (
            compiled.evaluate(&ctx),
            "tcp",
            format!("authorization (TCP connection; the port is opaque: {why})"),
        ),
        (None, None) => (
            compiled.evaluate(&ctx),
            "tcp",
            "authorization (TCP connection; give --method/--path for an HTTP request)".to_string(),
        ),
    };
    let (reason, policy, rule) = match &decision.reason {
        DecisionReason::DenyPolicyMatched(m) => (
            "deny-policy-matched",
            Some(m.policy.to_string()),
            Some(m.rule),
        ),
        DecisionReason::NoAllowPolicies => ("no-allow-policies", None, None),
        DecisionReason::AllowPolicyMatched(m) => (
            "allow-policy-matched",
            Some(m.policy.to_string()),
            Some(m.rule),
        ),
        DecisionReason::NoAllowPolicyMatched => ("no-allow-policy-matched", None, None),
    };
    Ok(AuthzLayer {
        verdict: verdict(decision.verdict),
        reason,
        policy,
        rule,
        traffic,
        sni: sni.map(str::to_string),
        audit: decision.audit.iter().map(authz_match).collect(),
        dry_run_verdict: decision.dry_run.as_ref().map(|d| verdict(d.verdict)),
        detail: format!("{detail_prefix}: {decision}"),
    })
}

/// `STRICT`, `PERMISSIVE` or `DISABLE`.
pub fn mode_name(m: MtlsMode) -> &'static str {
    match m {
        MtlsMode::Strict => "STRICT",
        MtlsMode::Permissive => "PERMISSIVE",
        MtlsMode::Disable => "DISABLE",
    }
}

/// How a connection that no mTLS applies to travels: a TCP connection in
/// the clear (through the caller's sidecar, if it has one), UDP and SCTP
/// never through a sidecar at all (a TCP proxy does not see them; only the
/// netfilter rules of NetworkPolicy do).
fn plain_transport(p: Protocol) -> String {
    match p {
        Protocol::Tcp => "plain TCP".into(),
        other => format!("plain {}, not proxied", protocol_name(other)),
    }
}

/// `TCP`, `UDP` or `SCTP`.
pub fn protocol_name(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
    }
}
