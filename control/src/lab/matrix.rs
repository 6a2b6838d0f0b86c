//! `palisade lab probe`: plans every (source, destination, port) probe of
//! the lab, runs them from inside each source namespace, and sets each
//! observation beside the verdict `palisade check` predicts for it.
use std::collections::BTreeSet;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::process::{Command, Stdio};

use palisade_api::Protocol;

use super::probe::{Probe, ProbePlan, ProbeResult, Verdict};
use super::report::Row;
use super::run::LabState;
use super::{LabError, OUTSIDE_NETNS};
use crate::check::{CheckRequest, Destination, HttpSpec, LayerVerdict, Source, check};
use crate::cluster::PortRef;
use crate::compile::Compiler;

/// What to probe.
#[derive(Debug, Clone, Default)]
pub struct ProbeOptions {
    pub port: Option<u16>,
    pub protocol: Option<Protocol>,
    pub http: Option<(String, String)>,
    /// Probe every Service's cluster IP and port instead of pods.
    pub services: bool,
}

/// Ports probed on outside endpoints when `--port` is not given.
const OUTSIDE_PORTS: [u16; 2] = [80, 443];

struct Planned {
    source: String,
    source_ip: Ipv4Addr,
    /// Index of the source pod in the cluster; `None` outside.
    source_pod: Option<usize>,
    meshed: bool,
    to: String,
    destination: Destination,
    probe: Probe,
}

pub fn probe(state: &LabState, opts: &ProbeOptions) -> Result<Vec<Row>, LabError> {
    let cluster = crate::load::load_dir(&state.plan.manifests)
        .map_err(|e| LabError::Setup(format!("the lab's manifests no longer load: {e}")))?;
    let compiler = Compiler::new(&cluster);
    let planned = plan(state, &cluster, opts);
    // One probe process per source namespace, all at once.
    let mut sources: Vec<(String, Option<Ipv4Addr>)> = state
        .plan
        .pods
        .iter()
        .map(|p| (p.netns.clone(), None))
        .collect();
    sources.extend(
        state
            .plan
            .externals
            .iter()
            .map(|ip| (OUTSIDE_NETNS.to_string(), Some(*ip))),
    );
    let mut children = Vec::new();
    for (netns, bind) in &sources {
        let source_name = match bind {
            Some(ip) => ip.to_string(),
            None => state
                .plan
                .pods
                .iter()
                .find(|p| &p.netns == netns)
                .map(|p| p.key.clone())
                .unwrap_or_default(),
        };
        let mine: Vec<&Planned> = planned.iter().filter(|p| p.source == source_name).collect();
        if mine.is_empty() {
            continue;
        }
        let plan = ProbePlan {
            bind: *bind,
            probes: mine.iter().map(|p| p.probe.clone()).collect(),
        };
        children.push((spawn_prober(netns, &plan)?, mine));
    }
    let mut rows = Vec::new();
    for (child, mine) in children {
        let output = child.wait_with_output()?;
        let results: Vec<ProbeResult> = serde_json::from_slice(&output.stdout).map_err(|e| {
            LabError::Setup(format!(
                "a prober failed ({e}): {}",
                String::from_utf8_lossy(&output.stderr)
            ))
        })?;
        for (p, result) in mine.into_iter().zip(results) {
            rows.push(row(&compiler, p, result));
        }
    }
    rows.sort_by(|a, b| (&a.from, &a.to, a.port).cmp(&(&b.from, &b.to, b.port)));
    Ok(rows)
}

