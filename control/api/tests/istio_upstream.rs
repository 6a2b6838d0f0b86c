//! Cases taken from upstream Istio and Envoy sources, where Palisade used to
//! deviate: each test names the source it follows.
mod common;

use common::*;
use palisade_api::PathNormalization::{Base, DecodeAndMergeSlashes, MergeSlashes};
use palisade_api::authz::CompiledAuthz;
use palisade_api::normalize::normalize_path;

/// Envoy's path canonicalizer (`source/common/chromium_url/url_canon_path.cc`,
/// the `BASE` normalization Istio configures): an escape that stays escaped
/// is copied exactly, "in case the server is sensitive to changing the case
/// of any hex letters"; only unreserved characters are decoded (istio.io,
/// "Authorization Policy Normalization", table of `%HH`).
#[test]
fn base_keeps_the_hex_case_of_escapes_it_does_not_decode() {
    for mode in [Base, MergeSlashes, DecodeAndMergeSlashes] {
        let n = |p: &str| normalize_path(p, mode).unwrap().path().to_owned();
        assert_eq!(n("/a%3ab"), "/a%3ab", "{mode:?}");
        assert_eq!(n("/caf%c3%a9"), "/caf%c3%a9", "{mode:?}");
        assert_eq!(n("/a%3Ab"), "/a%3Ab", "{mode:?}");
        // Unreserved characters are decoded, whatever the hex case.
        assert_eq!(n("/%61%62%63/%2D%5f%7E"), "/abc/-_~", "{mode:?}");
    }
    // `%2f` is not decoded by BASE or MERGE_SLASHES, so it is kept as sent.
    assert_eq!(
        normalize_path("/admin%2fx", Base).unwrap().path(),
        "/admin%2fx"
    );
    assert_eq!(
        normalize_path("/admin%2fx", MergeSlashes).unwrap().path(),
        "/admin%2fx"
    );
    // The normalization page's own example.
    assert_eq!(
        normalize_path("/some%2fdata/%61%62%63", DecodeAndMergeSlashes)
            .unwrap()
            .path(),
        "/some/data/abc"
    );
}

/// `kPathCharLookup` in the same file marks raw `^` and `|` (with `"`, `<`,
/// `>`, `` ` ``, `{`, `}`) as ESCAPE: the canonical path carries them
/// percent-encoded with upper-case hex (`AppendEscapedChar`).
#[test]
fn base_escapes_raw_caret_and_pipe() {
    for mode in [Base, MergeSlashes, DecodeAndMergeSlashes] {
        let n = |p: &str| normalize_path(p, mode).unwrap().path().to_owned();
        assert_eq!(n("/a^b"), "/a%5Eb", "{mode:?}");
        assert_eq!(n("/a|b"), "/a%7Cb", "{mode:?}");
        assert_eq!(n("/a{b}"), "/a%7Bb%7D", "{mode:?}");
    }
    let authz =
        compile("- name: ns/p\n  action: DENY\n  rules:\n  - to:\n    - paths: [\"/a%7Cb\"]\n");
    let path = normalize_path("/a|b", Base).unwrap();
    assert!(!get(path.path()).allowed(&authz));
}

/// Istio `security.CheckValidPathTemplate`: in a path with `{*}` or `{**}`,
/// every segment between the (trimmed) leading and trailing slashes that is
/// not an operator must be a "valid string literal", `^[a-zA-Z0-9-._~%!$&'()
/// +,;:@=]+$` ("Envoy's valid pchar requirements"), so an empty segment
/// (`//`) or a space is refused.
#[test]
fn path_template_literals_must_be_pchars() {
    let compiles = |path: &str| {
        let yaml =
            format!("- name: ns/p\n  action: DENY\n  rules:\n  - to:\n    - paths: [{path:?}]\n");
        CompiledAuthz::new(&policies(&yaml), &mesh()).map(|_| ())
    };
    for bad in [
        "/foo//{*}",
        "/{*}//bar",
        "/fo o/{*}",
        "/a\"b/{*}",
        "/a/{**}/b[c]",
        "/a^/{*}",
    ] {
        let err = compiles(bad).expect_err(bad);
        assert!(err.to_string().contains("paths[0]"), "{err}");
    }
    for ok in [
        "/foo/{*}/",
        "/foo/{**}/",
        "/v1/{*}/items;v=2",
        "/a-b_c.d~e/%20/{*}",
        "/user@host:x/{*}/$&'()+,=!",
    ] {
        assert!(compiles(ok).is_ok(), "{ok}");
    }
}

