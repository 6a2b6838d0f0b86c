//! Service virtual IPs for UDP and SCTP in an egress-isolated pod.
//!
//! NetworkPolicy applies to pods: a CNI judges a datagram to a Service after
//! kube-proxy has translated the cluster IP to an endpoint. Here the rules
//! run in the pod's own network namespace, before that translation, where a
//! datagram to `10.96.0.10:53` would meet rules written for the DNS pods'
//! addresses and target port, and be dropped (or, under an ipBlock covering
//! the cluster IP, let through to pods the policy denies). So, as the
//! sidecar does for TCP, the pod picks the endpoint itself: a `nat` chain
//! translates each UDP/SCTP Service port's virtual IPs (cluster and
//! external IPs) to one of the endpoints its egress policy allows, at
//! random (kube-proxy's choice) or by the client address for
//! `sessionAffinity: ClientIP`; the filter chain then judges the endpoint.
//! A Service port none of whose endpoints egress allows is dropped at its
//! virtual IP. The sidecar's own UID is left alone.
use std::fmt::Write as _;

use palisade_api::l4::CompiledDirection;
use palisade_api::{Protocol, ProxyConfig};

/// The name of the `nat` chain.
pub const CHAIN: &str = "service_nat";

/// The rules for `config`'s UDP and SCTP Service ports.
#[derive(Debug, Default)]
pub struct ServiceRules {
    /// The `nat` chain; empty when there is nothing to translate.
    pub chain: String,
    /// Filter lines for the egress chain: Service ports whose endpoints
    /// egress allows none of.
    pub drops: Vec<String>,
}

/// The rules for an egress-isolated `config` (see the module doc).
pub fn rules(config: &ProxyConfig, proxy_uid: u32) -> ServiceRules {
    let egress = CompiledDirection::new(&config.outbound.egress);
    let mut lines = Vec::new();
    let mut drops = Vec::new();
    for svc in &config.services {
        for sp in &svc.ports {
            let keyword = match sp.protocol {
                Protocol::Udp => "udp",
                Protocol::Sctp => "sctp",
                Protocol::Tcp => continue,
            };
            let comment = format!(
                "comment \"{} {keyword} {}\"",
                super::netfilter::sanitize(&svc.name),
                sp.port
            );
            for vip in svc.cluster_ips.iter().chain(&svc.external_ips) {
                let family = if vip.is_ipv4() { "ip" } else { "ip6" };
                let matched = format!("{family} daddr {vip} {keyword} dport {}", sp.port);
                let endpoints = sp
                    .endpoints
                    .iter()
                    .filter(|e| e.ip.is_ipv4() == vip.is_ipv4())
                    .filter(|e| egress.evaluate(e.ip, e.port, sp.protocol).is_allowed())
                    .map(|e| (e.ip, e.port));
                let Some(to) = palisade_api::service_dnat::dnat_target(
                    endpoints,
                    svc.session_affinity.is_some(),
                    family,
                ) else {
                    drops.push(format!("{matched} counter drop {comment}"));
                    continue;
                };
                lines.push(format!("{matched} dnat {family} to {to} {comment}"));
            }
        }
    }
    let mut chain = String::new();
    if !lines.is_empty() {
        let _ = writeln!(chain, "  chain {CHAIN} {{");
        let _ = writeln!(
            chain,
            "    type nat hook output priority -100; policy accept;"
        );
        let _ = writeln!(chain, "    meta skuid {proxy_uid} return");
        for line in lines {
            let _ = writeln!(chain, "    {line}");
        }
        let _ = writeln!(chain, "  }}");
    }
    ServiceRules { chain, drops }
}