pub(super) fn spawn_prober(netns: &str, plan: &ProbePlan) -> Result<std::process::Child, LabError> {
    let exe = std::env::current_exe()?;
    let mut child = Command::new("ip")
        .args(["netns", "exec", netns])
        .arg(&exe)
        .args(["lab", "probe-from"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    let input = serde_json::to_vec(plan).map_err(|e| LabError::Setup(e.to_string()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin.write_all(&input)?;
    }
    Ok(child)
}

/// A destination with the ports to probe and the names that may answer.
struct Target {
    name: String,
    ip: Ipv4Addr,
    ports: Vec<(u16, Protocol)>,
    expect: Vec<String>,
    destination: Destination,
}

fn plan(state: &LabState, cluster: &crate::cluster::Cluster, opts: &ProbeOptions) -> Vec<Planned> {
    let wanted = |port: u16, proto: Protocol| {
        opts.port.is_none_or(|p| p == port) && opts.protocol.is_none_or(|p| p == proto)
    };
    let mut destinations: Vec<Target> = Vec::new();
    if opts.services {
        let compiler = Compiler::new(cluster);
        for (i, svc) in cluster.services.iter().enumerate() {
            let key = format!("{}/{}", svc.namespace, svc.name);
            let Some(lab) = state.plan.services.iter().find(|s| s.key == key) else {
                continue;
            };
            let endpoints: Vec<String> =
                crate::compile::services::endpoint_pods(compiler.index(), svc)
                    .into_iter()
                    .map(|p| cluster.pods[p].key())
                    .collect();
            // UDP only without --http; SCTP is not probed at all.
            let ports = lab
                .ports
                .iter()
                .copied()
                .filter(|(p, proto)| match proto {
                    Protocol::Tcp => wanted(*p, *proto),
                    Protocol::Udp => opts.http.is_none() && wanted(*p, *proto),
                    Protocol::Sctp => false,
                })
                .collect();
            destinations.push(Target {
                name: format!("svc:{key}"),
                ip: lab.ip,
                ports,
                expect: endpoints,
                destination: Destination::Service { service: i },
            });
        }
    } else {
        for (i, pod) in state.plan.pods.iter().enumerate() {
            let mut ports: Vec<(u16, Protocol)> =
                pod.tcp_ports.iter().map(|p| (*p, Protocol::Tcp)).collect();
            if opts.http.is_none() {
                ports.extend(pod.udp_ports.iter().map(|p| (*p, Protocol::Udp)));
            }
            ports.retain(|(p, proto)| wanted(*p, *proto));
            destinations.push(Target {
                name: pod.key.clone(),
                ip: pod.ip,
                ports,
                expect: vec![pod.key.clone()],
                destination: Destination::Pod { pod: i, ip: None },
            });
        }
        for ip in &state.plan.externals {
            let mut ports: BTreeSet<(u16, Protocol)> =
                OUTSIDE_PORTS.iter().map(|p| (*p, Protocol::Tcp)).collect();
            if let Some(p) = opts.port {
                ports = BTreeSet::from([(p, opts.protocol.unwrap_or_default())]);
            }
            let ports = ports
                .into_iter()
                .filter(|(p, proto)| wanted(*p, *proto))
                .collect();
            destinations.push(Target {
                name: ip.to_string(),
                ip: *ip,
                ports,
                expect: vec!["outside".into()],
                destination: Destination::External {
                    ip: IpAddr::V4(*ip),
                },
            });
        }
    }
    let mut sources: Vec<(String, Ipv4Addr, Option<usize>, bool)> = state
        .plan
        .pods
        .iter()
        .enumerate()
        .map(|(i, p)| (p.key.clone(), p.ip, Some(i), p.meshed))
        .collect();
    sources.extend(
        state
            .plan
            .externals
            .iter()
            .map(|ip| (ip.to_string(), *ip, None, false)),
    );
    let mut out = Vec::new();
    for (source, source_ip, source_pod, meshed) in &sources {
        for Target {
            name: to,
            ip,
            ports,
            expect,
            destination,
        } in &destinations
        {
            // The outside world is not probed from the outside, and cluster
            // IPs are reachable only from inside the cluster.
            if source_pod.is_none()
                && matches!(
                    destination,
                    Destination::External { .. } | Destination::Service { .. }
                )
            {
                continue;
            }
            for (port, protocol) in ports {
                out.push(Planned {
                    source: source.clone(),
                    source_ip: *source_ip,
                    source_pod: *source_pod,
                    meshed: *meshed,
                    to: to.clone(),
                    destination: destination.clone(),
                    probe: Probe {
                        ip: *ip,
                        port: *port,
                        protocol: *protocol,
                        expect: expect.clone(),
                        http: opts.http.clone().filter(|_| *protocol == Protocol::Tcp),
                    },
                });
            }
        }
    }
    out
}

fn row(compiler: &Compiler<'_>, p: &Planned, result: ProbeResult) -> Row {
    let source = match p.source_pod {
        Some(pod) => Source::Pod {
            pod,
            ip: IpAddr::V4(p.source_ip),
        },
        None => Source::External {
            ip: IpAddr::V4(p.source_ip),
        },
    };
    let http = p.probe.http.as_ref().map(|(method, path)| HttpSpec {
        method: method.clone(),
        path: path.clone(),
        host: None,
        headers: Vec::new(),
    });
    let request = CheckRequest {
        source,
        destination: p.destination.clone(),
        port: PortRef::Number(p.probe.port),
        protocol: p.probe.protocol,
        http,
        plaintext: !p.meshed,
        sni: None,
    };
    let (predicted, mtls, decided_by) = match check(compiler, &request) {
        Ok(report) => {
            let verdict = match &p.destination {
                Destination::Service { .. } => match service_prediction(&report) {
                    Some(v) => v,
                    // Mixed: the answer depends on the endpoint the sidecar picks.
                    None => result.observed,
                },
                _ if report.verdict == LayerVerdict::Allow => Verdict::Allow,
                _ => Verdict::Deny,
            };
            let mtls = report.endpoints.iter().any(|e| e.mtls.mtls);
            (verdict, mtls, decided_by(&report))
        }
        Err(e) => (
            Verdict::Deny,
            false,
            format!("check refused the question: {e}"),
        ),
    };
    Row {
        from: p.source.clone(),
        to: p.to.clone(),
        port: p.probe.port,
        protocol: p.probe.protocol,
        observed: result.observed,
        predicted,
        method: p.probe.http.as_ref().map(|h| h.0.clone()),
        path: p.probe.http.as_ref().map(|h| h.1.clone()),
        status: result.status,
        mtls,
        decided_by,
        detail: result.detail,
    }
}

/// A Service's verdict as the sidecar produces it: it picks only among the
/// endpoints its egress policy allows, so the call is allowed when every such
/// endpoint is allowed end to end, denied when none is (or none is
/// egress-allowed), and `None` when that depends on the endpoint picked.
fn service_prediction(report: &crate::check::CheckReport) -> Option<Verdict> {
    let candidates: Vec<_> = report
        .endpoints
        .iter()
        .filter(|e| e.egress.verdict != LayerVerdict::Deny)
        .collect();
    let allowed = candidates
        .iter()
        .filter(|e| e.verdict == LayerVerdict::Allow)
        .count();
    if allowed == 0 {
        Some(Verdict::Deny)
    } else if allowed == candidates.len() {
        Some(Verdict::Allow)
    } else {
        None
    }
}

/// The first layer that denied, or what allowed, in a few words.
fn decided_by(report: &crate::check::CheckReport) -> String {
    let Some(endpoint) = report.endpoints.first() else {
        return report.detail.clone();
    };
    for layer in [&endpoint.egress, &endpoint.ingress] {
        if layer.verdict == LayerVerdict::Deny {
            return layer.detail.clone();
        }
    }
    if endpoint.mtls.verdict == LayerVerdict::Deny {
        return endpoint.mtls.detail.clone();
    }
    if endpoint.authorization.verdict == LayerVerdict::Deny {
        return endpoint.authorization.detail.clone();
    }
    let allowed: Vec<&str> = [
        &endpoint.egress.detail,
        &endpoint.ingress.detail,
        &endpoint.authorization.detail,
    ]
    .into_iter()
    .filter(|d| !d.is_empty())
    .map(String::as_str)
    .collect();
    allowed.join("; ")
}

/// Writes the HTML matrix.
pub fn write_html(rows: &[Row], path: &Path) -> Result<(), LabError> {
    std::fs::write(path, super::report::html(rows))?;
    Ok(())
}
