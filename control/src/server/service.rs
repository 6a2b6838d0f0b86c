//! The gRPC service: `Watch` (push configs, collect ACK/NACK), `SignCsr`
//! (bootstrap with a join token, renew with the current SVID) and `Status`.
//!
//! Authorization, in order, for every RPC but a token-carrying `SignCsr`:
//! 1. the connection presented a client certificate that chains to the bundle;
//! 2. it is a well-formed SVID of our trust domain and has not expired;
//! 3. its SPIFFE ID is the one the manifests give the named workload (a proxy
//!    only ever receives its own workload's config, and renews only its own
//!    identity); `Status` wants an identity in `palisade-system`.
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use palisade_api::stream::{
    ConfigUpdate, ControlPlane, ControlState, CsrRequest, FederatedTrustDomain, StatusRequest,
    StatusResponse, SvidResponse, TrustRoot, WatchRequest, watch_request,
};
use palisade_identity::verify::{anchoring_root, fingerprint, issued_by};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use super::pki::{PkiError, now_unix};
use super::ratelimit::RateLimiter;
use super::registry::Registry;
use super::state::MeshState;
use super::tls::{ClientSvid, PeerInfo, check_not_expired};
use super::tokens::{TokenError, TokenStore, check_workload};

/// How long a new stream may take to send its `Subscribe`.
const SUBSCRIBE_TIMEOUT: Duration = Duration::from_secs(10);

/// The namespace whose identities may call `Status`.
pub const SYSTEM_NAMESPACE: &str = "palisade-system";

/// Everything the RPC handlers share.
pub struct Shared {
    pub state: Arc<MeshState>,
    pub registry: Arc<Registry>,
    pub ca: Arc<super::CaCell>,
    pub tokens: TokenStore,
    pub limiter: RateLimiter,
    pub svid_ttl: Duration,
    pub federation: Arc<super::Federation>,
    /// Where the mesh's bundle is served, if it is.
    pub bundle_endpoint: Option<std::net::SocketAddr>,
    /// Where the manifests come from, and what that source reports.
    pub source: String,
    pub source_report: Option<super::SourceReport>,
}

#[derive(Clone)]
pub struct ControlService {
    shared: Arc<Shared>,
}

impl ControlService {
    pub fn new(shared: Arc<Shared>) -> Self {
        Self { shared }
    }
}

type UpdateStream = Pin<Box<dyn Stream<Item = Result<ConfigUpdate, Status>> + Send>>;

/// The verified, unexpired client SVID of this request.
fn require_svid<T>(req: &Request<T>) -> Result<ClientSvid, Status> {
    let info = req
        .extensions()
        .get::<PeerInfo>()
        .ok_or_else(|| Status::internal("connection info missing"))?;
    match &info.client {
        None => Err(Status::unauthenticated(
            "this RPC needs a client SVID; bootstrap first with SignCsr and a join token",
        )),
        Some(Err(reason)) => Err(Status::unauthenticated(reason.clone())),
        Some(Ok(svid)) => {
            check_not_expired(svid).map_err(Status::unauthenticated)?;
            Ok(svid.clone())
        }
    }
}

fn remote_of<T>(req: &Request<T>) -> String {
    req.extensions()
        .get::<PeerInfo>()
        .map(|i| i.remote.to_string())
        .unwrap_or_default()
}

fn token_status(e: TokenError) -> Status {
    match e {
        TokenError::Io { .. } | TokenError::Corrupt { .. } => {
            tracing::error!(error = %e, "token store failure");
            Status::internal(format!("token store: {e}"))
        }
        TokenError::BadWorkload(_) => Status::invalid_argument(e.to_string()),
        _ => Status::permission_denied(e.to_string()),
    }
}

fn pki_status(e: PkiError) -> Status {
    match e {
        PkiError::WrongIdentity { .. } | PkiError::WrongSans { .. } | PkiError::AsksForCa => {
            Status::permission_denied(e.to_string())
        }
        PkiError::BadCsr(_) | PkiError::BadId { .. } => Status::invalid_argument(e.to_string()),
        PkiError::Ca(palisade_identity::CaError::CsrIdMismatch { .. }) => {
            Status::permission_denied(e.to_string())
        }
        PkiError::Ca(palisade_identity::CaError::BadCsr(_)) => {
            Status::invalid_argument(e.to_string())
        }
        PkiError::Ca(_) | PkiError::Issued(_) => {
            tracing::error!(error = %e, "CA failure");
            Status::internal(e.to_string())
        }
    }
}

#[tonic::async_trait]
impl ControlPlane for ControlService {
    type WatchStream = UpdateStream;

