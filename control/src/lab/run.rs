//! `palisade lab up`: builds the namespaces, the bridge and the outside
//! world, then starts in each pod the capture rules, the sidecar and the
//! echo app, and waits until every sidecar is ready.
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use super::host::{in_netns, ip, run, spawn_in_netns, tear_down};
use super::plan::{HUB_IP, LabPlan, OUTSIDE_IP};
use super::{BRIDGE, HUB_NETNS, LabError, OUTSIDE_NETNS};

/// UID the sidecars run as; the capture rules exclude it.
pub const PROXY_UID: u32 = 1337;
/// Port the outside world's echo app answers on (everything is redirected there).
const OUTSIDE_ECHO_PORT: u16 = 7;
const READY_TIMEOUT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LabState {
    pub plan: LabPlan,
    /// `NS/POD` -> sidecar admin `/ready` reached.
    pub started: Vec<String>,
}

pub struct UpOptions {
    pub config: PathBuf,
    pub state: PathBuf,
    pub externals: Vec<Ipv4Addr>,
    /// Sidecars from files (`--config`/`--svid-dir`) instead of the control
    /// plane with join tokens.
    pub static_mode: bool,
    /// Passed to each sidecar: how soon it renews after a CA rotation's
    /// activate (`palisade-proxy run --svid-reissue-spread`).
    pub svid_reissue_spread: Option<String>,
}

/// Port of the control plane on the hub.
pub const CONTROL_PORT: u16 = 15012;

fn bin_dir() -> Result<PathBuf, LabError> {
    let exe = std::env::current_exe()?;
    Ok(exe.parent().map(Path::to_path_buf).unwrap_or_default())
}

/// The `palisade` binary running now and the `palisade-proxy` beside it.
fn binaries() -> Result<(String, String), LabError> {
    let palisade = std::env::current_exe()?.display().to_string();
    let proxy = std::env::var("PALISADE_PROXY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|_| bin_dir().unwrap_or_default().join("palisade-proxy"));
    if !proxy.is_file() {
        return Err(LabError::Precondition(format!(
            "palisade-proxy not found at {} (build it with `cargo build --bin palisade-proxy`, or set PALISADE_PROXY_BIN)",
            proxy.display()
        )));
    }
    Ok((palisade, proxy.display().to_string()))
}

pub fn up(opts: &UpOptions) -> Result<LabState, LabError> {
    super::host::require_root_and_tools()?;
    let (palisade, proxy) = binaries()?;
    let removed = tear_down(&opts.state)?;
    if removed > 0 {
        eprintln!("palisade lab: removed a stale lab ({removed} namespaces)");
    }
    std::fs::create_dir_all(&opts.state)?;
    // The sidecars run as their own UID and read their token (or SVID) from
    // under the state dir, which may have been made private (`mktemp -d`).
    // Keys and tokens stay 0600 in it.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&opts.state, std::fs::Permissions::from_mode(0o755))?;
    }
    let result = build(opts, &palisade, &proxy);
    if result.is_err() {
        // Leave nothing half-made behind.
        let _ = tear_down(&opts.state);
    }
    result
}

