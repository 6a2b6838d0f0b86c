//! `palisade ca rotate prepare|activate|finish`: the steps of a CA rotation
//! (`palisade_identity::ca_rotation`), each guarded by what the running
//! control plane reports. activate waits for every connected sidecar to
//! hold the new root; finish waits for every one to hold an SVID of the new
//! CA. Either refuses, naming the sidecars that lag, unless `--force`.
//!
//! Exit codes: 0 done; 1 refused because sidecars lag (nothing changed);
//! 2 bad input, a step out of order, or the control plane unreachable.
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use palisade_api::stream::StatusResponse;
use palisade_identity::TrustDomain;
use palisade_identity::ca_rotation::{self, PrepareOptions, StepReport};
use palisade_identity::verify::fingerprint;

use super::control::{DEFAULT_LISTEN, fetch_status};
use crate::server::CaAuthority;

#[derive(Debug, Subcommand)]
pub enum RotateStep {
    /// Make a new CA in DIR/next and trust its root beside the old one.
    /// The old CA keeps signing; every sidecar is pushed both roots.
    Prepare {
        #[command(flatten)]
        dir: CaDirArgs,
        /// A new intermediate under the existing root (needs root.pem and
        /// root.key in DIR); the bundle does not change.
        #[arg(long)]
        keep_root: bool,
        /// Lifetime of a new root.
        #[arg(long, value_parser = humantime::parse_duration)]
        root_ttl: Option<Duration>,
        /// Lifetime of a new intermediate.
        #[arg(long, value_parser = humantime::parse_duration)]
        intermediate_ttl: Option<Duration>,
    },
    /// The prepared CA signs from now on; sidecars renew their SVIDs early.
    /// Refused while a connected sidecar has not applied the new root.
    Activate {
        #[command(flatten)]
        dir: CaDirArgs,
        #[command(flatten)]
        guard: GuardArgs,
    },
    /// Stop trusting the old root and delete the retired keys. Refused
    /// while a connected sidecar still holds an SVID of the old CA.
    Finish {
        #[command(flatten)]
        dir: CaDirArgs,
        #[command(flatten)]
        guard: GuardArgs,
    },
}

#[derive(Debug, Args)]
pub struct CaDirArgs {
    /// The CA directory the control plane runs with (`palisade control --ca`).
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    /// Trust domain, when the CA certificates name none.
    #[arg(long)]
    pub trust_domain: Option<String>,
}

#[derive(Debug, Args)]
pub struct GuardArgs {
    /// The control plane's API address, asked whether the sidecars are ready.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub control: String,
    /// Wait up to this long for the sidecars to catch up before refusing.
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub wait: Duration,
    /// Go ahead without asking the control plane (sidecars that lag lose
    /// their connections to the others).
    #[arg(long)]
    pub force: bool,
}

