//! Per-request cost of the request metrics: counting and timing one
//! request by its peer, and counting the rules behind one authorization
//! decision.
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_api::AuthzAction;
use palisade_api::authz::{Decision, DecisionReason, PolicyMatch, Verdict};
use palisade_proxy::metrics::{Direction, Metrics, Peer};

fn bench(c: &mut Criterion) {
    let metrics = Metrics::new();
    let peer = Peer::identity(Arc::from("spiffe://cluster.local/ns/front/sa/client"));
    // Two label lookups per request: what counting cost before the
    // handles were kept per connection.
    c.bench_function("request_by_lookup", |b| {
        b.iter(|| {
            metrics
                .request_meter(Direction::Inbound, std::hint::black_box(&peer).clone())
                .record(&metrics, 200, Duration::from_micros(250))
        })
    });
    let meter = metrics.request_meter(Direction::Inbound, peer.clone());
    c.bench_function("request_by_meter", |b| {
        b.iter(|| {
            meter.record(
                &metrics,
                std::hint::black_box(200),
                Duration::from_micros(250),
            )
        })
    });
    let decision = Decision {
        verdict: Verdict::Allow,
        reason: DecisionReason::AllowPolicyMatched(PolicyMatch {
            policy: Arc::from("back/allow-frontend"),
            action: AuthzAction::Allow,
            rule: 0,
            dry_run: false,
        }),
        audit: vec![],
        dry_run: None,
    };
    c.bench_function("authz_decision", |b| {
        b.iter(|| metrics.authz_decision(std::hint::black_box(&decision)))
    });
    c.bench_function("instant_now", |b| b.iter(std::time::Instant::now));
}

criterion_group!(benches, bench);
criterion_main!(benches);
