//! NetworkPolicy (L3/L4) evaluation of one direction's resolved rules.
//!
//! `CompiledDirection::new` turns a `DirectionPolicy` into an indexed form
//! once per config version: every rule's peers become a sorted list of
//! disjoint address intervals (IPv4 and IPv6 apart), each labelled with the
//! first peer that covers it, so one decision is a binary search per rule
//! instead of a scan over thousands of CIDRs. The serialized form stays the
//! plain `DirectionPolicy`.
//!
//! Semantics (kubernetes.io, "Network Policies"): a direction that no policy
//! isolates allows everything; an isolated direction allows exactly what some
//! rule allows ("the union of what the policies allow"). A rule matches when
//! the remote IP matches one of its peers (`nets` minus `except`) or it has
//! no peer list, and the (protocol, port) matches one of its port ranges or
//! it has no port list. Traffic to and from the pod's own node is always
//! allowed: the compiler adds it as a rule (`L4Rule::node_traffic`), reported
//! here with its own reason.
use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use ipnet::IpNet;

use crate::config::{DirectionPolicy, L4Peer, L4Rule, PortRange, Protocol};

/// Why the node rule (`L4Rule::node_traffic`) allows a connection.
pub const NODE_TRAFFIC_REASON: &str =
    "traffic to/from the pod's own node is always allowed (kubernetes.io, Network Policies)";

/// The outcome of one L4 check, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum L4Decision {
    /// No NetworkPolicy isolates the workload in this direction.
    NotIsolated,
    /// Allowed by rule `rule` of `policy`; `peer` is the description of the
    /// matching peer, `None` when the rule applies to all peers.
    Allowed {
        policy: Arc<str>,
        rule: usize,
        peer: Option<Arc<str>>,
    },
    /// Isolated by `policies` and no rule matched.
    Denied { policies: Arc<[String]> },
}

impl L4Decision {
    pub fn is_allowed(&self) -> bool {
        !matches!(self, L4Decision::Denied { .. })
    }

    /// Allowed because the remote end is the pod's own node.
    pub fn is_node_traffic(&self) -> bool {
        matches!(self, L4Decision::Allowed { policy, .. } if &**policy == L4Rule::NODE_TRAFFIC)
    }
}

impl fmt::Display for L4Decision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            L4Decision::NotIsolated => f.write_str("allowed: not isolated by any NetworkPolicy"),
            L4Decision::Allowed { peer, .. } if self.is_node_traffic() => {
                write!(f, "allowed: {NODE_TRAFFIC_REASON}")?;
                match peer {
                    Some(p) => write!(f, " ({p})"),
                    None => Ok(()),
                }
            }
            L4Decision::Allowed { policy, rule, peer } => {
                write!(f, "allowed by NetworkPolicy {policy} rule {rule}")?;
                match peer {
                    Some(p) => write!(f, " (peer {p})"),
                    None => f.write_str(" (all peers)"),
                }
            }
            L4Decision::Denied { policies } => write!(
                f,
                "denied: isolated by [{}] and no rule matched",
                policies.join(", ")
            ),
        }
    }
}

/// The indexed form of a `DirectionPolicy`.
#[derive(Debug, Clone)]
pub struct CompiledDirection {
    isolated: bool,
    policies: Arc<[String]>,
    rules: Vec<CompiledRule>,
}

#[derive(Debug, Clone)]
struct CompiledRule {
    policy: Arc<str>,
    rule: usize,
    /// `None`: all peers.
    peers: Option<PeerIndex>,
    /// `None`: all ports.
    ports: Option<Vec<PortRange>>,
}

/// Disjoint, sorted intervals, each labelled with a peer index.
#[derive(Debug, Clone, Default)]
struct PeerIndex {
    descriptions: Vec<Arc<str>>,
    v4: Table<u32>,
    v6: Table<u128>,
}

/// Interval starts apart from the rest, so the binary search walks a dense
/// array (10,000 IPv4 starts are 40 KB).
#[derive(Debug, Clone, Default)]
struct Table<T> {
    starts: Vec<T>,
    /// `(end, peer)` of the interval at the same index.
    rest: Vec<(T, u32)>,
}

impl<T: Ord + Copy> Table<T> {
    fn new(intervals: Vec<Labelled<T>>) -> Self {
        Table {
            starts: intervals.iter().map(|iv| iv.start).collect(),
            rest: intervals
                .iter()
                .map(|iv| (iv.end, u32::try_from(iv.peer).unwrap_or(u32::MAX)))
                .collect(),
        }
    }