pub fn run(step: RotateStep) -> u8 {
    match rotate(step) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

fn rotate(step: RotateStep) -> anyhow::Result<u8> {
    match step {
        RotateStep::Prepare {
            dir,
            keep_root,
            root_ttl,
            intermediate_ttl,
        } => {
            let opts = PrepareOptions {
                keep_root,
                root_ttl,
                intermediate_ttl,
            };
            let report = ca_rotation::prepare(&dir.ca, trust_domain(&dir)?, &opts)?;
            print_report("prepared", &report);
            println!(
                "next: wait until `palisade status` shows every sidecar's config current, then `palisade ca rotate activate --ca {}`",
                dir.ca.display()
            );
            Ok(0)
        }
        RotateStep::Activate { dir, guard } => {
            let code = guarded(
                ("activate", "activated"),
                &dir,
                &guard,
                activate_lag,
                ca_rotation::activate,
                |c, signer, _| c.svid_signer == signer,
            )?;
            if code == 0 {
                println!(
                    "next: wait until `palisade status` shows every sidecar's SVID from the new CA, then `palisade ca rotate finish --ca {}`",
                    dir.ca.display()
                );
            }
            Ok(code)
        }
        RotateStep::Finish { dir, guard } => guarded(
            ("finish", "finished"),
            &dir,
            &guard,
            finish_lag,
            ca_rotation::finish,
            |c, _, roots| {
                c.trust_roots
                    .iter()
                    .map(|r| r.sha256.as_str())
                    .eq(roots.iter().map(String::as_str))
            },
        ),
    }
}

/// A step the control plane must agree to: refused (exit 1) while `lag`
/// finds sidecars behind, unless `--force`; then `step`, and a wait until
/// the control plane reports what `loaded` looks for.
fn guarded(
    (step_name, done): (&str, &str),
    dir: &CaDirArgs,
    guard: &GuardArgs,
    lag: Lag,
    step: fn(&Path, Option<TrustDomain>) -> Result<StepReport, ca_rotation::RotationError>,
    loaded: impl Fn(&palisade_api::stream::ControlState, &str, &[String]) -> bool,
) -> anyhow::Result<u8> {
    let td = trust_domain(dir)?;
    if !guard.force {
        let lagging = wait_for(guard, &dir.ca, td.clone(), lag)?;
        if !lagging.is_empty() {
            return Ok(refuse(step_name, &lagging));
        }
    }
    let report = step(&dir.ca, td.clone())?;
    print_report(done, &report);
    if !guard.force {
        confirm_loaded(guard, &dir.ca, td, loaded);
    }
    Ok(0)
}

fn trust_domain(dir: &CaDirArgs) -> anyhow::Result<Option<TrustDomain>> {
    dir.trust_domain
        .as_deref()
        .map(|t| TrustDomain::new(t).with_context(|| format!("--trust-domain {t}")))
        .transpose()
}

/// What keeps a step from being safe now, per the control plane.
type Lag = fn(&StatusResponse, &CaState) -> Vec<String>;

/// The CA directory as the step will find it.
struct CaState {
    /// Every root of DIR's bundle.
    roots: Vec<String>,
    /// The roots finish keeps: those the signing CA chains to.
    kept: Vec<String>,
    signer: String,
}

/// Asks the control plane until nothing lags or `--wait` is over.
fn wait_for(
    guard: &GuardArgs,
    dir: &Path,
    td: Option<TrustDomain>,
    lag: Lag,
) -> anyhow::Result<Vec<String>> {
    let ca = CaAuthority::load_dir(dir, td.as_ref().map(TrustDomain::as_str))
        .with_context(|| format!("loading the CA from {}", dir.display()))?;
    let state = CaState {
        kept: ca
            .inner()
            .anchoring_roots()
            .iter()
            .map(|r| fingerprint(r))
            .collect(),
        roots: root_fingerprints(&ca),
        signer: fingerprint(ca.inner().signing_cert()),
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    let deadline = std::time::Instant::now() + guard.wait;
    loop {
        let status = runtime
            .block_on(fetch_status(&guard.control, &ca))
            .with_context(|| {
                format!(
                    "asking the control plane at {} (or pass --force)",
                    guard.control
                )
            })?;
        let lagging = lag(&status, &state);
        if lagging.is_empty() || std::time::Instant::now() >= deadline {
            return Ok(lagging);
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// How long a step waits for the control plane to load what it wrote.
const LOAD_WAIT: Duration = Duration::from_secs(15);

/// Waits (up to [`LOAD_WAIT`]) until the control plane reports the CA
/// directory as the step left it (`loaded` says, given its state, the
/// directory's signer and roots), so the next `palisade status` shows it;
/// a warning, not an error, when it does not.
fn confirm_loaded(
    guard: &GuardArgs,
    dir: &Path,
    td: Option<TrustDomain>,
    loaded: impl Fn(&palisade_api::stream::ControlState, &str, &[String]) -> bool,
) {
    let Ok(ca) = CaAuthority::load_dir(dir, td.as_ref().map(TrustDomain::as_str)) else {
        return;
    };
    let signer = fingerprint(ca.inner().signing_cert());
    let roots = root_fingerprints(&ca);
    let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    else {
        return;
    };
    let deadline = std::time::Instant::now() + LOAD_WAIT;
    let mut last_error = String::new();
    while std::time::Instant::now() < deadline {
        match runtime.block_on(fetch_status(&guard.control, &ca)) {
            Ok(status) => {
                if let Some(c) = &status.control {
                    if loaded(c, &signer, &roots) {
                        println!("the control plane at {} has loaded it", guard.control);
                        return;
                    }
                    last_error.clone_from(&c.ca_error);
                }
            }
            Err(e) => last_error = format!("{e:#}"),
        }
        std::thread::sleep(Duration::from_millis(250));
    }
    eprintln!(
        "warning: the control plane at {} has not loaded the CA directory within {LOAD_WAIT:?}{}",
        guard.control,
        if last_error.is_empty() {
            String::new()
        } else {
            format!(": {last_error}")
        }
    );
}

/// activate is safe once the control plane trusts every root of DIR and
/// every sidecar applied the config carrying them.
fn activate_lag(status: &StatusResponse, ca: &CaState) -> Vec<String> {
    let mut lag = Vec::new();
    let Some(control) = &status.control else {
        return vec!["the control plane reported no state".into()];
    };
    let served: Vec<&str> = control
        .trust_roots
        .iter()
        .map(|r| r.sha256.as_str())
        .collect();
    for root in &ca.roots {
        if !served.contains(&root.as_str()) {
            lag.push(format!(
                "the control plane does not trust root {} yet (has it reloaded the CA directory? {})",
                short(root),
                if control.ca_error.is_empty() {
                    "no reload error"
                } else {
                    control.ca_error.as_str()
                }
            ));
        }
    }
    for p in &status.proxies {
        if !p.config_current {
            lag.push(format!(
                "{} has not applied the config with the new root (applied {}, sent {})",
                p.workload,
                or_dash(&p.applied_version),
                or_dash(&p.sent_version)
            ));
        }
    }
    lag
}

/// finish is safe once the control plane signs with DIR's signer and every
/// sidecar's SVID chains to a root that stays.
fn finish_lag(status: &StatusResponse, ca: &CaState) -> Vec<String> {
    let mut lag = Vec::new();
    let Some(control) = &status.control else {
        return vec!["the control plane reported no state".into()];
    };
    if control.svid_signer != ca.signer {
        lag.push(format!(
            "the control plane still signs with {}, not {} (has it reloaded the CA directory? {})",
            short(&control.svid_signer),
            short(&ca.signer),
            if control.ca_error.is_empty() {
                "no reload error"
            } else {
                control.ca_error.as_str()
            }
        ));
    }
    for p in &status.proxies {
        if !ca.kept.contains(&p.svid_root) {
            lag.push(format!(
                "{} still holds an SVID of root {} (expires {})",
                p.workload,
                short(or_dash(&p.svid_root)),
                super::control::when(p.cert_expires_unix)
            ));
        }
    }
    lag
}

fn refuse(step: &str, lagging: &[String]) -> u8 {
    eprintln!(
        "refusing to {step}: {} sidecar(s) or checks lag (nothing changed; retry, pass --wait, or --force):",
        lagging.len()
    );
    for l in lagging {
        eprintln!("  {l}");
    }
    1
}

fn print_report(what: &str, r: &StepReport) {
    println!("{what}: signer sha256:{}", short(&r.signer));
    if let Some(next) = &r.next_signer {
        println!("  next signer sha256:{}", short(next));
    }
    for root in &r.roots {
        let mark = if r.added.contains(root) {
            " (added)"
        } else {
            ""
        };
        println!("  trusted root sha256:{}{mark}", short(root));
    }
    for root in &r.removed {
        println!("  removed root sha256:{}", short(root));
    }
}

/// SHA-256 of every root of `ca`'s bundle.
fn root_fingerprints(ca: &CaAuthority) -> Vec<String> {
    ca.inner()
        .bundle()
        .roots()
        .iter()
        .map(|r| fingerprint(r))
        .collect()
}

fn short(fp: &str) -> &str {
    &fp[..fp.len().min(16)]
}

fn or_dash(s: &str) -> &str {
    if s.is_empty() { "-" } else { s }
}
