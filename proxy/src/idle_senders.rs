//! Idle HTTP/1.1 connections kept for reuse, by endpoint: the one list
//! both HTTP/1 pools share (plain connections to the app or an unmeshed
//! destination, and mTLS connections to peer sidecars).
//!
//! A sender is checked in as soon as its response head arrives and is
//! handed out again only once hyper reports it ready (its previous response
//! body done), so no task waits per request for a connection to come back.
//! Closed senders and those idle longer than the idle timeout are dropped
//! whenever their endpoint's list is touched, and by [`IdleSenders::sweep`],
//! which the sidecar runs periodically; dropping the last sender of a
//! connection closes it.
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use hyper::client::conn::http1::SendRequest;

/// The senders kept for one endpoint, and the tag they were made for (the
/// expected peer identity for mTLS; empty for plain connections).
struct Endpoint<B> {
    tag: String,
    senders: Vec<(SendRequest<B>, Instant)>,
}

impl<B> Endpoint<B> {
    /// Drops the closed senders and those idle for `timeout` or longer.
    fn expire(&mut self, now: Instant, timeout: Duration) {
        self.senders
            .retain(|(s, since)| !s.is_closed() && now.duration_since(*since) < timeout);
    }
}

/// Idle senders of requests with bodies of type `B`.
pub struct IdleSenders<B> {
    by_endpoint: Mutex<crate::fast_map::FastMap<SocketAddr, Endpoint<B>>>,
    max_per_endpoint: usize,
    idle_timeout: Duration,
}

impl<B> IdleSenders<B> {
    pub fn new(max_per_endpoint: usize, idle_timeout: Duration) -> Self {
        Self {
            by_endpoint: Mutex::default(),
            max_per_endpoint,
            idle_timeout,
        }
    }

    /// A sender to `addr`, made for `tag`, ready for a request now, and how
    /// long it sat idle.
    pub fn take_ready(&self, addr: SocketAddr, tag: &str) -> Option<(SendRequest<B>, Duration)> {
        let mut map = self.by_endpoint.lock().ok()?;
        let endpoint = map.get_mut(&addr)?;
        if endpoint.tag != tag {
            map.remove(&addr);
            return None;
        }
        // Closed and expired senders met on the way are dropped; the rest
        // wait for the sweep, so a request does not pay a clock comparison
        // per idle connection.
        let now = Instant::now();
        let mut i = 0;
        while let Some((s, since)) = endpoint.senders.get(i) {
            if s.is_closed() || now.duration_since(*since) >= self.idle_timeout {
                endpoint.senders.swap_remove(i);
            } else if s.is_ready() {
                let (sender, since) = endpoint.senders.swap_remove(i);
                return Some((sender, now.duration_since(since)));
            } else {
                i += 1;
            }
        }
        None
    }

    /// Keeps `sender` for later requests to `addr` (unless it is closed or
    /// the endpoint already keeps its maximum). A different `tag` replaces
    /// what the endpoint kept.
    pub fn checkin(&self, addr: SocketAddr, tag: &str, sender: SendRequest<B>) {
        if sender.is_closed() {
            return;
        }
        let Ok(mut map) = self.by_endpoint.lock() else {
            return;
        };
        let endpoint = map.entry(addr).or_insert_with(|| Endpoint {
            tag: tag.to_string(),
            senders: Vec::new(),
        });
        if endpoint.tag != tag {
            endpoint.tag = tag.to_string();
            endpoint.senders.clear();
        }
        if endpoint.senders.len() < self.max_per_endpoint {
            endpoint.senders.push((sender, Instant::now()));
        }
    }

    /// Drops the closed senders and those idle past the idle timeout, for
    /// every endpoint (an endpoint nobody calls any more keeps nothing open).
    pub fn sweep(&self) {
        let Ok(mut map) = self.by_endpoint.lock() else {
            return;
        };
        let now = Instant::now();
        for endpoint in map.values_mut() {
            endpoint.expire(now, self.idle_timeout);
        }
        map.retain(|_, e| !e.senders.is_empty());
    }

    /// Senders kept for `addr` (for tests and the admin dump).
    pub fn kept(&self, addr: SocketAddr) -> usize {
        self.by_endpoint
            .lock()
            .map(|m| m.get(&addr).map_or(0, |e| e.senders.len()))
            .unwrap_or(0)
    }
}
