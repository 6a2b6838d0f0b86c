//! Request metrics as Istio and Linkerd users read them: every request
//! counted by status and by the SPIFFE ID of the other side (`unknown`
//! without mTLS), and its duration from request head to response head in
//! a histogram, on both sidecars of a real mTLS chain.
mod support;

use std::time::Duration;

use palisade_api::{AuthzAction, MtlsMode};
use support::*;

const CLIENT: &str = "spiffe://cluster.local/ns/front/sa/client";
const SERVER: &str = "spiffe://cluster.local/ns/back/sa/server";

fn requests(direction: &str, status: u16, peer: &str) -> String {
    format!(
        "palisade_requests_total{{direction=\"{direction}\",status=\"{status}\",peer=\"{peer}\"}}"
    )
}

fn duration(direction: &str, peer: &str, series: &str) -> String {
    format!(
        "palisade_request_duration_seconds_{series}{{direction=\"{direction}\",peer=\"{peer}\"}}"
    )
}

fn bucket(direction: &str, peer: &str, le: &str) -> String {
    format!(
        "palisade_request_duration_seconds_bucket{{le=\"{le}\",direction=\"{direction}\",peer=\"{peer}\"}}"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_are_counted_and_timed_by_peer_identity() {
    // Every answer from the app takes 300 ms; a local 403 takes none.
    let (app, seen) = counting_app(Duration::from_millis(300)).await;
    let c = chain(app, |_, b| {
        b.inbound.mtls = MtlsMode::Permissive;
        b.authorization = vec![authz(
            "back/deny-secret",
            AuthzAction::Deny,
            vec![paths_rule(&["/secret"])],
        )];
    })
    .await;
    for i in 0..3 {
        let (s, _, body) = http_get(c.a.outbound_addr, &format!("/x/{i}"), "svc").await;
        assert_eq!(s, 200, "{body}");
    }
    let (s, _, _) = http_get(c.a.outbound_addr, "/secret", "svc").await;
    assert_eq!(s, 403);
    // Plaintext, straight to B (PERMISSIVE): no identity to label it with.
    let (s, _, _) = http_get(c.b.inbound_addr, "/plain", "svc").await;
    assert_eq!(s, 200);
    assert_eq!(seen.load(std::sync::atomic::Ordering::SeqCst), 4);

    let m = metrics(&c.b).await;
    assert_eq!(
        metric_value(&m, &requests("Inbound", 200, CLIENT)),
        3.0,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, &requests("Inbound", 403, CLIENT)),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, &requests("Inbound", 200, "unknown")),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, &duration("Inbound", CLIENT, "count")),
        4.0,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, &duration("Inbound", "unknown", "count")),
        1.0,
        "{m}"
    );
    // The 403 is answered at once; the three the app took 300 ms over are
    // above the 250 ms bucket and inside the last one.
    assert_eq!(
        metric_value(&m, &bucket("Inbound", CLIENT, "0.25")),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, &bucket("Inbound", CLIENT, "+Inf")),
        4.0,
        "{m}"
    );
    let sum = metric_value(&m, &duration("Inbound", CLIENT, "sum"));
    assert!((0.9..30.0).contains(&sum), "sum {sum}: {m}");
    assert!(
        m.contains("# TYPE palisade_request_duration_seconds histogram"),
        "{m}"
    );

    // The client's sidecar labels with the server's identity, and its own
    // durations include the mesh hop.
    let m = metrics(&c.a).await;
    assert_eq!(
        metric_value(&m, &requests("Outbound", 200, SERVER)),
        3.0,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, &requests("Outbound", 403, SERVER)),
        1.0,
        "{m}"
    );
    assert_eq!(
        metric_value(&m, &duration("Outbound", SERVER, "count")),
        4.0,
        "{m}"
    );
    let slow = metric_value(&m, &bucket("Outbound", SERVER, "0.25"));
    assert_eq!(slow, 1.0, "{m}");
}

fn matches(policy: &str, rule: &str, action: &str, dry_run: bool) -> String {
    format!(
        "palisade_authz_matches_total{{policy=\"{policy}\",rule=\"{rule}\",action=\"{action}\",dry_run=\"{dry_run}\"}}"
    )
}

