//! NetworkPolicy for non-TCP traffic. The sidecar's proxies see TCP only, so
//! UDP and SCTP are enforced by nftables rules in the pod's own network
//! namespace: one `inet` table named `palisade`, rebuilt from each config
//! version in a single `nft -f` transaction (the table is deleted and
//! declared again, so no packet ever sees a half-built rule set).
//!
//! Per isolated direction, a chain (`ingress` on the input hook, `egress` on
//! the output hook) accepts, in order: loopback ("a pod cannot block access
//! to itself"), TCP (the proxy enforces it), replies of allowed flows
//! ("reply traffic for those allowed connections will also be implicitly
//! allowed": conntrack reply direction, and `related` ICMP errors), IPv6
//! neighbour discovery (RFC 4890: never filter it, or IPv6 stops working),
//! on egress the proxy's own UID, and then every UDP/SCTP packet some rule
//! allows; everything else is dropped and counted. Packets in a flow's
//! original direction meet the rules every time, not only the first, so a
//! new config version also cuts the flows it no longer allows. Kubernetes defines NetworkPolicy for TCP, UDP and
//! SCTP only; an isolated pod here drops other protocols (e.g. ICMP echo),
//! which fails closed. A direction that is not isolated gets no chain. An
//! isolated egress also translates UDP/SCTP Service addresses to endpoints
//! first ([`super::service_nat`]), so its rules judge pods, not Services.
use std::fmt::Write as _;
use std::net::IpAddr;

use palisade_api::{DirectionPolicy, L4Rule, PortRange, Protocol, ProxyConfig};

use super::command::{self, CaptureError};

/// The nftables table (family `inet`) this module owns.
pub const TABLE: &str = "palisade";

/// Applies `config`'s non-TCP NetworkPolicy, excluding the calling process's
/// effective UID (the sidecar's own traffic) on egress.
pub fn apply(config: &ProxyConfig) -> Result<(), CaptureError> {
    apply_for_uid(config, current_euid())
}

/// [`apply`] with an explicit sidecar UID.
pub fn apply_for_uid(config: &ProxyConfig, proxy_uid: u32) -> Result<(), CaptureError> {
    let script = ruleset(config, proxy_uid);
    command::run("nft", &["-f", "-"], Some(&script))?;
    tracing::info!(version = %config.version, "non-TCP netfilter rules applied");
    Ok(())
}

/// Removes the `palisade` table; a no-op when it does not exist.
pub fn remove() -> Result<(), CaptureError> {
    let script = format!("table inet {TABLE}\ndelete table inet {TABLE}\n");
    command::run("nft", &["-f", "-"], Some(&script))?;
    Ok(())
}

fn current_euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    #[allow(unsafe_code)]
    unsafe {
        libc::geteuid()
    }
}

/// The whole `nft -f` input for `config`: delete and re-declare the table.
pub fn ruleset(config: &ProxyConfig, proxy_uid: u32) -> String {
    let mut sets = String::new();
    let mut chains = String::new();
    if config.inbound.ingress.isolated {
        chains.push_str(&chain(
            Direction::Ingress,
            &config.inbound.ingress,
            proxy_uid,
            &[],
            &mut sets,
        ));
    }
    if config.outbound.egress.isolated {
        // Datagrams to a Service are judged at the endpoint they go to.
        let services = super::service_nat::rules(config, proxy_uid);
        chains.push_str(&services.chain);
        chains.push_str(&chain(
            Direction::Egress,
            &config.outbound.egress,
            proxy_uid,
            &services.drops,
            &mut sets,
        ));
    }
    let mut out = String::new();
    let _ = writeln!(
        out,
        "# palisade non-TCP NetworkPolicy, config version {:?}",
        config.version
    );
    // Declaring the table first makes the delete valid on the first run.
    let _ = writeln!(out, "table inet {TABLE}");
    let _ = writeln!(out, "delete table inet {TABLE}");
    let _ = writeln!(out, "table inet {TABLE} {{");
    out.push_str(&sets);
    out.push_str(&chains);
    out.push_str("}\n");
    out
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    fn name(self) -> &'static str {
        match self {
            Direction::Ingress => "ingress",
            Direction::Egress => "egress",
        }
    }

    fn hook(self) -> &'static str {
        match self {
            Direction::Ingress => "input",
            Direction::Egress => "output",
        }
    }

    /// The remote end of the packet: its source on ingress, its destination
    /// on egress.
    fn remote(self) -> &'static str {
        match self {
            Direction::Ingress => "saddr",
            Direction::Egress => "daddr",
        }
    }

    fn loopback(self) -> &'static str {
        match self {
            Direction::Ingress => "iifname \"lo\"",
            Direction::Egress => "oifname \"lo\"",
        }
    }
}

