//! NetworkPolicy validation against the API server's: the cases of
//! kubernetes/kubernetes `pkg/apis/networking/validation/validation_test.go`
//! (`TestValidateNetworkPolicy`, success and error tables), run through the
//! loader. Each error case lists the field paths upstream reports
//! (`field.ErrorList`'s `Field`); the loader must report exactly those.
mod policy_support;

use policy_support::try_load;

fn np(spec: &str) -> String {
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: bar\n  name: foo\nspec:\n{spec}"
    )
}

/// The field paths of the loader's errors for one NetworkPolicy (empty: it loads).
fn error_fields(doc: &str) -> Vec<String> {
    match try_load(&[doc]) {
        Ok(_) => Vec::new(),
        Err(e) => {
            let mut fields: Vec<String> =
                e.0.iter()
                    .map(|e| e.field.clone().unwrap_or_default())
                    .collect();
            fields.sort();
            fields
        }
    }
}

fn expect_ok(name: &str, spec: &str) {
    let doc = np(spec);
    if let Err(e) = try_load(&[&doc]) {
        panic!("{name}: upstream accepts it, we refuse it: {e}\n{doc}");
    }
}

fn expect_err(name: &str, spec: &str, fields: &[&str]) {
    let doc = np(spec);
    let mut want: Vec<String> = fields.iter().map(|s| s.to_string()).collect();
    want.sort();
    let got = error_fields(&doc);
    assert_eq!(got, want, "{name}: error fields differ\n{doc}");
}

// TestValidateNetworkPolicy, successCases.
#[test]
fn upstream_success_cases_load() {
    let cases = [
        (
            "empty ingress",
            "  podSelector: {matchLabels: {a: b}}\n  ingress: []\n",
        ),
        (
            "empty from and ports",
            "  podSelector: {matchLabels: {a: b}}\n  ingress:\n    - from: []\n      ports: []\n",
        ),
        (
            "ports",
            "  podSelector: {matchLabels: {a: b}}\n  ingress:\n    - ports:\n        - port: 80\n        - protocol: TCP\n        - {protocol: TCP, port: 443}\n        - {protocol: UDP, port: dns}\n        - {protocol: SCTP, port: 7777}\n",
        ),
        (
            "from podSelector",
            "  podSelector: {matchLabels: {a: b}}\n  ingress:\n    - from:\n        - podSelector: {matchLabels: {c: d}}\n",
        ),
        (
            "from namespaceSelector",
            "  podSelector: {matchLabels: {a: b}}\n  ingress:\n    - from:\n        - namespaceSelector: {matchLabels: {c: d}}\n",
        ),
        (
            "from namespaceSelector and podSelector",
            "  podSelector: {matchLabels: {a: b}}\n  ingress:\n    - from:\n        - namespaceSelector: {matchLabels: {c: d}}\n          podSelector: {matchLabels: {e: f}}\n",
        ),
        (
            "egress namespaceSelector, ingress ipBlock",
            "  podSelector: {matchLabels: {a: b}}\n  egress:\n    - to:\n        - namespaceSelector: {matchLabels: {c: d}}\n  ingress:\n    - from:\n        - ipBlock: {cidr: 192.168.0.0/16, except: [192.168.3.0/24, 192.168.4.0/24]}\n",
        ),
        (
            "egress ipBlock, policyTypes Egress",
            "  podSelector: {matchLabels: {a: b}}\n  egress:\n    - to:\n        - ipBlock: {cidr: 192.168.0.0/16, except: [192.168.3.0/24, 192.168.4.0/24]}\n  policyTypes: [Egress]\n",
        ),
        (
            "egress ipBlock, policyTypes Ingress and Egress",
            "  podSelector: {matchLabels: {a: b}}\n  egress:\n    - to:\n        - ipBlock: {cidr: 192.168.0.0/16, except: [192.168.3.0/24, 192.168.4.0/24]}\n  policyTypes: [Ingress, Egress]\n",
        ),
        (
            "egress ports",
            "  podSelector: {matchLabels: {a: b}}\n  egress:\n    - ports:\n        - port: 80\n        - protocol: TCP\n        - {protocol: TCP, port: 443}\n        - {protocol: UDP, port: dns}\n        - {protocol: SCTP, port: 7777}\n",
        ),
        (
            "IPv6 ipBlock",
            "  podSelector: {matchLabels: {a: b}}\n  ingress:\n    - from:\n        - ipBlock: {cidr: 'fd00:192:168::/48', except: ['fd00:192:168:3::/64', 'fd00:192:168:4::/64']}\n",
        ),
        (
            "IPv6 egress ipBlock",
            "  podSelector: {matchLabels: {a: b}}\n  egress:\n    - to:\n        - ipBlock: {cidr: 'fd00:192:168::/48', except: ['fd00:192:168:3::/64', 'fd00:192:168:4::/64']}\n  policyTypes: [Ingress, Egress]\n",
        ),
        (
            "endPort",
            "  podSelector: {matchLabels: {a: b}}\n  egress:\n    - ports:\n        - {protocol: TCP, port: 32000, endPort: 32768}\n        - {protocol: UDP, port: 32000, endPort: 32000}\n        - {protocol: SCTP, port: 1, endPort: 65535}\n",
        ),
        // IsValidCIDRForLegacyField: a legacy field may hold an IPv6 CIDR
        // that is not in RFC 5952 canonical form (only warned about).
        (
            "non-canonical IPv6 cidr",
            "  podSelector: {}\n  ingress:\n    - from:\n        - ipBlock: {cidr: 'FD00:0192:0168:0::/48', except: ['fd00:192:168:3:0:0:0:0/64']}\n",
        ),
    ];
    for (name, spec) in cases {
        expect_ok(name, spec);
    }
}

