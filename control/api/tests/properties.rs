//! Properties of the evaluators over generated policies and requests:
//! monotonicity of ALLOW rules and DENY policies, order independence, and
//! idempotent path normalization.
mod common;

use common::*;
use ipnet::IpNet;
use palisade_api::authz::{CompiledAuthz, Verdict};
use palisade_api::normalize::normalize_path;
use palisade_api::{
    AuthorizationPolicy, AuthzAction, AuthzCondition, AuthzOperation, AuthzRule, AuthzSource,
    PathNormalization,
};
use proptest::prelude::*;

const PRINCIPALS: &[&str] = &[
    "cluster.local/ns/a/sa/x",
    "cluster.local/ns/a/*",
    "*/sa/y",
    "*",
    "cluster.local/ns/b/sa/y",
];
const PEERS: &[Option<&str>] = &[
    None,
    Some("cluster.local/ns/a/sa/x"),
    Some("cluster.local/ns/a/sa/y"),
    Some("cluster.local/ns/b/sa/y"),
];
const PATHS: &[&str] = &["/admin", "/admin*", "*.html", "*", "/api/{*}", "/api/{**}"];
const REQ_PATHS: &[&str] = &[
    "/admin",
    "/admin/x",
    "/index.html",
    "/api/v1",
    "/api/v1/x",
    "/",
];
const METHODS: &[&str] = &["GET", "POST"];
const NETS: &[&str] = &["198.18.0.0/24", "198.18.0.2/32", "203.0.113.0/24"];
const SRCS: &[&str] = &["198.18.0.2", "198.18.0.3", "203.0.113.1"];

fn pick<T: Clone + std::fmt::Debug + 'static>(items: &'static [T]) -> impl Strategy<Value = T> {
    prop::sample::select(items)
}

fn strings(items: &'static [&'static str]) -> impl Strategy<Value = Vec<String>> {
    prop::collection::vec(pick(items).prop_map(String::from), 0..2)
}

fn nets() -> impl Strategy<Value = Vec<IpNet>> {
    prop::collection::vec(pick(NETS).prop_map(|n| n.parse().unwrap()), 0..2)
}

fn source() -> impl Strategy<Value = AuthzSource> {
    (
        strings(PRINCIPALS),
        strings(PRINCIPALS),
        strings(&["a", "b*"]),
        nets(),
        nets(),
    )
        .prop_map(
            |(principals, not_principals, namespaces, ip_blocks, not_ip_blocks)| AuthzSource {
                principals,
                not_principals,
                namespaces,
                ip_blocks,
                not_ip_blocks,
                ..Default::default()
            },
        )
        .prop_filter("non-empty source", |s| *s != AuthzSource::default())
}

fn operation() -> impl Strategy<Value = AuthzOperation> {
    (
        strings(PATHS),
        strings(PATHS),
        strings(METHODS),
        prop::collection::vec(pick(&[80u16, 8080]), 0..2),
    )
        .prop_map(|(paths, not_paths, methods, ports)| AuthzOperation {
            paths,
            not_paths,
            methods,
            ports,
            ..Default::default()
        })
        .prop_filter("non-empty operation", |o| *o != AuthzOperation::default())
}

fn condition() -> impl Strategy<Value = AuthzCondition> {
    prop_oneof![
        strings(&["1", "*"]).prop_map(|values| AuthzCondition {
            key: "request.headers[x-a]".into(),
            values,
            not_values: vec![],
        }),
        strings(&["198.18.0.0/24"]).prop_map(|values| AuthzCondition {
            key: "source.ip".into(),
            values,
            not_values: vec!["203.0.113.1".into()],
        }),
    ]
    .prop_filter("values", |c| {
        !(c.values.is_empty() && c.not_values.is_empty())
    })
}

fn rule() -> impl Strategy<Value = AuthzRule> {
    (
        prop::collection::vec(source(), 0..2),
        prop::collection::vec(operation(), 0..2),
        prop::collection::vec(condition(), 0..2),
    )
        .prop_map(|(from, to, when)| AuthzRule { from, to, when })
}

fn policy(action: AuthzAction) -> impl Strategy<Value = AuthorizationPolicy> {
    (
        prop::collection::vec(rule(), 0..3),
        any::<bool>(),
        0u32..1_000_000,
    )
        .prop_map(move |(rules, dry_run, id)| AuthorizationPolicy {
            name: format!("ns/p{id}"),
            action,
            dry_run: dry_run && id % 4 == 0,
            rules,
        })
}

fn any_policy() -> impl Strategy<Value = AuthorizationPolicy> {
    prop_oneof![
        policy(AuthzAction::Allow),
        policy(AuthzAction::Deny),
        policy(AuthzAction::Audit)
    ]
}

fn request() -> impl Strategy<Value = Req> {
    (
        pick(PEERS),
        pick(SRCS),
        pick(&[80u16, 8080, 9000]),
        prop::option::of((
            pick(METHODS),
            pick(REQ_PATHS),
            prop::option::of(pick(&["1", ""])),
        )),
    )
        .prop_map(|(peer, src, port, http)| {
            let mut r = tcp_from(peer).src(src).port(port);
            if let Some((m, p, h)) = http {
                r = r.http(m, p, "h");
                if let Some(h) = h {
                    r = r.header("x-a", h);
                }
            }
            r
        })
}

fn unique_names(ps: &mut [AuthorizationPolicy]) {
    for (i, p) in ps.iter_mut().enumerate() {
        p.name = format!("ns/p{i:03}");
    }
}

