//! The whole mesh path in network namespaces, with the real binary (run as
//! root; never skipped): an unmodified `curl` in a client pod and a plain
//! `python3 -m http.server` in a server pod, each beside its
//! `palisade-proxy` running as UID 1337 with capture installed by
//! `palisade-proxy init`. Configs are hand-written ProxyConfig YAML.
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Output;
use std::time::{Duration, Instant};

use palisade_e2e::capture::{contains, payload_to_port};
use palisade_e2e::require::BASE_TOOLS;
use palisade_e2e::{Capture, MeshCa, Pod, Sidecar, TestNet, require_root, require_tools};

const BIN: &str = env!("CARGO_BIN_EXE_palisade-proxy");
const TD: &str = "cluster.local";
const BODY: &str = "hello from the server pod\n";

fn net(test: &str) -> TestNet {
    require_root();
    require_tools(BASE_TOOLS);
    require_tools(&[
        ("curl", "curl"),
        ("python3", "python3"),
        ("tcpdump", "tcpdump"),
    ]);
    TestNet::new(test).unwrap()
}

fn id(ns: &str, sa: &str) -> String {
    format!("spiffe://{TD}/ns/{ns}/sa/{sa}")
}

/// One pod's ProxyConfig. `ingress`/`egress` are DirectionPolicy YAML
/// (flow style); `peers` are (ip, workload, identity, mode).
fn proxy_config(
    version: &str,
    (ns, name): (&str, &str),
    me: &Pod,
    mtls: &str,
    ingress: &str,
    egress: &str,
    peers: &[(&Pod, &str, String, &str)],
) -> String {
    let mut peer_yaml = String::new();
    for (pod, workload, identity, mode) in peers {
        for ip in [pod.ip.to_string(), pod.ip6.to_string()] {
            peer_yaml.push_str(&format!(
                "  - {{ ip: \"{ip}\", workload: {workload}, identity: \"{identity}\", mtls: {mode} }}\n"
            ));
        }
    }
    if peer_yaml.is_empty() {
        peer_yaml.push_str("  []\n");
    }
    format!(
        r#"version: "{version}"
mesh: {{ trustDomain: {TD} }}
workload:
  namespace: {ns}
  name: {name}
  serviceAccount: {name}
  identity: "{identity}"
  ips: ["{ip}", "{ip6}"]
  ports: [{{ port: 8080, protocol: TCP }}, {{ port: 9090, protocol: TCP }}]
inbound:
  mtls: {mtls}
  ingress: {ingress}
outbound:
  egress: {egress}
peers:
{peer_yaml}"#,
        identity = id(ns, name),
        ip = me.ip,
        ip6 = me.ip6,
    )
}

const OPEN: &str = "{ isolated: false }";

/// A plain HTTP server on `port` in `pod` (IPv4 and IPv6), serving `BODY`
/// at /hello.txt.
fn http_server(pod: &Pod, port: u16, dir: &std::path::Path) {
    std::fs::write(dir.join("hello.txt"), BODY).unwrap();
    let mut cmd = pod.command("python3");
    // `--bind ::`: dual-stack, so the IPv6 test has an app to reach.
    cmd.args([
        "-m",
        "http.server",
        &port.to_string(),
        "--bind",
        "::",
        "--directory",
    ])
    .arg(dir)
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    pod.spawn(cmd).unwrap();
    pod.wait_for_tcp(&pod.ip.to_string(), port, Duration::from_secs(10))
        .unwrap();
}

/// `curl` from `pod` to `url`: (exit status, HTTP code, body).
fn curl(pod: &Pod, url: &str) -> (Output, String, String) {
    let out = pod
        .exec(&[
            "curl",
            "-sS",
            "-m",
            "5",
            "-o",
            "-",
            "-w",
            "\n%{http_code}",
            url,
        ])
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", &text));
    (out.clone(), code.to_string(), body.to_string())
}

fn assert_ok(pod: &Pod, url: &str, sidecars: &[&Sidecar]) {
    let (out, code, body) = curl(pod, url);
    let logs: Vec<String> = sidecars.iter().map(|s| s.log_text()).collect();
    assert!(
        out.status.success() && code == "200" && body.contains(BODY.trim()),
        "curl {url} from {}: {:?} code {code} body {body:?} stderr {}\nsidecar logs:\n{}",
        pod.ns,
        out.status,
        String::from_utf8_lossy(&out.stderr),
        logs.join("\n---\n")
    );
}

