//! Helpers shared by the authorization table tests: policies from YAML,
//! requests from a few words.
#![allow(dead_code)]

use std::net::IpAddr;

use http::HeaderMap;
use palisade_api::authz::{CompiledAuthz, Decision, HttpRequest, RequestContext, Verdict};
use palisade_api::{AuthorizationPolicy, MeshSettings, PathNormalization};

pub fn mesh() -> MeshSettings {
    MeshSettings {
        trust_domain: "cluster.local".into(),
        trust_domain_aliases: vec![],
        path_normalization: PathNormalization::MergeSlashes,
        cluster_domain: palisade_api::sni::DEFAULT_CLUSTER_DOMAIN.into(),
        federated_bundles: Default::default(),
        trust_bundle: String::new(),
        svid_signer: String::new(),
    }
}

pub fn policies(yaml: &str) -> Vec<AuthorizationPolicy> {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("bad test YAML: {e}\n{yaml}"))
}

pub fn compile(yaml: &str) -> CompiledAuthz {
    CompiledAuthz::new(&policies(yaml), &mesh()).unwrap_or_else(|e| panic!("{e}"))
}

pub fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A request description; `http: None` is TCP.
#[derive(Clone, Debug)]
pub struct Req {
    pub peer: Option<String>,
    pub src: IpAddr,
    pub dst: IpAddr,
    pub port: u16,
    pub sni: Option<String>,
    pub http: Option<(String, String, String, HeaderMap)>,
}

pub fn tcp_from(peer: Option<&str>) -> Req {
    Req {
        peer: peer.map(|p| format!("spiffe://{p}")),
        src: ip("198.18.0.2"),
        dst: ip("198.18.0.9"),
        port: 8080,
        sni: None,
        http: None,
    }
}

pub fn get(path: &str) -> Req {
    tcp_from(Some("cluster.local/ns/default/sa/sleep")).http("GET", path, "httpbin.default")
}

impl Req {
    pub fn http(mut self, method: &str, path: &str, host: &str) -> Self {
        self.http = Some((method.into(), path.into(), host.into(), HeaderMap::new()));
        self
    }
    pub fn header(mut self, name: &'static str, value: &str) -> Self {
        if let Some((_, _, _, h)) = &mut self.http {
            h.append(name, value.parse().unwrap());
        }
        self
    }
    pub fn peer(mut self, p: Option<&str>) -> Self {
        self.peer = p.map(|p| format!("spiffe://{p}"));
        self
    }
    pub fn raw_peer(mut self, p: &str) -> Self {
        self.peer = Some(p.into());
        self
    }
    pub fn src(mut self, s: &str) -> Self {
        self.src = ip(s);
        self
    }
    pub fn dst(mut self, s: &str, port: u16) -> Self {
        self.dst = ip(s);
        self.port = port;
        self
    }
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }
    pub fn sni(mut self, s: &str) -> Self {
        self.sni = Some(s.into());
        self
    }

    pub fn eval(&self, authz: &CompiledAuthz) -> Decision {
        let mut ctx = RequestContext::tcp(self.peer.as_deref(), self.src, self.dst, self.port);
        if let Some(s) = &self.sni {
            ctx = ctx.with_sni(s);
        }
        if let Some((method, path, host, headers)) = &self.http {
            ctx = ctx.with_http(HttpRequest {
                method,
                path,
                host,
                headers,
            });
        }
        authz.evaluate(&ctx)
    }

    pub fn allowed(&self, authz: &CompiledAuthz) -> bool {
        self.eval(authz).verdict == Verdict::Allow
    }
}
