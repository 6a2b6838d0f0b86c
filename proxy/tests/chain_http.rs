//! Two sidecars chained on loopback with real mTLS: client -> A (outbound)
//! -> B (inbound) -> app. HTTP/1 and HTTP/2, identity propagation, L7
//! authorization with its 403, and path normalization.
mod support;

use palisade_api::{AuthzAction, MtlsMode};
use support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_through_two_sidecars_carries_the_verified_identity() {
    let app = http_app("app").await;
    let c = chain(app, |_, _| {}).await;
    // A spoofed identity header from the client is stripped; the app sees
    // only the identity B verified.
    let (status, _, body) = http_request(
        c.a.outbound_addr,
        "GET",
        "/hello?x=1",
        "server.back.svc:8080",
        &[(
            "x-palisade-peer-identity",
            "spiffe://cluster.local/ns/admin/sa/root",
        )],
    )
    .await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("path=/hello?x=1"), "{body}");
    assert!(
        body.contains("host=server.back.svc:8080"),
        "Host preserved: {body}"
    );
    assert!(
        body.contains("peer=spiffe://cluster.local/ns/front/sa/client\n"),
        "verified identity only: {body}"
    );
    let m = metrics(&c.b).await;
    assert_eq!(
        metric_value(&m, "palisade_tls_handshakes_total{direction=\"Inbound\"}"),
        1.0,
        "{m}"
    );
}

/// An app answering with every `x-forwarded-client-cert` it received, one
/// per line.
async fn xfcc_app() -> std::net::SocketAddr {
    serve_http(|req: hyper::Request<hyper::body::Incoming>| async move {
        let lines: String = req
            .headers()
            .get_all("x-forwarded-client-cert")
            .iter()
            .map(|v| format!("{}\n", v.to_str().unwrap_or("?")))
            .collect();
        Ok::<_, std::convert::Infallible>(hyper::Response::new(http_body_util::Full::new(
            bytes::Bytes::from(lines),
        )))
    })
    .await
}

/// Istio's sidecars give the app `x-forwarded-client-cert` as Envoy's
/// SANITIZE_SET does: what the caller sent is dropped; over mTLS one element
/// with the receiving sidecar's ID (`By`), the SHA-256 of the client's
/// certificate (`Hash`), its subject and its SPIFFE ID (`URI`). A plaintext
/// caller (PERMISSIVE) gets none, so it cannot pose as anyone to an app
/// that trusts the header.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_app_gets_the_xfcc_header_of_the_verified_peer_only() {
    let app = xfcc_app().await;
    let c = chain(app, |_, b| b.inbound.mtls = MtlsMode::Permissive).await;
    let forged = (
        "x-forwarded-client-cert",
        "By=spiffe://x/y;URI=spiffe://cluster.local/ns/admin/sa/root",
    );
    let (status, _, body) =
        http_request(c.a.outbound_addr, "GET", "/", "server.back", &[forged]).await;
    assert_eq!(status, 200, "{body}");
    let client_leaf = c.a.ctx.tls.store().current().certified_key().cert[0].to_vec();
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(&client_leaf))
    };
    assert_eq!(
        body,
        format!(
            "By=spiffe://cluster.local/ns/back/sa/server;Hash={hash};Subject=\"O=Palisade\";URI=spiffe://cluster.local/ns/front/sa/client\n"
        )
    );
    // Plaintext, straight to B (PERMISSIVE): the forged header is dropped.
    let (status, _, body) =
        http_request(c.b.inbound_addr, "GET", "/", "server.back", &[forged]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, "", "no XFCC for a plaintext caller");
}

