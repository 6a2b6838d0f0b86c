//! Parsing what `palisade check` is asked: source, destination, port,
//! protocol and the optional HTTP request, resolved against the cluster.
//! Every problem is a `CheckInputError` (exit code 2), never a verdict.
use std::net::IpAddr;

use palisade_api::Protocol;

use crate::cluster::{Cluster, PortRef};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct CheckInputError(pub String);

fn bad(msg: impl Into<String>) -> CheckInputError {
    CheckInputError(msg.into())
}

/// Who opens the connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// A pod of the cluster (index into `cluster.pods`), from `ip`.
    Pod { pod: usize, ip: IpAddr },
    /// A caller known only by identity and IP (`spiffe://...` + `--source-ip`);
    /// `pod` is set when the IP belongs to a pod.
    Identity {
        id: String,
        ip: IpAddr,
        pod: Option<usize>,
    },
    /// An address outside the cluster.
    External { ip: IpAddr },
}

/// What the connection is addressed to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Destination {
    Pod {
        pod: usize,
        /// The address the connection is sent to, when `--to` named one of
        /// the pod's IPs; `None` (`--to NS/POD`) takes the pod's address in
        /// the source's family, else its first.
        ip: Option<IpAddr>,
    },
    Service {
        service: usize,
    },
    /// An Istio `ServiceEntry` (`se:NS/NAME`, or one of its `addresses`):
    /// the caller's sidecar balances over its endpoints, as for a Service.
    ServiceEntry {
        entry: usize,
    },
    External {
        ip: IpAddr,
    },
}

/// The HTTP part of a check.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpSpec {
    pub method: String,
    pub path: String,
    pub host: Option<String>,
    pub headers: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckRequest {
    pub source: Source,
    pub destination: Destination,
    pub port: PortRef,
    pub protocol: Protocol,
    pub http: Option<HttpSpec>,
    /// The caller presents no identity.
    pub plaintext: bool,
    /// The server name the caller's TLS ClientHello asks for, as
    /// authorization's `connection.sni` sees it.
    pub sni: Option<String>,
}

pub fn parse_protocol(s: &str) -> Result<Protocol, CheckInputError> {
    match s.to_ascii_uppercase().as_str() {
        "TCP" => Ok(Protocol::Tcp),
        "UDP" => Ok(Protocol::Udp),
        "SCTP" => Ok(Protocol::Sctp),
        _ => Err(bad(format!("--protocol {s:?}: expected TCP, UDP or SCTP"))),
    }
}

pub fn parse_port(s: &str) -> Result<PortRef, CheckInputError> {
    if let Ok(n) = s.parse::<u32>() {
        return match u16::try_from(n) {
            Ok(p) if p > 0 => Ok(PortRef::Number(p)),
            _ => Err(bad(format!("--port {s}: out of range 1-65535"))),
        };
    }
    // A name no manifest could declare would match no port and read as a
    // denial; it is refused instead.
    if crate::load::valid_port_name(s) {
        Ok(PortRef::Name(s.to_string()))
    } else {
        Err(bad(format!(
            "--port {s:?}: expected a port number (1-65535) or a port name \
             (IANA_SVC_NAME: at most 15 lowercase letters, digits and '-', \
             at least one letter, no '-' at either end or twice in a row)"
        )))
    }
}

fn pod_by_name(cluster: &Cluster, s: &str, flag: &str) -> Result<usize, CheckInputError> {
    let (ns, name) = s
        .split_once('/')
        .filter(|(n, p)| !n.is_empty() && !p.is_empty() && !p.contains('/'))
        .ok_or_else(|| {
            bad(format!(
                "{flag} {s:?}: expected NS/POD, an IP address{}",
                if flag == "--to" {
                    ", svc:NS/NAME, or se:NS/NAME"
                } else {
                    ", or spiffe://..."
                }
            ))
        })?;
    cluster.pod_index(ns, name).ok_or_else(|| {
        bad(format!(
            "{flag} {s}: no pod {ns}/{name} in the configuration"
        ))
    })
}

/// Why a pod has no address: finished, or no `status.podIP` yet.
fn no_ip_why(p: &crate::cluster::Pod) -> String {
    match p.phase.as_deref() {
        Some(phase) if p.finished() => {
            format!("phase {phase}: a finished pod has no network presence")
        }
        _ => "status.podIP".to_string(),
    }
}

/// The pod whose address `ip` is. A hostNetwork pod's address is its node's,
/// and "traffic to/from `hostNetwork` pods is treated the same as all other
/// traffic to/from the node IP" (kubernetes.io, "Network Policies"), so the
/// address alone names the node (outside the cluster's pods), not the pod.
pub(crate) fn pod_owning(cluster: &Cluster, ip: IpAddr) -> Option<usize> {
    cluster
        .pods
        .iter()
        .position(|p| !p.host_network && p.ips.contains(&ip))
}

