//! Config versioning and loading: the version is a content hash that ignores
//! the `version` field itself, and bad input gives a located error.
use http::HeaderMap;
use palisade_api::authz::{HttpRequest, RequestContext};
use palisade_api::normalize::normalize_path;
use palisade_api::{CompiledConfig, ConfigError, Protocol, ProxyConfig};

const YAML: &str = r#"
version: ""
mesh:
  trustDomain: cluster.local
  trustDomainAliases: [old.local]
  pathNormalization: DECODE_AND_MERGE_SLASHES
workload:
  namespace: default
  name: httpbin-0
  serviceAccount: httpbin
  identity: spiffe://cluster.local/ns/default/sa/httpbin
  ips: [198.18.0.9]
  ports:
  - port: 8000
    protocol: TCP
inbound:
  mtls: STRICT
  portMtls: {9000: PERMISSIVE}
  ingress:
    isolated: true
    policies: [default/web]
    rules:
    - policy: default/web
      rule: 0
      peers:
      - description: ipBlock 198.18.0.0/15
        nets: [198.18.0.0/15]
        except: [198.18.5.0/24]
      ports:
      - {protocol: TCP, port: 8000, endPort: 8000}
outbound:
  egress:
    isolated: false
authorization:
- name: default/allow-sleep
  action: ALLOW
  rules:
  - from:
    - principals: [cluster.local/ns/default/sa/sleep]
    to:
    - methods: [GET]
      paths: ["/api/{**}"]
"#;

#[test]
fn version_is_a_stable_content_hash() {
    let config = ProxyConfig::from_yaml_or_json(YAML).unwrap();
    let v = config.compute_version();
    assert_eq!(v.len(), 16);
    assert!(
        v.bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    );
    // The version field itself does not count.
    let mut versioned = config.clone();
    versioned.version = "something else".into();
    assert_eq!(versioned.compute_version(), v);
    assert_eq!(config.clone().with_computed_version().version, v);
    // Any content change does.
    let mut changed = config.clone();
    changed.inbound.ingress.rules[0].ports.as_mut().unwrap()[0].end_port = 8001;
    assert_ne!(changed.compute_version(), v);
    let mut changed = config.clone();
    changed.workload.name = "httpbin-1".into();
    assert_ne!(changed.compute_version(), v);
}

#[test]
fn yaml_and_json_round_trip_with_the_same_version() {
    let config = ProxyConfig::from_yaml_or_json(YAML)
        .unwrap()
        .with_computed_version();
    let json = config.to_json().unwrap();
    let yaml = config.to_yaml().unwrap();
    let from_json = ProxyConfig::from_yaml_or_json(&json).unwrap();
    let from_yaml = ProxyConfig::from_yaml_or_json(&yaml).unwrap();
    assert_eq!(from_json, config);
    assert_eq!(from_yaml, config);
    assert_eq!(from_json.compute_version(), config.version);
}

#[test]
fn bad_input_gives_a_located_error() {
    let err = ProxyConfig::from_yaml_or_json("{\"version\": \"x\",\n \"mesh\": 3}").unwrap_err();
    assert!(matches!(err, ConfigError::Json { line: 2, .. }), "{err:?}");
    assert!(err.to_string().contains("line 2"), "{err}");

    let bad_yaml = YAML.replace("mtls: STRICT", "mtls: SORTA");
    let err = ProxyConfig::from_yaml_or_json(&bad_yaml).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ConfigError::Yaml { .. }));
    assert!(msg.contains("line") && msg.contains("SORTA"), "{msg}");

    let unknown = YAML.replace("  name: httpbin-0", "  name: httpbin-0\n  nmae: typo");
    let msg = ProxyConfig::from_yaml_or_json(&unknown)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("nmae"), "{msg}");

    // The cluster domain: a DNS subdomain; the default is not written out.
    let cfg = ProxyConfig::from_yaml_or_json(YAML).unwrap();
    assert_eq!(cfg.mesh.cluster_domain, "cluster.local");
    assert!(
        !serde_json::to_string(&cfg)
            .unwrap()
            .contains("clusterDomain")
    );
    let corp = YAML.replace(
        "  pathNormalization:",
        "  clusterDomain: corp.example\n  pathNormalization:",
    );
    let cfg = ProxyConfig::from_yaml_or_json(&corp).unwrap();
    assert_eq!(cfg.mesh.cluster_domain, "corp.example");
    assert!(
        serde_json::to_string(&cfg)
            .unwrap()
            .contains("\"clusterDomain\":\"corp.example\"")
    );
    let bad = corp.replace("corp.example", "Corp..Example");
    let msg = ProxyConfig::from_yaml_or_json(&bad)
        .unwrap_err()
        .to_string();
    assert!(msg.contains("not a DNS subdomain"), "{msg}");

    for junk in ["", "- a\n- b", "\u{0}\u{1}", "{", "::::"] {
        assert!(ProxyConfig::from_yaml_or_json(junk).is_err(), "{junk:?}");
    }
}

