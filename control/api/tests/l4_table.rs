//! NetworkPolicy (L4) evaluation on resolved rules. kubernetes.io, "Network
//! Policies": "If no NetworkPolicy objects in a namespace select a pod, that
//! pod is not isolated"; "Network policies do not conflict; they are
//! additive"; `ipBlock` "except" ranges are excluded; `endPort` makes a port
//! range; a rule without `from`/`to` matches all peers and one without
//! `ports` all ports.
use std::net::IpAddr;

use ipnet::IpNet;
use palisade_api::l4::{CompiledDirection, L4Decision};
use palisade_api::{DirectionPolicy, L4Peer, L4Rule, PortRange, Protocol};
use proptest::prelude::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn net(s: &str) -> IpNet {
    s.parse().unwrap()
}

fn peer(description: &str, nets: &[&str], except: &[&str]) -> L4Peer {
    L4Peer {
        description: description.into(),
        nets: nets.iter().map(|n| net(n)).collect(),
        except: except.iter().map(|n| net(n)).collect(),
    }
}

fn tcp(port: u16, end_port: u16) -> PortRange {
    PortRange {
        protocol: Protocol::Tcp,
        port,
        end_port,
    }
}

fn rule(
    policy: &str,
    index: usize,
    peers: Option<Vec<L4Peer>>,
    ports: Option<Vec<PortRange>>,
) -> L4Rule {
    L4Rule {
        policy: policy.into(),
        rule: index,
        peers,
        ports,
    }
}

fn isolated(rules: Vec<L4Rule>) -> CompiledDirection {
    CompiledDirection::new(&DirectionPolicy {
        isolated: true,
        policies: vec!["x/deny-all".into(), "x/web".into()],
        rules,
    })
}

fn allowed_by(d: &L4Decision) -> Option<(String, usize, Option<String>)> {
    match d {
        L4Decision::Allowed { policy, rule, peer } => Some((
            policy.to_string(),
            *rule,
            peer.as_ref().map(|p| p.to_string()),
        )),
        _ => None,
    }
}

#[test]
fn not_isolated_allows_everything() {
    let d = CompiledDirection::new(&DirectionPolicy::default());
    let decision = d.evaluate(ip("203.0.113.9"), 9999, Protocol::Udp);
    assert_eq!(decision, L4Decision::NotIsolated);
    assert!(decision.is_allowed());
}

#[test]
fn isolated_without_rules_denies_and_names_the_policies() {
    let decision = isolated(vec![]).evaluate(ip("198.18.0.2"), 80, Protocol::Tcp);
    assert!(!decision.is_allowed());
    match &decision {
        L4Decision::Denied { policies } => assert_eq!(&policies[..], ["x/deny-all", "x/web"]),
        other => panic!("{other:?}"),
    }
    assert_eq!(
        decision.to_string(),
        "denied: isolated by [x/deny-all, x/web] and no rule matched"
    );
}

#[test]
fn rule_without_peers_and_ports_allows_all() {
    let d = isolated(vec![rule("x/web", 0, None, None)]);
    for (addr, port, proto) in [
        ("198.18.0.2", 80, Protocol::Tcp),
        ("2001:db8::1", 53, Protocol::Udp),
    ] {
        let decision = d.evaluate(ip(addr), port, proto);
        assert_eq!(allowed_by(&decision), Some(("x/web".into(), 0, None)));
    }
}

#[test]
fn ip_block_with_except() {
    let d = isolated(vec![rule(
        "x/web",
        0,
        Some(vec![peer(
            "ipBlock 10.0.0.0/8",
            &["10.0.0.0/8"],
            &["10.1.0.0/16"],
        )]),
        None,
    )]);
    let yes = |a: &str| d.evaluate(ip(a), 80, Protocol::Tcp).is_allowed();
    assert!(yes("10.0.0.0"));
    assert!(yes("10.0.255.255"));
    assert!(yes("10.2.3.4"));
    assert!(yes("10.255.255.255"));
    assert!(!yes("10.1.0.0"), "except start");
    assert!(!yes("10.1.2.3"));
    assert!(!yes("10.1.255.255"), "except end");
    assert!(!yes("11.0.0.0"));
    assert!(!yes("9.255.255.255"));
    assert_eq!(
        allowed_by(&d.evaluate(ip("10.2.3.4"), 80, Protocol::Tcp)),
        Some(("x/web".into(), 0, Some("ipBlock 10.0.0.0/8".into())))
    );
}

