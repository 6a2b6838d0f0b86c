//! `MeshConfig` (`palisade.dev/v1alpha1`): trust domain and aliases, the root
//! namespace of mesh-wide Istio policies, HTTP path normalization, the
//! cluster's DNS domain, and the federated trust domains with their bundles.
use palisade_api::PathNormalization;
use palisade_identity::bundle::is_spiffe_bundle;
use palisade_identity::{TrustBundle, TrustDomain};
use serde::Deserialize;

use super::{FieldError, ObjectHead, typed};
use crate::cluster::{BundleEndpoint, EndpointProfile, Mesh};

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
/// bundle, or where to fetch it: the fields of SPIRE's
/// `ClusterFederatedTrustDomain` (`trustDomain`, `trustDomainBundle`,
/// `bundleEndpointURL`, `bundleEndpointProfile`).
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct FederatedTrustDomain {
    trust_domain: String,
    /// A SPIFFE bundle (JWK Set, as a bundle endpoint serves it) or PEM.
    /// With a bundle endpoint it is the bundle until the first fetch (and
    /// for a self-serving `https_spiffe` endpoint, what authenticates it).
    #[serde(default)]
    trust_domain_bundle: Option<String>,
    #[serde(default, rename = "bundleEndpointURL")]
    bundle_endpoint_url: Option<String>,
    #[serde(default)]
    bundle_endpoint_profile: Option<EndpointProfileSpec>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EndpointProfileSpec {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default, rename = "endpointSPIFFEID")]
    endpoint_spiffe_id: Option<String>,
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
    let listed: Vec<&str> = spec
        .federated_trust_domains
        .iter()
        .map(|f| f.trust_domain.as_str())
        .collect();
    for (i, fed) in spec.federated_trust_domains.iter().enumerate() {
        let field_error = |(field, message): (&str, String)| {
            FieldError::new(format!("spec.federatedTrustDomains[{i}].{field}"), message)
        };
        if listed[..i].contains(&fed.trust_domain.as_str()) {
            errors.push(field_error((
                "trustDomain",
                format!("{:?} is listed twice", fed.trust_domain),
            )));
            continue;
        }
        let td = match federated_trust_domain(fed, &mesh) {
            Ok(td) => td,
            Err(e) => {
                errors.push(field_error(e));
                continue;
            }
        };
        let endpoint = match bundle_endpoint(fed, &mesh, &listed) {
            Ok(endpoint) => endpoint,
            Err(e) => {
                errors.push(field_error(e));
                continue;
            }
        };
        match (&fed.trust_domain_bundle, &endpoint) {
            (Some(text), _) => match federated_bundle(td, text) {
                Ok(Some(pem)) => {
                    mesh.federated_bundles.insert(fed.trust_domain.clone(), pem);
                }
                // No X.509 root: as for a fetched bundle without one, no
                // root vouches for the trust domain's X509-SVIDs.
                Ok(None) => {}
                Err(e) => errors.push(field_error(e)),
            },
            (None, Some(_)) => {}
            (None, None) => errors.push(field_error((
                "trustDomainBundle",
                "required: give the bundle, or a bundleEndpointURL to fetch it from".into(),
            ))),
        }
        if let Some(endpoint) = endpoint {
            mesh.bundle_endpoints
                .insert(fed.trust_domain.clone(), endpoint);
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(mesh)
}

/// The bundle endpoint of a federated trust domain, if it names one, or
/// the field at fault and why (SPIFFE Federation 5.2: an `https` URL
/// without userinfo; `https_spiffe` needs the endpoint's SPIFFE ID and a
/// bundle for its trust domain).
fn bundle_endpoint(
    fed: &FederatedTrustDomain,
    mesh: &Mesh,
    listed: &[&str],
) -> Result<Option<BundleEndpoint>, (&'static str, String)> {
    let (url, profile) = match (&fed.bundle_endpoint_url, &fed.bundle_endpoint_profile) {
        (None, None) => return Ok(None),
        (Some(_), None) => {
            return Err((
                "bundleEndpointProfile",
                "required with bundleEndpointURL: https_web or https_spiffe (the profile cannot be inferred from the URL, SPIFFE Federation 7.2)".into(),
            ));
        }
        (None, Some(_)) => {
            return Err((
                "bundleEndpointURL",
                "required with bundleEndpointProfile".into(),
            ));
        }
        (Some(url), Some(profile)) => (url, profile),
    };
    check_endpoint_url(url).map_err(|m| ("bundleEndpointURL", m))?;
    let profile = match profile.kind.as_str() {
        "https_web" => {
            if profile.endpoint_spiffe_id.is_some() {
                return Err((
                    "bundleEndpointProfile.endpointSPIFFEID",
                    "only for the https_spiffe profile".into(),
                ));
            }
            EndpointProfile::HttpsWeb
        }
        "https_spiffe" => {
            let id = profile.endpoint_spiffe_id.as_deref().ok_or((
                "bundleEndpointProfile.endpointSPIFFEID",
                "required for https_spiffe: the SPIFFE ID the endpoint's server presents"
                    .to_string(),
            ))?;
            let parsed = palisade_identity::SpiffeId::parse(id).map_err(|e| {
                (
                    "bundleEndpointProfile.endpointSPIFFEID",
                    format!("{id:?}: {e}"),
                )
            })?;
            let td = parsed.trust_domain_str();
            if td == fed.trust_domain {
                // Self-serving: the first fetch is authenticated with the
                // configured bundle (SPIFFE Federation 5.2.2.2).
                if fed.trust_domain_bundle.is_none() {
                    return Err((
                        "trustDomainBundle",
                        format!(
                            "required: the endpoint {id} is self-serving, and its first fetch is authenticated with this bundle"
                        ),
                    ));
                }
            } else if !mesh.is_local_trust_domain(td) && !listed.contains(&td) {
                return Err((
                    "bundleEndpointProfile.endpointSPIFFEID",
                    format!(
                        "{id} is in trust domain {td:?}, which is neither the mesh's nor federated: nothing could authenticate the endpoint"
                    ),
                ));
            }
            EndpointProfile::HttpsSpiffe {
                endpoint_id: parsed.to_string(),
            }
        }
        other => {
            return Err((
                "bundleEndpointProfile.type",
                format!("{other:?}: expected https_web or https_spiffe"),
            ));
        }
    };
    Ok(Some(BundleEndpoint {
        url: url.clone(),
        profile,
    }))
}

/// SPIFFE Federation 5.2.1.1 and 5.2.2.1: scheme `https`, no userinfo.
fn check_endpoint_url(url: &str) -> Result<(), String> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if uri.scheme_str() != Some("https") {
        return Err(format!("{url:?}: the scheme must be https"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url:?} has no host"))?;
    if authority.as_str().contains('@') {
        return Err(format!("{url:?}: userinfo is not allowed"));
    }
    if authority.host().is_empty() {
        return Err(format!("{url:?} has no host"));
    }
    Ok(())
}

/// A federated trust domain's bundle as PEM, None when it holds no X.509
/// root, or the field at fault and why. A SPIFFE bundle may have no keys:
/// "A trust domain which publishes an empty key array indicates that the
/// trust domain has revoked any previously-published keys" (SPIFFE Trust
/// Domain and Bundle 4.1.3), and without `x509-svid` entries "the trust
/// domain does not support X509-SVID" (X509-SVID 6.2); either way its
/// X509-SVIDs are refused, as when a fetched bundle has no root.
fn federated_bundle(td: TrustDomain, text: &str) -> Result<Option<String>, (&'static str, String)> {
    let bundle = if is_spiffe_bundle(text) {
        TrustBundle::from_spiffe_bundle_or_none(td, text)
    } else {
        TrustBundle::from_pem(td, text)
    };
    bundle
        .map(|b| (!b.roots().is_empty()).then(|| b.to_pem()))
        .map_err(|e| ("trustDomainBundle", e.to_string()))
}

/// The federated trust domain's name, checked: a valid name, and not the
/// mesh's own.
fn federated_trust_domain(
    fed: &FederatedTrustDomain,
    mesh: &Mesh,
) -> Result<TrustDomain, (&'static str, String)> {
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
    Ok(td)
}
