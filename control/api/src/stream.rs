//! The streaming API between control plane and sidecar: the generated prost
//! messages and tonic service (from `proto/palisade.proto`), plus the small
//! helpers both sides use to put a `ProxyConfig` on the wire and take it off.
use crate::ProxyConfig;

pub mod connect;

#[allow(clippy::all, clippy::pedantic, missing_docs)]
mod generated {
    tonic::include_proto!("palisade.v1");
}

pub use generated::control_plane_client::ControlPlaneClient;
pub use generated::control_plane_server::{ControlPlane, ControlPlaneServer};
pub use generated::*;

/// Largest message either side accepts (a big workload's config is a few
/// MB of JSON; tonic's default limit is 4 MiB).
pub const MAX_MESSAGE_BYTES: usize = 64 << 20;

/// A client on `channel` with the message limits both sides agree on.
pub fn client(channel: tonic::transport::Channel) -> ControlPlaneClient<tonic::transport::Channel> {
    ControlPlaneClient::new(channel)
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES)
}

/// Why a `ConfigUpdate` could not be turned into a `ProxyConfig`.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("config for version {version} is not valid ProxyConfig JSON: {source}")]
    Json {
        version: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("update says version {announced} but the config inside says {inner}")]
    VersionMismatch { announced: String, inner: String },
    #[error("update is for workload {got}, this proxy is {expected}")]
    WrongWorkload { expected: String, got: String },
}

impl ConfigUpdate {
    /// Wraps a config for the wire. `workload` is `NS/POD`.
    pub fn from_config(workload: &str, config: &ProxyConfig) -> Result<Self, serde_json::Error> {
        Ok(Self {
            workload: workload.to_owned(),
            version: config.version.clone(),
            config_json: serde_json::to_vec(config)?,
        })
    }

    /// Unwraps and checks the update for the proxy of `expected_workload`
    /// (`NS/POD`): the JSON must parse, carry the announced version and name
    /// that workload.
    pub fn decode_for(&self, expected_workload: &str) -> Result<ProxyConfig, DecodeError> {
        if self.workload != expected_workload {
            return Err(DecodeError::WrongWorkload {
                expected: expected_workload.to_owned(),
                got: self.workload.clone(),
            });
        }
        let config: ProxyConfig =
            serde_json::from_slice(&self.config_json).map_err(|source| DecodeError::Json {
                version: self.version.clone(),
                source,
            })?;
        if config.version != self.version {
            return Err(DecodeError::VersionMismatch {
                announced: self.version.clone(),
                inner: config.version,
            });
        }
        let inner = format!("{}/{}", config.workload.namespace, config.workload.name);
        if inner != expected_workload {
            return Err(DecodeError::WrongWorkload {
                expected: expected_workload.to_owned(),
                got: inner,
            });
        }
        Ok(config)
    }
}

impl WatchRequest {
    pub fn subscribe(workload: &str, current_version: &str) -> Self {
        Self {
            kind: Some(watch_request::Kind::Subscribe(Subscribe {
                workload: workload.to_owned(),
                current_version: current_version.to_owned(),
            })),
        }
    }

    pub fn ack(version: &str) -> Self {
        Self {
            kind: Some(watch_request::Kind::Ack(Ack {
                version: version.to_owned(),
            })),
        }
    }

    pub fn nack(version: &str, error: &str) -> Self {
        Self {
            kind: Some(watch_request::Kind::Nack(Nack {
                version: version.to_owned(),
                error: error.to_owned(),
            })),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config_json(ns: &str, name: &str, version: &str) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "version": version,
            "mesh": {"trustDomain": "td"},
            "workload": {"namespace": ns, "name": name, "serviceAccount": "sa",
                         "identity": format!("spiffe://td/ns/{ns}/sa/sa"), "ips": []},
            "inbound": {"mtls": "STRICT", "ingress": {"isolated": false}},
            "outbound": {"egress": {"isolated": false}},
        }))
        .unwrap()
    }

    fn update(workload: &str, version: &str, json: Vec<u8>) -> ConfigUpdate {
        ConfigUpdate {
            workload: workload.into(),
            version: version.into(),
            config_json: json,
        }
    }

    #[test]
    fn decode_checks_json_version_and_workload() {
        let good = update("a/b", "v1", config_json("a", "b", "v1"));
        let c = good.decode_for("a/b").expect("a valid config for a/b");
        assert_eq!(c.version, "v1");
        assert!(matches!(
            good.decode_for("a/c"),
            Err(DecodeError::WrongWorkload { .. })
        ));
        let garbage = update("a/b", "v1", b"{not json".to_vec());
        assert!(matches!(
            garbage.decode_for("a/b"),
            Err(DecodeError::Json { .. })
        ));
    }
}
