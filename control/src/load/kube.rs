//! Core Kubernetes kinds (Namespace, Pod, Service, NetworkPolicy), read with
//! the k8s-openapi types and converted into the validated `cluster` model.
//! Validation follows the API server's: what it would reject is an error here.
use std::net::IpAddr;
use std::str::FromStr;

use k8s_openapi::api::core::v1 as core;
use k8s_openapi::api::networking::v1 as net;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use palisade_api::Protocol;

use super::cidr::{CidrError, parse_legacy_cidr};
use super::meta::NameRule;
use super::names::{
    LABEL_KEY_RULE, valid_dns_label, valid_dns_subdomain, valid_label_key, valid_port_name,
};
use super::{FieldError, ObjectHead, meta, typed};
use crate::cluster::{
    NAMESPACE_NAME_LABEL, Namespace, NetpolPeer, NetpolPort, NetpolRule, NetworkPolicy, Origin,
    Pod, PodPort, PortRef, Selector, Service, ServicePort, is_finished_phase,
};

/// Annotation listing extra opaque (server-first) ports of a pod.
pub const OPAQUE_PORTS_ANNOTATION: &str = "palisade.dev/opaque-ports";

/// Palisade's injection opt-out (`"false"`), on a pod or its workload.
pub const INJECT_ANNOTATION: &str = "palisade.dev/inject";
/// Istio's injection opt-out, as a label or an annotation (`"false"`):
/// Istio's injector honours both (the label first), and existing Istio
/// manifests mark their sidecar-less ("naked") workloads with it.
pub const ISTIO_INJECT_KEY: &str = "sidecar.istio.io/inject";

/// Why a pod with these labels and annotations runs no sidecar (its
/// injection was opted out), or `None`. The webhook skips such a pod, and
/// the control plane treats it as outside the mesh: it presents no
/// identity, its callers' sidecars reach it in plaintext, and nothing
/// enforces policy at it.
pub fn injection_opt_out(
    labels: &std::collections::BTreeMap<String, String>,
    annotations: &std::collections::BTreeMap<String, String>,
) -> Option<String> {
    [
        ("label", ISTIO_INJECT_KEY, labels),
        ("annotation", INJECT_ANNOTATION, annotations),
        ("annotation", ISTIO_INJECT_KEY, annotations),
    ]
    .into_iter()
    .find_map(|(what, key, map)| {
        map.get(key)
            .filter(|v| v.eq_ignore_ascii_case("false"))
            .map(|v| format!("{what} {key}: {v:?}"))
    })
}

fn expect_version(head: &ObjectHead, versions: &[&str]) -> Result<(), Vec<FieldError>> {
    if versions.contains(&head.version()) {
        Ok(())
    } else {
        Err(vec![FieldError::new(
            "apiVersion",
            format!(
                "unsupported apiVersion {:?} for {} (supported: {})",
                head.api_version,
                head.kind,
                versions.join(", ")
            ),
        )])
    }
}

