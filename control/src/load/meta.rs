//! Validation shared by every kind, as apimachinery does it: `metadata`
//! labels and annotations (ValidateLabels, ValidateAnnotations) and label
//! selectors (ValidateLabelSelector). Every problem is reported, at the
//! field path the API server names.
use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};

use super::names::{
    LABEL_KEY_RULE, LABEL_VALUE_RULE, valid_dns_label, valid_dns_subdomain, valid_dns1035_label,
    valid_label_key, valid_label_value,
};
use super::{FieldError, ObjectHead};
use crate::cluster::Selector;

/// TotalAnnotationSizeLimitB: keys and values of all annotations together.
const ANNOTATIONS_MAX_BYTES: usize = 256 * 1024;

/// ValidateLabels: every key a qualified name, every value a label value,
/// each problem reported at `field` itself.
pub(super) fn labels(field: &str, labels: &BTreeMap<String, String>, errors: &mut Vec<FieldError>) {
    for (k, v) in labels {
        if !valid_label_key(k) {
            errors.push(FieldError::new(
                field,
                format!("{k:?} is not a valid label key ({LABEL_KEY_RULE})"),
            ));
        }
        if !valid_label_value(v) {
            errors.push(FieldError::new(
                field,
                format!("{v:?} (label {k:?}) is not a valid label value ({LABEL_VALUE_RULE})"),
            ));
        }
    }
}

/// ValidateAnnotations: every key a qualified name once lower-cased (their
/// case does not matter), and at most 256 KiB of keys and values.
fn annotations(field: &str, annotations: &BTreeMap<String, String>, errors: &mut Vec<FieldError>) {
    for k in annotations.keys() {
        if !valid_label_key(&k.to_ascii_lowercase()) {
            errors.push(FieldError::new(
                field,
                format!("{k:?} is not a valid annotation key ({LABEL_KEY_RULE}; any case)"),
            ));
        }
    }
    let size: usize = annotations.iter().map(|(k, v)| k.len() + v.len()).sum();
    if size > ANNOTATIONS_MAX_BYTES {
        errors.push(FieldError::new(
            field,
            format!("annotations are {size} bytes, more than the limit of {ANNOTATIONS_MAX_BYTES}"),
        ));
    }
}

/// What a kind's `metadata.name` must be (the `nameFn` its validation
/// passes to ValidateObjectMeta).
#[derive(Debug, Clone, Copy)]
pub(super) enum NameRule {
    /// NameIsDNSSubdomain: Pods, NetworkPolicies and most kinds.
    DnsSubdomain,
    /// ValidateNamespaceName: a DNS-1123 label.
    DnsLabel,
    /// ValidateServiceName: a DNS-1035 label (it becomes a DNS label and an
    /// environment variable prefix).
    Dns1035Label,
}

impl NameRule {
    fn check(self, name: &str) -> Result<(), &'static str> {
        match self {
            NameRule::DnsSubdomain if !valid_dns_subdomain(name) => Err(
                "a DNS-1123 subdomain: at most 253 lowercase alphanumerics, '-' or '.', beginning and ending with an alphanumeric",
            ),
            NameRule::DnsLabel if !valid_dns_label(name) => Err(
                "a DNS-1123 label: at most 63 lowercase alphanumerics or '-', beginning and ending with an alphanumeric",
            ),
            NameRule::Dns1035Label if !valid_dns1035_label(name) => Err(
                "a DNS-1035 label: at most 63 lowercase alphanumerics or '-', beginning with a letter and ending with an alphanumeric",
            ),
            _ => Ok(()),
        }
    }
}

/// ValidateObjectMeta, the parts that matter here: the name by the kind's
/// rule, the namespace of a namespaced kind (ValidateNamespaceName), the
/// labels and the annotations.
pub(super) fn object_meta(
    head: &ObjectHead,
    meta: &ObjectMeta,
    name: NameRule,
    errors: &mut Vec<FieldError>,
) {
    if let Err(rule) = name.check(&head.name) {
        errors.push(FieldError::new(
            "metadata.name",
            format!("{:?} is not a valid {} name ({rule})", head.name, head.kind),
        ));
    }
    if !head.namespace.is_empty()
        && let Err(rule) = NameRule::DnsLabel.check(&head.namespace)
    {
        errors.push(FieldError::new(
            "metadata.namespace",
            format!(
                "{:?} is not a valid namespace name ({rule})",
                head.namespace
            ),
        ));
    }
    labels_and_annotations(meta, errors);
}

/// The labels and annotations of an object's metadata.
fn labels_and_annotations(meta: &ObjectMeta, errors: &mut Vec<FieldError>) {
    if let Some(l) = &meta.labels {
        labels("metadata.labels", l, errors);
    }
    if let Some(a) = &meta.annotations {
        annotations("metadata.annotations", a, errors);
    }
}

/// ValidateLabelSelector: `matchLabels` through ValidateLabels, then each
/// requirement (ValidateLabelSelectorRequirement): values required for In
/// and NotIn, forbidden for Exists and DoesNotExist, no other operator, the
/// key a qualified name and each value a label value.
pub(super) fn label_selector(
    field: &str,
    sel: &LabelSelector,
) -> Result<Selector, Vec<FieldError>> {
    let mut errors = Vec::new();
    if let Some(l) = &sel.match_labels {
        labels(&format!("{field}.matchLabels"), l, &mut errors);
    }
    for (i, req) in sel.match_expressions.iter().flatten().enumerate() {
        let path = format!("{field}.matchExpressions[{i}]");
        let values = req.values.as_deref().unwrap_or_default();
        match req.operator.as_str() {
            "In" | "NotIn" if values.is_empty() => errors.push(FieldError::new(
                format!("{path}.values"),
                format!("must be specified when `operator` is {:?}", req.operator),
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => errors.push(FieldError::new(
                format!("{path}.values"),
                format!("may not be specified when `operator` is {:?}", req.operator),
            )),
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errors.push(FieldError::new(
                format!("{path}.operator"),
                format!("{other:?} is not a valid selector operator (expected In, NotIn, Exists or DoesNotExist)"),
            )),
        }
        if !valid_label_key(&req.key) {
            errors.push(FieldError::new(
                format!("{path}.key"),
                format!("{:?} is not a valid label key ({LABEL_KEY_RULE})", req.key),
            ));
        }
        for (j, v) in values.iter().enumerate() {
            if !valid_label_value(v) {
                errors.push(FieldError::new(
                    format!("{path}.values[{j}]"),
                    format!("{v:?} is not a valid label value ({LABEL_VALUE_RULE})"),
                ));
            }
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    // Everything from_k8s refuses was reported above; should it still refuse,
    // it is reported rather than lost.
    Selector::from_k8s(sel).map_err(|e| vec![FieldError::new(field, e)])
}
