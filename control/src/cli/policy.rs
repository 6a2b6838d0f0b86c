//! `palisade compile`, `palisade check` and `palisade lint`: the policy subcommands.
//!
//! Exit codes: `compile` 0, or 2 for bad input; `check` 0 for any verdict
//! (the first stdout line is `allow` or `deny`), 2 for bad input; `lint` 0
//! when no finding is an error (warnings and infos alone exit 0), 1 when one
//! is, 2 when the configuration does not load.
use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, ValueEnum};

use crate::check::{self, CheckRequest, HttpSpec, request};
use crate::cluster::Cluster;
use crate::compile::Compiler;
use crate::lint::{self, Severity};
use crate::load;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ConfigFormat {
    Yaml,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct CompileArgs {
    /// Directory of Kubernetes YAML manifests (read recursively).
    #[arg(long, value_name = "DIR")]
    pub config: PathBuf,
    /// The workload, as NS/POD.
    #[arg(long, value_name = "NS/POD")]
    pub workload: String,
    #[arg(long, value_enum, default_value = "yaml")]
    pub output: ConfigFormat,
}

#[derive(Debug, Args)]
pub struct CheckArgs {
    /// Directory of Kubernetes YAML manifests (read recursively).
    #[arg(long, value_name = "DIR")]
    pub config: PathBuf,
    /// The caller: NS/POD, an IP address, or spiffe://... (with --source-ip).
    #[arg(long, value_name = "SRC")]
    pub from: String,
    /// The destination: NS/POD, an IP address (a pod, a Service cluster IP,
    /// a ServiceEntry address or an address outside the cluster),
    /// svc:NS/NAME, or se:NS/NAME (an Istio ServiceEntry).
    #[arg(long, value_name = "DST")]
    pub to: String,
    /// Destination port: a number or a port name.
    #[arg(long, value_name = "PORT")]
    pub port: String,
    #[arg(long, value_name = "TCP|UDP|SCTP", default_value = "TCP")]
    pub protocol: String,
    /// HTTP method; with --path, the request is checked against authorization.
    #[arg(long, requires = "path")]
    pub method: Option<String>,
    /// HTTP request path (normalized as the sidecar does).
    #[arg(long, requires = "method")]
    pub path: Option<String>,
    /// HTTP Host (default: the destination address).
    #[arg(long, requires = "method")]
    pub host: Option<String>,
    /// HTTP header NAME:VALUE (repeatable).
    #[arg(long, value_name = "NAME:VALUE", requires = "method")]
    pub header: Vec<String>,
    /// The caller's IP, for a --from spiffe://... caller.
    #[arg(long, value_name = "IP")]
    pub source_ip: Option<IpAddr>,
    /// The caller presents no identity (no mTLS).
    #[arg(long)]
    pub plaintext: bool,
    /// The server name (SNI) of the caller's TLS ClientHello, for
    /// `connection.sni` conditions; by default none is sent, as Palisade's
    /// sidecars connect to a peer by its IP address.
    #[arg(long, value_name = "NAME")]
    pub sni: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: ReportFormat,
}

#[derive(Debug, Args)]
#[command(
    after_help = "Findings have a severity: error (cannot work as written), warning (a likely \
mistake) or info (worth knowing, such as PERMISSIVE mTLS in force). Exit status: 0 when no \
finding is an error (warnings and infos alone exit 0), 1 when one is, 2 when the configuration \
does not load.\n\nChecks: egress-without-dns, selects-nothing, namespace-selector-matches-nothing, \
unknown-named-port, unknown-principal, deny-http-only-rule, permissive-mtls, ipblock-contains-pods, \
conflicting-peer-authentication, pod-without-ip, pod-finished, selects-only-host-network."
)]
pub struct LintArgs {
    /// Directory of Kubernetes YAML manifests (read recursively).
    #[arg(long, value_name = "DIR")]
    pub config: PathBuf,
    #[arg(long, value_enum, default_value = "text")]
    pub output: ReportFormat,
}

/// `palisade diff`: who can reach whom, before and after a change.
#[derive(Debug, Args)]
#[command(
    after_help = "Every (source pod, destination pod, declared container port) is judged with `palisade check` in both configurations (TCP without an HTTP request: authorization by Istio's TCP semantics). Prints the connections whose verdict changed, with the layer and policy that decide each now and before. Exit code 0 when nothing changed, 1 when something did, 2 for bad input."
)]
pub struct DiffArgs {
    /// The manifests before the change.
    #[arg(long, value_name = "DIR")]
    pub before: PathBuf,
    /// The manifests after the change.
    #[arg(long, value_name = "DIR")]
    pub after: PathBuf,
    /// Only connections with either end in this namespace (repeatable).
    #[arg(long = "namespace", value_name = "NS")]
    pub namespaces: Vec<String>,
    /// Also judge callers from this address outside the cluster (repeatable).
    #[arg(long = "external", value_name = "IP")]
    pub externals: Vec<std::net::IpAddr>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: ReportFormat,
}

