//! `palisade diff`: what a change to the manifests changes in who can
//! reach whom. Every (source pod, destination pod, declared container port)
//! of a configuration is judged with `check` (the sidecar's own evaluators,
//! TCP traffic with Istio's TCP semantics for authorization), for the
//! configuration before and after; the pairs whose verdict differs are the
//! change, each with the layer and policy that decide it now and decided
//! it before. Made for reviewing a policy pull request: "this allows
//! frontend/web to reach database/db on 5432" before it is merged.
use std::collections::BTreeMap;
use std::net::IpAddr;

use palisade_api::Protocol;
use serde::Serialize;

use crate::check::{self, CheckRequest, Destination, EndpointResult, LayerVerdict, Source};
use crate::cluster::{Cluster, PortRef};
use crate::compile::Compiler;

/// One judged connection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Reach {
    pub from: String,
    pub to: String,
    pub port: u16,
    pub protocol: Protocol,
    pub allowed: bool,
    /// The deciding layer's line: the first that denies, else the
    /// authorization and ingress that allow.
    pub why: String,
}

/// The key a connection is matched on across configurations.
type Key = (String, String, u16, Protocol);

impl Reach {
    fn key(&self) -> Key {
        (self.from.clone(), self.to.clone(), self.port, self.protocol)
    }
}

/// Which connections to judge.
#[derive(Debug, Clone, Default)]
pub struct Scope {
    /// Only connections with either end in one of these namespaces (all
    /// when empty).
    pub namespaces: Vec<String>,
    /// Callers from outside the cluster, judged beside the pods.
    pub externals: Vec<IpAddr>,
}

/// Every connection of `cluster` in `scope`, judged.
pub fn reachability(cluster: &Cluster, scope: &Scope) -> Vec<Reach> {
    let compiler = Compiler::new(cluster);
    let configs = check::ConfigCache::default();
    let in_scope =
        |ns: &str| scope.namespaces.is_empty() || scope.namespaces.iter().any(|n| n == ns);
    let reachable_pod = |i: &usize| {
        let p = &cluster.pods[*i];
        !p.host_network && !p.ips.is_empty()
    };
    let pods: Vec<usize> = (0..cluster.pods.len()).filter(reachable_pod).collect();
    let mut sources: Vec<(String, Source, Option<&str>)> = pods
        .iter()
        .map(|&i| {
            let p = &cluster.pods[i];
            (
                p.key(),
                Source::Pod {
                    pod: i,
                    ip: p.ips[0],
                },
                Some(p.namespace.as_str()),
            )
        })
        .collect();
    sources.extend(
        scope
            .externals
            .iter()
            .map(|ip| (ip.to_string(), Source::External { ip: *ip }, None)),
    );
    let mut out = Vec::new();
    for (from, source, src_ns) in &sources {
        for &dst in &pods {
            let d = &cluster.pods[dst];
            if !(src_ns.is_some_and(in_scope) || in_scope(&d.namespace)) {
                continue;
            }
            if matches!(source, Source::Pod { pod, .. } if *pod == dst) {
                continue;
            }
            let mut ports: Vec<(u16, Protocol)> =
                d.ports.iter().map(|p| (p.port, p.protocol)).collect();
            ports.sort_unstable_by_key(|(port, proto)| (*port, protocol_rank(*proto)));
            ports.dedup();
            for (port, protocol) in ports {
                let req = CheckRequest {
                    source: source.clone(),
                    destination: Destination::Pod { pod: dst, ip: None },
                    port: PortRef::Number(port),
                    protocol,
                    http: None,
                    plaintext: false,
                    sni: None,
                };
                let (allowed, why) = match check::check_cached(&compiler, &req, &configs) {
                    Ok(r) => match r.endpoints.first() {
                        Some(e) => (r.verdict == LayerVerdict::Allow, why(e)),
                        None => (false, r.detail),
                    },
                    Err(e) => (false, format!("not judged: {e}")),
                };
                out.push(Reach {
                    from: from.clone(),
                    to: d.key(),
                    port,
                    protocol,
                    allowed,
                    why,
                });
            }
        }
    }
    out
}