pub(super) fn namespace(
    head: &ObjectHead,
    value: serde_yaml::Value,
) -> Result<Namespace, Vec<FieldError>> {
    expect_version(head, &["v1"])?;
    let ns: core::Namespace = typed(value)?;
    // ValidateNamespace: ValidateObjectMeta with ValidateNamespaceName.
    let mut errors = Vec::new();
    meta::object_meta(head, &ns.metadata, NameRule::DnsLabel, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    let mut labels = ns.metadata.labels.unwrap_or_default();
    labels.insert(NAMESPACE_NAME_LABEL.into(), head.name.clone());
    Ok(Namespace {
        name: head.name.clone(),
        labels,
        declared: true,
    })
}

pub(super) fn protocol(field: &str, p: Option<&str>) -> Result<Protocol, FieldError> {
    match p {
        None | Some("TCP") => Ok(Protocol::Tcp),
        Some("UDP") => Ok(Protocol::Udp),
        Some("SCTP") => Ok(Protocol::Sctp),
        Some(other) => Err(FieldError::new(
            field,
            format!("unknown protocol {other:?} (expected TCP, UDP or SCTP)"),
        )),
    }
}

fn port_number(field: &str, n: i32) -> Result<u16, FieldError> {
    match u16::try_from(n) {
        Ok(p) if p > 0 => Ok(p),
        _ => Err(FieldError::new(
            field,
            format!("port {n} is out of range 1-65535"),
        )),
    }
}

/// A Service's targetPort, as ValidatePortNumOrName checks it: a number
/// 1-65535 or an IANA_SVC_NAME (a quoted number is neither).
fn port_ref(field: &str, p: &IntOrString) -> Result<PortRef, FieldError> {
    match p {
        IntOrString::Int(n) => port_number(field, *n).map(PortRef::Number),
        IntOrString::String(s) if valid_port_name(s) => Ok(PortRef::Name(s.clone())),
        IntOrString::String(s) => Err(FieldError::new(
            field,
            format!(
                "{s:?} is not a valid port name (IANA_SVC_NAME: 1-15 lowercase alphanumerics or '-', at least one letter); write a port number without quotes"
            ),
        )),
    }
}

pub(super) fn pod(
    head: &ObjectHead,
    value: serde_yaml::Value,
    origin: Origin,
) -> Result<Pod, Vec<FieldError>> {
    expect_version(head, &["v1"])?;
    let pod: core::Pod = typed(value)?;
    // ValidatePodCreate: ValidateObjectMeta with ValidatePodName
    // (NameIsDNSSubdomain).
    let mut errors = Vec::new();
    meta::object_meta(head, &pod.metadata, NameRule::DnsSubdomain, &mut errors);
    let spec = pod.spec.unwrap_or_default();
    let status = pod.status.unwrap_or_default();
    let mut ips = Vec::new();
    let ip_strings: Vec<(String, String)> = match &status.pod_ips {
        Some(list) if !list.is_empty() => list
            .iter()
            .enumerate()
            .map(|(i, p)| (format!("status.podIPs[{i}].ip"), p.ip.clone()))
            .collect(),
        _ => status
            .pod_ip
            .iter()
            .map(|ip| ("status.podIP".to_string(), ip.clone()))
            .collect(),
    };
    for (field, s) in ip_strings {
        match IpAddr::from_str(&s) {
            Ok(ip) if !ips.contains(&ip) => ips.push(ip),
            Ok(_) => {}
            Err(_) => errors.push(FieldError::new(
                field,
                format!("{s:?} is not an IP address"),
            )),
        }
    }
    let mut node_ips = host_ips(&status, &mut errors);
    // The pod's ports: its containers', then its native sidecars' (init
    // containers with `restartPolicy: Always`, which run beside them), the
    // order in which FindPort (pkg/api/v1/pod/util.go) looks a name up.
    let containers = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| (format!("spec.containers[{i}]"), c));
    let sidecars = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .filter(|(_, c)| c.restart_policy.as_deref() == Some("Always"))
        .map(|(i, c)| (format!("spec.initContainers[{i}]"), c));
    let mut ports = Vec::new();
    for (container, c) in containers.chain(sidecars) {
        // validateContainerPorts: a name is unique within its container.
        let mut names: Vec<&str> = Vec::new();
        for (pi, p) in c.ports.iter().flatten().enumerate() {
            let field = format!("{container}.ports[{pi}]");
            let port = match port_number(&format!("{field}.containerPort"), p.container_port) {
                Ok(n) => n,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            let protocol = match protocol(&format!("{field}.protocol"), p.protocol.as_deref()) {
                Ok(pr) => pr,
                Err(e) => {
                    errors.push(e);
                    continue;
                }
            };
            // Checked only `if len(port.Name) > 0`: an empty name is none.
            let name = p.name.as_deref().filter(|n| !n.is_empty());
            if let Some(name) = name {
                if !valid_port_name(name) {
                    errors.push(FieldError::new(
                        format!("{field}.name"),
                        format!("{name:?} is not a valid port name"),
                    ));
                } else if names.contains(&name) {
                    errors.push(FieldError::new(
                        format!("{field}.name"),
                        format!("duplicate port name {name:?} in this container"),
                    ));
                } else {
                    names.push(name);
                }
            }
            ports.push(PodPort {
                name: name.map(str::to_string),
                port,
                protocol,
            });
        }
    }
    let mut opaque_ports = Vec::new();
    if let Some(v) = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OPAQUE_PORTS_ANNOTATION))
    {
        for part in v.split(',').map(str::trim).filter(|s| !s.is_empty()) {
            match part.parse::<u16>() {
                Ok(p) if p > 0 => opaque_ports.push(p),
                _ => errors.push(FieldError::new(
                    format!("metadata.annotations[{OPAQUE_PORTS_ANNOTATION}]"),
                    format!("{part:?} is not a port number (expected a comma-separated list such as \"5432,6379\")"),
                )),
            }
        }
    }
    opaque_ports.sort_unstable();
    opaque_ports.dedup();
    let finished = is_finished_phase(status.phase.as_deref());
    if finished {
        // A Succeeded or Failed pod's containers "have terminated" and "will
        // not be restarted" (kubernetes.io, "Pod Lifecycle"): it has no
        // network presence, and its IPs go back to the pool and may already
        // belong to another pod (kubernetes/kubernetes#110255 stopped
        // publishing terminal pods' IPs in Endpoints for that reason). So it
        // is kept, like a pod not scheduled yet, without addresses: it adds
        // nothing to any selector's IP set, peer table or Service endpoints,
        // and gets no node exemption. The addresses were still validated.
        ips.clear();
        node_ips.clear();
    }
    // podutil.IsPodReady: the `Ready` condition with status `True` (in a
    // cluster it already reflects `spec.readinessGates`); `False`,
    // `Unknown` or no `Ready` condition among the listed ones is not ready.
    // Our choice: a status that lists no condition at all is a hand-written
    // manifest (the API server's pods always carry conditions once
    // scheduled), read as ready, so a directory of plain YAML has endpoints.
    let conditions = status.conditions.as_deref().unwrap_or_default();
    let condition_ready = conditions.is_empty()
        || conditions
            .iter()
            .any(|c| c.type_ == "Ready" && c.status == "True");
    if !errors.is_empty() {
        return Err(errors);
    }
    let no_sidecar = injection_opt_out(
        pod.metadata.labels.as_ref().unwrap_or(&Default::default()),
        pod.metadata
            .annotations
            .as_ref()
            .unwrap_or(&Default::default()),
    );
    Ok(Pod {
        namespace: head.namespace.clone(),
        name: head.name.clone(),
        labels: pod.metadata.labels.unwrap_or_default(),
        service_account: spec
            .service_account_name
            .or(spec.service_account)
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "default".into()),
        ips,
        node_ips,
        phase: status.phase,
        // A non-boolean is already refused by the typed read, with the
        // field's path (`spec.hostNetwork`).
        host_network: spec.host_network.unwrap_or(false),
        no_sidecar,
        ports,
        opaque_ports,
        ready: !finished && condition_ready,
        terminating: pod.metadata.deletion_timestamp.is_some(),
        origin,
    })
}

