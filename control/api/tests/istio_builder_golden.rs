//! Verdicts read off upstream Istio's authorization builder golden files
//! (`pilot/pkg/security/authz/builder/testdata/`, `*-in.yaml` policies and
//! the Envoy RBAC in `*-out.yaml`) and the model tests
//! (`pilot/pkg/security/authz/model/generator_test.go`), checked against
//! Palisade's evaluator. Fields Palisade refuses by design (JWT
//! `requestPrincipals` and `request.auth.*`, `experimental.*` keys) are left
//! out of the inputs; every other field is kept as written.
mod common;

use common::*;
use palisade_api::authz::CompiledAuthz;

const SLEEP: &str = "cluster.local/ns/default/sa/sleep";
const NS1: &str = "cluster.local/ns/ns-1/sa/client";

fn policy(name: &str, action: &str, rules: &str) -> String {
    format!("- name: foo/{name}\n  action: {action}\n  rules:\n{rules}")
}

/// http/allow-path-in.yaml, without the `"*"` entries (a `notPaths: ["*"]`
/// is Envoy's `notRule` of `.+`, which no request passes, so the rule as
/// written allows nothing) and with `{**}/path/template` written
/// `/{**}/path/template` (see `template_without_leading_slash_is_refused`).
/// allow-path-out.yaml: `exact`, `prefix` and `suffix` path matchers and
/// `uriTemplate` `pathTemplate: /path/template/*` (Envoy: `[pchar]+`, one
/// segment) and `/**/path/template` (`[pchar/]*`, after the leading `/`).
#[test]
fn allow_path_exact_prefix_suffix_and_templates() {
    let authz = compile(&policy(
        "httpbin-1",
        "ALLOW",
        r#"  - to:
    - paths: ["/exact", "/prefix/*", "*/suffix", "/path/template/{*}", "/{**}/path/template"]
      notPaths: ["/not-exact", "/not-prefix/*", "*/not-suffix", "/not-path/template/{*}", "/{**}/not-path/template"]
"#,
    ));
    for allowed in [
        "/exact",
        "/prefix/",
        "/prefix/a/b",
        "/suffix",
        "/a/b/suffix",
        "/path/template/a",
        "/path/template/a%2Fb",
        "/path/template/a=b",
        "//path/template",
        "/a/path/template",
        "/a/b/path/template",
    ] {
        assert!(get(allowed).allowed(&authz), "{allowed}");
    }
    for denied in [
        "/exact/",
        "/Exact",
        "/prefix",
        "/suffix/",
        // `{*}` is one non-empty segment.
        "/path/template/",
        "/path/template/a/b",
        "/path/template",
        // `/{**}/path/template` needs the `/` before `{**}` and the one
        // after it.
        "/path/template/x/y",
        // paths match, notPaths too.
        "/prefix/not-suffix",
        "/prefix/x/not-path/template",
        "/not-prefix/a/suffix",
    ] {
        assert!(!get(denied).allowed(&authz), "{denied}");
    }
}

/// As written in http/allow-path-in.yaml: `notPaths` holds `"*"`, Envoy's
/// `notRule` of `safeRegex: .+` (allow-path-out.yaml), which every request
/// path fails, so the ALLOW rule matches nothing.
#[test]
fn allow_path_with_not_paths_star_allows_nothing() {
    let authz = compile(&policy(
        "httpbin-1",
        "ALLOW",
        r#"  - to:
    - paths: ["/exact", "/prefix/*", "*/suffix", "*", "/path/template/{*}", "/{**}/path/template"]
      notPaths: ["/not-exact", "/not-prefix/*", "*/not-suffix", "*", "/not-path/template/{*}", "/{**}/not-path/template"]
"#,
    ));
    for path in ["/exact", "/prefix/a", "/", "/anything"] {
        assert!(!get(path).allowed(&authz), "{path}");
    }
}

