//! Loading manifests: every error names the file, the document, the object
//! and the field; all errors come at once; nothing half-loaded is returned;
//! the result does not depend on file or document order.
mod policy_support;

use std::path::PathBuf;

use palisade_api::{AuthzAction, MtlsMode, PathNormalization};
use palisade_control::cluster::{NAMESPACE_NAME_LABEL, PeerAuthMode, PortRef};
use palisade_control::load::{load_dir, load_sources};
use policy_support::{load, try_load};

const NS_X: &str = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: x\n  labels: {team: a}\n";
const POD: &str = "apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: x\n  name: a\n  labels: {app: a}\nspec:\n  containers:\n    - name: c\n      ports:\n        - {name: http, containerPort: 80}\nstatus:\n  podIP: 198.18.0.1\n";

fn errors(docs: &[&str]) -> Vec<String> {
    match try_load(docs) {
        Ok(_) => panic!("expected errors"),
        Err(e) => e.0.iter().map(|e| e.to_string()).collect(),
    }
}

#[test]
fn error_names_file_document_object_and_field() {
    let bad = format!(
        "{NS_X}---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: x\n  name: p\nspec:\n  podSelector: {{}}\n  ingress:\n    - from:\n        - ipBlock:\n            cidr: 10.0.0.0/33\n"
    );
    let e = errors(&[&bad]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("test-0.yaml: document 1: NetworkPolicy x/p: field spec.ingress[0].from[0].ipBlock.cidr:"),
        "{}",
        e[0]
    );
}

#[test]
fn type_errors_carry_the_serde_path() {
    let bad = POD.replace("containerPort: 80", "containerPort: eighty");
    let e = errors(&[&bad]);
    assert!(
        e[0].contains("Pod x/a: field spec.containers[0].ports[0].containerPort"),
        "{}",
        e[0]
    );
}

#[test]
fn all_errors_are_reported_at_once_and_nothing_is_loaded() {
    let bad_pod = POD.replace("198.18.0.1", "not-an-ip");
    let bad_sel = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: x\n  name: p\nspec:\n  podSelector:\n    matchExpressions:\n      - {key: app, operator: Equals, values: [a]}\n";
    let bad_yaml = "apiVersion: v1\nkind: [unclosed\n";
    let e = errors(&[&bad_pod, bad_sel, NS_X, bad_yaml]);
    assert_eq!(e.len(), 3, "{e:#?}");
    assert!(
        e.iter()
            .any(|m| m.contains("test-0.yaml") && m.contains("status.podIP"))
    );
    assert!(e.iter().any(|m| m.contains("test-1.yaml")
        && m.contains("spec.podSelector")
        && m.contains("Equals")));
    assert!(
        e.iter()
            .any(|m| m.contains("test-3.yaml") && m.contains("invalid YAML"))
    );
}

#[test]
fn invalid_selectors_are_errors() {
    let in_without_values = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: x\n  name: p\nspec:\n  podSelector:\n    matchExpressions:\n      - {key: app, operator: In, values: []}\n";
    let e = errors(&[in_without_values]);
    assert!(
        e[0].contains("field spec.podSelector.matchExpressions[0].values: must be specified"),
        "{e:?}"
    );
}

#[test]
fn duplicate_objects_are_errors() {
    let e = errors(&[POD, POD]);
    assert_eq!(e.len(), 1);
    assert!(
        e[0].contains("duplicate object; first defined at test-0.yaml: document 0"),
        "{}",
        e[0]
    );
}

#[test]
fn unknown_kinds_are_skipped_and_empty_documents_ignored() {
    let other = "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\n  namespace: x\nspec: {whatever: 1}\n---\n---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: c}\n";
    let c = load(&[other, POD]);
    assert_eq!(c.pods.len(), 1);
}

#[test]
fn namespaces_get_the_name_label_and_referenced_ones_exist() {
    let c = load(&[NS_X, &POD.replace("namespace: x", "namespace: undeclared")]);
    let x = &c.namespaces["x"];
    assert_eq!(x.labels[NAMESPACE_NAME_LABEL], "x");
    assert_eq!(x.labels["team"], "a");
    let u = &c.namespaces["undeclared"];
    assert!(!u.declared);
    assert_eq!(u.labels.len(), 1);
    assert_eq!(u.labels[NAMESPACE_NAME_LABEL], "undeclared");
}

#[test]
fn result_is_independent_of_file_and_document_order() {
    let pod_b = POD
        .replace("name: a\n", "name: b\n")
        .replace("198.18.0.1", "198.18.0.2");
    let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: x\n  name: p\nspec:\n  podSelector: {}\n";
    let a = load_sources(&[
        (PathBuf::from("1.yaml"), format!("{NS_X}---\n{POD}")),
        (PathBuf::from("2.yaml"), format!("{pod_b}---\n{np}")),
    ])
    .unwrap();
    let b = load_sources(&[
        (PathBuf::from("1.yaml"), format!("{np}---\n{pod_b}")),
        (PathBuf::from("2.yaml"), format!("{POD}---\n{NS_X}")),
    ])
    .unwrap();
    // Origins differ; the content does not.
    let strip = |mut c: palisade_control::cluster::Cluster| {
        for p in &mut c.pods {
            p.origin = Default::default();
        }
        for n in &mut c.network_policies {
            n.origin = Default::default();
        }
        c
    };
    assert_eq!(strip(a), strip(b));
}

#[test]
fn network_policy_port_validation() {
    let np = |ports: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: x\n  name: p\nspec:\n  podSelector: {{}}\n  ingress:\n    - ports:\n{ports}\n"
        )
    };
    assert!(
        errors(&[&np("        - {port: 90, endPort: 80}")])[0]
            .contains("endPort 80 is less than port 90")
    );
    assert!(
        errors(&[&np("        - {port: http, endPort: 80}")])[0]
            .contains("endPort requires a numeric port")
    );
    assert!(errors(&[&np("        - {port: 80, protocol: ICMP}")])[0].contains("unknown protocol"));
    assert!(errors(&[&np("        - {port: 70000}")])[0].contains("out of range"));
    let except = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: x\n  name: p\nspec:\n  podSelector: {}\n  egress:\n    - to:\n        - ipBlock: {cidr: 10.0.0.0/8, except: [192.0.2.0/24]}\n";
    assert!(errors(&[except])[0].contains("outside the ipBlock cidr"));
    let mixed = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: x\n  name: p\nspec:\n  podSelector: {}\n  egress:\n    - to:\n        - ipBlock: {cidr: 10.0.0.0/8}\n          podSelector: {}\n";
    assert!(errors(&[mixed])[0].contains("cannot be combined"));
}

// pkg/apis/networking/validation ValidateIPBlock: an except is rejected
// unless it is "a strict subset of `cidr`" (`cidrMaskLen >= exceptMaskLen`
// is an error), so an except equal to the cidr is invalid.
#[test]
fn ip_block_except_must_be_a_strict_subset() {
    let np = |block: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: x\n  name: p\nspec:\n  podSelector: {{}}\n  egress:\n    - to:\n        - ipBlock: {block}\n"
        )
    };
    let e = errors(&[&np("{cidr: 10.0.0.0/8, except: [10.0.0.0/8]}")]);
    assert!(
        e[0].contains("ipBlock.except[0]") && e[0].contains("strict subset"),
        "{e:?}"
    );
    let e = errors(&[&np("{cidr: 2001:db8::/32, except: [2001:db8::/32]}")]);
    assert!(e[0].contains("strict subset"), "{e:?}");
    load(&[&np("{cidr: 10.0.0.0/8, except: [10.0.0.0/9, 10.1.2.3/32]}")]);
}

