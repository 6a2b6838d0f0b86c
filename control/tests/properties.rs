//! Property tests over random policy sets on the x/y/z, a/b/c topology:
//! adding an ALLOW-type rule never removes an allowed connection, adding a
//! DENY never adds one, and file and document order never change a verdict.
mod policy_support;

use std::collections::BTreeMap;
use std::path::PathBuf;

use palisade_api::Protocol;
use palisade_control::check::{self, HttpSpec};
use palisade_control::cluster::Cluster;
use palisade_control::compile::Compiler;
use palisade_control::load::load_sources;
use policy_support::{NAMESPACES, PODS, allowed, request, xyz_ip, xyz_topology};
use proptest::prelude::*;

#[derive(Debug, Clone)]
enum PeerGen {
    Pods {
        ns: Option<usize>,
        all_ns: bool,
        pod: Option<usize>,
    },
    Block {
        host: (usize, usize),
        wide: bool,
        except: Option<(usize, usize)>,
    },
}

#[derive(Debug, Clone)]
struct RuleGen {
    peers: Option<Vec<PeerGen>>,
    ports: Option<Vec<(u8, bool)>>,
}

#[derive(Debug, Clone)]
struct NetpolGen {
    ns: usize,
    pod: Option<usize>,
    ingress: Option<Vec<RuleGen>>,
    egress: Option<Vec<RuleGen>>,
}

#[derive(Debug, Clone)]
struct AuthzRuleGen {
    from_ns: Option<usize>,
    method: Option<bool>,
}

#[derive(Debug, Clone)]
struct AuthzGen {
    ns: usize,
    pod: Option<usize>,
    deny: bool,
    rules: Vec<AuthzRuleGen>,
}

fn peer() -> impl Strategy<Value = PeerGen> {
    prop_oneof![
        (
            proptest::option::of(0..3usize),
            any::<bool>(),
            proptest::option::of(0..3usize)
        )
            .prop_map(|(ns, all_ns, pod)| PeerGen::Pods { ns, all_ns, pod }),
        (
            (0..3usize, 0..3usize),
            any::<bool>(),
            proptest::option::of((0..3usize, 0..3usize))
        )
            .prop_map(|(host, wide, except)| PeerGen::Block { host, wide, except }),
    ]
}

fn rule() -> impl Strategy<Value = RuleGen> {
    (
        proptest::option::of(proptest::collection::vec(peer(), 1..3)),
        proptest::option::of(proptest::collection::vec((0..3u8, any::<bool>()), 1..3)),
    )
        .prop_map(|(peers, ports)| RuleGen { peers, ports })
}

fn netpol() -> impl Strategy<Value = NetpolGen> {
    (
        0..3usize,
        proptest::option::of(0..3usize),
        proptest::option::of(proptest::collection::vec(rule(), 0..3)),
        proptest::option::of(proptest::collection::vec(rule(), 0..3)),
    )
        .prop_map(|(ns, pod, ingress, egress)| NetpolGen {
            ns,
            pod,
            ingress,
            egress,
        })
}

fn authz() -> impl Strategy<Value = AuthzGen> {
    (
        0..3usize,
        proptest::option::of(0..3usize),
        any::<bool>(),
        proptest::collection::vec(
            (
                proptest::option::of(0..3usize),
                proptest::option::of(any::<bool>()),
            )
                .prop_map(|(from_ns, method)| AuthzRuleGen { from_ns, method }),
            0..3,
        ),
    )
        .prop_map(|(ns, pod, deny, rules)| AuthzGen {
            ns,
            pod,
            deny,
            rules,
        })
}

fn render_peer(p: &PeerGen) -> String {
    match p {
        PeerGen::Pods { ns, all_ns, pod } => {
            let mut s = String::from("        - ");
            let mut first = true;
            if *all_ns {
                s.push_str("namespaceSelector: {}\n");
                first = false;
            } else if let Some(n) = ns {
                s.push_str(&format!(
                    "namespaceSelector:\n            matchLabels: {{ns: {}}}\n",
                    NAMESPACES[*n]
                ));
                first = false;
            }
            let pad = if first { "" } else { "          " };
            match pod {
                Some(p) => s.push_str(&format!(
                    "{pad}podSelector:\n            matchLabels: {{pod: {}}}\n",
                    PODS[*p]
                )),
                None if first => s.push_str("podSelector: {}\n"),
                None => {}
            }
            s
        }
        PeerGen::Block { host, wide, except } => {
            let ip = xyz_ip(&format!("{}/{}", NAMESPACES[host.0], PODS[host.1]));
            let cidr = if *wide {
                "198.18.0.0/15".to_string()
            } else {
                format!("{ip}/32")
            };
            let ex = match except {
                Some(e) if *wide => format!(
                    ", except: [{}/32]",
                    xyz_ip(&format!("{}/{}", NAMESPACES[e.0], PODS[e.1]))
                ),
                _ => String::new(),
            };
            format!("        - ipBlock: {{cidr: {cidr}{ex}}}\n")
        }
    }
}