// TestValidateNetworkPolicy, errorCases (selectors, ports, peers, policyTypes).
#[test]
fn upstream_error_cases_name_the_field() {
    let bad_labels = "{matchLabels: {'NoUppercaseOrSpecialCharsLike=Equals': b}}";
    expect_err(
        "namespaceSelector and ipBlock",
        "  podSelector: {matchLabels: {a: b}}\n  ingress:\n    - from:\n        - namespaceSelector: {matchLabels: {c: d}}\n          ipBlock: {cidr: 192.168.0.0/16, except: [192.168.3.0/24, 192.168.4.0/24]}\n",
        &["spec.ingress[0].from[0]"],
    );
    expect_err(
        "podSelector and ipBlock",
        "  podSelector: {matchLabels: {a: b}}\n  egress:\n    - to:\n        - podSelector: {matchLabels: {c: d}}\n          ipBlock: {cidr: 192.168.0.0/16, except: [192.168.3.0/24, 192.168.4.0/24]}\n",
        &["spec.egress[0].to[0]"],
    );
    expect_err(
        "missing from and to type",
        "  podSelector: {matchLabels: {a: b}}\n  ingress:\n    - from: [{}]\n  egress:\n    - to: [{}]\n",
        &["spec.egress[0].to[0]", "spec.ingress[0].from[0]"],
    );
    expect_err(
        "invalid spec.podSelector",
        &format!(
            "  podSelector: {bad_labels}\n  ingress:\n    - from:\n        - namespaceSelector: {{matchLabels: {{c: d}}}}\n"
        ),
        &["spec.podSelector.matchLabels"],
    );
    for dir in ["ingress", "egress"] {
        expect_err(
            &format!("invalid {dir}.ports.protocol"),
            &format!(
                "  podSelector: {{}}\n  {dir}:\n    - ports:\n        - {{protocol: ICMP, port: 80}}\n"
            ),
            &[&format!("spec.{dir}[0].ports[0].protocol")],
        );
        expect_err(
            &format!("invalid {dir}.ports.port (int)"),
            &format!(
                "  podSelector: {{}}\n  {dir}:\n    - ports:\n        - {{protocol: TCP, port: 123456789}}\n"
            ),
            &[&format!("spec.{dir}[0].ports[0].port")],
        );
        expect_err(
            &format!("invalid {dir}.ports.port (str)"),
            &format!(
                "  podSelector: {{}}\n  {dir}:\n    - ports:\n        - {{protocol: TCP, port: '!@#$'}}\n"
            ),
            &[&format!("spec.{dir}[0].ports[0].port")],
        );
    }
    expect_err(
        "invalid ingress.from.podSelector",
        &format!(
            "  podSelector: {{}}\n  ingress:\n    - from:\n        - podSelector: {bad_labels}\n"
        ),
        &["spec.ingress[0].from[0].podSelector.matchLabels"],
    );
    expect_err(
        "invalid egress.to.podSelector",
        &format!(
            "  podSelector: {{}}\n  egress:\n    - to:\n        - podSelector: {bad_labels}\n"
        ),
        &["spec.egress[0].to[0].podSelector.matchLabels"],
    );
    expect_err(
        "invalid ingress.from.namespaceSelector",
        &format!(
            "  podSelector: {{}}\n  ingress:\n    - from:\n        - namespaceSelector: {bad_labels}\n"
        ),
        &["spec.ingress[0].from[0].namespaceSelector.matchLabels"],
    );
    expect_err(
        "invalid policyTypes",
        "  podSelector: {matchLabels: {a: b}}\n  egress:\n    - to:\n        - ipBlock: {cidr: 192.168.0.0/16, except: [192.168.3.0/24, 192.168.4.0/24]}\n  policyTypes: [foo, bar]\n",
        &["spec.policyTypes[0]", "spec.policyTypes[1]"],
    );
    expect_err(
        "too many policyTypes",
        "  podSelector: {matchLabels: {a: b}}\n  egress:\n    - to:\n        - ipBlock: {cidr: 192.168.0.0/16, except: [192.168.3.0/24, 192.168.4.0/24]}\n  policyTypes: [foo, bar, baz]\n",
        &["spec.policyTypes"],
    );
}

