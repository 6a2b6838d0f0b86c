//! The one place the proxy calls the shared policy evaluators of
//! `palisade_api` (NetworkPolicy L4, Istio authorization, path
//! normalization). Everything here is compiled at config load; the calls on
//! the hot path take borrowed views and allocate only on a denial.
use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use http::HeaderMap;
use palisade_api::{PathNormalization, ProxyConfig};

/// The evaluators of one config version.
pub struct CompiledPolicy {
    _private: (),
}

impl CompiledPolicy {
    pub fn compile(_config: &ProxyConfig) -> Self {
        Self { _private: () }
    }
}

/// A refusal, naming what decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// `ns/name` of the deciding policy, or a description of the default.
    pub policy: String,
    /// The rule within it (index or name), empty when none matched.
    pub rule: String,
    /// Why, for the log line.
    pub reason: String,
}

impl fmt::Display for Denied {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}#{}", self.policy, self.rule)
    }
}

/// What authorization sees of a connection or request.
pub struct AccessView<'a> {
    pub source: IpAddr,
    /// The verified SPIFFE ID of an mTLS peer.
    pub peer_identity: Option<&'a str>,
    pub dest_ip: IpAddr,
    pub dest_port: u16,
    /// `None` for non-HTTP traffic (checked once per connection).
    pub http: Option<HttpView<'a>>,
}

pub struct HttpView<'a> {
    pub method: &'a str,
    /// Already normalized.
    pub path: &'a str,
    pub host: &'a str,
    pub headers: &'a HeaderMap,
}

/// Ingress NetworkPolicy on (source IP, our port, TCP).
pub fn ingress(snapshot: &crate::state::Snapshot, _src: IpAddr, _port: u16) -> Result<(), Denied> {
    let _ = &snapshot.policy;
    Err(unavailable())
}

/// Egress NetworkPolicy on (destination IP, port, TCP).
pub fn egress(snapshot: &crate::state::Snapshot, _dst: IpAddr, _port: u16) -> Result<(), Denied> {
    let _ = &snapshot.policy;
    Err(unavailable())
}

/// AuthorizationPolicy: DENY, then ALLOW; AUDIT and dry-run only log.
pub fn authorize(snapshot: &crate::state::Snapshot, _view: &AccessView<'_>) -> Result<(), Denied> {
    let _ = &snapshot.policy;
    Err(unavailable())
}

/// Path normalization in the mesh's mode, the same function `palisade
/// check` uses. An error means the path cannot be normalized safely (400).
pub fn normalize_path(path: &str, _mode: PathNormalization) -> Result<Cow<'_, str>, String> {
    Err(format!("normalizer unavailable for {path:?}"))
}

fn unavailable() -> Denied {
    Denied {
        policy: "palisade/evaluator-unavailable".into(),
        rule: String::new(),
        reason: "policy evaluator not wired (fail closed)".into(),
    }
}