/// http/allow-path-in.yaml also holds `{**}/path/template`, which Istio's
/// `CheckValidPathTemplate` accepts (it trims the slashes before looking at
/// the segments) and `matcher.PathTemplateMatcher` turns into the Envoy
/// `pathTemplate: **/path/template`. Envoy refuses that pattern
/// (source/extensions/path/uri_template_lib/uri_template_internal.cc,
/// `parseURLPatternSyntax`: the pattern must match `^/[[:graph:]]*$`,
/// "Invalid pattern"), so the sidecar rejects the whole config; Palisade
/// refuses the policy and says why.
#[test]
fn template_without_leading_slash_is_refused() {
    for field in ["paths", "notPaths"] {
        let yaml = policy(
            "httpbin-1",
            "ALLOW",
            &format!("  - to:\n    - {field}: [\"/exact\", \"{{**}}/path/template\"]\n"),
        );
        let err = CompiledAuthz::new(&policies(&yaml), &mesh())
            .expect_err(field)
            .to_string();
        assert!(err.contains(&format!("{field}[1]")), "{err}");
        assert!(err.contains("must start with '/'"), "{err}");
    }
}

/// tcp/deny-both-http-tcp-in.yaml, each rule on its own (the ones without
/// `requestPrincipals`), against tcp/deny-both-http-tcp-out.yaml: on TCP
/// the HTTP-only fields are dropped from a DENY rule, so rule[1]
/// (`methods`) and rule[6] (`request.headers[:method]`) become `any: true`,
/// rule[3] (namespaces ns-1, `methods`) keeps only its principal, rule[5]
/// is port 80 from ns-1 and rule[7] `destination.port` 80. Over HTTP the
/// same rules keep their HTTP fields.
#[test]
fn deny_both_http_tcp_rules() {
    // Each rule, and whether it denies a connection from `peer` to `port`
    // (`method` None: TCP) by the out file.
    type Denies = fn(&str, u16, Option<&str>) -> bool;
    let rules: [(&str, &str, Denies); 5] = [
        (
            "rule[1]",
            "  - to:\n    - methods: [\"GET\"]\n",
            |_, _, m| m.is_none_or(|m| m == "GET"),
        ),
        (
            "rule[3]",
            "  - from:\n    - namespaces: [\"ns-1\"]\n    to:\n    - methods: [\"GET\"]\n",
            |peer, _, m| peer == NS1 && m.is_none_or(|m| m == "GET"),
        ),
        (
            "rule[5]",
            "  - from:\n    - namespaces: [\"ns-1\"]\n    to:\n    - ports: [80]\n",
            |peer, port, _| peer == NS1 && port == 80,
        ),
        (
            "rule[6]",
            "  - when:\n    - key: \"request.headers[:method]\"\n      values: [\"GET\"]\n",
            |_, _, m| m.is_none_or(|m| m == "GET"),
        ),
        (
            "rule[7]",
            "  - when:\n    - key: \"destination.port\"\n      values: [\"80\"]\n",
            |_, port, _| port == 80,
        ),
    ];
    for (name, rule, denies) in rules {
        let authz = compile(&policy("httpbin-deny", "DENY", rule));
        for peer in [SLEEP, NS1] {
            for port in [80, 8080] {
                for method in [None, Some("GET"), Some("PUT")] {
                    let mut req = tcp_from(Some(peer)).port(port);
                    if let Some(m) = method {
                        req = req.http(m, "/", "httpbin.foo");
                    }
                    assert_eq!(
                        req.allowed(&authz),
                        !denies(peer, port, method),
                        "{name} {method:?} {peer}:{port}"
                    );
                }
            }
        }
    }
}