// TestValidateNetworkPolicy, errorCases on ipBlock (ValidateIPBlock).
#[test]
fn upstream_ip_block_error_cases_name_the_field() {
    let block = |b: &str| {
        format!(
            "  podSelector: {{matchLabels: {{a: b}}}}\n  ingress:\n    - from:\n        - ipBlock: {b}\n"
        )
    };
    let f = "spec.ingress[0].from[0].ipBlock";
    expect_err(
        "missing cidr field",
        &block("{except: [192.168.8.0/24, 192.168.9.0/24]}"),
        &[&format!("{f}.cidr")],
    );
    expect_err(
        "empty cidr field",
        &block("{cidr: ''}"),
        &[&format!("{f}.cidr")],
    );
    expect_err(
        "invalid cidr format",
        &block("{cidr: 192.168.5.6, except: [192.168.1.0/24, 192.168.2.0/24]}"),
        &[&format!("{f}.cidr")],
    );
    expect_err(
        "invalid ipv6 cidr format",
        &block("{cidr: 'fd00:192:168::', except: ['fd00:192:168:3::/64', 'fd00:192:168:4::/64']}"),
        &[&format!("{f}.cidr")],
    );
    expect_err(
        "except field is an empty string",
        &block("{cidr: 192.168.8.0/24, except: ['', ' ']}"),
        &[&format!("{f}.except[0]"), &format!("{f}.except[1]")],
    );
    expect_err(
        "except IP is outside of CIDR range",
        &block("{cidr: 192.168.8.0/24, except: [192.168.9.0/24]}"),
        &[&format!("{f}.except[0]")],
    );
    expect_err(
        "except IP is not strictly within CIDR range",
        &block("{cidr: 192.168.0.0/24, except: [192.168.0.0/24]}"),
        &[&format!("{f}.except[0]")],
    );
    expect_err(
        "except IPv6 is outside of CIDR range",
        &block("{cidr: 'fd00:192:168:1::/64', except: ['fd00:192:168:2::/64']}"),
        &[&format!("{f}.except[0]")],
    );
    expect_err(
        "except of the other IP family",
        &block("{cidr: 10.0.0.0/8, except: ['fd00::/64']}"),
        &[&format!("{f}.except[0]")],
    );
    expect_err(
        "every bad except is reported",
        &block("{cidr: 192.168.8.0/24, except: [192.168.9.0/24, 192.168.8.0/25, 10.0.0.0/8]}"),
        &[&format!("{f}.except[0]"), &format!("{f}.except[2]")],
    );
}

// ValidateNetworkPolicyPort: endPort "must be greater than or equal to
// `port`", "may not be specified when `port` is non-numeric", "may not be
// specified when `port` is not specified", and must itself be a valid port
// number (IsValidPortNum).
#[test]
fn upstream_end_port_error_cases_name_the_field() {
    let ports = |p: &str| format!("  podSelector: {{}}\n  egress:\n    - ports:\n        - {p}\n");
    let f = "spec.egress[0].ports[0]";
    expect_err(
        "endPort < port",
        &ports("{port: 32768, endPort: 32000}"),
        &[&format!("{f}.endPort")],
    );
    expect_err(
        "endPort with named port",
        &ports("{port: dns, endPort: 32000}"),
        &[&format!("{f}.endPort")],
    );
    expect_err(
        "endPort without port",
        &ports("{endPort: 32000}"),
        &[&format!("{f}.endPort")],
    );
    expect_err(
        "endPort out of range",
        &ports("{port: 32000, endPort: 65536}"),
        &[&format!("{f}.endPort")],
    );
    // Both the port and the endPort are wrong: both are reported.
    expect_err(
        "port and endPort out of range",
        &ports("{port: 0, endPort: 65536}"),
        &[&format!("{f}.endPort"), &format!("{f}.port")],
    );
    expect_err(
        "bad protocol and bad port",
        &ports("{protocol: tcp, port: 0}"),
        &[&format!("{f}.port"), &format!("{f}.protocol")],
    );
}