/// The connection is refused or closed: curl fails without any HTTP status.
fn assert_closed(pod: &Pod, url: &str) {
    let (out, code, body) = curl(pod, url);
    assert!(
        !out.status.success() && code == "000",
        "curl {url} from {} should have been cut off, got {:?} code {code} body {body:?}",
        pod.ns,
        out.status
    );
}

/// Denied somewhere past the client's sidecar: no 200 and no body (the
/// connection is cut, or the client's sidecar answers with a 5xx because
/// the server's sidecar closed the pooled upstream).
fn assert_denied(pod: &Pod, url: &str) {
    let (out, code, body) = curl(pod, url);
    assert!(
        code != "200" && !body.contains(BODY.trim()),
        "curl {url} from {} should have been denied, got {:?} code {code} body {body:?}",
        pod.ns,
        out.status
    );
}

struct Mesh {
    _ca: MeshCa,
    client: Pod,
    server: Pod,
    outsider: Pod,
    client_cfg: PathBuf,
    server_cfg: PathBuf,
    client_sidecar: Sidecar,
    server_sidecar: Sidecar,
    www: tempfile::TempDir,
    net: TestNet,
}

/// client (x/client) and server (y/server) meshed, each with a sidecar;
/// outsider has none. `server_mode` is the server's mTLS mode.
fn mesh(test: &str, server_mode: &str, server_ingress: &str, client_egress: &str) -> Mesh {
    mesh_with(test, server_mode, server_ingress, client_egress, &[])
}

/// [`mesh`] with extra `palisade-proxy run` flags for both sidecars.
fn mesh_with(
    test: &str,
    server_mode: &str,
    server_ingress: &str,
    client_egress: &str,
    extra: &[&str],
) -> Mesh {
    let net = net(test);
    let client = net.pod("client").unwrap();
    let server = net.pod("server").unwrap();
    let outsider = net.pod("outsider").unwrap();
    let ca = MeshCa::new(TD).unwrap();
    let www = tempfile::tempdir().unwrap();
    http_server(&server, 8080, www.path());
    http_server(&server, 9090, www.path());
    http_server(&outsider, 8080, www.path());

    let server_peer = (&server, "y/server", id("y", "server"), server_mode);
    let client_peer = (&client, "x/client", id("x", "client"), "STRICT");
    let client_cfg = ca
        .write(
            "client.yaml",
            &proxy_config(
                "c1",
                ("x", "client"),
                &client,
                "STRICT",
                OPEN,
                client_egress,
                &[server_peer],
            ),
        )
        .unwrap();
    let server_cfg = ca
        .write(
            "server.yaml",
            &proxy_config(
                "s1",
                ("y", "server"),
                &server,
                server_mode,
                server_ingress,
                OPEN,
                &[client_peer],
            ),
        )
        .unwrap();
    let server_svid = ca.svid_dir("server", &id("y", "server")).unwrap();
    let client_svid = ca.svid_dir("client", &id("x", "client")).unwrap();
    let server_sidecar = Sidecar::start(&server, BIN, &server_cfg, &server_svid, extra).unwrap();
    let client_sidecar = Sidecar::start(&client, BIN, &client_cfg, &client_svid, extra).unwrap();
    Mesh {
        _ca: ca,
        client,
        server,
        outsider,
        client_cfg,
        server_cfg,
        client_sidecar,
        server_sidecar,
        www,
        net,
    }
}

/// Rewrites a config file and waits until `check` passes (the sidecar polls
/// its config every 200ms).
fn reload_until(path: &PathBuf, contents: &str, mut check: impl FnMut() -> bool) -> bool {
    std::fs::write(path, contents).unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if check() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    false
}

