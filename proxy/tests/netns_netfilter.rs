//! Non-TCP NetworkPolicy for real, in network namespaces (run as root; never
//! skipped): the nftables rules `netfilter::apply` builds from a ProxyConfig
//! let a default-deny pod send DNS (UDP 53) to the DNS pod only, accept only
//! what its ingress rules allow, and let replies of allowed flows back in.
use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use palisade_api::ProxyConfig;
use palisade_e2e::require::BASE_TOOLS;
use palisade_e2e::{Pod, TestNet, require_root, require_tools};
use palisade_proxy::capture::netfilter;

const PROXY_UID: u32 = 1337;

fn net(test: &str) -> TestNet {
    require_root();
    require_tools(BASE_TOOLS);
    TestNet::new(test).unwrap()
}

fn udp(pod: &Pod, addr: &str) -> UdpSocket {
    palisade_e2e::udp::bind(pod, addr.parse().unwrap()).unwrap()
}

fn delivered(from: &UdpSocket, to: &str, receiver: &UdpSocket, msg: &[u8]) -> bool {
    palisade_e2e::udp::delivered(from, to.parse().unwrap(), receiver, msg).unwrap()
}

/// ProxyConfig YAML for one pod with the given ingress and egress sections.
fn config(version: &str, ip: &str, ingress: &str, egress: &str) -> ProxyConfig {
    let yaml = format!(
        r#"
version: "{version}"
mesh: {{ trustDomain: cluster.local }}
workload:
  namespace: x
  name: pod
  serviceAccount: default
  identity: spiffe://cluster.local/ns/x/sa/default
  ips: [{ip}]
inbound:
  mtls: PERMISSIVE
  ingress: {ingress}
outbound:
  egress: {egress}
"#
    );
    serde_yaml::from_str(&yaml).unwrap()
}

fn apply(pod: &Pod, cfg: &ProxyConfig) {
    let cfg = cfg.clone();
    pod.enter(move || netfilter::apply_for_uid(&cfg, PROXY_UID))
        .unwrap()
        .unwrap();
}

