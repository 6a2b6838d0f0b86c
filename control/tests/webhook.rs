//! `palisade webhook`: sidecar injection as a mutating admission webhook,
//! driven with curl over real HTTPS as the API server drives it (POST
//! /inject, an AdmissionReview v1). The JSON Patch it answers, applied to
//! the pod, gives exactly what `palisade inject` prints for that pod; a pod
//! that opted out passes unchanged; one that cannot be injected is refused
//! with the reason; a rotated serving certificate is picked up.
mod control_support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use base64::Engine;
use palisade_control::inject::{InjectOptions, inject_documents};
use serde_json::{Value, json};

/// A CA and a serving certificate for 127.0.0.1 from it, as PEM files in
/// `dir` named `NAME-ca.pem`, `NAME.pem` and `NAME-key.pem`.
fn certificate(dir: &Path, name: &str) -> (PathBuf, PathBuf, PathBuf) {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, format!("webhook test CA {name}"));
    let ca_cert = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let params = rcgen::CertificateParams::new(vec![
        "127.0.0.1".to_string(),
        "palisade-webhook.palisade-system.svc".to_string(),
    ])
    .unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}-key.pem")),
    );
    std::fs::write(&paths.0, ca_cert.pem()).unwrap();
    std::fs::write(&paths.1, cert.pem()).unwrap();
    std::fs::write(&paths.2, key.serialize_pem()).unwrap();
    paths
}

struct Webhook {
    _proc: control_support::Proc,
    addr: String,
}

fn start(cert: &Path, key: &Path) -> Webhook {
    let mut child = Command::new(env!("CARGO_BIN_EXE_palisade"))
        .args(["webhook", "--listen", "127.0.0.1:0", "--tls-cert"])
        .arg(cert)
        .arg("--tls-key")
        .arg(key)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let proc = control_support::Proc(child);
    let addr = line
        .trim()
        .strip_prefix("palisade webhook listening on ")
        .unwrap_or_else(|| panic!("the webhook did not start: {line:?}"))
        .to_string();
    Webhook { _proc: proc, addr }
}

/// curl `args` against the webhook, trusting `ca`; (HTTP status, body).
fn curl(w: &Webhook, ca: &Path, args: &[&str]) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--cacert"])
        .arg(ca)
        .args(["-o", "-", "-w", "\n%{http_code}"])
        .args(args)
        .output()
        .expect("curl is installed by scripts/test.sh");
    assert!(
        out.status.success(),
        "curl failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, code) = text.rsplit_once('\n').unwrap();
    let _ = w;
    (code.parse().unwrap(), body.to_string())
}

fn post_review(w: &Webhook, ca: &Path, review: &Value) -> (u16, String) {
    let url = format!("https://{}/inject", w.addr);
    curl(
        w,
        ca,
        &[
            "-X",
            "POST",
            "-H",
            "content-type: application/json",
            "--data-binary",
            &review.to_string(),
            &url,
        ],
    )
}

fn review_of(kind: &str, object: Value) -> Value {
    json!({
        "apiVersion": "admission.k8s.io/v1",
        "kind": "AdmissionReview",
        "request": {
            "uid": "705ab4f5-6393-11e8-b7cc-42010a800002",
            "kind": {"group": "", "version": "v1", "kind": kind},
            "resource": {"group": "", "version": "v1", "resource": "pods"},
            "namespace": "frontend",
            "operation": "CREATE",
            "userInfo": {"username": "system:serviceaccount:kube-system:replicaset-controller"},
            "object": object,
            "dryRun": false
        }
    })
}

fn fixture(name: &str) -> String {
    std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/inject")
            .join(name),
    )
    .unwrap()
}

/// The first document of a YAML stream (the fixtures hold a workload and
/// then objects that are not), as JSON.
fn yaml_to_json(text: &str) -> Value {
    let first = serde_yaml::Deserializer::from_str(text).next().unwrap();
    let v = <serde_yaml::Value as serde::Deserialize>::deserialize(first).unwrap();
    serde_json::to_value(v).unwrap()
}

#[test]
fn the_patch_makes_the_pod_palisade_inject_prints() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificate(tmp.path(), "one");
    let w = start(&cert, &key);
    let pod_yaml = fixture("pod.yaml");
    let pod = yaml_to_json(&pod_yaml);
    let (status, body) = post_review(&w, &ca, &review_of("Pod", pod.clone()));
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["apiVersion"], "admission.k8s.io/v1");
    assert_eq!(answer["kind"], "AdmissionReview");
    let response = &answer["response"];
    assert_eq!(response["uid"], "705ab4f5-6393-11e8-b7cc-42010a800002");
    assert_eq!(response["allowed"], true);
    assert_eq!(response["patchType"], "JSONPatch");
    let patch_bytes = base64::engine::general_purpose::STANDARD
        .decode(response["patch"].as_str().unwrap())
        .unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(&patch_bytes).unwrap();
    let mut patched = pod.clone();
    json_patch::patch(&mut patched, &patch).unwrap();
    let (printed, _) = inject_documents(&pod_yaml, &InjectOptions::default()).unwrap();
    assert_eq!(patched, yaml_to_json(&printed));
    assert_eq!(
        patched["metadata"]["annotations"]["palisade.dev/status"],
        "injected"
    );

    // The API server sends objects without apiVersion and kind too; a pod
    // from a controller has only generateName.
    let mut bare = pod.clone();
    let map = bare.as_object_mut().unwrap();
    map.remove("apiVersion");
    map.remove("kind");
    map["metadata"].as_object_mut().unwrap().remove("name");
    map["metadata"]["generateName"] = json!("web-7d4f8-");
    let (_, body) = post_review(&w, &ca, &review_of("Pod", bare.clone()));
    let answer: Value = serde_json::from_str(&body).unwrap();
    let patch: json_patch::Patch = serde_json::from_slice(
        &base64::engine::general_purpose::STANDARD
            .decode(answer["response"]["patch"].as_str().unwrap())
            .unwrap(),
    )
    .unwrap();
    json_patch::patch(&mut bare, &patch).unwrap();
    assert_eq!(bare["spec"], patched["spec"]);
}

