//! `palisade diff`: the connections whose verdict a change of manifests
//! changes, on the upstream netpol topology (namespaces x, y, z; pods a,
//! b, c serving 80 and 81 on TCP, UDP and SCTP).
mod policy_support;

use std::process::Command;

use palisade_api::Protocol;
use palisade_control::reach::{self, Scope};
use policy_support::{load, xyz_topology};

const DENY_X: &str = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: x, name: deny-all}\nspec:\n  podSelector: {}\n  policyTypes: [Ingress]\n";

/// x/a admits namespace y on TCP 80.
const ALLOW_Y_TO_A: &str = "---\napiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata: {namespace: x, name: a-from-y}\nspec:\n  podSelector: {matchLabels: {pod: a}}\n  policyTypes: [Ingress]\n  ingress:\n    - from: [{namespaceSelector: {matchLabels: {ns: y}}}]\n      ports: [{port: 80, protocol: TCP}]\n";

fn diff(before: &str, after: &str, scope: &Scope) -> reach::Diff {
    let topo = xyz_topology();
    let before = load(&[&format!("{topo}{before}")]);
    let after = load(&[&format!("{topo}{after}")]);
    reach::diff(
        &reach::reachability(&before, scope),
        &reach::reachability(&after, scope),
    )
}

#[test]
fn a_new_rule_shows_exactly_the_connections_it_opens() {
    let d = diff(
        DENY_X,
        &format!("{DENY_X}{ALLOW_Y_TO_A}"),
        &Scope::default(),
    );
    // 9 pods, each to 8 others on 6 ports.
    assert_eq!(d.compared, 9 * 8 * 6);
    let opened: Vec<(String, String, u16, Protocol)> = d
        .changes
        .iter()
        .map(|c| (c.from.clone(), c.to.clone(), c.port, c.protocol))
        .collect();
    assert_eq!(
        opened,
        ["y/a", "y/b", "y/c"].map(|from| (from.to_string(), "x/a".to_string(), 80, Protocol::Tcp))
    );
    for c in &d.changes {
        assert!(c.allowed_after && !c.allowed_before);
        assert!(c.why_after.contains("x/a-from-y"), "{}", c.why_after);
        assert!(c.why_before.contains("x/deny-all"), "{}", c.why_before);
    }
    let text = reach::text(&d);
    assert!(
        text.contains("+ y/a -> x/a TCP 80: now allowed")
            && text.contains("3 newly allowed, 0 newly denied"),
        "{text}"
    );
}

#[test]
fn removing_a_rule_shows_what_it_closes_and_scope_narrows_the_question() {
    let d = diff(
        &format!("{DENY_X}{ALLOW_Y_TO_A}"),
        DENY_X,
        &Scope::default(),
    );
    assert_eq!(d.changes.len(), 3);
    assert!(
        d.changes
            .iter()
            .all(|c| !c.allowed_after && c.allowed_before)
    );
    assert!(reach::text(&d).contains("- y/b -> x/a TCP 80: now denied"));

    // Only connections touching namespace z: none of them changed.
    let z = Scope {
        namespaces: vec!["z".into()],
        ..Scope::default()
    };
    let d = diff(&format!("{DENY_X}{ALLOW_Y_TO_A}"), DENY_X, &z);
    assert!(d.changes.is_empty());
    // z's three pods to the six others and back, and among themselves.
    assert_eq!(d.compared, (3 * 6 * 2 + 3 * 2) * 6);

    // A caller from outside the cluster, judged beside the pods.
    let outside = Scope {
        externals: vec!["203.0.113.9".parse().unwrap()],
        ..Scope::default()
    };
    let d = diff("", DENY_X, &outside);
    assert!(
        d.changes
            .iter()
            .any(|c| c.from == "203.0.113.9" && c.to == "x/b" && !c.allowed_after),
        "{:?}",
        d.changes
    );
}

#[test]
fn pods_on_one_side_only_are_counted_not_compared() {
    let extra = "---\napiVersion: v1\nkind: Pod\nmetadata: {namespace: x, name: d, labels: {pod: d}}\nspec:\n  containers: [{name: c, ports: [{containerPort: 80}]}]\nstatus: {podIP: 198.18.1.99}\n";
    let d = diff("", extra, &Scope::default());
    assert!(d.changes.is_empty());
    assert_eq!(d.only_before, 0);
    // d to the 9 others (6 ports each), and the 9 others to d on port 80.
    assert_eq!(d.only_after, 9 * 6 + 9);
}

#[test]
fn the_cli_exits_1_on_a_change_0_without_and_2_on_bad_input() {
    let tmp = tempfile::tempdir().unwrap();
    let write = |name: &str, extra: &str| {
        let dir = tmp.path().join(name);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("all.yaml"), format!("{}{extra}", xyz_topology())).unwrap();
        dir
    };
    let before = write("before", DENY_X);
    let after = write("after", &format!("{DENY_X}{ALLOW_Y_TO_A}"));
    let run = |a: &std::path::Path, b: &std::path::Path, json: bool| {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_palisade"));
        cmd.arg("diff").arg("--before").arg(a).arg("--after").arg(b);
        if json {
            cmd.args(["--output", "json"]);
        }
        cmd.output().unwrap()
    };
    let out = run(&before, &after, false);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("+ y/c -> x/a TCP 80"));
    let out = run(&before, &after, true);
    let json: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["changes"].as_array().unwrap().len(), 3);
    assert_eq!(json["changes"][0]["allowedAfter"], true);
    assert_eq!(run(&before, &before, false).status.code(), Some(0));
    let broken = write(
        "broken",
        "---\nkind: NetworkPolicy\napiVersion: networking.k8s.io/v1\nmetadata: {namespace: x, name: bad}\nspec: {podSelector: {}, ingres: []}\n",
    );
    let out = run(&before, &broken, false);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("ingres"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