fn build(opts: &UpOptions, palisade: &str, proxy: &str) -> Result<LabState, LabError> {
    let (plan, cluster) = LabPlan::make(&opts.config, &opts.state, &opts.externals)?;
    let compiler = crate::compile::Compiler::new(&cluster);
    // The hub: a bridge every pod and the outside world plug into.
    ip(&["netns", "add", HUB_NETNS])?;
    ip(&["-n", HUB_NETNS, "link", "set", "lo", "up"])?;
    ip(&["-n", HUB_NETNS, "link", "add", BRIDGE, "type", "bridge"])?;
    ip(&[
        "-n",
        HUB_NETNS,
        "addr",
        "add",
        &format!("{HUB_IP}/15"),
        "dev",
        BRIDGE,
    ])?;
    ip(&["-n", HUB_NETNS, "link", "set", BRIDGE, "up"])?;
    // The outside world.
    plug(OUTSIDE_NETNS, "palisade-vout", OUTSIDE_IP, None)?;
    for external in &plan.externals {
        ip(&[
            "-n",
            OUTSIDE_NETNS,
            "addr",
            "add",
            &format!("{external}/32"),
            "dev",
            "eth0",
        ])?;
    }
    for proto in ["tcp", "udp"] {
        in_netns(
            OUTSIDE_NETNS,
            &[
                "iptables",
                "-t",
                "nat",
                "-A",
                "PREROUTING",
                "-p",
                proto,
                "-j",
                "REDIRECT",
                "--to-ports",
                &OUTSIDE_ECHO_PORT.to_string(),
            ],
        )?;
    }
    let logs = opts.state.join("logs");
    std::fs::create_dir_all(&logs)?;
    let port = OUTSIDE_ECHO_PORT.to_string();
    spawn_in_netns(
        OUTSIDE_NETNS,
        0,
        false,
        &[
            palisade.into(),
            "lab".into(),
            "echo".into(),
            "--name".into(),
            "outside".into(),
            "--tcp".into(),
            port.clone(),
            "--udp".into(),
            port,
        ],
        &logs.join("outside-echo.log"),
    )?;
    // Identities: one CA; in static mode one SVID per meshed pod, else the
    // control plane signs each sidecar's CSR after checking its join token.
    let ca_dir = opts.state.join("ca");
    let ca = identity::make_ca(&cluster.mesh.trust_domain, &ca_dir)?;
    let control_state = opts.state.join("control");
    if !opts.static_mode {
        start_control_plane(palisade, &plan, &ca_dir, &control_state, &logs)?;
    }
    let mut started = Vec::new();
    for (i, pod) in plan.pods.iter().enumerate() {
        plug(
            &pod.netns,
            &format!("palisade-v{i}"),
            pod.ip,
            Some(OUTSIDE_IP),
        )?;
        let dir = opts.state.join("pods").join(format!("p{i}"));
        std::fs::create_dir_all(&dir)?;
        // Datagrams to a Service's virtual IP, as kube-proxy would send them.
        if let Some(rules) = super::kube_proxy::ruleset(&compiler.compile(i).services) {
            let path = dir.join("kube-proxy.nft");
            std::fs::write(&path, rules)?;
            in_netns(&pod.netns, &["nft", "-f", &path.display().to_string()])?;
        }
        if pod.meshed {
            let source = if opts.static_mode {
                let svid = dir.join("svid");
                identity::issue(&ca, &cluster.identity(&cluster.pods[i]), &svid)?;
                make_readable_by(&svid, PROXY_UID)?;
                let config_path = dir.join("config.json");
                let config = compiler.compile(i);
                std::fs::write(
                    &config_path,
                    serde_json::to_vec_pretty(&config)
                        .map_err(|e| LabError::Setup(e.to_string()))?,
                )?;
                vec![
                    "--config".into(),
                    config_path.display().to_string(),
                    "--svid-dir".into(),
                    svid.display().to_string(),
                ]
            } else {
                let token = dir.join("token");
                run(
                    palisade,
                    &[
                        "token",
                        "create",
                        "--workload",
                        &pod.key,
                        "--state-dir",
                        &control_state.display().to_string(),
                        "--out",
                        &token.display().to_string(),
                    ],
                )?;
                make_readable_by(&token, PROXY_UID)?;
                vec![
                    "--control".into(),
                    format!("https://{HUB_IP}:{CONTROL_PORT}"),
                    "--workload".into(),
                    pod.key.clone(),
                    "--token".into(),
                    token.display().to_string(),
                ]
                .into_iter()
                .chain(
                    opts.svid_reissue_spread
                        .iter()
                        .flat_map(|d| ["--svid-reissue-spread".into(), d.clone()]),
                )
                .collect()
            };
            in_netns(
                &pod.netns,
                &[proxy, "init", "--proxy-uid", &PROXY_UID.to_string()],
            )?;
            let mut args: Vec<String> = vec![proxy.into(), "run".into()];
            args.extend(source);
            // UDP and SCTP NetworkPolicy, as nftables rules in the pod.
            args.push("--netfilter".into());
            spawn_in_netns(
                &pod.netns,
                PROXY_UID,
                true,
                &args,
                &logs.join(format!("p{i}-proxy.log")),
            )?;
        }
        let mut echo = vec![
            palisade.to_string(),
            "lab".into(),
            "echo".into(),
            "--name".into(),
            pod.key.clone(),
        ];
        if !pod.tcp_ports.is_empty() {
            echo.push("--tcp".into());
            echo.push(join(&pod.tcp_ports));
        }
        if !pod.udp_ports.is_empty() {
            echo.push("--udp".into());
            echo.push(join(&pod.udp_ports));
        }
        spawn_in_netns(
            &pod.netns,
            0,
            false,
            &echo,
            &logs.join(format!("p{i}-echo.log")),
        )?;
    }
    for (i, pod) in plan.pods.iter().enumerate().filter(|(_, p)| p.meshed) {
        wait_ready(&pod.netns, &logs.join(format!("p{i}-proxy.log")))?;
        started.push(pod.key.clone());
    }
    let state = LabState { plan, started };
    std::fs::write(
        opts.state.join("state.json"),
        serde_json::to_vec_pretty(&state).map_err(|e| LabError::Setup(e.to_string()))?,
    )?;
    Ok(state)
}