#[test]
fn except_covering_the_whole_block_matches_nothing() {
    let d = isolated(vec![rule(
        "x/web",
        0,
        Some(vec![peer("ipBlock", &["10.0.0.0/24"], &["10.0.0.0/16"])]),
        None,
    )]);
    assert!(!d.evaluate(ip("10.0.0.1"), 80, Protocol::Tcp).is_allowed());
}

#[test]
fn ports_protocol_and_end_port() {
    let d = isolated(vec![rule(
        "x/web",
        0,
        None,
        Some(vec![
            tcp(80, 80),
            tcp(8000, 9000),
            PortRange {
                protocol: Protocol::Udp,
                port: 53,
                end_port: 53,
            },
        ]),
    )]);
    let yes = |port, proto| d.evaluate(ip("198.18.0.2"), port, proto).is_allowed();
    assert!(yes(80, Protocol::Tcp));
    assert!(!yes(80, Protocol::Udp), "protocol must match");
    assert!(!yes(81, Protocol::Tcp));
    assert!(yes(8000, Protocol::Tcp));
    assert!(yes(8500, Protocol::Tcp));
    assert!(yes(9000, Protocol::Tcp), "endPort is inclusive");
    assert!(!yes(9001, Protocol::Tcp));
    assert!(!yes(7999, Protocol::Tcp));
    assert!(yes(53, Protocol::Udp));
    assert!(!yes(53, Protocol::Tcp));
    assert!(!yes(53, Protocol::Sctp));
}

#[test]
fn peers_and_ports_are_anded_rules_are_ored() {
    let d = isolated(vec![
        rule(
            "x/a",
            0,
            Some(vec![peer("pods a", &["198.18.0.2/32"], &[])]),
            Some(vec![tcp(80, 80)]),
        ),
        rule(
            "x/b",
            1,
            Some(vec![peer("pods b", &["198.18.0.3/32"], &[])]),
            Some(vec![tcp(443, 443)]),
        ),
    ]);
    let yes = |a: &str, port| d.evaluate(ip(a), port, Protocol::Tcp).is_allowed();
    assert!(yes("198.18.0.2", 80));
    assert!(!yes("198.18.0.2", 443), "a's peer with b's port");
    assert!(yes("198.18.0.3", 443));
    assert!(!yes("198.18.0.3", 80));
    assert_eq!(
        allowed_by(&d.evaluate(ip("198.18.0.3"), 443, Protocol::Tcp)),
        Some(("x/b".into(), 1, Some("pods b".into())))
    );
}

#[test]
fn first_peer_covering_the_address_is_reported() {
    let d = isolated(vec![rule(
        "x/web",
        0,
        Some(vec![
            peer("wide", &["198.18.0.0/16"], &["198.18.1.0/24"]),
            peer("narrow", &["198.18.1.0/24", "198.18.2.0/24"], &[]),
        ]),
        None,
    )]);
    let who = |a: &str| allowed_by(&d.evaluate(ip(a), 1, Protocol::Tcp)).and_then(|x| x.2);
    assert_eq!(who("198.18.0.1").as_deref(), Some("wide"));
    assert_eq!(
        who("198.18.1.1").as_deref(),
        Some("narrow"),
        "excepted from wide"
    );
    assert_eq!(
        who("198.18.2.1").as_deref(),
        Some("wide"),
        "both: first wins"
    );
    assert_eq!(who("198.19.0.1"), None);
}

