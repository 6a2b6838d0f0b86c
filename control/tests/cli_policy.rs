//! The real `palisade` binary: `compile`, `check` and `lint` exit codes and
//! output on the zero-trust example and on broken input.
mod policy_support;

use std::path::PathBuf;
use std::process::{Command, Output};

fn palisade(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(args)
        .output()
        .expect("run palisade")
}

fn example() -> String {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../examples/zero-trust")
        .display()
        .to_string()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn check_allow_and_deny_exit_zero_with_verdict_first() {
    let dir = example();
    let o = palisade(&[
        "check",
        "--config",
        &dir,
        "--from",
        "frontend/web-0",
        "--to",
        "backend/api-server-0",
        "--port",
        "8080",
        "--method",
        "GET",
        "--path",
        "/api/v1/orders",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().next(), Some("allow"));
    assert!(
        out.contains(
            "egress at frontend/web-0: allowed by NetworkPolicy frontend/web-to-api rule 0"
        ),
        "{out}"
    );
    assert!(out.contains("STRICT"), "{out}");
    assert!(
        out.contains("matched ALLOW policy backend/api-server rule 0"),
        "{out}"
    );

    let o = palisade(&[
        "check",
        "--config",
        &dir,
        "--from",
        "frontend/web-0",
        "--to",
        "backend/api-server-0",
        "--port",
        "8080",
        "--method",
        "DELETE",
        "--path",
        "/api/v1/orders/1",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert_eq!(out.lines().next(), Some("deny"));
    assert!(out.contains("no ALLOW policy matched"), "{out}");
}

#[test]
fn check_service_judges_every_endpoint() {
    let o = palisade(&[
        "check",
        "--config",
        &example(),
        "--from",
        "backend/api-server-0",
        "--to",
        "svc:database/postgres",
        "--port",
        "5432",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert_eq!(out.lines().next(), Some("allow"));
    assert!(
        out.contains("endpoint database/postgres-0 198.18.4.10:5432: allow"),
        "{out}"
    );
}

#[test]
fn check_json_follows_the_documented_schema() {
    let o = palisade(&[
        "check",
        "--config",
        &example(),
        "--from",
        "203.0.113.9",
        "--to",
        "backend/api-server-1",
        "--port",
        "http",
        "--output",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "deny");
    assert_eq!(v["identity"], serde_json::Value::Null);
    let e = &v["endpoints"][0];
    assert_eq!(e["port"], 8080);
    assert_eq!(e["egress"]["verdict"], "skip");
    assert_eq!(e["egress"]["reason"], "outside-cluster");
    assert_eq!(e["mtls"]["mode"], "STRICT");
    assert_eq!(e["mtls"]["plaintextAccepted"], false);
    assert_eq!(e["mtls"]["verdict"], "deny");
    assert_eq!(e["ingress"]["reason"], "no-rule-matched");
    assert_eq!(e["authorization"]["traffic"], "tcp");
}

#[test]
fn check_bad_input_exits_two_with_a_message() {
    let dir = example();
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "--from",
                "frontend/nope",
                "--to",
                "backend/api-server-0",
                "--port",
                "80",
            ],
            "no pod frontend/nope",
        ),
        (
            &[
                "--from",
                "frontend/web-0",
                "--to",
                "svc:backend/none",
                "--port",
                "80",
            ],
            "no Service backend/none",
        ),
        (
            &[
                "--from",
                "frontend/web-0",
                "--to",
                "backend/api-server-0",
                "--port",
                "0",
            ],
            "out of range",
        ),
        (
            &[
                "--from",
                "frontend/web-0",
                "--to",
                "backend/api-server-0",
                "--port",
                "Bad_Name",
            ],
            "port name",
        ),
        (
            &[
                "--from",
                "frontend/web-0",
                "--to",
                "backend/api-server-0",
                "--port",
                "grpc",
            ],
            "no TCP container port named",
        ),
        (
            &[
                "--from",
                "frontend/web-0",
                "--to",
                "203.0.113.1",
                "--port",
                "http",
            ],
            "outside the cluster",
        ),
        (
            &[
                "--from",
                "frontend/web-0",
                "--to",
                "backend/api-server-0",
                "--port",
                "80",
                "--protocol",
                "ICMP",
            ],
            "TCP, UDP or SCTP",
        ),
        (
            &[
                "--from",
                "spiffe://cluster.local/ns/a/sa/b",
                "--to",
                "backend/api-server-0",
                "--port",
                "80",
            ],
            "--source-ip",
        ),
        (
            &[
                "--from",
                "frontend/web-0",
                "--to",
                "backend/api-server-0",
                "--port",
                "8080",
                "--method",
                "GET",
                "--path",
                "/",
                "--header",
                "novalue",
            ],
            "NAME:VALUE",
        ),
        (
            &[
                "--from",
                "x",
                "--to",
                "backend/api-server-0",
                "--port",
                "80",
            ],
            "expected NS/POD",
        ),
    ];
    // Port names no manifest could declare (IANA_SVC_NAME).
    let bad_names: Vec<String> = ["-http", "http-", "ht--tp", "123-4", "abcdefghijklmnop"]
        .iter()
        .map(|n| format!("--port={n}"))
        .collect();
    let bad_name_args: Vec<[&str; 5]> = bad_names
        .iter()
        .map(|p| {
            [
                "--from",
                "frontend/web-0",
                "--to",
                "backend/api-server-0",
                p.as_str(),
            ]
        })
        .collect();
    let bad_name_cases = bad_name_args.iter().map(|a| (&a[..], "IANA_SVC_NAME"));
    for (args, want) in cases.iter().copied().chain(bad_name_cases) {
        let mut all = vec!["check", "--config", dir.as_str()];
        all.extend_from_slice(args);
        let o = palisade(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", stdout(&o));
        assert!(stdout(&o).is_empty(), "{args:?}");
        assert!(stderr(&o).contains(want), "{args:?}: {}", stderr(&o));
    }
    // --method without --path is a usage error, also exit 2.
    let o = palisade(&[
        "check", "--config", &dir, "--from", "a/b", "--to", "c/d", "--port", "1", "--method", "GET",
    ]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn broken_config_exits_two_naming_every_error() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("bad.yaml"),
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x}\nstatus: {podIP: nope}\n---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: c, namespace: x}\nspec: {action: CUSTOM}\n",
    )
    .unwrap();
    let d = dir.path().display().to_string();
    for args in [
        vec!["lint", "--config", &d],
        vec!["compile", "--config", &d, "--workload", "x/p"],
        vec![
            "check", "--config", &d, "--from", "x/p", "--to", "x/p", "--port", "1",
        ],
    ] {
        let o = palisade(&args);
        assert_eq!(o.status.code(), Some(2), "{args:?}");
        let err = stderr(&o);
        assert!(err.contains("2 errors"), "{err}");
        assert!(
            err.contains("bad.yaml: document 0: Pod x/p: field status.podIP"),
            "{err}"
        );
        assert!(
            err.contains("bad.yaml: document 1: AuthorizationPolicy x/c: field spec.action"),
            "{err}"
        );
    }
}

#[test]
fn compile_prints_a_versioned_config() {
    let o = palisade(&[
        "compile",
        "--config",
        &example(),
        "--workload",
        "frontend/web-0",
        "--output",
        "json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let c: palisade_api::ProxyConfig = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        c.workload.identity,
        "spiffe://cluster.local/ns/frontend/sa/web"
    );
    assert_eq!(c.version, c.compute_version());
    let yaml = palisade(&[
        "compile",
        "--config",
        &example(),
        "--workload",
        "frontend/web-0",
    ]);
    let from_yaml = palisade_api::ProxyConfig::from_yaml_or_json(&stdout(&yaml)).unwrap();
    assert_eq!(from_yaml, c);
    let o = palisade(&[
        "compile",
        "--config",
        &example(),
        "--workload",
        "frontend/missing",
    ]);
    assert_eq!(o.status.code(), Some(2));
    assert!(stderr(&o).contains("no pod frontend/missing"));
}

#[test]
fn lint_exit_codes_by_severity() {
    let o = palisade(&["lint", "--config", &example()]);
    assert_eq!(o.status.code(), Some(0), "{}", stdout(&o));
    assert!(stdout(&o).contains("0 error(s), 0 warning(s)"));
    // Warnings alone exit 0; an error exits 1.
    let dir = tempfile::tempdir().unwrap();
    let pods = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: x, labels: {app: p}}\nspec:\n  containers:\n    - name: c\n      ports: [{name: http, containerPort: 80}]\nstatus: {podIP: 198.18.0.1}\n";
    let deny = "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny, namespace: x}\nspec:\n  podSelector: {}\n  policyTypes: [Egress]\n";
    std::fs::write(dir.path().join("a.yaml"), format!("{pods}---\n{deny}")).unwrap();
    let d = dir.path().display().to_string();
    let o = palisade(&["lint", "--config", &d]);
    assert_eq!(o.status.code(), Some(0));
    assert!(
        stdout(&o).contains("warning[egress-without-dns] Namespace x"),
        "{}",
        stdout(&o)
    );
    let svc = "apiVersion: v1\nkind: Service\nmetadata: {name: s, namespace: x}\nspec:\n  selector: {app: p}\n  ports: [{port: 80, targetPort: grpc}]\n";
    std::fs::write(dir.path().join("b.yaml"), svc).unwrap();
    let o = palisade(&["lint", "--config", &d, "--output", "json"]);
    assert_eq!(o.status.code(), Some(1));
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(
        v.as_array()
            .unwrap()
            .iter()
            .any(|f| f["severity"] == "error" && f["code"] == "unknown-named-port")
    );
}

// kubernetes.io, "Network Policies": "traffic to and from the node where a
// Pod is running is always allowed, regardless of the IP address of the Pod
// or the node". `palisade check` says so, and a malformed status.hostIP is a
// loader error naming the object and field.
#[test]
fn check_explains_the_node_traffic_exemption() {
    let dir = tempfile::tempdir().unwrap();
    let pod = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: {app: a}}\nspec: {containers: [{name: c, ports: [{containerPort: 80}]}]}\nstatus: {phase: Running, podIP: 198.18.0.10, hostIP: 10.0.0.1}\n";
    let deny = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: x}\nspec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n";
    std::fs::write(dir.path().join("x.yaml"), format!("{pod}{deny}")).unwrap();
    let d = dir.path().display().to_string();
    let check = |from: &str, to: &str, extra: &[&str]| {
        let mut args = vec![
            "check", "--config", &d, "--from", from, "--to", to, "--port", "80",
        ];
        args.extend_from_slice(extra);
        palisade(&args)
    };

    let o = check("10.0.0.1", "x/a", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().next(), Some("allow"), "{out}");
    assert!(
        out.contains("ingress at x/a: allowed: traffic to/from the pod's own node is always allowed (kubernetes.io, Network Policies)"),
        "{out}"
    );
    let o = check("x/a", "10.0.0.1", &[]);
    let out = stdout(&o);
    assert_eq!(out.lines().next(), Some("allow"), "{out}");
    assert!(
        out.contains(
            "egress at x/a: allowed: traffic to/from the pod's own node is always allowed"
        ),
        "{out}"
    );
    let o = check("10.0.0.2", "x/a", &["--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["verdict"], "deny");
    assert_eq!(v["endpoints"][0]["ingress"]["reason"], "no-rule-matched");
    let o = check("10.0.0.1", "x/a", &["--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["endpoints"][0]["ingress"]["reason"], "node-traffic");

    std::fs::write(
        dir.path().join("x.yaml"),
        pod.replace("hostIP: 10.0.0.1", "hostIP: node-1"),
    )
    .unwrap();
    let o = check("x/a", "10.0.0.1", &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("x.yaml: document 0: Pod x/a: field status.hostIP"),
        "{err}"
    );
}

// kubernetes.io, "Network Policies", "NetworkPolicy and `hostNetwork` pods":
// "The network plugin cannot properly distinguish `hostNetwork` pod traffic,
// and so it ignores `hostNetwork` pods when matching `podSelector` and
// `namespaceSelector`. Traffic to/from `hostNetwork` pods is treated the same
// as all other traffic to/from the node IP. (This is the most common
// implementation.)" `palisade check` says so for the hostNetwork end,
// `palisade compile` refuses it (no sidecar), and a spec.hostNetwork that is
// not a boolean is a loader error naming the object and field.
#[test]
fn check_and_compile_explain_host_network_pods() {
    let dir = tempfile::tempdir().unwrap();
    let pods = "apiVersion: v1\nkind: Pod\nmetadata: {name: a, namespace: x, labels: {app: a}}\nspec: {containers: [{name: c, ports: [{containerPort: 80}]}]}\nstatus: {phase: Running, podIP: 198.18.0.10, hostIP: 10.0.0.2}\n---\napiVersion: v1\nkind: Pod\nmetadata: {name: h, namespace: x, labels: {app: h}}\nspec: {hostNetwork: true, containers: [{name: c, ports: [{containerPort: 9100}]}]}\nstatus: {phase: Running, podIP: 10.0.0.1, hostIP: 10.0.0.1}\n";
    let deny = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: deny-all, namespace: x}\nspec: {podSelector: {}, policyTypes: [Ingress, Egress]}\n";
    std::fs::write(dir.path().join("x.yaml"), format!("{pods}{deny}")).unwrap();
    let d = dir.path().display().to_string();
    let check = |from: &str, to: &str, port: &str, extra: &[&str]| {
        let mut args = vec![
            "check", "--config", &d, "--from", from, "--to", to, "--port", port,
        ];
        args.extend_from_slice(extra);
        palisade(&args)
    };
    let why = "hostNetwork pod: NetworkPolicy does not apply (kubernetes.io, NetworkPolicy and hostNetwork pods)";

    // To the hostNetwork pod: x/a's egress decides (another node: denied),
    // x/h's ingress does not apply.
    let o = check("x/a", "x/h", "9100", &[]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert_eq!(out.lines().next(), Some("deny"), "{out}");
    assert!(
        out.contains(&format!("[skip] ingress at x/h: {why}")),
        "{out}"
    );
    assert!(out.contains("[deny] egress at x/a: denied"), "{out}");
    // From it: its egress does not apply; x/a's ingress sees the node IP.
    let o = check("x/h", "x/a", "80", &["--output", "json"]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["sourceIp"], "10.0.0.1");
    assert_eq!(v["endpoints"][0]["egress"]["reason"], "host-network");
    assert_eq!(v["endpoints"][0]["egress"]["verdict"], "skip");
    assert_eq!(v["endpoints"][0]["ingress"]["reason"], "no-rule-matched");
    // The node's address is the node, not the pod.
    let o = check("10.0.0.1", "x/a", "80", &[]);
    let out = stdout(&o);
    assert!(out.contains("from 10.0.0.1 (10.0.0.1,"), "{out}");

    let o = palisade(&["compile", "--config", &d, "--workload", "x/h"]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(err.contains("x/h") && err.contains("hostNetwork"), "{err}");
    let o = palisade(&["compile", "--config", &d, "--workload", "x/a"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(!stdout(&o).contains("x/h"), "{}", stdout(&o));

    std::fs::write(
        dir.path().join("x.yaml"),
        pods.replace("hostNetwork: true", "hostNetwork: \"yes\""),
    )
    .unwrap();
    let o = check("x/a", "x/h", "9100", &[]);
    assert_eq!(o.status.code(), Some(2));
    let err = stderr(&o);
    assert!(
        err.contains("x.yaml: document 1: Pod x/h: field spec.hostNetwork"),
        "{err}"
    );
}

// Istio, "Authorization Policy Conditions": `connection.sni`, "The server
// name indication", supported for HTTP and TCP. `palisade check --sni`
// gives the server name the caller's ClientHello carries; without it none
// is sent (Palisade's sidecars dial a peer by IP), so a DENY on an SNI
// pattern does not match.
#[test]
fn check_sni_is_judged_by_connection_sni_conditions() {
    let dir = tempfile::tempdir().unwrap();
    let pod = |name: &str, ip: &str| {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: x, labels: {{app: {name}}}}}\nspec: {{containers: [{{name: c, ports: [{{containerPort: 443}}]}}]}}\nstatus: {{phase: Running, podIP: {ip}}}\n"
        )
    };
    let deny = "---\napiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: deny-legacy-sni, namespace: x}\nspec:\n  selector: {matchLabels: {app: b}}\n  action: DENY\n  rules:\n  - when:\n    - key: connection.sni\n      values: ['*.legacy.example']\n";
    std::fs::write(
        dir.path().join("x.yaml"),
        format!(
            "{}{}{deny}",
            pod("a", "198.18.0.10"),
            pod("b", "198.18.0.11")
        ),
    )
    .unwrap();
    let d = dir.path().display().to_string();
    let check = |extra: &[&str]| {
        let mut args = vec![
            "check", "--config", &d, "--from", "x/a", "--to", "x/b", "--port", "443",
        ];
        args.extend_from_slice(extra);
        let o = palisade(&args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        stdout(&o)
    };
    let out = check(&["--sni", "db.legacy.example"]);
    assert_eq!(out.lines().next(), Some("deny"), "{out}");
    assert!(
        out.contains("matched DENY policy x/deny-legacy-sni rule 0"),
        "{out}"
    );
    let out = check(&["--sni", "db.current.example"]);
    assert_eq!(out.lines().next(), Some("allow"), "{out}");
    let out = check(&[]);
    assert_eq!(out.lines().next(), Some("allow"), "{out}");
}

/// A caller known by identity (`--from spiffe://... --source-ip IP`) is
/// judged by Istio's rules, which do not tie an identity to an address.
/// The sidecar ties them (the handshake needs a bundle for the ID's trust
/// domain, and the source IP must belong to the identity: a pod running as
/// it, or for a federated trust domain an address that is no pod's), and
/// the mtls layer's detail says when it would refuse the caller, and why.
#[test]
fn check_notes_when_the_sidecar_would_refuse_a_spiffe_caller() {
    let dir = tempfile::tempdir().unwrap();
    for entry in std::fs::read_dir(example()).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yaml") {
            std::fs::copy(&path, dir.path().join(path.file_name().unwrap())).unwrap();
        }
    }
    let config = dir.path().display().to_string();
    let check = |from: &str, ip: &str| {
        let o = palisade(&[
            "check",
            "--config",
            &config,
            "--from",
            from,
            "--source-ip",
            ip,
            "--to",
            "backend/api-server-0",
            "--port",
            "8080",
            "--method",
            "GET",
            "--path",
            "/api/v1/orders",
            "--output",
            "json",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let report: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        let endpoint = report["endpoints"][0].clone();
        (
            report["verdict"].as_str().unwrap().to_string(),
            endpoint["mtls"]["verdict"].as_str().unwrap().to_string(),
            endpoint["mtls"]["detail"].as_str().unwrap().to_string(),
        )
    };
    let refused = |detail: &str| detail.contains("would refuse this one");
    let web = "spiffe://cluster.local/ns/frontend/sa/web";
    // From web-0's own address: as `--from frontend/web-0`, no note.
    let (verdict, _, detail) = check(web, "198.18.2.10");
    assert_eq!(verdict, "allow", "{detail}");
    assert!(!refused(&detail), "{detail}");
    // From an address that is no pod's, or another pod's: Istio's verdict,
    // with the note.
    let (_, mtls, detail) = check(web, "203.0.113.5");
    assert_eq!(mtls, "allow", "{detail}");
    assert!(
        refused(&detail) && detail.contains("is not a pod of the mesh"),
        "{detail}"
    );
    let (_, mtls, detail) = check(web, "198.18.3.11");
    assert_eq!(mtls, "allow", "{detail}");
    assert!(
        refused(&detail) && detail.contains("belongs to backend/api-server-1"),
        "{detail}"
    );

    // Another trust domain: no bundle until the mesh federates with it.
    let cart = "spiffe://remote.test/ns/shop/sa/cart";
    let (_, _, detail) = check(cart, "203.0.113.5");
    assert!(
        refused(&detail) && detail.contains("neither the mesh's, an alias, nor federated"),
        "{detail}"
    );
    let (_, item) = policy_support::federated_trust_domain("remote.test");
    let mesh_path = dir.path().join("00-mesh.yaml");
    let mesh = std::fs::read_to_string(&mesh_path).unwrap();
    std::fs::write(
        &mesh_path,
        format!("{mesh}  federatedTrustDomains:\n{item}"),
    )
    .unwrap();
    // Federated, from an address that is no pod's: nothing to note.
    let (_, _, detail) = check(cart, "203.0.113.5");
    assert!(!refused(&detail), "{detail}");
    // From a pod's address, which belongs to that pod's identity.
    let (_, _, detail) = check(cart, "198.18.2.10");
    assert!(
        refused(&detail) && detail.contains("belongs to frontend/web-0"),
        "{detail}"
    );
}

/// `--to` given one of a pod's addresses judges that address, not the
/// pod's address in the source's family: from a dual-stack client's IPv4
/// address, `--to fd00::2` is the server's IPv6 address, which an IPv4
/// ipBlock does not admit.
#[test]
fn check_to_a_pod_address_judges_that_exact_address() {
    let dir = tempfile::tempdir().unwrap();
    let pod = |ns: &str, name: &str, v4: &str, v6: &str| {
        format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: {ns}, labels: {{app: {name}}}}}\nspec: {{containers: [{{name: c, ports: [{{containerPort: 8080, name: web}}]}}]}}\nstatus: {{phase: Running, podIP: {v4}, podIPs: [{{ip: {v4}}}, {{ip: '{v6}'}}]}}\n"
        )
    };
    let egress = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {name: eg, namespace: x}\nspec:\n  podSelector: {matchLabels: {app: client}}\n  policyTypes: [Egress]\n  egress:\n  - to: [{ipBlock: {cidr: 198.18.1.2/32}}]\n    ports: [{port: 8080}]\n";
    std::fs::write(
        dir.path().join("x.yaml"),
        format!(
            "{}{}{egress}",
            pod("x", "client", "198.18.1.10", "fd00::10"),
            pod("y", "server", "198.18.1.2", "fd00::2")
        ),
    )
    .unwrap();
    let d = dir.path().display().to_string();
    let check = |to: &str| {
        let o = palisade(&[
            "check", "--config", &d, "--from", "x/client", "--to", to, "--port", "8080",
            "--output", "json",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        (
            v["verdict"].as_str().unwrap().to_string(),
            v["endpoints"][0]["ip"].as_str().unwrap().to_string(),
        )
    };
    assert_eq!(check("fd00::2"), ("deny".into(), "fd00::2".into()));
    assert_eq!(check("198.18.1.2"), ("allow".into(), "198.18.1.2".into()));
    // By name: the pod's address in the source's family.
    assert_eq!(check("y/server"), ("allow".into(), "198.18.1.2".into()));
}

/// The audit's repros (Istio's "Authorization on TCP traffic"): on a
/// Service port named `tcp`, the sidecar tunnels the connection and
/// authorizes it as TCP, where an ALLOW rule naming methods is skipped and
/// a DENY rule naming methods drops them and matches. `check` with
/// `--method/--path` says deny, through the Service and to the pod, and
/// explains that the request was not considered and why.
#[test]
fn check_judges_an_opaque_port_as_tcp_and_says_why() {
    let dir = tempfile::tempdir().unwrap();
    let cluster = "apiVersion: v1\nkind: Namespace\nmetadata: {name: foo}\n---\napiVersion: v1\nkind: Namespace\nmetadata: {name: bar}\n---\napiVersion: v1\nkind: Pod\nmetadata: {namespace: foo, name: httpbin, labels: {app: httpbin}}\nspec:\n  serviceAccountName: httpbin\n  containers: [{name: c, ports: [{name: http, containerPort: 8000}, {name: tcp, containerPort: 9000}]}]\nstatus: {podIP: 198.18.1.10}\n---\napiVersion: v1\nkind: Pod\nmetadata: {namespace: bar, name: client, labels: {app: client}}\nspec:\n  serviceAccountName: client\n  containers: [{name: c}]\nstatus: {podIP: 198.18.2.10}\n---\napiVersion: v1\nkind: Service\nmetadata: {namespace: foo, name: httpbin}\nspec:\n  clusterIP: 10.96.0.20\n  selector: {app: httpbin}\n  ports: [{name: http, port: 80, targetPort: 8000}, {name: tcp, port: 9001, targetPort: 9000}]\n";
    std::fs::write(dir.path().join("cluster.yaml"), cluster).unwrap();
    let d = dir.path().display().to_string();
    let check = |to: &str, port: &str| {
        let o = palisade(&[
            "check",
            "--config",
            &d,
            "--from",
            "bar/client",
            "--to",
            to,
            "--port",
            port,
            "--method",
            "GET",
            "--path",
            "/",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        stdout(&o)
    };
    let why = "GET / was not considered, because the port is opaque: Service foo/httpbin port 9001 targets it and is named \"tcp\"";
    for (name, policy) in [
        (
            "deny-post",
            "  action: DENY\n  rules:\n  - to: [{operation: {methods: [\"POST\"]}}]\n",
        ),
        (
            "allow-get",
            "  rules:\n  - to: [{operation: {methods: [\"GET\"]}}]\n",
        ),
    ] {
        std::fs::write(
            dir.path().join("policy.yaml"),
            format!(
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{namespace: foo, name: {name}}}\nspec:\n{policy}"
            ),
        )
        .unwrap();
        for (to, port) in [("svc:foo/httpbin", "9001"), ("foo/httpbin", "9000")] {
            let out = check(to, port);
            assert_eq!(
                out.lines().next(),
                Some("deny"),
                "{name} {to}:{port}\n{out}"
            );
            assert!(out.contains(why), "{name} {to}:{port}\n{out}");
        }
        // The HTTP port still judges the request.
        let out = check("svc:foo/httpbin", "80");
        assert_eq!(out.lines().next(), Some("allow"), "{name}\n{out}");
        assert!(!out.contains("not considered"), "{out}");
    }
}