/// Starts `palisade control` in the hub namespace and waits until it has
/// compiled the manifests (tokens are bound to the identities it compiled).
fn start_control_plane(
    palisade: &str,
    plan: &LabPlan,
    ca: &Path,
    state: &Path,
    logs: &Path,
) -> Result<(), LabError> {
    std::fs::create_dir_all(state)?;
    let args: Vec<String> = vec![
        palisade.into(),
        "control".into(),
        "--config".into(),
        plan.manifests.display().to_string(),
        "--ca".into(),
        ca.display().to_string(),
        "--listen".into(),
        format!("{HUB_IP}:{CONTROL_PORT}"),
        "--state-dir".into(),
        state.display().to_string(),
    ];
    let log = logs.join("control.log");
    spawn_in_netns(HUB_NETNS, 0, false, &args, &log)?;
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if state.join("identities.json").exists() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(LabError::Setup(format!(
        "the control plane did not compile the manifests within {READY_TIMEOUT:?}; see {}",
        log.display()
    )))
}

fn join(ports: &[u16]) -> String {
    ports
        .iter()
        .map(u16::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

mod identity {
    //! The lab's CA and SVIDs, written in the layout `palisade cert issue` uses.
    use std::path::Path;
    use std::time::Duration;

    use palisade_identity::{CaOptions, CertificateAuthority, SpiffeId, TrustDomain};

    use super::LabError;

    const SVID_TTL: Duration = Duration::from_secs(24 * 3600);

    fn err(e: impl std::fmt::Display) -> LabError {
        LabError::Setup(format!("identity: {e}"))
    }

    pub fn make_ca(trust_domain: &str, dir: &Path) -> Result<CertificateAuthority, LabError> {
        let td = TrustDomain::new(trust_domain).map_err(err)?;
        let ca = CertificateAuthority::create(&td, &CaOptions::default()).map_err(err)?;
        ca.write_dir(dir).map_err(err)?;
        Ok(ca)
    }

    pub fn issue(ca: &CertificateAuthority, id: &str, dir: &Path) -> Result<(), LabError> {
        let id = SpiffeId::parse(id).map_err(err)?;
        let svid = ca.issue(&id, SVID_TTL).map_err(err)?;
        palisade_identity::credentials::write_svid_dir(
            dir,
            &svid.chain,
            svid.key.as_ref(),
            ca.bundle(),
        )
        .map_err(err)
    }
}

/// Creates namespace `netns` with `eth0` at `addr`/15 on the hub's bridge.
fn plug(
    netns: &str,
    hub_side: &str,
    addr: Ipv4Addr,
    gateway: Option<Ipv4Addr>,
) -> Result<(), LabError> {
    ip(&["netns", "add", netns])?;
    ip(&[
        "-n", HUB_NETNS, "link", "add", hub_side, "type", "veth", "peer", "name", "eth0", "netns",
        netns,
    ])?;
    ip(&["-n", HUB_NETNS, "link", "set", hub_side, "master", BRIDGE])?;
    ip(&["-n", HUB_NETNS, "link", "set", hub_side, "up"])?;
    ip(&["-n", netns, "link", "set", "lo", "up"])?;
    ip(&[
        "-n",
        netns,
        "addr",
        "add",
        &format!("{addr}/15"),
        "dev",
        "eth0",
    ])?;
    ip(&["-n", netns, "link", "set", "eth0", "up"])?;
    if let Some(gw) = gateway {
        ip(&[
            "-n",
            netns,
            "route",
            "add",
            "default",
            "via",
            &gw.to_string(),
        ])?;
    }
    Ok(())
}

/// Gives the sidecar's UID read access to its SVID directory.
fn make_readable_by(dir: &Path, uid: u32) -> Result<(), LabError> {
    let spec = format!("{uid}:{uid}");
    run("chown", &["-R", &spec, &dir.display().to_string()])?;
    Ok(())
}

fn wait_ready(netns: &str, log: &Path) -> Result<(), LabError> {
    let deadline = Instant::now() + READY_TIMEOUT;
    while Instant::now() < deadline {
        if in_netns(
            netns,
            &[
                "curl",
                "-sf",
                "-m",
                "1",
                "-o",
                "/dev/null",
                "http://127.0.0.1:15000/ready",
            ],
        )
        .is_ok()
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let tail = std::fs::read_to_string(log).unwrap_or_default();
    let tail: Vec<&str> = tail.lines().rev().take(10).collect();
    Err(LabError::Setup(format!(
        "the sidecar in {netns} was not ready after {READY_TIMEOUT:?}; its log ends:\n{}",
        tail.into_iter().rev().collect::<Vec<_>>().join("\n")
    )))
}

pub fn load_state(state: &Path) -> Result<LabState, LabError> {
    let path = state.join("state.json");
    let text = std::fs::read_to_string(&path).map_err(|_| {
        LabError::Precondition(format!(
            "no lab is up (no {}): run `palisade lab up --config DIR` first",
            path.display()
        ))
    })?;
    serde_json::from_str(&text).map_err(|e| LabError::Setup(format!("{}: {e}", path.display())))
}
