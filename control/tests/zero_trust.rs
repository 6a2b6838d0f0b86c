//! The zero-trust scenario of `examples/zero-trust/`: its expected matrix,
//! judged by `check` on the manifests as shipped, and `lint` being clean.
mod policy_support;

use std::path::Path;

use palisade_api::Protocol;
use palisade_control::check::{self, CheckRequest, Destination, HttpSpec, LayerVerdict, Source};
use palisade_control::cluster::{Cluster, PortRef};
use palisade_control::compile::Compiler;
use palisade_control::lint::{Severity, lint};
use palisade_control::load::load_dir;

fn example() -> Cluster {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/zero-trust");
    load_dir(&dir).unwrap_or_else(|e| panic!("{e}"))
}

#[derive(Clone, Copy)]
enum To<'a> {
    Pod(&'a str),
    Svc(&'a str),
    Ip(&'a str),
}

struct Case<'a> {
    from: &'a str,
    to: To<'a>,
    port: &'a str,
    protocol: Protocol,
    http: Option<(&'a str, &'a str)>,
    plaintext: bool,
    allow: bool,
    why: &'a str,
}

fn case<'a>(from: &'a str, to: To<'a>, port: &'a str, allow: bool, why: &'a str) -> Case<'a> {
    Case {
        from,
        to,
        port,
        protocol: Protocol::Tcp,
        http: None,
        plaintext: false,
        allow,
        why,
    }
}

fn run(cluster: &Cluster, c: &Case<'_>) -> check::CheckReport {
    let source = check::request::parse_source(cluster, c.from, None).unwrap();
    let destination = match c.to {
        To::Pod(p) | To::Ip(p) => check::request::parse_destination(cluster, p).unwrap(),
        To::Svc(s) => check::request::parse_destination(cluster, &format!("svc:{s}")).unwrap(),
    };
    let req = CheckRequest {
        source,
        destination,
        port: check::request::parse_port(c.port).unwrap(),
        protocol: c.protocol,
        http: c.http.map(|(m, p)| HttpSpec {
            method: m.into(),
            path: p.into(),
            host: None,
            headers: vec![],
        }),
        plaintext: c.plaintext,
        sni: None,
    };
    let compiler = Compiler::new(cluster);
    check::check(&compiler, &req).unwrap()
}

#[test]
fn zero_trust_matrix() {
    let cluster = example();
    let udp = |mut c: Case<'static>| {
        c.protocol = Protocol::Udp;
        c
    };
    let http = |mut c: Case<'static>, m: &'static str, p: &'static str| {
        c.http = Some((m, p));
        c
    };
    let plain = |mut c: Case<'static>| {
        c.plaintext = true;
        c
    };
    let web = "frontend/web-0";
    let api = To::Pod("backend/api-server-0");
    let cases = vec![
        // DNS from every application namespace, UDP and TCP 53.
        udp(case(
            web,
            To::Svc("kube-system/kube-dns"),
            "53",
            true,
            "allow-dns, UDP",
        )),
        case(
            web,
            To::Svc("kube-system/kube-dns"),
            "53",
            true,
            "allow-dns, TCP",
        ),
        udp(case(
            "backend/worker-0",
            To::Pod("kube-system/coredns-0"),
            "53",
            true,
            "allow-dns in backend",
        )),
        udp(case(
            "database/postgres-0",
            To::Pod("kube-system/coredns-1"),
            "53",
            true,
            "allow-dns in database",
        )),
        udp(case(
            web,
            To::Pod("kube-system/coredns-0"),
            "54",
            false,
            "only port 53",
        )),
        // Web only from ingress-nginx on 80.
        case(
            "ingress-nginx/ingress-nginx-controller-0",
            To::Pod("frontend/web-0"),
            "80",
            true,
            "web-from-ingress",
        ),
        case(
            "ingress-nginx/ingress-nginx-controller-0",
            To::Svc("frontend/web"),
            "http",
            true,
            "both endpoints",
        ),
        case(
            "ingress-nginx/ingress-nginx-controller-0",
            To::Pod("frontend/web-0"),
            "443",
            false,
            "only TCP 80",
        ),
        case(
            "monitoring/prometheus-0",
            To::Pod("frontend/web-0"),
            "80",
            false,
            "not from monitoring",
        ),
        case(
            "frontend/web-1",
            To::Pod("frontend/web-0"),
            "80",
            false,
            "default deny inside frontend",
        ),
        case(
            "203.0.113.7",
            To::Pod("frontend/web-0"),
            "80",
            false,
            "not from outside the cluster",
        ),
        // web -> api-server: L4 allowed on 8080; authorization per request.
        http(
            case(web, api, "8080", true, "GET orders"),
            "GET",
            "/api/v1/orders",
        ),
        http(
            case(web, api, "8080", true, "GET one order"),
            "GET",
            "/api/v1/orders/42",
        ),
        http(
            case(web, api, "8080", true, "POST orders"),
            "POST",
            "/api/v1/orders",
        ),
        http(
            case(web, api, "http", true, "named port"),
            "GET",
            "/api/v1/orders",
        ),
        http(
            case(
                web,
                To::Svc("backend/api-server"),
                "8080",
                true,
                "every endpoint",
            ),
            "GET",
            "/api/v1/orders/7",
        ),
        http(
            case(web, To::Ip("198.19.255.40"), "8080", true, "cluster IP"),
            "POST",
            "/api/v1/orders/7",
        ),
        http(
            case(web, api, "8080", false, "DELETE is not granted"),
            "DELETE",
            "/api/v1/orders/42",
        ),
        http(
            case(web, api, "8080", false, "other path"),
            "GET",
            "/api/v1/users",
        ),
        http(
            case(web, api, "8080", false, "web may not scrape"),
            "GET",
            "/metrics",
        ),
        // MERGE_SLASHES: `//api/v1//orders` is `/api/v1/orders`.
        http(
            case(web, api, "8080", true, "merged slashes"),
            "GET",
            "//api/v1//orders",
        ),
        http(
            case(web, api, "8080", false, "prefix without separator"),
            "GET",
            "/api/v1/ordersX",
        ),
        http(
            plain(case(web, api, "8080", false, "STRICT refuses plaintext")),
            "GET",
            "/api/v1/orders",
        ),
        case(
            web,
            api,
            "8080",
            false,
            "TCP: ALLOW rules with HTTP fields never match",
        ),
        case(web, api, "9090", false, "web-to-api only 8080"),
        // Prometheus GET /metrics only.
        http(
            case("monitoring/prometheus-0", api, "8080", true, "scrape"),
            "GET",
            "/metrics",
        ),
        http(
            case(
                "monitoring/prometheus-0",
                api,
                "8080",
                false,
                "POST /metrics",
            ),
            "POST",
            "/metrics",
        ),
        http(
            case("monitoring/prometheus-0", api, "8080", false, "no orders"),
            "GET",
            "/api/v1/orders",
        ),
        // Database only from app=api on 5432.
        case(
            "backend/api-server-1",
            To::Pod("database/postgres-0"),
            "5432",
            true,
            "postgres-from-api",
        ),
        case(
            "backend/api-server-1",
            To::Svc("database/postgres"),
            "5432",
            true,
            "via the Service",
        ),
        case(
            "backend/worker-0",
            To::Pod("database/postgres-0"),
            "5432",
            false,
            "worker is not app=api",
        ),
        case(
            web,
            To::Pod("database/postgres-0"),
            "5432",
            false,
            "frontend never reaches the database",
        ),
        case(
            "monitoring/prometheus-0",
            To::Pod("database/postgres-0"),
            "5432",
            false,
            "ingress only from api",
        ),
        plain(case(
            "backend/api-server-1",
            To::Pod("database/postgres-0"),
            "5432",
            false,
            "STRICT in database",
        )),
        // Internet egress on 443, but never the metadata endpoint.
        case(
            "backend/api-server-0",
            To::Ip("203.0.113.10"),
            "443",
            true,
            "ipBlock 0.0.0.0/0",
        ),
        case(
            "backend/api-server-0",
            To::Ip("169.254.169.254"),
            "443",
            false,
            "except 169.254.169.254/32",
        ),
        case(
            "backend/api-server-0",
            To::Ip("169.254.169.254"),
            "80",
            false,
            "metadata on 80",
        ),
        case(
            "backend/api-server-0",
            To::Ip("203.0.113.10"),
            "80",
            false,
            "only 443 outside",
        ),
        case(
            web,
            To::Ip("203.0.113.10"),
            "443",
            false,
            "web has no internet egress",
        ),
        case(
            "backend/worker-0",
            To::Ip("203.0.113.10"),
            "443",
            false,
            "worker has no internet egress",
        ),
    ];
    let mut wrong = Vec::new();
    for c in &cases {
        let report = run(&cluster, c);
        let got = report.verdict == LayerVerdict::Allow;
        if got != c.allow {
            wrong.push(format!(
                "{} -> {:?} port {} ({}): got {got}, want {}\n{}",
                c.from,
                match c.to {
                    To::Pod(p) | To::Svc(p) | To::Ip(p) => p,
                },
                c.port,
                c.why,
                c.allow,
                check::report::text(&report)
            ));
        }
    }
    assert!(
        wrong.is_empty(),
        "{} of {} cases wrong:\n{}",
        wrong.len(),
        cases.len(),
        wrong.join("\n")
    );
}