#[test]
fn curl_through_two_sidecars_is_mtls_on_the_wire() {
    let m = mesh("meshwire", "STRICT", OPEN, OPEN);
    let wire = Capture::start(&m.server, "tcp port 8080").unwrap();
    let url = format!("http://{}:8080/hello.txt", m.server.ip);
    assert_ok(&m.client, &url, &[&m.client_sidecar, &m.server_sidecar]);
    let segments = wire.stop().unwrap();
    let to_server = payload_to_port(&segments, 8080);
    assert!(!to_server.is_empty(), "nothing captured between the pods");
    // A TLS handshake record (content type 22, version 3.x) opens the stream,
    // and the request line never appears in clear.
    assert_eq!(
        &to_server[..2],
        &[0x16, 0x03],
        "not TLS: {:?}",
        &to_server[..to_server.len().min(32)]
    );
    assert!(
        !contains(&to_server, b"GET /hello.txt"),
        "plaintext HTTP on the wire"
    );
    let from_server: Vec<u8> = segments
        .iter()
        .filter(|s| s.src.port() == 8080)
        .flat_map(|s| s.payload.clone())
        .collect();
    assert!(
        !contains(&from_server, BODY.trim().as_bytes()),
        "plaintext body on the wire"
    );
    drop(m.net);
}

#[test]
fn strict_refuses_plaintext_permissive_admits() {
    let m = mesh("meshmode", "STRICT", OPEN, OPEN);
    let url = format!("http://{}:8080/hello.txt", m.server.ip);
    // The outsider has no sidecar: plaintext to a STRICT port is refused.
    assert_closed(&m.outsider, &url);
    // The meshed client still gets through.
    assert_ok(&m.client, &url, &[&m.client_sidecar, &m.server_sidecar]);
    // PERMISSIVE: "Connection can be either plaintext or mTLS tunnel"
    // (istio.io, PeerAuthentication): the outsider is let in.
    let client_peer = (&m.client, "x/client", id("x", "client"), "STRICT");
    let permissive = proxy_config(
        "s2",
        ("y", "server"),
        &m.server,
        "PERMISSIVE",
        OPEN,
        OPEN,
        &[client_peer],
    );
    let admitted = reload_until(&m.server_cfg, &permissive, || {
        curl(&m.outsider, &url).1 == "200"
    });
    assert!(
        admitted,
        "PERMISSIVE did not admit plaintext: {}",
        m.server_sidecar.log_text()
    );
    assert_ok(&m.client, &url, &[&m.client_sidecar, &m.server_sidecar]);
    // The control for the TLS-on-the-wire test: the same capture does see
    // the outsider's plaintext request.
    let wire = Capture::start(&m.server, "tcp port 8080").unwrap();
    let (_, code, _) = curl(&m.outsider, &url);
    assert_eq!(code, "200");
    let seen = payload_to_port(&wire.stop().unwrap(), 8080);
    assert!(
        contains(&seen, b"GET /hello.txt"),
        "plaintext not seen on the wire"
    );
}

#[test]
fn network_policy_denials_close_the_connection() {
    // Server ingress: only the client, only port 8080 (PERMISSIVE, so the
    // outsider's plaintext reaches the L4 check instead of the mTLS one).
    let ingress = r#"{ isolated: true, policies: [y/allow-client], rules: [
        { policy: y/allow-client, rule: 0,
          peers: [{ description: "podSelector app=client", nets: ["198.18.0.2/32"] }],
          ports: [{ protocol: TCP, port: 8080, endPort: 8080 }] } ] }"#;
    // Client egress: only the server, port 8080 and 9090.
    let egress = r#"{ isolated: true, policies: [x/to-server], rules: [
        { policy: x/to-server, rule: 0,
          peers: [{ description: "podSelector app=server", nets: ["198.18.0.3/32"] }],
          ports: [{ protocol: TCP, port: 8080, endPort: 8080 }, { protocol: TCP, port: 9090, endPort: 9090 }] } ] }"#;
    let m = mesh("meshnetpol", "PERMISSIVE", ingress, egress);
    assert_eq!(m.client.ip, Ipv4Addr::new(198, 18, 0, 2));
    assert_eq!(m.server.ip, Ipv4Addr::new(198, 18, 0, 3));
    let server_8080 = format!("http://{}:8080/hello.txt", m.server.ip);
    let server_9090 = format!("http://{}:9090/hello.txt", m.server.ip);
    let outsider_8080 = format!("http://{}:8080/hello.txt", m.outsider.ip);

    // Allowed by both sides.
    assert_ok(
        &m.client,
        &server_8080,
        &[&m.client_sidecar, &m.server_sidecar],
    );
    // Egress allows 9090 but the server's ingress does not: "both the egress
    // policy on the source pod and the ingress policy on the destination pod
    // need to allow the connection" (kubernetes.io, Network Policies).
    assert_denied(&m.client, &server_9090);
    // Egress denial: the outsider is not in the client's egress rules.
    assert_closed(&m.client, &outsider_8080);
    // Ingress denial: the outsider is not in the server's ingress rules.
    assert_closed(&m.outsider, &server_8080);
    // Sanity: without the client's sidecar policy the outsider is reachable.
    assert_ok(&m.server, &outsider_8080, &[&m.server_sidecar]);
    let _ = (&m.client_cfg, &m.net);
}