/// The node's addresses: `status.hostIPs`, or `status.hostIP` when that list
/// is missing or empty. Pod API: hostIP is "Empty if the pod has not started
/// yet", and for hostIPs "If this field is specified, the first entry must
/// match the hostIP field."
fn host_ips(status: &core::PodStatus, errors: &mut Vec<FieldError>) -> Vec<IpAddr> {
    let parse = |field: String, s: &str, errors: &mut Vec<FieldError>| {
        IpAddr::from_str(s)
            .map_err(|_| {
                errors.push(FieldError::new(
                    field,
                    format!("{s:?} is not an IP address (the node's address)"),
                ))
            })
            .ok()
    };
    let single = status
        .host_ip
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(|s| parse("status.hostIP".into(), s, errors));
    let mut ips = Vec::new();
    match status.host_ips.as_deref() {
        Some(list) if !list.is_empty() => {
            for (i, h) in list.iter().enumerate() {
                let field = format!("status.hostIPs[{i}].ip");
                let Some(ip) = parse(field.clone(), &h.ip, errors) else {
                    continue;
                };
                if i == 0
                    && let Some(first) = single
                    && first != ip
                {
                    errors.push(FieldError::new(
                        field,
                        format!("{ip} must match status.hostIP {first}"),
                    ));
                }
                if !ips.contains(&ip) {
                    ips.push(ip);
                }
            }
        }
        _ => ips.extend(single),
    }
    ips
}

