//! The host side of the lab: running `ip`, `iptables` and processes inside
//! the lab's namespaces, and removing everything the lab made.
use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::{LabError, NETNS_PREFIX};

/// Fails with one line when the lab cannot run here.
pub fn require_root_and_tools() -> Result<(), LabError> {
    // The effective UID, read from /proc: no unsafe code needed.
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .unwrap_or("");
    if euid != "0" {
        return Err(LabError::Precondition(
            "palisade lab needs root (it creates network namespaces and iptables rules): run it with sudo".into(),
        ));
    }
    for (tool, package) in [
        ("ip", "iproute2"),
        ("iptables", "iptables"),
        ("nft", "nftables"),
        ("setpriv", "util-linux"),
    ] {
        if !on_path(tool) {
            return Err(LabError::Precondition(format!(
                "palisade lab needs `{tool}`: apt-get install {package}"
            )));
        }
    }
    Ok(())
}

fn on_path(tool: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/sbin".into()])
        .any(|dir| dir.join(tool).is_file())
}

/// Runs a command to completion; an error names the command and its stderr.
pub fn run(program: &str, args: &[&str]) -> Result<String, LabError> {
    let out = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| LabError::Setup(format!("cannot run {program}: {e}")))?;
    if !out.status.success() {
        return Err(LabError::Setup(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn ip(args: &[&str]) -> Result<String, LabError> {
    run("ip", args)
}

/// Runs `args` inside namespace `netns`.
pub fn in_netns(netns: &str, args: &[&str]) -> Result<String, LabError> {
    let mut full = vec!["netns", "exec", netns];
    full.extend_from_slice(args);
    run("ip", &full)
}

/// Starts `args` in `netns` in the background as `uid` (0: root; with
/// `net_admin`, the UID keeps CAP_NET_ADMIN), logging to `log`. Returns the PID.
pub fn spawn_in_netns(
    netns: &str,
    uid: u32,
    net_admin: bool,
    args: &[String],
    log: &Path,
) -> Result<u32, LabError> {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", netns]);
    if uid != 0 {
        let id = uid.to_string();
        cmd.args(["setpriv", "--reuid", &id, "--regid", &id, "--clear-groups"]);
        if net_admin {
            cmd.args(["--inh-caps", "+net_admin", "--ambient-caps", "+net_admin"]);
        }
        cmd.arg("--");
    }
    cmd.args(args);
    // Errors, not backtraces, in the logs the lab quotes.
    cmd.env("RUST_BACKTRACE", "0");
    let out = File::create(log)?;
    let err = out.try_clone()?;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0)
        .spawn()
        .map_err(|e| LabError::Setup(format!("cannot start {}: {e}", args.join(" "))))?;
    Ok(child.id())
}

/// Every lab namespace present on the host.
pub fn lab_namespaces() -> Vec<String> {
    run("ip", &["netns", "list"])
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(NETNS_PREFIX))
        .map(str::to_string)
        .collect()
}

/// Kills every process in the lab's namespaces and deletes them, and the
/// state directory. Safe to run on a host with no lab, or a half-made one.
pub fn tear_down(state: &Path) -> Result<usize, LabError> {
    let namespaces = lab_namespaces();
    for ns in &namespaces {
        kill_all_in(ns);
    }
    for ns in &namespaces {
        // Deleting the namespace removes its veths and the bridge with it.
        let _ = ip(&["netns", "delete", ns]);
    }
    if state.join("state.json").exists() || state.join("manifests").exists() {
        std::fs::remove_dir_all(state)?;
    }
    let left = lab_namespaces();
    if !left.is_empty() {
        return Err(LabError::Setup(format!(
            "could not delete namespaces: {}",
            left.join(", ")
        )));
    }
    Ok(namespaces.len())
}

fn kill_all_in(ns: &str) {
    for signal in ["TERM", "KILL"] {
        let pids = run("ip", &["netns", "pids", ns]).unwrap_or_default();
        let pids: Vec<&str> = pids.split_whitespace().collect();
        if pids.is_empty() {
            return;
        }
        let mut args = vec!["-s", signal];
        args.extend(&pids);
        let _ = run("kill", &args);
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if run("ip", &["netns", "pids", ns])
                .unwrap_or_default()
                .trim()
                .is_empty()
            {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}