    fn find(&self, x: T) -> Option<usize> {
        let i = self.starts.partition_point(|&s| s <= x).checked_sub(1)?;
        let &(end, peer) = self.rest.get(i)?;
        (x <= end).then_some(peer as usize)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Labelled<T> {
    start: T,
    end: T,
    peer: usize,
}

impl CompiledDirection {
    pub fn new(policy: &DirectionPolicy) -> Self {
        let rules = policy
            .rules
            .iter()
            .map(|r| CompiledRule {
                policy: Arc::from(r.policy.as_str()),
                rule: r.rule,
                peers: r.peers.as_deref().map(PeerIndex::new),
                ports: r.ports.clone(),
            })
            .collect();
        CompiledDirection {
            isolated: policy.isolated,
            policies: policy.policies.clone().into(),
            rules,
        }
    }

    pub fn is_isolated(&self) -> bool {
        self.isolated
    }

    /// Decides on a connection with `remote_ip` (the source for ingress, the
    /// destination for egress), the workload-side `port` and `protocol`.
    pub fn evaluate(&self, remote_ip: IpAddr, port: u16, protocol: Protocol) -> L4Decision {
        if !self.isolated {
            return L4Decision::NotIsolated;
        }
        let remote_ip = canonical_ip(remote_ip);
        for rule in &self.rules {
            if !rule.ports_match(port, protocol) {
                continue;
            }
            let peer = match &rule.peers {
                None => None,
                Some(index) => match index.lookup(remote_ip) {
                    Some(p) => Some(p),
                    None => continue,
                },
            };
            return L4Decision::Allowed {
                policy: rule.policy.clone(),
                rule: rule.rule,
                peer,
            };
        }
        L4Decision::Denied {
            policies: self.policies.clone(),
        }
    }
}

/// Shorthand for `CompiledDirection::evaluate`.
pub fn evaluate(
    direction: &CompiledDirection,
    remote_ip: IpAddr,
    port: u16,
    protocol: Protocol,
) -> L4Decision {
    direction.evaluate(remote_ip, port, protocol)
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a dual-stack socket
/// reports IPv4 peers) is matched as the IPv4 address.
fn canonical_ip(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => ip,
        },
        v4 => v4,
    }
}

impl CompiledRule {
    fn ports_match(&self, port: u16, protocol: Protocol) -> bool {
        match &self.ports {
            None => true,
            Some(ranges) => ranges
                .iter()
                .any(|r| r.protocol == protocol && r.port <= port && port <= r.end_port),
        }
    }
}

// === impl PeerIndex ===

impl PeerIndex {
    fn new(peers: &[L4Peer]) -> Self {
        let mut v4_sets = Vec::with_capacity(peers.len());
        let mut v6_sets = Vec::with_capacity(peers.len());
        for peer in peers {
            let (v4, v6) = peer_intervals(peer);
            v4_sets.push(v4);
            v6_sets.push(v6);
        }
        PeerIndex {
            descriptions: peers
                .iter()
                .map(|p| Arc::from(p.description.as_str()))
                .collect(),
            v4: Table::new(label_first_peer(&v4_sets)),
            v6: Table::new(label_first_peer(&v6_sets)),
        }
    }

