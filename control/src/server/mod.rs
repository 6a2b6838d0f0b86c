//! `palisade control`: the running control plane. Loads the CA, compiles the
//! manifests, watches them, and serves the streaming API over mutual TLS.
//!
//! Submodules, in the order a request meets them: `tls` (handshake, peer
//! identity), `service` (the RPCs and their authorization), `tokens` and
//! `ratelimit` (bootstrap and signing limits), `pki` (the CA), `state` and
//! `registry` (what is served and to whom), `watcher` (manifest changes).
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use palisade_api::stream::ControlPlaneServer;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

pub mod ca_reload;
pub mod federation;
pub mod pki;
pub mod public_https;
pub mod ratelimit;
pub mod registry;
pub mod service;
pub mod state;
pub mod tls;
pub mod tokens;
pub mod watcher;

pub use ca_reload::CaCell;
pub use federation::Federation;
pub use pki::CaAuthority;
pub use ratelimit::SignLimit;
pub use state::MeshState;
pub use watcher::{CompileFn, manifest_compiler, manifest_compiler_with};

/// The control plane's own SPIFFE ID path.
pub const CONTROL_SA: &str = "control";

#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("state dir {path}: {source}")]
    StateDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Pki(#[from] pki::PkiError),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("bundle endpoint: {0}")]
    BundleEndpoint(String),
    #[error("--federation-web-roots: {0}")]
    WebRoots(String),
}

/// Notes from the source of the manifests (an API server mirror) for
/// `palisade status`.
#[derive(Clone)]
pub struct SourceReport(pub Arc<dyn Fn() -> Vec<String> + Send + Sync>);

impl std::fmt::Debug for SourceReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("SourceReport").field(&(self.0)()).finish()
    }
}

/// How to run a control plane.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    pub manifests: PathBuf,
    pub listen: SocketAddr,
    pub state_dir: PathBuf,
    /// Lifetime of the SVIDs signed for proxies.
    pub svid_ttl: Duration,
    pub sign_limit: SignLimit,
    pub poll_interval: Duration,
    pub debounce: Duration,
    /// Federated bundles fetched from bundle endpoints; the compile
    /// function given to [`start`] must be
    /// [`manifest_compiler_with`] this same value.
    pub federation: Arc<Federation>,
    /// Serve the mesh's bundle here (SPIFFE bundle endpoint, `https_spiffe`).
    pub bundle_endpoint: Option<SocketAddr>,
    /// The `spiffe_refresh_hint` of the served bundle.
    pub bundle_refresh_hint: Duration,
    /// Extra PEM roots for `https_web` bundle endpoints.
    pub federation_web_roots: Option<PathBuf>,
    /// Timeout of one bundle fetch.
    pub federation_fetch_timeout: Duration,
    /// Where the manifests come from, for `palisade status`; the directory
    /// when `None`.
    pub source: Option<String>,
    pub source_report: Option<SourceReport>,
    /// The CA's directory, followed for changes (`palisade ca rotate`);
    /// `None`: the CA given to [`start`] stays.
    pub ca_dir: Option<PathBuf>,
    /// The trust domain to load `ca_dir` with, when its certificates name
    /// none.
    pub ca_trust_domain: Option<String>,
    pub ca_poll_interval: Duration,
    /// How long a root replaced in place stays trusted; `None`: the SVID
    /// lifetime, so every SVID it signed has expired by then.
    pub ca_grace_period: Option<Duration>,
}

impl ServerOptions {
    pub fn new(manifests: PathBuf, state_dir: PathBuf) -> Self {
        Self {
            manifests,
            listen: SocketAddr::from(([127, 0, 0, 1], 15010)),
            state_dir,
            svid_ttl: Duration::from_secs(24 * 3600),
            sign_limit: SignLimit::default(),
            poll_interval: Duration::from_millis(100),
            debounce: Duration::from_millis(200),
            federation: Federation::new(),
            bundle_endpoint: None,
            bundle_refresh_hint: federation::DEFAULT_REFRESH,
            federation_web_roots: None,
            federation_fetch_timeout: Duration::from_secs(10),
            source: None,
            source_report: None,
            ca_dir: None,
            ca_trust_domain: None,
            ca_poll_interval: Duration::from_secs(1),
            ca_grace_period: None,
        }
    }
}

