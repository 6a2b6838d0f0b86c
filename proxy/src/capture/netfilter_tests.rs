//! Rule text generation for [`super`]; the real-kernel behaviour is tested in
//! `proxy/tests/netns_capture.rs`.
use super::*;

/// A config with default-deny egress except DNS (UDP and TCP 53) to one
/// subnet minus one host, and ingress isolated with a UDP port range from
/// everyone and an SCTP port from an IPv6 peer.
pub(crate) const CONFIG: &str = r#"
version: "v1"
mesh: { trustDomain: cluster.local }
workload:
  namespace: x
  name: a
  serviceAccount: default
  identity: spiffe://cluster.local/ns/x/sa/default
  ips: [198.18.0.2]
inbound:
  mtls: STRICT
  ingress:
    isolated: true
    policies: [x/ingress]
    rules:
      - policy: x/ingress
        rule: 0
        ports: [{ protocol: UDP, port: 5000, endPort: 5010 }, { protocol: TCP, port: 80, endPort: 80 }]
      - policy: x/ingress
        rule: 1
        peers:
          - { description: "ipBlock 2001:db8::/32", nets: ["2001:db8::/32"] }
        ports: [{ protocol: SCTP, port: 9999, endPort: 9999 }]
      - policy: x/ingress
        rule: 2
        ports: [{ protocol: TCP, port: 443, endPort: 443 }]
outbound:
  egress:
    isolated: true
    policies: [x/default-deny, x/allow-dns]
    rules:
      - policy: x/allow-dns
        rule: 0
        peers:
          - description: "ipBlock 198.18.0.0/24 except 198.18.0.9/32"
            nets: ["198.18.0.0/24"]
            except: ["198.18.0.9/32"]
        ports: [{ protocol: UDP, port: 53, endPort: 53 }, { protocol: TCP, port: 53, endPort: 53 }]
"#;

pub(crate) fn config() -> ProxyConfig {
    serde_yaml::from_str(CONFIG).unwrap()
}

#[test]
fn full_ruleset() {
    let text = ruleset(&config(), 1337);
    let expected = r#"# palisade non-TCP NetworkPolicy, config version "v1"
table inet palisade
delete table inet palisade
table inet palisade {
  set ingress_r1_p0_v6 { type ipv6_addr; flags interval; auto-merge; elements = { 2001:db8::/32 } }
  set egress_r0_p0_v4 { type ipv4_addr; flags interval; auto-merge; elements = { 198.18.0.0/24 } }
  set egress_r0_p0_v4_except { type ipv4_addr; flags interval; auto-merge; elements = { 198.18.0.9/32 } }
  chain ingress {
    type filter hook input priority filter; policy accept;
    iifname "lo" accept
    meta l4proto tcp accept
    ct direction reply ct state established accept
    ct state related accept
    icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept
    udp dport { 5000-5010 } counter accept comment "x/ingress ingress[0]"
    ip6 saddr @ingress_r1_p0_v6 sctp dport { 9999 } counter accept comment "x/ingress ingress[1]"
    counter drop comment "palisade: ingress not allowed"
  }
  chain egress {
    type filter hook output priority filter; policy accept;
    oifname "lo" accept
    meta l4proto tcp accept
    ct direction reply ct state established accept
    ct state related accept
    icmpv6 type { nd-router-solicit, nd-router-advert, nd-neighbor-solicit, nd-neighbor-advert } accept
    meta skuid 1337 accept
    ip daddr @egress_r0_p0_v4 ip daddr != @egress_r0_p0_v4_except udp dport { 53 } counter accept comment "x/allow-dns egress[0]"
    counter drop comment "palisade: egress not allowed"
  }
}
"#;
    assert_eq!(text, expected);
}

#[test]
fn not_isolated_means_no_chain() {
    let mut cfg = config();
    cfg.inbound.ingress = DirectionPolicy::default();
    cfg.outbound.egress = DirectionPolicy::default();
    let text = ruleset(&cfg, 0);
    assert!(!text.contains("chain"), "{text}");
    assert!(text.ends_with("table inet palisade {\n}\n"), "{text}");
}

#[test]
fn rule_without_peers_or_ports_allows_all_udp_and_sctp() {
    let mut cfg = config();
    cfg.outbound.egress.rules = vec![L4Rule {
        policy: "x/all".into(),
        rule: 0,
        peers: None,
        ports: None,
    }];
    let text = ruleset(&cfg, 0);
    assert!(
        text.contains("meta l4proto { udp, sctp } counter accept comment \"x/all egress[0]\""),
        "{text}"
    );
}

