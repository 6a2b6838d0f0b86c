//! The sidecar's control plane client: bootstrap an SVID with a join token,
//! watch this workload's config (ACK what applies, NACK what does not), renew
//! the SVID at half-life, reconnect with jittered backoff, and keep the last
//! config and certificate while the control plane is away.
//!
//! The data path uses three handles from [`start`]: a `watch` of the current
//! `ProxyConfig`, the `CredentialStore` its mTLS configs read at every
//! handshake (renewals land there), and a `watch` of [`ClientStatus`] for the
//! admin endpoint and metrics.
//!
//! Wiring it into `palisade-proxy run --control URL --workload NS/POD
//! --token FILE` (data-path side):
//!
//! ```ignore
//! let opts = ClientOptions::new(&url, &workload, token_file);
//! let mut client = control_client::start(opts).await?; // SVID is in
//! let first = client.wait_for_config(Duration::from_secs(30)).await; // ready
//! // mTLS: palisade_identity::server_config(&client.credentials), ...
//! // config: client.config (watch::Receiver<Option<Arc<ProxyConfig>>>)
//! // admin/metrics: client.status (version, cert expiry, connected)
//! ```
//!
//! Order of one run (after ztunnel's `xds/client.rs` and
//! `identity/manager.rs`): bootstrap -> loop { renew if due; watch until the
//! renewal is due or the stream breaks; back off on error }.
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use palisade_api::ProxyConfig;
use palisade_api::stream::connect::{self, ConnectError};
use palisade_api::stream::{ConfigUpdate, CsrRequest, WatchRequest};
use palisade_identity::{CredentialStore, Credentials, SpiffeId, TrustBundle};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::ReceiverStream;

pub mod backoff;
pub mod csr;
pub mod tls;
pub mod token;

use backoff::Backoff;
use csr::PendingCsr;
use token::TokenFile;

/// Extra check the data path may run on a config before it is applied; an
/// `Err` becomes a NACK with that message and the config is not published.
pub type Validator = Arc<dyn Fn(&ProxyConfig) -> Result<(), String> + Send + Sync>;

/// How to reach and authenticate to the control plane.
#[derive(Clone)]
pub struct ClientOptions {
    /// `HOST:PORT` or `https://HOST:PORT`.
    pub control_url: String,
    /// `NS/POD`.
    pub workload: String,
    /// The file written by `palisade token create`.
    pub token_file: PathBuf,
    /// The SPIFFE ID to ask for; default: the token file's `identity:`.
    pub identity: Option<String>,
    /// Trust bundle PEM; default: the certificates in the token file.
    pub bundle_pem: Option<String>,
    /// The control plane's SPIFFE ID; default `spiffe://TD/ns/palisade-system/sa/control`.
    pub control_id: Option<String>,
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// How long `start` keeps retrying a bootstrap that fails transiently.
    pub bootstrap_timeout: Duration,
    pub connect_timeout: Duration,
    pub validate: Option<Validator>,
    /// When the control plane names a new SVID signer (a CA rotation), the
    /// proxy renews at a random moment within this long, so a mesh does
    /// not ask for all its SVIDs in the same second.
    pub reissue_spread: Duration,
}

impl ClientOptions {
    pub fn new(control_url: &str, workload: &str, token_file: PathBuf) -> Self {
        Self {
            control_url: control_url.to_owned(),
            workload: workload.to_owned(),
            token_file,
            identity: None,
            bundle_pem: None,
            control_id: None,
            backoff_initial: Duration::from_millis(200),
            backoff_max: Duration::from_secs(15),
            bootstrap_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(5),
            validate: None,
            reissue_spread: Duration::from_secs(30),
        }
    }
}

impl std::fmt::Debug for ClientOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientOptions")
            .field("control_url", &self.control_url)
            .field("workload", &self.workload)
            .field("token_file", &self.token_file)
            .finish_non_exhaustive()
    }
}

