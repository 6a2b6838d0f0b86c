//! Rendering a `CheckReport`: the text form (first line `allow` or `deny`,
//! then one line per layer) and the JSON form documented in
//! `docs/check-json.md`.
use std::fmt::Write;

use super::{CheckReport, LayerVerdict, protocol_name};

fn word(v: LayerVerdict) -> &'static str {
    match v {
        LayerVerdict::Allow => "allow",
        LayerVerdict::Deny => "deny",
        LayerVerdict::Skip => "skip",
    }
}

pub fn text(r: &CheckReport) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{}", word(r.verdict));
    let _ = writeln!(
        out,
        "from {} ({}, {}) to {} over {}",
        r.from,
        r.source_ip,
        r.identity.as_deref().unwrap_or("plaintext, no identity"),
        r.to,
        protocol_name(r.protocol)
    );
    for e in &r.endpoints {
        let _ = writeln!(
            out,
            "endpoint {} {}:{}: {}",
            e.workload.as_deref().unwrap_or("(outside the cluster)"),
            e.ip,
            e.port,
            word(e.verdict)
        );
        for (v, d) in [
            (e.egress.verdict, &e.egress.detail),
            (e.mtls.verdict, &e.mtls.detail),
            (e.ingress.verdict, &e.ingress.detail),
            (e.authorization.verdict, &e.authorization.detail),
        ] {
            let _ = writeln!(out, "  [{}] {d}", word(v));
        }
    }
    if !r.detail.is_empty() {
        let _ = writeln!(out, "{}", r.detail);
    }
    out
}

pub fn json(r: &CheckReport) -> String {
    serde_json::to_string_pretty(r)
        .unwrap_or_else(|e| format!("{{\"error\": {:?}}}", e.to_string()))
}