#[test]
fn compiled_config_evaluates_the_loaded_config() {
    // The sidecar and `palisade check` both go through CompiledConfig.
    let config = ProxyConfig::from_yaml_or_json(YAML)
        .unwrap()
        .with_computed_version();
    let compiled = CompiledConfig::new(&config).unwrap();
    assert_eq!(compiled.version, config.version);
    let src = "198.18.0.2".parse().unwrap();
    assert!(
        compiled
            .ingress
            .evaluate(src, 8000, Protocol::Tcp)
            .is_allowed()
    );
    assert!(
        !compiled
            .ingress
            .evaluate(src, 8001, Protocol::Tcp)
            .is_allowed()
    );
    assert!(
        !compiled
            .ingress
            .evaluate("198.18.5.1".parse().unwrap(), 8000, Protocol::Tcp)
            .is_allowed()
    );
    assert!(
        compiled
            .egress
            .evaluate("192.0.2.1".parse().unwrap(), 443, Protocol::Tcp)
            .is_allowed()
    );

    let path = normalize_path(
        "/x/..//api/%2e/v1%2Fusers?debug=1",
        compiled.path_normalization,
    )
    .unwrap();
    assert_eq!(path.path(), "/api/v1/users");
    let headers = HeaderMap::new();
    let request = |peer| {
        RequestContext::tcp(Some(peer), src, "198.18.0.9".parse().unwrap(), 8000).with_http(
            HttpRequest {
                method: "GET",
                path: path.path(),
                host: "httpbin",
                headers: &headers,
            },
        )
    };
    assert!(
        compiled
            .authz
            .evaluate(&request("spiffe://cluster.local/ns/default/sa/sleep"))
            .is_allowed()
    );
    // The trust domain alias from the mesh settings applies.
    assert!(
        compiled
            .authz
            .evaluate(&request("spiffe://old.local/ns/default/sa/sleep"))
            .is_allowed()
    );
    assert!(
        !compiled
            .authz
            .evaluate(&request("spiffe://cluster.local/ns/default/sa/other"))
            .is_allowed()
    );

    // An invalid policy fails the whole config, naming the policy.
    let mut bad = config.clone();
    bad.authorization[0].rules[0].to[0].paths = vec!["/a/{**}/{*}".into()];
    let err = CompiledConfig::new(&bad).unwrap_err();
    assert!(err.to_string().contains("default/allow-sleep"), "{err}");
}

/// A sidecar's `--config` file is YAML or JSON: YAML nested deeper than
/// serde_yaml reads is refused before serde_yaml's scanner, which takes
/// minutes over 100,000 levels of `{a: `, sees it (JSON has serde_json's
/// own limit of 128, reached in linear time).
#[test]
fn deeply_nested_yaml_config_is_refused_before_parsing() {
    let n = 100_000;
    let text = format!("mesh: {}1{}\n", "{a: ".repeat(n), "}".repeat(n));
    match palisade_api::ProxyConfig::from_yaml_or_json(&text) {
        Err(palisade_api::version::ConfigError::TooDeep(deep)) => {
            assert_eq!((deep.document, deep.line), (0, 1));
        }
        other => panic!("expected TooDeep, got {other:?}"),
    }
    let json = format!("{{\"mesh\": {}1{}}}", "[".repeat(n), "]".repeat(n));
    assert!(palisade_api::ProxyConfig::from_yaml_or_json(&json).is_err());
}
