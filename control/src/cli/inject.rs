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
    let options = InjectOptions {
        image: args.image,
        legacy_sidecar: args.legacy_sidecar,
        control_url: args.control_url,
        proxy_uid: args.proxy_uid,
        token_secret: args.token_secret,
        resources: Resources {
            cpu_request: args.cpu_request,
            memory_request: args.memory_request,
            cpu_limit: args.cpu_limit,
            memory_limit: args.memory_limit,
        },
        ..InjectOptions::default()
    };
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