fn render_rules(key: &str, peer_key: &str, rules: &[RuleGen]) -> String {
    if rules.is_empty() {
        return format!("  {key}: []\n");
    }
    let mut s = format!("  {key}:\n");
    for r in rules {
        s.push_str("    - ");
        let mut empty = true;
        if let Some(peers) = &r.peers {
            s.push_str(&format!("{peer_key}:\n"));
            for p in peers {
                s.push_str(&render_peer(p));
            }
            empty = false;
        }
        if let Some(ports) = &r.ports {
            s.push_str(if empty { "ports:\n" } else { "      ports:\n" });
            for (port, udp) in ports {
                let proto = if *udp { "UDP" } else { "TCP" };
                let port = match port {
                    0 => "80".to_string(),
                    1 => "81".to_string(),
                    _ => format!("serve-80-{}", proto.to_ascii_lowercase()),
                };
                s.push_str(&format!("        - {{port: {port}, protocol: {proto}}}\n"));
            }
            empty = false;
        }
        if empty {
            s.push_str("{}\n");
        }
    }
    s
}

fn render_netpol(i: usize, n: &NetpolGen) -> String {
    let sel = match n.pod {
        Some(p) => format!("\n    matchLabels: {{pod: {}}}", PODS[p]),
        None => " {}".into(),
    };
    let mut types = Vec::new();
    let mut body = String::new();
    if let Some(r) = &n.ingress {
        types.push("Ingress");
        body.push_str(&render_rules("ingress", "from", r));
    }
    if let Some(r) = &n.egress {
        types.push("Egress");
        body.push_str(&render_rules("egress", "to", r));
    }
    if types.is_empty() {
        types.push("Ingress");
    }
    format!(
        "apiVersion: networking.k8s.io/v1\nkind: NetworkPolicy\nmetadata:\n  namespace: {}\n  name: np{i}\nspec:\n  podSelector:{sel}\n  policyTypes: [{}]\n{body}",
        NAMESPACES[n.ns],
        types.join(", ")
    )
}

fn render_authz(i: usize, a: &AuthzGen) -> String {
    let sel = a
        .pod
        .map(|p| format!("  selector:\n    matchLabels: {{pod: {}}}\n", PODS[p]))
        .unwrap_or_default();
    let mut rules = String::new();
    if !a.rules.is_empty() {
        rules.push_str("  rules:\n");
        for r in &a.rules {
            let mut parts = Vec::new();
            if let Some(n) = r.from_ns {
                parts.push(format!(
                    "from: [{{source: {{namespaces: [{}]}}}}]",
                    NAMESPACES[n]
                ));
            }
            if let Some(get) = r.method {
                parts.push(format!(
                    "to: [{{operation: {{methods: [{}]}}}}]",
                    if get { "GET" } else { "POST" }
                ));
            }
            rules.push_str(&format!("    - {{{}}}\n", parts.join(", ")));
        }
    }
    format!(
        "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  namespace: {}\n  name: ap{i}\nspec:\n  action: {}\n{sel}{rules}",
        NAMESPACES[a.ns],
        if a.deny { "DENY" } else { "ALLOW" }
    )
}

fn documents(nps: &[NetpolGen], aps: &[AuthzGen]) -> Vec<String> {
    let mut docs: Vec<String> = nps
        .iter()
        .enumerate()
        .map(|(i, n)| render_netpol(i, n))
        .collect();
    // A DENY policy without rules never matches, and Istio refuses it
    // ("DENY action without `rules` is meaningless"): leave it out.
    docs.extend(
        aps.iter()
            .enumerate()
            .filter(|(_, a)| !(a.deny && a.rules.is_empty()))
            .map(|(i, a)| render_authz(i, a)),
    );
    docs
}

fn load_docs(files: Vec<Vec<String>>) -> Cluster {
    let mut sources = vec![(PathBuf::from("topology.yaml"), xyz_topology())];
    for (i, f) in files.into_iter().enumerate() {
        sources.push((PathBuf::from(format!("policies-{i}.yaml")), f.join("---\n")));
    }
    load_sources(&sources).unwrap_or_else(|e| panic!("{e}"))
}