// pkg/apis/networking/validation ValidateNetworkPolicyPort: a string port
// is checked with IsValidPortName, which requires "at least one letter
// (a-z)"; the API server rejects `port: "80"` rather than reading it as 80.
#[test]
fn network_policy_numeric_string_port_is_rejected() {
    let np = |port: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: x\n  name: p\nspec:\n  podSelector: {{}}\n  ingress:\n    - ports:\n        - port: {port}\n"
        )
    };
    let e = errors(&[&np("\"80\"")]);
    assert!(e[0].contains("spec.ingress[0].ports[0].port"), "{e:?}");
    load(&[&np("80")]);
    load(&[&np("http")]);
}

// pkg/apis/networking/validation ValidateNetworkPolicySpec: "may not
// specify more than two policyTypes".
#[test]
fn more_than_two_policy_types_are_rejected() {
    let np = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: x\n  name: p\nspec:\n  podSelector: {}\n  policyTypes: [Ingress, Egress, Ingress]\n";
    let e = errors(&[np]);
    assert!(e[0].contains("spec.policyTypes"), "{e:?}");
    load(&[&np.replace(", Egress, Ingress", ", Ingress")]);
}

// apimachinery ValidateLabelSelector: matchLabels go through ValidateLabels
// and each requirement key through ValidateLabelName (IsQualifiedName), its
// values through IsValidLabelValue; the API server rejects a selector that
// could never match a valid label.
#[test]
fn selector_label_keys_and_values_are_validated() {
    let np = |sel: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: x\n  name: p\nspec:\n  podSelector: {{}}\n  ingress:\n    - from:\n        - podSelector: {sel}\n"
        )
    };
    for bad in [
        "{matchLabels: {'bad key!': x}}",
        "{matchLabels: {'-app': x}}",
        "{matchLabels: {'Example.com/app': x}}",
        "{matchLabels: {'a/b/c': x}}",
        "{matchLabels: {'/app': x}}",
        "{matchLabels: {app: 'bad value!'}}",
        "{matchLabels: {app: '-x'}}",
        "{matchExpressions: [{key: 'bad key!', operator: Exists}]}",
        "{matchExpressions: [{key: app, operator: In, values: ['a b']}]}",
    ] {
        let e = errors(&[&np(bad)]);
        assert!(
            e[0].contains("spec.ingress[0].from[0].podSelector"),
            "{bad}: {e:?}"
        );
    }
    for good in [
        "{matchLabels: {app: ''}}",
        "{matchLabels: {kubernetes.io/metadata.name: x, app.k8s_io-2: A.b_c-3}}",
        "{matchExpressions: [{key: example.com/tier, operator: NotIn, values: ['', web]}]}",
    ] {
        load(&[&np(good)]);
    }
}

fn ap(spec: &str) -> String {
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  namespace: x\n  name: ap\nspec:\n{spec}\n"
    )
}

#[test]
fn authorization_policy_refusals_are_clear() {
    assert!(errors(&[&ap("  action: CUSTOM\n  provider: {name: ext}")])[0].contains("CUSTOM"));
    assert!(
        errors(&[&ap("  targetRefs:\n    - {kind: Gateway, name: g}")])[0]
            .contains("spec.targetRefs")
    );
    assert!(
        errors(&[&ap(
            "  rules:\n    - from:\n        - source: {requestPrincipals: [\"*\"]}"
        )])[0]
            .contains("spec.rules[0].from[0].source.requestPrincipals: JWT")
    );
    // Istio's schema is closed: a misspelt field is an error, not ignored.
    let typo = errors(&[&ap(
        "  rules:\n    - from:\n        - source: {principal: [a]}",
    )]);
    assert!(typo[0].contains("unknown field `principal`"), "{}", typo[0]);
    assert!(
        errors(&[&ap(
            "  rules:\n    - to:\n        - operation: {ports: [\"http\"]}"
        )])[0]
            .contains("spec.rules[0].to[0].operation.ports[0]")
    );
    let when = errors(&[&ap(
        "  rules:\n    - when:\n        - {key: \"request.auth.claims[iss]\", values: [x]}",
    )]);
    assert!(when[0].contains("spec.rules[0].when[0].key"), "{}", when[0]);
    assert!(errors(&[&ap("  action: MAYBE")])[0].contains("unknown action"));
    let alpha = ap("  {}").replace("security.istio.io/v1", "security.istio.io/v1alpha1");
    assert!(errors(&[&alpha])[0].contains("unsupported apiVersion"));
}

#[test]
fn authorization_policy_conversion() {
    let text = ap(
        "  selector:\n    matchLabels: {app: a}\n  action: DENY\n  rules:\n    - from:\n        - source:\n            ipBlocks: [\"192.0.2.7\", \"203.0.113.0/24\"]\n            serviceAccounts: [\"sa1\", \"other/sa2\"]\n      to:\n        - operation: {ports: [\"8080\"], methods: [GET]}",
    )
    .replace("metadata:\n", "metadata:\n  annotations: {istio.io/dry-run: \"true\"}\n")
    .replace("security.istio.io/v1\n", "security.istio.io/v1beta1\n");
    let c = load(&[&text]);
    let p = &c.authorization_policies[0];
    assert_eq!(p.policy.name, "x/ap");
    assert_eq!(p.policy.action, AuthzAction::Deny);
    assert!(p.policy.dry_run);
    let src = &p.policy.rules[0].from[0];
    assert_eq!(src.ip_blocks[0].to_string(), "192.0.2.7/32");
    assert_eq!(src.ip_blocks[1].to_string(), "203.0.113.0/24");
    // `<sa>` alone means the policy's namespace.
    assert_eq!(src.service_accounts, ["x/sa1", "other/sa2"]);
    assert_eq!(p.policy.rules[0].to[0].ports, [8080]);
    // `spec: {}` is an ALLOW policy with no rules: it matches nothing.
    let empty = load(&[&ap("  {}")]);
    assert_eq!(
        empty.authorization_policies[0].policy.action,
        AuthzAction::Allow
    );
    assert!(empty.authorization_policies[0].policy.rules.is_empty());
}

#[test]
fn peer_authentication_loading() {
    let pa = |spec: &str| {
        format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  namespace: x\n  name: pa\nspec:\n{spec}\n"
        )
    };
    let c = load(&[&pa(
        "  selector:\n    matchLabels: {app: a}\n  mtls: {mode: STRICT}\n  portLevelMtls:\n    8080: {mode: DISABLE}\n    \"9090\": {mode: UNSET}",
    )]);
    let p = &c.peer_authentications[0];
    assert_eq!(p.mode, PeerAuthMode::Set(MtlsMode::Strict));
    assert_eq!(p.port_level[&8080], PeerAuthMode::Set(MtlsMode::Disable));
    assert_eq!(p.port_level[&9090], PeerAuthMode::Unset);
    assert!(
        errors(&[&pa("  portLevelMtls:\n    8080: {mode: DISABLE}")])[0]
            .contains("only applies with a workload selector")
    );
    assert!(errors(&[&pa("  mtls: {mode: SOMETIMES}")])[0].contains("unknown mTLS mode"));
    assert!(errors(&[&pa("  mtls: {mode: STRICT, extra: 1}")])[0].contains("unknown field"));
}

