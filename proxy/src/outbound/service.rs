//! Service translation: a Service's virtual IP and port become one ready
//! endpoint, chosen by power of two choices over in-flight counts among the
//! endpoints egress policy allows (NetworkPolicy applies to pods, not to
//! Service IPs).
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::policy::{self, Denied};
use crate::state::{ServiceTarget, Snapshot};

/// Where an outbound connection goes.
#[derive(Clone)]
pub enum Target {
    Service(Arc<ServiceTarget>),
    Endpoint(SocketAddr),
}

impl Target {
    /// The Service's declared `appProtocol`, if any.
    pub fn app_protocol(&self) -> Option<&str> {
        match self {
            Target::Service(s) => s.app_protocol.as_deref(),
            Target::Endpoint(_) => None,
        }
    }
}

pub fn resolve(snap: &Snapshot, orig: SocketAddr) -> Target {
    match snap.service(orig) {
        Some(svc) => Target::Service(svc.clone()),
        None => Target::Endpoint(orig),
    }
}

/// An endpoint picked for one connection or request; counts as in flight
/// until dropped.
pub struct Picked {
    pub addr: SocketAddr,
    in_flight: Option<Arc<AtomicUsize>>,
}

impl Drop for Picked {
    fn drop(&mut self) {
        if let Some(c) = &self.in_flight {
            c.fetch_sub(1, Ordering::Relaxed);
        }
    }
}

/// Picks an endpoint egress allows. `Err` names why nothing is allowed.
pub fn pick(snap: &Snapshot, target: &Target) -> Result<Picked, Denied> {
    match target {
        Target::Endpoint(addr) => {
            policy::egress(snap, addr.ip(), addr.port())?;
            Ok(Picked {
                addr: *addr,
                in_flight: None,
            })
        }
        Target::Service(svc) => pick_endpoint(snap, svc),
    }
}

fn pick_endpoint(snap: &Snapshot, svc: &ServiceTarget) -> Result<Picked, Denied> {
    let n = svc.endpoints.len();
    if n == 0 {
        return Err(Denied {
            policy: svc.name.clone(),
            rule: String::new(),
            reason: format!("Service {} has no ready endpoints", svc.name),
        });
    }
    let allowed = |i: usize| {
        let ep = &svc.endpoints[i];
        policy::egress(snap, ep.ip, ep.port)
    };
    // Power of two choices among allowed endpoints: two random candidates,
    // the one with fewer requests in flight wins.
    let a = rand::random_range(0..n);
    let b = if n > 1 {
        (a + 1 + rand::random_range(0..n - 1)) % n
    } else {
        a
    };
    let ok_a = allowed(a).is_ok();
    let ok_b = b != a && allowed(b).is_ok();
    let chosen = match (ok_a, ok_b) {
        (true, true) => {
            if svc.in_flight[b].load(Ordering::Relaxed) < svc.in_flight[a].load(Ordering::Relaxed) {
                b
            } else {
                a
            }
        }
        (true, false) => a,
        (false, true) => b,
        (false, false) => {
            // Scan for any allowed endpoint; none means refuse at once.
            let mut last = None;
            let mut found = None;
            for i in (0..n).map(|k| (a + k) % n) {
                match allowed(i) {
                    Ok(()) => {
                        found = Some(i);
                        break;
                    }
                    Err(d) => last = Some(d),
                }
            }
            match found {
                Some(i) => i,
                None => {
                    let d = last.unwrap_or_else(|| Denied {
                        policy: svc.name.clone(),
                        rule: String::new(),
                        reason: String::new(),
                    });
                    return Err(Denied {
                        reason: format!(
                            "egress policy allows none of the {n} endpoints of Service {} ({})",
                            svc.name, d.reason
                        ),
                        ..d
                    });
                }
            }
        }
    };
    let ep = &svc.endpoints[chosen];
    let counter = svc.in_flight[chosen].clone();
    counter.fetch_add(1, Ordering::Relaxed);
    Ok(Picked {
        addr: SocketAddr::new(ep.ip, ep.port),
        in_flight: Some(counter),
    })
}