pub(super) fn service(
    head: &ObjectHead,
    value: serde_yaml::Value,
    origin: Origin,
) -> Result<Service, Vec<FieldError>> {
    expect_version(head, &["v1"])?;
    let svc: core::Service = typed(value)?;
    let spec = svc.spec.unwrap_or_default();
    let mut errors = Vec::new();
    // ValidateService (pkg/apis/core/validation/validation.go), the parts
    // that decide what a client reaches. The name: ValidateServiceName.
    meta::object_meta(head, &svc.metadata, NameRule::Dns1035Label, &mut errors);
    let kind = spec.type_.as_deref().unwrap_or("ClusterIP");
    if !matches!(
        kind,
        "ClusterIP" | "NodePort" | "LoadBalancer" | "ExternalName"
    ) {
        errors.push(FieldError::new(
            "spec.type",
            format!(
                "unsupported Service type {kind:?} (expected ClusterIP, NodePort, LoadBalancer or ExternalName)"
            ),
        ));
    }
    let external_name = kind == "ExternalName";
    let mut cluster_ips = Vec::new();
    let strings: Vec<(String, String)> = match &spec.cluster_ips {
        Some(list) if !list.is_empty() => list
            .iter()
            .enumerate()
            .map(|(i, s)| (format!("spec.clusterIPs[{i}]"), s.clone()))
            .collect(),
        _ => spec
            .cluster_ip
            .iter()
            .map(|s| ("spec.clusterIP".to_string(), s.clone()))
            .collect(),
    };
    // validateClusterIPs: clusterIPs[0] is clusterIP, "None" stands alone,
    // at most two, of different families.
    if let (Some(ip), Some(list)) = (&spec.cluster_ip, &spec.cluster_ips)
        && let Some(first) = list.first()
        && !ip.is_empty()
        && ip != first
    {
        errors.push(FieldError::new(
            "spec.clusterIPs[0]",
            format!("{first:?} must match spec.clusterIP {ip:?}"),
        ));
    }
    let headless = strings.first().is_some_and(|(_, s)| s == "None");
    if headless && strings.len() > 1 {
        errors.push(FieldError::new(
            "spec.clusterIPs",
            "must be [\"None\"] alone for a headless Service (no other address beside \"None\")",
        ));
    }
    if strings.len() > 2 {
        errors.push(FieldError::new(
            "spec.clusterIPs",
            format!(
                "may hold at most two addresses, one per family (got {})",
                strings.len()
            ),
        ));
    }
    let named_ips = strings.iter().any(|(_, s)| !s.is_empty());
    if external_name && named_ips {
        errors.push(FieldError::new(
            "spec.clusterIP",
            "must be empty for ExternalName services",
        ));
    }
    if headless && matches!(kind, "NodePort" | "LoadBalancer") {
        errors.push(FieldError::new(
            "spec.clusterIP",
            format!("may not be set to 'None' for {kind} services"),
        ));
    }
    for (field, s) in strings {
        if s == "None" || s.is_empty() {
            continue; // headless, or not allocated yet
        }
        match IpAddr::from_str(&s) {
            Ok(ip) if cluster_ips.iter().any(|c: &IpAddr| c.is_ipv4() == ip.is_ipv4()) => {
                errors.push(FieldError::new(
                    field,
                    format!("{ip} is of the same family as another cluster IP (dual-stack takes one IPv4 and one IPv6 address)"),
                ))
            }
            Ok(ip) => cluster_ips.push(ip),
            Err(_) => errors.push(FieldError::new(
                field,
                format!("{s:?} must be empty, 'None', or a valid IP address"),
            )),
        }
    }
    if external_name {
        // ExternalName: a DNS name (a trailing dot allowed), no VIP.
        let name = spec.external_name.as_deref().unwrap_or("");
        let fqdn = name.strip_suffix('.').unwrap_or(name);
        if fqdn.is_empty() {
            errors.push(FieldError::new(
                "spec.externalName",
                "required for ExternalName services",
            ));
        } else if !valid_dns_subdomain(fqdn) {
            errors.push(FieldError::new(
                "spec.externalName",
                format!("{name:?} is not a valid DNS name (a DNS-1123 subdomain)"),
            ));
        }
        cluster_ips.clear();
    }
    // spec.ipFamilies: IPv4 or IPv6, at most two, no repeat.
    let mut families = Vec::new();
    for (i, f) in spec.ip_families.iter().flatten().enumerate() {
        let field = format!("spec.ipFamilies[{i}]");
        match f.as_str() {
            "IPv4" | "IPv6" if families.contains(&f.as_str()) => {
                errors.push(FieldError::new(field, format!("duplicate family {f:?}")))
            }
            "IPv4" | "IPv6" => families.push(f.as_str()),
            other => errors.push(FieldError::new(
                field,
                format!("unsupported family {other:?} (expected IPv4 or IPv6)"),
            )),
        }
    }
    let ports_list = spec.ports.as_deref().unwrap_or_default();
    if ports_list.is_empty() && !headless && !external_name {
        errors.push(FieldError::new(
            "spec.ports",
            "required: a Service with a cluster IP needs at least one port",
        ));
    }
    let mut ports: Vec<ServicePort> = Vec::new();
    let mut names: Vec<&str> = Vec::new();
    for (i, p) in ports_list.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        // validateServicePort: a name is required when there is more than
        // one port; a name is a DNS-1123 label and unique.
        match p.name.as_deref().filter(|n| !n.is_empty()) {
            None if ports_list.len() > 1 => errors.push(FieldError::new(
                format!("{field}.name"),
                "required when a Service has more than one port",
            )),
            None => {}
            Some(n) if !valid_dns_label(n) => errors.push(FieldError::new(
                format!("{field}.name"),
                format!("{n:?} is not a valid port name (a DNS-1123 label: at most 63 lowercase alphanumerics or '-', beginning and ending with an alphanumeric)"),
            )),
            Some(n) if names.contains(&n) => errors.push(FieldError::new(
                format!("{field}.name"),
                format!("duplicate port name {n:?}"),
            )),
            Some(n) => names.push(n),
        }
        if let Some(ap) = &p.app_protocol
            && !valid_label_key(ap)
        {
            errors.push(FieldError::new(
                format!("{field}.appProtocol"),
                format!("{ap:?} is not a valid appProtocol (a qualified name: {LABEL_KEY_RULE})"),
            ));
        }
        let port = port_number(&format!("{field}.port"), p.port);
        let proto = protocol(&format!("{field}.protocol"), p.protocol.as_deref());
        // SetDefaults_Service: a missing, 0 or "" targetPort is the port.
        let target = match &p.target_port {
            None | Some(IntOrString::Int(0)) => port.clone().map(PortRef::Number),
            Some(IntOrString::String(s)) if s.is_empty() => port.clone().map(PortRef::Number),
            Some(t) => port_ref(&format!("{field}.targetPort"), t),
        };
        match (port, proto, target) {
            (Ok(port), Ok(protocol), Ok(target)) => {
                // ValidateService: "Check for duplicate Ports, considering
                // (protocol,port) pairs".
                if ports
                    .iter()
                    .any(|q| q.port == port && q.protocol == protocol)
                {
                    errors.push(FieldError::new(
                        &field,
                        format!("duplicate port {port}/{}", protocol_label(protocol)),
                    ));
                }
                ports.push(ServicePort {
                    name: p.name.clone().filter(|n| !n.is_empty()),
                    port,
                    protocol,
                    app_protocol: p.app_protocol.clone(),
                    target,
                })
            }
            (a, b, c) => errors.extend([a.err(), b.err(), c.err()].into_iter().flatten()),
        }
    }
    // validateServicePort's caller: a nodePort on a ClusterIP Service.
    for (i, p) in ports_list.iter().enumerate() {
        match p.node_port {
            Some(n) if n != 0 && kind == "ClusterIP" => errors.push(FieldError::new(
                format!("spec.ports[{i}].nodePort"),
                "may not be used when `type` is 'ClusterIP'",
            )),
            Some(n) if n != 0 => {
                if let Err(e) = port_number(&format!("spec.ports[{i}].nodePort"), n) {
                    errors.push(e);
                }
            }
            _ => {}
        }
    }
    // sessionAffinity: None or ClientIP; a config only with ClientIP, its
    // timeoutSeconds in 1-86400 (validateClientIPAffinityConfig).
    let affinity = spec.session_affinity.as_deref().unwrap_or("None");
    match affinity {
        "None" if spec.session_affinity_config.is_some() => errors.push(FieldError::new(
            "spec.sessionAffinityConfig",
            "must not be set when session affinity is None",
        )),
        "None" => {}
        "ClientIP" => {
            if let Some(t) = spec
                .session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                && !(1..=86400).contains(&t)
            {
                errors.push(FieldError::new(
                    "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                    format!("{t} is out of range 1-86400"),
                ));
            }
        }
        other => errors.push(FieldError::new(
            "spec.sessionAffinity",
            format!("unsupported value {other:?} (expected None or ClientIP)"),
        )),
    }
    // internalTrafficPolicy and externalTrafficPolicy: Cluster or Local;
    // the external one only on an externally accessible Service (NodePort,
    // LoadBalancer, or with externalIPs).
    if let Some(v) = spec.internal_traffic_policy.as_deref()
        && !matches!(v, "Cluster" | "Local")
    {
        errors.push(FieldError::new(
            "spec.internalTrafficPolicy",
            format!("unsupported value {v:?} (expected Cluster or Local)"),
        ));
    }
    if let Some(v) = spec
        .external_traffic_policy
        .as_deref()
        .filter(|v| !v.is_empty())
    {
        let external = matches!(kind, "NodePort" | "LoadBalancer")
            || spec.external_ips.as_ref().is_some_and(|l| !l.is_empty());
        if !matches!(v, "Cluster" | "Local") {
            errors.push(FieldError::new(
                "spec.externalTrafficPolicy",
                format!("unsupported value {v:?} (expected Cluster or Local)"),
            ));
        } else if !external {
            errors.push(FieldError::new(
                "spec.externalTrafficPolicy",
                "may only be set for externally-accessible services (NodePort, LoadBalancer or with externalIPs)",
            ));
        }
    }
    // ValidateLabels on spec.selector.
    if let Some(sel) = &spec.selector {
        meta::labels("spec.selector", sel, &mut errors);
    }
    let external_ips = external_ips(&spec, svc.status.as_ref(), kind, &mut errors);
    if !errors.is_empty() {
        return Err(errors);
    }
    // getAddressTypesForService: ipFamilies, else the cluster IP's family,
    // else (headless, not defaulted) both.
    let (ipv4, ipv6) = if !families.is_empty() {
        (families.contains(&"IPv4"), families.contains(&"IPv6"))
    } else if !cluster_ips.is_empty() {
        (
            cluster_ips.iter().any(IpAddr::is_ipv4),
            cluster_ips.iter().any(IpAddr::is_ipv6),
        )
    } else {
        (true, true)
    };
    Ok(Service {
        namespace: head.namespace.clone(),
        name: head.name.clone(),
        cluster_ips,
        external_ips,
        ports,
        // The EndpointSlice controller's syncService: "services with Type
        // ExternalName receive no endpoints from this controller".
        selector: spec
            .selector
            .filter(|s| !s.is_empty() && !external_name)
            .map(|s| Selector::from_match_labels(&s)),
        publish_not_ready_addresses: spec.publish_not_ready_addresses.unwrap_or(false),
        internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
        unproxied_by: crate::cluster::UNPROXIED_LABELS.into_iter().find(|key| {
            svc.metadata
                .labels
                .as_ref()
                .is_some_and(|l| l.contains_key(*key))
        }),
        client_ip_affinity: (affinity == "ClientIP").then(|| {
            spec.session_affinity_config
                .as_ref()
                .and_then(|c| c.client_ip.as_ref())
                .and_then(|c| c.timeout_seconds)
                .and_then(|t| u32::try_from(t).ok())
                .unwrap_or(palisade_api::DEFAULT_AFFINITY_TIMEOUT_SECONDS)
        }),
        ipv4,
        ipv6,
        origin,
    })
}

