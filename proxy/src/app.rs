//! Assembling a running sidecar: load the config and the SVID, bind the
//! listeners early (a bind error fails fast), start the data plane on one
//! runtime and admin plus config watching on another, and drain on request.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::runtime::Handle;

use crate::admin::AdminState;
use crate::config_watch::{self, ConfigError};
use crate::ctx::{Ctx, Options};
use crate::drain::Drain;
use crate::metrics::{Direction, Metrics};
use crate::outbound::pool::MeshPool;
use crate::plain_pool::PlainPool;
use crate::tls::{MeshTls, TlsError};
use crate::tracker::ConnTracker;

#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Tls(#[from] TlsError),
    #[error("cannot install the UDP/SCTP netfilter rules: {0}")]
    Netfilter(crate::capture::CaptureError),
    #[error("the config's federated bundles: {0}")]
    Federation(palisade_identity::FederationError),
    #[error("cannot listen on {addr} ({what}): {source}")]
    Bind {
        what: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// Everything needed to start a sidecar.
#[derive(Clone, Debug)]
pub struct Setup {
    pub config: PathBuf,
    pub svid_dir: PathBuf,
    pub outbound_listen: SocketAddr,
    pub inbound_listen: SocketAddr,
    pub admin_listen: SocketAddr,
    /// How often the config file's mtime is polled.
    pub config_poll: Duration,
    pub opts: Options,
}

/// A started sidecar.
pub struct Proxy {
    pub ctx: Arc<Ctx>,
    pub outbound_addr: SocketAddr,
    pub inbound_addr: SocketAddr,
    pub admin_addr: SocketAddr,
    pub admin: Arc<AdminState>,
    /// The roots the last config was applied with.
    trust: Arc<crate::trust_change::TrustWatch>,
    /// The control plane client, in control mode (kept alive with the proxy).
    pub control_client: Option<crate::control_client::ControlClient>,
}

fn bind(what: &'static str, addr: SocketAddr) -> Result<std::net::TcpListener, AppError> {
    let l = std::net::TcpListener::bind(addr).map_err(|source| AppError::Bind {
        what,
        addr,
        source,
    })?;
    l.set_nonblocking(true)
        .map_err(|source| AppError::Bind { what, addr, source })?;
    crate::listen::nodelay_for_accepted(&l);
    Ok(l)
}

impl Proxy {
    /// Loads, binds and spawns: data-plane tasks on `data`, admin and the
    /// config watcher on `control` (the same handle is fine in tests).
    pub fn start(setup: Setup, data: &Handle, control: &Handle) -> Result<Proxy, AppError> {
        let loaded_stamp = config_watch::stamp(&setup.config);
        let snapshot = config_watch::load(&setup.config)?;
        let svid_stamp = crate::svid_watch::stamp(&setup.svid_dir);
        let tls = Arc::new(MeshTls::load_dir(&setup.svid_dir)?);
        let proxy = Self::launch(&setup, snapshot, tls.clone(), false, data, control)?;
        control.spawn(config_watch::watch(
            setup.config.clone(),
            proxy.config_sink(setup.opts.netfilter),
            setup.config_poll,
            loaded_stamp,
        ));
        let (ctx, trust, store) = (proxy.ctx.clone(), proxy.trust.clone(), tls.store().clone());
        control.spawn(crate::svid_watch::watch(
            setup.svid_dir.clone(),
            tls.store().clone(),
            setup.config_poll,
            svid_stamp,
            move || {
                trust.recheck_if_changed(&ctx, &store);
            },
        ));
        Ok(proxy)
    }

    /// Starts a sidecar fed by the control plane: `client` has bootstrapped
    /// the SVID (renewals land in its credential store, which the mTLS
    /// configs read at every handshake) and `snapshot` is its first config;
    /// every later push is applied like a config file change. `setup.config`
    /// and `setup.svid_dir` are not used.
    pub fn start_control(
        setup: Setup,
        client: crate::control_client::ControlClient,
        snapshot: crate::state::Snapshot,
        data: &Handle,
        control: &Handle,
    ) -> Result<Proxy, AppError> {
        let tls = Arc::new(MeshTls::new(client.credentials.clone())?);
        let mut proxy = Self::launch(&setup, snapshot, tls, true, data, control)?;
        proxy
            .admin
            .metrics
            .identity
            .follow_client(client.status.clone());
        control.spawn(crate::control_mode::follow(
            client.config.clone(),
            proxy.config_sink(setup.opts.netfilter),
        ));
        proxy.control_client = Some(client);
        Ok(proxy)
    }

    /// Where later config versions go.
    fn config_sink(&self, netfilter: bool) -> config_watch::ConfigSink {
        config_watch::ConfigSink {
            state: self.ctx.state.clone(),
            tracker: self.ctx.tracker.clone(),
            metrics: self.ctx.metrics.clone(),
            netfilter,
            credentials: self.ctx.tls.store().clone(),
            ctx: self.ctx.clone(),
            trust: self.trust.clone(),
        }
    }

    /// Binds the listeners and spawns the data plane and admin for a loaded
    /// config and SVID.
    fn launch(
        setup: &Setup,
        snapshot: crate::state::Snapshot,
        tls: Arc<MeshTls>,
        control_mode: bool,
        data: &Handle,
        control: &Handle,
    ) -> Result<Proxy, AppError> {
        if setup.opts.netfilter {
            crate::capture::netfilter::apply(&snapshot.config).map_err(AppError::Netfilter)?;
        }
        tls.store()
            .set_pushed_federation(snapshot.federation.clone())
            .map_err(AppError::Federation)?;
        let metrics = Arc::new(Metrics::for_mode(control_mode));
        metrics.set_config_version(&snapshot.version);
        let state = Arc::new(ArcSwap::from_pointee(snapshot));

        let outbound = bind("outbound", setup.outbound_listen)?;
        let inbound = bind("inbound", setup.inbound_listen)?;
        let admin_l = bind("admin", setup.admin_listen)?;
        let addr = |l: &std::net::TcpListener, what, fallback| {
            l.local_addr().map_err(|source| AppError::Bind {
                what,
                addr: fallback,
                source,
            })
        };
        let outbound_addr = addr(&outbound, "outbound", setup.outbound_listen)?;
        let inbound_addr = addr(&inbound, "inbound", setup.inbound_listen)?;
        let admin_addr = addr(&admin_l, "admin", setup.admin_listen)?;

        let ctx = Arc::new(Ctx {
            plain: PlainPool::new(setup.opts.connect_timeout).with_connection_cap(
                setup.opts.max_upstream_connections,
                metrics.upstream_overflows.clone(),
            ),
            opts: setup.opts.clone(),
            state: state.clone(),
            metrics: metrics.clone(),
            tracker: Arc::new(ConnTracker::default()),
            drain: Drain::new(),
            tls: tls.clone(),
            mesh_pool: MeshPool::new(setup.opts.h2_windows, setup.opts.h2_keepalive),
            mesh_pool_h1: Default::default(),
            affinities: Default::default(),
        });

        data.spawn(keep_a_timer_pending());
        data.spawn(sweep_idle_connections(Arc::downgrade(&ctx)));
        {
            let ctx = ctx.clone();
            data.spawn(async move {
                match tokio::net::TcpListener::from_std(outbound) {
                    Ok(l) => {
                        crate::listen::accept_loop(
                            l,
                            ctx,
                            Direction::Outbound,
                            crate::outbound::handle,
                        )
                        .await
                    }
                    Err(e) => tracing::error!(error = %e, "outbound listener"),
                }
            });
        }
        {
            let ctx = ctx.clone();
            data.spawn(async move {
                match tokio::net::TcpListener::from_std(inbound) {
                    Ok(l) => {
                        crate::listen::accept_loop(
                            l,
                            ctx,
                            Direction::Inbound,
                            crate::inbound::handle,
                        )
                        .await
                    }
                    Err(e) => tracing::error!(error = %e, "inbound listener"),
                }
            });
        }

        let admin = Arc::new(AdminState {
            state: state.clone(),
            metrics: metrics.clone(),
            ready: Default::default(),
            local_id: tls.local_id(),
            app_probes: crate::app_probe::AppProbes::from_env(),
            credentials: tls.store().clone(),
        });
        {
            let admin = admin.clone();
            control.spawn(async move {
                match tokio::net::TcpListener::from_std(admin_l) {
                    Ok(l) => crate::admin::serve(l, admin).await,
                    Err(e) => tracing::error!(error = %e, "admin listener"),
                }
            });
        }
        // Certificate and config loaded, listeners bound.
        admin.ready.store(true, Ordering::Release);
        tracing::info!(
            %outbound_addr, %inbound_addr, %admin_addr,
            identity = %admin.local_id,
            version = %ctx.state.load().version,
            "palisade-proxy ready"
        );
        Ok(Proxy {
            trust: Arc::new(crate::trust_change::TrustWatch::new(tls.store())),
            ctx,
            outbound_addr,
            inbound_addr,
            admin_addr,
            admin,
            control_client: None,
        })
    }

    /// Stops accepting, waits for in-flight connections up to the drain
    /// deadline. Returns how many were still open.
    pub async fn drain(&self) -> usize {
        self.admin.ready.store(false, Ordering::Release);
        self.ctx.drain.drain(self.ctx.opts.drain_deadline).await
    }
}

/// Keeps a timer due within a second on the data-plane runtime. tokio's
/// time driver wakes its parked thread through an eventfd whenever a timer
/// is registered that is due before every pending one, or when none is
/// pending; without this, every request's header-read timer on an idle
/// proxy costs that extra syscall and loop (seen at 1000 rps in
/// `bench/mesh.sh`).
async fn keep_a_timer_pending() {
    let mut tick = tokio::time::interval(Duration::from_millis(900));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
    }
}

/// How often idle pooled HTTP/1 connections past their idle timeout are
/// closed (also those of an endpoint no request uses any more).
const SWEEP_EVERY: Duration = Duration::from_secs(15);

/// Closes the pooled HTTP/1 connections idle past their timeout, and gives
/// a heap left bloated by a burst back to the kernel, until the proxy is
/// gone.
async fn sweep_idle_connections(ctx: std::sync::Weak<Ctx>) {
    let mut tick = tokio::time::interval(SWEEP_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick.tick().await;
    loop {
        tick.tick().await;
        let Some(ctx) = ctx.upgrade() else { return };
        ctx.plain.sweep();
        ctx.mesh_pool_h1.sweep();
        if crate::heap::trim_if_bloated() {
            tracing::debug!("returned free heap to the kernel");
        }
    }
}