#[test]
fn mesh_config_defaults_and_overrides() {
    let c = load(&[NS_X]);
    assert_eq!(c.mesh.trust_domain, "cluster.local");
    assert_eq!(c.mesh.root_namespace, "istio-system");
    assert_eq!(c.mesh.path_normalization, PathNormalization::MergeSlashes);
    let mesh = "apiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec:\n  trustDomain: example.org\n  trustDomainAliases: [old.example.org]\n  rootNamespace: mesh-root\n  pathNormalization: DECODE_AND_MERGE_SLASHES\n";
    let c = load(&[mesh]);
    assert_eq!(c.mesh.trust_domain, "example.org");
    assert_eq!(c.mesh.trust_domain_aliases, ["old.example.org"]);
    assert_eq!(c.mesh.root_namespace, "mesh-root");
    assert_eq!(
        c.mesh.path_normalization,
        PathNormalization::DecodeAndMergeSlashes
    );
    assert!(
        errors(&[&mesh.replace("DECODE_AND_MERGE_SLASHES", "SOMETIMES")])[0]
            .contains("spec.pathNormalization")
    );
    assert!(
        errors(&[&mesh.replace("example.org\n  trust", "Example.ORG\n  trust")])[0]
            .contains("not a valid trust domain")
    );
    assert!(
        errors(&[mesh, &mesh.replace("name: mesh", "name: mesh2")])[0]
            .contains("a second MeshConfig")
    );
    // The cluster domain, as kubelet's --cluster-domain: a DNS subdomain.
    assert_eq!(c.mesh.cluster_domain, "cluster.local");
    let with_domain = |d: &str| format!("{mesh}  clusterDomain: {d}\n");
    assert_eq!(
        load(&[&with_domain("corp.example")]).mesh.cluster_domain,
        "corp.example"
    );
    for bad in [
        "Corp.Example",
        "corp..example",
        "corp.example.",
        "-corp.example",
        "\"\"",
    ] {
        let e = errors(&[&with_domain(bad)]);
        assert!(e[0].contains("spec.clusterDomain"), "{bad}: {e:?}");
        assert!(e[0].contains("not a valid cluster domain"), "{bad}: {e:?}");
    }
}

