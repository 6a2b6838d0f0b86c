//! `palisade inject`: rewrites workload manifests so every pod runs the
//! Palisade sidecar. Works on the generic YAML tree (not typed structs) so
//! fields this code does not know pass through untouched.
//!
//! What one injection adds to a pod template:
//! - `palisade-init`, an init container running `palisade-proxy init` with only
//!   NET_ADMIN and NET_RAW, which installs the capture rules;
//! - `palisade-proxy`, the sidecar: a native sidecar (an init container with
//!   `restartPolicy: Always`, Kubernetes 1.28+) whose startup probe holds the
//!   app until the proxy is ready, or with `--legacy-sidecar` the first regular
//!   container with a `postStart` hook that waits for readiness;
//! - the bootstrap token volume, resources, and HTTP/TCP probes of the app
//!   rewritten to go through the proxy's admin port.

mod options;
mod probes;
mod sidecar;
pub mod webhook;
pub mod webhook_metrics;
pub mod webhook_server;
mod workload;

pub use options::{InjectOptions, Resources};

use serde_yaml::Value;

use crate::load::yaml11;
use thiserror::Error;

/// Annotation that opts a workload out of injection (`"false"`).
pub const ANNOTATION_INJECT: &str = "palisade.dev/inject";
/// Annotation the injector sets on every pod template it rewrote.
pub const ANNOTATION_STATUS: &str = "palisade.dev/status";
/// Comma-separated inbound ports the capture rules leave alone.
pub const ANNOTATION_EXCLUDE_INBOUND_PORTS: &str = "palisade.dev/exclude-inbound-ports";
/// Comma-separated outbound ports the capture rules leave alone.
pub const ANNOTATION_EXCLUDE_OUTBOUND_PORTS: &str = "palisade.dev/exclude-outbound-ports";
/// Comma-separated CIDRs whose outbound traffic bypasses the sidecar.
pub const ANNOTATION_EXCLUDE_OUTBOUND_CIDRS: &str = "palisade.dev/exclude-outbound-cidrs";
/// Comma-separated server-first ports on which detection is skipped.
pub const ANNOTATION_OPAQUE_PORTS: &str = "palisade.dev/opaque-ports";

#[derive(Debug, Error)]
pub enum InjectError {
    #[error("document {index}: not valid YAML: {source}")]
    Yaml {
        index: usize,
        #[source]
        source: crate::load::yaml11::ReadError,
    },
    #[error("document {index} ({object}): {message}")]
    Invalid {
        index: usize,
        object: String,
        message: String,
    },
}

/// What happened to one document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Injected,
    AlreadyInjected,
    OptedOut(String),
    NotAWorkload,
}

/// Injects every workload of a multi-document YAML stream and returns the
/// rewritten stream plus one outcome per document.
pub fn inject_documents(
    input: &str,
    options: &InjectOptions,
) -> Result<(String, Vec<Outcome>), InjectError> {
    let mut docs = Vec::new();
    let mut outcomes = Vec::new();
    // Read and written as kubectl reads YAML (1.1: an unquoted `yes` is a
    // boolean), so the output means to kubectl what the input meant.
    let values = yaml11::read_documents(input)
        .map_err(|(index, source)| InjectError::Yaml { index, source })?;
    for (index, mut value) in values.into_iter().enumerate() {
        if value.is_null() {
            continue;
        }
        let outcome =
            inject_value(&mut value, options).map_err(|message| InjectError::Invalid {
                index,
                object: workload::describe(&value),
                message,
            })?;
        outcomes.push(outcome);
        docs.push(value);
    }
    let mut out = String::new();
    for (i, doc) in docs.iter().enumerate() {
        if i > 0 {
            out.push_str("---\n");
        }
        let text = yaml11::to_string(doc).map_err(|source| InjectError::Yaml {
            index: i,
            source: source.into(),
        })?;
        out.push_str(&text);
    }
    Ok((out, outcomes))
}

/// Injects one object in place (a `List` injects each of its items).
fn inject_value(value: &mut Value, options: &InjectOptions) -> Result<Outcome, String> {
    if value.get("kind").and_then(Value::as_str) == Some("List") {
        if let Some(items) = value.get_mut("items").and_then(Value::as_sequence_mut) {
            let mut any = false;
            for item in items {
                any |= inject_value(item, options)? == Outcome::Injected;
            }
            return Ok(if any {
                Outcome::Injected
            } else {
                Outcome::NotAWorkload
            });
        }
        return Ok(Outcome::NotAWorkload);
    }
    let Some(mut template) = workload::pod_template(value)? else {
        return Ok(Outcome::NotAWorkload);
    };
    if let Some(reason) = template.opt_out_reason()? {
        return Ok(Outcome::OptedOut(reason));
    }
    if template.is_injected() {
        return Ok(Outcome::AlreadyInjected);
    }
    let app_probes = probes::rewrite(template.spec_mut(), options.admin_port)?;
    let annotations = template.annotations();
    sidecar::add(template.spec_mut(), &annotations, &app_probes, options)?;
    template.mark_injected();
    Ok(Outcome::Injected)
}