/// `spec.externalIPs` (ValidateService: each a valid IP, then
/// ValidateNonSpecialIP: not unspecified, loopback, link-local or
/// link-local multicast) and, for a LoadBalancer, the ingress IPs of its
/// status that kube-proxy programs (not `ipMode: Proxy`).
fn external_ips(
    spec: &core::ServiceSpec,
    status: Option<&core::ServiceStatus>,
    kind: &str,
    errors: &mut Vec<FieldError>,
) -> Vec<IpAddr> {
    let mut out = Vec::new();
    for (i, s) in spec.external_ips.iter().flatten().enumerate() {
        let field = format!("spec.externalIPs[{i}]");
        match IpAddr::from_str(s) {
            Err(_) => errors.push(FieldError::new(
                field,
                format!("{s:?} is not a valid IP address"),
            )),
            Ok(ip) => match special_ip(ip) {
                Some(why) => errors.push(FieldError::new(field, format!("{ip} {why}"))),
                None => out.push(ip),
            },
        }
    }
    if kind == "LoadBalancer" {
        let ingress = status
            .and_then(|s| s.load_balancer.as_ref())
            .and_then(|lb| lb.ingress.as_ref());
        for (i, ing) in ingress.into_iter().flatten().enumerate() {
            if ing.ip_mode.as_deref() == Some("Proxy") {
                continue;
            }
            let Some(s) = ing.ip.as_deref().filter(|s| !s.is_empty()) else {
                continue; // a hostname only: DNS leads elsewhere
            };
            match IpAddr::from_str(s) {
                Ok(ip) => out.push(ip),
                Err(_) => errors.push(FieldError::new(
                    format!("status.loadBalancer.ingress[{i}].ip"),
                    format!("{s:?} is not a valid IP address"),
                )),
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Why ValidateNonSpecialIP refuses `ip`, if it does.
fn special_ip(ip: IpAddr) -> Option<&'static str> {
    let link_local_multicast = match ip {
        IpAddr::V4(v4) => v4.octets()[..3] == [224, 0, 0],
        IpAddr::V6(v6) => v6.segments()[0] & 0xff0f == 0xff02,
    };
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    };
    if ip.is_unspecified() {
        Some("may not be unspecified")
    } else if ip.is_loopback() {
        Some("may not be in the loopback range (127.0.0.0/8, ::1/128)")
    } else if link_local {
        Some("may not be in the link-local range (169.254.0.0/16, fe80::/10)")
    } else if link_local_multicast {
        Some("may not be in the link-local multicast range (224.0.0.0/24, ff02::/10)")
    } else {
        None
    }
}

fn protocol_label(p: Protocol) -> &'static str {
    match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
    }
}