/// A real gRPC client (tonic) denied by an AuthorizationPolicy sees the
/// gRPC error Istio's sidecars give it, `PERMISSION_DENIED: RBAC: access
/// denied`, not an unexpected HTTP 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_grpc_client_denied_by_policy_gets_permission_denied() {
    let app = http_app("app").await;
    let c = chain(app, |_, b| {
        b.authorization = vec![authz(
            "back/deny-admin",
            AuthzAction::Deny,
            vec![paths_rule(&["/admin.Admin/*"])],
        )];
    })
    .await;
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{}", c.a.outbound_addr))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut grpc = tonic::client::Grpc::new(channel);
    grpc.ready().await.unwrap();
    let err = grpc
        .unary::<(), (), _>(
            tonic::Request::new(()),
            http::uri::PathAndQuery::from_static("/admin.Admin/Drop"),
            tonic_prost::ProstCodec::default(),
        )
        .await
        .unwrap_err();
    assert_eq!(err.code(), tonic::Code::PermissionDenied, "{err:?}");
    assert_eq!(err.message(), "RBAC: access denied");
    assert_eq!(
        err.metadata().get("x-palisade-denied-by").unwrap(),
        "back/deny-admin#0"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn l7_allow_deny_and_deny_over_allow() {
    let app = http_app("app").await;
    let c = chain(app, |_, b| {
        b.authorization = vec![
            authz(
                "back/allow-public",
                AuthzAction::Allow,
                vec![paths_rule(&["/public/*", "/admin/*"])],
            ),
            authz(
                "back/deny-admin",
                AuthzAction::Deny,
                vec![paths_rule(&["/admin/*"])],
            ),
        ];
    })
    .await;
    let (s, _, body) = http_get(c.a.outbound_addr, "/public/x", "svc").await;
    assert_eq!(s, 200, "ALLOW matched: {body}");
    // "If there are any DENY policies that match the request, deny the
    // request" comes before ALLOW (istio.io, Authorization Policy).
    let (s, h, body) = http_get(c.a.outbound_addr, "/admin/x", "svc").await;
    assert_eq!(s, 403);
    assert_eq!(body, "RBAC: access denied");
    assert_eq!(h.get("x-palisade-denied-by").unwrap(), "back/deny-admin#0");
    // "If there are ALLOW policies and none match, deny."
    let (s, h, _) = http_get(c.a.outbound_addr, "/other", "svc").await;
    assert_eq!(s, 403);
    assert_eq!(
        h.get("x-palisade-denied-by").unwrap(),
        "allow-policies#none-matched"
    );
    let m = metrics(&c.b).await;
    assert_eq!(
        metric_value(
            &m,
            "palisade_denials_total{direction=\"Inbound\",layer=\"Authz\"}"
        ),
        2.0,
        "{m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "palisade_requests_total{direction=\"Inbound\",status=\"403\",peer=\"spiffe://cluster.local/ns/front/sa/client\"}"
        ),
        2.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn principals_are_the_verified_spiffe_ids() {
    let app = http_app("app").await;
    let c = chain(app, |_, b| {
        b.authorization = vec![authz(
            "back/only-other",
            AuthzAction::Allow,
            vec![principals_rule(&["cluster.local/ns/other/sa/x"])],
        )];
    })
    .await;
    let (s, _, _) = http_get(c.a.outbound_addr, "/", "svc").await;
    assert_eq!(s, 403);
    let mut b = c.b_config.clone();
    b.authorization = vec![authz(
        "back/only-client",
        AuthzAction::Allow,
        vec![principals_rule(&["cluster.local/ns/front/sa/client"])],
    )];
    write_config(&c.b_config_path, &b);
    wait_for_version(&c.b, &b).await;
    let (s, _, _) = http_get(c.a.outbound_addr, "/", "svc").await;
    assert_eq!(s, 200);
}

pub async fn wait_for_version(p: &palisade_proxy::app::Proxy, cfg: &palisade_api::ProxyConfig) {
    let want = cfg.compute_version();
    for _ in 0..100 {
        if p.ctx.state.load().version == want {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    panic!("config version {want} never loaded");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_tricks_are_decided_on_the_normalized_path() {
    let app = http_app("app").await;
    let c = chain(app, |_, b| {
        b.authorization = vec![authz(
            "back/deny-admin",
            AuthzAction::Deny,
            vec![paths_rule(&["/admin", "/admin/*"])],
        )];
    })
    .await;
    let to = c.a.outbound_addr;
    // Dot segments are removed (RFC 3986 5.2.4) before matching.
    assert_eq!(http_get(to, "/public/../admin", "svc").await.0, 403);
    // MERGE_SLASHES (the mesh default here): `//admin` is `/admin`.
    assert_eq!(http_get(to, "//admin", "svc").await.0, 403);
    // `%2e` is an unreserved character, decoded once, so `/%2e%2e/admin` is `/admin`.
    assert_eq!(http_get(to, "/%2e%2e/admin", "svc").await.0, 403);
    // `%2F` stays encoded outside DECODE_AND_MERGE_SLASHES: `/admin%2Fx` is
    // one segment, not under `/admin/`, and not `/admin`.
    let (s, _, body) = http_get(to, "/admin%2Fx", "svc").await;
    assert_eq!(s, 200, "{body}");
    // Case is preserved, as in Istio: `/Admin` is not `/admin`.
    assert_eq!(http_get(to, "/Admin", "svc").await.0, 200);
    // A path that cannot be normalized safely is refused with 400.
    assert_eq!(http_get(to, "/admin%00", "svc").await.0, 400);
    // The app receives the normalized path.
    let (s, _, body) = http_get(to, "/public/./a//b", "svc").await;
    assert_eq!(s, 200);
    assert!(body.contains("path=/public/a/b"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_by_header_can_be_turned_off() {
    let app = http_app("app").await;
    let c = chain_with(
        app,
        palisade_proxy::ctx::Options {
            denied_by_header: false,
            ..opts()
        },
        |_, b| {
            b.authorization = vec![authz(
                "back/deny-all",
                AuthzAction::Deny,
                vec![paths_rule(&["*"])],
            )]
        },
    )
    .await;
    let (s, h, body) = http_get(c.a.outbound_addr, "/", "svc").await;
    assert_eq!((s, body.as_str()), (403, "RBAC: access denied"));
    assert!(h.get("x-palisade-denied-by").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn h2_prior_knowledge_through_the_chain() {
    let app = http_app("app").await;
    let c = chain(app, |_, _| {}).await;
    let mut sender = h2c_client(c.a.outbound_addr).await;
    for i in 0..3 {
        let req = hyper::Request::builder()
            .uri(format!("http://server.back:80/h2/{i}"))
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap();
        let resp = sender.send_request(req).await.unwrap();
        assert_eq!(resp.status(), 200);
        use http_body_util::BodyExt;
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let body = String::from_utf8_lossy(&body);
        assert!(body.contains(&format!("path=/h2/{i}")), "{body}");
        assert!(body.contains("host=server.back:80"), "{body}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_per_request_reuses_the_pooled_mtls_connection() {
    let app = http_app("app").await;
    let c = chain(app, |_, _| {}).await;
    for i in 0..20 {
        let (s, _, _) = http_get(c.a.outbound_addr, &format!("/n/{i}"), "svc").await;
        assert_eq!(s, 200);
    }
    let m = metrics(&c.a).await;
    assert_eq!(
        metric_value(&m, "palisade_tls_handshakes_total{direction=\"Outbound\"}"),
        1.0,
        "20 client connections, one mTLS handshake: {m}"
    );
    assert_eq!(
        metric_value(
            &m,
            "palisade_requests_total{direction=\"Outbound\",status=\"200\",peer=\"spiffe://cluster.local/ns/back/sa/server\"}"
        ),
        20.0
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_through_the_chain() {
    let app = http_app("app").await;
    let c = chain(app, |_, b| b.inbound.mtls = MtlsMode::Strict).await;
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "-H", "Host: web.back"])
        .arg(format!("http://{}/curl", c.a.outbound_addr))
        .output()
        .await
        .expect("curl is installed");
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        body.contains("path=/curl host=web.back peer=spiffe://cluster.local/ns/front/sa/client"),
        "{body}"
    );
    let out = tokio::process::Command::new("curl")
        .args(["-sS", "--max-time", "10", "--http2-prior-knowledge"])
        .arg(format!("http://{}/curl2", c.a.outbound_addr))
        .output()
        .await
        .unwrap();
    let body = String::from_utf8_lossy(&out.stdout);
    assert!(body.contains("path=/curl2"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_upgrade_passes_through_after_authorization() {
    let app = upgrade_app().await;
    let c = chain(app, |_, b| {
        b.authorization = vec![authz(
            "back/allow-ws",
            AuthzAction::Allow,
            vec![paths_rule(&["/ws"])],
        )];
    })
    .await;
    let echoed = upgrade_roundtrip(c.a.outbound_addr, b"hello over ws")
        .await
        .unwrap();
    assert_eq!(echoed, b"hello over ws");

    // The same upgrade to a path the policy does not allow gets the 403.
    let mut b = c.b_config.clone();
    b.authorization = vec![authz(
        "back/allow-other",
        AuthzAction::Allow,
        vec![paths_rule(&["/other"])],
    )];
    write_config(&c.b_config_path, &b);
    wait_for_version(&c.b, &b).await;
    let err = upgrade_roundtrip(c.a.outbound_addr, b"x")
        .await
        .unwrap_err();
    assert!(err.starts_with("HTTP/1.1 403"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http1_mesh_protocol_also_pools_mtls_connections() {
    let app = http_app("app").await;
    let a_opts = palisade_proxy::ctx::Options {
        mesh_h2: false,
        ..opts()
    };
    let c = chain_full(app, a_opts, opts(), |_, _| {}).await;
    for i in 0..20 {
        let (s, _, body) = http_get(c.a.outbound_addr, &format!("/h1/{i}"), "svc.back").await;
        assert_eq!(s, 200);
        assert!(
            body.contains(&format!(
                "path=/h1/{i} host=svc.back peer=spiffe://cluster.local/ns/front/sa/client"
            )),
            "{body}"
        );
    }
    let m = metrics(&c.a).await;
    assert_eq!(
        metric_value(&m, "palisade_tls_handshakes_total{direction=\"Outbound\"}"),
        1.0,
        "{m}"
    );
}
