//! `palisade lab echo`: the lab's app. It listens on every declared port,
//! TCP and UDP, and answers with its name: HTTP/1.1 and HTTP/2 requests
//! with a 200 whose body is the name, any other TCP client line by line,
//! a silent TCP client with a banner (a server-first protocol), and every
//! UDP datagram with one datagram.
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use clap::Args;
use http_body_util::Full;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

#[derive(Debug, Clone, Args)]
pub struct EchoArgs {
    /// The name to answer with (`NS/POD`).
    #[arg(long)]
    pub name: String,
    /// TCP ports to listen on.
    #[arg(long, value_delimiter = ',')]
    pub tcp: Vec<u16>,
    /// UDP ports to listen on.
    #[arg(long, value_delimiter = ',')]
    pub udp: Vec<u16>,
    /// Address to bind.
    #[arg(long, default_value = "0.0.0.0")]
    pub bind: std::net::IpAddr,
}

/// How long a new TCP connection may stay silent before it gets the banner
/// (generous: a loaded machine must not turn an HTTP client into a
/// server-first one).
const BANNER_AFTER: Duration = Duration::from_secs(2);
/// How long to wait for enough of the first bytes to tell HTTP from not.
const DECIDE_WITHIN: Duration = Duration::from_secs(1);

pub async fn run(args: EchoArgs) -> std::io::Result<()> {
    let name: Arc<str> = Arc::from(args.name.as_str());
    let mut tasks = tokio::task::JoinSet::new();
    for port in args.tcp {
        let listener = TcpListener::bind((args.bind, port)).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on TCP port {port}: {e}"))
        })?;
        let name = name.clone();
        tasks.spawn(async move {
            loop {
                match listener.accept().await {
                    Ok((stream, _)) => {
                        tokio::spawn(serve_tcp(stream, name.clone()));
                    }
                    Err(e) => tracing::warn!(error = %e, "accept failed"),
                }
            }
        });
    }
    for port in args.udp {
        let socket = UdpSocket::bind((args.bind, port)).await.map_err(|e| {
            std::io::Error::new(e.kind(), format!("cannot listen on UDP port {port}: {e}"))
        })?;
        let name = name.clone();
        tasks.spawn(async move {
            let mut buf = [0u8; 2048];
            loop {
                if let Ok((_, from)) = socket.recv_from(&mut buf).await {
                    let _ = socket.send_to(format!("{name}\n").as_bytes(), from).await;
                }
            }
        });
    }
    eprintln!("palisade lab echo: {name} ready");
    while tasks.join_next().await.is_some() {}
    Ok(())
}

fn looks_like_http(prefix: &[u8]) -> bool {
    const METHODS: [&[u8]; 10] = [
        b"GET ",
        b"POST ",
        b"PUT ",
        b"DELETE ",
        b"HEAD ",
        b"OPTIONS ",
        b"PATCH ",
        b"CONNECT ",
        b"TRACE ",
        b"PRI * HTTP/2.0",
    ];
    METHODS.iter().any(|m| {
        prefix.starts_with(m)
            || (prefix.len() < m.len() && m.starts_with(prefix) && !prefix.is_empty())
    })
}

async fn serve_tcp(stream: TcpStream, name: Arc<str>) {
    let first = first_bytes(&stream).await;
    let n = first.len();
    if n > 0 && looks_like_http(&first) {
        let service = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
            let name = name.clone();
            async move { Ok::<_, Infallible>(answer(&req, &name)) }
        });
        let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
            .serve_connection_with_upgrades(TokioIo::new(stream), service)
            .await;
        return;
    }
    let (read, mut write) = stream.into_split();
    if n == 0
        && write
            .write_all(format!("{name}\n").as_bytes())
            .await
            .is_err()
    {
        return;
    }
    let mut lines = BufReader::new(read).lines();
    while let Ok(Some(_)) = lines.next_line().await {
        if write
            .write_all(format!("{name}\n").as_bytes())
            .await
            .is_err()
        {
            return;
        }
    }
}

/// Peeks at the client's first bytes until HTTP can be told from not.
/// Returns them (empty: the client stayed silent).
async fn first_bytes(stream: &TcpStream) -> Vec<u8> {
    let mut peeked = [0u8; 16];
    let n = match tokio::time::timeout(BANNER_AFTER, stream.peek(&mut peeked)).await {
        Ok(Ok(n)) => n,
        _ => return Vec::new(),
    };
    let deadline = tokio::time::Instant::now() + DECIDE_WITHIN;
    let mut n = n;
    while n > 0
        && n < peeked.len()
        && !peeked[..n].contains(&b'\n')
        && !looks_like_http(&peeked[..n])
    {
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
        n = stream.peek(&mut peeked).await.unwrap_or(n);
    }
    peeked[..n].to_vec()
}

fn answer(req: &Request<hyper::body::Incoming>, name: &str) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(format!("{name}\n"))));
    response.headers_mut().insert(
        "x-palisade-echo",
        name.parse().unwrap_or(http::HeaderValue::from_static("?")),
    );
    if let Some(peer) = req.headers().get("x-palisade-peer-identity") {
        response
            .headers_mut()
            .insert("x-palisade-echo-peer", peer.clone());
    }
    response
}