/// A dry-run ALLOW policy for `/api/*`.
fn dry_allow_api() -> palisade_api::AuthorizationPolicy {
    let mut dry = authz(
        "back/dry-allow-api",
        AuthzAction::Allow,
        vec![paths_rule(&["/api/*"])],
    );
    dry.dry_run = true;
    dry
}

/// Which rule allowed or denied each request, so an operator can see the
/// ALLOW rules nothing uses (least privilege) and what a dry-run policy
/// would do before enforcing it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn authorization_decisions_are_counted_by_policy_and_rule() {
    let app = http_app("app").await;
    let c = chain(app, |_, b| {
        b.authorization = vec![
            authz(
                "back/allow",
                AuthzAction::Allow,
                vec![
                    paths_rule(&["/api/*"]),
                    paths_rule(&["/health"]),
                    paths_rule(&["/unused"]),
                ],
            ),
            authz(
                "back/deny-admin",
                AuthzAction::Deny,
                vec![paths_rule(&["/api/admin"])],
            ),
            authz(
                "back/audit-api",
                AuthzAction::Audit,
                vec![paths_rule(&["/api/*"])],
            ),
            dry_allow_api(),
        ];
    })
    .await;
    for (path, want) in [
        ("/api/a", 200),
        ("/api/b", 200),
        ("/health", 200),
        ("/api/admin", 403),
        ("/other", 403),
    ] {
        let (s, _, body) = http_get(c.a.outbound_addr, path, "svc").await;
        assert_eq!(s, want, "{path}: {body}");
    }
    let m = metrics(&c.b).await;
    let count = |p: &str, r: &str, a: &str, d: bool| metric_value(&m, &matches(p, r, a, d));
    assert_eq!(count("back/allow", "0", "Allow", false), 2.0, "{m}");
    assert_eq!(count("back/allow", "1", "Allow", false), 1.0, "{m}");
    assert_eq!(count("back/allow", "2", "Allow", false), 0.0, "{m}");
    assert_eq!(count("back/deny-admin", "0", "Deny", false), 1.0, "{m}");
    assert_eq!(
        count("allow-policies", "none-matched", "Deny", false),
        1.0,
        "{m}"
    );
    // Every /api/ request matched the AUDIT rule, the denied one too.
    assert_eq!(count("back/audit-api", "0", "Audit", false), 3.0, "{m}");
    // The dry-run ALLOW matches the three /api/ requests; enforced alone
    // beside the others it would change nothing for /health, which
    // back/allow still allows.
    assert_eq!(count("back/dry-allow-api", "0", "Allow", true), 3.0, "{m}");
    assert_eq!(
        count("allow-policies", "none-matched", "Deny", true),
        0.0,
        "{m}"
    );
    // The client's sidecar decides nothing here.
    let m = metrics(&c.a).await;
    assert!(!m.contains("palisade_authz_matches_total{"), "{m}");
}

/// A dry-run ALLOW policy on a workload with no enforced ALLOW policy:
/// every request it would not match is counted as what enforcing it would
/// deny.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dry_run_allow_policy_counts_what_it_would_deny() {
    let app = http_app("app").await;
    let c = chain(app, |_, b| {
        b.authorization = vec![dry_allow_api()];
    })
    .await;
    for path in ["/api/a", "/other", "/more"] {
        let (s, _, body) = http_get(c.a.outbound_addr, path, "svc").await;
        assert_eq!(s, 200, "{path}: {body}");
    }
    let m = metrics(&c.b).await;
    let count = |p: &str, r: &str, a: &str, d: bool| metric_value(&m, &matches(p, r, a, d));
    assert_eq!(count("back/dry-allow-api", "0", "Allow", true), 1.0, "{m}");
    assert_eq!(
        count("allow-policies", "none-matched", "Deny", true),
        2.0,
        "{m}"
    );
    assert_eq!(
        count("allow-policies", "none-matched", "Deny", false),
        0.0,
        "{m}"
    );
}