/// A started control plane. Dropping it does not stop it; call `shutdown`.
pub struct RunningServer {
    pub addr: SocketAddr,
    /// Where the bundle endpoint listens, when asked for.
    pub bundle_endpoint: Option<SocketAddr>,
    pub federation: Arc<Federation>,
    pub state: Arc<MeshState>,
    pub registry: Arc<registry::Registry>,
    /// The CA in force.
    pub ca: Arc<CaCell>,
    shutdown: Option<oneshot::Sender<()>>,
    tasks: Vec<JoinHandle<()>>,
}

impl RunningServer {
    /// Stops serving and watching.
    pub async fn shutdown(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        for t in self.tasks.drain(..) {
            t.abort();
            let _ = t.await;
        }
    }

    /// Waits until the server stops.
    pub async fn wait(mut self) {
        if let Some(first) = self.tasks.first_mut() {
            let _ = first.await;
        }
    }
}

/// The SPIFFE ID the control plane serves with.
pub fn control_id(trust_domain: &str) -> String {
    format!(
        "spiffe://{trust_domain}/ns/{}/sa/{CONTROL_SA}",
        service::SYSTEM_NAMESPACE
    )
}

/// Compiles once, binds, and starts serving and watching.
pub async fn start(
    opts: ServerOptions,
    ca: Arc<CaAuthority>,
    compile: CompileFn,
) -> Result<RunningServer, ServerError> {
    let state_err = |source| ServerError::StateDir {
        path: opts.state_dir.display().to_string(),
        source,
    };
    std::fs::create_dir_all(&opts.state_dir).map_err(state_err)?;
    let cell = CaCell::new(
        ca,
        opts.ca_dir.clone().map(|dir| ca_reload::CaFollow {
            dir,
            trust_domain: opts.ca_trust_domain.clone(),
            grace_period: opts.ca_grace_period.unwrap_or(opts.svid_ttl),
            grace_file: Some(opts.state_dir.join(CA_GRACE_FILE)),
            sequence_file: Some(opts.state_dir.join(BUNDLE_SEQUENCE_FILE)),
        }),
    );
    // Roots kept from before a restart are in the cell's CA.
    let ca = cell.current();
    // Token files carry the bundle to proxies; keep a copy beside them.
    write_bundle_copy(&opts.state_dir, &ca).map_err(state_err)?;
    std::fs::write(opts.state_dir.join("trust-domain"), ca.trust_domain()).map_err(state_err)?;

    let web_roots = federation::WebRoots::load(opts.federation_web_roots.as_deref())
        .map_err(ServerError::WebRoots)?;
    opts.federation.load_kept(&opts.state_dir);
    let state = Arc::new(MeshState::new());
    state.set_identity(identity_stamp(&ca));
    // Taken before the first compile: a change from here on is compiled.
    let compiled = watcher::fingerprint(&opts.manifests);
    let _ = watcher::compile_and_apply(
        opts.manifests.clone(),
        compile.clone(),
        &state,
        Some(&opts.state_dir),
    )
    .await;

    let id = control_id(ca.trust_domain());
    let serving = Arc::new(tls::ServingCert::new(&ca.issue_keyed(&id, SERVING_TTL)?)?);
    let client_roots = tls::ClientRoots::new(ca.inner().bundle())?;
    let tls_config = Arc::new(tls::server_config(serving.clone(), client_roots.clone())?);
    let listener = TcpListener::bind(opts.listen)
        .await
        .map_err(|source| ServerError::Bind {
            addr: opts.listen,
            source,
        })?;
    let addr = listener.local_addr().map_err(|source| ServerError::Bind {
        addr: opts.listen,
        source,
    })?;

    let registry = Arc::new(registry::Registry::new());
    let mut tasks = Vec::new();
    let served_bundle = Arc::new(federation::serve::ServedDocument::from_pointee(
        federation::serve::bundle_document(
            ca.inner().bundle(),
            Some(cell.bundle_sequence(ca.inner().bundle())),
            opts.bundle_refresh_hint,
        )
        .map_err(ServerError::BundleEndpoint)?,
    ));
    let bundle_endpoint = match opts.bundle_endpoint {
        Some(at) => {
            let l = TcpListener::bind(at)
                .await
                .map_err(|source| ServerError::Bind { addr: at, source })?;
            let bound = l
                .local_addr()
                .map_err(|source| ServerError::Bind { addr: at, source })?;
            tasks.push(
                federation::serve::spawn(l, serving.clone(), served_bundle.clone())
                    .map_err(|e| ServerError::BundleEndpoint(e.to_string()))?,
            );
            tracing::info!(addr = %bound, id = %id, "SPIFFE bundle endpoint (https_spiffe) listening");
            Some(bound)
        }
        None => None,
    };
    let shared = Arc::new(service::Shared {
        state: state.clone(),
        registry: registry.clone(),
        ca: cell.clone(),
        tokens: tokens::TokenStore::new(&opts.state_dir),
        limiter: ratelimit::RateLimiter::new(opts.sign_limit),
        svid_ttl: opts.svid_ttl,
        federation: opts.federation.clone(),
        bundle_endpoint,
        source: opts
            .source
            .clone()
            .unwrap_or_else(|| format!("directory {}", opts.manifests.display())),
        source_report: opts.source_report.clone(),
    });
    let fetch_local = Arc::new(federation::LocalBundle::from_pointee(
        ca.inner().bundle().clone(),
    ));
    tasks.push(tokio::spawn(federation::refresh_loop(
        opts.federation.clone(),
        federation::FetchContext {
            local: fetch_local.clone(),
            web_roots,
            state_dir: Some(opts.state_dir.clone()),
            timeout: opts.federation_fetch_timeout,
        },
    )));
    // A fetched bundle that changed is compiled into every config.
    let (fed, dir, c, st, sd) = (
        opts.federation.clone(),
        opts.manifests.clone(),
        compile.clone(),
        state.clone(),
        opts.state_dir.clone(),
    );
    tasks.push(tokio::spawn(async move {
        loop {
            fed.changed().await;
            let _ = watcher::compile_and_apply(dir.clone(), c.clone(), &st, Some(&sd)).await;
        }
    }));
    // The CA directory, followed; each change reaches every part that
    // holds the CA.
    tasks.push(tokio::spawn(cell.clone().follow(opts.ca_poll_interval)));
    tasks.push(tokio::spawn(follow_ca(
        cell.clone(),
        CaHolders {
            state: state.clone(),
            client_roots,
            serving: serving.clone(),
            served_bundle,
            fetch_local,
            refresh_hint: opts.bundle_refresh_hint,
            state_dir: opts.state_dir.clone(),
        },
    )));
    let incoming = tls::accept_loop(listener, tls_config, ca.trust_domain().to_owned());
    let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
    let svc = ControlPlaneServer::new(service::ControlService::new(shared))
        .max_decoding_message_size(16 << 20)
        .max_encoding_message_size(64 << 20);
    let serve = tokio::spawn(async move {
        let result = tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(Duration::from_secs(20)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(svc)
            .serve_with_incoming_shutdown(ReceiverStream::new(incoming), async {
                let _ = shutdown_rx.await;
            })
            .await;
        if let Err(e) = result {
            tracing::error!(error = %e, "control plane server stopped");
        }
    });
    let watch = tokio::spawn(watcher::watch_loop(
        opts.manifests.clone(),
        compile,
        state.clone(),
        Some(opts.state_dir.clone()),
        opts.poll_interval,
        opts.debounce,
        compiled,
    ));
    // Re-issue the serving SVID at half-life.
    let (renew_cell, renew_serving) = (cell.clone(), serving.clone());
    let renew = tokio::spawn(async move {
        loop {
            tokio::time::sleep(SERVING_TTL / 2).await;
            renew_serving_svid(&renew_cell.current(), &renew_serving);
        }
    });
    tracing::info!(%addr, "control plane listening");
    let mut all = vec![serve, watch, renew];
    all.extend(tasks);
    Ok(RunningServer {
        addr,
        bundle_endpoint,
        federation: opts.federation.clone(),
        state,
        registry,
        ca: cell,
        shutdown: Some(shutdown_tx),
        tasks: all,
    })
}

/// Where roots replaced in place are kept for their grace period.
pub const CA_GRACE_FILE: &str = "ca-grace.json";

/// Where the bundle endpoint's last `spiffe_sequence` is kept.
pub const BUNDLE_SEQUENCE_FILE: &str = "bundle-sequence.json";

/// Lifetime of the control plane's own serving SVID.
const SERVING_TTL: Duration = Duration::from_secs(24 * 3600);

fn renew_serving_svid(ca: &CaAuthority, serving: &tls::ServingCert) {
    match ca.issue_keyed(&control_id(ca.trust_domain()), SERVING_TTL) {
        Ok(svid) => {
            if let Err(e) = serving.replace(&svid) {
                tracing::error!(error = %e, "cannot install renewed serving SVID");
            }
        }
        Err(e) => tracing::error!(error = %e, "cannot renew serving SVID"),
    }
}

/// The CA in force, as every config carries it.
pub fn identity_stamp(ca: &CaAuthority) -> state::IdentityStamp {
    state::IdentityStamp::new(
        ca.bundle_pem().to_owned(),
        palisade_identity::pem::encode_certs(std::slice::from_ref(ca.inner().signing_cert())),
    )
}

fn write_bundle_copy(state_dir: &std::path::Path, ca: &CaAuthority) -> std::io::Result<()> {
    palisade_identity::pem::write_public(&state_dir.join("bundle.pem"), ca.bundle_pem())
}

/// Everything that holds a copy of the CA's roots or signs with it.
struct CaHolders {
    state: Arc<MeshState>,
    client_roots: Arc<tls::ClientRoots>,
    serving: Arc<tls::ServingCert>,
    served_bundle: Arc<federation::serve::ServedDocument>,
    /// The mesh's roots the federation fetcher verifies local endpoint
    /// SPIFFE IDs against.
    fetch_local: Arc<federation::LocalBundle>,
    refresh_hint: Duration,
    state_dir: PathBuf,
}

/// After each CA change: client SVIDs verify against the new roots, the
/// serving SVID comes from the new signer (every sidecar already trusts
/// its root, pushed at prepare), every config carries the new roots and
/// signer, the bundle endpoint serves the new roots, bundle endpoints with
/// a local SPIFFE ID are verified against them, and new join tokens carry
/// them.
async fn follow_ca(cell: Arc<CaCell>, holders: CaHolders) {
    let mut changes = cell.subscribe();
    while changes.changed().await.is_ok() {
        let ca = cell.current();
        if let Err(e) = holders.client_roots.set(ca.inner().bundle()) {
            tracing::error!(error = %e, "cannot verify clients against the new roots");
        }
        renew_serving_svid(&ca, &holders.serving);
        holders
            .fetch_local
            .store(Arc::new(ca.inner().bundle().clone()));
        let report = holders.state.set_identity(identity_stamp(&ca));
        tracing::info!(
            configs = report.changed.len(),
            "pushing the CA's roots and signer to every sidecar"
        );
        match federation::serve::bundle_document(
            ca.inner().bundle(),
            Some(cell.bundle_sequence(ca.inner().bundle())),
            holders.refresh_hint,
        ) {
            Ok(doc) => holders.served_bundle.store(Arc::new(doc)),
            Err(e) => tracing::error!(error = %e, "cannot build the served bundle"),
        }
        if let Err(e) = write_bundle_copy(&holders.state_dir, &ca) {
            tracing::error!(error = %e, "cannot write the bundle copy for join tokens");
        }
    }
}
