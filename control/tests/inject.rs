//! `palisade inject`: golden files per workload kind, idempotence, opt-out,
//! probe rewriting, bad input, and validation of the output against the
//! Kubernetes schema by an independent validator (`kubernetes-validate`).
//!
//! Regenerate the golden files with `UPDATE_GOLDEN=1 cargo test -p palisade-control --test inject`.
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use palisade_control::inject::{InjectOptions, Outcome, inject_documents};
use serde_yaml::Value;

const KINDS: [&str; 8] = [
    "pod",
    "deployment",
    "statefulset",
    "daemonset",
    "replicaset",
    "job",
    "cronjob",
    "optout",
];

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/inject")
}

fn inject(input: &str, options: &InjectOptions) -> String {
    inject_documents(input, options).expect("inject").0
}

fn legacy() -> InjectOptions {
    InjectOptions {
        legacy_sidecar: true,
        ..InjectOptions::default()
    }
}

fn check_golden(name: &str, actual: &str) {
    let path = fixtures().join(format!("{name}.golden.yaml"));
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, actual).unwrap();
        return;
    }
    let expected = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert_eq!(actual, expected, "golden file {} differs", path.display());
}

fn read(name: &str) -> String {
    std::fs::read_to_string(fixtures().join(format!("{name}.yaml"))).unwrap()
}

fn docs(text: &str) -> Vec<Value> {
    use serde::Deserialize;
    serde_yaml::Deserializer::from_str(text)
        .map(|d| Value::deserialize(d).unwrap())
        .filter(|v| !v.is_null())
        .collect()
}

#[test]
fn golden_files_for_every_workload_kind() {
    for kind in KINDS {
        check_golden(kind, &inject(&read(kind), &InjectOptions::default()));
    }
    check_golden("deployment.legacy", &inject(&read("deployment"), &legacy()));
}

#[test]
fn injecting_twice_equals_injecting_once() {
    for options in [InjectOptions::default(), legacy()] {
        for kind in KINDS {
            let once = inject(&read(kind), &options);
            let twice = inject(&once, &options);
            assert_eq!(once, twice, "{kind} (legacy: {})", options.legacy_sidecar);
        }
    }
}

#[test]
fn opted_out_and_non_workload_objects_pass_through_unchanged() {
    let input = read("optout");
    let (out, outcomes) = inject_documents(&input, &InjectOptions::default()).unwrap();
    assert_eq!(docs(&out), docs(&input));
    assert!(matches!(&outcomes[0], Outcome::OptedOut(r) if r.contains("palisade.dev/inject")));
    assert_eq!(outcomes[1], Outcome::NotAWorkload);
}

#[test]
fn host_network_pods_are_not_injected() {
    let (out, outcomes) = inject_documents(&read("daemonset"), &InjectOptions::default()).unwrap();
    assert_eq!(outcomes[0], Outcome::Injected);
    assert!(matches!(&outcomes[1], Outcome::OptedOut(r) if r.contains("hostNetwork")));
    assert_eq!(docs(&out)[1], docs(&read("daemonset"))[1]);
}

// kubernetes.io, "Network Policies": a hostNetwork pod's "connections will
// be treated as node connections", and no sidecar can run in the node's
// network namespace: the reason says so. A spec.hostNetwork that is not a
// boolean (which the API server refuses) is an error naming the field, not
// a pod to inject.
#[test]
fn host_network_opt_out_says_why_and_a_non_boolean_is_refused() {
    let (_, outcomes) = inject_documents(&read("daemonset"), &InjectOptions::default()).unwrap();
    let Outcome::OptedOut(reason) = &outcomes[1] else {
        panic!("{outcomes:?}");
    };
    assert!(
        reason.contains("spec.hostNetwork: true")
            && reason.contains("no sidecar")
            && reason.contains("NetworkPolicy does not apply"),
        "{reason}"
    );
    let bad = read("daemonset").replace("hostNetwork: true", "hostNetwork: \"true\"");
    let err = inject_documents(&bad, &InjectOptions::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("DaemonSet") && err.contains("spec.template.spec.hostNetwork"),
        "{err}"
    );
}