/// `CheckValidPathTemplate` trims every leading and trailing slash
/// (`strings.Trim(path, "/")`) before it looks at the segments, so a
/// template that starts or ends with `//` passes Istio's validation; Envoy's
/// `parsePathPatternSyntax` (source/extensions/path/uri_template_lib/
/// uri_template_internal.cc, `validateNoDoublePathSeparator`) refuses it:
/// "Double slashes (/) detected in uri_template, this is not allowed.", so
/// the sidecar would reject its whole config. Palisade refuses the policy,
/// as it refuses a template that does not start with `/`.
#[test]
fn path_template_with_double_slashes_is_refused() {
    let compiles = |field: &str, path: &str| {
        let yaml =
            format!("- name: ns/p\n  action: DENY\n  rules:\n  - to:\n    - {field}: [{path:?}]\n");
        CompiledAuthz::new(&policies(&yaml), &mesh()).map(|_| ())
    };
    for field in ["paths", "notPaths"] {
        for bad in ["/foo/{*}//", "//foo/{*}", "/foo/{**}//", "//{**}", "///{*}"] {
            let err = compiles(field, bad).expect_err(bad).to_string();
            assert!(
                err.contains(&format!("{field}[0]")) && err.contains("'//'"),
                "{bad}: {err}"
            );
        }
        // One trailing slash is a literal `/` (Envoy's `/api/*/*/`).
        for ok in ["/foo/{*}/", "/foo/{**}/", "/{**}"] {
            assert!(compiles(field, ok).is_ok(), "{ok}");
        }
    }
}

