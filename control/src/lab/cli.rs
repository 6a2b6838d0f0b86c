//! The `palisade lab` subcommands.
use std::io::Read;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};

use super::matrix::{ProbeOptions, probe, write_html};
use super::probe::{ProbePlan, run_plan};
use super::run::{UpOptions, load_state, up};
use super::{EchoArgs, LabError, STATE_DIR, host};
use crate::check::request::parse_protocol;

#[derive(Debug, Subcommand)]
pub enum LabCommand {
    /// Bring every Pod of the manifests up as a network namespace with its sidecar.
    Up(UpArgs),
    /// Probe every source to every destination and port; compare with `palisade check`.
    Probe(ProbeArgs),
    /// Remove every namespace, bridge, rule and process the lab made.
    Down(StateArgs),
    /// Capture one request between two pods on the bridge: TLS or cleartext?
    Capture(CaptureArgs),
    /// The lab's app: answers on every given port with its name.
    Echo(EchoArgs),
    /// (internal) run a probe plan from standard input in the current namespace.
    #[command(hide = true)]
    ProbeFrom,
}

#[derive(Debug, Args)]
pub struct StateArgs {
    /// Where the lab keeps its state.
    #[arg(long, default_value = STATE_DIR)]
    pub state_dir: PathBuf,
}

#[derive(Debug, Args)]
pub struct UpArgs {
    /// Directory of Kubernetes YAML.
    #[arg(long)]
    pub config: PathBuf,
    /// An extra outside address (repeatable), e.g. 203.0.113.10.
    #[arg(long = "external")]
    pub externals: Vec<Ipv4Addr>,
    /// Give each sidecar its config and SVID as files instead of running the
    /// control plane and bootstrapping sidecars with join tokens.
    #[arg(long = "static")]
    pub static_mode: bool,
    /// How soon each sidecar renews its SVID after `palisade ca rotate
    /// activate` on the lab's CA (`STATE/ca`), e.g. `5s` (default 30s).
    #[arg(long, value_name = "DURATION", value_parser = humantime::parse_duration, conflicts_with = "static_mode")]
    pub svid_reissue_spread: Option<std::time::Duration>,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Args)]
