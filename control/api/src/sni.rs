//! The server name a client sidecar sends when it opens mTLS to a peer for
//! a Service: Istio's `outbound_.PORT_._.HOST`, with the Service's name in
//! the cluster domain as HOST (Istio's `BuildSubsetKey` for a cluster
//! without subset). It is what `connection.sni` matches between sidecars.
//! A connection to a pod's own address carries no server name.

/// The cluster's DNS domain when none is configured (kubelet's and Istio's
/// default).
pub const DEFAULT_CLUSTER_DOMAIN: &str = "cluster.local";

/// `outbound_.PORT_._.NAME.NS.svc.DOMAIN` for the Service `ns/name`, its
/// port `port` and the cluster domain `domain`; `None` for a name that is
/// not `ns/name`.
pub fn outbound_sni(service: &str, port: u16, domain: &str) -> Option<String> {
    let (ns, name) = service.split_once('/')?;
    if ns.is_empty() || name.is_empty() {
        return None;
    }
    Some(format!("outbound_.{port}_._.{name}.{ns}.svc.{domain}"))
}

/// A cluster domain must be a DNS-1123 subdomain, as kubelet's
/// `--cluster-domain` is, whose labels are also DNS labels (at most 63
/// characters each).
pub fn valid_cluster_domain(domain: &str) -> bool {
    crate::dns::is_dns1123_subdomain(domain) && domain.split('.').all(crate::dns::is_dns1123_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_form() {
        assert_eq!(
            outbound_sni("default/httpbin", 8000, DEFAULT_CLUSTER_DOMAIN).as_deref(),
            Some("outbound_.8000_._.httpbin.default.svc.cluster.local")
        );
        assert_eq!(
            outbound_sni("default/httpbin", 8000, "corp.example").as_deref(),
            Some("outbound_.8000_._.httpbin.default.svc.corp.example")
        );
        assert_eq!(outbound_sni("httpbin", 80, DEFAULT_CLUSTER_DOMAIN), None);
        assert_eq!(outbound_sni("/x", 80, DEFAULT_CLUSTER_DOMAIN), None);
    }

    #[test]
    fn cluster_domains_are_dns_subdomains() {
        let long_label = "a".repeat(63);
        let longest = ["a"; 127].join("."); // 253 characters
        for ok in [
            "cluster.local",
            "corp.example",
            "a",
            "k8s-1.example",
            long_label.as_str(),
            longest.as_str(),
        ] {
            assert!(valid_cluster_domain(ok), "{ok}");
        }
        let too_long = ["a"; 128].join("."); // 255 characters
        let long_label = "a".repeat(64);
        for bad in [
            "",
            ".",
            "cluster.local.",
            ".cluster.local",
            "a..b",
            "Cluster.local",
            "-a.b",
            "a-.b",
            "a_b.c",
            "a b",
            long_label.as_str(),
            too_long.as_str(),
        ] {
            assert!(!valid_cluster_domain(bad), "{bad:?}");
        }
    }
}
