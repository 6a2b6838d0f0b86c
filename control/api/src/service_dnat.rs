//! How kube-proxy picks a Service's endpoint, written as the target of an
//! nftables `dnat`: shared by the sidecar's UDP/SCTP Service translation
//! (`palisade-proxy`'s `capture::service_nat`) and the lab's kube-proxy
//! stand-in, so both spread datagrams the same way.
use std::net::{IpAddr, SocketAddr};

/// The target of an nftables `dnat` to `endpoints` (sorted here, and
/// duplicates dropped, so the rules do not change with their order) as
/// kube-proxy picks one: the only one, or one at random, or
/// by a hash of the client's address for `sessionAffinity: ClientIP`
/// (`family` is `ip` or `ip6`). `None` when there is no endpoint.
pub fn dnat_target(
    endpoints: impl IntoIterator<Item = (IpAddr, u16)>,
    client_affinity: bool,
    family: &str,
) -> Option<String> {
    let mut endpoints: Vec<(IpAddr, u16)> = endpoints.into_iter().collect();
    endpoints.sort_unstable();
    endpoints.dedup();
    match endpoints.as_slice() {
        [] => None,
        // `ip:port`, or `[ip]:port` for IPv6, as `dnat to` takes one address.
        [(ip, port)] => Some(SocketAddr::new(*ip, *port).to_string()),
        many => {
            let choice = if client_affinity {
                format!("jhash {family} saddr mod {} seed 0x0", many.len())
            } else {
                format!("numgen random mod {}", many.len())
            };
            let map: Vec<String> = many
                .iter()
                .enumerate()
                .map(|(i, (ip, port))| format!("{i} : {ip} . {port}"))
                .collect();
            Some(format!("{choice} map {{ {} }}", map.join(", ")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_endpoint_is_the_target_and_several_make_a_map() {
        let a: IpAddr = "198.18.0.1".parse().unwrap();
        let b: IpAddr = "198.18.0.2".parse().unwrap();
        assert_eq!(dnat_target([], false, "ip"), None);
        assert_eq!(
            dnat_target([(a, 53)], true, "ip").as_deref(),
            Some("198.18.0.1:53")
        );
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            dnat_target([(v6, 53)], false, "ip6").as_deref(),
            Some("[2001:db8::1]:53")
        );
        assert_eq!(
            dnat_target([(b, 5353), (a, 53), (b, 5353)], false, "ip").as_deref(),
            Some("numgen random mod 2 map { 0 : 198.18.0.1 . 53, 1 : 198.18.0.2 . 5353 }")
        );
        assert_eq!(
            dnat_target([(a, 53), (b, 53)], true, "ip").as_deref(),
            Some("jhash ip saddr mod 2 seed 0x0 map { 0 : 198.18.0.1 . 53, 1 : 198.18.0.2 . 53 }")
        );
    }
}
