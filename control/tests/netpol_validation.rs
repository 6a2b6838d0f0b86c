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
