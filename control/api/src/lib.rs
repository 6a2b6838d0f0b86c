//! The wire contract between the control plane and the sidecar, and the
//! evaluators both sides share: path normalization, NetworkPolicy (L4) and
//! AuthorizationPolicy decisions, config versioning.
#![forbid(unsafe_code)]

pub mod authz;
pub mod compiled;
pub mod config;
pub mod dns;
pub mod l4;
pub mod normalize;
pub mod protocol;
pub mod service_dnat;
pub mod sni;
pub mod stream;
pub mod version;
pub mod yaml_depth;

pub use compiled::CompiledConfig;
pub use config::*;
pub use version::ConfigError;
