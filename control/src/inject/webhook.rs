//! Injection as a Kubernetes mutating admission webhook: an
//! `AdmissionReview` (admission.k8s.io/v1) for a Pod comes in, and the
//! answer carries the JSON Patch (RFC 6902) that turns the pod into what
//! `palisade inject` would print for it, so the two never differ.
//!
//! A pod that is already injected is admitted unchanged; one that opted
//! out (the annotation, or `hostNetwork`) is admitted unchanged with a
//! warning kubectl prints. A pod whose injection fails (a malformed
//! annotation or probe) is refused with the reason: admitting it without a
//! sidecar would leave it outside every policy.
use base64::Engine;
use serde_json::{Value, json};

use super::{InjectOptions, Outcome, inject_value, workload};

/// Why a request is not an AdmissionReview we can answer (HTTP 400).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ReviewError {
    #[error("the body is not JSON: {0}")]
    Json(String),
    #[error("expected apiVersion admission.k8s.io/v1 and kind AdmissionReview, got {0}")]
    NotAReview(String),
    #[error("field request.{0} is missing")]
    Missing(&'static str),
}

/// What became of one review, for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Injected,
    Unchanged(String),
    Refused(String),
}

/// Answers one AdmissionReview.
pub fn review(body: &[u8], options: &InjectOptions) -> Result<(Value, Decision), ReviewError> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| ReviewError::Json(e.to_string()))?;
    let api_version = review.get("apiVersion").and_then(Value::as_str);
    let kind = review.get("kind").and_then(Value::as_str);
    if api_version != Some("admission.k8s.io/v1") || kind != Some("AdmissionReview") {
        return Err(ReviewError::NotAReview(format!(
            "{} {}",
            api_version.unwrap_or("(no apiVersion)"),
            kind.unwrap_or("(no kind)")
        )));
    }
    let request = review
        .get("request")
        .ok_or(ReviewError::Missing("(the whole request)"))?;
    let uid = request
        .get("uid")
        .and_then(Value::as_str)
        .ok_or(ReviewError::Missing("uid"))?;
    let object = request
        .get("object")
        .filter(|o| o.is_object())
        .ok_or(ReviewError::Missing("object"))?;
    let resource_kind = request
        .get("kind")
        .and_then(|k| k.get("kind"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    let (response, decision) = if resource_kind != "Pod" {
        (
            json!({"uid": uid, "allowed": true}),
            Decision::Unchanged(format!("not a Pod ({resource_kind})")),
        )
    } else {
        answer(uid, object, request, options)
    };
    Ok((
        json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}),
        decision,
    ))
}

fn answer(
    uid: &str,
    object: &Value,
    request: &Value,
    options: &InjectOptions,
) -> (Value, Decision) {
    // A pod being created has no name yet when it comes from a controller
    // (`generateName`); the request carries its namespace.
    let pod_name = object
        .pointer("/metadata/name")
        .or_else(|| object.pointer("/metadata/generateName"))
        .or_else(|| request.get("name"))
        .and_then(Value::as_str)
        .unwrap_or("(unnamed)");
    let namespace = request
        .get("namespace")
        .and_then(Value::as_str)
        .unwrap_or("(no namespace)");
    let refuse = |message: String| {
        (
            json!({"uid": uid, "allowed": false,
                   "status": {"code": 400, "reason": "BadRequest", "message": message}}),
            Decision::Refused(message.clone()),
        )
    };
    // Objects in reviews carry apiVersion and kind; the patch is computed
    // against the same object either way.
    let mut base = object.clone();
    if let Some(map) = base.as_object_mut() {
        map.entry("apiVersion").or_insert_with(|| "v1".into());
        map.entry("kind").or_insert_with(|| "Pod".into());
    }
    let mut pod: serde_yaml::Value = match serde_json::from_value(base.clone()) {
        Ok(p) => p,
        Err(e) => return refuse(format!("palisade: the pod does not parse: {e}")),
    };
    let outcome = match inject_value(&mut pod, options) {
        Ok(o) => o,
        Err(message) => {
            return refuse(format!(
                "palisade: cannot add the sidecar to pod {namespace}/{pod_name} ({}): {message}; without it the pod would run outside the mesh's policies, so it is refused (opt out with the annotation {}: \"false\")",
                workload::describe(&pod),
                super::ANNOTATION_INJECT
            ));
        }
    };
    let unchanged = |why: &str| {
        (
            json!({"uid": uid, "allowed": true}),
            Decision::Unchanged(why.to_string()),
        )
    };
    match outcome {
        Outcome::Injected => {}
        Outcome::AlreadyInjected => return unchanged("already injected"),
        // Admitted, with a warning kubectl shows, so nobody believes a pod
        // without a sidecar is covered by the mesh's policies.
        Outcome::OptedOut(reason) => {
            return (
                json!({"uid": uid, "allowed": true,
                       "warnings": [format!("palisade: no sidecar for pod {namespace}/{pod_name}: {reason}")]}),
                Decision::Unchanged(reason),
            );
        }
        Outcome::NotAWorkload => return unchanged("no pod spec"),
    }
    let after = match serde_json::to_value(&pod) {
        Ok(v) => v,
        Err(e) => {
            return refuse(format!(
                "palisade: the injected pod does not serialize: {e}"
            ));
        }
    };
    let patch = json_patch::diff(&base, &after);
    let patch = match serde_json::to_vec(&patch) {
        Ok(p) => p,
        Err(e) => return refuse(format!("palisade: the patch does not serialize: {e}")),
    };
    (
        json!({"uid": uid, "allowed": true, "patchType": "JSONPatch",
               "patch": base64::engine::general_purpose::STANDARD.encode(patch)}),
        Decision::Injected,
    )
}
