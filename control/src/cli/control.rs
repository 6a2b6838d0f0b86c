//! `palisade control` (run the control plane), `palisade status` (what the
//! running control plane serves, to whom) and `palisade token create` (a
//! one-time join token for one workload).
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use palisade_api::stream::{StatusRequest, StatusResponse, connect};
use palisade_identity::{CredentialStore, Credentials, SpiffeId, TlsOptions, pem};

use crate::kube_mirror;
use crate::server::{self, CaAuthority, ServerOptions, SignLimit, tokens};

/// Default address of the control plane API.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:15010";

#[derive(Debug, Args)]
pub struct ControlArgs {
    /// Directory of Kubernetes/Istio manifests (watched for changes).
    #[arg(long, value_name = "DIR", required_unless_present_any = ["kube", "kubeconfig"], conflicts_with_all = ["kube", "kubeconfig"])]
    pub config: Option<PathBuf>,
    /// Read the cluster from a Kubernetes API server instead (the kubeconfig
    /// kubectl would use, or the pod's service account inside a cluster). Its
    /// objects are mirrored into STATE_DIR/kube, which `palisade check
    /// --config` and `palisade lint --config` also read.
    #[arg(long)]
    pub kube: bool,
    /// The kubeconfig for --kube (implies it).
    #[arg(long, value_name = "FILE")]
    pub kubeconfig: Option<PathBuf>,
    /// CA directory as written by `palisade ca init`.
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    /// Address of the streaming API (mTLS, HTTP/2).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// Where join tokens live (shared with `palisade token create`).
    #[arg(long, value_name = "DIR", default_value = "palisade-state")]
    pub state_dir: PathBuf,
    /// Trust domain, when the CA certificate does not name one.
    #[arg(long)]
    pub trust_domain: Option<String>,
    /// Lifetime of the SVIDs signed for proxies.
    #[arg(long, default_value = "24h", value_parser = humantime::parse_duration)]
    pub svid_ttl: Duration,
    /// Signings allowed per workload in a burst.
    #[arg(long, default_value_t = 5)]
    pub sign_burst: u32,
    /// One more signing per workload every this long.
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub sign_refill: Duration,
    /// Debounce of manifest changes.
    #[arg(long, default_value = "200ms", value_parser = humantime::parse_duration)]
    pub debounce: Duration,
    /// Serve the mesh's trust bundle as a SPIFFE bundle endpoint here
    /// (profile https_spiffe, endpoint SPIFFE ID
    /// spiffe://TD/ns/palisade-system/sa/control), for other trust domains
    /// to federate with this one.
    #[arg(long, value_name = "ADDR")]
    pub bundle_endpoint: Option<SocketAddr>,
    /// The spiffe_refresh_hint of the served bundle: how often federated
    /// trust domains should poll it.
    #[arg(long, default_value = "5m", value_parser = humantime::parse_duration)]
    pub bundle_refresh_hint: Duration,
    /// Extra PEM roots for https_web bundle endpoints of federated trust
    /// domains (besides the platform's trust store).
    #[arg(long, value_name = "FILE")]
    pub federation_web_roots: Option<PathBuf>,
    /// When the CA directory's signer and its root are replaced in place
    /// (cert-manager renewing the CA), trust the old root this much longer
    /// while sidecars renew (default: --svid-ttl, so every SVID it signed
    /// has expired). 0s drops it at once (a compromised CA).
    #[arg(long, value_parser = humantime::parse_duration)]
    pub ca_grace_period: Option<Duration>,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// The control plane's API address.
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub control: String,
    /// CA directory: `status` makes itself a short-lived operator SVID
    /// (spiffe://TD/ns/palisade-system/sa/operator) to authenticate.
    #[arg(long, value_name = "DIR")]
    pub ca: PathBuf,
    #[arg(long)]
    pub trust_domain: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum TokenCommand {
    /// Create a one-time join token bound to one workload.
    Create(TokenCreateArgs),
}

#[derive(Debug, Args)]
pub struct TokenCreateArgs {
    /// The workload, as NS/POD.
    #[arg(long)]
    pub workload: String,
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub ttl: Duration,
    /// The control plane's state dir.
    #[arg(long, value_name = "DIR", default_value = "palisade-state")]
    pub state_dir: PathBuf,
    /// SPIFFE ID to write into the token file (default: from the control
    /// plane's last compile, `STATE/identities.json`).
    #[arg(long)]
    pub identity: Option<String>,
    /// Write the token file here (mode 0600) instead of stdout.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
}

fn exit(result: anyhow::Result<()>) -> u8 {
    match result {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: {e:#}");
            2
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

// === palisade control ===

pub fn run_control(a: ControlArgs) -> u8 {
    exit(control(a))
}

fn control(a: ControlArgs) -> anyhow::Result<()> {
    let from_kube = a.kube || a.kubeconfig.is_some();
    let manifests = match &a.config {
        Some(dir) if !dir.is_dir() => bail!("--config {} is not a directory", dir.display()),
        Some(dir) => dir.clone(),
        None => a.state_dir.join(KUBE_MIRROR_DIR),
    };
    let ca = CaAuthority::load_dir(&a.ca, a.trust_domain.as_deref())
        .with_context(|| format!("loading the CA from {}", a.ca.display()))?;
    let mut opts = ServerOptions::new(manifests.clone(), a.state_dir);
    opts.ca_dir = Some(a.ca.clone());
    opts.ca_grace_period = a.ca_grace_period;
    opts.ca_trust_domain = a.trust_domain.clone();
    opts.listen = a.listen;
    opts.svid_ttl = a.svid_ttl;
    opts.sign_limit = SignLimit {
        burst: a.sign_burst,
        refill_every: a.sign_refill,
    };
    opts.debounce = a.debounce;
    opts.bundle_endpoint = a.bundle_endpoint;
    if a.bundle_refresh_hint < server::federation::MIN_REFRESH {
        bail!("--bundle-refresh-hint must be at least 1s");
    }
    opts.bundle_refresh_hint = a.bundle_refresh_hint;
    opts.federation_web_roots = a.federation_web_roots;
    let compile = server::manifest_compiler_with(opts.federation.clone());
    let kubeconfig = a.kubeconfig;
    runtime()?.block_on(async move {
        // Held for as long as the control plane runs.
        let mirror = if from_kube {
            let client = kube_mirror::client(kubeconfig.as_deref()).await?;
            tracing::info!(dir = %manifests.display(), "listing the cluster from the API server");
            let mirror = kube_mirror::start(client, kube_mirror::MirrorOptions::new(manifests))
                .await
                .context("reading the cluster from the API server")?;
            println!(
                "palisade control mirrored the API server into {}",
                mirror.dir.display()
            );
            Some(mirror)
        } else {
            None
        };
        if let Some(m) = &mirror {
            opts.source = Some(format!(
                "Kubernetes API server, mirrored into {}",
                m.dir.display()
            ));
            opts.source_report = Some(server::SourceReport(Arc::new(m.notes())));
        }
        let running = server::start(opts, Arc::new(ca), compile)
            .await
            .context("starting the control plane")?;
        // One line on stdout so scripts and tests learn the bound address.
        println!("palisade control listening on {}", running.addr);
        if let Some(at) = running.bundle_endpoint {
            println!("palisade bundle endpoint listening on {at}");
        }
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        running.shutdown().await;
        Ok(())
    })
}

/// Where `--kube` mirrors the API server's objects, under the state dir.
pub const KUBE_MIRROR_DIR: &str = "kube";

// === palisade status ===

pub fn run_status(a: StatusArgs) -> u8 {
    match status(&a) {
        Ok(resp) => {
            if a.json {
                println!("{}", status_json(&resp));
            } else {
                print!("{}", status_table(&resp));
            }
            0
        }
        Err(e) => {
            eprintln!("error: {e:#}");
            1
        }
    }
}

/// Fetches the status with an operator SVID minted from the CA.
pub fn status(a: &StatusArgs) -> anyhow::Result<StatusResponse> {
    let ca = CaAuthority::load_dir(&a.ca, a.trust_domain.as_deref())
        .with_context(|| format!("loading the CA from {}", a.ca.display()))?;
    runtime()?.block_on(fetch_status(&a.control, &ca))
}

/// `Status` over mTLS as `spiffe://TD/ns/palisade-system/sa/operator`.
pub async fn fetch_status(control: &str, ca: &CaAuthority) -> anyhow::Result<StatusResponse> {
    let td = ca.trust_domain();
    let id = format!(
        "spiffe://{td}/ns/{}/sa/operator",
        server::service::SYSTEM_NAMESPACE
    );
    let svid = ca.issue_keyed(&id, Duration::from_secs(300))?;
    let creds = Credentials::new(
        pem::certs(&svid.svid.chain_pem)?,
        pem::private_key(&svid.key_pem)?,
        ca.inner().bundle().clone(),
    )?;
    let store = CredentialStore::new(creds);
    let tls = palisade_identity::client_config_with(
        &store,
        SpiffeId::parse(&server::control_id(td))?,
        &TlsOptions {
            alpn: vec![b"h2".to_vec()],
            ..TlsOptions::default()
        },
    )?;
    let addr = connect::resolve(control).await?;
    let channel = connect::connect(addr, tls, Duration::from_secs(5)).await?;
    let resp = palisade_api::stream::client(channel)
        .status(StatusRequest {})
        .await
        .map_err(|s| anyhow::anyhow!("Status refused: {}: {}", s.code(), s.message()))?;
    Ok(resp.into_inner())
}

pub(crate) fn when(unix: i64) -> String {
    if unix <= 0 {
        return "-".into();
    }
    let t = std::time::UNIX_EPOCH + Duration::from_secs(unix as u64);
    humantime::format_rfc3339_seconds(t).to_string()
}

pub fn status_table(r: &StatusResponse) -> String {
    let mut out = String::new();
    if let Some(c) = &r.control {
        out.push_str(&format!(
            "control plane: trust domain {}, {} workloads, last compile {} ({}), last good {}\n",
            c.trust_domain,
            c.workloads,
            when(c.last_compile_unix),
            if c.last_compile_ok { "ok" } else { "FAILED" },
            when(c.last_good_compile_unix),
        ));
        for e in &c.manifest_errors {
            out.push_str(&format!("  manifest error: {e}\n"));
        }
        if !c.source.is_empty() {
            out.push_str(&format!("  source: {}\n", c.source));
        }
        for n in &c.source_notes {
            out.push_str(&format!("  source note: {n}\n"));
        }
        if !c.bundle_endpoint.is_empty() {
            out.push_str(&format!(
                "  serving the mesh's bundle at https://{} (https_spiffe)\n",
                c.bundle_endpoint
            ));
        }
        for f in &c.federation {
            out.push_str(&federation_line(f));
        }
        out.push_str(&ca_lines(c));
    }
    out.push_str(&format!(
        "{:<28} {:<48} {:<14} {:<14} {:<22} {:<20} {:<12}\n",
        "WORKLOAD", "IDENTITY", "SENT", "APPLIED", "LAST RESPONSE", "CERT EXPIRES", "SVID FROM"
    ));
    for p in &r.proxies {
        out.push_str(&format!(
            "{:<28} {:<48} {:<14} {:<14} {:<22} {:<20} {:<12}\n",
            p.workload,
            p.identity,
            short(&p.sent_version),
            short(&p.applied_version),
            p.last_response.chars().take(60).collect::<String>(),
            when(p.cert_expires_unix),
            svid_from(p),
        ));
    }
    out
}

/// Which CA a proxy's SVID comes from: the signer in force, another
/// signer under a root still trusted (a rotation under way), or a root no
/// longer trusted (the proxy cannot reach its peers).
fn svid_from(p: &palisade_api::stream::ProxyStatus) -> String {
    match (p.svid_current_signer, p.svid_root.is_empty()) {
        (true, _) => "signer".into(),
        (false, false) => format!("old:{}", &p.svid_root[..p.svid_root.len().min(8)]),
        (false, true) => "UNTRUSTED".into(),
    }
}

/// The CA in force: its signer and roots, and a failed reload.
fn ca_lines(c: &palisade_api::stream::ControlState) -> String {
    let mut out = String::new();
    if !c.svid_signer.is_empty() {
        out.push_str(&format!(
            "  CA signer sha256:{} ({}, expires {}), loaded {}\n",
            &c.svid_signer[..c.svid_signer.len().min(16)],
            c.svid_signer_subject,
            when(c.svid_signer_expires_unix),
            when(c.ca_loaded_unix),
        ));
    }
    for root in &c.trust_roots {
        out.push_str(&format!(
            "  trusted root sha256:{} ({}, expires {}){}\n",
            &root.sha256[..root.sha256.len().min(16)],
            root.subject,
            when(root.expires_unix),
            if root.signing {
                String::new()
            } else if root.grace_until_unix > 0 {
                format!(
                    ": signed until the CA was replaced in place; trusted until {}",
                    when(root.grace_until_unix)
                )
            } else {
                ": not the signer's, kept for a rotation".into()
            }
        ));
    }
    if !c.ca_error.is_empty() {
        out.push_str(&format!(
            "  CA RELOAD FAILED (the CA above stays): {}\n",
            c.ca_error
        ));
    }
    let now = super::super::server::pki::now_unix();
    if c.svid_signer_expires_unix > 0 && c.svid_signer_expires_unix - now < CA_EXPIRY_WARNING {
        out.push_str(&format!(
            "  WARNING: the CA signer expires in {} days; SVIDs never outlive it, so they get shorter from now on: rotate it (palisade ca rotate prepare)\n",
            (c.svid_signer_expires_unix - now).max(0) / 86_400
        ));
    }
    out
}

/// How long before the signer's expiry `palisade status` warns: 30 days.
const CA_EXPIRY_WARNING: i64 = 30 * 86_400;

/// One federated trust domain: where its bundle comes from, its roots, and
/// how the fetches from its endpoint went.
fn federation_line(f: &palisade_api::stream::FederatedTrustDomain) -> String {
    let mut line = format!(
        "  federated {}: bundle {}, {} root(s)",
        f.trust_domain, f.bundle_source, f.roots
    );
    if f.roots_expire_unix > 0 {
        line.push_str(&format!(", first expiry {}", when(f.roots_expire_unix)));
    }
    if f.roots == 0 && matches!(f.bundle_source.as_str(), "fetched" | "kept") {
        line.push_str(
            " (NO X.509 ROOTS: the bundle has no x509-svid entries, so the trust domain's X509-SVIDs are refused)",
        );
    }
    if let Some(seq) = f.sequence {
        line.push_str(&format!(", sequence {seq}"));
    }
    if !f.bundle_endpoint_url.is_empty() {
        line.push_str(&format!(
            "; endpoint {}: {} fetches, {} failed, last success {}",
            f.bundle_endpoint_url,
            f.fetches,
            f.failures,
            when(f.last_success_unix)
        ));
        if !f.last_error.is_empty() {
            line.push_str(&format!(", LAST FETCH FAILED: {}", f.last_error));
        }
    }
    line.push('\n');
    line
}

fn short(v: &str) -> &str {
    if v.is_empty() {
        "-"
    } else {
        &v[..v.len().min(12)]
    }
}

pub fn status_json(r: &StatusResponse) -> String {
    let proxies: Vec<serde_json::Value> = r
        .proxies
        .iter()
        .map(|p| {
            serde_json::json!({
                "workload": p.workload,
                "identity": p.identity,
                "remoteAddr": p.remote_addr,
                "sentVersion": p.sent_version,
                "appliedVersion": p.applied_version,
                "lastResponse": p.last_response,
                "lastResponseUnix": p.last_response_unix,
                "certExpiresUnix": p.cert_expires_unix,
                "connectedSinceUnix": p.connected_since_unix,
                "svidRoot": p.svid_root,
                "svidCurrentSigner": p.svid_current_signer,
                "configCurrent": p.config_current,
            })
        })
        .collect();
    let control = r.control.as_ref().map(|c| {
        serde_json::json!({
            "trustDomain": c.trust_domain,
            "workloads": c.workloads,
            "lastCompileUnix": c.last_compile_unix,
            "lastCompileOk": c.last_compile_ok,
            "lastGoodCompileUnix": c.last_good_compile_unix,
            "manifestErrors": c.manifest_errors,
            "source": c.source,
            "sourceNotes": c.source_notes,
            "bundleEndpoint": (!c.bundle_endpoint.is_empty()).then_some(&c.bundle_endpoint),
            "ca": {
                "signer": c.svid_signer,
                "signerSubject": c.svid_signer_subject,
                "signerExpiresUnix": c.svid_signer_expires_unix,
                "loadedUnix": c.ca_loaded_unix,
                "error": (!c.ca_error.is_empty()).then_some(&c.ca_error),
                "roots": c.trust_roots.iter().map(|r| serde_json::json!({
                    "sha256": r.sha256,
                    "subject": r.subject,
                    "expiresUnix": r.expires_unix,
                    "signing": r.signing,
                    "graceUntilUnix": (r.grace_until_unix > 0).then_some(r.grace_until_unix),
                })).collect::<Vec<_>>(),
            },
            "federation": c.federation.iter().map(|f| serde_json::json!({
                "trustDomain": f.trust_domain,
                "bundleEndpointURL": (!f.bundle_endpoint_url.is_empty()).then_some(&f.bundle_endpoint_url),
                "bundleSource": f.bundle_source,
                "sequence": f.sequence,
                "roots": f.roots,
                "rootsExpireUnix": f.roots_expire_unix,
                "fetches": f.fetches,
                "failures": f.failures,
                "lastError": (!f.last_error.is_empty()).then_some(&f.last_error),
                "lastAttemptUnix": f.last_attempt_unix,
                "lastSuccessUnix": f.last_success_unix,
            })).collect::<Vec<_>>(),
        })
    });
    serde_json::json!({ "control": control, "proxies": proxies }).to_string()
}

// === palisade token ===

pub fn run_token(c: TokenCommand) -> u8 {
    match c {
        TokenCommand::Create(a) => exit(token_create(&a)),
    }
}

fn token_create(a: &TokenCreateArgs) -> anyhow::Result<()> {
    tokens::check_workload(&a.workload)?;
    let identity = match &a.identity {
        Some(id) => Some(id.clone()),
        None => {
            let path = a.state_dir.join(server::watcher::IDENTITIES_FILE);
            std::fs::read(&path)
                .ok()
                .and_then(|b| serde_json::from_slice::<BTreeMap<String, String>>(&b).ok())
                .and_then(|m| m.get(&a.workload).cloned())
        }
    };
    if identity.is_none() {
        eprintln!(
            "warning: {} is not in the control plane's last compile ({}); the proxy will need --identity",
            a.workload,
            a.state_dir.join(server::watcher::IDENTITIES_FILE).display()
        );
    }
    let bundle = std::fs::read_to_string(a.state_dir.join("bundle.pem")).ok();
    if bundle.is_none() {
        eprintln!(
            "warning: no bundle.pem in {} (start the control plane once); the proxy will need the trust bundle",
            a.state_dir.display()
        );
    }
    let token = tokens::TokenStore::new(&a.state_dir).create(&a.workload, a.ttl)?;
    let text = tokens::token_file_text(
        &token,
        &a.workload,
        identity.as_deref(),
        bundle.as_deref(),
        a.ttl,
    );
    match &a.out {
        Some(path) => {
            pem::write_private(path, &text)
                .with_context(|| format!("writing {}", path.display()))?;
            eprintln!("wrote join token for {} to {}", a.workload, path.display());
        }
        None => print!("{text}"),
    }
    Ok(())
}
