//! The control plane refuses what it must: token reuse, a CSR for another
//! identity, a proxy asking for another workload's config, RPCs without an
//! SVID, an expired SVID, renewal as someone else, signing floods. Real TLS
//! handshakes over loopback sockets against a running control plane.
mod control_support;

use std::time::Duration;

use control_support::*;
use palisade_api::stream::{CsrRequest, StatusRequest, WatchRequest};
use tonic::Code;

fn csr_request(workload: &str, id: &str, token: &str) -> CsrRequest {
    CsrRequest {
        csr_pem: csr_for(id),
        token: token.to_owned(),
        workload: workload.to_owned(),
    }
}

#[tokio::test]
async fn bootstrap_with_token_signs_exactly_the_workload_identity() {
    let fx = Fixture::new();
    let srv = fx.start().await;
    let token = fx.raw_token("shop/web-0");
    let resp = client(fx.anonymous_channel(srv.addr).await)
        .sign_csr(csr_request("shop/web-0", &id_of("web"), &token))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(resp.spiffe_id, id_of("web"));
    let chain = palisade_identity::pem::certs(&resp.chain_pem).unwrap();
    let issued = palisade_identity::verify::check_leaf(&chain[0]).unwrap();
    assert_eq!(issued.as_str(), id_of("web"));
    assert!(resp.bundle_pem.contains("BEGIN CERTIFICATE"));
    srv.shutdown().await;
}