/// One direction's filter chain; `drops` go before the rules' accepts.
fn chain(
    dir: Direction,
    policy: &DirectionPolicy,
    proxy_uid: u32,
    drops: &[String],
    sets: &mut String,
) -> String {
    let name = dir.name();
    let mut c = String::new();
    let _ = writeln!(c, "  chain {name} {{");
    let _ = writeln!(
        c,
        "    type filter hook {} priority filter; policy accept;",
        dir.hook()
    );
    let _ = writeln!(c, "    {} accept", dir.loopback());
    let _ = writeln!(c, "    meta l4proto tcp accept");
    // Replies of allowed flows pass; packets in a flow's original direction
    // meet the rules every time, so a new config version also cuts flows it
    // no longer allows (as the proxy closes such TCP connections).
    let _ = writeln!(c, "    ct direction reply ct state established accept");
    let _ = writeln!(c, "    ct state related accept");
    let _ = writeln!(
        c,
        "    icmpv6 type {{ nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert }} accept"
    );
    if dir == Direction::Egress {
        let _ = writeln!(c, "    meta skuid {proxy_uid} accept");
    }
    for line in drops {
        let _ = writeln!(c, "    {line}");
    }
    for (index, rule) in policy.rules.iter().enumerate() {
        for line in rule_lines(dir, index, rule, sets) {
            let _ = writeln!(c, "    {line}");
        }
    }
    let _ = writeln!(
        c,
        "    counter drop comment \"palisade: {name} not allowed\""
    );
    let _ = writeln!(c, "  }}");
    c
}

/// The nft match on (protocol, port) for one rule, or `None` when the rule
/// allows no UDP or SCTP at all (e.g. TCP ports only).
fn port_match(ports: &Option<Vec<PortRange>>) -> Option<Vec<String>> {
    let Some(ports) = ports else {
        // No `ports`: every port of every protocol.
        return Some(vec!["meta l4proto { udp, sctp }".to_string()]);
    };
    let mut matches = Vec::new();
    for (proto, keyword) in [(Protocol::Udp, "udp"), (Protocol::Sctp, "sctp")] {
        let ranges: Vec<String> = ports
            .iter()
            .filter(|p| p.protocol == proto)
            .map(|p| {
                if p.end_port > p.port {
                    format!("{}-{}", p.port, p.end_port)
                } else {
                    p.port.to_string()
                }
            })
            .collect();
        if !ranges.is_empty() {
            matches.push(format!("{keyword} dport {{ {} }}", ranges.join(", ")));
        }
    }
    if matches.is_empty() {
        None
    } else {
        Some(matches)
    }
}

/// The accept lines of rule `index`: one per (peer, address family, protocol).
fn rule_lines(dir: Direction, index: usize, rule: &L4Rule, sets: &mut String) -> Vec<String> {
    let Some(port_matches) = port_match(&rule.ports) else {
        return Vec::new();
    };
    let comment = format!(
        "comment \"{} {}[{index}]\"",
        sanitize(&rule.policy),
        dir.name()
    );
    let mut lines = Vec::new();
    let Some(peers) = &rule.peers else {
        // No `from`/`to`: every peer.
        for m in &port_matches {
            lines.push(format!("{m} counter accept {comment}"));
        }
        return lines;
    };
    for (peer_index, peer) in peers.iter().enumerate() {
        for (family, ip, addr_type, v4) in [
            ("v4", "ip", "ipv4_addr", true),
            ("v6", "ip6", "ipv6_addr", false),
        ] {
            let nets: Vec<String> = peer
                .nets
                .iter()
                .filter(|n| matches!(n.addr(), IpAddr::V4(_)) == v4)
                .map(|n| n.trunc().to_string())
                .collect();
            if nets.is_empty() {
                continue;
            }
            let except: Vec<String> = peer
                .except
                .iter()
                .filter(|n| matches!(n.addr(), IpAddr::V4(_)) == v4)
                .map(|n| n.trunc().to_string())
                .collect();
            let base = format!("{}_r{index}_p{peer_index}_{family}", dir.name());
            declare_set(sets, &base, addr_type, &nets);
            let mut addr_match = format!("{ip} {} @{base}", dir.remote());
            if !except.is_empty() {
                let except_set = format!("{base}_except");
                declare_set(sets, &except_set, addr_type, &except);
                let _ = write!(addr_match, " {ip} {} != @{except_set}", dir.remote());
            }
            for m in &port_matches {
                lines.push(format!("{addr_match} {m} counter accept {comment}"));
            }
        }
    }
    lines
}

fn declare_set(sets: &mut String, name: &str, addr_type: &str, elements: &[String]) {
    let _ = writeln!(
        sets,
        "  set {name} {{ type {addr_type}; flags interval; auto-merge; elements = {{ {} }} }}",
        elements.join(", ")
    );
}

/// Policy names come from Kubernetes object names (DNS labels); keep only
/// characters that cannot end an nft string.
pub(super) fn sanitize(s: &str) -> String {
    s.chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '.' | '_'))
        .collect()
}

#[cfg(test)]
#[path = "netfilter_tests.rs"]
mod tests;