/// MeshConfig `federatedTrustDomains` (SPIRE's `ClusterFederatedTrustDomain`
/// fields `trustDomain` and `trustDomainBundle`): the bundle, a SPIFFE
/// bundle or PEM, reaches every compiled ProxyConfig as PEM; a bad name, a
/// bundle that does not parse, the mesh's own trust domain or an alias,
/// and a trust domain listed twice are errors on their field.
#[test]
fn mesh_config_federated_trust_domains() {
    use palisade_identity::{CaOptions, CertificateAuthority, TrustDomain};
    let remote = CertificateAuthority::create(
        &TrustDomain::new("remote.test").unwrap(),
        &CaOptions::default(),
    )
    .unwrap();
    let json = remote.bundle().to_spiffe_bundle(Some(3), None).unwrap();
    let pem = remote.bundle().to_pem();
    let indent = |text: &str| {
        text.lines()
            .map(|l| format!("        {l}\n"))
            .collect::<String>()
    };
    let mesh = |entries: &[(&str, &str)]| {
        let mut m = "apiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: mesh}\nspec:\n  trustDomain: example.org\n  trustDomainAliases: [old.example.org]\n  federatedTrustDomains:\n".to_string();
        for (td, bundle) in entries {
            m.push_str(&format!(
                "    - trustDomain: {td}\n      trustDomainBundle: |\n{}",
                indent(bundle)
            ));
        }
        m
    };
    for bundle in [json.as_str(), pem.as_str()] {
        let c = load(&[NS_X, POD, &mesh(&[("remote.test", bundle)])]);
        assert_eq!(c.mesh.federated_bundles.len(), 1);
        assert_eq!(c.mesh.federated_bundles["remote.test"], pem);
        let configs = palisade_control::compile::Compiler::new(&c).compile_all();
        assert_eq!(configs[0].mesh.federated_bundles["remote.test"], pem);
    }
    // A SPIFFE bundle with no keys (SPIFFE Trust Domain and Bundle 4.1.3:
    // the trust domain revoked its keys) or no x509-svid entry (X509-SVID
    // 6.2) loads as no X.509 root, as a fetched one does: no bundle in any
    // compiled config, so the trust domain's X509-SVIDs are refused.
    for empty in [r#"{"keys": []}"#, r#"{"spiffe_sequence": 4, "keys": []}"#] {
        let c = load(&[NS_X, POD, &mesh(&[("remote.test", empty)])]);
        assert!(c.mesh.federated_bundles.is_empty(), "{empty}");
        let configs = palisade_control::compile::Compiler::new(&c).compile_all();
        assert!(configs[0].mesh.federated_bundles.is_empty(), "{empty}");
    }
    let cases = [
        (
            mesh(&[("remote.test", r#"{"keys": 1}"#)]),
            "trustDomainBundle",
            "SPIFFE bundle",
        ),
        (
            mesh(&[("Remote.Test", &pem)]),
            "trustDomain",
            "not a trust domain name",
        ),
        (
            mesh(&[("remote.test", "not a bundle")]),
            "trustDomainBundle",
            "",
        ),
        (
            mesh(&[("example.org", &pem)]),
            "trustDomain",
            "the mesh's trust domain or an alias",
        ),
        (
            mesh(&[("old.example.org", &pem)]),
            "trustDomain",
            "the mesh's trust domain or an alias",
        ),
        (
            mesh(&[("remote.test", &pem), ("remote.test", &json)]),
            "federatedTrustDomains[1].trustDomain",
            "listed twice",
        ),
    ];
    for (doc, field, text) in cases {
        let e = errors(&[&doc]);
        assert!(
            e[0].contains("spec.federatedTrustDomains") && e[0].contains(field),
            "{e:?}"
        );
        assert!(e[0].contains(text), "{e:?}");
    }
}

#[test]
fn pods_default_service_account_and_opaque_ports_annotation() {
    let c = load(&[POD]);
    assert_eq!(c.pods[0].service_account, "default");
    let annotated = POD.replace(
        "  labels: {app: a}\n",
        "  labels: {app: a}\n  annotations: {palisade.dev/opaque-ports: \"5432, 6379\"}\n",
    );
    assert_eq!(load(&[&annotated]).pods[0].opaque_ports, [5432, 6379]);
    let bad = annotated.replace("5432, 6379", "5432,redis");
    assert!(errors(&[&bad])[0].contains("palisade.dev/opaque-ports"));
}

#[test]
fn load_dir_is_recursive_and_reads_only_manifests() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("nested/deeper")).unwrap();
    std::fs::write(dir.path().join("ns.yaml"), NS_X).unwrap();
    std::fs::write(dir.path().join("nested/deeper/pod.yml"), POD).unwrap();
    std::fs::write(dir.path().join("README.md"), "not: [yaml").unwrap();
    let c = load_dir(dir.path()).unwrap();
    assert_eq!(c.pods.len(), 1);
    assert!(c.namespaces["x"].declared);
    std::fs::write(dir.path().join("nested/broken.yaml"), "kind: Pod\n").unwrap();
    let e = load_dir(dir.path()).unwrap_err();
    assert!(
        e.to_string()
            .contains("broken.yaml: document 0: field apiVersion: missing"),
        "{e}"
    );
    assert!(load_dir(&dir.path().join("missing")).is_err());
}

/// Pod API: `status.hostIP` is "the IP address of the host to which the pod
/// is assigned. Empty if the pod has not started yet"; `status.hostIPs`
/// "holds the IP addresses allocated to the host. If this field is
/// specified, the first entry must match the hostIP field."
#[test]
fn pods_read_their_node_ips_from_host_ip_and_host_ips() {
    let with = |status: &str| {
        POD.replace(
            "  podIP: 198.18.0.1\n",
            &format!("  podIP: 198.18.0.1\n{status}"),
        )
    };
    assert!(load(&[POD]).pods[0].node_ips.is_empty());
    let one = with("  hostIP: 10.0.0.1\n");
    assert_eq!(
        load(&[&one]).pods[0].node_ips,
        ["10.0.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
    let dual = with("  hostIP: 10.0.0.1\n  hostIPs:\n    - ip: 10.0.0.1\n    - ip: fd00::1\n");
    assert_eq!(
        load(&[&dual]).pods[0].node_ips,
        [
            "10.0.0.1".parse::<std::net::IpAddr>().unwrap(),
            "fd00::1".parse().unwrap()
        ]
    );
    // "Empty if the pod has not started yet".
    assert!(
        load(&[&with("  hostIP: \"\"\n")]).pods[0]
            .node_ips
            .is_empty()
    );

    let e = errors(&[&with("  hostIP: node-1\n")]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].contains("Pod x/a: field status.hostIP:") && e[0].contains("\"node-1\""),
        "{}",
        e[0]
    );
    let e = errors(&[&with(
        "  hostIP: 10.0.0.1\n  hostIPs:\n    - ip: 10.0.0.1\n    - ip: 10.0.0.300\n",
    )]);
    assert!(
        e[0].contains("Pod x/a: field status.hostIPs[1].ip:") && e[0].contains("10.0.0.300"),
        "{}",
        e[0]
    );
    let e = errors(&[&with(
        "  hostIP: 10.0.0.1\n  hostIPs:\n    - ip: 10.0.0.2\n",
    )]);
    assert!(
        e[0].contains("Pod x/a: field status.hostIPs[0].ip:") && e[0].contains("hostIP"),
        "{}",
        e[0]
    );
}

/// Pod Lifecycle (kubernetes.io): Succeeded, "All containers in the Pod have
/// terminated in success, and will not be restarted"; Failed, "All
/// containers in the Pod have terminated, and at least one container has
/// terminated in failure". A finished pod has no network presence: it keeps
/// its name and labels but no address, like a pod not scheduled yet.
#[test]
fn finished_pods_have_no_live_address() {
    for phase in ["Succeeded", "Failed"] {
        let done = POD.replace(
            "  podIP: 198.18.0.1\n",
            &format!("  phase: {phase}\n  podIP: 198.18.0.1\n  hostIP: 10.0.0.1\n"),
        );
        let c = load(&[&done]);
        let p = &c.pods[0];
        assert!(p.ips.is_empty(), "{phase}: {:?}", p.ips);
        assert!(p.node_ips.is_empty(), "{phase}: {:?}", p.node_ips);
        assert!(p.finished() && !p.ready, "{phase}");
        assert_eq!(p.phase.as_deref(), Some(phase));
        // The address is still validated, as the API server does.
        let bad = done.replace("198.18.0.1", "not-an-ip");
        assert!(errors(&[&bad])[0].contains("status.podIP"));
    }
    for phase in ["Pending", "Running", "Unknown"] {
        let live = POD.replace(
            "  podIP: 198.18.0.1\n",
            &format!("  phase: {phase}\n  podIP: 198.18.0.1\n"),
        );
        let c = load(&[&live]);
        assert_eq!(c.pods[0].ips.len(), 1, "{phase}");
        assert!(!c.pods[0].finished(), "{phase}");
    }
}

/// Pod API: `spec.hostNetwork` is "Host networking requested for this pod.
/// Use the host's network namespace. [...] Default to false." kubernetes.io,
/// "Network Policies": Palisade "ignores `hostNetwork` pods when matching
/// `podSelector` and `namespaceSelector`", so the field is read, and a value
/// that is not a boolean is refused as the API server refuses it.
#[test]
fn pods_read_spec_host_network() {
    assert!(!load(&[POD]).pods[0].host_network);
    let with = |v: &str| POD.replace("spec:\n", &format!("spec:\n  hostNetwork: {v}\n"));
    assert!(load(&[&with("true")]).pods[0].host_network);
    assert!(!load(&[&with("false")]).pods[0].host_network);
    // kubectl reads YAML 1.1 (sigs.k8s.io/yaml's goyaml.v2, resolve.go):
    // an unquoted `yes` or `on` is the boolean true, quoted it is a string.
    assert!(load(&[&with("yes")]).pods[0].host_network);
    assert!(!load(&[&with("Off")]).pods[0].host_network);
    for bad in ["\"true\"", "'yes'", "1", "[true]"] {
        let e = errors(&[&with(bad)]);
        assert_eq!(e.len(), 1, "{bad}: {e:?}");
        assert!(
            e[0].contains("test-0.yaml: document 0: Pod x/a: field spec.hostNetwork:"),
            "{bad}: {}",
            e[0]
        );
        assert!(e[0].contains("boolean"), "{bad}: {}", e[0]);
    }
}

// pkg/apis/core/v1 SetDefaults_Service: "if sp.TargetPort ==
// intstr.FromInt32(0) || sp.TargetPort == intstr.FromString("") {
// sp.TargetPort = intstr.FromInt32(sp.Port) }"; then validateServicePort
// checks it with ValidatePortNumOrName, where a string is IsValidPortName
// ("must contain at least one letter"): `targetPort: "8080"` is refused,
// not read as 8080.
#[test]
fn service_target_port_defaulting_and_validation() {
    let svc = |target: &str| {
        format!(
            "apiVersion: v1\nkind: Service\nmetadata: {{namespace: x, name: s}}\nspec:\n  selector: {{app: a}}\n  ports:\n    - port: 8080\n      {target}\n"
        )
    };
    for (target, want) in [
        ("", PortRef::Number(8080)),
        ("targetPort: 0", PortRef::Number(8080)),
        ("targetPort: ''", PortRef::Number(8080)),
        ("targetPort: 80", PortRef::Number(80)),
        ("targetPort: http", PortRef::Name("http".into())),
    ] {
        let c = load(&[&svc(target)]);
        assert_eq!(c.services[0].ports[0].target, want, "{target}");
    }
    for bad in [
        "targetPort: '80'",
        "targetPort: 70000",
        "targetPort: -1",
        "targetPort: Http",
    ] {
        let e = errors(&[&svc(bad)]);
        assert!(
            e.len() == 1 && e[0].contains("field spec.ports[0].targetPort"),
            "{bad}: {e:?}"
        );
    }
}

// pkg/api/v1/pod/util.go FindPort: a Service's named targetPort is looked up
// in the pod's containers, then "also support sidecar container
// (initContainer with restartPolicy=Always)"; an ordinary init container,
// which has exited by the time the pod serves, does not count.
#[test]
fn named_ports_of_native_sidecars_are_pod_ports() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {namespace: x, name: a, labels: {app: a}}\nspec:\n  initContainers:\n    - name: setup\n      ports: [{name: setup, containerPort: 9000}]\n    - name: side\n      restartPolicy: Always\n      ports: [{name: metrics, containerPort: 9090}, {name: http, containerPort: 7070}]\n  containers:\n    - name: app\n      ports: [{name: http, containerPort: 8080}]\nstatus:\n  podIP: 198.18.0.1\n";
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {namespace: x, name: s}\nspec:\n  selector: {app: a}\n  ports:\n    - {name: m, port: 90, targetPort: metrics}\n    - {name: h, port: 80, targetPort: http}\n    - {name: s, port: 91, targetPort: setup}\n";
    let cluster = load(&[pod, svc]);
    let compiler = palisade_control::compile::Compiler::new(&cluster);
    let resolved = palisade_control::compile::services::resolve(
        compiler.index(),
        cluster.service("x", "s").unwrap(),
    );
    let ports: Vec<Vec<u16>> = resolved
        .ports
        .iter()
        .map(|p| p.endpoints.iter().map(|e| e.port).collect())
        .collect();
    // The sidecar's port; the app container's `http` first; none for the
    // ordinary init container.
    assert_eq!(ports, [vec![9090], vec![8080], vec![]]);
    let bad = pod.replace("containerPort: 9090", "containerPort: 0");
    let e = errors(&[&bad]);
    assert!(
        e[0].contains("spec.initContainers[1].ports[0].containerPort"),
        "{e:?}"
    );
}

/// The field paths of the loader's errors (empty: everything loads).
fn error_fields(docs: &[&str]) -> Vec<String> {
    match try_load(docs) {
        Ok(_) => Vec::new(),
        Err(e) => {
            let mut f: Vec<String> =
                e.0.iter()
                    .map(|e| e.field.clone().unwrap_or_default())
                    .collect();
            f.sort();
            f
        }
    }
}

// The objects a NetworkPolicy selects are validated as the API server
// validates them on create (pkg/apis/core/validation): ValidateNamespace is
// ValidateObjectMeta with ValidateNamespaceName (a DNS-1123 label),
// ValidatePodCreate with ValidatePodName (a DNS-1123 subdomain), and both
// run ValidateLabels on `metadata.labels` and ValidateAnnotations on
// `metadata.annotations`. An object the API server refuses never exists,
// so a namespace or pod label no selector could be written for must not
// be matched here either.
#[test]
fn namespace_and_pod_metadata_are_validated() {
    let ns = |name: &str, labels: &str| {
        format!("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {name}\n  labels: {labels}\n")
    };
    for bad in ["X", "x.y", "x_y", "-x", &"x".repeat(64)] {
        assert_eq!(error_fields(&[&ns(bad, "{}")]), ["metadata.name"], "{bad}");
    }
    assert_eq!(
        error_fields(&[&ns("x", "{'team a': b}")]),
        ["metadata.labels"]
    );
    assert_eq!(
        error_fields(&[&ns("x", "{team: 'a/b'}")]),
        ["metadata.labels"]
    );
    assert!(error_fields(&[&ns("x-1", "{example.com/team: A_b.c}")]).is_empty());

    for bad in ["A", "a_b", "a.", &"a".repeat(254)] {
        let pod = POD.replace("name: a\n", &format!("name: '{bad}'\n"));
        assert_eq!(error_fields(&[&pod]), ["metadata.name"], "{bad}");
    }
    let pod = POD.replace("namespace: x\n", "namespace: X\n");
    assert_eq!(error_fields(&[&pod]), ["metadata.namespace"]);
    let pod = POD.replace("labels: {app: a}", "labels: {app: 'a b'}");
    assert_eq!(error_fields(&[&pod]), ["metadata.labels"]);
    let pod = POD.replace(
        "labels: {app: a}",
        "labels: {app: a}\n  annotations: {'x/y/z': v}",
    );
    assert_eq!(error_fields(&[&pod]), ["metadata.annotations"]);
    let pod = POD.replace("name: a\n", "name: a.b-1\n");
    assert!(error_fields(&[&pod]).is_empty());
}

// pkg/apis/core/validation, validateContainerPorts: a port name is checked
// only `if len(port.Name) > 0` (an empty name is no name), and within one
// container a name may appear once (`field.Duplicate(idxPath.Child("name"))`);
// two containers may each use it.
#[test]
fn container_port_names_empty_or_duplicate() {
    let pod = |ports: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  namespace: x\n  name: a\nspec:\n  containers:\n{ports}status:\n  podIP: 198.18.0.1\n"
        )
    };
    let c = load(&[&pod(
        "    - name: c\n      ports:\n        - {name: '', containerPort: 80}\n",
    )]);
    assert_eq!(c.pods[0].ports[0].name, None);
    assert_eq!(
        error_fields(&[&pod(
            "    - name: c\n      ports:\n        - {name: http, containerPort: 80}\n        - {name: http, containerPort: 81, protocol: UDP}\n"
        )]),
        ["spec.containers[0].ports[1].name"]
    );
    let c = load(&[&pod(
        "    - name: c\n      ports:\n        - {name: http, containerPort: 80}\n    - name: d\n      ports:\n        - {name: http, containerPort: 8080}\n",
    )]);
    assert_eq!(c.pods[0].ports.len(), 2);
}

