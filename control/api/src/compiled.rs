//! All evaluators of one `ProxyConfig`, compiled together at config load:
//! what the sidecar swaps in atomically per config version and what
//! `palisade check` evaluates, so both use the same code.
use crate::authz::{AuthzError, CompiledAuthz};
use crate::config::{PathNormalization, ProxyConfig};
use crate::l4::CompiledDirection;

/// The compiled, ready-to-evaluate form of a `ProxyConfig`.
#[derive(Debug, Clone)]
pub struct CompiledConfig {
    /// `ProxyConfig::version` of the source config.
    pub version: String,
    pub path_normalization: PathNormalization,
    /// Ingress NetworkPolicy (remote = source of the connection).
    pub ingress: CompiledDirection,
    /// Egress NetworkPolicy (remote = destination of the connection).
    pub egress: CompiledDirection,
    /// Inbound AuthorizationPolicies.
    pub authz: CompiledAuthz,
}

impl CompiledConfig {
    /// Fails, naming the policy and field, when an AuthorizationPolicy is
    /// invalid; the caller keeps its previous config.
    pub fn new(config: &ProxyConfig) -> Result<Self, AuthzError> {
        Ok(CompiledConfig {
            version: config.version.clone(),
            path_normalization: config.mesh.path_normalization,
            ingress: CompiledDirection::new(&config.inbound.ingress),
            egress: CompiledDirection::new(&config.outbound.egress),
            authz: CompiledAuthz::new(&config.authorization, &config.mesh)?,
        })
    }
}
