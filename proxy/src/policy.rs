//! The one place the proxy calls the shared policy evaluators of
//! `palisade_api`: NetworkPolicy L4 (`l4::CompiledDirection`), Istio
//! authorization (`authz::CompiledAuthz`) and path normalization (the same
//! function `palisade check` uses). Everything is compiled once per config
//! version; the calls on the hot path take borrowed views and allocate only
//! on a denial.
use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use http::HeaderMap;
use palisade_api::authz::{
    AuthzError, CompiledAuthz, Decision, DecisionReason, HttpRequest, RequestContext,
};
use palisade_api::l4::{CompiledDirection, L4Decision};
use palisade_api::normalize::{self, PathError};
use palisade_api::{PathNormalization, Protocol, ProxyConfig};

/// The evaluators of one config version.
pub struct CompiledPolicy {
    ingress: CompiledDirection,
    egress: CompiledDirection,
    authz: CompiledAuthz,
}

impl CompiledPolicy {
    /// Fails when an authorization policy is invalid: the whole version is
    /// then refused (the last good config stays).
    pub fn compile(config: &ProxyConfig) -> Result<Self, AuthzError> {
        Ok(Self {
            ingress: CompiledDirection::new(&config.inbound.ingress),
            egress: CompiledDirection::new(&config.outbound.egress),
            authz: CompiledAuthz::new(&config.authorization, &config.mesh)?,
        })
    }
}

/// A refusal, naming what decided it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Denied {
    /// `ns/name` of the deciding policy, or what denied by default.
    pub policy: String,
    /// The rule within it (index), or why no rule applied.
    pub rule: String,
    /// The evaluator's explanation, for the log line.
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
    /// The server name of the connection's TLS ClientHello.
    pub sni: Option<&'a str>,
}

impl<'a> AccessView<'a> {
    /// A connection from `source` (with its verified identity, if any) to
    /// `dest`, and the HTTP request on it, if any.
    pub fn new(
        source: IpAddr,
        peer_identity: Option<&'a str>,
        dest: std::net::SocketAddr,
        http: Option<HttpView<'a>>,
    ) -> Self {
        AccessView {
            source,
            peer_identity,
            dest_ip: dest.ip(),
            dest_port: dest.port(),
            http,
            sni: None,
        }
    }

    /// The same view, for a connection whose ClientHello asked for `sni`.
    pub fn with_sni(mut self, sni: Option<&'a str>) -> Self {
        self.sni = sni;
        self
    }
}

pub struct HttpView<'a> {
    pub method: &'a str,
    /// Normalized, without the query.
    pub path: &'a str,
    pub host: &'a str,
    pub headers: &'a HeaderMap,
}

/// Ingress NetworkPolicy on (source IP, our port, TCP).
pub fn ingress(snapshot: &crate::state::Snapshot, src: IpAddr, port: u16) -> Result<(), Denied> {
    // A pod's traffic to itself is always allowed, whatever its policies (as
    // the upstream netpol e2e truth tables expect): our own IP, e.g. reached
    // back through a Service, is never isolated.
    if snapshot.config.workload.ips.contains(&src) {
        return Ok(());
    }
    l4(
        snapshot.policy.ingress.evaluate(src, port, Protocol::Tcp),
        "ingress",
    )
}

/// Egress NetworkPolicy on (destination IP, port, TCP).
pub fn egress(snapshot: &crate::state::Snapshot, dst: IpAddr, port: u16) -> Result<(), Denied> {
    // A pod's traffic to itself is always allowed (see `ingress`).
    if snapshot.config.workload.ips.contains(&dst) {
        return Ok(());
    }
    l4(
        snapshot.policy.egress.evaluate(dst, port, Protocol::Tcp),
        "egress",
    )
}

fn l4(decision: L4Decision, direction: &str) -> Result<(), Denied> {
    match decision {
        L4Decision::NotIsolated | L4Decision::Allowed { .. } => Ok(()),
        L4Decision::Denied { ref policies } => Err(Denied {
            policy: policies.join(","),
            rule: format!("no-{direction}-rule-matched"),
            reason: decision.to_string(),
        }),
    }
}

/// AuthorizationPolicy: DENY, then ALLOW; AUDIT and dry-run only log.
/// Not counted in the metrics: for re-checks of established connections.
pub fn authorize(snapshot: &crate::state::Snapshot, view: &AccessView<'_>) -> Result<(), Denied> {
    decide(snapshot, view, None)
}

/// [`authorize`] for a connection or request arriving, counted by the
/// rules behind the decision (`palisade_authz_matches_total`).
pub fn authorize_counted(
    snapshot: &crate::state::Snapshot,
    view: &AccessView<'_>,
    metrics: &crate::metrics::Metrics,
) -> Result<(), Denied> {
    decide(snapshot, view, Some(metrics))
}

fn decide(
    snapshot: &crate::state::Snapshot,
    view: &AccessView<'_>,
    metrics: Option<&crate::metrics::Metrics>,
) -> Result<(), Denied> {
    let mut ctx = RequestContext::tcp(
        view.peer_identity,
        view.source,
        view.dest_ip,
        view.dest_port,
    );
    if let Some(sni) = view.sni {
        ctx = ctx.with_sni(sni);
    }
    if let Some(h) = &view.http {
        ctx = ctx.with_http(HttpRequest {
            method: h.method,
            path: h.path,
            host: h.host,
            headers: h.headers,
        });
    }
    let decision = snapshot.policy.authz.evaluate(&ctx);
    if let Some(metrics) = metrics {
        metrics.authz_decision(&decision);
    }
    if !decision.audit.is_empty() || decision.dry_run.is_some() {
        log_audit(view, &decision);
    }
    if decision.is_allowed() {
        return Ok(());
    }
    let (policy, rule) = match &decision.reason {
        DecisionReason::DenyPolicyMatched(m) | DecisionReason::AllowPolicyMatched(m) => {
            (m.policy.to_string(), m.rule.to_string())
        }
        DecisionReason::NoAllowPolicyMatched => {
            ("allow-policies".to_string(), "none-matched".to_string())
        }
        DecisionReason::NoAllowPolicies => ("none".to_string(), "none".to_string()),
    };
    Err(Denied {
        policy,
        rule,
        reason: decision.to_string(),
    })
}

fn log_audit(view: &AccessView<'_>, decision: &Decision) {
    tracing::info!(
        target: "palisade::audit",
        source = %view.source,
        peer_identity = view.peer_identity.unwrap_or(""),
        dest_port = view.dest_port,
        method = view.http.as_ref().map(|h| h.method).unwrap_or(""),
        path = view.http.as_ref().map(|h| h.path).unwrap_or(""),
        decision = %decision,
        "authorization audit / dry-run"
    );
}

/// The request's path (query dropped) normalized in the mesh's mode,
/// borrowed when normalization changes nothing. An error means the path
/// cannot be normalized safely (the proxy answers 400).
pub fn normalize_path(
    path_and_query: &str,
    mode: PathNormalization,
) -> Result<Cow<'_, str>, PathError> {
    normalize::normalized_path(path_and_query, mode)
}
