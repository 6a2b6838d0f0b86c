//! Prometheus metrics of the sidecar, all under the `palisade_` prefix
//! (prometheus-client with a prefixed registry, as ztunnel `src/metrics.rs`).
use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Direction {
    Inbound,
    Outbound,
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Outcome {
    /// Accepted and proxied (counted when the connection ends).
    Completed,
    /// Refused by a policy layer.
    Denied,
    /// Failed for another reason (connect, TLS, I/O).
    Failed,
    /// Refused because the concurrent-connection cap was reached.
    Overloaded,
}

/// The layer that refused a connection or request.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum Layer {
    /// NetworkPolicy ingress.
    Ingress,
    /// NetworkPolicy egress.
    Egress,
    /// PeerAuthentication (plaintext under STRICT).
    Mtls,
    /// The presented identity does not own the source IP.
    Identity,
    /// AuthorizationPolicy.
    Authz,
    /// Path normalization refused the request.
    Normalization,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConnLabels {
    pub direction: Direction,
    pub outcome: Outcome,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct LayerLabels {
    pub direction: Direction,
    pub layer: Layer,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PortLabels {
    pub port: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub direction: Direction,
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct VersionLabels {
    pub version: String,
}

/// Why the sidecar closed an HTTP connection it served.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum HttpCloseReason {
    /// No request for the idle timeout.
    Idle,
    /// The client cancelled too many requests right after starting them
    /// (HTTP/2 rapid reset).
    PrematureResets,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpCloseLabels {
    pub direction: Direction,
    pub reason: HttpCloseReason,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RejectionLabels {
    pub direction: Direction,
    /// The X509-SVID rule (`SvidError::code`).
    pub reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabels {
    pub direction: Direction,
}

/// Every metric the data plane records.
pub struct Metrics {
    registry: Registry,
    pub connections: Family<ConnLabels, Counter>,
    pub active_connections: Family<DirectionLabels, Gauge>,
    pub denials: Family<LayerLabels, Counter>,
    pub detect_timeouts: Family<PortLabels, Counter>,
    pub requests: Family<StatusLabels, Counter>,
    pub config_info: Family<VersionLabels, Gauge>,
    pub config_reload_errors: Counter,
    pub closed_by_policy_change: Family<DirectionLabels, Counter>,
    pub tls_handshakes: Family<DirectionLabels, Counter>,
    pub endpoint_retries: Counter,
    pub http_connections_closed: Family<HttpCloseLabels, Counter>,
    pub upstream_overflows: Counter,
    pub peer_svid_rejections: Family<RejectionLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("palisade");
        let m = Self {
            connections: Family::default(),
            active_connections: Family::default(),
            denials: Family::default(),
            detect_timeouts: Family::default(),
            requests: Family::default(),
            config_info: Family::default(),
            config_reload_errors: Counter::default(),
            closed_by_policy_change: Family::default(),
            tls_handshakes: Family::default(),
            endpoint_retries: Counter::default(),
            http_connections_closed: Family::default(),
            upstream_overflows: Counter::default(),
            peer_svid_rejections: Family::default(),
            registry: Registry::default(),
        };
        registry.register(
            "connections",
            "Connections by direction and outcome",
            m.connections.clone(),
        );
        registry.register(
            "active_connections",
            "Connections open now",
            m.active_connections.clone(),
        );
        registry.register(
            "denials",
            "Connections and requests refused, by enforcing layer",
            m.denials.clone(),
        );
        registry.register(
            "detect_timeouts",
            "Inbound protocol detections that timed out, by port; declare the port in the palisade.dev/opaque-ports annotation",
            m.detect_timeouts.clone(),
        );
        registry.register(
            "requests",
            "HTTP requests by direction and response status",
            m.requests.clone(),
        );
        registry.register(
            "config_info",
            "The config version in force (value 1)",
            m.config_info.clone(),
        );
        registry.register(
            "config_reload_errors",
            "Config files that failed to load; the last good config stays",
            m.config_reload_errors.clone(),
        );
        registry.register(
            "closed_by_policy_change",
            "Established connections closed because a new config denies them",
            m.closed_by_policy_change.clone(),
        );
        registry.register(
            "tls_handshakes",
            "Completed mTLS handshakes (outbound: originated; inbound: terminated)",
            m.tls_handshakes.clone(),
        );
        registry.register(
            "endpoint_retries",
            "Outbound connections and requests sent to another endpoint of their Service because the endpoint picked first could not be reached",
            m.endpoint_retries.clone(),
        );
        registry.register(
            "http_connections_closed",
            "Served HTTP connections the sidecar closed, by reason: Idle (no request for --idle-timeout) or PrematureResets (HTTP/2 rapid reset: half the requests cancelled within 1 s of starting)",
            m.http_connections_closed.clone(),
        );
        registry.register(
            "upstream_overflows",
            "Requests refused with 503 because --max-upstream-connections plain HTTP/1 connections to their destination were open",
            m.upstream_overflows.clone(),
        );
        registry.register(
            "peer_svid_rejections",
            "Peer certificates refused in the mTLS handshake, by the X509-SVID rule that refused them (unknown-trust-domain: no bundle, local or federated, for the peer's trust domain)",
            m.peer_svid_rejections.clone(),
        );
        Self { registry, ..m }
    }

    /// The text exposition format.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }

    pub fn connection(&self, direction: Direction, outcome: Outcome) {
        self.connections
            .get_or_create(&ConnLabels { direction, outcome })
            .inc();
    }

    pub fn denial(&self, direction: Direction, layer: Layer) {
        self.denials
            .get_or_create(&LayerLabels { direction, layer })
            .inc();
        self.connection(direction, Outcome::Denied);
    }

    /// A denied request (the connection stays up).
    pub fn request_denial(&self, direction: Direction, layer: Layer) {
        self.denials
            .get_or_create(&LayerLabels { direction, layer })
            .inc();
    }

    pub fn request(&self, direction: Direction, status: u16) {
        self.requests
            .get_or_create(&StatusLabels { direction, status })
            .inc();
    }

    pub fn http_connection_closed(&self, direction: Direction, reason: HttpCloseReason) {
        self.http_connections_closed
            .get_or_create(&HttpCloseLabels { direction, reason })
            .inc();
    }

    /// A failed mTLS handshake; counted by rule when an SVID rule refused
    /// the peer.
    pub fn handshake_failed(&self, direction: Direction, error: &crate::tls::TlsError) {
        if let Some(rejection) = error.svid_rejection() {
            self.peer_svid_rejections
                .get_or_create(&RejectionLabels {
                    direction,
                    reason: rejection.code(),
                })
                .inc();
        }
    }

    pub fn handshake(&self, direction: Direction) {
        self.tls_handshakes
            .get_or_create(&DirectionLabels { direction })
            .inc();
    }

    pub fn set_config_version(&self, version: &str) {
        self.config_info.clear();
        self.config_info
            .get_or_create(&VersionLabels {
                version: version.to_string(),
            })
            .set(1);
    }
}
