//! The knobs of `palisade inject` and their defaults.

/// Requests and limits of one injected container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resources {
    pub cpu_request: String,
    pub memory_request: String,
    pub cpu_limit: String,
    pub memory_limit: String,
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            cpu_request: "10m".into(),
            memory_request: "16Mi".into(),
            cpu_limit: "1".into(),
            memory_limit: "64Mi".into(),
        }
    }
}

/// Everything an injection depends on besides the manifest itself.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectOptions {
    /// Image holding `palisade-proxy`.
    pub image: String,
    /// A regular container instead of a native sidecar (clusters before 1.28).
    pub legacy_sidecar: bool,
    /// The control plane's URL the sidecar connects to.
    pub control_url: String,
    /// The sidecar's UID; the capture rules exclude its traffic.
    pub proxy_uid: u32,
    /// Name of the Secret holding the workload's one-time join token.
    pub token_secret: String,
    pub admin_port: u16,
    pub inbound_port: u16,
    pub outbound_port: u16,
    pub resources: Resources,
}

impl Default for InjectOptions {
    fn default() -> Self {
        InjectOptions {
            image: "ghcr.io/palisade-mesh/proxy:0.1.0".into(),
            legacy_sidecar: false,
            control_url: "https://palisade-control.palisade-system.svc:15012".into(),
            proxy_uid: 1337,
            token_secret: "palisade-join-token".into(),
            admin_port: 15000,
            inbound_port: 15006,
            outbound_port: 15001,
            resources: Resources::default(),
        }
    }
}