/// tcp/deny-both-http-tcp-in.yaml rule[8] without its JWT and
/// `experimental` parts, with values chosen so that a connection can match
/// (the file's `ports: [80]` beside `destination.port: [91]` matches
/// nothing): on TCP the `hosts`, `methods`, `paths` (and `not` forms) and
/// the `request.headers` condition are dropped, the rest is ANDed, as in
/// the out file's `andRules`/`andIds`.
#[test]
fn deny_all_fields_on_tcp_keeps_only_the_tcp_fields() {
    let authz = compile(&policy(
        "httpbin-deny",
        "DENY",
        r#"  - from:
    - principals: ["principal", "*principal-suffix", "principal-prefix*", "*"]
      namespaces: ["ns", "*ns-suffix", "ns-prefix*", "*"]
      ipBlocks: ["1.2.3.4/32"]
      notPrincipals: ["not-principal", "*not-principal-suffix", "not-principal-prefix*"]
      notNamespaces: ["not-ns", "*not-ns-suffix", "not-ns-prefix*"]
      notIpBlocks: ["9.0.0.1/32"]
    to:
    - methods: ["method"]
      hosts: ["exact.com"]
      ports: [80]
      paths: ["/exact"]
      notMethods: ["not-method"]
      notHosts: ["not-exact.com"]
      notPorts: [8000]
      notPaths: ["/not-exact"]
    when:
    - key: "request.headers[X-header]"
      values: ["header"]
      notValues: ["not-header"]
    - key: "destination.ip"
      values: ["10.10.10.10"]
      notValues: ["90.10.10.10"]
    - key: "connection.sni"
      values: ["exact.com"]
      notValues: ["not-exact.com"]
"#,
    ));
    let conn = |peer: &str, src: &str, port: u16, sni: &str| {
        tcp_from(Some(peer))
            .src(src)
            .dst("10.10.10.10", port)
            .sni(sni)
            .allowed(&authz)
    };
    let p = "td/ns/ns/sa/principal";
    assert!(
        !conn(p, "1.2.3.4", 80, "exact.com"),
        "every TCP field matches"
    );
    assert!(conn(p, "1.2.3.5", 80, "exact.com"), "ipBlocks");
    assert!(conn(p, "1.2.3.4", 81, "exact.com"), "ports");
    assert!(conn(p, "1.2.3.4", 80, "other.com"), "connection.sni");
    assert!(conn(
        "td/ns/not-ns/sa/principal",
        "1.2.3.4",
        80,
        "exact.com"
    ));
    assert!(conn(
        "not-principal-prefix-x/ns/ns/sa/a",
        "1.2.3.4",
        80,
        "exact.com"
    ));
    assert!(
        tcp_from(Some(p))
            .src("1.2.3.4")
            .dst("10.10.10.11", 80)
            .sni("exact.com")
            .allowed(&authz),
        "destination.ip"
    );
    // Over HTTP the dropped fields count again: a GET / is not `method` on
    // `/exact`, so the same connection's request passes.
    let req = tcp_from(Some(p))
        .src("1.2.3.4")
        .dst("10.10.10.10", 80)
        .sni("exact.com")
        .http("GET", "/", "exact.com");
    assert!(req.allowed(&authz));
    let req = tcp_from(Some(p))
        .src("1.2.3.4")
        .dst("10.10.10.10", 80)
        .sni("exact.com")
        .http("method", "/exact", "EXACT.com")
        .header("x-header", "header");
    assert!(!req.allowed(&authz), "hosts match without regard to case");
}

/// tcp/allow-only-http-in.yaml (rule[1]; rule[0] holds `requestPrincipals`):
/// an ALLOW rule with `hosts` is skipped on TCP ("a smaller allow policy"),
/// so allow-only-http-out.yaml has no policy left and every TCP
/// connection is denied, ns-1 included; over HTTP ns-1 reaches
/// `example.com` (any case) and nothing else.
#[test]
fn allow_only_http_fields_denies_all_tcp() {
    let authz = compile(&policy(
        "httpbin-deny",
        "ALLOW",
        "  - from:\n    - namespaces: [\"ns-1\"]\n    to:\n    - hosts: [\"example.com\"]\n",
    ));
    assert!(!tcp_from(Some(NS1)).allowed(&authz));
    assert!(!tcp_from(Some(SLEEP)).allowed(&authz));
    let http = |peer: &str, host: &str| tcp_from(Some(peer)).http("GET", "/", host).allowed(&authz);
    assert!(http(NS1, "example.com"));
    assert!(http(NS1, "Example.COM"));
    assert!(
        !http(NS1, "example.com:80"),
        "the host as sent, port included"
    );
    assert!(!http(SLEEP, "example.com"));
}

/// tcp/allow-both-http-tcp-in.yaml without rule[0] and the
/// `requestPrincipals` of rule[2]: on TCP only the rule without HTTP
/// fields survives (allow-both-http-tcp-out.yaml: rule[3], port 80 from
/// ns-1); rule[1] (port 8080 and `methods`) is skipped, so ns-1 reaches
/// 8080 only over HTTP with GET.
#[test]
fn allow_both_http_tcp_keeps_the_tcp_only_rules() {
    let authz = compile(&policy(
        "httpbin-deny",
        "ALLOW",
        r#"  - from:
    - namespaces: ["ns-1"]
    to:
    - ports: [8080]
      methods: ["GET"]
  - from:
    - namespaces: ["ns-1"]
    to:
    - ports: [80]
"#,
    ));
    let tcp = |peer: &str, port: u16| tcp_from(Some(peer)).port(port).allowed(&authz);
    assert!(tcp(NS1, 80));
    assert!(!tcp(NS1, 8080));
    assert!(!tcp(SLEEP, 80));
    let http = |port: u16, method: &str| {
        tcp_from(Some(NS1))
            .port(port)
            .http(method, "/", "h")
            .allowed(&authz)
    };
    assert!(http(8080, "GET"));
    assert!(!http(8080, "POST"));
    assert!(http(80, "POST"));
}

