//! Connection-level behaviour on loopback: PeerAuthentication modes, L4
//! NetworkPolicy on both sides, the identity/IP binding, opaque and
//! server-first traffic, detection timeouts, Service VIP balancing, and
//! config reloads that close only what the new version denies.
mod support;

use std::time::{Duration, Instant};

use palisade_api::{
    AuthzAction, AuthzCondition, AuthzRule, Endpoint, MtlsMode, Service, ServicePort,
};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn strict_refuses_plaintext_and_permissive_accepts_it() {
    let app = http_app("app").await;
    let c = chain(app, |_, b| b.inbound.mtls = MtlsMode::Strict).await;
    // A plaintext client straight to B's inbound listener.
    let reply = raw_exchange(
        c.b.inbound_addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(
        reply.is_empty(),
        "STRICT must close without answering: {:?}",
        String::from_utf8_lossy(&reply)
    );
    let m = metrics(&c.b).await;
    assert_eq!(
        metric_value(
            &m,
            "palisade_denials_total{direction=\"Inbound\",layer=\"Mtls\"}"
        ),
        1.0,
        "{m}"
    );

    let mut b = c.b_config.clone();
    b.inbound.mtls = MtlsMode::Permissive;
    write_config(&c.b_config_path, &b);
    wait_for_version(&c.b, &b).await;
    let (s, _, body) = http_get(c.b.inbound_addr, "/plain", "x").await;
    assert_eq!(s, 200);
    assert!(
        body.contains("peer=\n"),
        "no identity for plaintext: {body}"
    );
    // Mesh traffic keeps working under PERMISSIVE.
    let (s, _, body) = http_get(c.a.outbound_addr, "/mesh", "x").await;
    assert_eq!(s, 200);
    assert!(
        body.contains("peer=spiffe://cluster.local/ns/front/sa/client"),
        "{body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn port_level_mode_overrides_the_workload_mode() {
    let app = http_app("app").await;
    let c = chain(app, |_, b| {
        b.inbound.mtls = MtlsMode::Strict;
        b.inbound.port_mtls.insert(app.port(), MtlsMode::Disable);
    })
    .await;
    assert_eq!(http_get(c.b.inbound_addr, "/", "x").await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn egress_deny_closes_at_once() {
    let app = http_app("app").await;
    let c = chain(app, |a, _| {
        a.outbound.egress = only_from("front/deny-egress", &["192.0.2.0/24"])
    })
    .await;
    let start = Instant::now();
    let reply = raw_exchange(
        c.a.outbound_addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(reply.is_empty());
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "closed at once, took {:?}",
        start.elapsed()
    );
    let m = metrics(&c.a).await;
    assert_eq!(
        metric_value(
            &m,
            "palisade_denials_total{direction=\"Outbound\",layer=\"Egress\"}"
        ),
        1.0,
        "{m}"
    );
    let m = metrics(&c.b).await;
    assert_eq!(
        metric_value(&m, "palisade_tls_handshakes_total{direction=\"Inbound\"}"),
        0.0,
        "nothing reached B"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingress_deny_closes_the_mesh_connection() {
    let app = http_app("app").await;
    let c = chain(app, |_, b| {
        b.inbound.ingress = only_from("back/only-docs", &["203.0.113.0/24"])
    })
    .await;
    let (s, _, _) = http_get(c.a.outbound_addr, "/", "x").await;
    assert_eq!(s, 502, "A reports the refused upstream");
    let m = metrics(&c.b).await;
    assert!(
        metric_value(
            &m,
            "palisade_denials_total{direction=\"Inbound\",layer=\"Ingress\"}"
        ) >= 1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mtls_identity_must_own_the_source_ip() {
    let app = http_app("app").await;
    // B's peer table says 127.0.0.1 is someone else: the client's valid SVID
    // does not make its address its own.
    let c = chain(app, |_, b| {
        b.peers = vec![peer("127.0.0.1", "other", "impostor-target")]
    })
    .await;
    assert_eq!(http_get(c.a.outbound_addr, "/", "x").await.0, 502);
    let m = metrics(&c.b).await;
    assert_eq!(
        metric_value(
            &m,
            "palisade_denials_total{direction=\"Inbound\",layer=\"Identity\"}"
        ),
        1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opaque_tcp_through_two_sidecars_is_authorized_once() {
    let app = echo_app().await;
    let c = chain(app, |_, _| {}).await;
    let mut tcp = tokio::net::TcpStream::connect(c.a.outbound_addr)
        .await
        .unwrap();
    tcp.write_all(b"\x00\x01binary ping\n").await.unwrap();
    let mut buf = [0u8; 14];
    tokio::time::timeout(Duration::from_secs(5), tcp.read_exact(&mut buf))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&buf, b"\x00\x01binary ping\n");
    // Half-close: our FIN reaches the echo app, whose FIN comes back.
    tcp.shutdown().await.unwrap();
    let mut rest = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut rest))
        .await
        .unwrap()
        .unwrap();
    assert!(rest.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_first_protocol_on_an_opaque_port_does_not_stall() {
    let app = greeter_app().await;
    let mut c = chain(app, |_, b| b.workload.opaque_ports = vec![app.port()]).await;
    // A must know the port is opaque too (its peer table carries it); in
    // explicit mode the endpoint port is B's inbound listener.
    c.a_config.peers[0].opaque_ports = vec![c.b.inbound_addr.port()];
    write_config(&c.a_config_path, &c.a_config);
    wait_for_version(&c.a, &c.a_config).await;

    let start = Instant::now();
    let mut tcp = tokio::net::TcpStream::connect(c.a.outbound_addr)
        .await
        .unwrap();
    let mut greeting = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(1), tcp.read_exact(&mut greeting))
        .await
        .expect("greeting within 1s: no detection stall")
        .unwrap();
    assert_eq!(&greeting, b"220 palisade-test ready\r\n");
    assert!(start.elapsed() < Duration::from_secs(1));
    tcp.write_all(b"EHLO x\r\n").await.unwrap();
    let mut echo = [0u8; 8];
    tcp.read_exact(&mut echo).await.unwrap();
    assert_eq!(&echo, b"EHLO x\r\n");
    let m = metrics(&c.b).await;
    assert_eq!(
        metric_value(&m, "palisade_detect_timeouts_total"),
        0.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detect_timeout_falls_back_to_opaque_and_is_counted_by_port() {
    let app = greeter_app().await;
    let c = chain_with(
        app,
        palisade_proxy::ctx::Options {
            detect_timeout: Duration::from_millis(300),
            ..opts()
        },
        |_, b| b.inbound.mtls = MtlsMode::Permissive,
    )
    .await;
    // A plaintext server-first client on a port not declared opaque: the
    // greeting arrives only after the detection timeout.
    let mut tcp = tokio::net::TcpStream::connect(c.b.inbound_addr)
        .await
        .unwrap();
    let mut greeting = [0u8; 25];
    tokio::time::timeout(Duration::from_secs(3), tcp.read_exact(&mut greeting))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&greeting, b"220 palisade-test ready\r\n");
    let m = metrics(&c.b).await;
    assert_eq!(
        metric_value(
            &m,
            &format!("palisade_detect_timeouts_total{{port=\"{}\"}}", app.port())
        ),
        1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn config_reload_closes_only_the_newly_denied_connections() {
    let app = echo_app().await;
    let c = chain(app, |_, b| b.inbound.mtls = MtlsMode::Permissive).await;
    // Mesh connection from A (source 127.0.0.1) and a plaintext one from
    // 127.0.0.5.
    let mut mesh = tokio::net::TcpStream::connect(c.a.outbound_addr)
        .await
        .unwrap();
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind("127.0.0.5:0".parse().unwrap()).unwrap();
    let mut plain = sock.connect(c.b.inbound_addr).await.unwrap();
    for s in [&mut mesh, &mut plain] {
        s.write_all(b"ping\n").await.unwrap();
        let mut b = [0u8; 5];
        tokio::time::timeout(Duration::from_secs(5), s.read_exact(&mut b))
            .await
            .unwrap()
            .unwrap();
    }
    // New version: ingress only from 127.0.0.1.
    let mut b = c.b_config.clone();
    b.inbound.ingress = only_from("back/only-a", &["127.0.0.1/32"]);
    write_config(&c.b_config_path, &b);
    wait_for_version(&c.b, &b).await;

    let mut buf = [0u8; 8];
    let closed = tokio::time::timeout(Duration::from_secs(3), plain.read(&mut buf))
        .await
        .unwrap();
    assert!(
        matches!(closed, Ok(0) | Err(_)),
        "the newly denied connection is closed"
    );
    mesh.write_all(b"still\n").await.unwrap();
    let mut got = [0u8; 6];
    tokio::time::timeout(Duration::from_secs(3), mesh.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"still\n");
    let m = metrics(&c.b).await;
    assert_eq!(
        metric_value(
            &m,
            "palisade_closed_by_policy_change_total{direction=\"Inbound\"}"
        ),
        1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_config_is_ignored_and_the_last_good_one_stays() {
    let app = http_app("app").await;
    let c = chain(app, |_, _| {}).await;
    let before = c.b.ctx.state.load().version.clone();
    std::fs::write(&c.b_config_path, "mesh: [not, a, config").unwrap();
    let m = {
        let mut m = String::new();
        for _ in 0..40 {
            m = metrics(&c.b).await;
            if metric_value(&m, "palisade_config_reload_errors_total") >= 1.0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        m
    };
    assert!(
        metric_value(&m, "palisade_config_reload_errors_total") >= 1.0,
        "{m}"
    );
    assert_eq!(c.b.ctx.state.load().version, before);
    assert_eq!(http_get(c.a.outbound_addr, "/", "x").await.0, 200);
}

/// Three backend sidecars behind one Service cluster IP, each with its own
/// app answering `app=one`, `app=two` or `app=three`, and the client-side
/// config calling that cluster IP (egress not isolated).
struct VipServers {
    servers: Vec<palisade_proxy::app::Proxy>,
    /// Each server's config file, in the order of `servers`.
    server_paths: Vec<std::path::PathBuf>,
    client_config: palisade_api::ProxyConfig,
    vip: std::net::SocketAddr,
}

async fn vip_servers(ca: &TestCa) -> VipServers {
    let app1 = http_app("one").await;
    let app2 = http_app("two").await;
    let app3 = http_app("three").await;
    let mut servers = Vec::new();
    let mut server_paths = Vec::new();
    for (i, (ip, app)) in [
        ("127.0.0.2", app1),
        ("127.0.0.3", app2),
        ("127.0.0.4", app3),
    ]
    .iter()
    .enumerate()
    {
        let mut cfg = config("back", "server", ip);
        cfg.peers.push(peer("127.0.0.1", "front", "client"));
        let path = ca.write_config(&format!("b{i}.json"), &cfg);
        let svid = ca.svid_dir(&format!("b{i}"), &id("back", "server"));
        server_paths.push(path.clone());
        servers.push(sidecar(
            &path,
            &svid,
            ip,
            palisade_proxy::ctx::Options {
                inbound_app_port: Some(app.port()),
                ..opts()
            },
        ));
    }
    let vip: std::net::SocketAddr = "198.18.100.10:80".parse().unwrap();
    let mut a = config("front", "client", "127.0.0.1");
    for ip in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        a.peers.push(peer(ip, "back", "server"));
    }
    a.services.push(Service {
        name: "back/server".into(),
        cluster_ips: vec![vip.ip()],
        ports: vec![ServicePort {
            name: Some("http".into()),
            port: 80,
            protocol: palisade_api::Protocol::Tcp,
            app_protocol: None,
            endpoints: servers
                .iter()
                .map(|s| Endpoint {
                    ip: s.inbound_addr.ip(),
                    port: s.inbound_addr.port(),
                    workload: "back/server".into(),
                })
                .collect(),
        }],
        external_ips: Vec::new(),
        session_affinity: None,
    });
    VipServers {
        servers,
        server_paths,
        client_config: a,
        vip,
    }
}

/// The calling sidecar with `config`, its outbound listener sending to the
/// Service's cluster IP `vip`; and its config file.
fn vip_client(
    ca: &TestCa,
    config: &palisade_api::ProxyConfig,
    vip: std::net::SocketAddr,
) -> (palisade_proxy::app::Proxy, std::path::PathBuf) {
    let path = ca.write_config("a.json", config);
    let svid = ca.svid_dir("a", &id("front", "client"));
    let proxy = sidecar(
        &path,
        &svid,
        "127.0.0.1",
        palisade_proxy::ctx::Options {
            outbound_to: Some(vip),
            ..opts()
        },
    );
    (proxy, path)
}

/// Which app answered each of `n` requests through `outbound`, counted; a
/// new client connection per request (`http_get`), as kube-proxy balances
/// connections.
async fn answers(
    outbound: std::net::SocketAddr,
    n: usize,
) -> std::collections::BTreeMap<String, usize> {
    let mut seen = std::collections::BTreeMap::new();
    for i in 0..n {
        let (s, _, body) = http_get(outbound, &format!("/{i}"), "server.back").await;
        assert_eq!(s, 200, "{body}");
        let name = body.split_whitespace().next().unwrap().to_string();
        *seen.entry(name).or_insert(0) += 1;
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_vip_spreads_across_endpoints_with_egress_per_endpoint() {
    init_tracing();
    let ca = TestCa::new();
    let VipServers {
        servers: _servers,
        client_config: mut a,
        vip,
        ..
    } = vip_servers(&ca).await;
    // Egress allows the first two endpoints only: the third never gets traffic.
    a.outbound.egress = only_from("front/egress", &["127.0.0.2/32", "127.0.0.3/32"]);
    let (a, a_path) = vip_client(&ca, &a, vip);
    let seen = answers(a.outbound_addr, 40).await;
    assert!(
        !seen.contains_key("app=three"),
        "egress denies endpoint three: {seen:?}"
    );
    assert!(seen.get("app=one").copied().unwrap_or(0) >= 5, "{seen:?}");
    assert!(seen.get("app=two").copied().unwrap_or(0) >= 5, "{seen:?}");

    // With egress allowing none of the endpoints the VIP is refused at once.
    let mut cfg = a.ctx.state.load().config.clone();
    cfg.outbound.egress = only_from("front/egress", &["192.0.2.1/32"]);
    write_config(&a_path, &cfg);
    wait_for_version(&a, &cfg).await;
    let reply = raw_exchange(
        a.outbound_addr,
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(3),
    )
    .await;
    assert!(reply.is_empty());
}

/// Kubernetes conformance (test/e2e/network/service.go): "should have
/// session affinity work for service with type clusterIP" (every request of
/// one client reaches the same pod) and "should be able to switch session
/// affinity for service with type clusterIP" (with None the requests reach
/// several pods; back to ClientIP they stick again). Each request is a new
/// client connection and is balanced on its own, so only the affinity can
/// keep them together.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn service_session_affinity_client_ip_sticks_and_can_be_switched() {
    init_tracing();
    let ca = TestCa::new();
    let VipServers {
        servers: _servers,
        client_config: mut a,
        vip,
        ..
    } = vip_servers(&ca).await;
    a.services[0].session_affinity = Some(palisade_api::SessionAffinity {
        timeout_seconds: 10800,
    });
    let (a, a_path) = vip_client(&ca, &a, vip);
    let sticky = answers(a.outbound_addr, 20).await;
    assert_eq!(sticky.len(), 1, "ClientIP affinity: {sticky:?}");

    let mut cfg = a.ctx.state.load().config.clone();
    cfg.services[0].session_affinity = None;
    write_config(&a_path, &cfg);
    wait_for_version(&a, &cfg).await;
    let spread = answers(a.outbound_addr, 30).await;
    assert!(spread.len() > 1, "affinity None: {spread:?}");

    cfg.services[0].session_affinity = Some(palisade_api::SessionAffinity {
        timeout_seconds: 10800,
    });
    write_config(&a_path, &cfg);
    wait_for_version(&a, &cfg).await;
    let again = answers(a.outbound_addr, 20).await;
    assert_eq!(again.len(), 1, "ClientIP again: {again:?}");
}

/// Each of the two refusing endpoints costs one retry, then it is set
/// aside (for longer than a test's requests take): one or two retries.
async fn assert_one_retry_per_dead_endpoint(p: &palisade_proxy::app::Proxy) {
    let m = metrics(p).await;
    let retries = metric_value(&m, "palisade_endpoint_retries_total");
    assert!((1.0..=2.0).contains(&retries), "{m}");
}

/// An endpoint nothing listens on (its port was free a moment ago).
fn dead_endpoint(ip: &str) -> Endpoint {
    Endpoint {
        ip: ip.parse().unwrap(),
        port: free_port(ip),
        workload: "back/gone".into(),
    }
}

/// A pod deleted while its endpoint is still published (the window of a
/// rolling update): a request that cannot reach it goes to another endpoint
/// of the Service, as Istio's default retries (connect-failure, two retries,
/// another host each time) send it. With two of four endpoints refusing
/// connections, three attempts always find a live one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_to_an_unreachable_endpoint_go_to_another_endpoint_of_the_service() {
    init_tracing();
    let ca = TestCa::new();
    let VipServers {
        servers: _servers,
        client_config: mut a,
        vip,
        ..
    } = vip_servers(&ca).await;
    // Meshed (a peer entry) but gone: the dial is refused.
    for ip in ["127.0.0.5", "127.0.0.6"] {
        a.peers.push(peer(ip, "back", "server"));
        a.services[0].ports[0].endpoints.push(dead_endpoint(ip));
    }
    a.services[0].ports[0].endpoints.remove(2);
    let (a, _) = vip_client(&ca, &a, vip);
    let seen = answers(a.outbound_addr, 30).await;
    assert_eq!(seen.values().sum::<usize>(), 30, "{seen:?}");
    assert_one_retry_per_dead_endpoint(&a).await;
    let m = metrics(&a).await;
    assert_eq!(
        metric_value(
            &m,
            "palisade_requests_total{direction=\"Outbound\",status=\"502\","
        ),
        0.0,
        "{m}"
    );
}

/// The same for connections tunnelled at L4 (here to endpoints without a
/// sidecar): nothing of the client's has gone upstream while the dial
/// fails, so the next endpoint takes the connection unnoticed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_to_an_unreachable_endpoint_go_to_another_endpoint_of_the_service() {
    init_tracing();
    let ca = TestCa::new();
    let app = http_app("live").await;
    let vip: std::net::SocketAddr = "198.18.100.11:80".parse().unwrap();
    let mut a = config("front", "client", "127.0.0.1");
    a.services.push(Service {
        name: "back/plain".into(),
        cluster_ips: vec![vip.ip()],
        ports: vec![ServicePort {
            name: Some("http".into()),
            port: 80,
            protocol: palisade_api::Protocol::Tcp,
            app_protocol: None,
            endpoints: vec![
                dead_endpoint("127.0.0.7"),
                dead_endpoint("127.0.0.8"),
                Endpoint {
                    ip: app.ip(),
                    port: app.port(),
                    workload: "back/plain".into(),
                },
            ],
        }],
        external_ips: Vec::new(),
        session_affinity: None,
    });
    let (a, _) = vip_client(&ca, &a, vip);
    let seen = answers(a.outbound_addr, 20).await;
    assert_eq!(seen.get("app=live"), Some(&20), "{seen:?}");
    assert_one_retry_per_dead_endpoint(&a).await;
}

/// A long-lived client connection (a gRPC channel, an HTTP keep-alive
/// pool) follows the Service's endpoints as the config changes: each
/// request is balanced over the endpoints in force when it arrives. Among
/// them here, two endpoints without a sidecar that refuse connections: a
/// request that picks one goes to another endpoint instead of failing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kept_connection_follows_endpoint_changes_and_skips_unreachable_plain_endpoints() {
    init_tracing();
    let ca = TestCa::new();
    let VipServers {
        servers: _servers,
        client_config: mut a,
        vip,
        ..
    } = vip_servers(&ca).await;
    // Start with the first meshed endpoint only.
    a.services[0].ports[0].endpoints.truncate(1);
    let (a, a_path) = vip_client(&ca, &a, vip);
    let tcp = tokio::net::TcpStream::connect(a.outbound_addr)
        .await
        .unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(tcp))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut ask = async |i: usize| {
        use http_body_util::BodyExt;
        sender.ready().await.unwrap();
        let req = http::Request::get(format!("/{i}"))
            .header("host", "server.back")
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        let status = resp.status();
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body).into_owned();
        assert_eq!(status, 200, "{body}");
        body.split_whitespace().next().unwrap().to_string()
    };
    assert_eq!(ask(0).await, "app=one");
    // New endpoints: two gone (no sidecar, refusing) and a live one without
    // a sidecar; the kept connection must reach the live ones only.
    let plain = http_app("plain").await;
    let mut cfg = a.ctx.state.load().config.clone();
    let eps = &mut cfg.services[0].ports[0].endpoints;
    eps.push(dead_endpoint("127.0.0.9"));
    eps.push(dead_endpoint("127.0.0.10"));
    eps.push(Endpoint {
        ip: plain.ip(),
        port: plain.port(),
        workload: "back/plain".into(),
    });
    write_config(&a_path, &cfg);
    wait_for_version(&a, &cfg).await;
    let mut seen = std::collections::BTreeMap::new();
    for i in 1..=40 {
        *seen.entry(ask(i).await).or_insert(0) += 1;
    }
    assert!(seen.get("app=plain").copied().unwrap_or(0) >= 5, "{seen:?}");
    assert!(seen.get("app=one").copied().unwrap_or(0) >= 5, "{seen:?}");
    assert_one_retry_per_dead_endpoint(&a).await;
}

/// Between sidecars a connection made for a Service carries Istio's server
/// name, `outbound_.PORT_._.NAME.NS.svc.DOMAIN` (`cluster.local` unless the
/// mesh sets its cluster domain), so `connection.sni`
/// conditions match mesh traffic as they do in Istio; a pod called at its
/// own address gets none.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mesh_connections_for_a_service_carry_istios_server_name() {
    init_tracing();
    let ca = TestCa::new();
    let VipServers {
        servers,
        server_paths,
        client_config: a,
        vip,
    } = vip_servers(&ca).await;
    let deny = authz(
        "back/deny-sni",
        AuthzAction::Deny,
        vec![AuthzRule {
            from: vec![],
            to: vec![],
            when: vec![AuthzCondition {
                key: "connection.sni".into(),
                values: vec!["outbound_.80_._.server.back.svc.cluster.local".into()],
                not_values: vec![],
            }],
        }],
    );
    for (s, path) in servers.iter().zip(&server_paths) {
        let mut cfg = s.ctx.state.load().config.clone();
        cfg.authorization = vec![deny.clone()];
        write_config(path, &cfg);
        wait_for_version(s, &cfg).await;
    }
    let (client, client_path) = vip_client(&ca, &a, vip);
    let (status, headers, body) = http_get(client.outbound_addr, "/", "server.back").await;
    assert_eq!(status, 403, "{body}");
    assert_eq!(headers["x-palisade-denied-by"], "back/deny-sni#0");
    // In a cluster whose DNS domain is not cluster.local, the name carries
    // that domain: the condition above no longer matches, one naming the
    // domain does.
    let mut corp = a.clone();
    corp.mesh.cluster_domain = "corp.example".into();
    write_config(&client_path, &corp);
    wait_for_version(&client, &corp).await;
    let (status, _, body) = http_get(client.outbound_addr, "/", "server.back").await;
    assert_eq!(status, 200, "{body}");
    let mut corp_deny = deny.clone();
    corp_deny.rules[0].when[0].values = vec!["outbound_.80_._.server.back.svc.corp.example".into()];
    for (s, path) in servers.iter().zip(&server_paths) {
        let mut cfg = s.ctx.state.load().config.clone();
        cfg.authorization = vec![corp_deny.clone()];
        write_config(path, &cfg);
        wait_for_version(s, &cfg).await;
    }
    let (status, _, body) = http_get(client.outbound_addr, "/", "server.back").await;
    assert_eq!(status, 403, "{body}");
    // The same peer at its own address: no server name, nothing to deny.
    let path = ca.write_config("direct.json", &a);
    let svid = ca.svid_dir("direct", &id("front", "client"));
    let direct = sidecar(
        &path,
        &svid,
        "127.0.0.1",
        palisade_proxy::ctx::Options {
            outbound_to: Some(servers[0].inbound_addr),
            ..opts()
        },
    );
    let (status, _, body) = http_get(direct.outbound_addr, "/", "server.back").await;
    assert_eq!(status, 200, "{body}");
}

pub async fn wait_for_version(p: &palisade_proxy::app::Proxy, cfg: &palisade_api::ProxyConfig) {
    let want = cfg.compute_version();
    for _ in 0..100 {
        if p.ctx.state.load().version == want {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("config version {want} never loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rewritten_svid_dir_applies_to_new_connections_only() {
    let app = echo_app().await;
    let c = chain(app, |_, _| {}).await;
    let mut live = tokio::net::TcpStream::connect(c.a.outbound_addr)
        .await
        .unwrap();
    live.write_all(b"before\n").await.unwrap();
    let mut got = [0u8; 7];
    tokio::time::timeout(Duration::from_secs(5), live.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();

    // B's SVID is rewritten with another identity: A (expecting back/server)
    // must refuse new handshakes, while the live connection stays up.
    c.ca.svid_dir("b", &id("back", "rotated"));
    let start = Instant::now();
    loop {
        let reply = raw_exchange(c.a.outbound_addr, b"new\n", Duration::from_secs(2)).await;
        if reply.is_empty() {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "rotation never applied"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    live.write_all(b"after!\n").await.unwrap();
    tokio::time::timeout(Duration::from_secs(5), live.read_exact(&mut got))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&got, b"after!\n");
}

/// A ClientHello for `server_name`, as a TLS client of the app would send.
fn app_client_hello(server_name: &str) -> Vec<u8> {
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let cfg = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let mut conn = rustls::ClientConnection::new(
        std::sync::Arc::new(cfg),
        server_name.to_owned().try_into().unwrap(),
    )
    .unwrap();
    let mut hello = Vec::new();
    conn.write_tls(&mut hello).unwrap();
    hello
}

/// Istio's `connection.sni` condition: the server name of the app's own
/// TLS, passing through a PERMISSIVE port as opaque bytes, is what a rule
/// matches (Envoy's TLS inspector reads it the same way).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_sni_of_the_apps_own_tls_is_authorized() {
    let app = echo_app().await;
    let c = chain(app, |_, b| {
        b.inbound.mtls = MtlsMode::Permissive;
        b.authorization = vec![authz(
            "back/deny-blocked-sni",
            AuthzAction::Deny,
            vec![AuthzRule {
                from: vec![],
                to: vec![],
                when: vec![AuthzCondition {
                    key: "connection.sni".into(),
                    values: vec!["*.blocked.example".into()],
                    not_values: vec![],
                }],
            }],
        )];
    })
    .await;

    let hello = app_client_hello("api.allowed.example");
    let echoed = raw_exchange(c.b.inbound_addr, &hello, Duration::from_millis(800)).await;
    assert_eq!(
        echoed, hello,
        "an allowed server name passes through to the app untouched"
    );

    let hello = app_client_hello("api.blocked.example");
    let started = Instant::now();
    let echoed = raw_exchange(c.b.inbound_addr, &hello, Duration::from_secs(5)).await;
    assert!(
        echoed.is_empty(),
        "a denied server name never reaches the app"
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "the denial closes at once"
    );
    let m = metrics(&c.b).await;
    assert_eq!(
        metric_value(
            &m,
            "palisade_denials_total{direction=\"Inbound\",layer=\"Authz\"}"
        ),
        1.0,
        "{m}"
    );
}
