//! Which ports and Service `appProtocol` values the sidecar treats as opaque
//! TCP rather than HTTP: shared by the sidecar, which tunnels such
//! connections and authorizes them once with the L4-applicable fields, and
//! `palisade check`, which must judge them the same way.

/// Well-known server-first ports on which the sidecar skips protocol
/// detection and which the compiler lists as opaque when a container
/// declares them: linkerd's default opaque ports (SMTP 25/587, MySQL 3306,
/// Galera 4444, PostgreSQL 5432, Redis 6379, Elasticsearch transport 9300,
/// memcached 11211) plus NATS 4222 and MongoDB 27017 (Istio "Application
/// Requirements", server-first protocols). One list for the compiler, the
/// sidecar and `palisade check`.
pub const SERVER_FIRST_PORTS: &[u16] = &[25, 587, 3306, 4222, 4444, 5432, 6379, 9300, 11211, 27017];

/// Service `appProtocol` values that mean HTTP (Kubernetes names and the
/// Istio ones); any other declared value makes the port opaque.
pub fn is_http_app_protocol(p: &str) -> bool {
    matches!(
        p.to_ascii_lowercase().as_str(),
        "http" | "http2" | "h2c" | "grpc" | "kubernetes.io/h2c" | "kubernetes.io/ws"
    )
}
