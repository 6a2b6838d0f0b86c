//! The lab's stand-in for kube-proxy, for UDP and SCTP Services. A lab has
//! no node and no kube-proxy: a TCP connection to a cluster IP is captured
//! and translated by the caller's sidecar, but a datagram is not, and
//! outside an egress-isolated pod (whose sidecar translates Service
//! addresses itself, `palisade-proxy`'s `service_nat`) nothing would send it
//! on: cluster IPs are in the pods' subnet, so it would wait for an ARP
//! answer that never comes.
//!
//! So each lab pod gets a `nat` chain of its own that does what kube-proxy
//! does on the node: a datagram to a Service port's virtual IP goes to one
//! of the port's endpoints, at random, or by client address with
//! `sessionAffinity: ClientIP`; no policy is consulted (kube-proxy knows
//! none). It runs after the sidecar's chain (priority -90 against -100), so
//! a datagram the sidecar already translated is left alone, as on a node,
//! where kube-proxy only sees what leaves the pod. The conntrack entry of
//! the pod's namespace turns the answer's source back into the virtual IP.
use std::fmt::Write as _;

use palisade_api::{Protocol, Service};

/// The nftables table, in the pod's namespace.
pub const TABLE: &str = "palisade_lab_kube_proxy";

/// The `nft -f` script for the IPv4 UDP and SCTP ports of `services` (a
/// compiled config's), or `None` when there are none.
pub fn ruleset(services: &[Service]) -> Option<String> {
    let mut rules = Vec::new();
    for svc in services {
        for sp in &svc.ports {
            let keyword = match sp.protocol {
                Protocol::Udp => "udp",
                Protocol::Sctp => "sctp",
                Protocol::Tcp => continue,
            };
            // No endpoint: kube-proxy rejects; here the datagram is lost.
            let endpoints = sp
                .endpoints
                .iter()
                .filter(|e| e.ip.is_ipv4())
                .map(|e| (e.ip, e.port));
            let Some(to) = palisade_api::service_dnat::dnat_target(
                endpoints,
                svc.session_affinity.is_some(),
                "ip",
            ) else {
                continue;
            };
            for vip in svc
                .cluster_ips
                .iter()
                .chain(&svc.external_ips)
                .filter(|ip| ip.is_ipv4())
            {
                rules.push(format!(
                    "ip daddr {vip} {keyword} dport {} dnat ip to {to}",
                    sp.port
                ));
            }
        }
    }
    if rules.is_empty() {
        return None;
    }
    let mut out = String::new();
    let _ = writeln!(out, "table ip {TABLE} {{");
    let _ = writeln!(out, "  chain output {{");
    let _ = writeln!(out, "    type nat hook output priority -90; policy accept;");
    for rule in rules {
        let _ = writeln!(out, "    {rule}");
    }
    let _ = writeln!(out, "  }}");
    let _ = writeln!(out, "}}");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn udp_service_ports_go_to_every_endpoint() {
        let mut services: Vec<Service> = serde_json::from_str(
            r#"[
              {"name":"y/dns","clusterIps":["198.19.255.1"],"ports":[
                {"port":53,"protocol":"UDP","endpoints":[{"ip":"198.18.0.12","port":5353,"workload":"y/b"},{"ip":"198.18.0.11","port":5353,"workload":"y/a"}]},
                {"port":53,"protocol":"TCP","endpoints":[{"ip":"198.18.0.11","port":53,"workload":"y/a"}]}]},
              {"name":"y/one","clusterIps":["198.19.255.2"],"sessionAffinity":{"timeoutSeconds":10800},"ports":[
                {"port":9,"protocol":"UDP","endpoints":[{"ip":"198.18.0.11","port":9,"workload":"y/a"}]}]},
              {"name":"y/none","clusterIps":["198.19.255.3"],"ports":[{"port":9,"protocol":"UDP","endpoints":[]}]}
            ]"#,
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let text = ruleset(&services).unwrap_or_default();
        assert_eq!(
            text,
            "table ip palisade_lab_kube_proxy {\n  chain output {\n    type nat hook output priority -90; policy accept;\n    ip daddr 198.19.255.1 udp dport 53 dnat ip to numgen random mod 2 map { 0 : 198.18.0.11 . 5353, 1 : 198.18.0.12 . 5353 }\n    ip daddr 198.19.255.2 udp dport 9 dnat ip to 198.18.0.11:9\n  }\n}\n"
        );
        services.retain(|s| s.name == "y/none");
        assert_eq!(ruleset(&services), None);
    }
}
