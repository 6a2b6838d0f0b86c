//! Capture for real, in network namespaces (run as root; never skipped): the
//! `init` rules redirect a pod's inbound and outbound TCP to the sidecar's
//! listeners and `SO_ORIGINAL_DST` recovers where it was going, for IPv4 and
//! IPv6; the exclusions hold; install is idempotent and uninstall complete.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use palisade_e2e::require::BASE_TOOLS;
use palisade_e2e::{Pod, TestNet, require_root, require_tools};
use palisade_proxy::capture::init::{self, InitOptions};
use palisade_proxy::capture::{OrigDstAddr, orig_dst_addr, orig_dst_addr_or_default};
use tokio::net::TcpListener;
use tokio::time::timeout;

const PROXY_UID: u32 = 1337;

fn net(test: &str) -> TestNet {
    require_root();
    require_tools(BASE_TOOLS);
    TestNet::new(test).unwrap()
}

/// A tokio listener bound inside `pod`.
fn listen(pod: &Pod, addr: &str) -> TcpListener {
    let addr: SocketAddr = addr.parse().unwrap();
    let std = pod
        .enter(move || std::net::TcpListener::bind(addr))
        .unwrap()
        .unwrap();
    std.set_nonblocking(true).unwrap();
    TcpListener::from_std(std).unwrap()
}

/// Connects from inside `pod` (blocking, on the namespace's thread) and
/// writes one byte so the accept side has something to see.
fn connect(pod: &Pod, addr: &str) -> TcpStream {
    let addr: SocketAddr = addr.parse().unwrap();
    let mut s = pod
        .enter(move || TcpStream::connect_timeout(&addr, Duration::from_secs(2)))
        .unwrap()
        .unwrap_or_else(|e| panic!("connect to {addr} from {}: {e}", pod.ns));
    s.write_all(b"x").unwrap();
    s
}

/// The next connection on `listener`, with its original destination (or
/// `None` when the connection was not redirected) and client address.
async fn accept(listener: &TcpListener) -> Option<(Option<OrigDstAddr>, OrigDstAddr, SocketAddr)> {
    let (stream, client) = timeout(Duration::from_millis(700), listener.accept())
        .await
        .ok()?
        .ok()?;
    Some((
        orig_dst_addr(&stream).ok(),
        orig_dst_addr_or_default(&stream).unwrap(),
        palisade_proxy::capture::to_canonical(client),
    ))
}

fn install_in(pod: &Pod, opts: &InitOptions) {
    let opts = opts.clone();
    pod.enter(move || init::install(&opts)).unwrap().unwrap();
}

fn nat_rules(pod: &Pod, tool: &str) -> String {
    pod.exec_ok(&[tool, "-t", "nat", "-S"]).unwrap()
}

#[tokio::test]
async fn inbound_redirect_reports_original_destination() {
    let net = net("capin");
    let client = net.pod("client").unwrap();
    let server = net.pod("server").unwrap();
    let opts = InitOptions {
        exclude_inbound_ports: vec![2222],
        ..InitOptions::default()
    };
    install_in(&server, &opts);
    // One dual-stack listener: IPv4 arrives as v4-mapped, IPv6 as itself.
    let inbound = listen(&server, "[::]:15006");
    let admin = listen(&server, "[::]:15000");
    let excluded = listen(&server, "[::]:2222");

    let _c = connect(&client, &format!("{}:8080", server.ip));
    let (orig, _, from) = accept(&inbound).await.expect("redirected to 15006");
    assert_eq!(
        orig.unwrap().0,
        format!("{}:8080", server.ip).parse().unwrap()
    );
    assert_eq!(from.ip(), std::net::IpAddr::V4(client.ip));

    let _c = connect(&client, &format!("[{}]:8443", server.ip6));
    let (orig, _, from) = accept(&inbound).await.expect("IPv6 redirected to 15006");
    assert_eq!(
        orig.unwrap().0,
        format!("[{}]:8443", server.ip6).parse().unwrap()
    );
    assert_eq!(from.ip(), std::net::IpAddr::V6(client.ip6));

    // A remote client dialing the outbound port lands on the inbound path,
    // never on the outbound listener (no open relay).
    let _c = connect(&client, &format!("{}:15001", server.ip));
    let (orig, _, _) = accept(&inbound)
        .await
        .expect(":15001 redirected to inbound");
    assert_eq!(orig.unwrap().0.port(), 15001);

    // The proxy's own admin port and an excluded port are not redirected:
    // they reach their own listeners, and whatever conntrack reports as the
    // original destination is the real local address.
    for (listener, port) in [(&admin, 15000), (&excluded, 2222)] {
        let _c = connect(&client, &format!("{}:{port}", server.ip));
        let (orig, fallback, _) = accept(listener).await.expect("direct connection");
        let expected: SocketAddr = format!("{}:{port}", server.ip).parse().unwrap();
        assert_eq!(fallback.0, expected);
        assert!(
            orig.is_none_or(|o| o.0 == expected),
            "port {port}: {orig:?}"
        );
        assert!(accept(&inbound).await.is_none());
    }
}

