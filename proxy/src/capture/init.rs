//! `palisade-proxy init [--uninstall]`: the iptables (nat table) rules that
//! redirect a pod's TCP traffic to its sidecar, installed idempotently in the
//! current network namespace for IPv4 (`iptables`) and IPv6 (`ip6tables`).
//!
//! ```text
//! PREROUTING -p tcp -> PALISADE_INBOUND
//!     inbound and admin ports, excluded ports      -> RETURN
//!     everything else                              -> PALISADE_IN_REDIRECT (REDIRECT :15006)
//! OUTPUT -p tcp -> PALISADE_OUTBOUND
//!     proxy's UID (and GID), -o lo, loopback dst,
//!     excluded outbound ports and CIDRs            -> RETURN
//!     everything else                              -> PALISADE_OUT_REDIRECT (REDIRECT :15001)
//! ```
//!
//! The chains are written in one `iptables-restore --noflush` transaction
//! (declaring a chain there flushes it, so a second run replaces rather than
//! duplicates); the jumps from `PREROUTING`/`OUTPUT` are added only when an
//! `iptables -C` check says they are missing.
use std::fmt::Write as _;

use super::cidr::Cidr;
use super::command::{self, CaptureError};

pub const INBOUND_CHAIN: &str = "PALISADE_INBOUND";
pub const IN_REDIRECT_CHAIN: &str = "PALISADE_IN_REDIRECT";
pub const OUTBOUND_CHAIN: &str = "PALISADE_OUTBOUND";
pub const OUT_REDIRECT_CHAIN: &str = "PALISADE_OUT_REDIRECT";
const CHAINS: [&str; 4] = [
    INBOUND_CHAIN,
    IN_REDIRECT_CHAIN,
    OUTBOUND_CHAIN,
    OUT_REDIRECT_CHAIN,
];

/// What `init` installs. `Default` is the standard sidecar layout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitOptions {
    /// The UID the sidecar runs as; its own connections are never redirected.
    pub proxy_uid: u32,
    /// Optionally also exclude a GID.
    pub proxy_gid: Option<u32>,
    pub inbound_port: u16,
    pub outbound_port: u16,
    pub admin_port: u16,
    /// Inbound destination ports that reach the app directly.
    pub exclude_inbound_ports: Vec<u16>,
    /// Outbound destination ports that leave without the sidecar.
    pub exclude_outbound_ports: Vec<u16>,
    /// Outbound destinations that leave without the sidecar.
    pub exclude_outbound_cidrs: Vec<Cidr>,
    /// Also install the IPv6 rules with `ip6tables`.
    pub ipv6: bool,
}

impl Default for InitOptions {
    fn default() -> Self {
        InitOptions {
            proxy_uid: 1337,
            proxy_gid: None,
            inbound_port: 15006,
            outbound_port: 15001,
            admin_port: 15000,
            exclude_inbound_ports: Vec::new(),
            exclude_outbound_ports: Vec::new(),
            exclude_outbound_cidrs: Vec::new(),
            ipv6: true,
        }
    }
}

/// `palisade-proxy init` flags. The CLI adds `Init(InitArgs)` to its
/// subcommands and calls [`InitArgs::run`].
#[derive(Debug, Clone, clap::Args)]
pub struct InitArgs {
    /// Remove every rule and chain `init` added, instead of installing.
    #[arg(long)]
    pub uninstall: bool,
    /// UID the sidecar runs as (its traffic is not redirected).
    #[arg(long, env = "PALISADE_PROXY_UID", default_value_t = 1337)]
    pub proxy_uid: u32,
    /// GID whose traffic is not redirected either.
    #[arg(long, env = "PALISADE_PROXY_GID")]
    pub proxy_gid: Option<u32>,
    #[arg(long, default_value_t = 15006)]
    pub inbound_port: u16,
    #[arg(long, default_value_t = 15001)]
    pub outbound_port: u16,
    #[arg(long, default_value_t = 15000)]
    pub admin_port: u16,
    /// Comma-separated inbound ports not redirected, e.g. `22,9090`.
    #[arg(long, value_delimiter = ',')]
    pub exclude_inbound_ports: Vec<u16>,
    /// Comma-separated outbound ports not redirected.
    #[arg(long, value_delimiter = ',')]
    pub exclude_outbound_ports: Vec<u16>,
    /// Comma-separated outbound destination CIDRs not redirected.
    #[arg(long, value_delimiter = ',')]
    pub exclude_outbound_cidrs: Vec<Cidr>,
    /// Skip the IPv6 (ip6tables) rules.
    #[arg(long)]
    pub no_ipv6: bool,
}

