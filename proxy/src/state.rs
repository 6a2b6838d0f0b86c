//! The config in force, compiled once per version into lookup tables so the
//! hot path never walks or clones the config: peers by IP, Services by
//! virtual IP and port, opaque ports, and the compiled policy evaluators.
//! Swapped atomically as a whole (`ArcSwap<Snapshot>`).
use std::collections::HashSet;

use crate::fast_map::FastMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use arc_swap::ArcSwap;
use palisade_api::authz::AuthzError;
use palisade_api::protocol::is_http_app_protocol;
use palisade_api::{Endpoint, MtlsMode, Peer, Protocol, ProxyConfig};
use palisade_identity::{FederatedBundles, TrustBundle, TrustDomain};

use crate::policy::CompiledPolicy;

/// Well-known server-first ports on which detection is skipped (shared with
/// `palisade check`, which judges them as the sidecar does).
pub use palisade_api::protocol::SERVER_FIRST_PORTS;

/// The live, swappable config.
pub type SharedState = Arc<ArcSwap<Snapshot>>;

/// One compiled config version.
pub struct Snapshot {
    pub config: ProxyConfig,
    pub version: String,
    pub policy: CompiledPolicy,
    /// Peers by IP: the index into `config.peers` and the peer's SPIFFE
    /// ID, shared (a route hands it out per request).
    peers: FastMap<IpAddr, (usize, Arc<str>)>,
    services: FastMap<SocketAddr, Arc<ServiceTarget>>,
    opaque_inbound: HashSet<u16>,
    /// The federated trust domains' bundles the config carries.
    pub federation: Arc<FederatedBundles>,
}

/// Why a config version cannot be compiled.
#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error(transparent)]
    Authz(#[from] AuthzError),
    #[error("federated bundle for {trust_domain}: {reason}")]
    Federation {
        trust_domain: String,
        reason: String,
    },
}

/// The config's federated bundles (`mesh.federatedBundles`), parsed.
fn federation(config: &ProxyConfig) -> Result<FederatedBundles, SnapshotError> {
    let mut set = FederatedBundles::none();
    for (td, pem) in &config.mesh.federated_bundles {
        let fail = |reason: String| SnapshotError::Federation {
            trust_domain: td.clone(),
            reason,
        };
        if config.mesh.is_local_trust_domain(td) {
            return Err(fail(
                "it is the mesh's trust domain or an alias of it, whose roots are the SVID's bundle"
                    .into(),
            ));
        }
        let name = TrustDomain::new(td).map_err(|e| fail(e.to_string()))?;
        let bundle = TrustBundle::from_pem(name, pem).map_err(|e| fail(e.to_string()))?;
        set.insert(bundle).map_err(|e| fail(e.to_string()))?;
    }
    Ok(set)
}

/// A Service port's ready endpoints and the balancer's in-flight counts.
pub struct ServiceTarget {
    pub name: String,
    /// The cluster IP and port this target answers for.
    pub service_port: SocketAddr,
    pub app_protocol: Option<String>,
    /// `sessionAffinity: ClientIP`: how long a pick stays sticky.
    pub affinity: Option<std::time::Duration>,
    /// The server name mTLS to an endpoint of this port carries
    /// (`palisade_api::sni::outbound_sni`).
    pub sni: Option<Arc<str>>,
    pub endpoints: Vec<Endpoint>,
    pub in_flight: Vec<Arc<AtomicUsize>>,
    /// Endpoints found unreachable, set aside for a while (see
    /// `outbound::service::set_aside`).
    pub unreachable: crate::outbound::service::Unreachable,
}

