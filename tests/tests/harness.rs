//! The harness cleans up after itself: namespaces and their processes go on
//! drop, on panic, and leftovers of a killed run go at the next start.
use std::process::Command;

use palisade_e2e::TestNet;

fn netns_list() -> String {
    let out = Command::new("ip").args(["netns", "list"]).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn process_alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .unwrap_or_default()
            .contains(") Z ")
}

#[test]
fn drop_removes_namespaces_and_kills_processes() {
    let net = TestNet::new("harnessdrop").unwrap();
    let pod = net.pod("a").unwrap();
    let other = net.pod("b").unwrap();
    let mut cmd = pod.command("sleep");
    cmd.arg("300");
    let pid = pod.spawn(cmd).unwrap();
    // A grandchild the harness did not spawn itself is killed too.
    let out = pod
        .exec_ok(&["sh", "-c", "sleep 300 >/dev/null 2>&1 & echo $!"])
        .unwrap();
    let orphan: u32 = out.trim().parse().unwrap();
    // The pods really are connected through the hub's bridge.
    let rx = palisade_e2e::udp::bind(&other, (other.ip, 7000).into()).unwrap();
    let tx = palisade_e2e::udp::bind(&pod, (pod.ip, 7001).into()).unwrap();
    assert!(palisade_e2e::udp::delivered(&tx, (other.ip, 7000).into(), &rx, b"hi").unwrap());
    let (ns, hub) = (pod.ns.clone(), net.hub().to_string());
    assert!(netns_list().contains(&ns));
    drop(pod);
    drop(other);
    drop(net);
    let list = netns_list();
    assert!(!list.contains(&ns) && !list.contains(&hub), "{list}");
    assert!(!process_alive(pid), "spawned process survived");
    assert!(
        !process_alive(orphan),
        "process started inside the pod survived"
    );
}

#[test]
fn panic_still_cleans_up() {
    let names = std::sync::Mutex::new(Vec::new());
    let result = std::panic::catch_unwind(|| {
        let net = TestNet::new("harnesspanic").unwrap();
        let pod = net.pod("a").unwrap();
        names
            .lock()
            .unwrap()
            .extend([pod.ns.clone(), net.hub().to_string()]);
        panic!("test failure inside the namespace");
    });
    assert!(result.is_err());
    let list = netns_list();
    for name in names.lock().unwrap().iter() {
        assert!(!list.contains(name.as_str()), "{name} left behind: {list}");
    }
}

#[test]
fn stale_namespaces_of_dead_runs_are_removed() {
    // PIDs never exceed 2^22 on Linux, so this "run" is certainly dead.
    let stale = "palisade-harnessstale-4194999-a";
    let stale_hub = "palisade-net-harnessstale-4194999";
    for name in [stale, stale_hub] {
        let _ = Command::new("ip").args(["netns", "add", name]).status();
    }
    assert!(netns_list().contains(stale));
    let net = TestNet::new("harnessstale").unwrap();
    let list = netns_list();
    assert!(!list.contains(stale) && !list.contains(stale_hub), "{list}");
    // The live run's own namespace is kept.
    assert!(list.contains(net.hub()));
}

#[test]
fn bad_test_names_are_refused() {
    assert!(TestNet::new("has-dash").is_err());
    assert!(TestNet::new("").is_err());
}
