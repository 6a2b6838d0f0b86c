//! Rewrites the app containers' HTTP and TCP probes to go through the
//! sidecar's admin port. Under STRICT mTLS the kubelet's plaintext probe
//! would be refused by the inbound listener; instead it asks the proxy at
//! `/app-health/<container>/<livez|readyz|startupz>`, and the proxy, which
//! reads the originals from `PALISADE_APP_PROBES`, probes the app itself.
use std::collections::BTreeMap;

use serde_json::json;
use serde_yaml::{Mapping, Value};

/// Original probes by the admin path that now stands for them.
pub type AppProbes = BTreeMap<String, serde_json::Value>;

const PROBES: [(&str, &str); 3] = [
    ("livenessProbe", "livez"),
    ("readinessProbe", "readyz"),
    ("startupProbe", "startupz"),
];

/// Rewrites the probes of every regular container in `spec`.
pub fn rewrite(spec: &mut Mapping, admin_port: u16) -> Result<AppProbes, String> {
    let mut out = AppProbes::new();
    let Some(containers) = spec.get_mut("containers").and_then(Value::as_sequence_mut) else {
        return Err("the pod spec has no containers".into());
    };
    for container in containers {
        let name = container
            .get("name")
            .and_then(Value::as_str)
            .ok_or("a container has no name")?
            .to_string();
        let ports = named_ports(container);
        let Some(container) = container.as_mapping_mut() else {
            return Err(format!("container {name} is not an object"));
        };
        for (field, suffix) in PROBES {
            let Some(probe) = container.get_mut(field).and_then(Value::as_mapping_mut) else {
                continue;
            };
            let path = format!("/app-health/{name}/{suffix}");
            let original = if let Some(http) = probe.get("httpGet") {
                if http.get("host").is_some() {
                    // A probe aimed at another host does not reach this pod's
                    // inbound listener; leave it as written.
                    continue;
                }
                let port = resolve_port(http.get("port"), &ports)
                    .map_err(|e| format!("container {name} {field}.httpGet.port: {e}"))?;
                json!({ "httpGet": {
                    "path": http.get("path").and_then(Value::as_str).unwrap_or("/"),
                    "port": port,
                    "scheme": http.get("scheme").and_then(Value::as_str).unwrap_or("HTTP"),
                    "httpHeaders": yaml_to_json(http.get("httpHeaders")),
                }})
            } else if let Some(tcp) = probe.get("tcpSocket") {
                if tcp.get("host").is_some() {
                    continue;
                }
                let port = resolve_port(tcp.get("port"), &ports)
                    .map_err(|e| format!("container {name} {field}.tcpSocket.port: {e}"))?;
                json!({ "tcpSocket": { "port": port } })
            } else {
                // exec and grpc probes do not cross the network capture.
                continue;
            };
            probe.remove("httpGet");
            probe.remove("tcpSocket");
            let mut http = Mapping::new();
            http.insert("path".into(), Value::from(path.clone()));
            http.insert("port".into(), Value::from(admin_port));
            http.insert("scheme".into(), Value::from("HTTP"));
            probe.insert("httpGet".into(), Value::Mapping(http));
            out.insert(path, original);
        }
    }
    Ok(out)
}

fn named_ports(container: &Value) -> BTreeMap<String, u16> {
    container
        .get("ports")
        .and_then(Value::as_sequence)
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let name = p.get("name")?.as_str()?.to_string();
            let port = u16::try_from(p.get("containerPort")?.as_u64()?).ok()?;
            Some((name, port))
        })
        .collect()
}

fn resolve_port(port: Option<&Value>, named: &BTreeMap<String, u16>) -> Result<u16, String> {
    match port {
        Some(Value::Number(n)) => n
            .as_u64()
            .and_then(|n| u16::try_from(n).ok())
            .filter(|n| *n > 0)
            .ok_or_else(|| format!("{n} is not a port number (1-65535)")),
        Some(Value::String(s)) => {
            if let Ok(n) = s.parse::<u16>() {
                return Ok(n);
            }
            named
                .get(s)
                .copied()
                .ok_or_else(|| format!("no container port is named {s:?}"))
        }
        _ => Err("missing or not a number or a port name".into()),
    }
}

fn yaml_to_json(value: Option<&Value>) -> serde_json::Value {
    value
        .and_then(|v| serde_json::to_value(v).ok())
        .unwrap_or_else(|| json!([]))
}