/// The fields of a NetworkPolicy (networking.k8s.io/v1), its ObjectMeta and
/// its parts, for strict decoding. `status` is read and ignored: exports
/// from clusters before 1.27, whose NetworkPolicy still had a (never used)
/// status, carry `status: {}`.
const NP_OBJECT: &[&str] = &["apiVersion", "kind", "metadata", "spec", "status"];
const OBJECT_META: &[&str] = &[
    "annotations",
    "creationTimestamp",
    "deletionGracePeriodSeconds",
    "deletionTimestamp",
    "finalizers",
    "generateName",
    "generation",
    "labels",
    "managedFields",
    "name",
    "namespace",
    "ownerReferences",
    "resourceVersion",
    "selfLink",
    "uid",
];
const NP_SPEC: &[&str] = &["podSelector", "policyTypes", "ingress", "egress"];
const NP_PEER: &[&str] = &["podSelector", "namespaceSelector", "ipBlock"];
const NP_IP_BLOCK: &[&str] = &["cidr", "except"];
const NP_PORT: &[&str] = &["protocol", "port", "endPort"];
const LABEL_SELECTOR: &[&str] = &["matchLabels", "matchExpressions"];
const SELECTOR_REQUIREMENT: &[&str] = &["key", "operator", "values"];

/// Keys of a NetworkPolicy that the API does not have. `kubectl apply`
/// validates strictly by default, and the API server then refuses them
/// (`strict decoding error: unknown field "spec.ingress[0].form"`); the
/// typed read would drop them silently, and a rule that lost its `from` to
/// a typo allows every source.
fn unknown_network_policy_fields(value: &serde_yaml::Value) -> Vec<FieldError> {
    fn closed(
        v: Option<&serde_yaml::Value>,
        path: &str,
        known: &[&str],
        errors: &mut Vec<FieldError>,
    ) {
        let Some(map) = v.and_then(serde_yaml::Value::as_mapping) else {
            return; // absent, or a type error the typed read reports
        };
        for key in map.keys() {
            let name = match key {
                serde_yaml::Value::String(s) => s.clone(),
                other => serde_yaml::to_string(other)
                    .map(|s| s.trim_end().to_string())
                    .unwrap_or_default(),
            };
            if !known.contains(&name.as_str()) {
                let field = if path.is_empty() {
                    name
                } else {
                    format!("{path}.{name}")
                };
                errors.push(FieldError::new(field, "unknown field"));
            }
        }
    }
    fn items(v: Option<&serde_yaml::Value>) -> impl Iterator<Item = (usize, &serde_yaml::Value)> {
        v.and_then(serde_yaml::Value::as_sequence)
            .into_iter()
            .flatten()
            .enumerate()
    }
    fn selector(v: Option<&serde_yaml::Value>, path: &str, errors: &mut Vec<FieldError>) {
        closed(v, path, LABEL_SELECTOR, errors);
        for (i, req) in items(v.and_then(|s| s.get("matchExpressions"))) {
            closed(
                Some(req),
                &format!("{path}.matchExpressions[{i}]"),
                SELECTOR_REQUIREMENT,
                errors,
            );
        }
    }
    let mut errors = Vec::new();
    closed(Some(value), "", NP_OBJECT, &mut errors);
    closed(value.get("metadata"), "metadata", OBJECT_META, &mut errors);
    let spec = value.get("spec");
    closed(spec, "spec", NP_SPEC, &mut errors);
    selector(
        spec.and_then(|s| s.get("podSelector")),
        "spec.podSelector",
        &mut errors,
    );
    for (direction, peers) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in items(spec.and_then(|s| s.get(direction))) {
            let path = format!("spec.{direction}[{i}]");
            closed(Some(rule), &path, &[peers, "ports"], &mut errors);
            for (j, peer) in items(rule.get(peers)) {
                let path = format!("{path}.{peers}[{j}]");
                closed(Some(peer), &path, NP_PEER, &mut errors);
                for key in ["podSelector", "namespaceSelector"] {
                    selector(peer.get(key), &format!("{path}.{key}"), &mut errors);
                }
                closed(
                    peer.get("ipBlock"),
                    &format!("{path}.ipBlock"),
                    NP_IP_BLOCK,
                    &mut errors,
                );
            }
            for (j, port) in items(rule.get("ports")) {
                closed(
                    Some(port),
                    &format!("{path}.ports[{j}]"),
                    NP_PORT,
                    &mut errors,
                );
            }
        }
    }
    errors
}