impl InitArgs {
    pub fn options(&self) -> InitOptions {
        InitOptions {
            proxy_uid: self.proxy_uid,
            proxy_gid: self.proxy_gid,
            inbound_port: self.inbound_port,
            outbound_port: self.outbound_port,
            admin_port: self.admin_port,
            exclude_inbound_ports: self.exclude_inbound_ports.clone(),
            exclude_outbound_ports: self.exclude_outbound_ports.clone(),
            exclude_outbound_cidrs: self.exclude_outbound_cidrs.clone(),
            ipv6: !self.no_ipv6,
        }
    }

    /// Installs or (with `--uninstall`) removes the capture rules.
    pub fn run(&self) -> Result<(), CaptureError> {
        if self.uninstall {
            uninstall(!self.no_ipv6)
        } else {
            install(&self.options())
        }
    }
}

/// IPv4 or IPv6, with its tools and loopback range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    fn iptables(self) -> &'static str {
        match self {
            Family::V4 => "iptables",
            Family::V6 => "ip6tables",
        }
    }

    fn restore(self) -> &'static str {
        match self {
            Family::V4 => "iptables-restore",
            Family::V6 => "ip6tables-restore",
        }
    }

    fn loopback(self) -> &'static str {
        match self {
            Family::V4 => "127.0.0.0/8",
            Family::V6 => "::1/128",
        }
    }

    fn families(ipv6: bool) -> &'static [Family] {
        if ipv6 {
            &[Family::V4, Family::V6]
        } else {
            &[Family::V4]
        }
    }
}

const PREROUTING_JUMP: [&str; 4] = ["-p", "tcp", "-j", INBOUND_CHAIN];
const OUTPUT_JUMP: [&str; 4] = ["-p", "tcp", "-j", OUTBOUND_CHAIN];

/// Installs the capture rules; running it again yields the same rules.
pub fn install(opts: &InitOptions) -> Result<(), CaptureError> {
    validate(opts)?;
    for &family in Family::families(opts.ipv6) {
        let tool = family.iptables();
        let has_prerouting = jump_exists(tool, "PREROUTING", &PREROUTING_JUMP)?;
        let has_output = jump_exists(tool, "OUTPUT", &OUTPUT_JUMP)?;
        let script = restore_script(opts, family, !has_prerouting, !has_output);
        command::run(family.restore(), &["-w", "--noflush"], Some(&script))?;
        tracing::info!(?family, "capture rules installed");
    }
    Ok(())
}

/// Removes every jump and chain [`install`] added; a no-op when none exist.
pub fn uninstall(ipv6: bool) -> Result<(), CaptureError> {
    for &family in Family::families(ipv6) {
        let tool = family.iptables();
        for (chain, jump) in [("PREROUTING", &PREROUTING_JUMP), ("OUTPUT", &OUTPUT_JUMP)] {
            // A jump added twice by hand would survive one delete; loop.
            while jump_exists(tool, chain, jump)? {
                let mut args = vec!["-w", "-t", "nat", "-D", chain];
                args.extend_from_slice(jump);
                command::run(tool, &args, None)?;
            }
        }
        let mut existing = Vec::new();
        for chain in CHAINS {
            if command::succeeds(tool, &["-w", "-t", "nat", "-n", "-L", chain])? {
                existing.push(chain);
            }
        }
        // Flush all first: the chains jump to each other.
        for chain in &existing {
            command::run(tool, &["-w", "-t", "nat", "-F", chain], None)?;
        }
        for chain in &existing {
            command::run(tool, &["-w", "-t", "nat", "-X", chain], None)?;
        }
        tracing::info!(?family, "capture rules removed");
    }
    Ok(())
}