pub struct CaptureArgs {
    /// Source pod, `NS/POD`.
    #[arg(long)]
    pub from: String,
    /// Destination pod, `NS/POD`.
    #[arg(long)]
    pub to: String,
    #[arg(long)]
    pub port: u16,
    /// The HTTP request to send: `--http METHOD PATH` (default `GET /`).
    #[arg(long, num_args = 2, value_names = ["METHOD", "PATH"])]
    pub http: Option<Vec<String>>,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    #[command(flatten)]
    pub state: StateArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum Output {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ProbeArgs {
    /// Probe only this port.
    #[arg(long)]
    pub port: Option<u16>,
    /// Probe only this protocol (TCP or UDP).
    #[arg(long)]
    pub protocol: Option<String>,
    /// Send an HTTP request: `--http METHOD PATH`.
    #[arg(long, num_args = 2, value_names = ["METHOD", "PATH"])]
    pub http: Option<Vec<String>>,
    /// Probe every Service's cluster IP and port instead of pods (TCP and
    /// UDP ports; UDP translated as kube-proxy would where no sidecar does).
    #[arg(long)]
    pub services: bool,
    #[arg(long, value_enum, default_value = "text")]
    pub output: Output,
    /// Also write the matrix as an HTML page.
    #[arg(long)]
    pub html: Option<PathBuf>,
    #[command(flatten)]
    pub state: StateArgs,
}

pub fn run_lab(command: LabCommand) -> u8 {
    let result = match command {
        LabCommand::Up(args) => lab_up(args),
        LabCommand::Probe(args) => lab_probe(args),
        LabCommand::Down(args) => host::tear_down(&args.state_dir).map(|n| {
            eprintln!("palisade lab: down ({n} namespaces removed)");
            0
        }),
        LabCommand::Capture(args) => lab_capture(args),
        LabCommand::Echo(args) => runtime().and_then(|rt| {
            rt.block_on(super::echo::run(args)).map_err(LabError::Io)?;
            Ok(0)
        }),
        LabCommand::ProbeFrom => probe_from(),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("palisade lab: {e}");
            match e {
                LabError::Precondition(_) => 2,
                _ => 1,
            }
        }
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, LabError> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

fn lab_up(args: UpArgs) -> Result<u8, LabError> {
    if !args.config.is_dir() {
        return Err(LabError::Precondition(format!(
            "--config {}: not a directory",
            args.config.display()
        )));
    }
    let state = up(&UpOptions {
        config: args.config,
        state: args.state.state_dir.clone(),
        externals: args.externals,
        static_mode: args.static_mode,
        svid_reissue_spread: args
            .svid_reissue_spread
            .map(|d| humantime::format_duration(d).to_string()),
    })?;
    println!(
        "palisade lab: up: {} pods ({} with a sidecar), {} services, {} outside addresses",
        state.plan.pods.len(),
        state.started.len(),
        state.plan.services.len(),
        state.plan.externals.len()
    );
    for pod in &state.plan.pods {
        println!("  {:<32} {:<15} netns {}", pod.key, pod.ip, pod.netns);
    }
    println!("state: {}", args.state.state_dir.display());
    Ok(0)
}

fn lab_probe(args: ProbeArgs) -> Result<u8, LabError> {
    let state = load_state(&args.state.state_dir)?;
    let protocol = args
        .protocol
        .as_deref()
        .map(parse_protocol)
        .transpose()
        .map_err(|e| LabError::Precondition(e.to_string()))?;
    let http = args.http.map(|v| (v[0].clone(), v[1].clone()));
    let rows = probe(
        &state,
        &ProbeOptions {
            port: args.port,
            protocol,
            http,
            services: args.services,
        },
    )?;
    if let Some(path) = &args.html {
        write_html(&rows, path)?;
    }
    match args.output {
        Output::Text => print!("{}", super::report::text(&rows)),
        Output::Json => println!(
            "{}",
            serde_json::to_string_pretty(&rows).map_err(|e| LabError::Setup(e.to_string()))?
        ),
    }
    Ok(if rows.iter().all(|r| r.agrees()) {
        0
    } else {
        1
    })
}

fn probe_from() -> Result<u8, LabError> {
    let mut input = String::new();
    std::io::stdin().read_to_string(&mut input)?;
    let plan: ProbePlan = serde_json::from_str(&input)
        .map_err(|e| LabError::Precondition(format!("bad probe plan: {e}")))?;
    let results = runtime()?.block_on(run_plan(plan));
    println!(
        "{}",
        serde_json::to_string(&results).map_err(|e| LabError::Setup(e.to_string()))?
    );
    Ok(0)
}

fn lab_capture(args: CaptureArgs) -> Result<u8, LabError> {
    let state = load_state(&args.state.state_dir)?;
    let find = |key: &str| {
        state.plan.pod(key).cloned().ok_or_else(|| {
            LabError::Precondition(format!("no pod {key} in the lab (expected NS/POD)"))
        })
    };
    let (from, to) = (find(&args.from)?, find(&args.to)?);
    let (method, path) = match args.http {
        Some(v) => (v[0].clone(), v[1].clone()),
        None => ("GET".to_string(), "/".to_string()),
    };
    let file = args.state.state_dir.join("capture.pcap");
    let capture = super::capture::BridgeCapture::start(from.ip, to.ip, &file)?;
    let plan = ProbePlan {
        bind: None,
        probes: vec![super::probe::Probe {
            ip: to.ip,
            port: args.port,
            protocol: palisade_api::Protocol::Tcp,
            expect: vec![to.key.clone()],
            http: Some((method.clone(), path.clone())),
        }],
    };
    let output = super::matrix::spawn_prober(&from.netns, &plan)?.wait_with_output()?;
    let needle = format!("{method} {path}");
    let summary = capture.finish(needle.as_bytes())?;
    let results: Vec<super::ProbeResult> = serde_json::from_slice(&output.stdout)
        .map_err(|e| LabError::Setup(format!("the prober failed: {e}")))?;
    let result = results
        .into_iter()
        .next()
        .ok_or_else(|| LabError::Setup("the prober returned nothing".into()))?;
    let tls = summary.is_tls_only();
    match args.output {
        Output::Json => println!(
            "{}",
            serde_json::json!({"from": from.key, "to": to.key, "port": args.port,
                "request": needle, "result": result, "wire": summary, "tlsOnly": tls})
        ),
        Output::Text => {
            println!(
                "{} -> {} port {}: {needle}: {} ({})",
                from.key,
                to.key,
                args.port,
                match result.observed {
                    super::Verdict::Allow => "allowed",
                    super::Verdict::Deny => "denied",
                },
                result.detail
            );
            println!(
                "on the bridge: {} packets, {} payload bytes, {} TLS handshake and {} TLS application-data records; request line in cleartext: {}",
                summary.packets,
                summary.payload_bytes,
                summary.tls_handshake_records,
                summary.tls_application_records,
                if summary.cleartext_seen { "YES" } else { "no" }
            );
            println!(
                "{}",
                if tls {
                    "=> the bytes between the pods were TLS"
                } else {
                    "=> NOT only TLS on the wire"
                }
            );
        }
    }
    Ok(if tls { 0 } else { 1 })
}