#[test]
fn udp_egress_and_ingress_follow_policy() {
    let net = net("nfudp");
    let app = net.pod("app").unwrap();
    let dns = net.pod("dns").unwrap();
    let other = net.pod("other").unwrap();

    // app: default-deny both ways, egress allows UDP 53 to the pod subnet
    // except the `other` pod, and to the DNS pod's IPv6 address.
    let app_cfg = config(
        "app-1",
        &app.ip.to_string(),
        "{ isolated: true, policies: [x/default-deny] }",
        &format!(
            r#"{{ isolated: true, policies: [x/default-deny, x/allow-dns], rules: [
                {{ policy: x/allow-dns, rule: 0,
                   peers: [{{ description: "ipBlock", nets: ["198.18.0.0/24", "{}/128"], except: ["{}/32"] }}],
                   ports: [{{ protocol: UDP, port: 53, endPort: 53 }}, {{ protocol: TCP, port: 53, endPort: 53 }}] }} ] }}"#,
            dns.ip6, other.ip
        ),
    );
    // dns: ingress allows UDP 53 from the app pod only.
    let dns_cfg = config(
        "dns-1",
        &dns.ip.to_string(),
        &format!(
            r#"{{ isolated: true, policies: [x/dns], rules: [
                {{ policy: x/dns, rule: 0,
                   peers: [{{ description: "app pod", nets: ["{}/32", "{}/128"] }}],
                   ports: [{{ protocol: UDP, port: 53, endPort: 53 }}] }} ] }}"#,
            app.ip, app.ip6
        ),
        "{ isolated: false }",
    );
    apply(&app, &app_cfg);
    apply(&dns, &dns_cfg);

    let app_sock = udp(&app, "0.0.0.0:5353");
    let app6_sock = udp(&app, "[::]:5354");
    let dns53 = udp(&dns, "0.0.0.0:53");
    let dns54 = udp(&dns, "0.0.0.0:54");
    let other53 = udp(&other, "0.0.0.0:53");
    let other_sock = udp(&other, "0.0.0.0:6000");

    // Egress: the allowed (pod, port) gets through, others do not.
    let dns_addr = format!("{}:53", dns.ip);
    assert!(delivered(&app_sock, &dns_addr, &dns53, b"query-1"));
    assert!(!delivered(
        &app_sock,
        &format!("{}:54", dns.ip),
        &dns54,
        b"wrong-port"
    ));
    assert!(!delivered(
        &app_sock,
        &format!("{}:53", other.ip),
        &other53,
        b"excepted-pod"
    ));
    // The DNS reply comes back although app's ingress is default-deny:
    // "reply traffic for those allowed connections will also be implicitly
    // allowed" (kubernetes.io, Network Policies).
    assert!(delivered(
        &dns53,
        &format!("{}:5353", app.ip),
        &app_sock,
        b"answer"
    ));
    // IPv6 to the DNS pod's v6 address on 53: allowed by the v6 net.
    let dns53_6 = udp(&dns, &format!("[{}]:53", dns.ip6));
    assert!(delivered(
        &app6_sock,
        &format!("[{}]:53", dns.ip6),
        &dns53_6,
        b"query-v6"
    ));

    // Ingress: app is isolated with no rule: a new datagram is dropped.
    assert!(!delivered(
        &other_sock,
        &format!("{}:5353", app.ip),
        &app_sock,
        b"unsolicited"
    ));
    // dns accepts 53 from app only.
    let other_to_dns = udp(&other, "[::]:6001");
    assert!(!delivered(
        &other_to_dns,
        &format!("[{}]:53", dns.ip6),
        &dns53_6,
        b"not-from-app"
    ));
    assert!(!delivered(
        &other_to_dns,
        &format!("{}:53", dns.ip),
        &dns53,
        b"not-from-app-v4"
    ));

    // The sidecar's own UID is exempt from egress rules.
    let status = app
        .command_as(PROXY_UID, "bash")
        .args([
            "-c",
            &format!("echo -n from-proxy > /dev/udp/{}/53", other.ip),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let mut buf = [0u8; 64];
    let (n, _) = other53
        .recv_from(&mut buf)
        .expect("the proxy UID's datagram");
    assert_eq!(&buf[..n], b"from-proxy");

    // TCP is the proxy's business: the rules leave it alone.
    let tcp = other
        .enter(|| std::net::TcpListener::bind("0.0.0.0:7000"))
        .unwrap()
        .unwrap();
    let target: SocketAddr = format!("{}:7000", other.ip).parse().unwrap();
    app.enter(move || std::net::TcpStream::connect_timeout(&target, Duration::from_secs(2)))
        .unwrap()
        .expect("TCP not filtered by the non-TCP rules");
    drop(tcp);

    // A new config version replaces the rules atomically: now `other` is
    // allowed too (egress without ports: every UDP/SCTP port).
    let mut next = app_cfg.clone();
    next.version = "app-2".into();
    next.outbound.egress.rules[0].peers = None;
    next.outbound.egress.rules[0].ports = None;
    apply(&app, &next);
    assert!(delivered(
        &app_sock,
        &format!("{}:53", other.ip),
        &other53,
        b"now-allowed"
    ));
    // Make it an established flow (other answers), then go back to the
    // first version: the flow is cut, not grandfathered by conntrack.
    assert!(delivered(
        &other53,
        &format!("{}:5353", app.ip),
        &app_sock,
        b"reply"
    ));
    assert!(delivered(
        &app_sock,
        &format!("{}:53", other.ip),
        &other53,
        b"established"
    ));
    let mut again = app_cfg.clone();
    again.version = "app-3".into();
    apply(&app, &again);
    assert!(!delivered(
        &app_sock,
        &format!("{}:53", other.ip),
        &other53,
        b"revoked"
    ));
    assert!(delivered(&app_sock, &dns_addr, &dns53, b"dns-still-fine"));
    let rules = app
        .exec_ok(&["nft", "list", "table", "inet", "palisade"])
        .unwrap();
    assert_eq!(rules.matches("chain egress").count(), 1, "{rules}");

    // remove() takes the table away entirely; ingress is open again.
    app.enter(netfilter::remove).unwrap().unwrap();
    app.enter(netfilter::remove).unwrap().unwrap();
    let listed = app.exec_ok(&["nft", "list", "ruleset"]).unwrap();
    assert!(!listed.contains("palisade"), "{listed}");
    assert!(delivered(
        &other_sock,
        &format!("{}:5353", app.ip),
        &app_sock,
        b"open-again"
    ));
}

#[test]
fn sctp_is_dropped_unless_allowed() {
    let net = net("nfsctp");
    let app = net.pod("app").unwrap();
    let cfg = config(
        "s-1",
        &app.ip.to_string(),
        r#"{ isolated: true, policies: [x/p], rules: [
            { policy: x/p, rule: 0, ports: [{ protocol: SCTP, port: 9999, endPort: 9999 }] } ] }"#,
        "{ isolated: false }",
    );
    apply(&app, &cfg);
    let rules = app
        .exec_ok(&["nft", "list", "chain", "inet", "palisade", "ingress"])
        .unwrap();
    assert!(rules.contains("sctp dport 9999"), "{rules}");
    assert!(rules.contains("drop"), "{rules}");
    // No UDP port is allowed by an SCTP-only rule.
    let peer = net.pod("peer").unwrap();
    let app_sock = udp(&app, "0.0.0.0:9999");
    let peer_sock = udp(&peer, "0.0.0.0:9000");
    assert!(!delivered(
        &peer_sock,
        &format!("{}:9999", app.ip),
        &app_sock,
        b"udp-9999"
    ));
}

