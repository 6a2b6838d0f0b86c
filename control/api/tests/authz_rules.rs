//! Rule structure and source fields. istio.io, Authorization Policy:
//! `rules`: "If not set, the match will never occur. This is equivalent to
//! setting a default of deny for the target workloads if the action is
//! ALLOW." `Rule`: "A match occurs when at least one source, one operation
//! and all conditions matches the request. An empty rule is always matched."
//! `Source`: "Fields in the source are ANDed together." `principals`: "This
//! field requires mTLS enabled".
mod common;

use common::*;
use palisade_api::MeshSettings;
use palisade_api::authz::{CompiledAuthz, Verdict};

fn allow(rules_yaml: &str) -> CompiledAuthz {
    compile(&format!(
        "- name: ns/p\n  action: ALLOW\n  rules:\n{rules_yaml}"
    ))
}

#[test]
fn empty_rules_match_nothing() {
    // `spec: {}` (ALLOW, no rules): allow-nothing.
    let allow_nothing = compile("- name: foo/allow-nothing\n  action: ALLOW\n");
    assert!(!get("/").allowed(&allow_nothing));
    assert!(!tcp_from(None).allowed(&allow_nothing));
    // A DENY policy without rules denies nothing.
    let deny_nothing = compile("- name: foo/deny-nothing\n  action: DENY\n  rules: []\n");
    assert!(get("/").allowed(&deny_nothing));
}

#[test]
fn empty_rule_matches_everything() {
    // The allow-all example: `rules: [{}]`.
    let allow_all = compile("- name: foo/allow-all\n  action: ALLOW\n  rules: [{}]\n");
    assert!(get("/").allowed(&allow_all));
    assert!(tcp_from(None).allowed(&allow_all));
    let deny_all = compile("- name: foo/deny-all\n  action: DENY\n  rules: [{}]\n");
    assert!(!tcp_from(None).allowed(&deny_all));
}

#[test]
fn rules_are_ored_from_to_when_anded() {
    let authz = allow(
        r#"
  - from:
    - namespaces: ["default"]
    to:
    - methods: ["GET"]
    when:
    - key: request.headers[x-token]
      values: ["secret"]
  - to:
    - paths: ["/healthz"]
"#,
    );
    let ok = get("/x").header("x-token", "secret");
    assert!(ok.allowed(&authz));
    assert!(!get("/x").allowed(&authz), "when fails");
    assert!(
        !ok.clone()
            .http("POST", "/x", "h")
            .header("x-token", "secret")
            .allowed(&authz),
        "to fails"
    );
    assert!(
        !ok.clone()
            .peer(Some("cluster.local/ns/other/sa/sleep"))
            .allowed(&authz),
        "from fails"
    );
    assert!(get("/healthz").peer(None).allowed(&authz), "second rule");
}

#[test]
fn several_from_ored_several_to_ored() {
    let authz = allow(
        r#"
  - from:
    - principals: ["cluster.local/ns/a/sa/x"]
    - namespaces: ["b"]
    to:
    - methods: ["GET"]
      paths: ["/info*"]
    - methods: ["POST"]
      paths: ["/data"]
"#,
    );
    let a = get("/info/1").peer(Some("cluster.local/ns/a/sa/x"));
    let b = get("/info/1").peer(Some("cluster.local/ns/b/sa/anything"));
    assert!(a.allowed(&authz));
    assert!(b.allowed(&authz));
    assert!(
        !get("/info/1")
            .peer(Some("cluster.local/ns/c/sa/x"))
            .allowed(&authz)
    );
    assert!(a.clone().http("POST", "/data", "h").allowed(&authz));
    // Fields of one operation are ANDed: POST /info is neither operation.
    assert!(!a.clone().http("POST", "/info", "h").allowed(&authz));
    assert!(!a.clone().http("GET", "/data", "h").allowed(&authz));
}