// KEP-4858 (StrictIPCIDRValidation, on by default): ipBlock.cidr and
// ipBlock.except are "legacy" CIDR fields, validated by
// IsValidCIDRForLegacyField with strict validation, which refuses a value
// with bits set beyond the prefix length ("must not have bits set beyond
// the prefix length": 192.168.1.5/24 could mean 192.168.1.0/24 or
// 192.168.1.5/32), leading 0s in the IP or the prefix length, and
// IPv4-mapped IPv6 addresses. Non-canonical IPv6 text stays valid.
#[test]
fn ip_block_cidrs_are_validated_strictly() {
    let block =
        |b: &str| format!("  podSelector: {{}}\n  egress:\n    - to:\n        - ipBlock: {b}\n");
    let f = "spec.egress[0].to[0].ipBlock";
    for bad in [
        "192.168.1.5/24",
        "10.0.0.1/8",
        "2001:db8::1/32",
        "010.0.0.0/8",
        "10.0.0.0/08",
        "'::ffff:10.0.0.0/104'",
        "'fe80::%eth0/64'",
        "10.0.0.0/33",
        "' 10.0.0.0/8'",
    ] {
        expect_err(
            bad,
            &block(&format!("{{cidr: {bad}}}")),
            &[&format!("{f}.cidr")],
        );
    }
    expect_err(
        "except with host bits",
        &block("{cidr: 10.0.0.0/8, except: [10.1.2.3/16]}"),
        &[&format!("{f}.except[0]")],
    );
    for good in [
        "10.0.0.0/8",
        "10.1.2.3/32",
        "0.0.0.0/0",
        "'::/0'",
        "'2001:DB8::/32'",
    ] {
        expect_ok(good, &block(&format!("{{cidr: {good}}}")));
    }
}

// ValidateNetworkPolicy starts with ValidateObjectMeta(&np.ObjectMeta, true,
// ValidateNetworkPolicyName, ...): the name is a DNS-1123 subdomain
// (NameIsDNSSubdomain) and the namespace a DNS-1123 label
// (ValidateNamespaceName).
#[test]
fn network_policy_name_and_namespace_are_validated() {
    let doc = |ns: &str, name: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: {ns}\n  name: {name}\nspec:\n  podSelector: {{}}\n"
        )
    };
    for bad in [
        "Foo",
        "foo_bar",
        "-foo",
        "foo.",
        "'foo bar'",
        &"a".repeat(254),
    ] {
        assert_eq!(error_fields(&doc("bar", bad)), ["metadata.name"], "{bad}");
    }
    for bad in ["Bar", "bar.baz", "bar_baz", &"b".repeat(64)] {
        assert_eq!(
            error_fields(&doc(bad, "foo")),
            ["metadata.namespace"],
            "{bad}"
        );
    }
    for good in ["foo", "foo.bar", "allow-80", "0a", &"a".repeat(253)] {
        assert!(error_fields(&doc("bar", good)).is_empty(), "{good}");
    }
    assert!(error_fields(&doc(&"b".repeat(63), "foo")).is_empty());
}

