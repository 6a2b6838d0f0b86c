//! Cases of upstream Istio's `TestValidateAuthorizationPolicy` and
//! `TestValidatePeerAuthentication` (pkg/config/validation/validation_test.go)
//! and the `ValidateAuthorizationPolicy` / `ValidatePeerAuthentication` rules
//! they exercise (pkg/config/validation/validation.go), where Palisade used to
//! accept what Istio refuses or refuse what it accepts. Each test names the
//! upstream case or check it follows.
mod policy_support;

use policy_support::try_load;

fn ap(spec: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  namespace: foo\n  name: p\nspec:\n{spec}\n"
    )
}

fn pa(spec: &str) -> String {
    format!(
        "---\napiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  namespace: foo\n  name: p\nspec:\n{spec}\n"
    )
}

/// Loads one document; `Ok(())` or the error text.
fn verdict(doc: &str) -> Result<(), String> {
    try_load(&[doc]).map(|_| ()).map_err(|e| e.to_string())
}

#[track_caller]
fn valid(case: &str, doc: &str) {
    if let Err(e) = verdict(doc) {
        panic!("{case}: Istio accepts this, Palisade refused it: {e}\n{doc}");
    }
}

/// Refused, with an error that names `field`.
#[track_caller]
fn invalid(case: &str, doc: &str, field: &str) {
    match verdict(doc) {
        Ok(()) => panic!("{case}: Istio refuses this, Palisade accepted it\n{doc}"),
        Err(e) => assert!(
            e.contains(field),
            "{case}: error does not name {field:?}: {e}"
        ),
    }
}

// `ValidateAuthorizationPolicy`: `if in.Action == DENY && in.Rules == nil`
// "DENY action without `rules` is meaningless as it will never be triggered,
// add an empty rule `{}` if you want it be triggered for every request"
// (case "deny-rules-nil"; "allow-rules-nil" stays valid). protojson leaves
// a repeated field nil for `[]` too. And "`rule` must not be nil, found at
// rule %d": a null rule is not an empty rule `{}` (which matches everything).
#[test]
fn deny_without_rules_and_null_rules_are_refused() {
    invalid("deny-rules-nil", &ap("  action: DENY"), "spec.rules");
    invalid(
        "deny-rules-empty",
        &ap("  action: DENY\n  rules: []"),
        "spec.rules",
    );
    valid("allow-rules-nil", &ap("  action: ALLOW"));
    valid("audit-rules-nil", &ap("  action: AUDIT"));
    valid("dry-run-valid-deny", &ap("  action: DENY\n  rules: [{}]"));
    invalid(
        "rule-nil",
        &ap("  action: ALLOW\n  rules:\n  - "),
        "spec.rules[0]",
    );
    invalid(
        "rule-nil-second",
        &ap("  action: DENY\n  rules:\n  - {}\n  - null"),
        "spec.rules[1]",
    );
}

// `validateWorkloadSelector`, used by `ValidateAuthorizationPolicy` and
// `ValidatePeerAuthentication`: "empty key is not supported in selector",
// "wildcard is not supported in selector" (a `*` in a key or a value);
// cases "selector-empty-key", "selector-wildcard-value",
// "selector-wildcard-key", while "selector-empty-value" and
// "selector-empty-labels" stay valid.
#[test]
fn workload_selector_empty_key_or_wildcard_is_refused() {
    for (make, kind) in [(ap as fn(&str) -> String, "ap"), (pa, "pa")] {
        let sel = |labels: &str| make(&format!("  selector:\n    matchLabels: {labels}"));
        let case = |name: &str| format!("{kind} {name}");
        invalid(
            &case("selector-empty-key"),
            &sel("{app: httpbin, '': v1}"),
            "spec.selector.matchLabels",
        );
        invalid(
            &case("selector-wildcard-value"),
            &sel("{app: 'httpbin-*'}"),
            "spec.selector.matchLabels",
        );
        invalid(
            &case("selector-wildcard-key"),
            &sel("{'app-*': httpbin}"),
            "spec.selector.matchLabels",
        );
        valid(
            &case("selector-empty-value"),
            &sel("{app: '', version: v1}"),
        );
        valid(&case("selector-empty-labels"), &make("  selector: {}"));
    }
}