/// `kubectl apply` reads YAML 1.1 (sigs.k8s.io/yaml's goyaml.v2,
/// resolve.go): the output must mean to it what the input meant. A quoted
/// `"yes"` or `"1_000"` stays a quoted string (written bare, kubectl would
/// read a boolean and a number, which the API server refuses in a label),
/// and an unquoted `yes` for `hostNetwork` stays the boolean true (the pod
/// is not injected).
#[test]
fn output_means_to_kubectl_what_the_input_meant() {
    let pod = "apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  labels: {enabled: \"yes\", mode: \"on\", count: \"1_000\", v: \"1.10\"}\nspec:\n  containers: [{name: c, image: nginx}]\n";
    let out = inject(pod, &InjectOptions::default());
    for line in [
        "enabled: 'yes'",
        "mode: 'on'",
        "count: '1_000'",
        "v: '1.10'",
    ] {
        assert!(out.contains(line), "{line}:\n{out}");
    }
    let host = pod.replace("spec:\n", "spec:\n  hostNetwork: yes\n");
    let (_, outcomes) = inject_documents(&host, &InjectOptions::default()).unwrap();
    assert!(
        matches!(&outcomes[0], Outcome::OptedOut(r) if r.contains("hostNetwork")),
        "{outcomes:?}"
    );
}

fn container<'a>(spec: &'a Value, list: &str, name: &str) -> &'a Value {
    spec[list]
        .as_sequence()
        .unwrap_or_else(|| panic!("no {list}"))
        .iter()
        .find(|c| c["name"].as_str() == Some(name))
        .unwrap_or_else(|| panic!("no container {name} in {list}"))
}

#[test]
fn native_sidecar_runs_after_capture_and_before_user_init_containers() {
    let out = docs(&inject(&read("deployment"), &InjectOptions::default()));
    let spec = &out[0]["spec"]["template"]["spec"];
    let names: Vec<&str> = spec["initContainers"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["palisade-init", "palisade-proxy", "migrate"]);
    let proxy = container(spec, "initContainers", "palisade-proxy");
    assert_eq!(proxy["restartPolicy"].as_str(), Some("Always"));
    assert_eq!(
        proxy["startupProbe"]["httpGet"]["path"].as_str(),
        Some("/ready")
    );
    assert_eq!(proxy["securityContext"]["runAsUser"].as_u64(), Some(1337));
    assert_eq!(
        proxy["securityContext"]["runAsNonRoot"].as_bool(),
        Some(true)
    );
    let init = container(spec, "initContainers", "palisade-init");
    let caps = &init["securityContext"]["capabilities"];
    assert_eq!(
        caps["add"],
        serde_yaml::from_str::<Value>("[NET_ADMIN, NET_RAW]").unwrap()
    );
    assert_eq!(
        caps["drop"],
        serde_yaml::from_str::<Value>("[ALL]").unwrap()
    );
    let args: Vec<&str> = init["args"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|a| a.as_str().unwrap())
        .collect();
    let joined = args.join(" ");
    assert!(joined.contains("--proxy-uid 1337"), "{joined}");
    assert!(
        joined.contains("--exclude-inbound-ports 15000,9090"),
        "{joined}"
    );
    assert!(joined.contains("--exclude-outbound-ports 9999"), "{joined}");
    assert!(
        joined.contains("--exclude-outbound-cidrs 203.0.113.0/24,192.0.2.10"),
        "{joined}"
    );
}

#[test]
fn legacy_sidecar_is_the_first_container_and_holds_the_app() {
    let out = docs(&inject(&read("deployment"), &legacy()));
    let spec = &out[0]["spec"]["template"]["spec"];
    let first = &spec["containers"][0];
    assert_eq!(first["name"].as_str(), Some("palisade-proxy"));
    assert!(first.get("restartPolicy").is_none());
    let hook = &first["lifecycle"]["postStart"]["exec"]["command"];
    assert_eq!(hook[1].as_str(), Some("wait-ready"));
    assert_eq!(
        spec["initContainers"][0]["name"].as_str(),
        Some("palisade-init")
    );
}

#[test]
fn http_and_tcp_probes_go_through_the_admin_port() {
    let out = docs(&inject(&read("pod"), &InjectOptions::default()));
    let spec = &out[0]["spec"];
    let web = container(spec, "containers", "web");
    assert_eq!(
        web["livenessProbe"]["httpGet"]["path"].as_str(),
        Some("/app-health/web/livez")
    );
    assert_eq!(
        web["livenessProbe"]["httpGet"]["port"].as_u64(),
        Some(15000)
    );
    assert_eq!(
        web["readinessProbe"]["httpGet"]["path"].as_str(),
        Some("/app-health/web/readyz")
    );
    assert!(web["readinessProbe"].get("tcpSocket").is_none());
    // exec probes never cross the capture and stay as written.
    assert!(web["startupProbe"].get("exec").is_some());
    let proxy = container(spec, "initContainers", "palisade-proxy");
    let env = proxy["env"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|e| e["name"].as_str() == Some("PALISADE_APP_PROBES"))
        .expect("PALISADE_APP_PROBES");
    let probes: serde_json::Value = serde_json::from_str(env["value"].as_str().unwrap()).unwrap();
    // The named port `http` is resolved to the container port.
    assert_eq!(probes["/app-health/web/livez"]["httpGet"]["port"], 8080);
    assert_eq!(
        probes["/app-health/web/livez"]["httpGet"]["path"],
        "/healthz"
    );
    assert_eq!(
        probes["/app-health/web/livez"]["httpGet"]["httpHeaders"][0]["value"],
        "live"
    );
    assert_eq!(probes["/app-health/web/readyz"]["tcpSocket"]["port"], 8080);
}

