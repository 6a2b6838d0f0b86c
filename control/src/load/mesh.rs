//! `MeshConfig` (`palisade.dev/v1alpha1`): trust domain and aliases, the root
//! namespace of mesh-wide Istio policies, HTTP path normalization and the
//! cluster's DNS domain.
use palisade_api::PathNormalization;
use serde::Deserialize;

use super::{FieldError, ObjectHead, typed};
use crate::cluster::Mesh;

#[derive(Debug, Deserialize)]
struct Object {
    #[serde(default)]
    spec: Option<MeshSpec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct MeshSpec {
    #[serde(default)]
    trust_domain: Option<String>,
    #[serde(default)]
    trust_domain_aliases: Vec<String>,
    #[serde(default)]
    root_namespace: Option<String>,
    #[serde(default)]
    path_normalization: Option<PathNormalization>,
    #[serde(default)]
    cluster_domain: Option<String>,
}

fn valid_trust_domain(td: &str) -> bool {
    // SPIFFE-ID.md: "Trust domain names ... MUST contain only lowercase letters,
    // numbers, dots, dashes, and underscores."
    !td.is_empty()
        && td
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '-' | '_'))
}

pub(super) fn mesh_config(
    head: &ObjectHead,
    value: serde_yaml::Value,
) -> Result<Mesh, Vec<FieldError>> {
    if head.version() != "v1alpha1" {
        return Err(vec![FieldError::new(
            "apiVersion",
            "MeshConfig must be palisade.dev/v1alpha1",
        )]);
    }
    let obj: Object = typed(value)?;
    let spec = obj.spec.unwrap_or_default();
    let mut mesh = Mesh::default();
    let mut errors = Vec::new();
    if let Some(td) = spec.trust_domain {
        if valid_trust_domain(&td) {
            mesh.trust_domain = td;
        } else {
            errors.push(FieldError::new(
                "spec.trustDomain",
                format!(
                    "{td:?} is not a valid trust domain (lowercase letters, digits, '.', '-', '_')"
                ),
            ));
        }
    }
    for (i, a) in spec.trust_domain_aliases.iter().enumerate() {
        if !valid_trust_domain(a) {
            errors.push(FieldError::new(
                format!("spec.trustDomainAliases[{i}]"),
                format!("{a:?} is not a valid trust domain"),
            ));
        }
    }
    mesh.trust_domain_aliases = spec.trust_domain_aliases;
    if let Some(root) = spec.root_namespace {
        if root.is_empty() {
            errors.push(FieldError::new("spec.rootNamespace", "must not be empty"));
        }
        mesh.root_namespace = root;
    }
    if let Some(p) = spec.path_normalization {
        mesh.path_normalization = p;
    }
    if let Some(domain) = spec.cluster_domain {
        if palisade_api::sni::valid_cluster_domain(&domain) {
            mesh.cluster_domain = domain;
        } else {
            errors.push(FieldError::new(
                "spec.clusterDomain",
                format!(
                    "{domain:?} is not a valid cluster domain (a DNS-1123 subdomain, as kubelet's --cluster-domain)"
                ),
            ));
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(mesh)
}
