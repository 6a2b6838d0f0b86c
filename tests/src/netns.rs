//! Test pods: network namespaces `palisade-<test>-<pid>-<pod>`, each with an
//! `eth0` veth whose peer sits on bridge `palisade-br0` inside the hub
//! namespace `palisade-net-<test>-<pid>`. Pods get 198.18.0.<n>/24 (RFC 2544
//! benchmarking range) and 2001:2::<n>/64 (its IPv6 twin, RFC 5180).
//!
//! Dropping a [`Pod`] kills every process in its namespace and deletes it;
//! dropping the [`TestNet`] deletes the hub with the bridge and veths.
use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crate::{HarnessError, Result};

const BRIDGE: &str = "palisade-br0";

/// One test's network: the hub namespace with its bridge.
pub struct TestNet {
    test: String,
    hub: String,
    next_host: AtomicU8,
}

/// One test pod: a network namespace on the test's bridge.
pub struct Pod {
    pub name: String,
    /// The namespace name (`ip netns exec <ns> ...`).
    pub ns: String,
    pub ip: Ipv4Addr,
    pub ip6: Ipv6Addr,
    /// The veth end on the bridge, in the hub namespace.
    pub hub_veth: String,
    hub: String,
    children: Mutex<Vec<Child>>,
}

impl TestNet {
    /// Creates the hub namespace for `test` (letters and digits only),
    /// first removing what an earlier, killed run of the same test left.
    pub fn new(test: &str) -> Result<TestNet> {
        crate::require_root();
        crate::require_tools(&[("ip", "iproute2")]);
        if test.is_empty() || !test.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(HarnessError::Setup(format!(
                "test name `{test}` must be letters and digits"
            )));
        }
        cleanup_stale(test)?;
        let pid = std::process::id();
        let hub = format!("palisade-net-{test}-{pid}");
        let net = TestNet {
            test: test.to_string(),
            hub: hub.clone(),
            next_host: AtomicU8::new(2),
        };
        ip(&["netns", "add", &hub])?;
        ip(&["-n", &hub, "link", "set", "lo", "up"])?;
        ip(&["-n", &hub, "link", "add", BRIDGE, "type", "bridge"])?;
        ip(&["-n", &hub, "link", "set", BRIDGE, "up"])?;
        Ok(net)
    }

    pub fn hub(&self) -> &str {
        &self.hub
    }

    /// Adds a pod with the next free address.
    pub fn pod(&self, name: &str) -> Result<Pod> {
        let host = self.next_host.fetch_add(1, Ordering::SeqCst);
        if host == 0 || host == 255 {
            return Err(HarnessError::Setup("too many pods in one TestNet".into()));
        }
        let ns = format!("palisade-{}-{}-{name}", self.test, std::process::id());
        let hub_veth = format!("veth{host}");
        let ip4 = Ipv4Addr::new(198, 18, 0, host);
        let ip6 = Ipv6Addr::new(0x2001, 2, 0, 0, 0, 0, 0, u16::from(host));
        ip(&["netns", "add", &ns])?;
        let pod = Pod {
            name: name.to_string(),
            ns: ns.clone(),
            ip: ip4,
            ip6,
            hub_veth: hub_veth.clone(),
            hub: self.hub.clone(),
            children: Mutex::new(Vec::new()),
        };
        let hub = self.hub.as_str();
        ip(&[
            "-n", hub, "link", "add", &hub_veth, "type", "veth", "peer", "name", "eth0", "netns",
            &ns,
        ])?;
        ip(&["-n", hub, "link", "set", &hub_veth, "master", BRIDGE])?;
        ip(&["-n", hub, "link", "set", &hub_veth, "up"])?;
        ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip4}/24"),
            "dev",
            "eth0",
        ])?;
        ip(&[
            "-n",
            &ns,
            "addr",
            "add",
            &format!("{ip6}/64"),
            "dev",
            "eth0",
            "nodad",
        ])?;
        ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
        Ok(pod)
    }
}

impl Drop for TestNet {
    fn drop(&mut self) {
        delete_netns(&self.hub);
    }
}