/// ValidateIPBlock: a valid `cidr`, and each `except` valid and "a strict
/// subset of `cidr`" (inside it, with a longer prefix; so also of the same
/// IP family). A value only the strict check refuses is still compared, as
/// the network ParseCIDRSloppy reads. Every problem is reported.
fn ip_block(field: &str, block: &net::IPBlock) -> Result<NetpolPeer, Vec<FieldError>> {
    let mut errors = Vec::new();
    let cidr = match parse_legacy_cidr(&format!("{field}.cidr"), &block.cidr) {
        Ok(net) => net,
        Err(CidrError { error, sloppy }) => {
            errors.push(error);
            sloppy.ok_or_else(|| errors.clone())?
        }
    };
    let mut except = Vec::new();
    for (i, e) in block.except.iter().flatten().enumerate() {
        let f = format!("{field}.except[{i}]");
        let net = match parse_legacy_cidr(&f, e) {
            Ok(net) => net,
            Err(CidrError { error, sloppy }) => {
                errors.push(error);
                match sloppy {
                    Some(net) => net,
                    None => continue,
                }
            }
        };
        if !cidr.contains(&net) {
            errors.push(FieldError::new(
                f,
                format!(
                    "{net} is outside the ipBlock cidr {cidr} (must be a strict subset of `cidr`)"
                ),
            ));
        } else if net.prefix_len() <= cidr.prefix_len() {
            errors.push(FieldError::new(
                f,
                format!("{net} must be a strict subset of the ipBlock cidr {cidr}"),
            ));
        } else {
            except.push(net);
        }
    }
    if errors.is_empty() {
        Ok(NetpolPeer::IpBlock { cidr, except })
    } else {
        Err(errors)
    }
}