impl Snapshot {
    /// Compiles a config; fails when its authorization policies are invalid.
    pub fn compile(config: ProxyConfig, version: String) -> Result<Self, SnapshotError> {
        let peers = config
            .peers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.ip.to_canonical(), (i, Arc::from(p.identity.as_str()))))
            .collect();
        let mut services = FastMap::default();
        // Keyed as kube-proxy keys a Service port, by cluster IP, port and
        // protocol: this table serves captured TCP, so only TCP ports (a
        // UDP port of the same number must not take their place). And per
        // family, as kube-proxy runs one proxier per family: a cluster IP
        // leads to the endpoints of its own family.
        for svc in &config.services {
            for port in svc.ports.iter().filter(|p| p.protocol == Protocol::Tcp) {
                // External IPs lead to the endpoints as the cluster IPs do
                // (kube-proxy treats a pod's traffic to them alike).
                for ip in svc.cluster_ips.iter().chain(&svc.external_ips) {
                    let vip = ip.to_canonical();
                    let endpoints: Vec<Endpoint> = port
                        .endpoints
                        .iter()
                        .filter(|e| e.ip.to_canonical().is_ipv4() == vip.is_ipv4())
                        .cloned()
                        .collect();
                    let target = Arc::new(ServiceTarget {
                        name: svc.name.clone(),
                        service_port: SocketAddr::new(vip, port.port),
                        sni: palisade_api::sni::outbound_sni(
                            &svc.name,
                            port.port,
                            &config.mesh.cluster_domain,
                        )
                        .map(Arc::from),
                        app_protocol: port.app_protocol.clone(),
                        affinity: svc
                            .session_affinity
                            .map(|a| std::time::Duration::from_secs(u64::from(a.timeout_seconds))),
                        in_flight: endpoints
                            .iter()
                            .map(|_| Arc::new(AtomicUsize::new(0)))
                            .collect(),
                        unreachable: crate::outbound::service::Unreachable::new(endpoints.len()),
                        endpoints,
                    });
                    services.insert(SocketAddr::new(vip, port.port), target);
                }
            }
        }
        let opaque_inbound = config
            .workload
            .opaque_ports
            .iter()
            .copied()
            .chain(SERVER_FIRST_PORTS.iter().copied())
            .collect();
        let policy = CompiledPolicy::compile(&config)?;
        let federation = Arc::new(federation(&config)?);
        Ok(Self {
            config,
            version,
            policy,
            peers,
            services,
            opaque_inbound,
            federation,
        })
    }

    pub fn peer(&self, ip: IpAddr) -> Option<&Peer> {
        self.peers
            .get(&ip.to_canonical())
            .and_then(|(i, _)| self.config.peers.get(*i))
    }

    pub fn service(&self, vip: SocketAddr) -> Option<&Arc<ServiceTarget>> {
        self.services.get(&vip)
    }

    /// Effective PeerAuthentication mode of one of our own ports.
    pub fn inbound_mode(&self, port: u16) -> MtlsMode {
        let inbound = &self.config.inbound;
        inbound
            .port_mtls
            .get(&port)
            .copied()
            .unwrap_or(inbound.mtls)
    }

    /// Inbound detection is skipped on declared and well-known opaque ports.
    pub fn inbound_opaque(&self, port: u16) -> bool {
        self.opaque_inbound.contains(&port)
    }
}

/// How the outbound side reaches one endpoint.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PeerRoute {
    /// A meshed workload: mTLS, expecting this SPIFFE ID.
    Mesh { identity: Arc<str>, opaque: bool },
    /// Unmeshed, or its port's mode is DISABLE: plain TCP.
    Plain,
}

/// The route to an endpoint from the peer table.
pub fn peer_route(snapshot: &Snapshot, ep: SocketAddr, app_protocol: Option<&str>) -> PeerRoute {
    // Our own pod (a Service that selects us): the connection stays on the
    // pod's loopback and never reaches our inbound listener, so it is plain.
    if snapshot
        .config
        .workload
        .ips
        .contains(&ep.ip().to_canonical())
    {
        return PeerRoute::Plain;
    }
    let Some((peer, identity)) = snapshot
        .peers
        .get(&ep.ip().to_canonical())
        .and_then(|(i, identity)| Some((snapshot.config.peers.get(*i)?, identity)))
    else {
        return PeerRoute::Plain;
    };
    let mode = peer.port_mtls.get(&ep.port()).copied().unwrap_or(peer.mtls);
    if mode == MtlsMode::Disable {
        return PeerRoute::Plain;
    }
    let opaque_proto = matches!(app_protocol, Some(p) if !is_http_app_protocol(p));
    PeerRoute::Mesh {
        identity: identity.clone(),
        opaque: opaque_proto
            || peer.opaque_ports.contains(&ep.port())
            || SERVER_FIRST_PORTS.contains(&ep.port()),
    }
}