fn protocol_rank(p: Protocol) -> u8 {
    match p {
        Protocol::Tcp => 0,
        Protocol::Udp => 1,
        Protocol::Sctp => 2,
    }
}

/// The line that explains an endpoint's verdict.
fn why(e: &EndpointResult) -> String {
    let layers = [
        (e.egress.verdict, &e.egress.detail),
        (e.mtls.verdict, &e.mtls.detail),
        (e.ingress.verdict, &e.ingress.detail),
        (e.authorization.verdict, &e.authorization.detail),
    ];
    if let Some((_, detail)) = layers.iter().find(|(v, _)| *v == LayerVerdict::Deny) {
        return (*detail).clone();
    }
    let mut parts = vec![e.ingress.detail.clone()];
    if e.authorization.verdict == LayerVerdict::Allow {
        parts.push(e.authorization.detail.clone());
    }
    parts.join("; ")
}

/// A connection whose verdict differs between two configurations.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Change {
    pub from: String,
    pub to: String,
    pub port: u16,
    pub protocol: Protocol,
    pub allowed_before: bool,
    pub allowed_after: bool,
    pub why_before: String,
    pub why_after: String,
}

/// What changed between `before` and `after`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Diff {
    /// Connections judged in both.
    pub compared: usize,
    /// Newly allowed first, then newly denied.
    pub changes: Vec<Change>,
    /// Connections of pods or ports that exist on one side only.
    pub only_before: usize,
    pub only_after: usize,
}

pub fn diff(before: &[Reach], after: &[Reach]) -> Diff {
    let before: BTreeMap<Key, &Reach> = before.iter().map(|r| (r.key(), r)).collect();
    let after_map: BTreeMap<Key, &Reach> = after.iter().map(|r| (r.key(), r)).collect();
    let mut changes: Vec<Change> = after_map
        .iter()
        .filter_map(|(k, a)| {
            let b = before.get(k)?;
            (a.allowed != b.allowed).then(|| Change {
                from: a.from.clone(),
                to: a.to.clone(),
                port: a.port,
                protocol: a.protocol,
                allowed_before: b.allowed,
                allowed_after: a.allowed,
                why_before: b.why.clone(),
                why_after: a.why.clone(),
            })
        })
        .collect();
    changes.sort_by_key(|c| !c.allowed_after);
    let compared = after_map.keys().filter(|k| before.contains_key(*k)).count();
    Diff {
        compared,
        only_before: before.len() - compared,
        only_after: after_map.len() - compared,
        changes,
    }
}

/// The diff as `palisade diff` prints it.
pub fn text(d: &Diff) -> String {
    let mut out = String::new();
    for c in &d.changes {
        let proto = check::protocol_name(c.protocol);
        if c.allowed_after {
            out.push_str(&format!(
                "+ {} -> {} {proto} {}: now allowed: {}\n    was denied: {}\n",
                c.from, c.to, c.port, c.why_after, c.why_before
            ));
        } else {
            out.push_str(&format!(
                "- {} -> {} {proto} {}: now denied: {}\n    was allowed: {}\n",
                c.from, c.to, c.port, c.why_after, c.why_before
            ));
        }
    }
    let allowed = d.changes.iter().filter(|c| c.allowed_after).count();
    out.push_str(&format!(
        "{} connection(s) compared: {allowed} newly allowed, {} newly denied",
        d.compared,
        d.changes.len() - allowed
    ));
    if d.only_before + d.only_after > 0 {
        out.push_str(&format!(
            "; {} only before and {} only after (pods or ports that exist on one side)",
            d.only_before, d.only_after
        ));
    }
    out.push('\n');
    out
}
