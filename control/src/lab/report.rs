//! The probe matrix: observed next to predicted, as text (the upstream
//! netpol suite's truth-table look: `.` allowed, `X` denied, `!` where the
//! observation disagrees with `palisade check`), JSON, and HTML.
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

use palisade_api::Protocol;
use serde::Serialize;

use super::probe::Verdict;

/// One probe with its observation and its prediction.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Row {
    pub from: String,
    pub to: String,
    pub port: u16,
    #[serde(serialize_with = "protocol_name")]
    pub protocol: Protocol,
    pub observed: Verdict,
    pub predicted: Verdict,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub method: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Whether `check` says the connection is mutual TLS.
    pub mtls: bool,
    /// What decided, per `check`.
    pub decided_by: String,
    /// What the probe saw.
    pub detail: String,
}

fn protocol_name<S: serde::Serializer>(p: &Protocol, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(match p {
        Protocol::Tcp => "TCP",
        Protocol::Udp => "UDP",
        Protocol::Sctp => "SCTP",
    })
}

impl Row {
    pub fn agrees(&self) -> bool {
        self.observed == self.predicted
    }
}

type GroupKey = (String, u16, Option<String>);

fn group_label(key: &GroupKey) -> String {
    let (proto, port, http) = key;
    match http {
        Some(h) => format!("{proto} {port} {h}"),
        None => format!("{proto} {port}"),
    }
}

fn groups(rows: &[Row]) -> BTreeMap<GroupKey, Vec<&Row>> {
    let mut out: BTreeMap<GroupKey, Vec<&Row>> = BTreeMap::new();
    for row in rows {
        let proto = format!("{:?}", row.protocol).to_ascii_uppercase();
        let http = row
            .method
            .as_ref()
            .map(|m| format!("{m} {}", row.path.as_deref().unwrap_or("/")));
        out.entry((proto, row.port, http)).or_default().push(row);
    }
    out
}

fn axes(rows: &[&Row]) -> (Vec<String>, Vec<String>) {
    let from: BTreeSet<&str> = rows.iter().map(|r| r.from.as_str()).collect();
    let to: BTreeSet<&str> = rows.iter().map(|r| r.to.as_str()).collect();
    (
        from.into_iter().map(str::to_string).collect(),
        to.into_iter().map(str::to_string).collect(),
    )
}

fn symbol(v: Verdict) -> char {
    match v {
        Verdict::Allow => '.',
        Verdict::Deny => 'X',
    }
}

/// The truth tables, one per (protocol, port, request), then the
/// disagreements.
pub fn text(rows: &[Row]) -> String {
    let mut out = String::new();
    for (key, group) in groups(rows) {
        let (sources, destinations) = axes(&group);
        let cell: BTreeMap<(&str, &str), &Row> = group
            .iter()
            .map(|r| ((r.from.as_str(), r.to.as_str()), *r))
            .collect();
        let width = sources.iter().map(String::len).max().unwrap_or(4).max(4);
        let _ = writeln!(
            out,
            "{}  (. allowed, X denied, ! disagrees with check)",
            group_label(&key)
        );
        let _ = write!(out, "{:width$}", "from\\to");
        for (i, _) in destinations.iter().enumerate() {
            let _ = write!(out, " {:>3}", i + 1);
        }
        out.push('\n');
        for source in &sources {
            let _ = write!(out, "{source:width$}");
            for dest in &destinations {
                let text = match cell.get(&(source.as_str(), dest.as_str())) {
                    Some(r) if r.agrees() => format!("{}", symbol(r.observed)),
                    Some(r) => format!("{}!", symbol(r.observed)),
                    None => "-".to_string(),
                };
                let _ = write!(out, " {text:>3}");
            }
            out.push('\n');
        }
        for (i, dest) in destinations.iter().enumerate() {
            let _ = writeln!(out, "  {:>3} = {dest}", i + 1);
        }
        out.push('\n');
    }
    let disagreements: Vec<&Row> = rows.iter().filter(|r| !r.agrees()).collect();
    if disagreements.is_empty() {
        let _ = writeln!(
            out,
            "{} probes: observed equals predicted everywhere",
            rows.len()
        );
    } else {
        let _ = writeln!(
            out,
            "{} of {} probes disagree with check:",
            disagreements.len(),
            rows.len()
        );
        for r in disagreements {
            let _ = writeln!(
                out,
                "  {} -> {} {:?}/{}: observed {:?} ({}), predicted {:?} ({})",
                r.from, r.to, r.protocol, r.port, r.observed, r.detail, r.predicted, r.decided_by
            );
        }
    }
    out
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// A page a person reads at a glance: green allowed, red denied, a lock
/// where the connection is mTLS, a thick border where observation and
/// prediction disagree, and what decided on hover.
pub fn html(rows: &[Row]) -> String {
    let mut out = String::from(
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>Palisade lab matrix</title><style>\
         body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin-bottom:2em}\
         th,td{border:1px solid #999;padding:4px 8px;text-align:center;font-size:13px}\
         th.src{text-align:right}td.allow{background:#b7e4b7}td.deny{background:#f4b4b4}\
         td.bad{outline:3px solid #000}caption{font-weight:bold;text-align:left;padding:4px 0}\
         .m{font-size:10px;font-weight:bold;border:1px solid #555;border-radius:3px;padding:0 2px}\
         </style></head><body><h1>Palisade lab: observed connectivity</h1>\
         <p>Green: allowed. Red: denied. <span class=\"m\">mTLS</span>: the connection is mutual TLS. Black frame: the observation \
         disagrees with <code>palisade check</code>. Hover a cell for the deciding policy.</p>",
    );
    for (key, group) in groups(rows) {
        let (sources, destinations) = axes(&group);
        let cell: BTreeMap<(&str, &str), &Row> = group
            .iter()
            .map(|r| ((r.from.as_str(), r.to.as_str()), *r))
            .collect();
        let _ = write!(
            out,
            "<table><caption>{}</caption><tr><th>from \\ to</th>",
            escape(&group_label(&key))
        );
        for dest in &destinations {
            let _ = write!(out, "<th>{}</th>", escape(dest));
        }
        out.push_str("</tr>");
        for source in &sources {
            let _ = write!(out, "<tr><th class=\"src\">{}</th>", escape(source));
            for dest in &destinations {
                match cell.get(&(source.as_str(), dest.as_str())) {
                    Some(r) => {
                        let class = match (r.observed, r.agrees()) {
                            (Verdict::Allow, true) => "allow",
                            (Verdict::Deny, true) => "deny",
                            (Verdict::Allow, false) => "allow bad",
                            (Verdict::Deny, false) => "deny bad",
                        };
                        let title = format!(
                            "{} -> {}: observed {:?} ({}); predicted {:?}: {}",
                            r.from, r.to, r.observed, r.detail, r.predicted, r.decided_by
                        );
                        let label = match (r.observed, r.status) {
                            (_, Some(code)) => code.to_string(),
                            (Verdict::Allow, None) => "allow".into(),
                            (Verdict::Deny, None) => "deny".into(),
                        };
                        let lock = if r.mtls {
                            "<span class=\"m\">mTLS</span> "
                        } else {
                            ""
                        };
                        let _ = write!(
                            out,
                            "<td class=\"{class}\" title=\"{}\">{lock}{}</td>",
                            escape(&title),
                            escape(&label)
                        );
                    }
                    None => out.push_str("<td></td>"),
                }
            }
            out.push_str("</tr>");
        }
        out.push_str("</table>");
    }
    out.push_str("</body></html>\n");
    out
}
