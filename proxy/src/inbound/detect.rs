//! Inbound protocol detection: read (and keep, for replay) the first bytes
//! and decide between mesh mTLS, HTTP/1, HTTP/2 prior knowledge and opaque
//! TCP. Declared opaque ports skip HTTP detection and wait for a mesh
//! ClientHello only briefly, so server-first protocols do not stall.
use std::time::Duration;

use bytes::BytesMut;
use palisade_api::MtlsMode;
use tokio::net::TcpStream;

use crate::detect::{
    HttpDetect, ReadOutcome, TlsDetect, detect_http, detect_tls, read_until_decided,
};

/// On an opaque port that also accepts plaintext, how long to wait for a
/// mesh ClientHello before treating the connection as plaintext opaque
/// (a meshed client's sidecar sends its hello right after connecting).
pub const OPAQUE_HELLO_WAIT: Duration = Duration::from_millis(50);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detected {
    Mesh,
    Http1,
    H2,
    /// Not HTTP, not mesh: opaque TCP (also the app's own TLS).
    Opaque,
    /// Nothing decisive arrived in time: opaque TCP, and counted.
    TimedOut,
}

pub async fn detect(
    tcp: &mut TcpStream,
    buf: &mut BytesMut,
    opaque_port: bool,
    mode: MtlsMode,
    timeout: Duration,
) -> std::io::Result<Detected> {
    if opaque_port {
        let wait = if mode == MtlsMode::Strict {
            timeout
        } else {
            OPAQUE_HELLO_WAIT.min(timeout)
        };
        let outcome = read_until_decided(tcp, buf, wait, |b| match detect_tls(b) {
            TlsDetect::Incomplete => None,
            TlsDetect::ClientHello { mesh: true } => Some(Detected::Mesh),
            _ => Some(Detected::Opaque),
        })
        .await?;
        return Ok(match outcome {
            ReadOutcome::Decided(d) => d,
            // Server-first: silence is expected here, so not a timeout.
            ReadOutcome::TimedOut | ReadOutcome::Closed => Detected::Opaque,
        });
    }
    let outcome = read_until_decided(tcp, buf, timeout, decide).await?;
    Ok(match outcome {
        ReadOutcome::Decided(d) => d,
        ReadOutcome::TimedOut => Detected::TimedOut,
        ReadOutcome::Closed => Detected::Opaque,
    })
}

fn decide(b: &[u8]) -> Option<Detected> {
    match detect_tls(b) {
        TlsDetect::Incomplete => None,
        TlsDetect::ClientHello { mesh: true } => Some(Detected::Mesh),
        TlsDetect::ClientHello { mesh: false } => Some(Detected::Opaque),
        TlsDetect::NotTls => match detect_http(b) {
            HttpDetect::Incomplete => None,
            HttpDetect::Http1 => Some(Detected::Http1),
            HttpDetect::H2 => Some(Detected::H2),
            HttpDetect::NotHttp => Some(Detected::Opaque),
        },
    }
}