fn jump_exists(tool: &str, chain: &str, jump: &[&str]) -> Result<bool, CaptureError> {
    let mut args = vec!["-w", "-t", "nat", "-C", chain];
    args.extend_from_slice(jump);
    command::succeeds(tool, &args)
}

fn validate(opts: &InitOptions) -> Result<(), CaptureError> {
    for (name, port) in [
        ("inbound", opts.inbound_port),
        ("outbound", opts.outbound_port),
        ("admin", opts.admin_port),
    ] {
        if port == 0 {
            return Err(CaptureError::InvalidOption(format!(
                "the {name} port must not be 0"
            )));
        }
    }
    if opts.inbound_port == opts.outbound_port {
        return Err(CaptureError::InvalidOption(
            "the inbound and outbound ports must differ".to_string(),
        ));
    }
    Ok(())
}

/// The `iptables-restore --noflush` input for one family.
pub fn restore_script(
    opts: &InitOptions,
    family: Family,
    add_prerouting: bool,
    add_output: bool,
) -> String {
    let mut s = String::from("*nat\n");
    for chain in CHAINS {
        let _ = writeln!(s, ":{chain} - [0:0]");
    }
    // Inbound: the inbound listener, admin and excluded ports go straight
    // in. The outbound port is deliberately not excluded: a remote client
    // dialing :15001 must land on the inbound path (and its policy), never
    // on the outbound listener, which would make the pod an open relay.
    let mut inbound_skip = vec![opts.inbound_port, opts.admin_port];
    inbound_skip.extend(&opts.exclude_inbound_ports);
    dedup(&mut inbound_skip);
    for port in inbound_skip {
        let _ = writeln!(s, "-A {INBOUND_CHAIN} -p tcp --dport {port} -j RETURN");
    }
    let _ = writeln!(s, "-A {INBOUND_CHAIN} -p tcp -j {IN_REDIRECT_CHAIN}");
    let _ = writeln!(
        s,
        "-A {IN_REDIRECT_CHAIN} -p tcp -j REDIRECT --to-ports {}",
        opts.inbound_port
    );
    // Outbound: the proxy itself, loopback and exclusions leave as they are.
    let _ = writeln!(
        s,
        "-A {OUTBOUND_CHAIN} -m owner --uid-owner {} -j RETURN",
        opts.proxy_uid
    );
    if let Some(gid) = opts.proxy_gid {
        let _ = writeln!(
            s,
            "-A {OUTBOUND_CHAIN} -m owner --gid-owner {gid} -j RETURN"
        );
    }
    let _ = writeln!(s, "-A {OUTBOUND_CHAIN} -o lo -j RETURN");
    let _ = writeln!(s, "-A {OUTBOUND_CHAIN} -d {} -j RETURN", family.loopback());
    let mut outbound_skip = opts.exclude_outbound_ports.clone();
    dedup(&mut outbound_skip);
    for port in outbound_skip {
        let _ = writeln!(s, "-A {OUTBOUND_CHAIN} -p tcp --dport {port} -j RETURN");
    }
    for cidr in &opts.exclude_outbound_cidrs {
        if cidr.is_ipv4() == (family == Family::V4) {
            let _ = writeln!(s, "-A {OUTBOUND_CHAIN} -d {cidr} -j RETURN");
        }
    }
    let _ = writeln!(s, "-A {OUTBOUND_CHAIN} -p tcp -j {OUT_REDIRECT_CHAIN}");
    let _ = writeln!(
        s,
        "-A {OUT_REDIRECT_CHAIN} -p tcp -j REDIRECT --to-ports {}",
        opts.outbound_port
    );
    if add_prerouting {
        let _ = writeln!(s, "-A PREROUTING {}", PREROUTING_JUMP.join(" "));
    }
    if add_output {
        let _ = writeln!(s, "-A OUTPUT {}", OUTPUT_JUMP.join(" "));
    }
    s.push_str("COMMIT\n");
    s
}

