//! `MeshConfig` (`palisade.dev/v1alpha1`): trust domain and aliases, the root
//! namespace of mesh-wide Istio policies, HTTP path normalization, the
//! cluster's DNS domain, and the federated trust domains with their bundles.
use palisade_api::PathNormalization;
use palisade_identity::bundle::is_spiffe_bundle;
use palisade_identity::{TrustBundle, TrustDomain};
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
    #[serde(default)]
    federated_trust_domains: Vec<FederatedTrustDomain>,
}

/// A trust domain whose workloads the mesh's sidecars accept, with its
/// bundle: the fields of SPIRE's `ClusterFederatedTrustDomain` that carry
/// it (`trustDomain`, `trustDomainBundle`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FederatedTrustDomain {
    trust_domain: String,
    /// A SPIFFE bundle (JWK Set, as a bundle endpoint serves it) or PEM.
    trust_domain_bundle: String,
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
    for (i, fed) in spec.federated_trust_domains.iter().enumerate() {
        match federated_bundle(fed, &mesh) {
            Ok(pem) => {
                if mesh
                    .federated_bundles
                    .insert(fed.trust_domain.clone(), pem)
                    .is_some()
                {
                    errors.push(FieldError::new(
                        format!("spec.federatedTrustDomains[{i}].trustDomain"),
                        format!("{:?} is listed twice", fed.trust_domain),
                    ));
                }
            }
            Err((field, message)) => errors.push(FieldError::new(
                format!("spec.federatedTrustDomains[{i}].{field}"),
                message,
            )),
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(mesh)
}

/// A federated trust domain's bundle as PEM, or the field at fault and why.
fn federated_bundle(
    fed: &FederatedTrustDomain,
    mesh: &Mesh,
) -> Result<String, (&'static str, String)> {
    let td = TrustDomain::new(&fed.trust_domain)
        .ok()
        .filter(|td| td.as_str() == fed.trust_domain)
        .ok_or_else(|| {
            (
                "trustDomain",
                format!("{:?} is not a trust domain name", fed.trust_domain),
            )
        })?;
    if mesh.is_local_trust_domain(&fed.trust_domain) {
        return Err((
            "trustDomain",
            format!(
                "{:?} is the mesh's trust domain or an alias of it, which the mesh's own CA serves",
                fed.trust_domain
            ),
        ));
    }
    let text = &fed.trust_domain_bundle;
    let bundle = if is_spiffe_bundle(text) {
        TrustBundle::from_spiffe_bundle(td, text)
    } else {
        TrustBundle::from_pem(td, text)
    };
    bundle
        .map(|b| b.to_pem())
        .map_err(|e| ("trustDomainBundle", e.to_string()))
}
