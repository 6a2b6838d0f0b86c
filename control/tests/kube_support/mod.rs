//! A Kubernetes API server's list and watch protocol over real HTTP, for
//! the `--kube` tests (no kube-apiserver binary can be installed here):
//! cluster-wide `GET /api/v1/PLURAL` and `/apis/GROUP/VERSION/PLURAL`
//! answer a `KindList` with the current `resourceVersion` and items without
//! `apiVersion`/`kind`, as the API server sends them; `?watch=1` streams
//! `{"type": ADDED|MODIFIED|DELETED, "object": ...}` lines after the
//! requested `resourceVersion`, chunked, and stays open. A resource not
//! served answers a `Status` 404 (a missing CRD); one marked failing
//! answers 500.
#![allow(dead_code)]

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::Frame;
use palisade_control::kube_mirror::kinds::KINDS;
use serde_json::{Value, json};

#[derive(Default)]
struct State {
    rv: u64,
    /// By resource path (`api/v1/pods`), then (namespace, name).
    objects: BTreeMap<String, BTreeMap<(String, String), Value>>,
    /// (resourceVersion, resource path, event type, object).
    history: Vec<(u64, String, &'static str, Value)>,
    /// Resource paths answered with 404.
    unserved: BTreeSet<String>,
    /// Resource paths answered with 500.
    failing: BTreeSet<String>,
    /// Watches from an older resourceVersion get `410 Expired`.
    compacted: u64,
    /// Bumped to end every open watch (an API server restart).
    generation: u64,
}

pub struct FakeApiServer {
    pub addr: SocketAddr,
    state: Arc<Mutex<State>>,
    changed: tokio::sync::broadcast::Sender<()>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for FakeApiServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The resource path of a kind, e.g. `apis/networking.k8s.io/v1/networkpolicies`.
pub fn resource_of(kind: &str) -> String {
    let k = KINDS
        .iter()
        .find(|k| k.kind == kind)
        .unwrap_or_else(|| panic!("unknown kind {kind}"));
    if k.group.is_empty() {
        format!("api/{}/{}", k.version, k.plural)
    } else {
        format!("apis/{}/{}/{}", k.group, k.version, k.plural)
    }
}

impl FakeApiServer {
    pub async fn start() -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(Mutex::new(State::default()));
        let (changed, _) = tokio::sync::broadcast::channel(1024);
        let (st, ch) = (state.clone(), changed.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((tcp, _)) = listener.accept().await else {
                    return;
                };
                let (st, ch) = (st.clone(), ch.clone());
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let (st, ch) = (st.clone(), ch.clone());
                        async move { Ok::<_, Infallible>(handle(req, st, ch)) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
        Self {
            addr,
            state,
            changed,
            task,
        }
    }

    /// A kubeconfig file pointing at this server, without credentials.
    pub fn kubeconfig(&self, dir: &Path) -> PathBuf {
        let path = dir.join("kubeconfig");
        std::fs::write(
            &path,
            format!(
                "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: http://{}\nusers:\n- name: tester\n  user: {{}}\ncontexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\ncurrent-context: fake\n",
                self.addr
            ),
        )
        .unwrap();
        path
    }

    /// Whether the API server serves `kind` (a CRD installed or not).
    pub fn serve(&self, kind: &str, served: bool) {
        let mut s = self.state.lock().unwrap();
        let r = resource_of(kind);
        if served {
            s.unserved.remove(&r);
        } else {
            s.unserved.insert(r);
        }
    }

    /// Whether requests for `kind` fail with 500; failing also ends the
    /// open watches, as an API server going away does.
    pub fn fail(&self, kind: &str, failing: bool) {
        let mut s = self.state.lock().unwrap();
        let r = resource_of(kind);
        if failing {
            s.failing.insert(r);
            s.generation += 1;
        } else {
            s.failing.remove(&r);
        }
        drop(s);
        let _ = self.changed.send(());
    }

    /// Forgets the history so far (etcd compaction): a watch resumed from
    /// an older resourceVersion gets `410 Expired` and must list again.
    pub fn compact(&self) {
        let mut s = self.state.lock().unwrap();
        s.compacted = s.rv;
        s.history.clear();
    }

    /// Creates or replaces an object (YAML or JSON with apiVersion, kind
    /// and metadata).
    pub fn apply(&self, text: &str) {
        let mut obj: Value = serde_yaml::from_str(text).unwrap();
        let kind = obj["kind"].as_str().unwrap().to_string();
        let resource = resource_of(&kind);
        let ns = obj["metadata"]["namespace"]
            .as_str()
            .unwrap_or("")
            .to_string();
        let name = obj["metadata"]["name"].as_str().unwrap().to_string();
        let mut s = self.state.lock().unwrap();
        s.rv += 1;
        let rv = s.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        obj["metadata"]["uid"] = json!(format!("uid-{kind}-{ns}-{name}"));
        obj["metadata"]["managedFields"] = json!([{"manager": "kubectl", "operation": "Update"}]);
        let previous = s
            .objects
            .entry(resource.clone())
            .or_default()
            .insert((ns, name), obj.clone());
        let kind_of_event = if previous.is_some() {
            "MODIFIED"
        } else {
            "ADDED"
        };
        s.history.push((rv, resource, kind_of_event, obj));
        drop(s);
        let _ = self.changed.send(());
    }

    pub fn delete(&self, kind: &str, ns: &str, name: &str) {
        let resource = resource_of(kind);
        let mut s = self.state.lock().unwrap();
        let Some(mut obj) = s
            .objects
            .get_mut(&resource)
            .and_then(|m| m.remove(&(ns.to_string(), name.to_string())))
        else {
            panic!("no {kind} {ns}/{name}");
        };
        s.rv += 1;
        let rv = s.rv;
        obj["metadata"]["resourceVersion"] = json!(rv.to_string());
        s.history.push((rv, resource, "DELETED", obj));
        drop(s);
        let _ = self.changed.send(());
    }
}

type Body = BoxBody<Bytes, Infallible>;

fn full(status: u16, body: Value) -> hyper::Response<Body> {
    hyper::Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(body.to_string())).boxed())
        .unwrap()
}

fn status(code: u16, reason: &str, message: &str) -> hyper::Response<Body> {
    full(
        code,
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
               "message": message, "reason": reason, "code": code}),
    )
}