fn verdict(ps: &[AuthorizationPolicy], req: &Req) -> Verdict {
    let authz = CompiledAuthz::new(ps, &mesh()).expect("generated policies are valid");
    req.eval(&authz).verdict
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn adding_an_allow_rule_never_removes_an_allowed_request(
        mut ps in prop::collection::vec(any_policy(), 0..4),
        allow in policy(AuthzAction::Allow),
        extra in rule(),
        reqs in prop::collection::vec(request(), 1..8),
    ) {
        let mut allow = allow;
        allow.dry_run = false;
        ps.push(allow);
        unique_names(&mut ps);
        let mut more = ps.clone();
        more.last_mut().unwrap().rules.push(extra);
        for req in &reqs {
            if verdict(&ps, req) == Verdict::Allow {
                prop_assert_eq!(verdict(&more, req), Verdict::Allow);
            }
        }
    }

    #[test]
    fn adding_a_deny_policy_never_allows_more(
        mut ps in prop::collection::vec(any_policy(), 0..4),
        deny in policy(AuthzAction::Deny),
        reqs in prop::collection::vec(request(), 1..8),
    ) {
        let mut more = ps.clone();
        more.push(deny);
        unique_names(&mut ps);
        unique_names(&mut more);
        for req in &reqs {
            if verdict(&ps, req) == Verdict::Deny {
                prop_assert_eq!(verdict(&more, req), Verdict::Deny);
            }
        }
    }

    #[test]
    fn policy_order_never_changes_the_decision(
        mut ps in prop::collection::vec(any_policy(), 0..5),
        reqs in prop::collection::vec(request(), 1..8),
    ) {
        unique_names(&mut ps);
        let mut reversed = ps.clone();
        reversed.reverse();
        let a = CompiledAuthz::new(&ps, &mesh()).unwrap();
        let b = CompiledAuthz::new(&reversed, &mesh()).unwrap();
        for req in &reqs {
            prop_assert_eq!(req.eval(&a), req.eval(&b));
        }
    }

    #[test]
    fn dry_run_policies_never_change_the_verdict(
        mut ps in prop::collection::vec(any_policy(), 0..4),
        mut dry in prop::collection::vec(any_policy(), 1..3),
        reqs in prop::collection::vec(request(), 1..8),
    ) {
        ps.retain(|p| !p.dry_run);
        for d in &mut dry {
            d.dry_run = true;
        }
        let mut with_dry = ps.clone();
        with_dry.extend(dry);
        unique_names(&mut with_dry);
        for req in &reqs {
            prop_assert_eq!(verdict(&ps, req), verdict(&with_dry, req));
        }
    }

    #[test]
    fn normalization_is_idempotent(
        raw in proptest::string::string_regex("/[a-cA/.%25fF2eE5cC\\\\~]{0,24}(\\?[a-z/.]{0,4})?").unwrap(),
    ) {
        for mode in [
            PathNormalization::None,
            PathNormalization::Base,
            PathNormalization::MergeSlashes,
            PathNormalization::DecodeAndMergeSlashes,
        ] {
            if let Ok(once) = normalize_path(&raw, mode) {
                let twice = normalize_path(&once.path_and_query(), mode);
                prop_assert_eq!(Ok(once.clone()), twice, "{:?} under {:?}", raw, mode);
                if mode != PathNormalization::None {
                    let segments: Vec<&str> = once.path().split('/').collect();
                    prop_assert!(!segments.contains(&".") && !segments.contains(&".."), "{}", once);
                }
                if matches!(mode, PathNormalization::MergeSlashes | PathNormalization::DecodeAndMergeSlashes) {
                    prop_assert!(!once.path().contains("//"), "{}", once);
                }
                if mode == PathNormalization::DecodeAndMergeSlashes {
                    let upper = once.path().to_ascii_uppercase();
                    prop_assert!(!upper.contains("%2F") && !upper.contains("%5C") && !upper.contains('\\'), "{}", once);
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]

    /// Bad input gives an error, never a panic.
    #[test]
    fn normalization_never_panics(raw in any::<String>(), ascii in "[ -~]{0,40}") {
        for mode in [
            PathNormalization::None,
            PathNormalization::Base,
            PathNormalization::MergeSlashes,
            PathNormalization::DecodeAndMergeSlashes,
        ] {
            let _ = normalize_path(&raw, mode);
            let _ = normalize_path(&format!("/{ascii}"), mode);
        }
    }

    /// Arbitrary pattern strings compile or fail cleanly, and evaluating
    /// arbitrary paths, hosts and principals against them never panics.
    #[test]
    fn arbitrary_patterns_never_panic(
        pattern in "[/a-z{}*.:]{0,12}",
        principal in "[/a-z*.]{0,16}",
        path in "[ -~]{0,20}",
        host in "[ -~]{0,12}",
        peer in "[ -~]{0,24}",
    ) {
        let p = AuthorizationPolicy {
            name: "ns/p".into(),
            action: AuthzAction::Deny,
            dry_run: false,
            rules: vec![AuthzRule {
                from: vec![AuthzSource { principals: vec![principal], ..Default::default() }],
                to: vec![AuthzOperation {
                    paths: vec![pattern.clone()],
                    hosts: vec![pattern],
                    ..Default::default()
                }],
                when: vec![],
            }],
        };
        if let Ok(authz) = CompiledAuthz::new(&[p], &mesh()) {
            let req = tcp_from(None).raw_peer(&peer).http("GET", &path, &host);
            let _ = req.eval(&authz);
        }
    }
}