/// Istio `authz/model/model.go` (`New`): `case k == attrSrcServiceAccount:`
/// the `when` key `source.serviceAccount` ("e.g. \"default/productpage\"")
/// matches like `serviceAccounts`; `security.ValidateAttribute` checks its
/// values with `CheckServiceAccount` ("wildcard not allowed").
#[test]
fn source_service_account_condition() {
    let when = |field: &str, values: &str| {
        format!(
            "- name: ns/p\n  action: ALLOW\n  rules:\n  - when:\n    - key: source.serviceAccount\n      {field}: {values}\n"
        )
    };
    let authz = compile(&when("values", r#"["default/sleep"]"#));
    assert!(tcp_from(Some("cluster.local/ns/default/sa/sleep")).allowed(&authz));
    assert!(!tcp_from(Some("cluster.local/ns/default/sa/other")).allowed(&authz));
    assert!(!tcp_from(Some("cluster.local/ns/other/sa/sleep")).allowed(&authz));
    assert!(!tcp_from(None).allowed(&authz), "requires mTLS");
    let not = compile(&when("notValues", r#"["default/sleep"]"#));
    assert!(!tcp_from(Some("cluster.local/ns/default/sa/sleep")).allowed(&not));
    assert!(tcp_from(Some("cluster.local/ns/default/sa/x")).allowed(&not));
    let wildcard = when("values", r#"["default/*"]"#);
    assert!(CompiledAuthz::new(&policies(&wildcard), &mesh()).is_err());
}

/// Istio `model.New`: `request.headers[<name>]` becomes Envoy's
/// `HeaderMatcher` on `<name>`, and Envoy carries the request line and host
/// as pseudo-headers, so upstream uses `request.headers[:authority]`
/// (validation_test.go, case "good") and `request.headers[:method]`
/// (builder testdata tcp/deny-both-http-tcp-in.yaml, rule[6]). `:authority`
/// is the Host/`:authority` value as sent; `:method` the method.
#[test]
fn request_headers_pseudo_headers_authority_and_method() {
    let when = |key: &str, values: &str| {
        format!(
            "- name: ns/p\n  action: ALLOW\n  rules:\n  - when:\n    - key: \"{key}\"\n      values: {values}\n"
        )
    };
    let authz = compile(&when(
        "request.headers[:authority]",
        r#"["v1", "*.example.com"]"#,
    ));
    let at = |host: &str| get("/").http("GET", "/", host);
    assert!(at("v1").allowed(&authz));
    assert!(at("api.example.com").allowed(&authz));
    assert!(!at("v2").allowed(&authz));
    let authz = compile(&when("request.headers[:method]", r#"["GET"]"#));
    assert!(get("/").allowed(&authz));
    assert!(!get("/").http("POST", "/", "h").allowed(&authz));
    // On TCP an ALLOW rule with an HTTP-only condition never matches.
    assert!(!tcp_from(Some("cluster.local/ns/default/sa/sleep")).allowed(&authz));
    // DENY on TCP: the HTTP-only condition is dropped, the rule denies all
    // (tcp/deny-both-http-tcp-out.yaml, rule[6]: `any: true`).
    let deny = compile(
        "- name: ns/d\n  action: DENY\n  rules:\n  - when:\n    - key: \"request.headers[:method]\"\n      values: [\"GET\"]\n",
    );
    assert!(!tcp_from(Some("cluster.local/ns/default/sa/sleep")).allowed(&deny));
    assert!(!get("/").allowed(&deny));
    assert!(get("/").http("PUT", "/", "h").allowed(&deny));
    // Pseudo-headers Palisade cannot see as Envoy does are refused, not
    // silently never matched.
    for key in ["request.headers[:path]", "request.headers[:scheme]"] {
        let err = CompiledAuthz::new(&policies(&when(key, r#"["x"]"#)), &mesh())
            .expect_err(key)
            .to_string();
        assert!(err.contains("when[0].key"), "{err}");
    }
}

/// A principal whose trust domain starts with `*` (`*-td/ns/foo/sa/bar`) is
/// still expanded over the trust domain and its aliases, as Istio's
/// trust-domain bundle does (pilot/pkg/security/trustdomain/bundle.go,
/// `replaceTrustDomains`: "If the trust domain has a prefix * (e.g. *local
/// from *local/ns/foo/sa/bar), keep the principal as-is for the matched
/// trust domain. For others, replace the trust domain"; only a trust domain
/// of exactly `*` is "not being enforced"). Cases: bundle_test.go "Two trust
/// domain aliases with * prefix in trust domain"; builder tests
/// "trust-domain-wildcard-in-principal" (simple-policy-principal-with-
/// wildcard-out.yaml) and "trust-domain-aliases-in-source-principal"
/// (td-aliases-source-principal-out.yaml).
#[test]
fn principal_with_a_wildcard_trust_domain_is_expanded_over_aliases() {
    let with = |td: &str, aliases: &[&str], yaml: &str| {
        let mesh = palisade_api::MeshSettings {
            trust_domain: td.into(),
            trust_domain_aliases: aliases.iter().map(|a| (*a).to_owned()).collect(),
            ..mesh()
        };
        CompiledAuthz::new(&policies(yaml), &mesh).unwrap()
    };
    let from = |p: &str| {
        format!("- name: ns/p\n  action: ALLOW\n  rules:\n  - from:\n    - principals: [\"{p}\"]\n")
    };
    // bundle_test.go: td2 + [foo-td1, cluster.local], "*-td1/ns/foo/sa/bar"
    // -> [td2/ns/foo/sa/bar, *-td1/ns/foo/sa/bar, cluster.local/ns/foo/sa/bar].
    let authz = with(
        "td2",
        &["foo-td1", "cluster.local"],
        &from("*-td1/ns/foo/sa/bar"),
    );
    assert!(tcp_from(Some("td2/ns/foo/sa/bar")).allowed(&authz));
    assert!(tcp_from(Some("foo-td1/ns/foo/sa/bar")).allowed(&authz));
    assert!(tcp_from(Some("cluster.local/ns/foo/sa/bar")).allowed(&authz));
    assert!(
        tcp_from(Some("any-td1/ns/foo/sa/bar")).allowed(&authz),
        "kept as written"
    );
    assert!(!tcp_from(Some("td3/ns/foo/sa/bar")).allowed(&authz));
    assert!(!tcp_from(Some("td2/ns/foo/sa/baz")).allowed(&authz));
    // trust-domain-wildcard-in-principal: td1 + [foobar];
    // "*bar/ns/foo/sa/p1" -> exact spiffe://td1/ns/foo/sa/p1 and the suffix
    // form; "*/ns/foo/sa/p0" stays a suffix match only.
    let authz = with("td1", &["foobar"], &from("*bar/ns/foo/sa/p1"));
    assert!(tcp_from(Some("td1/ns/foo/sa/p1")).allowed(&authz));
    assert!(tcp_from(Some("foobar/ns/foo/sa/p1")).allowed(&authz));
    assert!(!tcp_from(Some("td1/ns/foo/sa/p0")).allowed(&authz));
    let authz = with("td1", &["foobar"], &from("*/ns/foo/sa/p0"));
    assert!(tcp_from(Some("elsewhere/ns/foo/sa/p0")).allowed(&authz));
    // trust-domain-aliases-in-source-principal: new-td + [old-td,
    // some-trustdomain]; source.principal "*-td/ns/foo/sa/prefix-td" ->
    // the suffix form and exact some-trustdomain/ns/foo/sa/prefix-td.
    let authz = with(
        "new-td",
        &["old-td", "some-trustdomain"],
        "- name: ns/p\n  action: ALLOW\n  rules:\n  - when:\n    - key: source.principal\n      values: [\"*-td/ns/foo/sa/prefix-td\"]\n",
    );
    assert!(tcp_from(Some("some-trustdomain/ns/foo/sa/prefix-td")).allowed(&authz));
    assert!(tcp_from(Some("old-td/ns/foo/sa/prefix-td")).allowed(&authz));
    assert!(!tcp_from(Some("other/ns/foo/sa/prefix-td")).allowed(&authz));
    // No trust domain of the bundle ends with the suffix: kept as written
    // (bundle.go: "keep the policy as it is").
    let authz = with("td1", &["td2"], &from("*-x/ns/foo/sa/bar"));
    assert!(!tcp_from(Some("td1/ns/foo/sa/bar")).allowed(&authz));
    assert!(tcp_from(Some("a-x/ns/foo/sa/bar")).allowed(&authz));
}