pub fn run_diff(a: DiffArgs) -> u8 {
    let (Some(before), Some(after)) = (load_or_report(&a.before), load_or_report(&a.after)) else {
        return 2;
    };
    let scope = crate::reach::Scope {
        namespaces: a.namespaces,
        externals: a.externals,
    };
    let d = crate::reach::diff(
        &crate::reach::reachability(&before, &scope),
        &crate::reach::reachability(&after, &scope),
    );
    match a.output {
        ReportFormat::Text => print!("{}", crate::reach::text(&d)),
        ReportFormat::Json => println!(
            "{}",
            serde_json::to_string_pretty(&d).unwrap_or_else(|_| "{}".into())
        ),
    }
    u8::from(!d.changes.is_empty())
}

fn load_or_report(dir: &std::path::Path) -> Option<Cluster> {
    match load::load_dir(dir) {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("palisade: {e}");
            None
        }
    }
}

pub fn run_compile(a: CompileArgs) -> u8 {
    let Some(cluster) = load_or_report(&a.config) else {
        return 2;
    };
    let compiler = Compiler::new(&cluster);
    let config = match compiler.compile_named(&a.workload) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("palisade compile: --workload: {e}");
            return 2;
        }
    };
    let text = match a.output {
        ConfigFormat::Yaml => config.to_yaml(),
        ConfigFormat::Json => config.to_json(),
    };
    match text {
        Ok(t) => {
            print!("{t}");
            if !t.ends_with('\n') {
                println!();
            }
            0
        }
        Err(e) => {
            eprintln!("palisade compile: cannot serialize the config: {e}");
            2
        }
    }
}

fn build_request(
    cluster: &Cluster,
    a: &CheckArgs,
) -> Result<CheckRequest, request::CheckInputError> {
    let protocol = request::parse_protocol(&a.protocol)?;
    let port = request::parse_port(&a.port)?;
    let source = request::parse_source(cluster, &a.from, a.source_ip)?;
    let destination = request::parse_destination(cluster, &a.to)?;
    let http = match (&a.method, &a.path) {
        (Some(method), Some(path)) => {
            if method.is_empty() || !method.bytes().all(|b| b.is_ascii_alphabetic()) {
                return Err(request::CheckInputError(format!(
                    "--method {method:?}: expected an HTTP method such as GET"
                )));
            }
            let headers = a
                .header
                .iter()
                .map(|h| request::parse_header(h))
                .collect::<Result<_, _>>()?;
            Some(HttpSpec {
                method: method.to_ascii_uppercase(),
                path: path.clone(),
                host: a.host.clone(),
                headers,
            })
        }
        _ => None,
    };
    if http.is_some() && protocol != palisade_api::Protocol::Tcp {
        return Err(request::CheckInputError(
            "--method/--path need --protocol TCP".into(),
        ));
    }
    Ok(CheckRequest {
        source,
        destination,
        port,
        protocol,
        http,
        plaintext: a.plaintext,
        sni: a.sni.clone(),
    })
}

pub fn run_check(a: CheckArgs) -> u8 {
    let Some(cluster) = load_or_report(&a.config) else {
        return 2;
    };
    let req = match build_request(&cluster, &a) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("palisade check: {e}");
            return 2;
        }
    };
    let compiler = Compiler::new(&cluster);
    match check::check(&compiler, &req) {
        Ok(report) => {
            match a.output {
                ReportFormat::Text => print!("{}", check::report::text(&report)),
                ReportFormat::Json => println!("{}", check::report::json(&report)),
            }
            0
        }
        Err(e) => {
            eprintln!("palisade check: {e}");
            2
        }
    }
}

pub fn run_lint(a: LintArgs) -> u8 {
    let Some(cluster) = load_or_report(&a.config) else {
        return 2;
    };
    let findings = lint::lint(&cluster);
    match a.output {
        ReportFormat::Text => {
            for f in &findings {
                println!("{f}");
            }
            let count = |s| findings.iter().filter(|f| f.severity == s).count();
            println!(
                "{} error(s), {} warning(s), {} info(s)",
                count(Severity::Error),
                count(Severity::Warning),
                count(Severity::Info)
            );
        }
        ReportFormat::Json => {
            println!(
                "{}",
                serde_json::to_string_pretty(&findings).unwrap_or_else(|_| "[]".into())
            );
        }
    }
    if findings.iter().any(|f| f.severity == Severity::Error) {
        1
    } else {
        0
    }
}
