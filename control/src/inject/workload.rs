//! Finds the pod template inside each workload kind and reads or marks its
//! annotations.
use std::collections::BTreeMap;

use serde_yaml::{Mapping, Value};

use super::ANNOTATION_STATUS;

/// The pod template of a workload: its metadata and its pod spec.
pub struct PodTemplate<'a> {
    /// Where the pod spec is, for messages: `spec` or `spec.template.spec`.
    spec_path: String,
    metadata: &'a mut Mapping,
    spec: &'a mut Mapping,
    /// The owning object's annotations (Deployment metadata), read for opt-out.
    owner_annotations: BTreeMap<String, String>,
}

/// `Kind ns/name` for error messages.
pub fn describe(value: &Value) -> String {
    let kind = value.get("kind").and_then(Value::as_str).unwrap_or("?");
    let meta = value.get("metadata");
    let name = meta
        .and_then(|m| m.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("?");
    match meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
    {
        Some(ns) => format!("{kind} {ns}/{name}"),
        None => format!("{kind} {name}"),
    }
}

/// The path from the object to its pod template, per kind; `None` for kinds
/// that hold no pods.
fn template_path(kind: &str) -> Option<&'static [&'static str]> {
    match kind {
        "Pod" => Some(&[]),
        "Deployment"
        | "StatefulSet"
        | "DaemonSet"
        | "ReplicaSet"
        | "Job"
        | "ReplicationController" => Some(&["spec", "template"]),
        "CronJob" => Some(&["spec", "jobTemplate", "spec", "template"]),
        _ => None,
    }
}

/// Locates the pod template; `Ok(None)` when the object is not a workload.
pub fn pod_template(value: &mut Value) -> Result<Option<PodTemplate<'_>>, String> {
    let Some(kind) = value.get("kind").and_then(Value::as_str) else {
        return Ok(None);
    };
    let Some(path) = template_path(kind) else {
        return Ok(None);
    };
    let owner_annotations = annotations_of(value.get("metadata"));
    let mut node = value;
    let mut walked = String::new();
    for key in path {
        walked.push('.');
        walked.push_str(key);
        node = node
            .get_mut(*key)
            .ok_or_else(|| format!("field {walked} is missing"))?;
    }
    let template = node
        .as_mapping_mut()
        .ok_or_else(|| format!("field {walked} is not an object"))?;
    let metadata_key = Value::from("metadata");
    if !template.contains_key(&metadata_key) {
        template.insert(metadata_key.clone(), Value::Mapping(Mapping::new()));
    }
    let mut metadata = None;
    let mut spec = None;
    for (k, v) in template.iter_mut() {
        match k.as_str() {
            Some("metadata") => metadata = v.as_mapping_mut(),
            Some("spec") => spec = v.as_mapping_mut(),
            _ => {}
        }
    }
    let metadata = metadata.ok_or_else(|| format!("field {walked}.metadata is not an object"))?;
    let spec = spec.ok_or_else(|| format!("field {walked}.spec is missing or not an object"))?;
    let spec_path = format!("{walked}.spec").trim_start_matches('.').to_string();
    Ok(Some(PodTemplate {
        spec_path,
        metadata,
        spec,
        owner_annotations,
    }))
}

fn annotations_of(metadata: Option<&Value>) -> BTreeMap<String, String> {
    string_map_of(metadata, "annotations")
}

/// The string entries of `metadata.KEY` (labels or annotations).
fn string_map_of(metadata: Option<&Value>, key: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    if let Some(map) = metadata
        .and_then(|m| m.get(key))
        .and_then(Value::as_mapping)
    {
        for (k, v) in map {
            if let (Some(k), Some(v)) = (k.as_str(), v.as_str()) {
                out.insert(k.to_string(), v.to_string());
            }
        }
    }
    out
}

impl PodTemplate<'_> {
    pub fn spec_mut(&mut self) -> &mut Mapping {
        self.spec
    }

    /// The pod template's annotations.
    pub fn annotations(&self) -> BTreeMap<String, String> {
        annotations_of(Some(&Value::Mapping(self.metadata.clone())))
    }

    /// Why this pod must not be injected, if it must not; an error for a
    /// `hostNetwork` that is not a boolean (the API server refuses it).
    pub fn opt_out_reason(&self) -> Result<Option<String>, String> {
        let pod = self.annotations();
        let labels = string_map_of(Some(&Value::Mapping(self.metadata.clone())), "labels");
        let none = BTreeMap::new();
        // The control plane reads the same keys on the pods it sees
        // (`load::injection_opt_out`), so what is not injected is judged
        // as outside the mesh.
        for (source, labels, annotations) in [
            ("pod template", &labels, &pod),
            ("workload", &none, &self.owner_annotations),
        ] {
            if let Some(why) = crate::load::injection_opt_out(labels, annotations) {
                return Ok(Some(format!("{source} {why}")));
            }
        }
        match self.spec.get("hostNetwork") {
            None | Some(Value::Null) | Some(Value::Bool(false)) => Ok(None),
            // kubernetes.io, "Network Policies": a hostNetwork pod's
            // "connections will be treated as node connections".
            Some(Value::Bool(true)) => Ok(Some(format!(
                "{}.hostNetwork: true: the pod runs in the node's network namespace, where no sidecar can run (capture would redirect the node's traffic) and NetworkPolicy does not apply (kubernetes.io, NetworkPolicy and hostNetwork pods)",
                self.spec_path
            ))),
            Some(other) => Err(format!(
                "field {}.hostNetwork: {} is not a boolean (true or false)",
                self.spec_path,
                serde_yaml::to_string(other)
                    .map(|s| s.trim_end().to_string())
                    .unwrap_or_default()
            )),
        }
    }

    /// True when a Palisade sidecar is already in the pod.
    pub fn is_injected(&self) -> bool {
        ["initContainers", "containers"].iter().any(|list| {
            self.spec
                .get(*list)
                .and_then(Value::as_sequence)
                .is_some_and(|containers| {
                    containers.iter().any(|c| {
                        c.get("name").and_then(Value::as_str) == Some(super::sidecar::PROXY_NAME)
                    })
                })
        })
    }

    pub fn mark_injected(&mut self) {
        let key = Value::from("annotations");
        if !matches!(self.metadata.get(&key), Some(Value::Mapping(_))) {
            self.metadata
                .insert(key.clone(), Value::Mapping(Mapping::new()));
        }
        if let Some(Value::Mapping(annotations)) = self.metadata.get_mut(&key) {
            annotations.insert(Value::from(ANNOTATION_STATUS), Value::from("injected"));
        }
    }
}
