//! What `palisade check` reports: one verdict per layer (egress, mTLS,
//! ingress, authorization) per destination endpoint, serialized as the JSON
//! schema of `docs/check-json.md`.
use std::net::IpAddr;

use palisade_api::{MtlsMode, Protocol};
use serde::Serialize;

/// `allow`, `deny`, or `skip` (the layer does not apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LayerVerdict {
    Allow,
    Deny,
    Skip,
}

/// One L4 layer (egress or ingress).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct L4Layer {
    pub verdict: LayerVerdict,
    /// `not-isolated`, `rule-matched`, `node-traffic`, `no-rule-matched`,
    /// `same-pod`, `host-network`, `outside-cluster` or `not-meshed`.
    pub reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub peer: Option<String>,
    /// The policies that isolate the workload in this direction.
    pub policies: Vec<String>,
    pub detail: String,
}

/// The destination port's mTLS layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MtlsLayer {
    pub verdict: LayerVerdict,
    /// Effective mode of the destination port; `None` when not meshed.
    pub mode: Option<MtlsMode>,
    /// The PeerAuthentication that decided the mode (`None`: default).
    pub policy: Option<String>,
    /// Whether this connection is mutual TLS.
    pub mtls: bool,
    /// Whether the port would accept a plaintext connection.
    pub plaintext_accepted: bool,
    pub detail: String,
}

/// A matched authorization policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthzMatch {
    pub policy: String,
    pub rule: usize,
    pub action: String,
    pub dry_run: bool,
}

/// The authorization layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthzLayer {
    pub verdict: LayerVerdict,
    /// `deny-policy-matched`, `no-allow-policies`, `allow-policy-matched`,
    /// `no-allow-policy-matched`, `invalid-path`, `not-applicable`.
    pub reason: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rule: Option<usize>,
    /// `http` or `tcp`: how the traffic was judged.
    pub traffic: &'static str,
    /// The TLS server name `connection.sni` conditions were judged against:
    /// `--sni` as given, else the one the caller's sidecar sends for the
    /// Service it called over mTLS; none otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sni: Option<String>,
    pub audit: Vec<AuthzMatch>,
    /// The verdict with dry-run policies enforced, when any apply.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub dry_run_verdict: Option<LayerVerdict>,
    pub detail: String,
}

/// The judgement of one destination endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct EndpointResult {
    /// `NS/POD`, or `None` outside the cluster.
    pub workload: Option<String>,
    pub ip: IpAddr,
    pub port: u16,
    pub verdict: LayerVerdict,
    pub egress: L4Layer,
    pub mtls: MtlsLayer,
    pub ingress: L4Layer,
    pub authorization: AuthzLayer,
}

/// The whole answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CheckReport {
    pub verdict: LayerVerdict,
    pub from: String,
    /// Identity presented by the caller, `None` for plaintext.
    pub identity: Option<String>,
    pub source_ip: IpAddr,
    pub to: String,
    pub protocol: Protocol,
    /// `None` when the destination is a Service without endpoints.
    pub endpoints: Vec<EndpointResult>,
    pub detail: String,
}
