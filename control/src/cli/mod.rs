//! The `palisade` command line: one subcommand group per module.
//!
//! Exit codes: 0 success (for `check`: any verdict), 1 a negative answer
//! (a certificate or ID that fails verification), 2 bad input or arguments.
use std::process::ExitCode;

use clap::{Parser, Subcommand};

pub mod ca_rotate;
pub mod control;
pub mod identity;
pub mod inject;
pub mod policy;

#[derive(Debug, Parser)]
#[command(
    name = "palisade",
    version,
    about = "Palisade zero-trust mesh: operator CLI"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Manage the mesh certificate authority.
    #[command(subcommand)]
    Ca(identity::CaCommand),
    /// Issue and verify X509-SVIDs.
    #[command(subcommand)]
    Cert(identity::CertCommand),
    /// Work with SPIFFE IDs.
    #[command(subcommand)]
    Id(identity::IdCommand),
    /// Print the compiled ProxyConfig of one workload.
    Compile(policy::CompileArgs),
    /// Would this connection or request be allowed, and why?
    Check(policy::CheckArgs),
    /// Report policy pitfalls.
    Lint(policy::LintArgs),
    /// Who can reach whom, before and after a change to the manifests.
    Diff(policy::DiffArgs),
    /// Add the Palisade sidecar to workload manifests.
    Inject(inject::InjectArgs),
    /// Inject the sidecar as a Kubernetes mutating admission webhook
    /// (HTTPS, POST /inject); the patch is what `palisade inject` would do.
    Webhook(inject::WebhookArgs),
    /// Run the manifests as network namespaces with real sidecars, and probe them.
    #[command(subcommand)]
    Lab(crate::lab::cli::LabCommand),
    /// Run the control plane: watch manifests, push configs, sign CSRs.
    Control(control::ControlArgs),
    /// Connected proxies and the control plane's state.
    Status(control::StatusArgs),
    /// Join tokens for bootstrapping sidecars.
    #[command(subcommand)]
    Token(control::TokenCommand),
}

/// Parses the command line, runs it, and maps the result to an exit code.
pub fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    init_tracing();
    let code = match cli.command {
        Command::Ca(c) => identity::run_ca(c),
        Command::Cert(c) => identity::run_cert(c),
        Command::Id(c) => identity::run_id(c),
        Command::Compile(a) => policy::run_compile(a),
        Command::Check(a) => policy::run_check(a),
        Command::Lint(a) => policy::run_lint(a),
        Command::Diff(a) => policy::run_diff(a),
        Command::Inject(a) => inject::run_inject(a),
        Command::Webhook(a) => inject::run_webhook(a),
        Command::Lab(c) => crate::lab::cli::run_lab(c),
        Command::Control(a) => control::run_control(a),
        Command::Status(a) => control::run_status(a),
        Command::Token(c) => control::run_token(c),
    };
    ExitCode::from(code)
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("PALISADE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}