#[tokio::test]
async fn outbound_redirect_spares_proxy_uid_loopback_and_exclusions() {
    let net = net("capout");
    let client = net.pod("client").unwrap();
    let server = net.pod("server").unwrap();
    let other = net.pod("other").unwrap();
    let opts = InitOptions {
        proxy_uid: PROXY_UID,
        exclude_outbound_ports: vec![5432],
        exclude_outbound_cidrs: vec![format!("{}/32", other.ip).parse().unwrap()],
        ..InitOptions::default()
    };
    install_in(&client, &opts);
    let outbound = listen(&client, "[::]:15001");
    let local = listen(&client, "127.0.0.1:7000");
    let server_app = listen(&server, "[::]:9999");
    let server_db = listen(&server, "[::]:5432");
    let other_app = listen(&other, "[::]:9999");

    // The app's connections go to the sidecar, destination preserved.
    let _c = connect(&client, &format!("{}:9999", server.ip));
    let (orig, _, _) = accept(&outbound).await.expect("redirected to 15001");
    assert_eq!(
        orig.unwrap().0,
        format!("{}:9999", server.ip).parse().unwrap()
    );
    let _c = connect(&client, &format!("[{}]:9999", server.ip6));
    let (orig, _, _) = accept(&outbound).await.expect("IPv6 redirected to 15001");
    assert_eq!(
        orig.unwrap().0,
        format!("[{}]:9999", server.ip6).parse().unwrap()
    );

    // Loopback, an excluded port and an excluded CIDR leave directly.
    let _c = connect(&client, "127.0.0.1:7000");
    assert!(accept(&local).await.is_some());
    let _c = connect(&client, &format!("{}:5432", server.ip));
    assert!(accept(&server_db).await.is_some());
    let _c = connect(&client, &format!("{}:9999", other.ip));
    assert!(accept(&other_app).await.is_some());
    assert!(
        accept(&outbound).await.is_none(),
        "nothing else was redirected"
    );

    // The sidecar's own UID is never redirected (else it would loop).
    let status = client
        .command_as(PROXY_UID, "bash")
        .args([
            "-c",
            &format!("exec 3<>/dev/tcp/{}/9999 && echo x >&3", server.ip),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    let (orig, _, from) = accept(&server_app).await.expect("proxy UID goes direct");
    assert!(orig.is_none());
    assert_eq!(from.ip(), std::net::IpAddr::V4(client.ip));
    assert!(accept(&outbound).await.is_none());
}

#[tokio::test]
async fn install_is_idempotent_and_uninstall_complete() {
    let net = net("capidem");
    let pod = net.pod("pod").unwrap();
    let before4 = nat_rules(&pod, "iptables");
    let before6 = nat_rules(&pod, "ip6tables");
    install_in(&pod, &InitOptions::default());
    let once4 = nat_rules(&pod, "iptables");
    let once6 = nat_rules(&pod, "ip6tables");
    assert!(
        once4.contains("-A PREROUTING -p tcp -j PALISADE_INBOUND"),
        "{once4}"
    );
    assert!(
        once4.contains("-A OUTPUT -p tcp -j PALISADE_OUTBOUND"),
        "{once4}"
    );
    assert!(
        once6.contains("-A PALISADE_OUTBOUND -d ::1/128 -j RETURN"),
        "{once6}"
    );
    install_in(&pod, &InitOptions::default());
    assert_eq!(
        nat_rules(&pod, "iptables"),
        once4,
        "a second install changes nothing"
    );
    assert_eq!(nat_rules(&pod, "ip6tables"), once6);

    // A changed option replaces the rules rather than adding to them.
    let changed = InitOptions {
        exclude_inbound_ports: vec![2222],
        ..InitOptions::default()
    };
    install_in(&pod, &changed);
    let rules = nat_rules(&pod, "iptables");
    assert!(rules.contains("--dport 2222 -j RETURN"), "{rules}");
    assert_eq!(
        rules.matches("-j PALISADE_IN_REDIRECT").count(),
        1,
        "{rules}"
    );
    assert_eq!(rules.matches("-A PREROUTING").count(), 1, "{rules}");

    pod.enter(|| init::uninstall(true)).unwrap().unwrap();
    assert_eq!(nat_rules(&pod, "iptables"), before4);
    assert_eq!(nat_rules(&pod, "ip6tables"), before6);
    // Uninstalling again is a no-op, not an error.
    pod.enter(|| init::uninstall(true)).unwrap().unwrap();
}

/// Drives a redirected connection end to end through a tiny relay standing
/// in for the sidecar: bytes reach the original destination.
#[tokio::test]
async fn relay_through_original_destination() {
    let net = net("caprelay");
    let client = net.pod("client").unwrap();
    let server = net.pod("server").unwrap();
    install_in(
        &client,
        &InitOptions {
            proxy_uid: 0,
            ..InitOptions::default()
        },
    );
    let outbound = listen(&client, "[::]:15001");
    let app = listen(&server, "[::]:8080");
    let server_ip = server.ip;
    let (mut c, relay) = {
        // The test process is root (uid 0 is the "proxy" here), so the
        // client side runs as another user to be captured.
        let mut cmd = client.command_as(1000, "bash");
        cmd.args([
            "-c",
            &format!(
                "exec 3<>/dev/tcp/{server_ip}/8080; echo ping >&3; read line <&3; echo \"$line\""
            ),
        ]);
        cmd.stdout(std::process::Stdio::piped());
        let child = cmd.spawn().unwrap();
        let (stream, _) = timeout(Duration::from_secs(2), outbound.accept())
            .await
            .unwrap()
            .unwrap();
        (child, stream)
    };
    let orig = orig_dst_addr(&relay).unwrap();
    assert_eq!(orig.0, format!("{server_ip}:8080").parse().unwrap());
    // Relay: connect (as root = excluded UID) to the original destination.
    let upstream = client
        .enter(move || TcpStream::connect(orig.0))
        .unwrap()
        .unwrap();
    upstream.set_nonblocking(true).unwrap();
    let upstream = tokio::net::TcpStream::from_std(upstream).unwrap();
    let relay_task = tokio::spawn(async move {
        let (mut a, mut b) = (relay, upstream);
        let _ = tokio::io::copy_bidirectional(&mut a, &mut b).await;
    });
    let (mut accepted, _) = timeout(Duration::from_secs(2), app.accept())
        .await
        .unwrap()
        .unwrap();
    let mut buf = [0u8; 5];
    tokio::io::AsyncReadExt::read_exact(&mut accepted, &mut buf)
        .await
        .unwrap();
    assert_eq!(&buf, b"ping\n");
    tokio::io::AsyncWriteExt::write_all(&mut accepted, b"pong\n")
        .await
        .unwrap();
    let out = tokio::task::spawn_blocking(move || {
        let mut s = String::new();
        c.stdout.take().unwrap().read_to_string(&mut s).unwrap();
        c.wait().unwrap();
        s
    })
    .await
    .unwrap();
    assert_eq!(out, "pong\n");
    relay_task.abort();
}

/// The real `palisade-proxy init` binary: installs, uninstalls, and fails
/// with an actionable message when iptables is missing or not permitted.
#[test]
fn init_cli_installs_uninstalls_and_explains_failures() {
    const BIN: &str = env!("CARGO_BIN_EXE_palisade-proxy");
    let net = net("capcli");
    let pod = net.pod("pod").unwrap();

    let out = pod
        .exec(&[
            BIN,
            "init",
            "--proxy-uid",
            "1337",
            "--exclude-inbound-ports",
            "22",
        ])
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rules = nat_rules(&pod, "iptables");
    assert!(
        rules.contains("-A PALISADE_OUTBOUND -m owner --uid-owner 1337 -j RETURN"),
        "{rules}"
    );
    assert!(rules.contains("--dport 22 -j RETURN"), "{rules}");
    assert!(nat_rules(&pod, "ip6tables").contains("PALISADE_INBOUND"));

    let out = pod.exec(&[BIN, "init", "--uninstall"]).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!nat_rules(&pod, "iptables").contains("PALISADE"));
    assert!(!nat_rules(&pod, "ip6tables").contains("PALISADE"));

    // Not root: iptables refuses, and the message says what is needed.
    let out = pod.command_as(1000, BIN).arg("init").output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains("CAP_NET_ADMIN"), "{stderr}");

    // No iptables in PATH: the message names the package to install.
    let out = pod
        .exec(&["env", "PATH=/palisade-nonexistent", BIN, "init"])
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("install the Debian package `iptables`"),
        "{stderr}"
    );

    // A bad flag is a usage error, not a panic.
    let out = pod
        .exec(&[BIN, "init", "--exclude-outbound-cidrs", "10.0.0.0/99"])
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("prefix length"), "{stderr}");
}