// `kubectl apply -f` takes lists apart (FlattenListVisitor): a `kind: List`
// as `kubectl get -o yaml` writes it, each item with its own apiVersion and
// kind, and a typed list such as `NetworkPolicyList`, whose items may leave
// both out. A list is loaded item by item, errors naming `items[i]`; it is
// never an error for want of a `metadata.name`, and never skipped.
#[test]
fn lists_are_loaded_item_by_item() {
    let list = format!(
        "apiVersion: v1\nkind: List\nmetadata: {{resourceVersion: ''}}\nitems:\n{}{}",
        NS_X.lines()
            .enumerate()
            .map(|(i, l)| format!("{}{l}\n", if i == 0 { "- " } else { "  " }))
            .collect::<String>(),
        POD.lines()
            .enumerate()
            .map(|(i, l)| format!("{}{l}\n", if i == 0 { "- " } else { "  " }))
            .collect::<String>(),
    );
    let c = load(&[&list]);
    assert_eq!(c.pods.len(), 1);
    assert_eq!(c.namespaces["x"].labels["team"], "a");

    let typed = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicyList\nmetadata: {}\nitems:\n- metadata: {namespace: x, name: p}\n  spec: {podSelector: {}}\n- metadata: {namespace: x, name: q}\n  spec:\n    podSelector: {matchExpressions: [{key: a, operator: In}]}\n";
    let e = try_load(&[typed]).unwrap_err();
    assert_eq!(e.0.len(), 1, "{e}");
    assert_eq!(e.0[0].object.as_deref(), Some("NetworkPolicy x/q"));
    assert_eq!(
        e.0[0].field.as_deref(),
        Some("items[1].spec.podSelector.matchExpressions[0].values")
    );
    let ok = typed.replace(", operator: In}", ", operator: Exists}");
    assert_eq!(load(&[&ok]).network_policies.len(), 2);

    // Empty lists load nothing; an item is still a duplicate of a document.
    load(&[
        "apiVersion: v1\nkind: List\nitems: []\n",
        "apiVersion: v1\nkind: List\n",
    ]);
    let dup = format!(
        "{POD}---\napiVersion: v1\nkind: PodList\nitems:\n- {}",
        &POD.replace('\n', "\n  ")["apiVersion: v1\n  kind: Pod\n  ".len()..]
    );
    assert_eq!(
        try_load(&[&dup]).unwrap_err().0[0].field.as_deref(),
        Some("items[0].metadata.name")
    );
}