#[test]
fn rule_with_empty_peer_list_allows_nothing() {
    // A selector that matched no pods resolves to `peers: []`: no traffic.
    let mut cfg = config();
    cfg.outbound.egress.rules[0].peers = Some(Vec::new());
    let text = ruleset(&cfg, 0);
    assert!(!text.contains("egress[0]"), "{text}");
    assert!(text.contains("counter drop comment \"palisade: egress not allowed\""));
}

#[test]
fn host_bits_are_masked_and_names_sanitized() {
    let mut cfg = config();
    cfg.outbound.egress.rules[0].policy = "x/evil\" accept; #".into();
    cfg.outbound.egress.rules[0].peers.as_mut().unwrap()[0].nets =
        vec!["198.18.0.77/24".parse().unwrap()];
    let text = ruleset(&cfg, 0);
    assert!(text.contains("elements = { 198.18.0.0/24 }"), "{text}");
    assert!(
        text.contains("comment \"x/evilaccept egress[0]\""),
        "{text}"
    );
}

/// `CONFIG` with UDP and SCTP Services: `y/dns` (cluster IP and an external
/// IP, two endpoints egress allows on 53 and one it excepts), `y/sticky`
/// (ClientIP affinity), `y/denied` (an endpoint egress does not allow), and
/// a TCP port the sidecar translates itself.
fn config_with_services() -> ProxyConfig {
    let mut cfg = config();
    let services = r#"
- name: y/dns
  clusterIps: [10.96.0.10, "fd00:96::10"]
  externalIps: [203.0.113.10]
  ports:
    - { port: 53, protocol: UDP, endpoints: [
        { ip: 198.18.0.3, port: 53, workload: y/dns-1 },
        { ip: 198.18.0.4, port: 53, workload: y/dns-2 },
        { ip: 198.18.0.9, port: 53, workload: y/excepted } ] }
    - { port: 53, protocol: TCP, endpoints: [{ ip: 198.18.0.3, port: 53, workload: y/dns-1 }] }
- name: y/sticky
  clusterIps: [10.96.0.11]
  sessionAffinity: { timeoutSeconds: 10800 }
  ports:
    - { port: 53, protocol: UDP, endpoints: [
        { ip: 198.18.0.3, port: 53, workload: y/dns-1 },
        { ip: 198.18.0.4, port: 53, workload: y/dns-2 } ] }
- name: y/denied
  clusterIps: [10.96.0.12]
  ports:
    - { port: 5000, protocol: SCTP, endpoints: [{ ip: 198.18.0.3, port: 5000, workload: y/dns-1 }] }
"#;
    cfg.services = serde_yaml::from_str(services).unwrap();
    cfg
}

#[test]
fn egress_isolated_pod_sends_service_datagrams_to_allowed_endpoints() {
    let text = ruleset(&config_with_services(), 1337);
    let nat = r#"  chain service_nat {
    type nat hook output priority -100; policy accept;
    meta skuid 1337 return
    ip daddr 10.96.0.10 udp dport 53 dnat ip to numgen random mod 2 map { 0 : 198.18.0.3 . 53, 1 : 198.18.0.4 . 53 } comment "y/dns udp 53"
    ip daddr 203.0.113.10 udp dport 53 dnat ip to numgen random mod 2 map { 0 : 198.18.0.3 . 53, 1 : 198.18.0.4 . 53 } comment "y/dns udp 53"
    ip daddr 10.96.0.11 udp dport 53 dnat ip to jhash ip saddr mod 2 seed 0x0 map { 0 : 198.18.0.3 . 53, 1 : 198.18.0.4 . 53 } comment "y/sticky udp 53"
  }
"#;
    assert!(text.contains(nat), "{text}");
    // No IPv6 endpoint: the v6 cluster IP leads nowhere, and is dropped.
    assert!(
        text.contains("    meta skuid 1337 accept\n    ip6 daddr fd00:96::10 udp dport 53 counter drop comment \"y/dns udp 53\"\n    ip daddr 10.96.0.12 sctp dport 5000 counter drop comment \"y/denied sctp 5000\"\n    ip daddr @egress_r0_p0_v4"),
        "{text}"
    );
    assert!(!text.contains("tcp dport"), "{text}");
}

#[test]
fn one_allowed_endpoint_is_a_plain_dnat_and_no_isolation_no_nat() {
    let mut cfg = config_with_services();
    cfg.services[0].ports[0].endpoints.truncate(1);
    let text = ruleset(&cfg, 0);
    assert!(
        text.contains("ip daddr 10.96.0.10 udp dport 53 dnat ip to 198.18.0.3:53 comment"),
        "{text}"
    );
    // Not isolated: kube-proxy translates on the node, nothing to judge here.
    cfg.outbound.egress = DirectionPolicy::default();
    let text = ruleset(&cfg, 0);
    assert!(
        !text.contains("service_nat") && !text.contains("dnat"),
        "{text}"
    );
}
