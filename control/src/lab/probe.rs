//! Probing: real connections from inside a source namespace, by the same
//! kernel path an app would use. The host plans the probes per source and
//! runs `palisade lab probe-from` inside each source's namespace; that
//! process makes every connection and prints one result per probe.
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use palisade_api::Protocol;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, UdpSocket};
use tokio::sync::Semaphore;

const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
const ANSWER_TIMEOUT: Duration = Duration::from_secs(4);
const UDP_WAIT: Duration = Duration::from_millis(800);
const UDP_TRIES: usize = 2;
const CONCURRENCY: usize = 32;

/// `allow` when the destination answered, `deny` otherwise.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verdict {
    Allow,
    Deny,
}

/// One connection to make.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Probe {
    pub ip: Ipv4Addr,
    pub port: u16,
    pub protocol: Protocol,
    /// Names an answer may carry to count as reaching the destination.
    pub expect: Vec<String>,
    /// `(METHOD, PATH)` for an HTTP probe.
    #[serde(default)]
    pub http: Option<(String, String)>,
}

/// Everything one source namespace is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbePlan {
    /// Source address to bind (outside endpoints); `None` for pods.
    pub bind: Option<Ipv4Addr>,
    pub probes: Vec<Probe>,
}

/// What one probe saw.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProbeResult {
    pub observed: Verdict,
    /// HTTP status, for HTTP probes that got a response.
    pub status: Option<u16>,
    /// What happened, in a few words.
    pub detail: String,
}

impl ProbeResult {
    fn deny(detail: impl Into<String>) -> Self {
        ProbeResult {
            observed: Verdict::Deny,
            status: None,
            detail: detail.into(),
        }
    }
}

/// Runs every probe of `plan` (inside the current namespace), in order of
/// the plan, concurrently.
pub async fn run_plan(plan: ProbePlan) -> Vec<ProbeResult> {
    let limit = Arc::new(Semaphore::new(CONCURRENCY));
    let mut handles = Vec::new();
    for probe in plan.probes {
        let limit = limit.clone();
        let bind = plan.bind;
        handles.push(tokio::spawn(async move {
            let _permit = limit.acquire_owned().await;
            match probe.protocol {
                Protocol::Udp => probe_udp(bind, &probe).await,
                Protocol::Tcp => probe_tcp(bind, &probe).await,
                Protocol::Sctp => ProbeResult::deny("SCTP probes are not supported by the lab"),
            }
        }));
    }
    let mut results = Vec::new();
    for handle in handles {
        results.push(
            handle
                .await
                .unwrap_or_else(|e| ProbeResult::deny(format!("probe task failed: {e}"))),
        );
    }
    results
}

async fn probe_tcp(bind: Option<Ipv4Addr>, probe: &Probe) -> ProbeResult {
    let socket = match TcpSocket::new_v4() {
        Ok(s) => s,
        Err(e) => return ProbeResult::deny(format!("socket: {e}")),
    };
    if let Some(ip) = bind
        && let Err(e) = socket.bind(SocketAddr::from((ip, 0)))
    {
        return ProbeResult::deny(format!("bind {ip}: {e}"));
    }
    let target = SocketAddr::from((probe.ip, probe.port));
    let mut stream = match tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(target)).await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return ProbeResult::deny(format!("connect: {e}")),
        Err(_) => return ProbeResult::deny("connect: timed out"),
    };
    let request = match &probe.http {
        Some((method, path)) => format!(
            "{method} {path} HTTP/1.1\r\nHost: {}:{}\r\nUser-Agent: palisade-lab-probe\r\nConnection: close\r\n\r\n",
            probe.ip, probe.port
        ),
        None => "palisade-probe\n".to_string(),
    };
    if let Err(e) = stream.write_all(request.as_bytes()).await {
        return ProbeResult::deny(format!("write: {e}"));
    }
    let mut answer = Vec::new();
    let read = tokio::time::timeout(ANSWER_TIMEOUT, async {
        let mut buf = [0u8; 4096];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) => return Ok(()),
                Ok(n) => {
                    answer.extend_from_slice(&buf[..n]);
                    if probe.http.is_none() && answer.contains(&b'\n') {
                        return Ok(());
                    }
                    if answer.len() > 64 * 1024 {
                        return Ok(());
                    }
                }
                Err(e) => return Err(e),
            }
        }
    })
    .await;
    let text = String::from_utf8_lossy(&answer).into_owned();
    match read {
        Err(_) if answer.is_empty() => return ProbeResult::deny("no answer: timed out"),
        Ok(Err(e)) if answer.is_empty() => return ProbeResult::deny(format!("read: {e}")),
        _ => {}
    }
    if answer.is_empty() {
        return ProbeResult::deny("closed without an answer");
    }
    match &probe.http {
        Some(_) => judge_http(&text, &probe.expect),
        None => {
            let line = text.lines().next().unwrap_or("").trim();
            if probe.expect.iter().any(|e| e == line) {
                ProbeResult {
                    observed: Verdict::Allow,
                    status: None,
                    detail: format!("answered by {line}"),
                }
            } else {
                ProbeResult::deny(format!("unexpected answer {line:?}"))
            }
        }
    }
}

