//! Which ports and Service `appProtocol` values the sidecar treats as opaque
//! TCP rather than HTTP: shared by the sidecar, which tunnels such
//! connections and authorizes them once with the L4-applicable fields, and
//! `palisade check`, which must judge them the same way.

/// Well-known server-first ports on which the sidecar skips protocol
/// detection, as linkerd and Istio's "Application Requirements" list them
/// (SMTP, MySQL, NATS, Galera, PostgreSQL, Redis, Elasticsearch transport,
/// memcached).
pub const SERVER_FIRST_PORTS: &[u16] = &[25, 587, 3306, 4222, 4444, 5432, 6379, 9300, 11211];

/// Service `appProtocol` values that mean HTTP (Kubernetes names and the
/// Istio ones); any other declared value makes the port opaque.
pub fn is_http_app_protocol(p: &str) -> bool {
    matches!(
        p.to_ascii_lowercase().as_str(),
        "http" | "http2" | "h2c" | "grpc" | "kubernetes.io/h2c" | "kubernetes.io/ws"
    )
}