#[test]
fn bad_input_is_a_clear_error() {
    let opts = InjectOptions::default();
    let err = inject_documents("kind: Pod\nspec: [unclosed", &opts).unwrap_err();
    assert!(err.to_string().contains("document 0"), "{err}");
    let err = inject_documents("kind: Deployment\nmetadata: {name: x}\n", &opts).unwrap_err();
    assert!(err.to_string().contains(".spec"), "{err}");
    let bad_port = read("pod").replace("port: http", "port: nope");
    let err = inject_documents(&bad_port, &opts).unwrap_err();
    assert!(
        err.to_string()
            .contains("no container port is named \"nope\""),
        "{err}"
    );
    let bad_annotation = read("deployment").replace("\"9999\"", "\"99999\"");
    let err = inject_documents(&bad_annotation, &opts).unwrap_err();
    assert!(err.to_string().contains("exclude-outbound-ports"), "{err}");
}

#[test]
fn cli_reads_stdin_and_fails_with_exit_2_on_bad_input() {
    let bin = env!("CARGO_BIN_EXE_palisade");
    let mut child = Command::new(bin)
        .args(["inject", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(read("job").as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8(out.stdout).unwrap(),
        inject(&read("job"), &InjectOptions::default())
    );
    let missing = Command::new(bin)
        .args(["inject", "-f", "/nonexistent/x.yaml"])
        .output()
        .unwrap();
    assert_eq!(missing.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot read"));
}

/// Validates every golden output with `kubernetes-validate` (PyPI), an
/// implementation of the Kubernetes OpenAPI schema independent of ours.
#[test]
fn output_is_valid_kubernetes() {
    let validator = which("kubernetes-validate").unwrap_or_else(|| {
        panic!("kubernetes-validate is not installed: pip install kubernetes-validate (scripts/test.sh does)")
    });
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, options) in KINDS
        .iter()
        .map(|k| (k.to_string(), InjectOptions::default()))
        .chain([("deployment-legacy".to_string(), legacy())])
    {
        let source = name.trim_end_matches("-legacy");
        let path = dir.path().join(format!("{name}.yaml"));
        std::fs::write(&path, inject(&read(source), &options)).unwrap();
        files.push(path);
    }
    let out = Command::new(validator)
        .args(["--strict", "--no-warn", "-k", "1.33.0"])
        .args(&files)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "kubernetes-validate rejected the output:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn which(cmd: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|p| p.join(cmd))
            .find(|p| p.is_file())
    })
}

// Istio's opt-out, `sidecar.istio.io/inject: "false"` as a pod template
// label or annotation, is honoured as Palisade's own: existing Istio
// manifests keep their sidecar-less workloads, and the control plane
// (`load::injection_opt_out`) judges those pods as outside the mesh.
#[test]
fn istio_opt_out_label_and_annotation_are_honoured() {
    let pod = |meta: &str| {
        format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: naked\n  {meta}\nspec:\n  containers: [{{name: app, image: echo}}]\n"
        )
    };
    for meta in [
        "labels: {sidecar.istio.io/inject: \"false\"}",
        "annotations: {sidecar.istio.io/inject: \"false\"}",
    ] {
        let input = pod(meta);
        let (out, outcomes) = inject_documents(&input, &InjectOptions::default()).unwrap();
        assert_eq!(docs(&out), docs(&input), "{meta}");
        assert!(
            matches!(&outcomes[0], Outcome::OptedOut(r) if r.contains("sidecar.istio.io/inject")),
            "{meta}: {outcomes:?}"
        );
    }
    let (_, outcomes) = inject_documents(
        &pod("labels: {sidecar.istio.io/inject: \"true\"}"),
        &InjectOptions::default(),
    )
    .unwrap();
    assert_eq!(outcomes[0], Outcome::Injected);
}