    async fn watch(
        &self,
        request: Request<Streaming<WatchRequest>>,
    ) -> Result<Response<Self::WatchStream>, Status> {
        let svid = require_svid(&request)?;
        let remote = remote_of(&request);
        let mut inbound = request.into_inner();
        let first = tokio::time::timeout(SUBSCRIBE_TIMEOUT, inbound.message())
            .await
            .map_err(|_| Status::deadline_exceeded("no Subscribe within 10 s"))??;
        let Some(WatchRequest {
            kind: Some(watch_request::Kind::Subscribe(sub)),
        }) = first
        else {
            return Err(Status::invalid_argument(
                "the first message of a Watch stream must be Subscribe",
            ));
        };
        check_workload(&sub.workload).map_err(token_status)?;
        let shared = &self.shared;
        let identity = shared.state.identity_of(&sub.workload).ok_or_else(|| {
            Status::not_found(format!(
                "workload {} is not in the control plane's manifests",
                sub.workload
            ))
        })?;
        if identity != svid.spiffe_id {
            tracing::warn!(workload = %sub.workload, presented = %svid.spiffe_id, %identity, "refused Watch for another workload");
            return Err(Status::permission_denied(format!(
                "your SVID is {}, but workload {} runs as {identity}; a proxy may only watch its own workload",
                svid.spiffe_id, sub.workload
            )));
        }
        let conn = shared.registry.connect(
            &sub.workload,
            &identity,
            &remote,
            svid.not_after_unix,
            svid.chain.clone(),
        );
        tracing::info!(workload = %sub.workload, %remote, "proxy subscribed");
        let (out_tx, out_rx) = mpsc::channel(4);
        let rx = shared.state.subscribe(&sub.workload);
        tokio::spawn(run_watch(
            shared.clone(),
            conn,
            sub.workload,
            sub.current_version,
            svid,
            rx,
            inbound,
            out_tx,
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(out_rx))))
    }

    async fn sign_csr(
        &self,
        request: Request<CsrRequest>,
    ) -> Result<Response<SvidResponse>, Status> {
        let shared = &self.shared;
        let peer = if request.get_ref().token.is_empty() {
            Some(require_svid(&request)?)
        } else {
            None
        };
        let req = request.into_inner();
        check_workload(&req.workload).map_err(token_status)?;
        let identity = shared.state.identity_of(&req.workload).ok_or_else(|| {
            Status::not_found(format!(
                "workload {} is not in the control plane's manifests",
                req.workload
            ))
        })?;
        let token = match &peer {
            Some(svid) if svid.spiffe_id != identity => {
                return Err(Status::permission_denied(format!(
                    "renewal keeps the same identity: your SVID is {}, workload {} runs as {identity}",
                    svid.spiffe_id, req.workload
                )));
            }
            Some(_) => None,
            None => Some(
                shared
                    .tokens
                    .check(&req.token, &req.workload)
                    .map_err(token_status)?,
            ),
        };
        if let Err(wait) = shared.limiter.try_take(&req.workload) {
            return Err(Status::resource_exhausted(format!(
                "too many signing requests for {}; retry in {} ms",
                req.workload,
                wait.as_millis()
            )));
        }
        let ca = shared.ca.current();
        let issued = ca
            .sign_csr(&req.csr_pem, &identity, shared.svid_ttl)
            .map_err(pki_status)?;
        if let Some(t) = token {
            shared.tokens.consume(t).map_err(token_status)?;
        }
        tracing::info!(workload = %req.workload, %identity, bootstrap = peer.is_none(), expires = issued.expires_unix, "signed SVID");
        Ok(Response::new(SvidResponse {
            chain_pem: issued.chain_pem,
            bundle_pem: ca.bundle_pem().to_owned(),
            expires_unix: issued.expires_unix,
            spiffe_id: issued.spiffe_id,
        }))
    }

    async fn status(
        &self,
        request: Request<StatusRequest>,
    ) -> Result<Response<StatusResponse>, Status> {
        let svid = require_svid(&request)?;
        let system = format!(
            "spiffe://{}/ns/{SYSTEM_NAMESPACE}/",
            self.shared.ca.current().trust_domain()
        );
        if !svid.spiffe_id.starts_with(&system) {
            return Err(Status::permission_denied(format!(
                "Status is for identities in namespace {SYSTEM_NAMESPACE}; you are {}",
                svid.spiffe_id
            )));
        }
        let c = self.shared.state.compile_status();
        let ca = self.shared.ca.current();
        let ca_report = self.shared.ca.report();
        let grace = self.shared.ca.grace_roots();
        let signer = ca.inner().signing_cert();
        let signer_info = cert_summary(signer);
        let anchoring = ca.inner().anchoring_roots();
        let bundle = ca.inner().bundle();
        let proxies = self
            .shared
            .registry
            .snapshot_with_chains()
            .into_iter()
            .map(|(mut p, chain)| {
                p.svid_root = anchoring_root(bundle, &chain)
                    .map(|r| fingerprint(r))
                    .unwrap_or_default();
                p.svid_current_signer = chain.first().is_some_and(|leaf| issued_by(leaf, signer));
                p.config_current = !p.applied_version.is_empty()
                    && self.shared.state.version_of(&p.workload).as_deref()
                        == Some(p.applied_version.as_str());
                p
            })
            .collect();
        Ok(Response::new(StatusResponse {
            proxies,
            control: Some(ControlState {
                last_compile_unix: c.last_compile_unix,
                last_compile_ok: c.ok,
                manifest_errors: c.errors,
                workloads: self.shared.state.workload_count() as u32,
                trust_domain: ca.trust_domain().to_owned(),
                last_good_compile_unix: c.last_good_compile_unix,
                federation: self
                    .shared
                    .federation
                    .relationships()
                    .into_iter()
                    .map(federated_trust_domain)
                    .collect(),
                bundle_endpoint: self
                    .shared
                    .bundle_endpoint
                    .map(|a| a.to_string())
                    .unwrap_or_default(),
                source: self.shared.source.clone(),
                source_notes: self
                    .shared
                    .source_report
                    .as_ref()
                    .map(|r| (r.0)())
                    .unwrap_or_default(),
                trust_roots: bundle
                    .roots()
                    .iter()
                    .map(|root| {
                        let (subject, expires_unix) = cert_summary(root);
                        let pem = palisade_identity::pem::encode_certs(std::slice::from_ref(root));
                        TrustRoot {
                            sha256: fingerprint(root),
                            subject,
                            expires_unix,
                            signing: anchoring.contains(root),
                            grace_until_unix: grace
                                .iter()
                                .find(|g| g.pem == pem)
                                .map_or(0, |g| g.until_unix),
                        }
                    })
                    .collect(),
                svid_signer: fingerprint(signer),
                svid_signer_subject: signer_info.0,
                svid_signer_expires_unix: signer_info.1,
                ca_error: ca_report.error.unwrap_or_default(),
                ca_loaded_unix: ca_report.loaded_unix,
            }),
        }))
    }
}

