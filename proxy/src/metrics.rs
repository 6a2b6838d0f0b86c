//! Prometheus metrics of the sidecar, all under the `palisade_` prefix
//! (prometheus-client with a prefixed registry, as ztunnel `src/metrics.rs`).
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::{EncodeLabelSet, EncodeLabelValue, LabelValueEncoder};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::cached_family::CachedFamily;

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

/// The other side of a request, as a label: the SPIFFE ID it proved in the
/// mTLS handshake (inbound: the client; outbound: the server the peer table
/// expects at the endpoint picked), or `unknown` without mTLS, Istio's word
/// for it in `source_principal` and `destination_principal`.
///
/// The set of values is bounded by the identities the mesh's CAs sign,
/// local or federated, not by anything a caller can choose.
#[derive(Clone, Debug, Default, Hash, PartialEq, Eq)]
pub struct Peer(Option<Arc<str>>);

impl Peer {
    pub const UNKNOWN: Peer = Peer(None);

    pub fn identity(id: Arc<str>) -> Self {
        Self(Some(id))
    }
}

impl EncodeLabelValue for Peer {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(self.0.as_deref().unwrap_or("unknown"))
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabels {
    pub direction: Direction,
    pub status: u16,
    pub peer: Peer,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    pub direction: Direction,
    pub peer: Peer,
}

/// The request metrics of one peer and direction (count by status, time
/// head to head), with the handles of the common case (a 200) taken once:
/// a request costs two atomic updates instead of two label lookups.
pub struct RequestMeter {
    direction: Direction,
    peer: Peer,
    ok: Counter,
    durations: Histogram,
}

impl RequestMeter {
    pub fn record(&self, metrics: &Metrics, status: u16, elapsed: Duration) {
        if status == 200 {
            self.ok.inc();
        } else {
            let labels = StatusLabels {
                direction: self.direction,
                status,
                peer: self.peer.clone(),
            };
            metrics.requests.with(&labels, Counter::inc);
        }
        self.durations.observe(elapsed.as_secs_f64());
    }
}

/// The [`RequestMeter`] of the peer a connection's last request went to:
/// on the outbound side the peer can change from request to request, but
/// seldom does.
#[derive(Default)]
pub struct MeterCache(std::sync::Mutex<Option<Arc<RequestMeter>>>);

impl MeterCache {
    pub fn meter(&self, metrics: &Metrics, direction: Direction, peer: Peer) -> Arc<RequestMeter> {
        let mut last = self.0.lock().unwrap_or_else(|e| e.into_inner());
        match &*last {
            Some(m) if m.direction == direction && m.peer == peer => m.clone(),
            _ => {
                let m = Arc::new(metrics.request_meter(direction, peer));
                *last = Some(m.clone());
                m
            }
        }
    }
}

/// An authorization policy's `ns/name` as a label.
#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct PolicyName(pub Arc<str>);

impl EncodeLabelValue for PolicyName {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        encoder.write_str(&self.0)
    }
}

/// Which rule of a policy matched: its index in `rules`, or, for the
/// denial of a request no ALLOW policy matched, `none-matched` (with the
/// policy `allow-policies`, as the `x-palisade-denied-by` header names it).
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq)]
pub enum RuleIndex {
    Index(usize),
    NoneMatched,
}

impl EncodeLabelValue for RuleIndex {
    fn encode(&self, encoder: &mut LabelValueEncoder<'_>) -> Result<(), std::fmt::Error> {
        use std::fmt::Write;
        match self {
            RuleIndex::Index(i) => write!(encoder, "{i}"),
            RuleIndex::NoneMatched => encoder.write_str("none-matched"),
        }
    }
}

#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, EncodeLabelValue)]
pub enum MatchAction {
    Allow,
    Deny,
    Audit,
}

