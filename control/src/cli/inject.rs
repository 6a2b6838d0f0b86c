//! `palisade inject`: reads manifests from a file or stdin and prints them
//! with the sidecar injected.
use std::io::Read;
use std::path::PathBuf;

use clap::Args;

use crate::inject::{InjectOptions, Outcome, Resources, inject_documents};

#[derive(Debug, Args)]
pub struct InjectArgs {
    /// Manifest file to inject, or `-` for standard input.
    #[arg(short = 'f', long = "filename")]
    pub file: PathBuf,
    #[command(flatten)]
    pub sidecar: SidecarArgs,
}

/// What the injected sidecar looks like (shared by `inject` and `webhook`).
#[derive(Debug, Args)]
pub struct SidecarArgs {
    /// The proxy image.
    #[arg(long, default_value_t = InjectOptions::default().image)]
    pub image: String,
    /// Inject a regular container instead of a native sidecar (Kubernetes < 1.28).
    #[arg(long)]
    pub legacy_sidecar: bool,
    /// The control plane URL the sidecar connects to.
    #[arg(long, default_value_t = InjectOptions::default().control_url)]
    pub control_url: String,
    /// UID the proxy runs as; the capture rules exclude it.
    #[arg(long, default_value_t = InjectOptions::default().proxy_uid)]
    pub proxy_uid: u32,
    /// Secret holding the workload's join token.
    #[arg(long, default_value_t = InjectOptions::default().token_secret)]
    pub token_secret: String,
    #[arg(long, default_value_t = Resources::default().cpu_request)]
    pub cpu_request: String,
    #[arg(long, default_value_t = Resources::default().memory_request)]
    pub memory_request: String,
    #[arg(long, default_value_t = Resources::default().cpu_limit)]
    pub cpu_limit: String,
    #[arg(long, default_value_t = Resources::default().memory_limit)]
    pub memory_limit: String,
}

impl SidecarArgs {
    pub fn options(self) -> InjectOptions {
        InjectOptions {
            image: self.image,
            legacy_sidecar: self.legacy_sidecar,
            control_url: self.control_url,
            proxy_uid: self.proxy_uid,
            token_secret: self.token_secret,
            resources: Resources {
                cpu_request: self.cpu_request,
                memory_request: self.memory_request,
                cpu_limit: self.cpu_limit,
                memory_limit: self.memory_limit,
            },
            ..InjectOptions::default()
        }
    }
}

/// `palisade webhook`: injection as a mutating admission webhook.
#[derive(Debug, Args)]
pub struct WebhookArgs {
    /// Where to serve HTTPS (the API server calls POST /inject).
    #[arg(long, default_value = "0.0.0.0:9443")]
    pub listen: std::net::SocketAddr,
    /// Serving certificate chain (PEM), reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: PathBuf,
    /// Its private key (PEM), reloaded when it changes.
    #[arg(long, value_name = "FILE")]
    pub tls_key: PathBuf,
    #[command(flatten)]
    pub sidecar: SidecarArgs,
}

pub fn run_webhook(args: WebhookArgs) -> u8 {
    match webhook(args) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("palisade webhook: {e:#}");
            1
        }
    }
}

fn webhook(args: WebhookArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let cert = std::sync::Arc::new(crate::inject::webhook_server::ReloadingCert::new(
        args.tls_cert,
        args.tls_key,
    )?);
    let options = args.sidecar.options();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("building the runtime")?;
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let bound = listener.local_addr()?;
        let task = crate::inject::webhook_server::spawn(listener, cert, options)?;
        // One line on stdout so scripts and tests learn the bound address.
        println!("palisade webhook listening on {bound}");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        task.abort();
        Ok(())
    })
}

pub fn run_inject(args: InjectArgs) -> u8 {
    let input = if args.file.as_os_str() == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            eprintln!("palisade inject: cannot read standard input: {e}");
            return 2;
        }
        s
    } else {
        match std::fs::read_to_string(&args.file) {
            Ok(s) => s,
            Err(e) => {
                eprintln!("palisade inject: cannot read {}: {e}", args.file.display());
                return 2;
            }
        }
    };
    let options = args.sidecar.options();
    match inject_documents(&input, &options) {
        Ok((out, outcomes)) => {
            print!("{out}");
            for outcome in outcomes {
                if let Outcome::OptedOut(reason) = outcome {
                    eprintln!("palisade inject: skipped a workload: {reason}");
                }
            }
            0
        }
        Err(e) => {
            eprintln!("palisade inject: {}: {e}", args.file.display());
            2
        }
    }
}