// `ValidateAuthorizationPolicy`: "cannot set serviceAccounts with namespaces
// or principals" when a source has `principals`, `notPrincipals`,
// `namespaces` or `notNamespaces` beside `serviceAccounts` or
// `notServiceAccounts` (case "serviceAccounts and namespaces"; "good
// serviceAccounts" and upstream builder testdata http/allow-full-rule-in.yaml,
// with `serviceAccounts` and `notServiceAccounts` together, stay valid).
#[test]
fn service_accounts_with_principals_or_namespaces_are_refused() {
    let src = |fields: &str| {
        ap(&format!(
            "  rules:\n  - from:\n    - source: {{{fields}}}\n    - source: {{principals: [sa2]}}"
        ))
    };
    for other in [
        "namespaces: [ns]",
        "notNamespaces: [ns]",
        "principals: [p]",
        "notPrincipals: [p]",
    ] {
        for sa in [
            "serviceAccounts: [ns1/sa1]",
            "notServiceAccounts: [ns1/sa1]",
        ] {
            invalid(
                "serviceAccounts and namespaces",
                &src(&format!("{sa}, {other}")),
                "spec.rules[0].from[0].source",
            );
        }
    }
    valid(
        "good serviceAccounts",
        &src("serviceAccounts: [ns1/sa1, ns2/sa2]"),
    );
    valid(
        "allow-full-rule-in.yaml",
        &src(
            "serviceAccounts: [my-ns/my-sa, sa-only], notServiceAccounts: [my-ns/my-sa-not, sa-not-only], ipBlocks: [1.2.3.4]",
        ),
    );
}

// `security.ValidatePorts` (operation `ports`/`notPorts` and the `when` key
// `destination.port`): `strconv.ParseUint(port, 10, 32)` then `p > 65535`,
// so `0` is a valid port (it matches no connection) while a sign, a name or
// 65536 is refused (case "invalid ip and port in ipBlocks": "port1").
#[test]
fn authorization_ports_are_unsigned_decimals_up_to_65535() {
    let op = |ports: &str| ap(&format!("  rules:\n  - to:\n    - operation: {{{ports}}}"));
    let when = |v: &str| {
        ap(&format!(
            "  rules:\n  - when:\n    - {{key: destination.port, values: [{v:?}]}}"
        ))
    };
    for ok in ["0", "80", "080", "65535"] {
        valid("ValidatePorts", &op(&format!("ports: [{ok:?}]")));
        valid("ValidatePorts", &op(&format!("notPorts: [{ok:?}]")));
        valid("ValidatePorts", &when(ok));
    }
    for bad in ["+80", "-1", "65536", "port1", " 80", "8 0"] {
        invalid(bad, &op(&format!("ports: [\"80\", {bad:?}]")), "ports[1]");
        invalid(bad, &op(&format!("notPorts: [{bad:?}]")), "notPorts[0]");
        invalid(bad, &when(bad), "when[0].values[0]");
    }
}

// `ValidatePeerAuthentication`: "port level mTLS, if defined, must have at
// least one element" (case "empty port level mtls") and "port must be in
// range 1..65535" (case "port 0"); the keys are `uint32`, which protojson
// reads as unsigned decimals, so a signed key is no port either.
#[test]
fn peer_authentication_port_level_mtls_keys() {
    let sel = "  selector:\n    matchLabels: {app: httpbin}\n";
    invalid(
        "empty port level mtls",
        &pa(&format!("{sel}  portLevelMtls: {{}}")),
        "spec.portLevelMtls",
    );
    invalid(
        "port 0",
        &pa(&format!("{sel}  portLevelMtls:\n    0: {{mode: UNSET}}")),
        "spec.portLevelMtls",
    );
    invalid(
        "signed port",
        &pa(&format!(
            "{sel}  portLevelMtls:\n    '+8080': {{mode: STRICT}}"
        )),
        "spec.portLevelMtls",
    );
    valid(
        "port level",
        &pa(&format!("{sel}  portLevelMtls:\n    8080: {{mode: UNSET}}")),
    );
    valid(
        "quoted port",
        &pa(&format!(
            "{sel}  portLevelMtls:\n    '8080': {{mode: DISABLE}}"
        )),
    );
}