impl From<palisade_api::AuthzAction> for MatchAction {
    fn from(action: palisade_api::AuthzAction) -> Self {
        match action {
            palisade_api::AuthzAction::Allow => MatchAction::Allow,
            palisade_api::AuthzAction::Deny => MatchAction::Deny,
            palisade_api::AuthzAction::Audit => MatchAction::Audit,
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AuthzMatchLabels {
    pub policy: PolicyName,
    pub rule: RuleIndex,
    pub action: MatchAction,
    /// `istio.io/dry-run` policies: what would have matched.
    pub dry_run: bool,
}

/// Upper bounds of the request duration buckets, in seconds: 0.5 ms to a
/// minute, as Istio's `istio_request_duration_milliseconds` starts and
/// about where Linkerd's `response_latency_ms` ends.
pub const DURATION_BUCKETS: [f64; 16] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

fn duration_histogram() -> Histogram {
    Histogram::new(DURATION_BUCKETS)
}

type DurationFamily = CachedFamily<PeerLabels, Histogram, fn() -> Histogram>;

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
    /// The roots in force no longer vouch for the client's certificate.
    Untrusted,
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
    pub connections: CachedFamily<ConnLabels, Counter>,
    pub active_connections: Family<DirectionLabels, Gauge>,
    pub denials: Family<LayerLabels, Counter>,
    pub detect_timeouts: Family<PortLabels, Counter>,
    // Counted on every connection or request: found through a foldhash map
    // (650 instructions per request on the inbound hop for `authz_matches`
    // alone, through the family's own SipHash map).
    pub requests: CachedFamily<StatusLabels, Counter>,
    pub request_durations: DurationFamily,
    pub authz_matches: CachedFamily<AuthzMatchLabels, Counter>,
    pub config_info: Family<VersionLabels, Gauge>,
    pub config_reload_errors: Counter,
    pub closed_by_policy_change: Family<DirectionLabels, Counter>,
    pub closed_by_trust_change: Family<DirectionLabels, Counter>,
    pub tls_handshakes: Family<DirectionLabels, Counter>,
    pub endpoint_retries: Counter,
    pub http_connections_closed: Family<HttpCloseLabels, Counter>,
    pub upstream_overflows: Counter,
    pub peer_svid_rejections: Family<RejectionLabels, Counter>,
    /// The SVID, the trust bundle and the control plane stream.
    pub identity: crate::identity_metrics::IdentityMetrics,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A static sidecar's metrics (config and SVID from files).
    pub fn new() -> Self {
        Self::for_mode(false)
    }

    /// With `control_mode`, also the control plane client's metrics.
    pub fn for_mode(control_mode: bool) -> Self {
        let mut registry = Registry::with_prefix("palisade");
        let m = Self {
            connections: CachedFamily::new(Family::default()),
            active_connections: Family::default(),
            denials: Family::default(),
            detect_timeouts: Family::default(),
            requests: CachedFamily::new(Family::default()),
            request_durations: CachedFamily::new(Family::new_with_constructor(duration_histogram)),
            authz_matches: CachedFamily::new(Family::default()),
            config_info: Family::default(),
            config_reload_errors: Counter::default(),
            closed_by_policy_change: Family::default(),
            closed_by_trust_change: Family::default(),
            tls_handshakes: Family::default(),
            endpoint_retries: Counter::default(),
            http_connections_closed: Family::default(),
            upstream_overflows: Counter::default(),
            peer_svid_rejections: Family::default(),
            identity: Default::default(),
            registry: Registry::default(),
        };
        m.identity.register(&mut registry, control_mode);
        registry.register(
            "connections",
            "Connections by direction and outcome",
            m.connections.family().clone(),
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
            "HTTP requests by direction, response status and peer (the SPIFFE ID of the other side: the client inbound, the server outbound; unknown without mTLS)",
            m.requests.family().clone(),
        );
        registry.register_with_unit(
            "request_duration",
            "Time from a request's head to its response's head (Linkerd's response_latency), by direction and peer; local answers (403, 503) included",
            prometheus_client::registry::Unit::Seconds,
            m.request_durations.family().clone(),
        );
        registry.register(
            "authz_matches",
            "Authorization decisions by the policy and rule that made them (the ALLOW or DENY rule that decided, every AUDIT rule that matched, dry_run=true for what dry-run policies would have decided); an ALLOW rule that never counts up grants nothing anyone uses",
            m.authz_matches.family().clone(),
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
            "closed_by_trust_change",
            "Established mTLS connections (and pooled mesh connections) closed because the roots in force no longer vouch for the peer's certificate (a root dropped after a CA rotation, a federated bundle changed); HTTP ones after their in-flight requests",
            m.closed_by_trust_change.clone(),
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
            .with(&ConnLabels { direction, outcome }, Counter::inc);
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

    /// The request metrics of one peer in one direction, looked up once
    /// (for a connection whose peer is fixed, as on the inbound side).
    pub fn request_meter(&self, direction: Direction, peer: Peer) -> RequestMeter {
        let ok = self.requests.get(&StatusLabels {
            direction,
            status: 200,
            peer: peer.clone(),
        });
        let durations = self.request_durations.get(&PeerLabels {
            direction,
            peer: peer.clone(),
        });
        RequestMeter {
            direction,
            peer,
            ok,
            durations,
        }
    }

    /// One authorization decision, counted by the rules behind it.
    pub fn authz_decision(&self, decision: &palisade_api::authz::Decision) {
        use palisade_api::authz::DecisionReason;
        let count = |policy: &Arc<str>, rule: RuleIndex, action: MatchAction, dry_run: bool| {
            self.count_authz_match(AuthzMatchLabels {
                policy: PolicyName(policy.clone()),
                rule,
                action,
                dry_run,
            });
        };
        let decisive = |reason: &DecisionReason, dry_run: bool| match reason {
            DecisionReason::DenyPolicyMatched(m) | DecisionReason::AllowPolicyMatched(m) => {
                count(
                    &m.policy,
                    RuleIndex::Index(m.rule),
                    m.action.into(),
                    dry_run,
                );
            }
            DecisionReason::NoAllowPolicyMatched => count(
                &Arc::from("allow-policies"),
                RuleIndex::NoneMatched,
                MatchAction::Deny,
                dry_run,
            ),
            DecisionReason::NoAllowPolicies => {}
        };
        decisive(&decision.reason, false);
        for m in &decision.audit {
            count(
                &m.policy,
                RuleIndex::Index(m.rule),
                MatchAction::Audit,
                false,
            );
        }
        if let Some(dry) = &decision.dry_run {
            for m in &dry.matched {
                count(&m.policy, RuleIndex::Index(m.rule), m.action.into(), true);
            }
            // A dry-run ALLOW policy that would leave this request with no
            // ALLOW match: what enforcing it would break.
            if dry.reason == DecisionReason::NoAllowPolicyMatched
                && decision.reason != DecisionReason::NoAllowPolicyMatched
            {
                decisive(&dry.reason, true);
            }
        }
    }

    fn count_authz_match(&self, labels: AuthzMatchLabels) {
        self.authz_matches.with(&labels, Counter::inc);
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
        text.lines().find(|l| l.starts_with(prefix))
    }

    #[test]
    fn a_meter_cache_follows_the_peer_and_counts_every_status() {
        let metrics = Metrics::new();
        let cache = MeterCache::default();
        let a = || Peer::identity(Arc::from("spiffe://td/ns/a/sa/a"));
        let ms = Duration::from_millis(1);
        cache
            .meter(&metrics, Direction::Outbound, a())
            .record(&metrics, 200, ms);
        let first = cache.meter(&metrics, Direction::Outbound, a());
        first.record(&metrics, 503, ms);
        // Same peer: the same meter, not a new lookup.
        assert!(Arc::ptr_eq(
            &first,
            &cache.meter(&metrics, Direction::Outbound, a())
        ));
        cache
            .meter(&metrics, Direction::Outbound, Peer::UNKNOWN)
            .record(&metrics, 200, ms);
        let text = metrics.encode();
        let req = |status: u16, peer: &str| {
            line(
                &text,
                &format!(
                    "palisade_requests_total{{direction=\"Outbound\",status=\"{status}\",peer=\"{peer}\"}} "
                ),
            )
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
        };
        assert_eq!(
            req(200, "spiffe://td/ns/a/sa/a").as_deref(),
            Some("1"),
            "{text}"
        );
        assert_eq!(
            req(503, "spiffe://td/ns/a/sa/a").as_deref(),
            Some("1"),
            "{text}"
        );
        assert_eq!(req(200, "unknown").as_deref(), Some("1"), "{text}");
        assert!(
            line(
                &text,
                "palisade_request_duration_seconds_count{direction=\"Outbound\",peer=\"spiffe://td/ns/a/sa/a\"} 2"
            )
            .is_some(),
            "{text}"
        );
    }

    #[test]
    fn authz_matches_count_every_decision_through_the_kept_counters() {
        use palisade_api::authz::{Decision, DecisionReason, PolicyMatch, Verdict};
        let metrics = Metrics::new();
        let allowed_by = |policy: &str, rule: usize| Decision {
            verdict: Verdict::Allow,
            reason: DecisionReason::AllowPolicyMatched(PolicyMatch {
                policy: Arc::from(policy),
                action: palisade_api::AuthzAction::Allow,
                rule,
                dry_run: false,
            }),
            audit: vec![],
            dry_run: None,
        };
        for _ in 0..3 {
            metrics.authz_decision(&allowed_by("ns/a", 0));
        }
        // Past the cache's size it starts over, and no count is lost.
        for i in 0..crate::cached_family::CACHE_CAPACITY + 1 {
            metrics.authz_decision(&allowed_by("ns/many", i));
        }
        metrics.authz_decision(&allowed_by("ns/a", 0));
        metrics.authz_decision(&allowed_by("ns/many", 0));
        let text = metrics.encode();
        let count = |policy: &str, rule: usize| {
            line(
                &text,
                &format!(
                    "palisade_authz_matches_total{{policy=\"{policy}\",rule=\"{rule}\",action=\"Allow\",dry_run=\"false\"}}"
                ),
            )
            .map(|l| l.rsplit(' ').next().unwrap_or("").to_string())
        };
        assert_eq!(count("ns/a", 0).as_deref(), Some("4"), "{text}");
        assert_eq!(count("ns/many", 0).as_deref(), Some("2"));
        assert_eq!(
            count("ns/many", crate::cached_family::CACHE_CAPACITY).as_deref(),
            Some("1")
        );
    }
}
