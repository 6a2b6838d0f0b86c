//! Label selectors (`matchLabels` + `matchExpressions`), validated once at load
//! time and matched many times, with the semantics of the Kubernetes
//! "Labels and Selectors" page: requirements are AND'ed, an empty selector
//! selects everything, and `NotIn` / `DoesNotExist` match when the key is absent.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

/// Labels of an object.
pub type Labels = BTreeMap<String, String>;

/// One `matchExpressions` requirement.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Requirement {
    In(String, BTreeSet<String>),
    NotIn(String, BTreeSet<String>),
    Exists(String),
    DoesNotExist(String),
}

/// A validated label selector.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Selector {
    match_labels: Vec<(String, String)>,
    requirements: Vec<Requirement>,
}

/// Why a selector is invalid; the caller adds the field path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SelectorError {
    #[error(
        "matchExpressions[{index}]: unknown operator {operator:?} (expected In, NotIn, Exists or DoesNotExist)"
    )]
    UnknownOperator { index: usize, operator: String },
    #[error("matchExpressions[{index}]: operator {operator} needs at least one value")]
    NoValues { index: usize, operator: String },
    #[error("matchExpressions[{index}]: operator {operator} takes no values")]
    UnexpectedValues { index: usize, operator: String },
    #[error("matchExpressions[{index}]: empty key")]
    EmptyKey { index: usize },
}

impl Selector {
    /// The selector that selects everything (`{}`).
    pub fn everything() -> Self {
        Self::default()
    }

    /// A selector with only `matchLabels` (Istio's `WorkloadSelector`).
    pub fn from_match_labels(labels: &Labels) -> Self {
        Self {
            match_labels: labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            requirements: Vec::new(),
        }
    }

    pub fn from_k8s(sel: &LabelSelector) -> Result<Self, SelectorError> {
        let mut out = Self::default();
        if let Some(labels) = &sel.match_labels {
            out.match_labels = labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        }
        for (index, req) in sel.match_expressions.iter().flatten().enumerate() {
            if req.key.is_empty() {
                return Err(SelectorError::EmptyKey { index });
            }
            let values: BTreeSet<String> = req.values.iter().flatten().cloned().collect();
            let op = req.operator.as_str();
            let need_values = matches!(op, "In" | "NotIn");
            if need_values && values.is_empty() {
                return Err(SelectorError::NoValues {
                    index,
                    operator: op.to_string(),
                });
            }
            if !need_values && matches!(op, "Exists" | "DoesNotExist") && !values.is_empty() {
                return Err(SelectorError::UnexpectedValues {
                    index,
                    operator: op.to_string(),
                });
            }
            let key = req.key.clone();
            out.requirements.push(match op {
                "In" => Requirement::In(key, values),
                "NotIn" => Requirement::NotIn(key, values),
                "Exists" => Requirement::Exists(key),
                "DoesNotExist" => Requirement::DoesNotExist(key),
                _ => {
                    return Err(SelectorError::UnknownOperator {
                        index,
                        operator: op.to_string(),
                    });
                }
            });
        }
        out.match_labels.sort();
        out.match_labels.dedup();
        out.requirements.sort();
        out.requirements.dedup();
        Ok(out)
    }

    /// True for `{}`: selects every object.
    pub fn is_empty(&self) -> bool {
        self.match_labels.is_empty() && self.requirements.is_empty()
    }

    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k) == Some(v))
            && self.requirements.iter().all(|r| match r {
                Requirement::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
                // "NotIn ... the key is absent or its value is not in the set"
                Requirement::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
                Requirement::Exists(k) => labels.contains_key(k),
                Requirement::DoesNotExist(k) => !labels.contains_key(k),
            })
    }

    /// Keys and values this selector requires exactly (from `matchLabels`):
    /// used by the label index to narrow candidates.
    pub fn required_pairs(&self) -> &[(String, String)] {
        &self.match_labels
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut parts: Vec<String> = self
            .match_labels
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        for r in &self.requirements {
            let join = |vs: &BTreeSet<String>| vs.iter().cloned().collect::<Vec<_>>().join(",");
            parts.push(match r {
                Requirement::In(k, vs) => format!("{k} in ({})", join(vs)),
                Requirement::NotIn(k, vs) => format!("{k} notin ({})", join(vs)),
                Requirement::Exists(k) => k.clone(),
                Requirement::DoesNotExist(k) => format!("!{k}"),
            });
        }
        write!(f, "{{{}}}", parts.join(","))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;

    fn labels(pairs: &[(&str, &str)]) -> Labels {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn expr(key: &str, op: &str, values: &[&str]) -> LabelSelector {
        LabelSelector {
            match_labels: None,
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: op.into(),
                values: if values.is_empty() {
                    None
                } else {
                    Some(values.iter().map(|v| v.to_string()).collect())
                },
            }]),
        }
    }

    #[test]
    fn empty_selector_selects_everything() {
        let s = Selector::from_k8s(&LabelSelector::default()).unwrap();
        assert!(s.is_empty());
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("a", "b")])));
    }

    #[test]
    fn not_in_matches_absent_key() {
        let s = Selector::from_k8s(&expr("env", "NotIn", &["prod"])).unwrap();
        assert!(s.matches(&labels(&[])));
        assert!(s.matches(&labels(&[("env", "dev")])));
        assert!(!s.matches(&labels(&[("env", "prod")])));
    }

    #[test]
    fn in_exists_does_not_exist() {
        let s = Selector::from_k8s(&expr("env", "In", &["a", "b"])).unwrap();
        assert!(s.matches(&labels(&[("env", "b")])));
        assert!(!s.matches(&labels(&[])));
        let s = Selector::from_k8s(&expr("env", "Exists", &[])).unwrap();
        assert!(s.matches(&labels(&[("env", "")])));
        assert!(!s.matches(&labels(&[])));
        let s = Selector::from_k8s(&expr("env", "DoesNotExist", &[])).unwrap();
        assert!(!s.matches(&labels(&[("env", "")])));
        assert!(s.matches(&labels(&[("x", "y")])));
    }

    #[test]
    fn invalid_selectors_are_errors() {
        assert!(matches!(
            Selector::from_k8s(&expr("env", "Equals", &["a"])),
            Err(SelectorError::UnknownOperator { .. })
        ));
        assert!(matches!(
            Selector::from_k8s(&expr("env", "In", &[])),
            Err(SelectorError::NoValues { .. })
        ));
        assert!(matches!(
            Selector::from_k8s(&expr("env", "Exists", &["x"])),
            Err(SelectorError::UnexpectedValues { .. })
        ));
    }
}