#[test]
fn source_fields_anded_values_ored() {
    // The reference example: principals admin or dev, namespace prod or
    // test, ip not 203.0.113.4.
    let authz = allow(
        r#"
  - from:
    - principals: ["cluster.local/ns/prod/sa/admin", "cluster.local/ns/test/sa/dev"]
      namespaces: ["prod", "test"]
      notIpBlocks: ["203.0.113.4/32"]
"#,
    );
    let admin = tcp_from(Some("cluster.local/ns/prod/sa/admin")).src("203.0.113.5");
    assert!(admin.allowed(&authz));
    assert!(tcp_from(Some("cluster.local/ns/test/sa/dev")).allowed(&authz));
    assert!(
        !admin.clone().src("203.0.113.4").allowed(&authz),
        "notIpBlocks"
    );
    assert!(
        !tcp_from(Some("cluster.local/ns/prod/sa/dev")).allowed(&authz),
        "principal"
    );
}

#[test]
fn principal_patterns() {
    let cases = [
        (
            "cluster.local/ns/default/sa/sleep",
            "cluster.local/ns/default/sa/sleep",
            true,
        ),
        (
            "cluster.local/ns/default/sa/sleep",
            "cluster.local/ns/default/sa/sleeper",
            false,
        ),
        (
            "cluster.local/ns/default/*",
            "cluster.local/ns/default/sa/sleep",
            true,
        ),
        (
            "cluster.local/ns/default/*",
            "cluster.local/ns/defaults/sa/sleep",
            false,
        ),
        ("*/sa/sleep", "cluster.local/ns/x/sa/sleep", true),
        ("*/sa/sleep", "cluster.local/ns/x/sa/sleepy", false),
        ("*", "cluster.local/ns/x/sa/y", true),
    ];
    for (pattern, peer, want) in cases {
        let authz = allow(&format!("  - from:\n    - principals: [{pattern:?}]\n"));
        assert_eq!(
            tcp_from(Some(peer)).allowed(&authz),
            want,
            "{pattern} vs {peer}"
        );
        // "This field requires mTLS enabled": never matches a plaintext peer,
        // not even `*` (presence).
        assert!(!tcp_from(None).allowed(&authz), "{pattern} vs plaintext");
    }
    // An identity that is not a spiffe:// URI has no principal.
    let star = allow("  - from:\n    - principals: [\"*\"]\n");
    assert!(
        !tcp_from(None)
            .raw_peer("cluster.local/ns/x/sa/y")
            .allowed(&star)
    );
    assert!(!tcp_from(None).raw_peer("spiffe://").allowed(&star));
}

#[test]
fn not_principals_match_plaintext_peers() {
    // ISTIO-SECURITY-2021-004: "The mTLS-only field notNamespaces will be
    // compared to an empty value when mTLS is not used", so a plaintext
    // request matches every not-field. Istio therefore recommends DENY with
    // `notPrincipals: ["*"]` to reject plaintext, which must work:
    let deny_plaintext = compile(
        r#"
- name: ns/require-mtls
  action: DENY
  rules:
  - from:
    - notPrincipals: ["*"]
"#,
    );
    assert!(!tcp_from(None).allowed(&deny_plaintext));
    assert!(!get("/").peer(None).allowed(&deny_plaintext));
    assert!(tcp_from(Some("cluster.local/ns/a/sa/b")).allowed(&deny_plaintext));
    // The advisory's ALLOW example: notNamespaces ["foo"] also lets a
    // plaintext request in (which is why STRICT mTLS must accompany it).
    let allow_not_foo = allow("  - from:\n    - notNamespaces: [\"foo\"]\n");
    assert!(tcp_from(None).allowed(&allow_not_foo));
    assert!(!tcp_from(Some("cluster.local/ns/foo/sa/x")).allowed(&allow_not_foo));
    assert!(tcp_from(Some("cluster.local/ns/bar/sa/x")).allowed(&allow_not_foo));
}

#[test]
fn namespaces_and_service_accounts() {
    let ns = allow("  - from:\n    - namespaces: [\"team-*\"]\n");
    assert!(tcp_from(Some("cluster.local/ns/team-a/sa/x")).allowed(&ns));
    assert!(!tcp_from(Some("cluster.local/ns/teams/sa/x")).allowed(&ns));
    assert!(!tcp_from(None).allowed(&ns), "namespaces require mTLS");
    let sa = allow("  - from:\n    - serviceAccounts: [\"default/sleep\"]\n");
    assert!(tcp_from(Some("cluster.local/ns/default/sa/sleep")).allowed(&sa));
    assert!(
        tcp_from(Some("other.td/ns/default/sa/sleep")).allowed(&sa),
        "any trust domain"
    );
    assert!(!tcp_from(Some("cluster.local/ns/default/sa/sleepy")).allowed(&sa));
    assert!(!tcp_from(Some("cluster.local/ns/other/sa/sleep")).allowed(&sa));
    assert!(!tcp_from(None).allowed(&sa));
    let not_sa = allow("  - from:\n    - notServiceAccounts: [\"default/sleep\"]\n");
    assert!(!tcp_from(Some("cluster.local/ns/default/sa/sleep")).allowed(&not_sa));
    assert!(tcp_from(Some("cluster.local/ns/default/sa/other")).allowed(&not_sa));
}

