//! Loading, saving and content-versioning a `ProxyConfig`: the version is
//! the hex SHA-256 of the canonical JSON (keys sorted, `version` blanked),
//! first 16 characters.
use sha2::{Digest, Sha256};
use thiserror::Error;

use crate::config::ProxyConfig;

/// A config that cannot be read or written.
#[derive(Debug, Error)]
pub enum ConfigError {
    #[error("invalid ProxyConfig JSON at line {line}, column {column}: {source}")]
    Json {
        line: usize,
        column: usize,
        #[source]
        source: serde_json::Error,
    },
    #[error("invalid ProxyConfig YAML: {0}")]
    TooDeep(#[from] crate::yaml_depth::TooDeep),
    #[error("invalid ProxyConfig YAML{}: {source}", location_suffix(.source))]
    Yaml {
        #[source]
        source: serde_yaml::Error,
    },
    #[error("cannot serialize ProxyConfig: {0}")]
    Serialize(String),
}

fn location_suffix(e: &serde_yaml::Error) -> String {
    match e.location() {
        Some(l) => format!(" at line {}, column {}", l.line(), l.column()),
        None => String::new(),
    }
}

impl ProxyConfig {
    /// The content hash of everything but `version`.
    pub fn compute_version(&self) -> String {
        let mut copy = self.clone();
        copy.version = String::new();
        // Through `serde_json::Value`, whose maps are sorted by key.
        let canonical = serde_json::to_value(&copy)
            .and_then(|v| serde_json::to_vec(&v))
            .unwrap_or_default();
        let digest = Sha256::digest(&canonical);
        let mut hex = hex::encode(digest);
        hex.truncate(16);
        hex
    }

    /// Sets `version` to `compute_version()`.
    pub fn with_computed_version(mut self) -> Self {
        self.version = self.compute_version();
        self
    }

    /// Parses JSON (text starting with `{`) or YAML.
    pub fn from_yaml_or_json(text: &str) -> Result<ProxyConfig, ConfigError> {
        if text.trim_start().starts_with('{') {
            serde_json::from_str(text).map_err(|source| ConfigError::Json {
                line: source.line(),
                column: source.column(),
                source,
            })
        } else {
            crate::yaml_depth::check_depth(text)?;
            serde_yaml::from_str(text).map_err(|source| ConfigError::Yaml { source })
        }
    }

    pub fn to_json(&self) -> Result<String, ConfigError> {
        serde_json::to_string_pretty(self).map_err(|e| ConfigError::Serialize(e.to_string()))
    }

    pub fn to_yaml(&self) -> Result<String, ConfigError> {
        serde_yaml::to_string(self).map_err(|e| ConfigError::Serialize(e.to_string()))
    }
}