#[test]
fn zero_trust_is_lint_clean() {
    let findings = lint(&example());
    let bad: Vec<String> = findings
        .iter()
        .filter(|f| f.severity != Severity::Info)
        .map(|f| f.to_string())
        .collect();
    assert!(bad.is_empty(), "lint findings: {bad:#?}");
    // PERMISSIVE is in force outside backend and database, and lint says so.
    assert!(
        findings
            .iter()
            .any(|f| f.code == "permissive-mtls" && f.object == "Namespace frontend")
    );
    assert!(!findings.iter().any(|f| f.object == "Namespace backend"));
}

#[test]
fn zero_trust_strict_ports_refuse_plaintext_in_compiled_config() {
    let cluster = example();
    let compiler = Compiler::new(&cluster);
    let config = compiler.compile_named("backend/api-server-0").unwrap();
    assert_eq!(config.inbound.mtls, palisade_api::MtlsMode::Strict);
    assert!(config.inbound.ingress.isolated);
    assert!(config.outbound.egress.isolated);
    // The Services it may call: kube-dns (DNS) and postgres, not web; and
    // its own Service, since a pod's traffic to itself is always allowed.
    let names: Vec<&str> = config.services.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "backend/api-server",
            "database/postgres",
            "kube-system/kube-dns"
        ]
    );
    // The database port is opaque (server-first) for its callers.
    let pg = config
        .peers
        .iter()
        .find(|p| p.workload == "database/postgres-0")
        .unwrap();
    assert!(pg.opaque_ports.contains(&5432));
    assert_eq!(pg.mtls, palisade_api::MtlsMode::Strict);
    assert_eq!(
        pg.identity,
        "spiffe://cluster.local/ns/database/sa/postgres"
    );
    assert_eq!(config.version, config.compute_version());
    let _ = PortRef::Number(1);
    let _ = Source::External {
        ip: "192.0.2.1".parse().unwrap(),
    };
    let _ = Destination::External {
        ip: "192.0.2.1".parse().unwrap(),
    };
}