pub fn parse_source(
    cluster: &Cluster,
    s: &str,
    source_ip: Option<IpAddr>,
) -> Result<Source, CheckInputError> {
    if let Some(rest) = s.strip_prefix("spiffe://") {
        if rest.is_empty() || !rest.contains('/') {
            return Err(bad(format!(
                "--from {s:?}: a SPIFFE ID is spiffe://TRUST-DOMAIN/PATH"
            )));
        }
        let ip = source_ip.ok_or_else(|| {
            bad("--from spiffe://... needs --source-ip IP (the address the caller connects from)")
        })?;
        return Ok(Source::Identity {
            id: s.to_string(),
            ip,
            pod: pod_owning(cluster, ip),
        });
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        if source_ip.is_some_and(|s| s != ip) {
            return Err(bad("--source-ip differs from the --from address"));
        }
        return Ok(match pod_owning(cluster, ip) {
            Some(pod) => Source::Pod { pod, ip },
            None => Source::External { ip },
        });
    }
    let pod = pod_by_name(cluster, s, "--from")?;
    let p = &cluster.pods[pod];
    let ip = match source_ip {
        Some(ip) if p.ips.contains(&ip) => ip,
        Some(ip) => return Err(bad(format!("--source-ip {ip} is not an IP of pod {s}"))),
        None => *p.ips.first().ok_or_else(|| {
            bad(format!(
                "--from {s}: the pod has no IP ({}), so it cannot open connections",
                no_ip_why(p)
            ))
        })?,
    };
    Ok(Source::Pod { pod, ip })
}

/// `NS/NAME` after `--to`'s `prefix:`.
fn namespaced_name<'a>(
    s: &str,
    rest: &'a str,
    prefix: &str,
) -> Result<(&'a str, &'a str), CheckInputError> {
    rest.split_once('/')
        .filter(|(n, p)| !n.is_empty() && !p.is_empty())
        .ok_or_else(|| bad(format!("--to {s:?}: expected {prefix}:NS/NAME")))
}

pub fn parse_destination(cluster: &Cluster, s: &str) -> Result<Destination, CheckInputError> {
    if let Some(rest) = s.strip_prefix("se:") {
        let (ns, name) = namespaced_name(s, rest, "se")?;
        let entry = cluster
            .service_entries
            .iter()
            .position(|x| x.namespace == ns && x.name == name)
            .ok_or_else(|| {
                bad(format!(
                    "--to {s}: no ServiceEntry {ns}/{name} in the configuration"
                ))
            })?;
        return Ok(Destination::ServiceEntry { entry });
    }
    if let Some(rest) = s.strip_prefix("svc:") {
        let (ns, name) = namespaced_name(s, rest, "svc")?;
        let service = cluster
            .services
            .iter()
            .position(|x| x.namespace == ns && x.name == name)
            .ok_or_else(|| {
                bad(format!(
                    "--to {s}: no Service {ns}/{name} in the configuration"
                ))
            })?;
        return Ok(Destination::Service { service });
    }
    if let Ok(ip) = s.parse::<IpAddr>() {
        if let Some(service) = cluster
            .services
            .iter()
            .position(|x| x.cluster_ips.contains(&ip) || x.external_ips.contains(&ip))
        {
            return Ok(Destination::Service { service });
        }
        if let Some(entry) = cluster
            .service_entries
            .iter()
            .position(|x| x.addresses.contains(&ip))
        {
            return Ok(Destination::ServiceEntry { entry });
        }
        return Ok(match pod_owning(cluster, ip) {
            Some(pod) => Destination::Pod { pod, ip: Some(ip) },
            None => Destination::External { ip },
        });
    }
    let pod = pod_by_name(cluster, s, "--to")?;
    if cluster.pods[pod].ips.is_empty() {
        return Err(bad(format!(
            "--to {s}: the pod has no IP ({}), so it cannot be addressed",
            no_ip_why(&cluster.pods[pod])
        )));
    }
    Ok(Destination::Pod { pod, ip: None })
}

/// `NAME:VALUE` from `--header`.
pub fn parse_header(s: &str) -> Result<(String, String), CheckInputError> {
    let (name, value) = s
        .split_once(':')
        .ok_or_else(|| bad(format!("--header {s:?}: expected NAME:VALUE")))?;
    let name = name.trim();
    if http::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
        return Err(bad(format!(
            "--header {s:?}: {name:?} is not a valid header name"
        )));
    }
    let value = value.trim();
    if http::header::HeaderValue::from_str(value).is_err() {
        return Err(bad(format!(
            "--header {s:?}: the value has bytes a header cannot carry"
        )));
    }
    Ok((name.to_ascii_lowercase(), value.to_string()))
}