// kubectl apply validates with --validate=strict by default, and the API
// server then refuses what it cannot decode: `strict decoding error: unknown
// field "spec.ingress[0].form"`. A misspelt key must not be dropped, since a
// rule without its `from` allows every source.
#[test]
fn unknown_network_policy_fields_are_errors() {
    let cases = [
        (
            "  podSelector: {}\n  ingress:\n    - form:\n        - podSelector: {matchLabels: {a: b}}\n",
            "spec.ingress[0].form",
        ),
        (
            "  podSelector: {}\n  egress:\n    - too:\n        - podSelector: {}\n",
            "spec.egress[0].too",
        ),
        ("  podselector: {}\n  ingress: []\n", "spec.podselector"),
        ("  podSelector: {}\n  ingres: []\n", "spec.ingres"),
        (
            "  podSelector: {matchlabels: {a: b}}\n",
            "spec.podSelector.matchlabels",
        ),
        (
            "  podSelector: {matchExpressions: [{key: a, operator: In, value: [b]}]}\n",
            "spec.podSelector.matchExpressions[0].value",
        ),
        (
            "  podSelector: {}\n  ingress:\n    - from:\n        - namespaceSelector: {}\n          podselector: {matchLabels: {a: b}}\n",
            "spec.ingress[0].from[0].podselector",
        ),
        (
            "  podSelector: {}\n  ingress:\n    - from:\n        - ipBlock: {cidr: 10.0.0.0/8, exept: [10.1.0.0/16]}\n",
            "spec.ingress[0].from[0].ipBlock.exept",
        ),
        (
            "  podSelector: {}\n  ingress:\n    - ports:\n        - {port: 80, end_port: 90}\n",
            "spec.ingress[0].ports[0].end_port",
        ),
    ];
    for (spec, field) in cases {
        assert_eq!(error_fields(&np(spec)), [field], "{spec}");
    }
    let top = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: bar\n  name: foo\n  lables: {a: b}\nspec:\n  podSelector: {}\nspecs: {}\n";
    assert_eq!(error_fields(top), ["metadata.lables", "specs"]);
    // Every field of the API is known.
    let full = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: bar\n  name: foo\n  labels: {a: b}\n  annotations: {a: b}\n  uid: 0e0b5d39-8b4b-4a7e-9c1b-6b2c1f8c1d11\n  resourceVersion: '1'\n  generation: 1\n  creationTimestamp: '2024-01-01T00:00:00Z'\n  managedFields: []\nstatus: {}\nspec:\n  podSelector:\n    matchLabels: {a: b}\n    matchExpressions: [{key: c, operator: In, values: [d]}]\n  policyTypes: [Ingress, Egress]\n  ingress:\n    - from:\n        - podSelector: {}\n          namespaceSelector: {}\n        - ipBlock: {cidr: 10.0.0.0/8, except: [10.1.0.0/16]}\n      ports:\n        - {protocol: TCP, port: 80, endPort: 90}\n  egress:\n    - to:\n        - podSelector: {}\n      ports:\n        - {port: dns, protocol: UDP}\n";
    assert!(error_fields(full).is_empty(), "{:?}", error_fields(full));
}

// apimachinery `ValidateLabelSelector` (staging/src/k8s.io/apimachinery/pkg/
// apis/meta/v1/validation/validation.go), called by ValidateNetworkPolicySpec
// and ValidateNetworkPolicyPeer for every selector: `ValidateLabels` reports
// a bad key or value at `matchLabels`, and `ValidateLabelSelectorRequirement`
// reports `values` ("must be specified when `operator` is 'In' or 'NotIn'",
// "may not be specified when `operator` is 'Exists' or 'DoesNotExist'"),
// `operator` ("not a valid selector operator"), `key` (ValidateLabelName,
// also for an empty key) and `values[j]` (IsValidLabelValue). Every problem
// of every requirement is reported.
#[test]
fn label_selector_errors_name_the_upstream_field() {
    let peer = "spec.ingress[0].from[0].podSelector";
    let from = |sel: &str| {
        format!("  podSelector: {{}}\n  ingress:\n    - from:\n        - podSelector: {sel}\n")
    };
    let cases: [(&str, &[String]); 9] = [
        (
            "{matchExpressions: [{key: pod, operator: In, values: []}]}",
            &[format!("{peer}.matchExpressions[0].values")],
        ),
        (
            "{matchExpressions: [{key: pod, operator: NotIn}]}",
            &[format!("{peer}.matchExpressions[0].values")],
        ),
        (
            "{matchExpressions: [{key: pod, operator: Exists, values: [a]}]}",
            &[format!("{peer}.matchExpressions[0].values")],
        ),
        (
            "{matchExpressions: [{key: pod, operator: in, values: [a]}]}",
            &[format!("{peer}.matchExpressions[0].operator")],
        ),
        (
            "{matchExpressions: [{key: '', operator: Exists}]}",
            &[format!("{peer}.matchExpressions[0].key")],
        ),
        (
            "{matchExpressions: [{key: 'a/b/c', operator: DoesNotExist}]}",
            &[format!("{peer}.matchExpressions[0].key")],
        ),
        (
            "{matchExpressions: [{key: pod, operator: In, values: [a, 'b c']}]}",
            &[format!("{peer}.matchExpressions[0].values[1]")],
        ),
        (
            "{matchLabels: {pod: 'a!'}}",
            &[format!("{peer}.matchLabels")],
        ),
        (
            "{matchLabels: {'-x': a}, matchExpressions: [{key: pod, operator: Exists}, {key: '', operator: Equals, values: ['-']}]}",
            &[
                format!("{peer}.matchExpressions[1].key"),
                format!("{peer}.matchExpressions[1].operator"),
                format!("{peer}.matchExpressions[1].values[0]"),
                format!("{peer}.matchLabels"),
            ],
        ),
    ];
    for (sel, fields) in cases {
        let fields: Vec<&str> = fields.iter().map(String::as_str).collect();
        expect_err(sel, &from(sel), &fields);
    }
    // The policy's own podSelector and a namespaceSelector likewise.
    expect_err(
        "spec.podSelector",
        "  podSelector: {matchExpressions: [{key: pod, operator: In}]}\n",
        &["spec.podSelector.matchExpressions[0].values"],
    );
    expect_err(
        "namespaceSelector",
        "  podSelector: {}\n  egress:\n    - to:\n        - namespaceSelector: {matchExpressions: [{key: ns, operator: Gt, values: ['1']}]}\n",
        &["spec.egress[0].to[0].namespaceSelector.matchExpressions[0].operator"],
    );
    // Valid: repeated values, an empty value, a prefixed key.
    expect_ok(
        "valid requirements",
        &from(
            "{matchExpressions: [{key: example.com/pod, operator: In, values: [a, a, '']}, {key: x, operator: DoesNotExist}]}",
        ),
    );
}