fn judge_http(text: &str, expect: &[String]) -> ProbeResult {
    let status: Option<u16> = text
        .lines()
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok());
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    let denied_by = text.lines().find_map(|l| {
        l.to_ascii_lowercase()
            .strip_prefix("x-palisade-denied-by:")
            .map(|v| v.trim().to_string())
    });
    match status {
        Some(200) if expect.iter().any(|e| body.lines().any(|l| l.trim() == e)) => ProbeResult {
            observed: Verdict::Allow,
            status,
            detail: format!("200 from {}", body.trim()),
        },
        Some(code) => ProbeResult {
            observed: Verdict::Deny,
            status,
            detail: match denied_by {
                Some(by) => format!("{code}, denied by {by}"),
                None => format!("{code}"),
            },
        },
        None => ProbeResult::deny(format!(
            "not an HTTP response: {:?}",
            text.chars().take(40).collect::<String>()
        )),
    }
}

async fn probe_udp(bind: Option<Ipv4Addr>, probe: &Probe) -> ProbeResult {
    let socket =
        match UdpSocket::bind(SocketAddr::from((bind.unwrap_or(Ipv4Addr::UNSPECIFIED), 0))).await {
            Ok(s) => s,
            Err(e) => return ProbeResult::deny(format!("bind: {e}")),
        };
    let target = SocketAddr::from((probe.ip, probe.port));
    let mut buf = [0u8; 2048];
    for _ in 0..UDP_TRIES {
        if let Err(e) = socket.send_to(b"palisade-probe\n", target).await {
            return ProbeResult::deny(format!("send: {e}"));
        }
        if let Ok(Ok((n, from))) = tokio::time::timeout(UDP_WAIT, socket.recv_from(&mut buf)).await
        {
            let line = String::from_utf8_lossy(&buf[..n]).trim().to_string();
            if from == target && probe.expect.contains(&line) {
                return ProbeResult {
                    observed: Verdict::Allow,
                    status: None,
                    detail: format!("answered by {line}"),
                };
            }
            return ProbeResult::deny(format!("unexpected datagram {line:?} from {from}"));
        }
    }
    ProbeResult::deny("no answer")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_answers_are_judged_by_status_and_body() {
        let ok = "HTTP/1.1 200 OK\r\ncontent-length: 6\r\n\r\nx/web\n";
        assert_eq!(judge_http(ok, &["x/web".into()]).observed, Verdict::Allow);
        assert_eq!(judge_http(ok, &["x/api".into()]).observed, Verdict::Deny);
        let denied =
            "HTTP/1.1 403 Forbidden\r\nx-palisade-denied-by: ns/p#0\r\n\r\nRBAC: access denied";
        let r = judge_http(denied, &["x/web".into()]);
        assert_eq!((r.observed, r.status), (Verdict::Deny, Some(403)));
        assert!(r.detail.contains("ns/p#0"));
        assert_eq!(judge_http("garbage", &[]).observed, Verdict::Deny);
    }
}