/// Test support: the compiled config of a pod x/a with `egress` as its
/// egress policy (YAML flow) and `services` (YAML, the list's items).
#[cfg(test)]
pub(crate) fn test_snapshot(egress: &str, services: &str) -> Snapshot {
    let config: ProxyConfig = serde_yaml::from_str(&format!(
        r#"
version: "v1"
mesh: {{ trustDomain: cluster.local }}
workload:
  namespace: x
  name: a
  serviceAccount: default
  identity: spiffe://cluster.local/ns/x/sa/default
  ips: [198.18.0.2]
inbound: {{ mtls: STRICT, ingress: {{ isolated: false }} }}
outbound: {{ egress: {egress} }}
services:
{services}"#
    ))
    .unwrap();
    Snapshot::compile(config, "v1".into()).unwrap()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `mesh.federatedBundles` is parsed when the version is compiled: a
    /// bundle that does not parse, or one for the mesh's own trust domain
    /// or an alias, refuses the version.
    #[test]
    fn federated_bundles_are_checked_when_compiled() {
        let base = test_snapshot("{ isolated: false }", "  []").config;
        let td = palisade_identity::TrustDomain::new("remote.test").unwrap();
        let ca = palisade_identity::CertificateAuthority::create(
            &td,
            &palisade_identity::CaOptions::default(),
        )
        .unwrap();
        let with = |td: &str, pem: &str| {
            let mut config = base.clone();
            config.mesh.trust_domain_aliases = vec!["old.local".into()];
            config.mesh.federated_bundles.insert(td.into(), pem.into());
            Snapshot::compile(config, "v".into())
        };
        let ok = with("remote.test", &ca.bundle().to_pem()).unwrap();
        assert_eq!(
            ok.federation.trust_domains().collect::<Vec<_>>(),
            ["remote.test"]
        );
        for (td, pem, why) in [
            ("remote.test", "junk", "PEM"),
            (
                "cluster.local",
                ca.bundle().to_pem().as_str(),
                "mesh's trust domain",
            ),
            (
                "old.local",
                ca.bundle().to_pem().as_str(),
                "mesh's trust domain",
            ),
        ] {
            let err = with(td, pem)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(
                err.starts_with(&format!("federated bundle for {td}")),
                "{err}"
            );
            assert!(err.contains(why) || why == "PEM", "{err}");
        }
    }

    /// kube-proxy keys a Service port by (cluster IP, port, protocol) and
    /// runs one proxier per IP family (pkg/proxy ServicePortName carries the
    /// protocol; the IPv4 proxier sees IPv4 endpoints only). The sidecar's
    /// table serves TCP connections: a UDP port of the same number (DNS on
    /// 53/UDP and 53/TCP) must not take the TCP port's place, and the IPv4
    /// cluster IP of a dual-stack Service must lead to IPv4 endpoints.
    #[test]
    fn service_table_is_tcp_and_per_family() {
        let snap = test_snapshot(
            "{ isolated: false }",
            r#"  - name: kube-system/dns
    clusterIps: [198.19.255.10, "fd00::10"]
    ports:
      - port: 53
        protocol: TCP
        endpoints:
          - { ip: 198.18.0.5, port: 5353, workload: kube-system/dns }
          - { ip: "fd00::5", port: 5353, workload: kube-system/dns }
      - port: 53
        protocol: UDP
        endpoints:
          - { ip: 198.18.0.5, port: 53, workload: kube-system/dns }
          - { ip: "fd00::5", port: 53, workload: kube-system/dns }
"#,
        );
        let v4 = snap.service("198.19.255.10:53".parse().unwrap()).unwrap();
        let got: Vec<SocketAddr> = v4
            .endpoints
            .iter()
            .map(|e| SocketAddr::new(e.ip, e.port))
            .collect();
        assert_eq!(got, ["198.18.0.5:5353".parse().unwrap()]);
        let v6 = snap.service("[fd00::10]:53".parse().unwrap()).unwrap();
        let got: Vec<SocketAddr> = v6
            .endpoints
            .iter()
            .map(|e| SocketAddr::new(e.ip, e.port))
            .collect();
        assert_eq!(got, ["[fd00::5]:5353".parse().unwrap()]);
        assert_eq!(v6.in_flight.len(), 1);
    }

    /// kube-proxy leads a pod's traffic to a Service's external IPs (and
    /// load-balancer IPs) to the endpoints, as its cluster IP: so does the
    /// sidecar, each keyed by its own address.
    #[test]
    fn external_ips_lead_to_the_endpoints_like_the_cluster_ip() {
        let snap = test_snapshot(
            "{ isolated: false }",
            r#"  - name: x/web
    clusterIps: [198.19.255.20]
    externalIps: [192.0.2.10, 203.0.113.5]
    ports:
      - port: 80
        protocol: TCP
        endpoints:
          - { ip: 198.18.0.5, port: 8080, workload: x/web }
"#,
        );
        for vip in ["198.19.255.20:80", "192.0.2.10:80", "203.0.113.5:80"] {
            let t = snap.service(vip.parse().unwrap()).unwrap();
            assert_eq!(t.name, "x/web");
            assert_eq!(t.service_port, vip.parse().unwrap());
            assert_eq!(t.endpoints.len(), 1);
        }
        assert!(snap.service("192.0.2.10:81".parse().unwrap()).is_none());
    }
}
