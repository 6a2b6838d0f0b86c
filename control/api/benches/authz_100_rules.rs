//! One L7 authorization decision against 100 rules (goal: < 1 µs median).
use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use http::HeaderMap;
use palisade_api::authz::{CompiledAuthz, HttpRequest, RequestContext};
use palisade_api::{
    AuthorizationPolicy, AuthzAction, AuthzCondition, AuthzOperation, AuthzRule, AuthzSource,
    MeshSettings, PathNormalization,
};

/// Which field keys the 100 rules.
#[derive(Clone, Copy, PartialEq)]
enum Shape {
    /// Exact `principals` (a per-rule fingerprint rejects most rules at once).
    Principals,
    /// Exact `namespaces` (the same quick rejection).
    Namespaces,
    /// No `from`: every rule is checked field by field (methods, path
    /// templates, a header condition).
    PathsOnly,
}

fn policies(shape: Shape) -> Vec<AuthorizationPolicy> {
    let mut out = vec![AuthorizationPolicy {
        name: "bench/deny-admin".into(),
        action: AuthzAction::Deny,
        dry_run: false,
        rules: vec![AuthzRule {
            to: vec![AuthzOperation {
                paths: vec!["/admin*".into()],
                ..Default::default()
            }],
            ..Default::default()
        }],
    }];
    // 10 ALLOW policies x 10 rules, none matching the probe until the last.
    for p in 0..10 {
        let rules = (0..10)
            .map(|r| {
                let n = p * 10 + r;
                AuthzRule {
                    from: match shape {
                        Shape::Principals => vec![AuthzSource {
                            principals: vec![format!("cluster.local/ns/team{n}/sa/client")],
                            ..Default::default()
                        }],
                        Shape::Namespaces => vec![AuthzSource {
                            namespaces: vec![format!("team{n}")],
                            ..Default::default()
                        }],
                        Shape::PathsOnly => vec![],
                    },
                    to: vec![AuthzOperation {
                        methods: vec!["GET".into(), "HEAD".into()],
                        paths: vec![format!("/api/v{n}/{{*}}/items"), format!("/static{n}/*")],
                        ..Default::default()
                    }],
                    when: vec![AuthzCondition {
                        key: "request.headers[x-tenant]".into(),
                        values: vec![format!("tenant-{n}")],
                        not_values: vec![],
                    }],
                }
            })
            .collect();
        out.push(AuthorizationPolicy {
            name: format!("bench/allow-{p:02}"),
            action: AuthzAction::Allow,
            dry_run: false,
            rules,
        });
    }
    out
}

fn bench(c: &mut Criterion) {
    let mesh = MeshSettings {
        trust_domain: "cluster.local".into(),
        trust_domain_aliases: vec![],
        path_normalization: PathNormalization::MergeSlashes,
        cluster_domain: palisade_api::sni::DEFAULT_CLUSTER_DOMAIN.into(),
        federated_bundles: Default::default(),
        trust_bundle: String::new(),
        svid_signer: String::new(),
    };
    let mut headers = HeaderMap::new();
    headers.insert("x-tenant", "tenant-99".parse().unwrap());
    headers.insert("user-agent", "bench".parse().unwrap());
    let peer = "spiffe://cluster.local/ns/team99/sa/client";
    let ctx = |path| {
        RequestContext::tcp(
            Some(peer),
            "198.18.0.2".parse().unwrap(),
            "198.18.0.9".parse().unwrap(),
            8080,
        )
        .with_http(HttpRequest {
            method: "GET",
            path,
            host: "api.bench",
            headers: &headers,
        })
    };
    let last_rule = ctx("/api/v99/42/items");
    let no_match = ctx("/api/v99/42/other");
    for (name, shape) in [
        ("principals", Shape::Principals),
        ("namespaces", Shape::Namespaces),
        ("paths_only", Shape::PathsOnly),
    ] {
        let authz = CompiledAuthz::new(&policies(shape), &mesh).unwrap();
        assert!(authz.evaluate(&last_rule).is_allowed());
        assert!(!authz.evaluate(&no_match).is_allowed());
        c.bench_function(
            &format!("authz_100_rules/{name}/allowed_by_last_rule"),
            |b| b.iter(|| authz.evaluate(black_box(&last_rule))),
        );
        c.bench_function(&format!("authz_100_rules/{name}/denied_no_match"), |b| {
            b.iter(|| authz.evaluate(black_box(&no_match)))
        });
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