/// Istio matches `namespaces` (and `source.namespace`) with the principal
/// regex `.*/ns/<ns>/.*` and `serviceAccounts` with
/// `spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?` (model/generator.go), so a
/// federated peer whose ID has segments before `/ns/`, between the
/// namespace and `sa/` or after the service account is still in namespace
/// `bar`: a DENY on it must hold.
#[test]
fn namespaces_and_service_accounts_match_ids_with_more_segments() {
    let deny = |source: &str| {
        compile(&format!(
            "- name: foo/deny\n  action: DENY\n  rules:\n  - from:\n    - {source}\n"
        ))
    };
    let deny_ns = deny(r#"namespaces: ["bar"]"#);
    let deny_sa = deny(r#"serviceAccounts: ["bar/client"]"#);
    let deny_when_ns = compile(
        "- name: foo/deny\n  action: DENY\n  rules:\n  - when:\n    - key: source.namespace\n      values: [\"bar\"]\n",
    );
    let deny_when_sa = compile(
        "- name: foo/deny\n  action: DENY\n  rules:\n  - when:\n    - key: source.serviceAccount\n      values: [\"bar/client\"]\n",
    );
    for peer in [
        "remote.example/ns/bar/sa/client/extra",
        "remote.example/cluster/c1/ns/bar/sa/client",
        "remote.example/ns/bar/pod/p1/sa/client",
        "cluster.local/ns/bar/sa/client",
    ] {
        for (name, authz) in [
            ("namespaces", &deny_ns),
            ("serviceAccounts", &deny_sa),
            ("source.namespace", &deny_when_ns),
            ("source.serviceAccount", &deny_when_sa),
        ] {
            assert!(!tcp_from(Some(peer)).allowed(authz), "{name} on {peer}");
        }
    }
    // Not in namespace bar, or another service account.
    for peer in [
        "remote.example/ns/barn/sa/client",
        "remote.example/ns/foo/sa/bar",
        "remote.example/ns/bar/sa/clients",
        "remote.example/ns/bar/sa/client/",
    ] {
        assert!(
            tcp_from(Some(peer)).allowed(&deny_sa),
            "serviceAccounts on {peer}"
        );
    }
    assert!(tcp_from(Some("remote.example/ns/barn/sa/client")).allowed(&deny_ns));
    assert!(tcp_from(Some("remote.example/ns/foo/sa/bar")).allowed(&deny_ns));
    // Prefix, suffix and inner `*` become `.*`, which spans segments.
    let prefix = deny(r#"namespaces: ["ba*"]"#);
    assert!(!tcp_from(Some("td/cluster/c1/ns/bar/sa/x")).allowed(&prefix));
    let suffix = deny(r#"namespaces: ["*ar"]"#);
    assert!(!tcp_from(Some("td/ns/bar/sa/x/extra")).allowed(&suffix));
    let inner = deny(r#"namespaces: ["b*r"]"#);
    assert!(!tcp_from(Some("td/ns/bar/sa/x")).allowed(&inner));
    assert!(tcp_from(Some("td/ns/baz/sa/x")).allowed(&inner));
    // notNamespaces: a federated peer of bar is in bar, so not let in by
    // an ALLOW on everything but bar; plaintext still is (ISTIO-SECURITY-2021-004).
    let allow_not_bar = allow("  - from:\n    - notNamespaces: [\"bar\"]\n");
    assert!(!tcp_from(Some("remote.example/cluster/c1/ns/bar/sa/x")).allowed(&allow_not_bar));
    assert!(tcp_from(Some("remote.example/cluster/c1/ns/foo/sa/x")).allowed(&allow_not_bar));
    assert!(tcp_from(None).allowed(&allow_not_bar));
}

#[test]
fn namespaces_with_regex_operators_are_refused() {
    // Istio pastes the value into its regex unescaped (`a.b` would match
    // `axb`); Kubernetes names never contain these.
    for source in [
        r#"namespaces: ["a.b"]"#,
        r#"notNamespaces: ["a+"]"#,
        r#"serviceAccounts: ["a.b/c"]"#,
    ] {
        let yaml = format!("- name: foo/p\n  action: DENY\n  rules:\n  - from:\n    - {source}\n");
        let err = CompiledAuthz::new(&policies(&yaml), &mesh()).err();
        assert!(err.is_some(), "{source}");
    }
}

#[test]
fn trust_domain_aliases() {
    let mesh = MeshSettings {
        trust_domain: "new.example".into(),
        trust_domain_aliases: vec!["old.example".into()],
        ..mesh()
    };
    let compile_with = |yaml: &str| CompiledAuthz::new(&policies(yaml), &mesh).unwrap();
    let old = compile_with(
        "- name: ns/p\n  action: ALLOW\n  rules:\n  - from:\n    - principals: [\"old.example/ns/a/sa/b\"]\n",
    );
    assert!(
        tcp_from(Some("new.example/ns/a/sa/b")).allowed(&old),
        "alias written, td presented"
    );
    assert!(tcp_from(Some("old.example/ns/a/sa/b")).allowed(&old));
    assert!(!tcp_from(Some("evil.example/ns/a/sa/b")).allowed(&old));
    assert!(!tcp_from(Some("new.example/ns/a/sa/c")).allowed(&old));
    let new = compile_with(
        "- name: ns/p\n  action: ALLOW\n  rules:\n  - when:\n    - key: source.principal\n      values: [\"new.example/ns/a/sa/b\"]\n",
    );
    assert!(
        tcp_from(Some("old.example/ns/a/sa/b")).allowed(&new),
        "td written, alias presented"
    );
    // Istio: "cluster.local" in a policy points at the local trust domain
    // and its aliases.
    let local = compile_with(
        "- name: ns/p\n  action: ALLOW\n  rules:\n  - from:\n    - principals: [\"cluster.local/ns/a/sa/b\"]\n",
    );
    assert!(tcp_from(Some("new.example/ns/a/sa/b")).allowed(&local));
    assert!(tcp_from(Some("old.example/ns/a/sa/b")).allowed(&local));
    // A foreign trust domain is kept as written.
    let foreign = compile_with(
        "- name: ns/p\n  action: ALLOW\n  rules:\n  - from:\n    - principals: [\"partner.example/ns/a/sa/b\"]\n",
    );
    assert!(tcp_from(Some("partner.example/ns/a/sa/b")).allowed(&foreign));
    assert!(!tcp_from(Some("new.example/ns/a/sa/b")).allowed(&foreign));
}

#[test]
fn ip_blocks_and_remote_ip_blocks() {
    let authz = allow(
        r#"
  - from:
    - ipBlocks: ["198.18.0.0/16", "192.0.2.7/32"]
      notIpBlocks: ["198.18.5.0/24"]
"#,
    );
    assert!(tcp_from(None).src("198.18.1.1").allowed(&authz));
    assert!(tcp_from(None).src("192.0.2.7").allowed(&authz));
    assert!(!tcp_from(None).src("192.0.2.8").allowed(&authz));
    assert!(!tcp_from(None).src("198.18.5.1").allowed(&authz));
    assert!(
        tcp_from(None).src("::ffff:198.18.1.1").allowed(&authz),
        "IPv4-mapped"
    );
    // remote.ip is the source address (no trusted X-Forwarded-For).
    let remote = allow("  - from:\n    - remoteIpBlocks: [\"203.0.113.0/24\"]\n");
    assert!(tcp_from(None).src("203.0.113.1").allowed(&remote));
    assert!(!tcp_from(None).src("198.18.0.1").allowed(&remote));
    let not_remote = allow("  - from:\n    - notRemoteIpBlocks: [\"203.0.113.0/24\"]\n");
    assert!(!tcp_from(None).src("203.0.113.1").allowed(&not_remote));
    assert!(tcp_from(None).src("2001:db8::1").allowed(&not_remote));
}

#[test]
fn verdict_enum_is_exposed() {
    assert_eq!(get("/").eval(&allow("  - {}\n")).verdict, Verdict::Allow);
}
