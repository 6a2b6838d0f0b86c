//! `palisade-proxy`: the sidecar binary. `run` starts the data plane (its
//! own multi-thread runtime with `--workers` threads) and admin plus config
//! watching (a small current-thread runtime on its own thread); `init`
//! installs the capture rules.
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Parser, Subcommand};
use palisade_proxy::app::{Proxy, Setup};
use palisade_proxy::capture::InitArgs;
use palisade_proxy::control_client::ClientOptions;
use palisade_proxy::ctx::{H2Keepalive, Options};
use palisade_proxy::h2_windows::H2Windows;

#[derive(Parser, Debug)]
#[command(name = "palisade-proxy", version, about = "The Palisade sidecar")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Run the sidecar.
    Run(Box<RunArgs>),
    /// Install (or remove) the capture rules in this network namespace.
    Init(InitArgs),
    /// Wait until the sidecar's admin port answers /ready (the legacy
    /// sidecar's postStart hook, which holds the app until then).
    WaitReady(WaitReadyArgs),
}

#[derive(clap::Args, Debug)]
struct WaitReadyArgs {
    /// The sidecar's admin address.
    #[arg(long, default_value = "127.0.0.1:15000")]
    admin: SocketAddr,
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    timeout: Duration,
}

/// Polls `GET /ready` until it answers 200 or `timeout` passes.
fn wait_ready(args: WaitReadyArgs) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let deadline = std::time::Instant::now() + args.timeout;
    loop {
        let answered = std::net::TcpStream::connect_timeout(&args.admin, Duration::from_secs(1))
            .and_then(|mut s| {
                s.set_read_timeout(Some(Duration::from_secs(1)))?;
                s.write_all(b"GET /ready HTTP/1.1\r\nHost: palisade\r\nConnection: close\r\n\r\n")?;
                let mut head = [0u8; 12];
                s.read_exact(&mut head)?;
                Ok(head.starts_with(b"HTTP/1.1 200"))
            })
            .unwrap_or(false);
        if answered {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            anyhow::bail!(
                "the sidecar at {} was not ready within {:?}",
                args.admin,
                args.timeout
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[derive(clap::Args, Debug)]
#[command(group(clap::ArgGroup::new("source").required(true).args(["config", "control"])))]
struct RunArgs {
    /// Static mode: the ProxyConfig (YAML or JSON), as `palisade compile`
    /// prints it (needs --svid-dir).
    #[arg(long, requires = "svid_dir")]
    config: Option<PathBuf>,
    /// Static mode: directory with svid.pem, svid.key and bundle.pem.
    #[arg(long, requires = "config")]
    svid_dir: Option<PathBuf>,
    /// Control mode: the control plane (`HOST:PORT` or `https://HOST:PORT`);
    /// needs --workload and --token.
    #[arg(long, requires_all = ["workload", "token"], conflicts_with_all = ["config", "svid_dir"])]
    control: Option<String>,
    /// Control mode: this workload, `NS/POD`.
    #[arg(long, requires = "control")]
    workload: Option<String>,
    /// Control mode: the join token file written by `palisade token create`.
    #[arg(long, requires = "control")]
    token: Option<PathBuf>,
    /// Control mode: how long to wait for the SVID and the first config.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    bootstrap_timeout: Duration,
    /// Control mode: when the mesh CA's signer changes (a rotation), renew
    /// the SVID at a random moment within this long.
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    svid_reissue_spread: Duration,
    #[arg(long, default_value = "127.0.0.1:15001")]
    outbound_listen: SocketAddr,
    #[arg(long, default_value = "0.0.0.0:15006")]
    inbound_listen: SocketAddr,
    #[arg(long, default_value = "127.0.0.1:15000")]
    admin_listen: SocketAddr,
    /// Explicit mode: send every outbound connection here (the peer's
    /// expected identity comes from the config's peer table).
    #[arg(long)]
    outbound_to: Option<SocketAddr>,
    /// Explicit mode: the app listens on 127.0.0.1 at this port.
    #[arg(long)]
    inbound_app_port: Option<u16>,
    /// Data-plane threads (default: one per core).
    #[arg(long)]
    workers: Option<usize>,
    /// Inbound protocol detection timeout.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    detect_timeout: Duration,
    #[arg(long, default_value = "3s", value_parser = humantime::parse_duration)]
    connect_timeout: Duration,
    /// HTTP/1 request head read timeout. It also bounds how long a kept-alive
    /// HTTP/1 connection may sit idle between requests (the timer starts
    /// when the next head is awaited), so it is as long as nginx's
    /// `client_header_timeout`: a short one closes clients' pooled
    /// connections under them.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    header_read_timeout: Duration,
    #[arg(long, default_value_t = 65536)]
    max_header_bytes: usize,
    /// Opaque TCP connections with no bytes either way, and served HTTP
    /// connections with no request, close after this long.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    idle_timeout: Duration,
    #[arg(long, default_value_t = 10000)]
    max_connections: usize,
    /// Plain HTTP/1 connections open to one destination (the app, or an
    /// unmeshed endpoint) at most; past it a request gets 503 at once
    /// (Envoy's circuit-breaker default).
    #[arg(long, default_value_t = palisade_proxy::plain_pool::DEFAULT_MAX_CONNECTIONS_PER_DESTINATION, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..))]
    max_upstream_connections: usize,
    /// How long SIGTERM waits for in-flight connections.
    #[arg(long, default_value = "5s", value_parser = humantime::parse_duration)]
    drain_deadline: Duration,
    /// How often the config file is checked for changes (SIGHUP forces it).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    config_poll: Duration,
    /// Log every request (target palisade::access).
    #[arg(long)]
    access_log: bool,
    /// Do not name the deciding policy in 403 responses.
    #[arg(long)]
    no_denied_by_header: bool,
    /// Keep nftables rules for UDP/SCTP NetworkPolicy in this namespace
    /// (needs NET_ADMIN in the pod's namespace).
    #[arg(long)]
    netfilter: bool,
    /// HTTP between sidecars: `h2` (one multiplexed connection per peer) or
    /// `http1` (a pool of keep-alive connections).
    #[arg(long, default_value = "h2", value_parser = ["h2", "http1"])]
    mesh_protocol: String,
    /// HTTP/2 flow-control window per stream, in bytes: how much a peer may
    /// send on one request or response before this sidecar passes it on.
    #[arg(long, default_value_t = H2Windows::default().stream.into())]
    h2_stream_window: u64,
    /// HTTP/2 flow-control window per connection, in bytes: the most a peer
    /// may have in flight on one connection (at least the stream window).
    #[arg(long, default_value_t = H2Windows::default().connection.into())]
    h2_connection_window: u64,
    /// HTTP/2 connections (pooled and served) ping a peer that has sent
    /// nothing for this long...
    #[arg(long, default_value = "30s", value_parser = positive_duration)]
    h2_keepalive_interval: Duration,
    /// ...and close when the ping is not answered within this long (a peer
    /// whose node vanished without closing its connections).
    #[arg(long, default_value = "10s", value_parser = positive_duration)]
    h2_keepalive_timeout: Duration,
}

/// A duration of more than zero (humantime syntax: `30s`, `1m`, `500ms`).
fn positive_duration(text: &str) -> Result<Duration, String> {
    let d = humantime::parse_duration(text).map_err(|e| e.to_string())?;
    if d.is_zero() {
        return Err("must be more than zero".into());
    }
    Ok(d)
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    init_logging();
    match cli.command {
        Command::Init(args) => args.run().context("installing capture rules"),
        Command::Run(args) => run(*args),
        Command::WaitReady(args) => wait_ready(args),
    }
}

fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

fn run(args: RunArgs) -> anyhow::Result<()> {
    palisade_proxy::heap::tune();
    let control_opts = match (&args.control, &args.workload, &args.token) {
        (Some(url), Some(workload), Some(token)) => {
            let mut opts = ClientOptions::new(url, workload, token.clone());
            opts.bootstrap_timeout = args.bootstrap_timeout;
            opts.reissue_spread = args.svid_reissue_spread;
            Some(opts)
        }
        _ => None,
    };
    let setup = Setup {
        config: args.config.unwrap_or_default(),
        svid_dir: args.svid_dir.unwrap_or_default(),
        outbound_listen: args.outbound_listen,
        inbound_listen: args.inbound_listen,
        admin_listen: args.admin_listen,
        config_poll: args.config_poll,
        opts: Options {
            detect_timeout: args.detect_timeout,
            connect_timeout: args.connect_timeout,
            header_read_timeout: args.header_read_timeout,
            max_header_bytes: args.max_header_bytes,
            idle_timeout: args.idle_timeout,
            max_connections: args.max_connections,
            max_upstream_connections: args.max_upstream_connections,
            denied_by_header: !args.no_denied_by_header,
            access_log: args.access_log,
            outbound_to: args.outbound_to,
            inbound_app_port: args.inbound_app_port,
            drain_deadline: args.drain_deadline,
            netfilter: args.netfilter,
            mesh_h2: args.mesh_protocol == "h2",
            h2_windows: H2Windows::new(args.h2_stream_window, args.h2_connection_window)
                .context("--h2-stream-window / --h2-connection-window")?,
            h2_keepalive: H2Keepalive {
                interval: args.h2_keepalive_interval,
                timeout: args.h2_keepalive_timeout,
            },
        },
    };
    let workers = args
        .workers
        .unwrap_or_else(|| {
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1)
        })
        .max(1);
    let data = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(workers)
        .thread_name("palisade-data")
        .enable_all()
        .build()
        .context("building the data-plane runtime")?;
    let control = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("building the admin runtime")?;

    let proxy = match control_opts {
        Some(opts) => {
            let timeout = opts.bootstrap_timeout;
            let (client, snapshot) = control
                .block_on(palisade_proxy::control_mode::bootstrap(opts, timeout))
                .context("bootstrapping from the control plane")?;
            Proxy::start_control(setup, client, snapshot, data.handle(), control.handle())
        }
        None => Proxy::start(setup, data.handle(), control.handle()),
    }
    .context("starting palisade-proxy")?;
    palisade_proxy::heap::trim();

    // The control runtime runs admin and config watching on this thread
    // until SIGTERM/SIGINT, then drains the data plane.
    let remaining = control.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        tokio::select! {
            _ = term.recv() => tracing::info!("SIGTERM: draining"),
            _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT: draining"),
        }
        let ctx = proxy.ctx.clone();
        let drain = data.spawn(async move { ctx.drain.drain(ctx.opts.drain_deadline).await });
        proxy
            .admin
            .ready
            .store(false, std::sync::atomic::Ordering::Release);
        anyhow::Ok(drain.await.unwrap_or(0))
    })?;
    if remaining > 0 {
        tracing::warn!(
            remaining,
            "drain deadline passed; closing remaining connections"
        );
    } else {
        tracing::info!("drained");
    }
    data.shutdown_timeout(Duration::from_millis(100));
    Ok(())
}