#[tokio::test]
async fn token_reuse_is_refused() {
    let fx = Fixture::new();
    let srv = fx.start().await;
    let token = fx.raw_token("shop/web-0");
    let mut c = client(fx.anonymous_channel(srv.addr).await);
    c.sign_csr(csr_request("shop/web-0", &id_of("web"), &token))
        .await
        .unwrap();
    let err = c
        .sign_csr(csr_request("shop/web-0", &id_of("web"), &token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("already used"), "{}", err.message());
    srv.shutdown().await;
}

#[tokio::test]
async fn token_for_another_workload_is_refused() {
    let fx = Fixture::new();
    let srv = fx.start().await;
    let token = fx.raw_token("shop/web-0");
    let err = client(fx.anonymous_channel(srv.addr).await)
        .sign_csr(csr_request("shop/db-0", &id_of("db"), &token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("bound to workload shop/web-0"),
        "{}",
        err.message()
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn csr_for_another_identity_is_refused_and_does_not_burn_the_token() {
    let fx = Fixture::new();
    let srv = fx.start().await;
    let token = fx.raw_token("shop/web-0");
    let mut c = client(fx.anonymous_channel(srv.addr).await);
    // web's token, web's workload, but the CSR asks for db's identity.
    let err = c
        .sign_csr(csr_request("shop/web-0", &id_of("db"), &token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains(&id_of("db")), "{}", err.message());
    // A CSR with an extra SAN is refused too (X509-SVID: exactly one URI SAN).
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["evil.example".to_string()]).unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(
        id_of("web").as_str().try_into().unwrap(),
    ));
    let two_sans = params.serialize_request(&key).unwrap().pem().unwrap();
    let err = c
        .sign_csr(CsrRequest {
            csr_pem: two_sans,
            token: token.clone(),
            workload: "shop/web-0".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("exactly one URI SAN"),
        "{}",
        err.message()
    );
    // The refused attempts did not use the token up.
    c.sign_csr(csr_request("shop/web-0", &id_of("web"), &token))
        .await
        .unwrap();
    srv.shutdown().await;
}

#[tokio::test]
async fn garbage_csr_and_unknown_workload_are_clear_errors() {
    let fx = Fixture::new();
    let srv = fx.start().await;
    let token = fx.raw_token("shop/web-0");
    let mut c = client(fx.anonymous_channel(srv.addr).await);
    let err = c
        .sign_csr(CsrRequest {
            csr_pem:
                "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
                    .into(),
            token: token.clone(),
            workload: "shop/web-0".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    let err = c
        .sign_csr(csr_request("shop/nope-0", &id_of("nope"), &token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::NotFound, "{}", err.message());
    let err = c
        .sign_csr(csr_request("not-a-workload", &id_of("web"), &token))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument, "{}", err.message());
    srv.shutdown().await;
}

#[tokio::test]
async fn rpcs_without_svid_are_refused() {
    let fx = Fixture::new();
    let srv = fx.start().await;
    let mut c = client(fx.anonymous_channel(srv.addr).await);
    let reqs = tokio_stream::iter(vec![WatchRequest::subscribe("shop/web-0", "")]);
    let err = c.watch(reqs).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    let err = c.status(StatusRequest {}).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    // Renewal (no token) without an SVID.
    let err = c
        .sign_csr(csr_request("shop/web-0", &id_of("web"), ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    srv.shutdown().await;
}

#[tokio::test]
async fn watching_another_workloads_config_is_refused() {
    let fx = Fixture::new();
    let srv = fx.start().await;
    let mut c = client(
        fx.svid_channel(srv.addr, &id_of("web"), Duration::from_secs(600))
            .await,
    );
    let reqs = tokio_stream::iter(vec![WatchRequest::subscribe("shop/db-0", "")]);
    let err = c.watch(reqs).await.unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(
        err.message().contains("only watch its own workload"),
        "{}",
        err.message()
    );
    // Its own workload works and delivers its own config.
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    tx.send(WatchRequest::subscribe("shop/web-0", ""))
        .await
        .unwrap();
    let mut stream = c
        .watch(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .unwrap()
        .into_inner();
    let update = stream.message().await.unwrap().unwrap();
    let config = update.decode_for("shop/web-0").unwrap();
    assert_eq!(config.workload.identity, id_of("web"));
    srv.shutdown().await;
}

#[tokio::test]
async fn expired_svid_is_refused_with_a_clear_error() {
    let fx = Fixture::new();
    let srv = fx.start().await;
    let ch = fx
        .svid_channel(srv.addr, &id_of("web"), Duration::from_secs(1))
        .await;
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let err = client(ch)
        .sign_csr(csr_request("shop/web-0", &id_of("web"), ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("expired"), "{}", err.message());
    // A new connection with the expired SVID: still refused by name, not by
    // a bare TLS alert.
    let svid = fx
        .ca
        .issue_keyed(&id_of("web"), Duration::from_secs(1))
        .unwrap();
    tokio::time::sleep(Duration::from_millis(2100)).await;
    let creds = palisade_identity::Credentials::new(
        palisade_identity::pem::certs(&svid.svid.chain_pem).unwrap(),
        palisade_identity::pem::private_key(&svid.key_pem).unwrap(),
        fx.ca.inner().bundle().clone(),
    )
    .unwrap();
    let ch = fx
        .store_channel(srv.addr, &palisade_identity::CredentialStore::new(creds))
        .await;
    let reqs = tokio_stream::iter(vec![WatchRequest::subscribe("shop/web-0", "")]);
    let err = client(ch).watch(reqs).await.unwrap_err();
    assert_eq!(err.code(), Code::Unauthenticated);
    assert!(err.message().contains("expired"), "{}", err.message());
    srv.shutdown().await;
}

#[tokio::test]
async fn renewal_keeps_the_same_identity_and_is_rate_limited() {
    let fx = Fixture::new();
    let mut opts = fx.options();
    opts.sign_limit = palisade_control::server::SignLimit {
        burst: 2,
        refill_every: Duration::from_secs(60),
    };
    let srv = fx.start_with(opts).await;
    let mut c = client(
        fx.svid_channel(srv.addr, &id_of("web"), Duration::from_secs(600))
            .await,
    );
    // web's SVID renewing for db: refused.
    let err = c
        .sign_csr(csr_request("shop/db-0", &id_of("db"), ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    assert!(err.message().contains("same identity"), "{}", err.message());
    // Two renewals fit the burst, the third is refused.
    for _ in 0..2 {
        c.sign_csr(csr_request("shop/web-0", &id_of("web"), ""))
            .await
            .unwrap();
    }
    let err = c
        .sign_csr(csr_request("shop/web-0", &id_of("web"), ""))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::ResourceExhausted);
    assert!(
        err.message().contains("too many signing requests"),
        "{}",
        err.message()
    );
    srv.shutdown().await;
}

#[tokio::test]
async fn status_is_for_system_identities_only() {
    let fx = Fixture::new();
    let srv = fx.start().await;
    let err = client(
        fx.svid_channel(srv.addr, &id_of("web"), Duration::from_secs(600))
            .await,
    )
    .status(StatusRequest {})
    .await
    .unwrap_err();
    assert_eq!(err.code(), Code::PermissionDenied);
    let status = palisade_control::cli::control::fetch_status(&srv.addr.to_string(), &fx.ca)
        .await
        .unwrap();
    let control = status.control.unwrap();
    assert_eq!(control.workloads, 3);
    assert!(control.last_compile_ok, "{:?}", control.manifest_errors);
    srv.shutdown().await;
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_fails_the_handshake() {
    let fx = Fixture::new();
    let srv = fx.start().await;
    let other = palisade_control::server::CaAuthority::generate(TD).unwrap();
    let svid = other
        .issue_keyed(&id_of("web"), Duration::from_secs(600))
        .unwrap();
    // The client trusts our CA for the server, but presents the foreign SVID.
    let creds = palisade_identity::Credentials::new(
        palisade_identity::pem::certs(&svid.svid.chain_pem).unwrap(),
        palisade_identity::pem::private_key(&svid.key_pem).unwrap(),
        fx.ca.inner().bundle().clone(),
    )
    .unwrap();
    let store = palisade_identity::CredentialStore::new(creds);
    let tls = palisade_identity::client_config_with(
        &store,
        palisade_identity::SpiffeId::parse(&palisade_control::server::control_id(TD)).unwrap(),
        &palisade_identity::TlsOptions {
            alpn: vec![b"h2".to_vec()],
            ..Default::default()
        },
    )
    .unwrap();
    // Either the connect or the first RPC fails: the server rejects the
    // certificate during the TLS 1.3 handshake (after the client's Finished).
    let result =
        match palisade_api::stream::connect::connect(srv.addr, tls, Duration::from_secs(5)).await {
            Err(_) => Err(()),
            Ok(ch) => client(ch)
                .sign_csr(csr_request("shop/web-0", &id_of("web"), ""))
                .await
                .map(|_| ())
                .map_err(|_| ()),
        };
    assert!(result.is_err(), "a foreign SVID must not be accepted");
    srv.shutdown().await;
}