// ValidateNetworkPolicy begins with ValidateObjectMeta, which also runs
// ValidateLabels on `metadata.labels` and ValidateAnnotations on
// `metadata.annotations` (keys are qualified names checked in lower case;
// keys and values together at most 256 KiB, TotalAnnotationSizeLimitB).
#[test]
fn network_policy_metadata_labels_and_annotations_are_validated() {
    let doc = |meta: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: bar\n  name: foo\n{meta}spec:\n  podSelector: {{}}\n"
        )
    };
    assert_eq!(
        error_fields(&doc("  labels: {'bad key': a}\n")),
        ["metadata.labels"]
    );
    assert_eq!(
        error_fields(&doc("  labels: {a: 'bad value'}\n")),
        ["metadata.labels"]
    );
    assert_eq!(
        error_fields(&doc("  annotations: {'-a': x}\n")),
        ["metadata.annotations"]
    );
    let big = "v".repeat(256 * 1024);
    assert_eq!(
        error_fields(&doc(&format!("  annotations: {{a: {big}}}\n"))),
        ["metadata.annotations"]
    );
    // Annotation keys are case-insensitive; their values are free text.
    assert!(
        error_fields(&doc(
            "  labels: {app.kubernetes.io/name: web, tier: ''}\n  annotations: {Example.COM/Owner: 'Team A!', note: ''}\n"
        ))
        .is_empty()
    );
}

// ValidateIPBlock checks the excepts against the `cidr` as ParseCIDRSloppy
// reads it even when the strict check refused the `cidr` itself
// ("Implies validation would have failed" only where the sloppy parse
// fails): both problems are reported.
#[test]
fn except_is_checked_against_a_cidr_refused_only_by_strict_validation() {
    let block =
        |b: &str| format!("  podSelector: {{}}\n  egress:\n    - to:\n        - ipBlock: {b}\n");
    let f = "spec.egress[0].to[0].ipBlock";
    expect_err(
        "host bits and except outside",
        &block("{cidr: 10.0.0.1/8, except: [11.0.0.0/16]}"),
        &[&format!("{f}.cidr"), &format!("{f}.except[0]")],
    );
    expect_err(
        "host bits and except inside",
        &block("{cidr: 10.0.0.1/8, except: [10.1.0.0/16]}"),
        &[&format!("{f}.cidr")],
    );
    expect_err(
        "leading zero and except outside",
        &block("{cidr: 010.0.0.0/8, except: [11.0.0.0/16]}"),
        &[&format!("{f}.cidr"), &format!("{f}.except[0]")],
    );
    // Not a CIDR at all: nothing to compare the excepts with.
    expect_err(
        "unparseable cidr",
        &block("{cidr: 10.0.0.0, except: [11.0.0.0/16]}"),
        &[&format!("{f}.cidr")],
    );
}