#[test]
fn ipv6_and_ipv4_mapped_addresses() {
    let d = isolated(vec![rule(
        "x/web",
        0,
        Some(vec![
            peer("v6", &["2001:db8::/32"], &["2001:db8:dead::/48"]),
            peer("v4", &["192.0.2.0/24"], &[]),
        ]),
        None,
    )]);
    let yes = |a: &str| d.evaluate(ip(a), 80, Protocol::Tcp).is_allowed();
    assert!(yes("2001:db8::1"));
    assert!(!yes("2001:db8:dead::1"));
    assert!(!yes("2001:db9::1"));
    assert!(yes("192.0.2.7"));
    // A dual-stack socket reports IPv4 peers as ::ffff:a.b.c.d.
    assert!(yes("::ffff:192.0.2.7"));
    assert!(!yes("::ffff:203.0.113.7"));
}

#[test]
fn whole_address_space_edges() {
    let d = isolated(vec![rule(
        "x/any",
        0,
        Some(vec![peer(
            "all",
            &["0.0.0.0/0", "::/0"],
            &["0.0.0.0/32", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"],
        )]),
        None,
    )]);
    let yes = |a: &str| d.evaluate(ip(a), 80, Protocol::Tcp).is_allowed();
    assert!(yes("255.255.255.255"));
    assert!(yes("0.0.0.1"));
    assert!(!yes("0.0.0.0"));
    assert!(yes("::"));
    assert!(yes("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe"));
    assert!(!yes("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"));
}

// === against a naive reference ===

fn naive(
    policy: &DirectionPolicy,
    remote: IpAddr,
    port: u16,
    proto: Protocol,
) -> Option<(String, usize, Option<String>)> {
    let remote = match remote {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(remote),
        v4 => v4,
    };
    for r in &policy.rules {
        let port_ok = r.ports.as_ref().is_none_or(|ps| {
            ps.iter()
                .any(|p| p.protocol == proto && p.port <= port && port <= p.end_port)
        });
        if !port_ok {
            continue;
        }
        match &r.peers {
            None => return Some((r.policy.clone(), r.rule, None)),
            Some(peers) => {
                for p in peers {
                    if p.nets.iter().any(|n| n.contains(&remote))
                        && !p.except.iter().any(|n| n.contains(&remote))
                    {
                        return Some((r.policy.clone(), r.rule, Some(p.description.clone())));
                    }
                }
            }
        }
    }
    None
}

fn arb_net() -> impl Strategy<Value = IpNet> {
    // A small space so nets, excepts and probes collide often.
    (0u32..64, 24u8..=32).prop_map(|(host, len)| {
        let addr = std::net::Ipv4Addr::from(0xC612_0000u32 | (host << 2));
        IpNet::V4(ipnet::Ipv4Net::new(addr, len).unwrap().trunc())
    })
}

fn arb_peer() -> impl Strategy<Value = L4Peer> {
    (
        prop::collection::vec(arb_net(), 1..4),
        prop::collection::vec(arb_net(), 0..3),
        0u32..1000,
    )
        .prop_map(|(nets, except, id)| L4Peer {
            description: format!("peer{id}"),
            nets,
            except,
        })
}

fn arb_rule() -> impl Strategy<Value = L4Rule> {
    (
        prop::option::of(prop::collection::vec(arb_peer(), 1..4)),
        prop::option::of(prop::collection::vec((0u16..6, 0u16..3), 1..3)),
        0usize..5,
    )
        .prop_map(|(peers, ports, i)| L4Rule {
            policy: format!("x/p{i}"),
            rule: i,
            peers,
            ports: ports.map(|ps| ps.into_iter().map(|(p, w)| tcp(p, p + w)).collect()),
        })
}

proptest! {
    #[test]
    fn compiled_index_agrees_with_naive_scan(
        rules in prop::collection::vec(arb_rule(), 0..5),
        probes in prop::collection::vec((0u32..1024, 0u16..9), 1..40),
    ) {
        let policy = DirectionPolicy { isolated: true, policies: vec!["x/p".into()], rules };
        let compiled = CompiledDirection::new(&policy);
        for (host, port) in probes {
            let remote = IpAddr::V4(std::net::Ipv4Addr::from(0xC612_0000u32 | host));
            let got = compiled.evaluate(remote, port, Protocol::Tcp);
            prop_assert_eq!(allowed_by(&got), naive(&policy, remote, port, Protocol::Tcp), "{} port {}", remote, port);
        }
    }
}