/// MeshConfig `federatedTrustDomains` with a bundle endpoint (SPIRE's
/// `bundleEndpointURL` and `bundleEndpointProfile`; SPIFFE Federation 5):
/// an https URL without userinfo, a profile given explicitly (it cannot be
/// inferred from the URL, section 7.2), `https_spiffe` with the endpoint's
/// SPIFFE ID, a bootstrap bundle when the endpoint is self-serving, and an
/// endpoint trust domain something can authenticate.
#[test]
fn mesh_config_federated_bundle_endpoints() {
    use palisade_control::cluster::{BundleEndpoint, EndpointProfile};
    use palisade_identity::{CaOptions, CertificateAuthority, TrustDomain};
    let remote = CertificateAuthority::create(
        &TrustDomain::new("remote.test").unwrap(),
        &CaOptions::default(),
    )
    .unwrap();
    let pem = remote.bundle().to_pem();
    let bundle_field = format!(
        "      trustDomainBundle: |\n{}",
        pem.lines()
            .map(|l| format!("        {l}\n"))
            .collect::<String>()
    );
    let mesh = |entries: &str| {
        format!(
            "apiVersion: palisade.dev/v1alpha1\nkind: MeshConfig\nmetadata: {{name: mesh}}\nspec:\n  trustDomain: example.org\n  federatedTrustDomains:\n{entries}"
        )
    };
    let spiffe = |td: &str, url: &str, id: &str, bundle: bool| {
        format!(
            "    - trustDomain: {td}\n      bundleEndpointURL: {url}\n      bundleEndpointProfile:\n        type: https_spiffe\n        endpointSPIFFEID: {id}\n{}",
            if bundle { bundle_field.as_str() } else { "" }
        )
    };
    let web = |td: &str, url: &str| {
        format!(
            "    - trustDomain: {td}\n      bundleEndpointURL: {url}\n      bundleEndpointProfile:\n        type: https_web\n"
        )
    };

    // Self-serving https_spiffe with its bootstrap bundle.
    let c = load(&[
        NS_X,
        POD,
        &mesh(&spiffe(
            "remote.test",
            "https://bundles.remote.test:8443/bundle.json",
            "spiffe://remote.test/bundle-server",
            true,
        )),
    ]);
    assert_eq!(c.mesh.federated_bundles["remote.test"], pem);
    assert_eq!(
        c.mesh.bundle_endpoints["remote.test"],
        BundleEndpoint {
            url: "https://bundles.remote.test:8443/bundle.json".into(),
            profile: EndpointProfile::HttpsSpiffe {
                endpoint_id: "spiffe://remote.test/bundle-server".into()
            },
        }
    );
    // https_web needs no bundle: there is none until the first fetch.
    let c = load(&[NS_X, POD, &mesh(&web("web.test", "https://web.test/b"))]);
    assert!(c.mesh.federated_bundles.is_empty());
    assert_eq!(
        c.mesh.bundle_endpoints["web.test"].profile,
        EndpointProfile::HttpsWeb
    );
    // A non-self-serving endpoint in the mesh's trust domain, or in another
    // federated one, needs no bundle of its own.
    let c = load(&[
        NS_X,
        POD,
        &mesh(&format!(
            "{}{}",
            spiffe(
                "a.test",
                "https://x.example.org/a",
                "spiffe://example.org/ns/palisade-system/sa/control",
                false
            ),
            spiffe(
                "b.test",
                "https://x.example.org/b",
                "spiffe://web.test/server",
                false
            ) + &web("web.test", "https://web.test/b")
        )),
    ]);
    assert_eq!(c.mesh.bundle_endpoints.len(), 3);

    let cases = [
        (
            spiffe("remote.test", "http://remote.test/b", "spiffe://remote.test/s", true),
            "bundleEndpointURL",
            "scheme must be https",
        ),
        (
            spiffe("remote.test", "https://user:pw@remote.test/b", "spiffe://remote.test/s", true),
            "bundleEndpointURL",
            "userinfo",
        ),
        (
            spiffe("remote.test", "https://remote.test/b", "spiffe://remote.test/s", false),
            "trustDomainBundle",
            "self-serving",
        ),
        (
            spiffe("remote.test", "https://remote.test/b", "spiffe://third.test/s", true),
            "endpointSPIFFEID",
            "neither the mesh's nor federated",
        ),
        (
            spiffe("remote.test", "https://remote.test/b", "spiffe://Remote.test/s", true),
            "endpointSPIFFEID",
            "",
        ),
        (
            "    - trustDomain: remote.test\n      bundleEndpointURL: https://remote.test/b\n".to_string(),
            "bundleEndpointProfile",
            "cannot be inferred",
        ),
        (
            "    - trustDomain: remote.test\n      bundleEndpointURL: https://remote.test/b\n      bundleEndpointProfile: {type: https_spiffe}\n".to_string(),
            "endpointSPIFFEID",
            "required for https_spiffe",
        ),
        (
            "    - trustDomain: remote.test\n      bundleEndpointURL: https://remote.test/b\n      bundleEndpointProfile: {type: https_web, endpointSPIFFEID: spiffe://remote.test/s}\n".to_string(),
            "endpointSPIFFEID",
            "only for the https_spiffe profile",
        ),
        (
            "    - trustDomain: remote.test\n      bundleEndpointURL: https://remote.test/b\n      bundleEndpointProfile: {type: ftp}\n".to_string(),
            "bundleEndpointProfile.type",
            "expected https_web or https_spiffe",
        ),
        (
            "    - trustDomain: remote.test\n".to_string(),
            "trustDomainBundle",
            "required",
        ),
        (
            web("example.org", "https://example.org/b"),
            "trustDomain",
            "the mesh's trust domain",
        ),
    ];
    for (entries, field, text) in cases {
        let e = errors(&[&mesh(&entries)]);
        assert!(
            e[0].contains("spec.federatedTrustDomains[0]") && e[0].contains(field),
            "{entries}: {e:?}"
        );
        assert!(e[0].contains(text), "{entries}: {e:?}");
    }
}

const SE_HEAD: &str = "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  namespace: x\n  name: remote\nspec:\n";