fn dedup(ports: &mut Vec<u16>) {
    ports.sort_unstable();
    ports.dedup();
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        init: InitArgs,
    }

    #[test]
    fn default_script_v4() {
        let script = restore_script(&InitOptions::default(), Family::V4, true, true);
        let expected = "\
*nat
:PALISADE_INBOUND - [0:0]
:PALISADE_IN_REDIRECT - [0:0]
:PALISADE_OUTBOUND - [0:0]
:PALISADE_OUT_REDIRECT - [0:0]
-A PALISADE_INBOUND -p tcp --dport 15000 -j RETURN
-A PALISADE_INBOUND -p tcp --dport 15006 -j RETURN
-A PALISADE_INBOUND -p tcp -j PALISADE_IN_REDIRECT
-A PALISADE_IN_REDIRECT -p tcp -j REDIRECT --to-ports 15006
-A PALISADE_OUTBOUND -m owner --uid-owner 1337 -j RETURN
-A PALISADE_OUTBOUND -o lo -j RETURN
-A PALISADE_OUTBOUND -d 127.0.0.0/8 -j RETURN
-A PALISADE_OUTBOUND -p tcp -j PALISADE_OUT_REDIRECT
-A PALISADE_OUT_REDIRECT -p tcp -j REDIRECT --to-ports 15001
-A PREROUTING -p tcp -j PALISADE_INBOUND
-A OUTPUT -p tcp -j PALISADE_OUTBOUND
COMMIT
";
        assert_eq!(script, expected);
    }

    #[test]
    fn exclusions_and_families() {
        let opts = InitOptions {
            proxy_gid: Some(1338),
            exclude_inbound_ports: vec![22, 22, 9090],
            exclude_outbound_ports: vec![5432],
            exclude_outbound_cidrs: vec![
                "192.0.2.0/24".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            ..InitOptions::default()
        };
        let v4 = restore_script(&opts, Family::V4, false, false);
        assert_eq!(v4.matches("--dport 22 ").count(), 1, "{v4}");
        assert!(v4.contains("-A PALISADE_INBOUND -p tcp --dport 9090 -j RETURN"));
        assert!(v4.contains("-A PALISADE_OUTBOUND -m owner --gid-owner 1338 -j RETURN"));
        assert!(v4.contains("-A PALISADE_OUTBOUND -p tcp --dport 5432 -j RETURN"));
        assert!(v4.contains("-d 192.0.2.0/24 -j RETURN"));
        assert!(!v4.contains("2001:db8"));
        assert!(!v4.contains("-A PREROUTING") && !v4.contains("-A OUTPUT"));
        let v6 = restore_script(&opts, Family::V6, true, false);
        assert!(v6.contains("-d ::1/128 -j RETURN"));
        assert!(v6.contains("-d 2001:db8::/32 -j RETURN"));
        assert!(!v6.contains("192.0.2.0"));
        assert!(v6.contains("-A PREROUTING -p tcp -j PALISADE_INBOUND"));
        // Exclusions come before the redirect jump.
        let redirect = v4.find("-j PALISADE_OUT_REDIRECT").unwrap();
        assert!(v4.find("5432").unwrap() < redirect);
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "init",
            "--proxy-uid",
            "1400",
            "--exclude-inbound-ports",
            "22,9090",
            "--exclude-outbound-cidrs",
            "192.0.2.0/24,203.0.113.0/24",
            "--no-ipv6",
        ])
        .unwrap();
        let opts = cli.init.options();
        assert_eq!(opts.proxy_uid, 1400);
        assert_eq!(opts.exclude_inbound_ports, vec![22, 9090]);
        assert_eq!(opts.exclude_outbound_cidrs.len(), 2);
        assert!(!opts.ipv6);
        assert!(!cli.init.uninstall);
    }

    #[test]
    fn bad_flags_are_clear_errors() {
        let err = Cli::try_parse_from(["init", "--exclude-outbound-cidrs", "10.0.0.0/40"])
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("prefix length"), "{err}");
        assert!(Cli::try_parse_from(["init", "--exclude-inbound-ports", "70000"]).is_err());
        let same = InitOptions {
            outbound_port: 15006,
            ..InitOptions::default()
        };
        assert!(matches!(
            install(&same),
            Err(CaptureError::InvalidOption(_))
        ));
    }
}