/// ValidateNetworkPolicyPeer: each selector and the ipBlock are validated,
/// then "must specify a peer" and "may not specify both ipBlock and another
/// peer" on the peer itself.
fn peer(field: &str, p: &net::NetworkPolicyPeer) -> Result<NetpolPeer, Vec<FieldError>> {
    let mut errors = Vec::new();
    let sel = |key: &str, s: &Option<LabelSelector>, errors: &mut Vec<FieldError>| {
        s.as_ref().and_then(|s| {
            meta::label_selector(&format!("{field}.{key}"), s)
                .map_err(|e| errors.extend(e))
                .ok()
        })
    };
    let pods = sel("podSelector", &p.pod_selector, &mut errors);
    let namespaces = sel("namespaceSelector", &p.namespace_selector, &mut errors);
    let block = p.ip_block.as_ref().and_then(|b| {
        ip_block(&format!("{field}.ipBlock"), b)
            .map_err(|e| errors.extend(e))
            .ok()
    });
    match (&p.ip_block, &p.namespace_selector, &p.pod_selector) {
        (None, None, None) => errors.push(FieldError::new(
            field,
            "must specify a peer: podSelector, namespaceSelector or ipBlock (use `{}` selectors to select all)",
        )),
        (Some(_), None, None) | (None, _, _) => {}
        (Some(_), _, _) => errors.push(FieldError::new(
            field,
            "ipBlock cannot be combined with podSelector or namespaceSelector in one peer",
        )),
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(match block {
        Some(b) => b,
        None => NetpolPeer::Pods { namespaces, pods },
    })
}

/// ValidateNetworkPolicyPort: the protocol, the port (a number 1-65535 or
/// an IANA_SVC_NAME) and the endPort are each checked, every problem
/// reported.
fn policy_port(field: &str, p: &net::NetworkPolicyPort) -> Result<NetpolPort, Vec<FieldError>> {
    let mut errors = Vec::new();
    let protocol = protocol(&format!("{field}.protocol"), p.protocol.as_deref())
        .map_err(|e| errors.push(e))
        .ok();
    let port = match &p.port {
        None => None,
        Some(IntOrString::Int(n)) => port_number(&format!("{field}.port"), *n)
            .map(PortRef::Number)
            .map_err(|e| errors.push(e))
            .ok(),
        // IsValidPortName ("must contain at least one letter"), so
        // `port: "80"` is rejected, not read as a number.
        Some(IntOrString::String(s)) if valid_port_name(s) => Some(PortRef::Name(s.clone())),
        Some(IntOrString::String(s)) => {
            errors.push(FieldError::new(
                format!("{field}.port"),
                format!(
                    "{s:?} is not a valid port name (IANA_SVC_NAME: 1-15 lowercase alphanumerics or '-', at least one letter); write a port number without quotes"
                ),
            ));
            None
        }
    };
    let end_field = format!("{field}.endPort");
    let end_port = match (p.end_port, &p.port) {
        (None, _) => None,
        (Some(end), Some(IntOrString::Int(start))) => {
            if end < *start {
                errors.push(FieldError::new(
                    &end_field,
                    format!("endPort {end} is less than port {start} (must be greater than or equal to `port`)"),
                ));
            }
            port_number(&end_field, end)
                .map_err(|e| errors.push(e))
                .ok()
        }
        (Some(_), _) => {
            errors.push(FieldError::new(
                &end_field,
                "endPort requires a numeric port (it cannot be used with a named port or without port)",
            ));
            None
        }
    };
    match protocol {
        Some(protocol) if errors.is_empty() => Ok(NetpolPort {
            protocol,
            port,
            end_port,
        }),
        _ => Err(errors),
    }
}

fn rule(
    field: &str,
    peers: Option<&Vec<net::NetworkPolicyPeer>>,
    ports: Option<&Vec<net::NetworkPolicyPort>>,
    peer_key: &str,
    errors: &mut Vec<FieldError>,
) -> NetpolRule {
    // API reference: "If this field is empty or missing, this rule matches all
    // sources (traffic not restricted by source)" and likewise for `to` and
    // `ports`.
    let peers = peers.filter(|p| !p.is_empty()).map(|list| {
        list.iter()
            .enumerate()
            .filter_map(|(i, p)| {
                peer(&format!("{field}.{peer_key}[{i}]"), p)
                    .map_err(|e| errors.extend(e))
                    .ok()
            })
            .collect()
    });
    let ports = ports.filter(|p| !p.is_empty()).map(|list| {
        list.iter()
            .enumerate()
            .filter_map(|(i, p)| {
                policy_port(&format!("{field}.ports[{i}]"), p)
                    .map_err(|e| errors.extend(e))
                    .ok()
            })
            .collect()
    });
    NetpolRule { peers, ports }
}

pub(super) fn network_policy(
    head: &ObjectHead,
    value: serde_yaml::Value,
    origin: Origin,
) -> Result<NetworkPolicy, Vec<FieldError>> {
    expect_version(head, &["v1"])?;
    let mut errors = unknown_network_policy_fields(&value);
    if !errors.is_empty() {
        return Err(errors);
    }
    let np: net::NetworkPolicy = typed(value)?;
    // ValidateObjectMeta with ValidateNetworkPolicyName (NameIsDNSSubdomain).
    meta::object_meta(head, &np.metadata, NameRule::DnsSubdomain, &mut errors);
    let spec = np.spec.unwrap_or_default();
    let pod_selector = match &spec.pod_selector {
        Some(s) => meta::label_selector("spec.podSelector", s)
            .map_err(|e| errors.extend(e))
            .unwrap_or_default(),
        None => Selector::everything(),
    };
    let ingress: Vec<NetpolRule> = spec
        .ingress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| {
            rule(
                &format!("spec.ingress[{i}]"),
                r.from.as_ref(),
                r.ports.as_ref(),
                "from",
                &mut errors,
            )
        })
        .collect();
    let egress: Vec<NetpolRule> = spec
        .egress
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, r)| {
            rule(
                &format!("spec.egress[{i}]"),
                r.to.as_ref(),
                r.ports.as_ref(),
                "to",
                &mut errors,
            )
        })
        .collect();
    // API reference for policyTypes: "If this field is not specified, it will
    // default based on the existence of ingress or egress rules; policies that
    // contain an egress section are assumed to affect egress, and all policies
    // (whether or not they contain an ingress section) are assumed to affect
    // ingress."
    // The API server's SetDefaults_NetworkPolicy adds Egress only `if
    // len(obj.Spec.Egress) != 0`: `egress: []` does not imply it.
    let has_egress_rules = spec.egress.as_ref().is_some_and(|e| !e.is_empty());
    let (affects_ingress, affects_egress) = match &spec.policy_types {
        None => (true, has_egress_rules),
        Some(types) if types.len() > 2 => {
            errors.push(FieldError::new(
                "spec.policyTypes",
                format!(
                    "may not specify more than two policyTypes (got {})",
                    types.len()
                ),
            ));
            (true, true)
        }
        Some(types) => {
            let mut i = false;
            let mut e = false;
            for (n, t) in types.iter().enumerate() {
                match t.as_str() {
                    "Ingress" => i = true,
                    "Egress" => e = true,
                    other => errors.push(FieldError::new(
                        format!("spec.policyTypes[{n}]"),
                        format!("unknown policy type {other:?} (expected Ingress or Egress)"),
                    )),
                }
            }
            if types.is_empty() {
                (true, has_egress_rules)
            } else {
                (i, e)
            }
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(NetworkPolicy {
        namespace: head.namespace.clone(),
        name: head.name.clone(),
        pod_selector,
        affects_ingress,
        affects_egress,
        ingress,
        egress,
        origin,
    })
}