/// Istio `ServiceEntry`, the STATIC subset: virtual IPs, ports with
/// targetPort, endpoints at IPs with per-name ports, and for MESH_INTERNAL
/// each endpoint's identity (its serviceAccount in the entry's namespace,
/// else the entry's single subjectAltName). What needs DNS, a selector or
/// traffic shaping is refused on its field.
#[test]
fn service_entries_static_subset() {
    use palisade_control::cluster::EndpointIdentity;
    let se = format!(
        "{SE_HEAD}  hosts: [api.remote.test]\n  addresses: [198.18.200.1, \"2001:db8::1/128\"]\n  ports:\n    - {{number: 80, name: http, protocol: http, targetPort: 8080}}\n    - {{number: 5432, name: pg, protocol: TCP}}\n  location: MESH_INTERNAL\n  resolution: STATIC\n  exportTo: [\".\", other]\n  endpoints:\n    - address: 203.0.113.7\n      ports: {{pg: 15432}}\n    - address: 203.0.113.8\n      serviceAccount: api\n  subjectAltNames: [spiffe://remote.test/ns/back/sa/api]\n"
    );
    let c = load(&[NS_X, &se]);
    let e = &c.service_entries[0];
    assert_eq!(e.key(), "x/remote");
    assert_eq!(e.addresses.len(), 2);
    assert!(e.mesh_internal);
    assert_eq!(e.ports[0].protocol, "HTTP");
    assert!(!e.ports[0].is_opaque() && e.ports[1].is_opaque());
    // Endpoint port: its own by name, else targetPort, else the number.
    assert_eq!(e.endpoints[0].port_for(&e.ports[0]), 8080);
    assert_eq!(e.endpoints[0].port_for(&e.ports[1]), 15432);
    assert_eq!(e.endpoints[1].port_for(&e.ports[1]), 5432);
    assert_eq!(
        e.endpoints[0].identity,
        Some(EndpointIdentity::SpiffeId(
            "spiffe://remote.test/ns/back/sa/api".into()
        ))
    );
    assert_eq!(
        e.identity_of(&e.endpoints[1], "example.org").as_deref(),
        Some("spiffe://example.org/ns/x/sa/api")
    );
    assert!(e.exported_to("x") && e.exported_to("other") && !e.exported_to("third"));

    // Only hosts: an external name the sidecar has nothing to do for.
    let c = load(&[&format!(
        "{SE_HEAD}  hosts: [api.example.com]\n  ports: [{{number: 443, name: https, protocol: TLS}}]\n  location: MESH_EXTERNAL\n"
    )]);
    assert!(c.service_entries[0].endpoints.is_empty());

    let ok = "  hosts: [h]\n  ports: [{number: 80, name: http}]\n  resolution: STATIC\n";
    let cases = [
        ("  ports: [{number: 80, name: http}]\n  resolution: STATIC\n  endpoints: [{address: 203.0.113.7}]\n".to_string(), "spec.hosts", "at least one"),
        (format!("{ok}  endpoints: [{{address: db.remote.test}}]\n"), "spec.endpoints[0].address", "not an IP address"),
        ("  hosts: [h]\n  ports: [{number: 80, name: http}]\n  resolution: DNS\n".to_string(), "spec.resolution", "resolves no DNS"),
        ("  hosts: [h]\n  ports: [{number: 80, name: http}]\n  endpoints: [{address: 203.0.113.7}]\n".to_string(), "spec.resolution", "use STATIC"),
        (format!("{ok}  location: MESH_INTERNAL\n  endpoints: [{{address: 203.0.113.7}}]\n"), "spec.endpoints[0].serviceAccount", "needs the identity"),
        (format!("{ok}  subjectAltNames: [a.example.com]\n"), "spec.subjectAltNames[0]", "not a SPIFFE ID"),
        (format!("{ok}  subjectAltNames: [\"spiffe://a/b\", \"spiffe://a/c\"]\n"), "spec.subjectAltNames", "one SPIFFE ID at most"),
        (format!("{ok}  workloadSelector: {{labels: {{app: a}}}}\n"), "spec.workloadSelector", "not supported"),
        (format!("{ok}  addresses: [198.18.0.0/16]\n"), "spec.addresses[0]", "ranges are not supported"),
        (format!("{ok}  endpoints: [{{address: 203.0.113.7, weight: 3}}]\n"), "spec.endpoints[0].weight", "not supported"),
        (format!("{ok}  endpoints: [{{address: 203.0.113.7, ports: {{grpc: 9090}}}}]\n"), "spec.endpoints[0].ports.grpc", "names no port"),
        ("  hosts: [h]\n  ports: [{number: 80, name: http, protocol: QUIC}]\n  resolution: STATIC\n".to_string(), "spec.ports[0].protocol", "expected one of"),
        ("  hosts: [h]\n  ports: [{number: 70000, name: http}]\n  resolution: STATIC\n".to_string(), "spec.ports[0].number", "not a port"),
        ("  hosts: [h]\n  ports: [{number: 80}]\n  resolution: STATIC\n".to_string(), "spec.ports[0].name", "required"),
        (format!("{ok}  location: MESH_NEARBY\n"), "spec.location", "expected MESH_EXTERNAL or MESH_INTERNAL"),
        (format!("{ok}  exportTo: [\"Not_A_Namespace\"]\n"), "spec.exportTo", "not a namespace name"),
        (format!("{ok}  trafficPolicy: {{}}\n"), "trafficPolicy", ""),
    ];
    for (spec, field, text) in cases {
        let e = errors(&[&format!("{SE_HEAD}{spec}")]);
        assert!(
            e.iter().any(|e| e.contains(field) && e.contains(text)),
            "{field} / {text}: {e:?}"
        );
    }
}

/// A MESH_INTERNAL entry's endpoints join the peer table of the workloads
/// it is exported to (strict mTLS, the entry's identity, opaque ports by
/// protocol); its virtual IPs become a Service over its endpoints. A pod's
/// own address keeps the pod's entry; other namespaces see nothing.
#[test]
fn service_entries_compile_into_peers_and_services() {
    let ns_y = "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: y\n";
    let pod_y = POD
        .replace("namespace: x", "namespace: y")
        .replace("198.18.0.1", "198.18.0.2");
    let se = format!(
        "{SE_HEAD}  hosts: [api.remote.test]\n  addresses: [198.18.200.1]\n  ports:\n    - {{number: 80, name: http, protocol: HTTP}}\n    - {{number: 5432, name: pg, protocol: TCP, targetPort: 15432}}\n  location: MESH_INTERNAL\n  resolution: STATIC\n  exportTo: [\".\"]\n  endpoints:\n    - address: 203.0.113.7\n    - address: 198.18.0.2\n  subjectAltNames: [spiffe://remote.test/ns/back/sa/api]\n"
    );
    let c = load(&[NS_X, POD, ns_y, &pod_y, &se]);
    let configs = palisade_control::compile::Compiler::new(&c).compile_all();
    let x = configs
        .iter()
        .find(|c| c.workload.namespace == "x")
        .unwrap();
    let y = configs
        .iter()
        .find(|c| c.workload.namespace == "y")
        .unwrap();
    let remote = x
        .peers
        .iter()
        .find(|p| p.ip.to_string() == "203.0.113.7")
        .unwrap();
    assert_eq!(remote.identity, "spiffe://remote.test/ns/back/sa/api");
    assert_eq!(remote.workload, "x/remote");
    assert_eq!(remote.mtls, MtlsMode::Strict);
    assert_eq!(remote.opaque_ports, [15432]);
    // 198.18.0.2 is pod y/a: it keeps its own identity.
    let pod = x.peers.iter().find(|p| p.ip.to_string() == "198.18.0.2");
    assert!(pod.is_none_or(|p| p.identity == "spiffe://cluster.local/ns/y/sa/default"));
    let svc = x.services.iter().find(|s| s.name == "x/remote").unwrap();
    assert_eq!(svc.cluster_ips[0].to_string(), "198.18.200.1");
    assert_eq!(svc.ports[0].app_protocol.as_deref(), Some("http"));
    assert_eq!(svc.ports[1].endpoints[0].port, 15432);
    assert_eq!(svc.ports[0].endpoints.len(), 2);
    // exportTo: ["."]: namespace y sees neither.
    assert!(!y.peers.iter().any(|p| p.workload == "x/remote"));
    assert!(!y.services.iter().any(|s| s.name == "x/remote"));
}