#[test]
fn udp_dns_allowed_by_sidecar_netfilter() {
    use palisade_e2e::udp::{bind, delivered};
    let net = net("meshudp");
    let app = net.pod("app").unwrap();
    let dns = net.pod("dns").unwrap();
    let other = net.pod("other").unwrap();
    let ca = MeshCa::new(TD).unwrap();
    // app: default-deny both ways, plus "allow DNS": UDP 53 to the DNS pod.
    let app_egress = format!(
        r#"{{ isolated: true, policies: [x/default-deny, x/allow-dns], rules: [
            {{ policy: x/allow-dns, rule: 0,
               peers: [{{ description: "podSelector k8s-app=dns", nets: ["{}/32"] }}],
               ports: [{{ protocol: UDP, port: 53, endPort: 53 }}] }} ] }}"#,
        dns.ip
    );
    let app_ingress = "{ isolated: true, policies: [x/default-deny] }";
    // dns: ingress allows UDP 53 from the app pod only.
    let dns_ingress = format!(
        r#"{{ isolated: true, policies: [kube-system/dns], rules: [
            {{ policy: kube-system/dns, rule: 0,
               peers: [{{ description: "namespaceSelector x", nets: ["{}/32"] }}],
               ports: [{{ protocol: UDP, port: 53, endPort: 53 }}] }} ] }}"#,
        app.ip
    );
    let app_cfg = ca
        .write(
            "app.yaml",
            &proxy_config(
                "a1",
                ("x", "app"),
                &app,
                "PERMISSIVE",
                app_ingress,
                &app_egress,
                &[],
            ),
        )
        .unwrap();
    let dns_cfg = ca
        .write(
            "dns.yaml",
            &proxy_config(
                "d1",
                ("kube-system", "dns"),
                &dns,
                "PERMISSIVE",
                &dns_ingress,
                OPEN,
                &[],
            ),
        )
        .unwrap();
    let app_svid = ca.svid_dir("app", &id("x", "app")).unwrap();
    let dns_svid = ca.svid_dir("dns", &id("kube-system", "dns")).unwrap();
    let app_sidecar =
        Sidecar::start_with(&app, BIN, &app_cfg, &app_svid, &["--netfilter"], true).unwrap();
    let dns_sidecar =
        Sidecar::start_with(&dns, BIN, &dns_cfg, &dns_svid, &["--netfilter"], true).unwrap();
    for (pod, sidecar) in [(&app, &app_sidecar), (&dns, &dns_sidecar)] {
        let deadline = Instant::now() + Duration::from_secs(5);
        while pod
            .exec(&["nft", "list", "table", "inet", "palisade"])
            .map(|o| !o.status.success())
            .unwrap_or(true)
        {
            assert!(
                Instant::now() < deadline,
                "no nftables table in {}: {}",
                pod.ns,
                sidecar.log_text()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    let sock = |pod: &Pod, port: u16| bind(pod, (pod.ip, port).into()).unwrap();
    let app_sock = sock(&app, 5353);
    let dns53 = sock(&dns, 53);
    let dns54 = sock(&dns, 54);
    let other53 = sock(&other, 53);
    let other_sock = sock(&other, 6000);
    let to = |pod: &Pod, port: u16| (pod.ip, port).into();

    // Egress: DNS to the DNS pod passes, another port or pod does not.
    assert!(delivered(&app_sock, to(&dns, 53), &dns53, b"query").unwrap());
    assert!(!delivered(&app_sock, to(&dns, 54), &dns54, b"port 54").unwrap());
    assert!(!delivered(&app_sock, to(&other, 53), &other53, b"other pod").unwrap());
    // The reply comes back although the app's ingress is default-deny.
    assert!(delivered(&dns53, to(&app, 5353), &app_sock, b"answer").unwrap());
    // Ingress: the DNS pod takes 53 from the app only; the app takes nothing new.
    assert!(!delivered(&other_sock, to(&dns, 53), &dns53, b"not the app").unwrap());
    assert!(!delivered(&other_sock, to(&app, 5353), &app_sock, b"unsolicited").unwrap());
}

/// IPv6 through both sidecars: `IP6T_SO_ORIGINAL_DST` on both hops. With
/// ip6tables, OUTPUT REDIRECT goes to `::1` and PREROUTING REDIRECT to the
/// interface's address, so both listeners must be dual-stack (`[::]`); the
/// capture rules send remote connections to :15001 to the inbound path.
#[test]
fn ipv6_curl_through_two_sidecars() {
    let dual_stack = [
        "--outbound-listen",
        "[::]:15001",
        "--inbound-listen",
        "[::]:15006",
    ];
    let m = mesh_with("meshv6", "STRICT", OPEN, OPEN, &dual_stack);
    let wire = Capture::start(&m.server, "tcp port 8080").unwrap();
    let url6 = format!("http://[{}]:8080/hello.txt", m.server.ip6);
    assert_ok(&m.client, &url6, &[&m.client_sidecar, &m.server_sidecar]);
    let to_server = payload_to_port(&wire.stop().unwrap(), 8080);
    assert_eq!(
        to_server.get(..2),
        Some(&[0x16, 0x03][..]),
        "not TLS over IPv6"
    );
    assert!(!contains(&to_server, b"GET /hello.txt"));
    // IPv4 still works on the dual-stack listeners.
    let url4 = format!("http://{}:8080/hello.txt", m.server.ip);
    assert_ok(&m.client, &url4, &[&m.client_sidecar, &m.server_sidecar]);
    // STRICT over IPv6 as well.
    assert_closed(&m.outsider, &url6);
}

/// The server's sidecar config of [`l7_authorization_h2_and_path_tricks`]:
/// MERGE_SLASHES normalization; the client may GET `/hello.txt` and
/// `/public/*`, but a DENY on `/public/private*` wins over that ALLOW.
fn l7_server_config(m: &Mesh) -> String {
    let client_peer = (&m.client, "x/client", id("x", "client"), "STRICT");
    let base = proxy_config(
        "s-l7",
        ("y", "server"),
        &m.server,
        "STRICT",
        OPEN,
        OPEN,
        &[client_peer],
    );
    let base = base.replace(
        &format!("mesh: {{ trustDomain: {TD} }}"),
        &format!("mesh: {{ trustDomain: {TD}, pathNormalization: MERGE_SLASHES }}"),
    );
    format!(
        r#"{base}authorization:
  - name: y/allow-client
    action: ALLOW
    rules:
      - from: [{{ principals: ["{TD}/ns/x/sa/client"] }}]
        to: [{{ methods: [GET, HEAD], paths: ["/hello.txt", "/public/*"] }}]
  - name: y/deny-private
    action: DENY
    rules:
      - to: [{{ paths: ["/public/private*"] }}]
"#
    )
}

/// `curl` from `pod` with extra arguments: (HTTP code, HTTP version,
/// response headers).
fn curl_code(pod: &Pod, extra: &[&str], url: &str) -> (String, String, String) {
    let mut args = vec!["curl", "-sS", "-m", "5", "-o", "/dev/null", "-D", "-"];
    args.extend_from_slice(extra);
    args.extend_from_slice(&["-w", "\n%{http_code} %{http_version}", url]);
    let out = pod.exec(&args).unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (headers, last) = text.rsplit_once('\n').unwrap_or(("", &text));
    let (code, version) = last.split_once(' ').unwrap_or((last, ""));
    (
        code.to_string(),
        version.to_string(),
        headers.to_lowercase(),
    )
}

/// L7 authorization under real capture: an unmodified `curl` (HTTP/1.1
/// and HTTP/2 prior knowledge) and `h2load` in the client pod, two
/// sidecars, `python3 -m http.server` as the app. ALLOW, no match, and
/// DENY over ALLOW; each path trick of the issue decided on the normalized
/// path (Istio's MERGE_SLASHES: RFC 3986 normalization, then `//` merged).
#[test]
fn l7_authorization_h2_and_path_tricks() {
    require_tools(&[("h2load", "nghttp2-client")]);
    let m = mesh_with("meshl7", "STRICT", OPEN, OPEN, &["--access-log"]);
    for (path, body) in [
        ("public/index.txt", "public page\n"),
        ("public/private.txt", "private page\n"),
        ("admin/secret.txt", "secret\n"),
        ("Admin/secret.txt", "secret\n"),
        ("admin/x", "secret\n"),
    ] {
        let file = m.www.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, body).unwrap();
    }
    let base = format!("http://{}:8080", m.server.ip);
    let ok_before = curl_code(&m.client, &[], &format!("{base}/admin/secret.txt")).0;
    assert_eq!(ok_before, "200", "no authorization yet: the app answers");
    let cfg = l7_server_config(&m);
    let enforced = reload_until(&m.server_cfg, &cfg, || {
        curl_code(&m.client, &[], &format!("{base}/admin/secret.txt")).0 == "403"
    });
    assert!(
        enforced,
        "the L7 policy was not applied: {}",
        m.server_sidecar.log_text()
    );

    let h1: &[&str] = &["--path-as-is"];
    let h2: &[&str] = &["--path-as-is", "--http2-prior-knowledge"];
    for proto in [h1, h2] {
        let want_version = if proto.len() == 2 { "2" } else { "1.1" };
        let cases = [
            // ALLOW matches.
            ("/hello.txt", "200"),
            ("/public/index.txt", "200"),
            // No ALLOW matches: denied.
            ("/admin/secret.txt", "403"),
            // DENY wins over the ALLOW that also matches.
            ("/public/private.txt", "403"),
            // Path tricks, decided on the normalized path.
            ("/public/../admin/secret.txt", "403"),
            ("//admin/secret.txt", "403"),
            ("/%2e%2e/admin/secret.txt", "403"),
            ("/admin%2Fx", "403"),
            ("/Admin/secret.txt", "403"),
            ("/public//private.txt", "403"),
            ("/public/%70rivate.txt", "403"),
            ("/public/./private.txt", "403"),
            // Normalization also lets equivalent spellings of an allowed
            // path through, and the app is sent the normalized path.
            ("/public//index.txt", "200"),
            ("/public/./index.txt", "200"),
            ("/x/../hello.txt", "200"),
            // A path that cannot be normalized safely is refused.
            ("/public/%00index.txt", "400"),
        ];
        for (path, want) in cases {
            let (code, version, headers) = curl_code(&m.client, proto, &format!("{base}{path}"));
            assert_eq!(
                (code.as_str(), version.as_str()),
                (want, want_version),
                "{proto:?} GET {path}\nheaders:\n{headers}\nserver sidecar:\n{}",
                m.server_sidecar.log_text()
            );
            if want == "403" {
                assert!(
                    headers.contains("x-palisade-denied-by: "),
                    "a 403 names the deciding policy: {headers}"
                );
            }
        }
    }
    // The denial says which policy decided.
    let (_, _, headers) = curl_code(&m.client, h2, &format!("{base}/public/private.txt"));
    assert!(
        headers.contains("x-palisade-denied-by: y/deny-private#0"),
        "{headers}"
    );
    let (_, _, headers) = curl_code(&m.client, h1, &format!("{base}/admin/secret.txt"));
    assert!(
        headers.contains("x-palisade-denied-by: allow-policies#none-matched"),
        "{headers}"
    );

    // Every denial is one JSON line naming layer, policy, rule, peer and
    // request; the access log (switched on) has every request.
    let lines: Vec<serde_json::Value> = m
        .server_sidecar
        .log_text()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let find = |target: &str, pred: &dyn Fn(&serde_json::Value) -> bool| {
        lines
            .iter()
            .find(|v| v["target"] == target && pred(&v["fields"]))
            .cloned()
            .unwrap_or_else(|| panic!("no {target} line as expected in {lines:#?}"))
    };
    let client_id = id("x", "client");
    let deny = find("palisade::deny", &|f| f["path"] == "/public/private.txt");
    assert_eq!(deny["fields"]["layer"], "Authz");
    assert_eq!(deny["fields"]["policy"], "y/deny-private");
    assert_eq!(deny["fields"]["rule"], "0");
    assert_eq!(deny["fields"]["method"], "GET");
    assert_eq!(deny["fields"]["peer_identity"], client_id.as_str());
    let normalized = find("palisade::deny", &|f| f["layer"] == "Normalization");
    assert_eq!(normalized["fields"]["policy"], "path-normalization");
    let access = find("palisade::access", &|f| {
        f["path"] == "/hello.txt" && f["status"] == 200
    });
    assert_eq!(access["fields"]["peer_identity"], client_id.as_str());

    // h2load: HTTP/2 prior knowledge, 4 connections with 8 streams each,
    // bounded at 400 requests; every one must succeed with a 200.
    let out = m
        .client
        .exec(&[
            "h2load",
            "-n",
            "400",
            "-c",
            "4",
            "-m",
            "8",
            "-T",
            "10",
            &format!("{base}/hello.txt"),
        ])
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("Application protocol: h2c")
            && report.contains("400 succeeded, 0 failed, 0 errored, 0 timeout")
            && report.contains("status codes: 400 2xx"),
        "h2load through two sidecars:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // And a denied path under load is denied every time.
    let out = m
        .client
        .exec(&[
            "h2load",
            "-n",
            "100",
            "-c",
            "2",
            "-m",
            "4",
            "-T",
            "10",
            &format!("{base}/admin/secret.txt"),
        ])
        .unwrap();
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        report.contains("status codes: 0 2xx, 0 3xx, 100 4xx, 0 5xx"),
        "h2load to a denied path:\n{report}"
    );
}