/// tcp/audit-both-http-tcp-in.yaml rule[1] (`ipBlocks` 1.2.3.4, port 80):
/// an AUDIT match is reported and never changes the verdict.
#[test]
fn audit_both_http_tcp_reports_only() {
    let authz = compile(&policy(
        "httpbin-audit",
        "AUDIT",
        "  - from:\n    - ipBlocks: [\"1.2.3.4/32\"]\n    to:\n    - ports: [80]\n",
    ));
    let d = tcp_from(Some(SLEEP)).src("1.2.3.4").port(80).eval(&authz);
    assert!(d.is_allowed());
    assert_eq!(d.audit.len(), 1);
    let d = tcp_from(Some(SLEEP)).src("1.2.3.5").port(80).eval(&authz);
    assert!(d.is_allowed());
    assert!(d.audit.is_empty());
}

/// tcp/dry-run-mix-in.yaml: httpbin-1 (`istio.io/dry-run: "true"`, ALLOW
/// port 80) goes to the shadow rules, httpbin-2 (dry-run "false", ALLOW
/// port 9000) is enforced: port 80 is denied (and would be allowed with
/// the dry-run policy), port 9000 allowed.
#[test]
fn dry_run_mix_on_tcp() {
    let authz = compile(
        "- name: foo/httpbin-1\n  action: ALLOW\n  dryRun: true\n  rules:\n  - to:\n    - ports: [80]\n\
         - name: foo/httpbin-2\n  action: ALLOW\n  rules:\n  - to:\n    - ports: [9000]\n",
    );
    let d = tcp_from(Some(SLEEP)).port(80).eval(&authz);
    assert!(!d.is_allowed());
    let shadow = d.dry_run.expect("dry-run outcome");
    assert!(shadow.matched.iter().any(|m| &*m.policy == "foo/httpbin-1"));
    assert!(tcp_from(Some(SLEEP)).port(9000).allowed(&authz));
}

/// generator_test.go `TestServiceAccount`: `serviceAccounts: [my-ns/my-sa]`
/// is the regex `spiffe://.+/ns/my-ns/(.+/|)sa/my-sa(/.+)?`, matched
/// against the whole URI SAN.
#[test]
fn service_account_identities() {
    let authz = compile(&policy(
        "sa",
        "ALLOW",
        "  - from:\n    - serviceAccounts: [\"my-ns/my-sa\"]\n",
    ));
    let weird = format!(
        "spiffe://cluster.local/{}",
        ["k", "ns", "my-ns", "something", "bar", "sa", "my-sa", "baz"].join("/")
    );
    for (case, id, want) in [
        ("standard", "spiffe://cluster.local/ns/my-ns/sa/my-sa", true),
        (
            "suffix attributes",
            "spiffe://cluster.local/ns/my-ns/sa/my-sa/k/v",
            true,
        ),
        (
            "prefix attributes",
            "spiffe://cluster.local/k/v/ns/my-ns/sa/my-sa",
            true,
        ),
        (
            "middle attributes",
            "spiffe://cluster.local/ns/my-ns/k/v/sa/my-sa",
            true,
        ),
        (
            "all attributes",
            "spiffe://cluster.local/k1/v1/ns/my-ns/k2/v2/sa/my-sa/k3/v3",
            true,
        ),
        (
            "sa suffix string",
            "spiffe://cluster.local/ns/my-ns/sa/my-sa-suffix",
            false,
        ),
        (
            "ns suffix string",
            "spiffe://cluster.local/ns/my-ns-suffix/sa/my-sa",
            false,
        ),
        ("not spiffe", "cluster.local/ns/my-ns/sa/my-sa", false),
        ("invalid spiffe", "spiffe://ns/my-ns/sa/my-sa", false),
        ("missing sa", "spiffe://cluster.local/ns/my-ns", false),
        ("missing ns", "spiffe://cluster.local/sa/my-sa", false),
        ("weird keys", weird.as_str(), true),
    ] {
        let got = tcp_from(None).raw_peer(id).allowed(&authz);
        assert_eq!(got, want, "{case}: {id}");
    }
}