// Upstream case "good": two sources, two operations, and the conditions
// `source.ip` and `request.headers[:authority]` (a pseudo-header).
#[test]
fn upstream_good_policy_loads() {
    valid(
        "good",
        &ap(r#"  selector:
    matchLabels: {app: httpbin, version: v1}
  rules:
  - from:
    - source: {principals: [sa1]}
    - source: {principals: [sa2]}
    to:
    - operation: {methods: [GET]}
    - operation: {methods: [POST]}
    when:
    - {key: source.ip, values: [1.2.3.4, 5.6.7.0/24]}
    - {key: "request.headers[:authority]", values: [v1, v2]}"#),
    );
    invalid(
        "value-empty",
        &ap(r#"  rules:
  - when:
    - {key: "request.headers[:authority]", values: [v1, ""]}"#),
        "when[0].values[1]",
    );
}

// `security.CheckServiceAccount` (pkg/config/security/security.go), applied
// to `serviceAccounts`, `notServiceAccounts` and the values of the `when`
// key `source.serviceAccount`: "may not have more than 16 values" ("Arbitrary
// limit to avoid unbounded configuration sizes") and "value cannot exceed 320
// characters", counted on the value as written.
#[test]
fn service_account_values_are_bounded() {
    let list = |n: usize| {
        (0..n)
            .map(|i| format!("ns/sa{i}"))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let src = |field: &str, values: &str| {
        ap(&format!(
            "  rules:\n  - from:\n    - source: {{{field}: [{values}]}}"
        ))
    };
    let when = |field: &str, values: &str| {
        ap(&format!(
            "  rules:\n  - when:\n    - {{key: source.serviceAccount, {field}: [{values}]}}"
        ))
    };
    for field in ["serviceAccounts", "notServiceAccounts"] {
        valid("16 values", &src(field, &list(16)));
        invalid(
            "17 values",
            &src(field, &list(17)),
            &format!("spec.rules[0].from[0].source.{field}"),
        );
    }
    for field in ["values", "notValues"] {
        valid("16 values", &when(field, &list(16)));
        invalid(
            "17 values",
            &when(field, &list(17)),
            &format!("spec.rules[0].when[0].{field}"),
        );
    }
    // 320 characters as written, the namespace included; a bare name is
    // measured without the policy's namespace it stands for.
    let long = |n: usize| format!("ns/{}", "a".repeat(n - 3));
    valid("320 characters", &src("serviceAccounts", &long(320)));
    valid("320 characters", &src("serviceAccounts", &"a".repeat(320)));
    invalid(
        "321 characters",
        &src("serviceAccounts", &format!("x, {}", long(321))),
        "spec.rules[0].from[0].source.serviceAccounts[1]",
    );
    invalid(
        "321 characters",
        &when("values", &"a".repeat(321)),
        "spec.rules[0].when[0].values[0]",
    );
}

// `security.ValidateIPs` (ipBlocks, notIpBlocks, remoteIpBlocks,
// notRemoteIpBlocks and the `when` keys source.ip, remote.ip,
// destination.ip): a value with `/` must pass Go's `netip.ParsePrefix`,
// any other `netip.ParseAddr`. Both refuse an IPv4 octet with a leading
// zero ("IPv4 field has octet with leading zero", `01.2.3.4` could be read
// as octal) and ParsePrefix a prefix length with one ("bad bits after
// slash"); both accept host bits under the mask and IPv4-mapped IPv6.
#[test]
fn ip_values_parse_as_go_netip_does() {
    let src = |v: &str| {
        ap(&format!(
            "  rules:\n  - from:\n    - source: {{ipBlocks: [1.2.3.4, {v:?}]}}"
        ))
    };
    let when = |key: &str, v: &str| {
        ap(&format!(
            "  rules:\n  - when:\n    - {{key: {key}, notValues: [{v:?}]}}"
        ))
    };
    for ok in [
        "1.2.3.4/24",
        "10.0.0.0/8",
        "::ffff:1.2.3.4/120",
        "2001:db8::1",
        "0.0.0.0/0",
    ] {
        valid(ok, &src(ok));
        valid(ok, &when("source.ip", ok));
    }
    for bad in [
        "1.2.3.04/24",
        "01.2.3.4",
        "1.2.3.4/024",
        "1.2.3.4/33",
        "1.2.3.4/",
        "1.2.3",
    ] {
        invalid(bad, &src(bad), "spec.rules[0].from[0].source.ipBlocks[1]");
        for key in ["source.ip", "remote.ip", "destination.ip"] {
            invalid(bad, &when(key, bad), "spec.rules[0].when[0].notValues[0]");
        }
    }
}

// The rest of upstream `TestValidateAuthorizationPolicy`'s table, each
// refused at the field it names: nil and empty sources and operations
// ("`from.source` must not be nil", "`to.operation` must not be empty"),
// an empty string in any list (`security.CheckEmptyValues`), conditions
// without a key, without values, with a bad IP or an unknown key, and the
// CUSTOM cases (Palisade refuses CUSTOM by name) and "provider-wrong-action".
#[test]
fn upstream_invalid_policies_are_refused_at_their_field() {
    let rule = |r: &str| ap(&format!("  rules:\n  - {r}"));
    let src = |f: &str| rule(&format!("from:\n    - source: {{{f}: [\"v1\", \"\"]}}"));
    let op = |f: &str| rule(&format!("to:\n    - operation: {{{f}: [\"v1\", \"\"]}}"));
    let mut cases = vec![
        (
            "from-empty",
            rule("from: []"),
            "spec.rules[0].from".to_owned(),
        ),
        (
            "source-nil",
            rule("from:\n    - {}"),
            "spec.rules[0].from[0].source".to_owned(),
        ),
        (
            "source-empty",
            rule("from:\n    - source: {}"),
            "spec.rules[0].from[0].source".to_owned(),
        ),
        ("to-empty", rule("to: []"), "spec.rules[0].to".to_owned()),
        (
            "operation-nil",
            rule("to:\n    - {}"),
            "spec.rules[0].to[0].operation".to_owned(),
        ),
        (
            "operation-empty",
            rule("to:\n    - operation: {}"),
            "spec.rules[0].to[0].operation".to_owned(),
        ),
        (
            "condition-key-missing",
            rule("when:\n    - values: [v1, v2]"),
            "spec.rules[0].when[0]".to_owned(),
        ),
        (
            "condition-key-empty",
            rule("when:\n    - {key: '', values: [v1, v2]}"),
            "spec.rules[0].when[0].key".to_owned(),
        ),
        (
            "condition-value-missing",
            rule("when:\n    - key: source.principal"),
            "spec.rules[0].when[0]".to_owned(),
        ),
        (
            "condition-value-invalid",
            rule("when:\n    - {key: source.ip, values: [a.b.c.d]}"),
            "spec.rules[0].when[0].values[0]".to_owned(),
        ),
        (
            "condition-notValue-invalid",
            rule("when:\n    - {key: source.ip, notValues: [a.b.c.d]}"),
            "spec.rules[0].when[0].notValues[0]".to_owned(),
        ),
        (
            "condition-unknown",
            rule("when:\n    - {key: key1, values: [v1]}"),
            "spec.rules[0].when[0].key".to_owned(),
        ),
        (
            "custom-good",
            ap("  action: CUSTOM\n  provider: {name: my-custom-authz}\n  rules: [{}]"),
            "spec.action".to_owned(),
        ),
        (
            "custom-nil-provider",
            ap("  action: CUSTOM\n  rules: [{}]"),
            "spec.action".to_owned(),
        ),
        (
            "provider-wrong-action",
            ap("  action: ALLOW\n  provider: {name: ''}\n  rules: [{}]"),
            "spec.provider".to_owned(),
        ),
    ];
    // The `*-empty` cases: "empty value not allowed, found in <field>".
    for f in [
        "principals",
        "notPrincipals",
        "namespaces",
        "notNamespaces",
        "ipBlocks",
        "notIpBlocks",
        "remoteIpBlocks",
        "notRemoteIpBlocks",
    ] {
        let field = format!("spec.rules[0].from[0].source.{f}[1]");
        cases.push(("source value empty", src(f), field));
    }
    for f in [
        "hosts",
        "notHosts",
        "ports",
        "notPorts",
        "methods",
        "notMethods",
        "paths",
        "notPaths",
    ] {
        let field = format!("spec.rules[0].to[0].operation.{f}[1]");
        cases.push(("operation value empty", op(f), field));
    }
    for (case, doc, field) in &cases {
        invalid(case, doc, field);
    }
}

// `security.CheckValidPathTemplate` (pkg/config/security/security.go) and
// its `TestCheckValidPathTemplate`: `{*}` and `{**}` only as whole
// segments, `{**}` the last operator, no other `{`/`}`, no `*`/`**` glob
// beside a template, and the other segments RFC 3986 pchars.
#[test]
fn upstream_path_templates() {
    let paths = |p: &str| {
        ap(&format!(
            "  rules:\n  - to:\n    - operation: {{paths: [{p:?}]}}"
        ))
    };
    for ok in [
        "/{*}/foo",
        "/{*}/foo/",
        "/foo/{**}/bar",
        "/foo/bar/{**}",
        "/foo/{*}/{**}",
        "/{**}",
    ] {
        valid(ok, &paths(ok));
    }
    for bad in [
        "/{*}/foo/{}/bar",
        "/foo/{*}/bar/*",
        "/foo/{*}/bar/**/buzz",
        "/foo/{buzz}/bar/{**}.txt",
        "/foo/{buzz=*}/bar/{**}.txt",
        "/{*}/foo/{buzz=**}/bar",
        "/foo/{**}/{*}",
        "/foo/{**}/bar/{**}",
        "/foo/{*}.txt",
        "/foo/{bar}",
        // The rest of TestCheckValidPathTemplate's table.
        "/foo/{**}buzz/bar",
        "/foo/{buzz}/bar",
        "/{buzz}",
        "/foo/{buzz}/bar/{**}",
        "/foo/{buzz=*}/bar/{**}",
        "/{*}/foo/{**}bar",
        "/{*}/foo/{*}.txt",
        "/{*}/foo/{temp",
        "/{*}/foo/temp}/bar",
        "/{*}/foo/temp}/*",
        "/{**}/foo/temp/{*}/bar",
        "/{**}/{**}",
        "/{**}/foo/temp/{**}/bar",
        "/{*}/foo/?abc",
    ] {
        invalid(bad, &paths(bad), "spec.rules[0].to[0].operation.paths[0]");
    }
}