/// kubectl reads manifests with sigs.k8s.io/yaml, whose YAMLToJSON parses
/// YAML 1.1 (its goyaml.v2 fork, resolve.go): an unquoted `yes`, `on`, `y`,
/// `true` is a boolean and `1` or `1.10` a number, and the API server
/// refuses either where a string belongs ("cannot unmarshal bool into Go
/// struct field LabelSelector.spec.podSelector.matchLabels of type string").
/// The loader refuses them too, naming the field and what to quote, rather
/// than selecting on the string `yes`.
#[test]
fn yaml_1_1_booleans_and_numbers_are_not_strings() {
    let np = |labels: &str| {
        format!(
            "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: x\n  name: p\nspec:\n  podSelector:\n    matchLabels: {labels}\n"
        )
    };
    for (labels, text) in [
        ("{enabled: yes}", "yes"),
        ("{enabled: on}", "on"),
        ("{enabled: NO}", "NO"),
        ("{enabled: true}", "true"),
        ("{version: 1}", "1"),
        ("{version: 1.10}", "1.10"),
        ("{version: 1_000}", "1_000"),
    ] {
        let e = errors(&[NS_X, &np(labels)]);
        assert_eq!(e.len(), 1, "{labels}: {e:?}");
        let key = labels[1..].split(':').next().unwrap_or_default();
        assert!(
            e[0].contains(&format!("field spec.podSelector.matchLabels.{key}:"))
                && e[0].contains(&format!("`{text}`"))
                && e[0].contains(&format!("\"{text}\"")),
            "{labels}: {}",
            e[0]
        );
    }
    // Quoted, or not a YAML 1.1 boolean or number: strings, as before.
    for labels in [
        "{enabled: \"yes\"}",
        "{enabled: 'on'}",
        "{version: \"1.10\"}",
        "{version: v1}",
        "{enabled: Yes-please}",
        "{day: 2001-12-14}",
        // go-yaml v2's single-letter booleans stay strings, with a warning:
        // the upstream suite's namespace is `y` (see load/yaml11.rs).
        "{ns: y}",
        "{ns: N}",
    ] {
        let c = load(&[NS_X, &np(labels)]);
        assert_eq!(c.network_policies.len(), 1, "{labels}");
    }
    // Metadata labels and the name itself are refused the same way.
    let e = errors(&[&POD.replace("{app: a}", "{app: a, canary: yes}")]);
    assert!(
        e[0].contains("field metadata.labels.canary:") && e[0].contains("\"yes\""),
        "{}",
        e[0]
    );
}

/// YAMLToJSON turns a key that YAML 1.1 reads as a boolean or number into
/// its JSON string (`yes` becomes `true`, `0x10` becomes `16`): the label
/// the cluster holds is that one.
#[test]
fn yaml_1_1_keys_become_their_json_strings() {
    let c = load(&[&NS_X.replace("{team: a}", "{team: a, y: b, 0x10: c}")]);
    let x = &c.namespaces["x"];
    assert_eq!(x.labels.get("true").map(String::as_str), Some("b"));
    assert_eq!(x.labels.get("16").map(String::as_str), Some("c"));
    assert!(!x.labels.contains_key("y"));
}

/// A merge key (`<<: *anchor`) is applied as kubectl's YAML parser applies
/// it (goyaml.v2 decode.go, `merge`): the anchored entries land where `<<`
/// stands. serde_yaml alone would keep a literal `<<` key, which a typed
/// read ignores: this Service would have silently lost its selector.
#[test]
fn yaml_merge_keys_are_applied() {
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {namespace: x, name: s}\nspec:\n  <<: {selector: {app: a}}\n  ports:\n    - {port: 8080, targetPort: 80}\n---\napiVersion: v1\nkind: Service\nmetadata: {namespace: x, name: t}\nspec:\n  selector: {app: a}\n  ports:\n    - &p {port: 8080, targetPort: 80, name: one}\n    - {<<: [{name: ignored, port: 1}, *p], name: other}\n";
    let c = load(&[NS_X, POD, svc]);
    let s = c.services.iter().find(|s| s.name == "s").unwrap();
    assert_eq!(
        s.selector.as_ref().map(|m| m.required_pairs().to_vec()),
        Some(vec![("app".to_string(), "a".to_string())])
    );
    // In a list of mappings the earlier one wins; keys after `<<` win.
    let t = c.services.iter().find(|s| s.name == "t").unwrap();
    assert_eq!(t.ports.len(), 2, "{:?}", t.ports);
    assert_eq!(t.ports[1].port, 1);
    assert_eq!(t.ports[1].name.as_deref(), Some("other"));
}

/// Nested aliases ("billion laughs": ten levels of nine) expand to 9^10
/// nodes. Both readers of a file must refuse it at once with an error
/// instead of expanding it: the event reader that finds the plain scalars
/// once cloned every alias and ran out of memory before serde_yaml's
/// repetition limit was reached.
#[test]
fn nested_aliases_are_refused_without_being_expanded() {
    let mut doc = String::from(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: bomb, namespace: x}\ndata:\n  a0: &a0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n",
    );
    for i in 1..10 {
        let refs = vec![format!("*a{}", i - 1); 9].join(", ");
        doc.push_str(&format!("  a{i}: &a{i} [{refs}]\n"));
    }
    let started = std::time::Instant::now();
    let e = errors(&[&doc]);
    assert!(
        e.iter().any(|e| e.contains("repetition limit exceeded")),
        "{e:?}"
    );
    // Bounded, not timed: an expansion would take minutes and gigabytes.
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

/// Collections nested deeper than serde_yaml's recursion limit (128) are
/// refused before serde_yaml reads the file: its scanner checks every open
/// flow level on each token, so 100,000 levels of `{a: ` took minutes to
/// refuse. The error names the document and the line.
#[test]
fn deep_nesting_is_refused_before_parsing() {
    let depth = 100_000;
    let doc = format!(
        "{NS_X}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: d, namespace: x}}\ndata:\n  a: {}1{}\n",
        "{a: ".repeat(depth),
        "}".repeat(depth)
    );
    let e = errors(&[&doc]);
    assert_eq!(e.len(), 1, "{e:?}");
    assert!(
        e[0].starts_with("test-0.yaml: document 1: invalid YAML: collections nested more than 128 levels deep at line 11"),
        "{}",
        e[0]
    );
    // 128 levels are read (serde_yaml's own limit is what refuses more).
    let ok = format!(
        "{NS_X}---\napiVersion: v1\nkind: ConfigMap\nmetadata: {{name: d, namespace: x}}\ndata:\n  a: {}1{}\n",
        "[".repeat(100),
        "]".repeat(100)
    );
    if let Err(e) = try_load(&[&ok]) {
        assert!(!e.to_string().contains("nested more than"), "{e}");
    }
}