#[test]
fn opted_out_unchanged_refused_and_bad_requests() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca, cert, key) = certificate(tmp.path(), "one");
    let w = start(&cert, &key);

    // Opted out, already injected, not a pod: admitted without a patch.
    let optout = yaml_to_json(&fixture("optout.yaml"));
    let injected = yaml_to_json(&fixture("pod.golden.yaml"));
    for (kind, object) in [
        ("Pod", optout),
        ("Pod", injected),
        ("ConfigMap", json!({"metadata": {"name": "x"}})),
    ] {
        let (status, body) = post_review(&w, &ca, &review_of(kind, object));
        assert_eq!(status, 200, "{body}");
        let answer: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(answer["response"]["allowed"], true, "{body}");
        assert!(answer["response"].get("patch").is_none(), "{body}");
    }

    // A hostNetwork pod runs no sidecar: admitted, with a warning saying so.
    let mut host = yaml_to_json(&fixture("pod.yaml"));
    host["spec"]["hostNetwork"] = json!(true);
    let (status, body) = post_review(&w, &ca, &review_of("Pod", host.clone()));
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], true, "{body}");
    assert!(answer["response"].get("patch").is_none(), "{body}");
    let warning = answer["response"]["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains("no sidecar for pod frontend/web") && warning.contains("hostNetwork"),
        "{warning}"
    );

    // One whose injection fails is refused with the reason (admitted, it
    // would run outside every policy).
    host["spec"]["hostNetwork"] = json!("true");
    let (status, body) = post_review(&w, &ca, &review_of("Pod", host));
    assert_eq!(status, 200, "{body}");
    let answer: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(answer["response"]["allowed"], false, "{body}");
    let message = answer["response"]["status"]["message"].as_str().unwrap();
    assert!(
        message.contains("spec.hostNetwork") && message.contains("palisade.dev/inject"),
        "{message}"
    );

    // What is not an AdmissionReview is a 400; other methods and paths too.
    let url = format!("https://{}/inject", w.addr);
    for (body, why) in [
        ("not json", "not JSON"),
        (
            "{\"apiVersion\": \"v1\", \"kind\": \"Pod\"}",
            "AdmissionReview",
        ),
        (
            "{\"apiVersion\": \"admission.k8s.io/v1\", \"kind\": \"AdmissionReview\", \"request\": {\"object\": {}}}",
            "request.uid",
        ),
    ] {
        let (status, text) = curl(&w, &ca, &["-X", "POST", "--data-binary", body, &url]);
        assert_eq!(status, 400, "{text}");
        assert!(text.contains(why), "{why}: {text}");
    }
    assert_eq!(curl(&w, &ca, &[&url]).0, 405);
    assert_eq!(
        curl(&w, &ca, &[&format!("https://{}/mutate", w.addr)]).0,
        404
    );

    // Every review above, counted by what became of the pod; and a health
    // endpoint for the Deployment's probes.
    let (status, metrics) = curl(&w, &ca, &[&format!("https://{}/metrics", w.addr)]);
    assert_eq!(status, 200);
    for line in [
        "palisade_webhook_reviews_total{outcome=\"Unchanged\"} 4",
        "palisade_webhook_reviews_total{outcome=\"Refused\"} 1",
        "palisade_webhook_reviews_total{outcome=\"BadRequest\"} 3",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in\n{metrics}");
    }
    assert!(!metrics.contains("outcome=\"Injected\""), "{metrics}");
    assert_eq!(
        curl(&w, &ca, &[&format!("https://{}/healthz", w.addr)]),
        (200, "ok\n".to_string())
    );
}

#[test]
fn a_rotated_serving_certificate_is_picked_up() {
    let tmp = tempfile::tempdir().unwrap();
    let (ca_one, cert, key) = certificate(tmp.path(), "one");
    let w = start(&cert, &key);
    let pod = yaml_to_json(&fixture("pod.yaml"));
    assert_eq!(
        post_review(&w, &ca_one, &review_of("Pod", pod.clone())).0,
        200
    );
    // The Secret is rotated: a certificate from another CA replaces both
    // files (as a kubelet's atomic Secret update does).
    let (ca_two, cert_two, key_two) = certificate(tmp.path(), "two");
    std::fs::rename(&key_two, &key).unwrap();
    std::fs::rename(&cert_two, &cert).unwrap();
    let mut status = 0;
    for _ in 0..50 {
        let out = Command::new("curl")
            .args(["-sS", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
            .arg(&ca_two)
            .arg(format!("https://{}/inject", w.addr))
            .output()
            .unwrap();
        status = String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0);
        if status == 405 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(status, 405, "the new certificate is served");
}