/// A destination that never answers a SYN (an address on the pod network
/// with no pod: ARP goes unanswered) costs the caller the sidecar's connect
/// timeout, not the kernel's minutes of SYN retries. An unmeshed
/// destination is passed through at L4, so the caller's connection is
/// reset, and the sidecar logs why.
#[test]
fn connect_timeout_bounds_an_unreachable_destination() {
    let m = mesh_with(
        "meshconnto",
        "STRICT",
        OPEN,
        OPEN,
        &["--connect-timeout", "500ms"],
    );
    let start = Instant::now();
    let out = m
        .client
        .exec(&[
            "curl",
            "-sS",
            "-m",
            "10",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "http://198.18.0.250:8080/",
        ])
        .unwrap();
    let took = start.elapsed();
    let log = m.client_sidecar.log_text();
    assert!(
        !out.status.success() && String::from_utf8_lossy(&out.stdout) == "000",
        "curl should fail without an answer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        took >= Duration::from_millis(450) && took < Duration::from_secs(3),
        "the connect timeout is 500 ms, the request took {took:?}"
    );
    assert!(
        log.contains("198.18.0.250:8080") && log.contains("timed out after 500ms"),
        "the sidecar says why: {log}"
    );
}

/// The sidecar hands allowed requests to the app at the pod's own IP, never
/// at 127.0.0.1: a server bound only to localhost (an admin or debug port)
/// stays out of reach from the network, meshed or not.
#[test]
fn a_localhost_only_server_is_not_exposed_through_the_sidecar() {
    let m = mesh("meshlocal", "STRICT", OPEN, OPEN);
    let secret = tempfile::tempdir().unwrap();
    std::fs::write(secret.path().join("hello.txt"), "localhost only\n").unwrap();
    let mut cmd = m.server.command("python3");
    cmd.args([
        "-m",
        "http.server",
        "9091",
        "--bind",
        "127.0.0.1",
        "--directory",
    ])
    .arg(secret.path())
    .stdout(std::process::Stdio::null())
    .stderr(std::process::Stdio::null());
    m.server.spawn(cmd).unwrap();
    m.server
        .wait_for_tcp("127.0.0.1", 9091, Duration::from_secs(10))
        .unwrap();
    // Inside the pod the localhost server answers.
    let (_, code, body) = curl(&m.server, "http://127.0.0.1:9091/hello.txt");
    assert_eq!((code.as_str(), body.trim()), ("200", "localhost only"));
    // Through both sidecars it does not, while the pod's real port does.
    let (_, code, body) = curl(&m.client, &format!("http://{}:9091/hello.txt", m.server.ip));
    assert!(
        code != "200" && !body.contains("localhost only"),
        "localhost-only server reached through the sidecar: {code} {body}"
    );
    assert_ok(
        &m.client,
        &format!("http://{}:8080/hello.txt", m.server.ip),
        &[&m.client_sidecar, &m.server_sidecar],
    );
}