/// Subject and `notAfter` of a certificate, for the status.
fn cert_summary(der: &rustls::pki_types::CertificateDer<'_>) -> (String, i64) {
    x509_parser::parse_x509_certificate(der)
        .map(|(_, c)| (c.subject().to_string(), c.validity().not_after.timestamp()))
        .unwrap_or_default()
}

fn federated_trust_domain(r: super::federation::Relationship) -> FederatedTrustDomain {
    let e = r.endpoint.unwrap_or_default();
    FederatedTrustDomain {
        trust_domain: r.trust_domain,
        bundle_endpoint_url: e.url,
        bundle_source: r.source.as_str().to_string(),
        sequence: r.sequence,
        roots: u32::try_from(r.roots).unwrap_or(u32::MAX),
        roots_expire_unix: r.roots_expire_unix.unwrap_or(0),
        fetches: e.fetches,
        failures: e.failures,
        last_error: e.last_error.unwrap_or_default(),
        last_attempt_unix: e.last_attempt_unix,
        last_success_unix: e.last_success_unix,
    }
}

/// One proxy's stream: send each new version, record ACK/NACK, end the
/// stream when the client's SVID expires (it reconnects with the new one).
#[allow(clippy::too_many_arguments)]
async fn run_watch(
    shared: Arc<Shared>,
    conn: u64,
    workload: String,
    claimed_version: String,
    svid: ClientSvid,
    mut rx: tokio::sync::watch::Receiver<super::state::Current>,
    mut inbound: Streaming<WatchRequest>,
    out: mpsc::Sender<Result<ConfigUpdate, Status>>,
) {
    let registry = &shared.registry;
    let mut last_sent = claimed_version;
    if !last_sent.is_empty() {
        registry.resumed(conn, &last_sent);
    }
    let until_expiry = Duration::from_secs((svid.not_after_unix - now_unix()).max(0) as u64);
    let expiry = tokio::time::sleep(until_expiry);
    tokio::pin!(expiry);
    loop {
        let current = rx.borrow_and_update().clone();
        match current {
            None => {
                let _ = out
                    .send(Err(Status::not_found(format!(
                        "workload {workload} was removed from the manifests"
                    ))))
                    .await;
                break;
            }
            Some(update) if update.version != last_sent => {
                if out.send(Ok((*update).clone())).await.is_err() {
                    break;
                }
                registry.sent(conn, &update.version);
                last_sent.clone_from(&update.version);
            }
            Some(_) => {}
        }
        tokio::select! {
            changed = rx.changed() => if changed.is_err() { break },
            msg = inbound.message() => match msg {
                Ok(Some(WatchRequest { kind: Some(watch_request::Kind::Ack(a)) })) => {
                    tracing::debug!(%workload, version = %a.version, "ACK");
                    registry.acked(conn, &a.version);
                }
                Ok(Some(WatchRequest { kind: Some(watch_request::Kind::Nack(n)) })) => {
                    tracing::warn!(%workload, version = %n.version, error = %n.error, "proxy rejected config (NACK)");
                    registry.nacked(conn, &n.version, &n.error);
                }
                Ok(Some(_)) => {
                    let _ = out.send(Err(Status::invalid_argument("expected Ack or Nack after Subscribe"))).await;
                    break;
                }
                Ok(None) | Err(_) => break,
            },
            () = &mut expiry => {
                let _ = out.send(Err(Status::unauthenticated(format!(
                    "client SVID {} expired; reconnect with the renewed SVID", svid.spiffe_id
                )))).await;
                break;
            }
            () = out.closed() => break,
        }
    }
    registry.disconnect(conn);
    tracing::info!(%workload, "proxy stream ended");
}