/// What the admin endpoint and metrics show.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ClientStatus {
    /// Version of the config in use (the last one ACKed).
    pub config_version: Option<String>,
    pub identity: String,
    pub cert_expires_unix: i64,
    pub connected: bool,
    pub last_error: Option<String>,
    pub renewals: u64,
    pub nacks: u64,
    pub reconnects: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    TokenFile(#[from] token::TokenFileError),
    #[error("the token file is for workload {in_file}, but this proxy is {asked}")]
    WorkloadMismatch { in_file: String, asked: String },
    #[error("no SPIFFE ID to ask for: the token file has no `identity:` line and none was given")]
    NoIdentity,
    #[error("no trust bundle: the token file has no certificate and none was given")]
    NoBundle,
    #[error("bad SPIFFE ID {0}: {1}")]
    BadId(String, String),
    #[error("trust bundle: {0}")]
    Bundle(String),
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("TLS config: {0}")]
    Tls(#[from] rustls::Error),
    #[error(transparent)]
    Csr(#[from] csr::CsrError),
    #[error("control plane refused: {}: {}", .0.code(), .0.message())]
    Refused(tonic::Status),
    #[error("bootstrap did not succeed within {0:?}: {1}")]
    Timeout(Duration, String),
}

impl ClientError {
    /// Worth retrying (the control plane is away or busy), as opposed to a
    /// refusal that will not change by asking again.
    fn is_transient(&self) -> bool {
        match self {
            Self::Connect(_) => true,
            Self::Refused(s) => matches!(
                s.code(),
                tonic::Code::Unavailable
                    | tonic::Code::ResourceExhausted
                    | tonic::Code::DeadlineExceeded
                    | tonic::Code::Unknown
                    | tonic::Code::Internal
                    | tonic::Code::Cancelled
            ),
            _ => false,
        }
    }
}

/// The running client. Dropping it stops the background task; the last
/// config and credentials stay readable through the handles.
pub struct ControlClient {
    pub config: watch::Receiver<Option<Arc<ProxyConfig>>>,
    pub credentials: Arc<CredentialStore>,
    pub status: watch::Receiver<ClientStatus>,
    task: JoinHandle<()>,
}

impl ControlClient {
    /// Waits until a config is in (the proxy's readiness), up to `timeout`.
    pub async fn wait_for_config(&mut self, timeout: Duration) -> Option<Arc<ProxyConfig>> {
        tokio::time::timeout(timeout, self.config.wait_for(Option::is_some))
            .await
            .ok()?
            .ok()?
            .clone()
    }

    /// Stops the background task now.
    pub fn stop(&self) {
        self.task.abort();
    }
}

impl Drop for ControlClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Bootstraps the SVID (retrying transient failures up to
/// `bootstrap_timeout`) and starts watching. Returns once the SVID is in; the
/// first config arrives on `config` shortly after.
pub async fn start(opts: ClientOptions) -> Result<ControlClient, ClientError> {
    let token = TokenFile::load(&opts.token_file)?;
    if let Some(w) = &token.workload
        && *w != opts.workload
    {
        return Err(ClientError::WorkloadMismatch {
            in_file: w.clone(),
            asked: opts.workload.clone(),
        });
    }
    let identity = opts
        .identity
        .clone()
        .or(token.identity.clone())
        .ok_or(ClientError::NoIdentity)?;
    let id = SpiffeId::parse(&identity)
        .map_err(|e| ClientError::BadId(identity.clone(), e.to_string()))?;
    let bundle_pem = opts
        .bundle_pem
        .clone()
        .unwrap_or_else(|| token.bundle_pem.clone());
    if bundle_pem.trim().is_empty() {
        return Err(ClientError::NoBundle);
    }
    let bundle = TrustBundle::from_pem(id.trust_domain(), &bundle_pem)
        .map_err(|e| ClientError::Bundle(e.to_string()))?;
    let control = opts
        .control_id
        .clone()
        .unwrap_or_else(|| tls::control_id(id.trust_domain_str()));
    let control = SpiffeId::parse(&control)
        .map_err(|e| ClientError::BadId(control.clone(), e.to_string()))?;

    let deadline = tokio::time::Instant::now() + opts.bootstrap_timeout;
    let mut backoff = Backoff::new(opts.backoff_initial, opts.backoff_max);
    let (creds, expires) = loop {
        match bootstrap(&opts, &token.token, &identity, &bundle, &control).await {
            Ok(x) => break x,
            Err(e) if e.is_transient() && tokio::time::Instant::now() < deadline => {
                tracing::warn!(error = %e, "bootstrap failed; retrying");
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(e) if e.is_transient() => {
                return Err(ClientError::Timeout(opts.bootstrap_timeout, e.to_string()));
            }
            Err(e) => return Err(e),
        }
    };
    tracing::info!(%identity, expires, "bootstrapped SVID");
    let store = CredentialStore::new(creds);
    let (config_tx, config_rx) = watch::channel(None);
    let (status_tx, status_rx) = watch::channel(ClientStatus {
        identity: identity.clone(),
        cert_expires_unix: expires,
        ..ClientStatus::default()
    });
    let runner = Runner {
        opts,
        control,
        identity,
        store: store.clone(),
        issued_unix: now_unix(),
        expires_unix: expires,
        renew_at: tokio::time::Instant::now(),
        renewed_unvouched_for: None,
        config_tx,
        status_tx,
    };
    let task = tokio::spawn(runner.run());
    Ok(ControlClient {
        config: config_rx,
        credentials: store,
        status: status_rx,
        task,
    })
}

async fn bootstrap(
    opts: &ClientOptions,
    token: &str,
    identity: &str,
    bundle: &TrustBundle,
    control: &SpiffeId,
) -> Result<(Credentials, i64), ClientError> {
    let addr = connect::resolve(&opts.control_url).await?;
    let tls = tls::bootstrap_config(bundle.clone(), control.clone())?;
    let channel = connect::connect(addr, tls, opts.connect_timeout).await?;
    sign(channel, opts, identity, token, &bundle.to_pem()).await
}

/// One SignCsr round: fresh key, CSR, checks on the answer.
async fn sign(
    channel: tonic::transport::Channel,
    opts: &ClientOptions,
    identity: &str,
    token: &str,
    bundle_pem: &str,
) -> Result<(Credentials, i64), ClientError> {
    let pending = PendingCsr::new(identity)?;
    let mut client = palisade_api::stream::client(channel);
    let resp = client
        .sign_csr(CsrRequest {
            csr_pem: pending.csr_pem.clone(),
            token: token.to_owned(),
            workload: opts.workload.clone(),
        })
        .await
        .map_err(ClientError::Refused)?
        .into_inner();
    // The answer came over a channel verified against the bundle we hold,
    // so the bundle in it is the control plane's word, as a pushed config
    // is: during a CA rotation it holds the root of the CA that signed.
    let bundle_pem = if resp.bundle_pem.trim().is_empty() {
        bundle_pem
    } else {
        &resp.bundle_pem
    };
    let creds = pending.complete(&resp.chain_pem, bundle_pem)?;
    Ok((creds, resp.expires_unix))
}

/// What a pushed config says of the mesh's CA, checked before the config
/// is ACKed: a bundle or signer that does not parse NACKs the config.
/// A signing certificate and the roots in force beside it.
type SignerAndRoots = (
    rustls::pki_types::CertificateDer<'static>,
    Vec<rustls::pki_types::CertificateDer<'static>>,
);

/// What a pushed signing certificate asks of the SVID held now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum EarlyRenewal {
    /// Issued by that signer and vouched for by a root: nothing.
    NotNeeded,
    /// Issued by another signer (a CA rotation) and still vouched for:
    /// renew at a random point of the spread, so a mesh does not ask at once.
    Spread,
    /// No root vouches for it: renew now.
    Now,
    /// No root vouches for it, and a renewal for this signer and these roots
    /// was already asked for: another would change nothing (the signer
    /// itself chains to no root, e.g. its root expired).
    Futile,
}

fn early_renewal(
    issued_by_signer: bool,
    chains_to_bundle: bool,
    renewed_for_these_already: bool,
) -> EarlyRenewal {
    match (issued_by_signer, chains_to_bundle) {
        (true, true) => EarlyRenewal::NotNeeded,
        (false, true) => EarlyRenewal::Spread,
        (_, false) if renewed_for_these_already => EarlyRenewal::Futile,
        (_, false) => EarlyRenewal::Now,
    }
}

struct PushedIdentity {
    bundle: Option<TrustBundle>,
    signer: Option<rustls::pki_types::CertificateDer<'static>>,
}

impl PushedIdentity {
    fn parse(config: &ProxyConfig, own: &SpiffeId) -> Result<Self, String> {
        let bundle = match config.mesh.trust_bundle.trim() {
            "" => None,
            pem => Some(
                TrustBundle::from_pem(own.trust_domain().clone(), pem)
                    .map_err(|e| format!("mesh.trustBundle: {e}"))?,
            ),
        };
        let signer = match config.mesh.svid_signer.trim() {
            "" => None,
            pem => {
                let certs = palisade_identity::pem::certs(pem)
                    .map_err(|e| format!("mesh.svidSigner: {e}"))?;
                let [cert] = <[_; 1]>::try_from(certs).map_err(|certs: Vec<_>| {
                    format!(
                        "mesh.svidSigner: one certificate expected, found {}",
                        certs.len()
                    )
                })?;
                Some(cert)
            }
        };
        Ok(Self { bundle, signer })
    }
}

fn now_unix() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

// === impl Runner ===

struct Runner {
    opts: ClientOptions,
    control: SpiffeId,
    identity: String,
    store: Arc<CredentialStore>,
    issued_unix: i64,
    expires_unix: i64,
    /// When to renew next: half-life, or sooner when the signer changed.
    renew_at: tokio::time::Instant,
    /// The signer and roots an early renewal was last asked for because no
    /// root vouched for the SVID: asking again for the same pair would get
    /// an SVID from the same signer that no root vouches for either.
    renewed_unvouched_for: Option<SignerAndRoots>,
    config_tx: watch::Sender<Option<Arc<ProxyConfig>>>,
    status_tx: watch::Sender<ClientStatus>,
}

enum SessionEnd {
    RenewDue,
    Broken(String),
}

impl Runner {
    async fn run(mut self) {
        let mut backoff = Backoff::new(self.opts.backoff_initial, self.opts.backoff_max);
        let mut renew_backoff = Backoff::new(self.opts.backoff_initial, self.opts.backoff_max);
        self.renew_at = self.half_life();
        loop {
            if tokio::time::Instant::now() >= self.renew_at {
                match self.renew().await {
                    Ok(()) => {
                        renew_backoff.reset();
                        self.renew_at = self.half_life();
                    }
                    Err(e) => {
                        let left = self.expires_unix - now_unix();
                        tracing::warn!(error = %e, seconds_left = left, "SVID renewal failed; keeping the current one");
                        self.set_error(format!("renewal: {e}"));
                        self.renew_at = tokio::time::Instant::now() + renew_backoff.next_delay();
                    }
                }
            }
            match self.session(&mut backoff).await {
                SessionEnd::RenewDue => {}
                SessionEnd::Broken(e) => {
                    self.status_tx.send_modify(|s| {
                        s.connected = false;
                        s.reconnects += 1;
                        s.last_error = Some(e.clone());
                    });
                    let delay = backoff.next_delay();
                    tracing::info!(error = %e, ?delay, "control plane stream ended; reconnecting");
                    tokio::time::sleep(
                        delay.min(
                            self.renew_at
                                .saturating_duration_since(tokio::time::Instant::now())
                                .max(Duration::from_millis(1)),
                        ),
                    )
                    .await;
                }
            }
        }
    }

    /// When to renew: half-way through the SVID's life.
    fn half_life(&self) -> tokio::time::Instant {
        let half = ((self.expires_unix - self.issued_unix).max(0) / 2) as u64;
        let due = self.issued_unix + half as i64;
        let wait = (due - now_unix()).max(0) as u64;
        tokio::time::Instant::now() + Duration::from_secs(wait)
    }

    async fn channel(&self) -> Result<tonic::transport::Channel, ClientError> {
        let addr = connect::resolve(&self.opts.control_url).await?;
        let tls = tls::mtls_config(&self.store, &self.control)?;
        Ok(connect::connect(addr, tls, self.opts.connect_timeout).await?)
    }

    async fn renew(&mut self) -> Result<(), ClientError> {
        let channel = self.channel().await?;
        let bundle_pem = self.store.current().bundle().to_pem();
        let (creds, expires) = sign(channel, &self.opts, &self.identity, "", &bundle_pem).await?;
        self.store.update(creds);
        self.issued_unix = now_unix();
        self.expires_unix = expires;
        self.status_tx.send_modify(|s| {
            s.cert_expires_unix = expires;
            s.renewals += 1;
        });
        tracing::info!(identity = %self.identity, expires, "renewed SVID");
        Ok(())
    }

    /// Takes the roots the control plane holds now, and renews early when
    /// the SVID no longer comes from the signer it names (a CA rotation).
    fn apply_identity(&mut self, pushed: PushedIdentity) {
        if let Some(bundle) = pushed.bundle
            && bundle.roots() != self.store.current().bundle().roots()
        {
            self.store.update_bundle(bundle);
        }
        let Some(signer) = pushed.signer else {
            return;
        };
        let creds = self.store.current();
        let Some(leaf) = creds.certified_key().cert.first() else {
            return;
        };
        let chains_to_bundle = palisade_identity::verify::verify_svid_chain_now(
            creds.bundle(),
            &creds.certified_key().cert,
        )
        .is_ok();
        let issued_by_signer = palisade_identity::verify::issued_by(leaf, &signer);
        let roots = creds.bundle().roots();
        let decision = early_renewal(
            issued_by_signer,
            chains_to_bundle,
            self.renewed_unvouched_for
                .as_ref()
                .is_some_and(|(s, r)| *s == signer && r.as_slice() == roots),
        );
        let delay = match decision {
            EarlyRenewal::NotNeeded => return,
            EarlyRenewal::Futile => {
                tracing::warn!(
                    "no root in force vouches for the SVID the control plane's signer issues; not renewing again until the signer or the roots change"
                );
                self.set_error(
                    "no root in force vouches for the SVID the control plane's signer issues"
                        .into(),
                );
                return;
            }
            EarlyRenewal::Spread => self.opts.reissue_spread.mul_f64(rand::random::<f64>()),
            EarlyRenewal::Now => {
                self.renewed_unvouched_for = Some((signer, roots.to_vec()));
                Duration::ZERO
            }
        };
        let due = tokio::time::Instant::now() + delay;
        if due < self.renew_at {
            tracing::info!(
                ?delay,
                chains_to_bundle,
                "the SVID was signed by a certificate that no longer signs; renewing early"
            );
            self.renew_at = due;
        }
    }

    fn set_error(&self, e: String) {
        self.status_tx.send_modify(|s| s.last_error = Some(e));
    }

    /// One watch stream, until the renewal is due or the stream breaks.
    async fn session(&mut self, backoff: &mut Backoff) -> SessionEnd {
        let channel = match self.channel().await {
            Ok(c) => c,
            Err(e) => return SessionEnd::Broken(e.to_string()),
        };
        let mut client = palisade_api::stream::client(channel);
        let (req_tx, req_rx) = mpsc::channel(8);
        let current = self
            .config_tx
            .borrow()
            .as_ref()
            .map(|c| c.version.clone())
            .unwrap_or_default();
        if req_tx
            .send(WatchRequest::subscribe(&self.opts.workload, &current))
            .await
            .is_err()
        {
            return SessionEnd::Broken("request channel closed".into());
        }
        let watch = tokio::select! {
            r = client.watch(ReceiverStream::new(req_rx)) => r,
            () = tokio::time::sleep_until(self.renew_at) => return SessionEnd::RenewDue,
        };
        let mut stream = match watch {
            Ok(r) => r.into_inner(),
            Err(s) => {
                return SessionEnd::Broken(format!("Watch refused: {}: {}", s.code(), s.message()));
            }
        };
        backoff.reset();
        self.status_tx.send_modify(|s| {
            s.connected = true;
            s.last_error = None;
        });
        loop {
            let msg = tokio::select! {
                m = stream.message() => m,
                () = tokio::time::sleep_until(self.renew_at) => return SessionEnd::RenewDue,
            };
            let update = match msg {
                Ok(Some(u)) => u,
                Ok(None) => return SessionEnd::Broken("control plane closed the stream".into()),
                Err(s) => return SessionEnd::Broken(format!("{}: {}", s.code(), s.message())),
            };
            let reply = self.apply(&update);
            if req_tx.send(reply).await.is_err() {
                return SessionEnd::Broken("request stream closed".into());
            }
        }
    }

    /// Checks an update and publishes it; returns the ACK or NACK to send.
    fn apply(&mut self, update: &ConfigUpdate) -> WatchRequest {
        let checked = update
            .decode_for(&self.opts.workload)
            .map_err(|e| e.to_string())
            .and_then(|config| {
                if config.workload.identity != self.identity {
                    return Err(format!(
                        "config runs the workload as {}, but this proxy's SVID is {}",
                        config.workload.identity, self.identity
                    ));
                }
                if let Some(validate) = &self.opts.validate {
                    validate(&config)?;
                }
                let pushed = PushedIdentity::parse(&config, self.store.current().id())?;
                Ok((config, pushed))
            });
        match checked {
            Ok((config, pushed)) => {
                self.apply_identity(pushed);
                tracing::info!(version = %config.version, "applied config");
                let version = config.version.clone();
                self.config_tx.send_replace(Some(Arc::new(config)));
                self.status_tx
                    .send_modify(|s| s.config_version = Some(version.clone()));
                WatchRequest::ack(&version)
            }
            Err(e) => {
                tracing::warn!(version = %update.version, error = %e, "rejected config (NACK); keeping the previous one");
                self.status_tx.send_modify(|s| s.nacks += 1);
                WatchRequest::nack(&update.version, &e)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use palisade_identity::{CaOptions, CertificateAuthority, TrustDomain};

    use super::*;

    #[test]
    fn an_unvouched_svid_is_renewed_once_per_signer_and_roots() {
        use EarlyRenewal::*;
        assert_eq!(early_renewal(true, true, false), NotNeeded);
        assert_eq!(early_renewal(false, true, false), Spread);
        // No root vouches: renew now, whoever issued it...
        assert_eq!(early_renewal(false, false, false), Now);
        assert_eq!(early_renewal(true, false, false), Now);
        // ...but not again for the same signer and roots (a root expired:
        // every config push used to ask the CA for another useless SVID).
        assert_eq!(early_renewal(true, false, true), Futile);
        assert_eq!(early_renewal(false, false, true), Futile);
    }

    fn config_with(bundle: &str, signer: &str) -> ProxyConfig {
        let mut config = crate::state::test_snapshot("{ isolated: false }", "  []").config;
        config.mesh.trust_bundle = bundle.into();
        config.mesh.svid_signer = signer.into();
        config
    }

    fn ca() -> CertificateAuthority {
        CertificateAuthority::create(
            &TrustDomain::new("cluster.local").unwrap(),
            &CaOptions::default(),
        )
        .unwrap()
    }

    #[test]
    fn pushed_roots_and_signer_are_checked_before_the_config_is_acked() {
        let own = SpiffeId::parse("spiffe://cluster.local/ns/x/sa/default").unwrap();
        let (a, b) = (ca(), ca());
        let both = format!("{}{}", a.bundle().to_pem(), b.bundle().to_pem());
        let signer = palisade_identity::pem::encode_certs(std::slice::from_ref(a.signing_cert()));

        let none = PushedIdentity::parse(&config_with("", ""), &own).unwrap();
        assert!(
            none.bundle.is_none() && none.signer.is_none(),
            "static configs push nothing"
        );
        let pushed = PushedIdentity::parse(&config_with(&both, &signer), &own).unwrap();
        assert_eq!(pushed.bundle.unwrap().roots().len(), 2);
        assert_eq!(pushed.signer.as_ref(), Some(a.signing_cert()));

        let garbage = "-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n";
        let e = PushedIdentity::parse(&config_with(garbage, ""), &own)
            .err()
            .unwrap();
        assert!(e.starts_with("mesh.trustBundle:"), "{e}");
        let e = PushedIdentity::parse(&config_with("", &both), &own)
            .err()
            .unwrap();
        assert!(e.contains("one certificate expected, found 2"), "{e}");
        let e = PushedIdentity::parse(&config_with("", "no pem here"), &own)
            .err()
            .unwrap();
        assert!(e.starts_with("mesh.svidSigner:"), "{e}");
    }
}
