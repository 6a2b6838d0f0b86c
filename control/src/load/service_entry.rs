//! Istio `ServiceEntry` (`networking.istio.io` `v1`, `v1beta1`,
//! `v1alpha3`), the subset the sidecar can act on: `resolution: STATIC`
//! endpoints at IP addresses, optional virtual IPs, and for
//! `MESH_INTERNAL` the identity each endpoint's sidecar presents. Anything
//! that would need DNS, a workload selector or traffic shaping is refused
//! with the field named, rather than half applied.
use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use palisade_identity::SpiffeId;
use serde::Deserialize;

use super::{FieldError, ObjectHead, typed};
use crate::cluster::{
    EndpointIdentity, Origin, ServiceEntry, ServiceEntryEndpoint, ServiceEntryPort,
};

#[derive(Debug, Deserialize)]
struct Object {
    metadata: ObjectMeta,
    #[serde(default)]
    spec: Option<Spec>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Spec {
    #[serde(default)]
    hosts: Vec<String>,
    #[serde(default)]
    addresses: Vec<String>,
    #[serde(default)]
    ports: Vec<PortSpec>,
    #[serde(default)]
    location: Option<String>,
    #[serde(default)]
    resolution: Option<String>,
    #[serde(default)]
    endpoints: Vec<EndpointSpec>,
    #[serde(default)]
    workload_selector: Option<serde_yaml::Value>,
    #[serde(default)]
    export_to: Option<Vec<String>>,
    #[serde(default)]
    subject_alt_names: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct PortSpec {
    number: u32,
    #[serde(default)]
    protocol: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    target_port: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct EndpointSpec {
    #[serde(default)]
    address: Option<String>,
    #[serde(default)]
    ports: BTreeMap<String, u32>,
    /// Accepted and unused: labels only matter to selectors, which
    /// entries with listed endpoints do not have.
    #[serde(default, rename = "labels")]
    _labels: Option<serde::de::IgnoredAny>,
    #[serde(default)]
    service_account: Option<String>,
    #[serde(default)]
    network: Option<String>,
    #[serde(default)]
    locality: Option<String>,
    #[serde(default)]
    weight: Option<u32>,
}

const PROTOCOLS: &[&str] = &["HTTP", "HTTPS", "GRPC", "HTTP2", "MONGO", "TCP", "TLS"];

fn port_number(field: &str, n: u32, errors: &mut Vec<FieldError>) -> u16 {
    match u16::try_from(n) {
        Ok(p) if p > 0 => p,
        _ => {
            errors.push(FieldError::new(
                field,
                format!("{n} is not a port (1-65535)"),
            ));
            0
        }
    }
}

pub(super) fn service_entry(
    head: &ObjectHead,
    value: serde_yaml::Value,
    origin: Origin,
) -> Result<ServiceEntry, Vec<FieldError>> {
    if !matches!(head.version(), "v1" | "v1beta1" | "v1alpha3") {
        return Err(vec![FieldError::new(
            "apiVersion",
            format!(
                "unsupported apiVersion {:?} (expected networking.istio.io/v1, v1beta1 or v1alpha3)",
                head.api_version
            ),
        )]);
    }
    let obj: Object = typed(value)?;
    let _ = obj.metadata;
    let spec = obj.spec.unwrap_or_default();
    let mut errors = Vec::new();
    if spec.hosts.is_empty() {
        errors.push(FieldError::new(
            "spec.hosts",
            "at least one host is required",
        ));
    }
    let mesh_internal = match spec.location.as_deref() {
        None | Some("MESH_EXTERNAL") => false,
        Some("MESH_INTERNAL") => true,
        Some(other) => {
            errors.push(FieldError::new(
                "spec.location",
                format!("{other:?}: expected MESH_EXTERNAL or MESH_INTERNAL"),
            ));
            false
        }
    };
    match spec.resolution.as_deref() {
        Some("STATIC") => {}
        // An entry that only names external hosts changes nothing here.
        None | Some("NONE") if spec.endpoints.is_empty() && !mesh_internal => {}
        None | Some("NONE") => errors.push(FieldError::new(
            "spec.resolution",
            "NONE (the default) is not supported with endpoints or MESH_INTERNAL: use STATIC",
        )),
        Some(r @ ("DNS" | "DNS_ROUND_ROBIN" | "DYNAMIC_DNS")) => errors.push(FieldError::new(
            "spec.resolution",
            format!(
                "{r} is not supported: the sidecar resolves no DNS and needs the endpoints' IP addresses (use STATIC)"
            ),
        )),
        Some(other) => errors.push(FieldError::new(
            "spec.resolution",
            format!("{other:?}: expected STATIC (or NONE without endpoints)"),
        )),
    }
    if spec.workload_selector.is_some() {
        errors.push(FieldError::new(
            "spec.workloadSelector",
            "not supported: list the endpoints",
        ));
    }
    let mut addresses = Vec::new();
    for (i, a) in spec.addresses.iter().enumerate() {
        let single = a
            .strip_suffix("/32")
            .or_else(|| a.strip_suffix("/128"))
            .unwrap_or(a);
        match single.parse::<IpAddr>() {
            Ok(ip) => addresses.push(ip.to_canonical()),
            Err(_) => errors.push(FieldError::new(
                format!("spec.addresses[{i}]"),
                format!("{a:?} is not an IP address (address ranges are not supported)"),
            )),
        }
    }
    let mut ports = Vec::new();
    if spec.ports.is_empty() && !spec.endpoints.is_empty() {
        errors.push(FieldError::new(
            "spec.ports",
            "at least one port is required",
        ));
    }
    for (i, p) in spec.ports.iter().enumerate() {
        let field = format!("spec.ports[{i}]");
        let number = port_number(&format!("{field}.number"), p.number, &mut errors);
        let target_port = p
            .target_port
            .map(|t| port_number(&format!("{field}.targetPort"), t, &mut errors));
        let name = match &p.name {
            Some(n) if !n.is_empty() => n.clone(),
            _ => {
                errors.push(FieldError::new(format!("{field}.name"), "required"));
                String::new()
            }
        };
        let protocol = p.protocol.as_deref().unwrap_or("TCP").to_ascii_uppercase();
        if !PROTOCOLS.contains(&protocol.as_str()) {
            errors.push(FieldError::new(
                format!("{field}.protocol"),
                format!("{protocol:?}: expected one of {}", PROTOCOLS.join(", ")),
            ));
        }
        ports.push(ServiceEntryPort {
            number,
            name,
            protocol,
            target_port,
        });
    }
    // subjectAltNames: what the server must present. The sidecar checks one
    // SPIFFE ID per endpoint.
    let san_identity = match spec.subject_alt_names.as_slice() {
        [] => None,
        [one] => match SpiffeId::parse(one) {
            Ok(id) => Some(id.to_string()),
            Err(e) => {
                errors.push(FieldError::new(
                    "spec.subjectAltNames[0]",
                    format!("{one:?} is not a SPIFFE ID: {e}"),
                ));
                None
            }
        },
        _ => {
            errors.push(FieldError::new(
                "spec.subjectAltNames",
                "one SPIFFE ID at most: the sidecar expects exactly one identity of each endpoint",
            ));
            None
        }
    };
    let mut endpoints = Vec::new();
    for (i, e) in spec.endpoints.iter().enumerate() {
        let field = format!("spec.endpoints[{i}]");
        for (set, name) in [
            (e.network.is_some(), "network"),
            (e.locality.is_some(), "locality"),
            (e.weight.is_some(), "weight"),
        ] {
            if set {
                errors.push(FieldError::new(
                    format!("{field}.{name}"),
                    "not supported (endpoints are balanced evenly)",
                ));
            }
        }
        let address = match e.address.as_deref().map(str::parse::<IpAddr>) {
            Some(Ok(ip)) => ip.to_canonical(),
            Some(Err(_)) => {
                errors.push(FieldError::new(
                    format!("{field}.address"),
                    format!(
                        "{:?} is not an IP address (STATIC endpoints are IPs; DNS names and Unix sockets are not supported)",
                        e.address.as_deref().unwrap_or("")
                    ),
                ));
                continue;
            }
            None => {
                errors.push(FieldError::new(format!("{field}.address"), "required"));
                continue;
            }
        };
        let mut endpoint_ports = BTreeMap::new();
        for (name, n) in &e.ports {
            if !ports.iter().any(|p| &p.name == name) {
                errors.push(FieldError::new(
                    format!("{field}.ports.{name}"),
                    "names no port of spec.ports",
                ));
            }
            endpoint_ports.insert(
                name.clone(),
                port_number(&format!("{field}.ports.{name}"), *n, &mut errors),
            );
        }
        let identity = match &e.service_account {
            Some(sa) if !sa.is_empty() => Some(EndpointIdentity::ServiceAccount(sa.clone())),
            _ => san_identity.clone().map(EndpointIdentity::SpiffeId),
        };
        if mesh_internal && identity.is_none() {
            errors.push(FieldError::new(
                format!("{field}.serviceAccount"),
                "a MESH_INTERNAL endpoint needs the identity its sidecar presents: a serviceAccount, or the entry's subjectAltNames",
            ));
        }
        endpoints.push(ServiceEntryEndpoint {
            address,
            ports: endpoint_ports,
            identity: if mesh_internal { identity } else { None },
        });
    }
    let export_to = spec.export_to.map(|list| {
        list.into_iter()
            .map(|n| if n == "." { head.namespace.clone() } else { n })
            .collect::<Vec<_>>()
    });
    if let Some(list) = &export_to
        && let Some(bad) = list
            .iter()
            .find(|n| *n != "*" && !super::names::valid_dns_label(n))
    {
        errors.push(FieldError::new(
            "spec.exportTo",
            format!("{bad:?} is not a namespace name, \".\" or \"*\""),
        ));
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(ServiceEntry {
        namespace: head.namespace.clone(),
        name: head.name.clone(),
        hosts: spec.hosts,
        addresses,
        ports,
        mesh_internal,
        endpoints,
        export_to,
        origin,
    })
}