/// NetworkPolicy judges pods, after a Service's address is translated: an
/// egress-isolated pod that may send UDP 5353 to the DNS pod reaches it
/// through the Service `10.96.0.10:53` (target port 5353), and gets the
/// answer from the Service address; a Service whose only endpoint egress
/// denies stays closed.
#[test]
fn udp_to_a_service_is_judged_at_its_endpoint() {
    let net = net("nfsvc");
    let app = net.pod("app").unwrap();
    let dns = net.pod("dns").unwrap();
    let other = net.pod("other").unwrap();
    app.exec_ok(&["ip", "route", "add", "10.96.0.0/16", "dev", "eth0"])
        .unwrap();
    let mut cfg = config(
        "svc-1",
        &app.ip.to_string(),
        "{ isolated: true, policies: [x/default-deny] }",
        &format!(
            r#"{{ isolated: true, policies: [x/allow-dns], rules: [
                {{ policy: x/allow-dns, rule: 0,
                   peers: [{{ description: "dns pod", nets: ["{}/32"] }}],
                   ports: [{{ protocol: UDP, port: 5353, endPort: 5353 }}] }} ] }}"#,
            dns.ip
        ),
    );
    cfg.services = serde_yaml::from_str(&format!(
        r#"
- name: y/dns
  clusterIps: [10.96.0.10]
  ports: [{{ port: 53, protocol: UDP, endpoints: [{{ ip: {}, port: 5353, workload: y/dns }}] }}]
- name: y/other
  clusterIps: [10.96.0.11]
  ports: [{{ port: 53, protocol: UDP, endpoints: [{{ ip: {}, port: 53, workload: y/other }}] }}]
"#,
        dns.ip, other.ip
    ))
    .unwrap();
    apply(&app, &cfg);

    let app_sock = udp(&app, "0.0.0.0:6000");
    let dns5353 = udp(&dns, "0.0.0.0:5353");
    let other53 = udp(&other, "0.0.0.0:53");
    assert!(delivered(&app_sock, "10.96.0.10:53", &dns5353, b"query"));
    // The answer comes back from the Service address the app asked.
    dns5353
        .send_to(b"answer", format!("{}:6000", app.ip))
        .unwrap();
    let mut buf = [0u8; 64];
    app_sock
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let (n, from) = app_sock.recv_from(&mut buf).expect("the answer");
    assert_eq!(
        (&buf[..n], from),
        (&b"answer"[..], "10.96.0.10:53".parse().unwrap())
    );
    // Egress allows no endpoint of y/other.
    assert!(!delivered(&app_sock, "10.96.0.11:53", &other53, b"denied"));
}
