//! The manifests under `deploy/` agree with what `palisade control --kube`
//! reads: the ClusterRole grants get, list and watch on exactly the kinds
//! of `kube_mirror::kinds::KINDS`, and the MeshConfig CRD serves the group,
//! version, plural and scope the mirror asks for.
use std::collections::BTreeSet;

use palisade_control::kube_mirror::kinds::KINDS;
use serde_yaml::Value;

fn docs(file: &str) -> Vec<Value> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../deploy")
        .join(file);
    let text = std::fs::read_to_string(&path).unwrap();
    serde_yaml::Deserializer::from_str(&text)
        .map(|d| serde::Deserialize::deserialize(d).unwrap())
        .collect()
}

fn strings(v: &Value) -> Vec<String> {
    v.as_sequence()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn the_cluster_role_grants_reading_every_mirrored_kind_and_nothing_more() {
    let role = docs("rbac.yaml")
        .into_iter()
        .find(|d| d["kind"].as_str() == Some("ClusterRole"))
        .unwrap();
    let mut granted = BTreeSet::new();
    for rule in role["rules"].as_sequence().unwrap() {
        let verbs: BTreeSet<String> = strings(&rule["verbs"]).into_iter().collect();
        assert_eq!(
            verbs,
            ["get", "list", "watch"].map(String::from).into(),
            "{rule:?}"
        );
        for group in strings(&rule["apiGroups"]) {
            for resource in strings(&rule["resources"]) {
                granted.insert((group.clone(), resource));
            }
        }
    }
    let wanted: BTreeSet<(String, String)> = KINDS
        .iter()
        .map(|k| (k.group.to_string(), k.plural.to_string()))
        .collect();
    assert_eq!(granted, wanted);
}

#[test]
fn the_mesh_config_crd_serves_what_the_mirror_asks_for() {
    let crd = &docs("meshconfig-crd.yaml")[0];
    let kind = KINDS.iter().find(|k| k.kind == "MeshConfig").unwrap();
    assert_eq!(crd["spec"]["group"].as_str(), Some(kind.group));
    assert_eq!(crd["spec"]["names"]["plural"].as_str(), Some(kind.plural));
    assert_eq!(crd["spec"]["names"]["kind"].as_str(), Some(kind.kind));
    assert_eq!(
        crd["spec"]["scope"].as_str(),
        Some(if kind.namespaced {
            "Namespaced"
        } else {
            "Cluster"
        })
    );
    let served: Vec<&str> = crd["spec"]["versions"]
        .as_sequence()
        .unwrap()
        .iter()
        .filter(|v| v["served"].as_bool() == Some(true))
        .filter_map(|v| v["name"].as_str())
        .collect();
    assert!(served.contains(&kind.version), "{served:?}");
    assert_eq!(
        crd["metadata"]["name"].as_str(),
        Some(kind.resource_name().as_str())
    );
}

#[test]
fn the_webhook_configuration_sends_pod_creations_to_palisade_webhook() {
    let docs = docs("injector.yaml");
    let config = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("MutatingWebhookConfiguration"))
        .unwrap();
    let hook = &config["webhooks"][0];
    // What `palisade webhook` answers: AdmissionReview v1 at /inject.
    assert_eq!(strings(&hook["admissionReviewVersions"]), ["v1"]);
    assert_eq!(
        hook["clientConfig"]["service"]["path"].as_str(),
        Some("/inject")
    );
    // Fail closed: no pod of an injected namespace starts without a sidecar.
    assert_eq!(hook["failurePolicy"].as_str(), Some("Fail"));
    assert_eq!(hook["sideEffects"].as_str(), Some("None"));
    let rule = &hook["rules"][0];
    assert_eq!(strings(&rule["resources"]), ["pods"]);
    assert_eq!(strings(&rule["operations"]), ["CREATE"]);
    // The Service leads to the webhook's default port.
    let service = docs
        .iter()
        .find(|d| d["kind"].as_str() == Some("Service"))
        .unwrap();
    assert_eq!(
        service["metadata"]["name"].as_str(),
        hook["clientConfig"]["service"]["name"].as_str()
    );
    assert_eq!(
        service["spec"]["ports"][0]["targetPort"].as_u64(),
        Some(9443)
    );
}
