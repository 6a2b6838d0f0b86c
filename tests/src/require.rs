//! Preconditions of the namespace tests. They are never skipped: a missing
//! tool or missing root fails the test with what to install or how to run.
use std::process::Command;

/// Panics unless running as root (the tests create namespaces and rules).
pub fn require_root() {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "network-namespace tests create namespaces, veths and netfilter rules: run them as root \
         (e.g. `sudo -E cargo test`)"
    );
}

/// Panics unless every `(binary, debian package)` is in PATH.
pub fn require_tools(tools: &[(&str, &str)]) {
    let missing: Vec<String> = tools
        .iter()
        .filter(|(bin, _)| !in_path(bin))
        .map(|(bin, pkg)| format!("`{bin}` (Debian package `{pkg}`)"))
        .collect();
    assert!(
        missing.is_empty(),
        "network-namespace tests need {}: apt-get install them",
        missing.join(", ")
    );
}

/// The tools every namespace test uses.
pub const BASE_TOOLS: &[(&str, &str)] = &[
    ("ip", "iproute2"),
    ("iptables", "iptables"),
    ("ip6tables", "iptables"),
    ("iptables-restore", "iptables"),
    ("nft", "nftables"),
    ("setpriv", "util-linux"),
];

fn in_path(bin: &str) -> bool {
    Command::new("sh")
        .args(["-c", &format!("command -v {bin}")])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false)
}