    fn lookup(&self, ip: IpAddr) -> Option<Arc<str>> {
        let peer = match ip {
            IpAddr::V4(v4) => self.v4.find(u32::from(v4)),
            IpAddr::V6(v6) => self.v6.find(u128::from(v6)),
        }?;
        self.descriptions.get(peer).cloned()
    }
}

/// Inclusive `(start, end)` address intervals.
type Intervals<T> = Vec<(T, T)>;

/// One peer's address set, `nets` minus `except`, as disjoint sorted intervals.
fn peer_intervals(peer: &L4Peer) -> (Intervals<u32>, Intervals<u128>) {
    let mut v4 = Vec::new();
    let mut v6 = Vec::new();
    let mut v4_except = Vec::new();
    let mut v6_except = Vec::new();
    for net in &peer.nets {
        push_net(net, &mut v4, &mut v6);
    }
    for net in &peer.except {
        push_net(net, &mut v4_except, &mut v6_except);
    }
    (
        subtract(merge(v4), &merge(v4_except)),
        subtract(merge(v6), &merge(v6_except)),
    )
}

fn push_net(net: &IpNet, v4: &mut Vec<(u32, u32)>, v6: &mut Vec<(u128, u128)>) {
    match net {
        IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
        IpNet::V6(n) => {
            // An IPv4-mapped prefix (::ffff:0:0/96 and longer) also covers the
            // IPv4 addresses, since lookups canonicalize mapped addresses.
            v6.push((u128::from(n.network()), u128::from(n.broadcast())));
            if n.prefix_len() >= 96
                && let Some(start) = n.network().to_ipv4_mapped()
                && let Some(end) = n.broadcast().to_ipv4_mapped()
            {
                v4.push((u32::from(start), u32::from(end)));
            }
        }
    }
}

trait Addr: Ord + Copy {
    const MAX: Self;
    fn next(self) -> Option<Self>;
    fn prev(self) -> Option<Self>;
}

impl Addr for u32 {
    const MAX: Self = u32::MAX;
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn prev(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

impl Addr for u128 {
    const MAX: Self = u128::MAX;
    fn next(self) -> Option<Self> {
        self.checked_add(1)
    }
    fn prev(self) -> Option<Self> {
        self.checked_sub(1)
    }
}

/// Sorts and merges overlapping or adjacent inclusive intervals.
fn merge<T: Addr>(mut v: Vec<(T, T)>) -> Vec<(T, T)> {
    v.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(v.len());
    for (s, e) in v {
        if let Some(last) = out.last_mut() {
            let touches = match last.1.next() {
                Some(n) => s <= n,
                None => true,
            };
            if touches {
                if e > last.1 {
                    last.1 = e;
                }
                continue;
            }
        }
        out.push((s, e));
    }
    out
}

/// `a` minus `b`, both merged.
fn subtract<T: Addr>(a: Vec<(T, T)>, b: &[(T, T)]) -> Vec<(T, T)> {
    if b.is_empty() {
        return a;
    }
    let mut out = Vec::with_capacity(a.len());
    for (mut s, e) in a {
        let first = b.partition_point(|&(_, be)| be < s);
        let mut alive = true;
        for &(bs, be) in &b[first..] {
            if bs > e {
                break;
            }
            if bs > s
                && let Some(p) = bs.prev()
            {
                out.push((s, p));
            }
            match be.next() {
                Some(n) if be < e => s = n,
                _ => {
                    alive = false;
                    break;
                }
            }
        }
        if alive {
            out.push((s, e));
        }
    }
    out
}

/// Splits the union of the peers' interval sets into disjoint intervals,
/// each labelled with the lowest-index peer covering it.
fn label_first_peer<T: Addr>(sets: &[Vec<(T, T)>]) -> Vec<Labelled<T>> {
    // Sweep over boundaries. An event at `x` opens (true) or closes (false)
    // a peer's interval; closes are at `end + 1` or never (end of space).
    let mut events: Vec<(T, bool, usize)> = Vec::new();
    for (peer, set) in sets.iter().enumerate() {
        for &(s, e) in set {
            events.push((s, true, peer));
            if let Some(n) = e.next() {
                events.push((n, false, peer));
            }
        }
    }
    // At one point, closes go before opens.
    events.sort_unstable_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
    let mut active: BTreeMap<usize, usize> = BTreeMap::new();
    let mut out: Vec<Labelled<T>> = Vec::new();
    let mut i = 0;
    while i < events.len() {
        let x = events[i].0;
        while i < events.len() && events[i].0 == x {
            let (_, open, peer) = events[i];
            if open {
                *active.entry(peer).or_default() += 1;
            } else if let Some(c) = active.get_mut(&peer) {
                *c -= 1;
                if *c == 0 {
                    active.remove(&peer);
                }
            }
            i += 1;
        }
        let Some((&peer, _)) = active.first_key_value() else {
            continue;
        };
        // The segment runs until the next event point (exclusive) or to the
        // end of the address space.
        let end = match events.get(i) {
            Some(&(next, _, _)) => match next.prev() {
                Some(p) => p,
                None => continue,
            },
            None => T::MAX,
        };
        match out.last_mut() {
            Some(last) if last.peer == peer && last.end.next() == Some(x) => last.end = end,
            _ => out.push(Labelled {
                start: x,
                end,
                peer,
            }),
        }
    }
    out
}