fn handle(
    req: hyper::Request<hyper::body::Incoming>,
    state: Arc<Mutex<State>>,
    changed: tokio::sync::broadcast::Sender<()>,
) -> hyper::Response<Body> {
    let resource = req.uri().path().trim_start_matches('/').to_string();
    let query: BTreeMap<String, String> = req
        .uri()
        .query()
        .unwrap_or("")
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let kind = KINDS.iter().find(|k| resource_of(k.kind) == resource);
    let Some(kind) = kind else {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    };
    let s = state.lock().unwrap();
    if s.unserved.contains(&resource) {
        return status(
            404,
            "NotFound",
            "the server could not find the requested resource",
        );
    }
    if s.failing.contains(&resource) {
        return status(500, "InternalError", "etcd is having a bad day");
    }
    let watch = matches!(query.get("watch").map(String::as_str), Some("1" | "true"));
    if !watch {
        let items: Vec<Value> = s
            .objects
            .get(&resource)
            .map(|m| {
                m.values()
                    .map(|o| {
                        let mut o = o.clone();
                        let map = o.as_object_mut().unwrap();
                        map.remove("apiVersion");
                        map.remove("kind");
                        o
                    })
                    .collect()
            })
            .unwrap_or_default();
        return full(
            200,
            json!({"apiVersion": kind.api_version(), "kind": format!("{}List", kind.kind),
                   "metadata": {"resourceVersion": s.rv.to_string()}, "items": items}),
        );
    }
    let since: u64 = query
        .get("resourceVersion")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    if since < s.compacted {
        // As the API server answers a watch from a compacted version.
        let line = json!({"type": "ERROR", "object": {"kind": "Status", "apiVersion": "v1",
            "metadata": {}, "status": "Failure", "reason": "Expired", "code": 410,
            "message": format!("too old resource version: {since} ({})", s.compacted)}});
        return hyper::Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from(format!("{line}\n"))).boxed())
            .unwrap();
    }
    let generation = s.generation;
    let mut notified = changed.subscribe();
    drop(s);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Frame<Bytes>, Infallible>>(64);
    tokio::spawn(async move {
        let mut sent = since;
        loop {
            let lines: Vec<(u64, String)> = {
                let s = state.lock().unwrap();
                if s.generation != generation {
                    return;
                }
                s.history
                    .iter()
                    .filter(|(rv, r, _, _)| *rv > sent && *r == resource)
                    .map(|(rv, _, t, o)| (*rv, format!("{}\n", json!({"type": t, "object": o}))))
                    .collect()
            };
            for (rv, line) in lines {
                if tx.send(Ok(Frame::data(Bytes::from(line)))).await.is_err() {
                    return;
                }
                sent = rv;
            }
            match notified.recv().await {
                Ok(()) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            }
        }
    });
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    hyper::Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(BodyExt::boxed(body))
        .unwrap()
}
