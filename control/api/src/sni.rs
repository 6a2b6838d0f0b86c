//! The server name a client sidecar sends when it opens mTLS to a peer for
//! a Service: Istio's `outbound_.PORT_._.HOST`, with the Service's name in
//! the cluster domain as HOST (Istio's `BuildSubsetKey` for a cluster
//! without subset). It is what `connection.sni` matches between sidecars.
//! A connection to a pod's own address carries no server name.

/// The cluster's DNS domain (Kubernetes' and Istio's default).
pub const CLUSTER_DOMAIN: &str = "cluster.local";

/// `outbound_.PORT_._.NAME.NS.svc.cluster.local` for the Service `ns/name`
/// and its port `port`; `None` for a name that is not `ns/name`.
pub fn outbound_sni(service: &str, port: u16) -> Option<String> {
    let (ns, name) = service.split_once('/')?;
    if ns.is_empty() || name.is_empty() {
        return None;
    }
    Some(format!(
        "outbound_.{port}_._.{name}.{ns}.svc.{CLUSTER_DOMAIN}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_form() {
        assert_eq!(
            outbound_sni("default/httpbin", 8000).as_deref(),
            Some("outbound_.8000_._.httpbin.default.svc.cluster.local")
        );
        assert_eq!(outbound_sni("httpbin", 80), None);
        assert_eq!(outbound_sni("/x", 80), None);
    }
}