impl Pod {
    /// A command that runs `program` inside this pod's namespace.
    pub fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", &self.ns, program]);
        cmd
    }

    /// A command that runs `program` inside this pod as `uid` (and gid
    /// `uid`), with no supplementary groups.
    pub fn command_as(&self, uid: u32, program: &str) -> Command {
        let mut cmd = self.command("setpriv");
        let id = uid.to_string();
        cmd.args([
            "--reuid",
            &id,
            "--regid",
            &id,
            "--clear-groups",
            "--",
            program,
        ]);
        cmd
    }

    /// [`Pod::command_as`] that also keeps CAP_NET_ADMIN (ambient, so tools
    /// it runs such as `nft` inherit it): a sidecar managing its own
    /// pod's netfilter rules.
    pub fn command_as_net_admin(&self, uid: u32, program: &str) -> Command {
        let mut cmd = self.command("setpriv");
        let id = uid.to_string();
        cmd.args([
            "--reuid",
            &id,
            "--regid",
            &id,
            "--clear-groups",
            "--inh-caps",
            "+net_admin",
            "--ambient-caps",
            "+net_admin",
            "--",
            program,
        ]);
        cmd
    }

    /// Runs `args` in the pod to completion and returns its output.
    pub fn exec(&self, args: &[&str]) -> Result<Output> {
        let (program, rest) = split(args)?;
        Ok(self
            .command(program)
            .args(rest)
            .stdin(Stdio::null())
            .output()?)
    }

    /// Runs `args` in the pod; fails unless it exits 0. Returns stdout.
    pub fn exec_ok(&self, args: &[&str]) -> Result<String> {
        check(args, self.exec(args)?)
    }

    /// Starts `cmd` (built with [`Pod::command`]) and tracks it: it is killed
    /// when the pod is dropped. Returns its PID.
    pub fn spawn(&self, mut cmd: Command) -> Result<u32> {
        let child = cmd.stdin(Stdio::null()).spawn()?;
        let pid = child.id();
        self.children
            .lock()
            .map_err(|_| HarnessError::Setup("poisoned".into()))?
            .push(child);
        Ok(pid)
    }

    /// Runs `f` on a thread inside this pod's network namespace and returns
    /// its result. Sockets created there stay in the namespace, so a test can
    /// bind or connect in the pod and use the socket from anywhere.
    pub fn enter<R, F>(&self, f: F) -> Result<R>
    where
        F: FnOnce() -> R + Send,
        R: Send,
    {
        let file = File::open(format!("/run/netns/{}", self.ns))?;
        thread::scope(|s| {
            s.spawn(move || {
                // SAFETY: setns on a valid namespace fd only changes this
                // thread's network namespace; the thread ends after `f`.
                let ret = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
                if ret != 0 {
                    return Err(HarnessError::Io(std::io::Error::last_os_error()));
                }
                Ok(f())
            })
            .join()
            .map_err(|_| HarnessError::Setup("the thread inside the namespace panicked".into()))?
        })
    }

    /// Waits until something listens on TCP `port` at `addr` as seen from
    /// inside this pod.
    pub fn wait_for_tcp(&self, addr: &str, port: u16, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let target = format!("{addr}:{port}");
        loop {
            let ok = self.enter(|| {
                let sock_addr: std::net::SocketAddr = target.parse().ok()?;
                std::net::TcpStream::connect_timeout(&sock_addr, Duration::from_millis(200)).ok()
            })?;
            if ok.is_some() {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(HarnessError::Setup(format!(
                    "nothing listened on {target} in {} within {timeout:?}",
                    self.ns
                )));
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Whether a tracked child has exited (e.g. a sidecar that crashed).
    pub fn exited(&self, pid: u32) -> Option<std::process::ExitStatus> {
        let mut children = self.children.lock().ok()?;
        let child = children.iter_mut().find(|c| c.id() == pid)?;
        child.try_wait().ok().flatten()
    }

    /// The hub namespace, where `hub_veth` can be captured on.
    pub fn hub(&self) -> &str {
        &self.hub
    }
}

impl Drop for Pod {
    fn drop(&mut self) {
        if let Ok(mut children) = self.children.lock() {
            for child in children.iter_mut() {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        delete_netns(&self.ns);
    }
}

/// Removes namespaces named for `test` whose creating process is gone
/// (left by a run that was killed before its drops ran).
pub fn cleanup_stale(test: &str) -> Result<()> {
    let list = ip(&["netns", "list"])?;
    for line in list.lines() {
        let Some(name) = line.split_whitespace().next() else {
            continue;
        };
        let rest = name
            .strip_prefix(&format!("palisade-net-{test}-"))
            .or_else(|| name.strip_prefix(&format!("palisade-{test}-")));
        let Some(rest) = rest else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        if !process_alive(pid) {
            delete_netns(name);
        }
    }
    Ok(())
}

fn process_alive(pid: i32) -> bool {
    // SAFETY: signal 0 only checks for existence and permission.
    unsafe { libc::kill(pid, 0) == 0 }
}

/// Kills every process in `ns`, then deletes it. Best effort: used in Drop.
fn delete_netns(ns: &str) {
    if let Ok(pids) = ip(&["netns", "pids", ns]) {
        for pid in pids
            .split_whitespace()
            .filter_map(|p| p.parse::<i32>().ok())
        {
            // SAFETY: plain kill(2) of a process found in the test's namespace.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
    if ip(&["netns", "del", ns]).is_err() {
        tracing::warn!(ns, "could not delete the namespace");
    }
}

fn ip(args: &[&str]) -> Result<String> {
    let out = Command::new("ip")
        .args(args)
        .stdin(Stdio::null())
        .output()?;
    let mut full = vec!["ip"];
    full.extend_from_slice(args);
    check(&full, out)
}

fn split<'a>(args: &'a [&'a str]) -> Result<(&'a str, &'a [&'a str])> {
    args.split_first()
        .map(|(p, rest)| (*p, rest))
        .ok_or_else(|| HarnessError::Setup("empty command".into()))
}

fn check(args: &[&str], out: Output) -> Result<String> {
    if out.status.success() {
        return Ok(String::from_utf8_lossy(&out.stdout).into_owned());
    }
    Err(HarnessError::Command {
        command: args.join(" "),
        detail: format!(
            "{}: {}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim(),
            String::from_utf8_lossy(&out.stdout).trim()
        ),
    })
}
