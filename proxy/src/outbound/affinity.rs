//! Client-IP session affinity (`sessionAffinity: ClientIP`) as kube-proxy
//! keeps it: a Service port sends a client back to the endpoint it last
//! reached, as long as that endpoint is still one of the port's endpoints,
//! until `timeoutSeconds` pass without a new connection (kube-proxy's
//! `recent` match is refreshed by every new connection; here every new
//! connection and every HTTP request, which this sidecar balances one by
//! one).
//!
//! A sidecar has a single client, its own pod, so the table is keyed by the
//! Service port alone (cluster IP and port; one entry per address family,
//! as kube-proxy runs one proxier per family). It lives beside the config
//! snapshots, not in them, so a config change keeps every affinity whose
//! endpoint remains.
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Entries kept before expired ones are swept.
const SWEEP_ABOVE: usize = 256;

/// The endpoint each Service port last sent this pod to, and until when.
#[derive(Debug, Default)]
pub struct Affinities {
    table: Mutex<HashMap<SocketAddr, Sticky>>,
}

#[derive(Debug, Clone, Copy)]
struct Sticky {
    endpoint: SocketAddr,
    expires: Instant,
}

impl Affinities {
    /// The endpoint `service_port` last sent this pod to, unless its
    /// affinity has expired at `now`.
    pub fn current(&self, service_port: SocketAddr, now: Instant) -> Option<SocketAddr> {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table
            .get(&service_port)
            .filter(|s| now < s.expires)
            .map(|s| s.endpoint)
    }

    /// Records that `service_port` sent this pod to `endpoint` at `now`:
    /// the affinity lasts `timeout` from here.
    pub fn record(
        &self,
        service_port: SocketAddr,
        endpoint: SocketAddr,
        timeout: Duration,
        now: Instant,
    ) {
        let mut table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        if table.len() >= SWEEP_ABOVE {
            table.retain(|_, s| now < s.expires);
        }
        table.insert(
            service_port,
            Sticky {
                endpoint,
                expires: now + timeout,
            },
        );
    }

    /// Number of affinities not yet expired at `now`.
    pub fn live(&self, now: Instant) -> usize {
        let table = self.table.lock().unwrap_or_else(|p| p.into_inner());
        table.values().filter(|s| now < s.expires).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn an_affinity_lasts_its_timeout_from_the_last_use() {
        let a = Affinities::default();
        let vip = addr("198.18.100.10:80");
        let ep = addr("198.18.0.5:8080");
        let t0 = Instant::now();
        let timeout = Duration::from_secs(10);
        assert_eq!(a.current(vip, t0), None);
        a.record(vip, ep, timeout, t0);
        assert_eq!(a.current(vip, t0 + Duration::from_secs(9)), Some(ep));
        // Used again at 9 s: it now lasts until 19 s.
        a.record(vip, ep, timeout, t0 + Duration::from_secs(9));
        assert_eq!(a.current(vip, t0 + Duration::from_secs(18)), Some(ep));
        assert_eq!(a.current(vip, t0 + Duration::from_secs(19)), None);
        // Another Service port has its own entry.
        assert_eq!(a.current(addr("198.18.100.10:81"), t0), None);
    }

    #[test]
    fn expired_entries_are_swept_once_the_table_grows() {
        let a = Affinities::default();
        let t0 = Instant::now();
        let ep = addr("198.18.0.5:8080");
        for port in 0..SWEEP_ABOVE as u16 {
            a.record(
                SocketAddr::new(addr("198.18.100.10:1").ip(), port),
                ep,
                Duration::from_secs(1),
                t0,
            );
        }
        let later = t0 + Duration::from_secs(2);
        a.record(addr("198.18.100.11:80"), ep, Duration::from_secs(1), later);
        assert_eq!(a.table.lock().unwrap().len(), 1);
        assert_eq!(a.live(later), 1);
    }
}