/// (from, to, probe) -> allowed, where probes are TCP 80 GET, TCP 80 POST,
/// TCP 81 (plain TCP) and UDP 80.
fn matrix(cluster: &Cluster) -> BTreeMap<(String, String, u8), bool> {
    let compiler = Compiler::new(cluster);
    let pods: Vec<String> = NAMESPACES
        .iter()
        .flat_map(|n| PODS.iter().map(move |p| format!("{n}/{p}")))
        .collect();
    let mut out = BTreeMap::new();
    for f in &pods {
        for t in &pods {
            if f == t {
                continue;
            }
            for probe in 0..4u8 {
                let (port, proto, http) = match probe {
                    0 => (80, Protocol::Tcp, Some("GET")),
                    1 => (80, Protocol::Tcp, Some("POST")),
                    2 => (81, Protocol::Tcp, None),
                    _ => (80, Protocol::Udp, None),
                };
                let mut req = request(cluster, f, t, port, proto);
                req.http = http.map(|m| HttpSpec {
                    method: m.into(),
                    path: "/p".into(),
                    host: None,
                    headers: Vec::new(),
                });
                let r = check::check(&compiler, &req).unwrap();
                out.insert((f.clone(), t.clone(), probe), allowed(&r));
            }
        }
    }
    out
}

fn lost(
    before: &BTreeMap<(String, String, u8), bool>,
    after: &BTreeMap<(String, String, u8), bool>,
) -> Vec<String> {
    before
        .iter()
        .filter(|(k, v)| **v && !after[*k])
        .map(|(k, _)| format!("{k:?}"))
        .collect()
}

fn gained(
    before: &BTreeMap<(String, String, u8), bool>,
    after: &BTreeMap<(String, String, u8), bool>,
) -> Vec<String> {
    before
        .iter()
        .filter(|(k, v)| !**v && after[*k])
        .map(|(k, _)| format!("{k:?}"))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 16, ..ProptestConfig::default() })]

    #[test]
    fn adding_an_allow_rule_never_removes_a_connection(
        nps in proptest::collection::vec(netpol(), 1..4),
        aps in proptest::collection::vec(authz(), 0..3),
        target in any::<prop::sample::Index>(),
        extra in rule(),
        extra_authz in (proptest::option::of(0..3usize), proptest::option::of(any::<bool>())),
        ingress_side in any::<bool>(),
    ) {
        let before = matrix(&load_docs(vec![documents(&nps, &aps)]));
        // An extra rule in an existing NetworkPolicy of the type it isolates.
        let mut nps2 = nps.clone();
        let n = &mut nps2[target.index(nps.len())];
        match (&mut n.ingress, &mut n.egress) {
            (Some(r), _) if ingress_side => r.push(extra.clone()),
            (_, Some(r)) => r.push(extra.clone()),
            (Some(r), None) => r.push(extra.clone()),
            (None, None) => {}
        }
        // An extra rule in an existing ALLOW AuthorizationPolicy.
        let mut aps2 = aps.clone();
        if let Some(a) = aps2.iter_mut().find(|a| !a.deny) {
            a.rules.push(AuthzRuleGen { from_ns: extra_authz.0, method: extra_authz.1 });
        }
        let after = matrix(&load_docs(vec![documents(&nps2, &aps2)]));
        let l = lost(&before, &after);
        prop_assert!(l.is_empty(), "lost {l:?}");
    }

    #[test]
    fn adding_a_deny_never_adds_a_connection(
        nps in proptest::collection::vec(netpol(), 0..4),
        aps in proptest::collection::vec(authz(), 0..3),
        deny in authz(),
    ) {
        let before = matrix(&load_docs(vec![documents(&nps, &aps)]));
        let mut aps2 = aps.clone();
        aps2.push(AuthzGen { deny: true, ..deny });
        let after = matrix(&load_docs(vec![documents(&nps, &aps2)]));
        let g = gained(&before, &after);
        prop_assert!(g.is_empty(), "gained {g:?}");
    }

    #[test]
    fn file_and_document_order_never_change_a_verdict(
        nps in proptest::collection::vec(netpol(), 1..4),
        aps in proptest::collection::vec(authz(), 0..3),
        perm in Just(()).prop_perturb(|_, mut rng| rng.random::<u64>()),
        split in 1..3usize,
    ) {
        let docs = documents(&nps, &aps);
        let before = matrix(&load_docs(vec![docs.clone()]));
        // Shuffle the documents and spread them over several files.
        let mut shuffled = docs.clone();
        let mut seed = perm;
        for i in (1..shuffled.len()).rev() {
            seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            shuffled.swap(i, (seed >> 33) as usize % (i + 1));
        }
        let files: Vec<Vec<String>> = shuffled.chunks(split).map(|c| c.to_vec()).collect();
        let after = matrix(&load_docs(files));
        prop_assert_eq!(before, after);
    }
}
