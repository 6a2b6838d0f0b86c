//! Service translation: a Service's virtual IP and port become one ready
//! endpoint, chosen by power of two choices over in-flight counts among the
//! endpoints egress policy allows (NetworkPolicy applies to pods, not to
//! Service IPs), or, for a Service with client-IP session affinity, the
//! endpoint this pod reached last while it remains (see [`super::affinity`]).
//! An endpoint that could not be reached is set aside for a few seconds
//! (passive outlier detection on connect failures), unless every endpoint
//! is.
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::affinity::Affinities;
use crate::policy::{self, Denied};
use crate::state::{ServiceTarget, Snapshot};

/// Where an outbound connection goes.
#[derive(Clone)]
pub enum Target {
    Service(Arc<ServiceTarget>),
    Endpoint(SocketAddr),
}

impl Target {
    /// The server name mTLS to this target's endpoints carries: the
    /// Service port's, none for a pod's own address.
    pub fn sni(&self) -> Option<&Arc<str>> {
        match self {
            Target::Service(s) => s.sni.as_ref(),
            Target::Endpoint(_) => None,
        }
    }

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
pub fn pick(snap: &Snapshot, affinities: &Affinities, target: &Target) -> Result<Picked, Denied> {
    match target {
        Target::Endpoint(addr) => {
            policy::egress(snap, addr.ip(), addr.port())?;
            Ok(Picked {
                addr: *addr,
                in_flight: None,
            })
        }
        Target::Service(svc) => match svc.affinity {
            None => pick_endpoint(snap, svc, &[]),
            Some(timeout) => {
                let now = Instant::now();
                let picked = sticky_endpoint(snap, affinities, svc, now)
                    .map_or_else(|| pick_endpoint(snap, svc, &[]), Ok)?;
                affinities.record(svc.service_port, picked.addr, timeout, now);
                Ok(picked)
            }
        },
    }
}

/// How long an endpoint that could not be reached is passed over. A
/// refused connection costs little, but an address that no longer answers
/// costs a whole connect timeout: each request that picked it would wait
/// that long before being sent elsewhere.
pub const SET_ASIDE: Duration = Duration::from_secs(5);

/// `at` in milliseconds from a process-wide epoch a second before the first
/// call (so the present is never 0, which means "nothing set aside").
fn now_ms(at: Instant) -> u64 {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(|| {
        let now = Instant::now();
        now.checked_sub(Duration::from_secs(1)).unwrap_or(now)
    });
    u64::try_from(at.saturating_duration_since(epoch).as_millis()).unwrap_or(u64::MAX)
}

/// Until when (in [`now_ms`] time) each endpoint of a Service port is set
/// aside; lives as long as the config version it belongs to.
pub struct Unreachable {
    until: Vec<AtomicU64>,
    /// The latest of `until`: 0, or in the past, when nothing is set aside,
    /// so the common case reads one atomic and no clock.
    latest: AtomicU64,
}

impl Unreachable {
    pub fn new(endpoints: usize) -> Self {
        Self {
            until: (0..endpoints).map(|_| AtomicU64::new(0)).collect(),
            latest: AtomicU64::new(0),
        }
    }

    /// The current time, if some endpoint may be set aside now.
    fn active_now(&self) -> Option<u64> {
        let latest = self.latest.load(Ordering::Relaxed);
        if latest == 0 {
            return None;
        }
        let now = now_ms(Instant::now());
        if now >= latest {
            let _ = self
                .latest
                .compare_exchange(latest, 0, Ordering::Relaxed, Ordering::Relaxed);
            return None;
        }
        Some(now)
    }

    fn is_set_aside(&self, i: usize, now: Option<u64>) -> bool {
        now.is_some_and(|now| {
            self.until
                .get(i)
                .is_some_and(|u| u.load(Ordering::Relaxed) > now)
        })
    }
}

/// Sets endpoint `addr` of `target` aside for [`SET_ASIDE`]: it could not
/// be reached. A fixed endpoint (no Service) has no others to prefer.
pub fn set_aside(target: &Target, addr: SocketAddr) {
    let Target::Service(svc) = target else {
        return;
    };
    let Some(i) = svc
        .endpoints
        .iter()
        .position(|ep| SocketAddr::new(ep.ip, ep.port) == addr)
    else {
        return;
    };
    let until = now_ms(Instant::now() + SET_ASIDE);
    svc.unreachable.until[i].store(until, Ordering::Relaxed);
    svc.unreachable.latest.fetch_max(until, Ordering::Relaxed);
}

/// Endpoints tried after the first when it cannot be reached, as Istio's
/// default retry policy (two retries on `connect-failure` and
/// `refused-stream`, each to another host).
pub const CONNECT_RETRIES: usize = 2;

/// Another endpoint of `target`, for a connection or request that never
/// reached any of the endpoints in `tried`: one egress allows and not
/// tried yet, or `None` (a fixed endpoint has no other). A Service with
/// session affinity moves its affinity there.
pub fn pick_another(
    snap: &Snapshot,
    affinities: &Affinities,
    target: &Target,
    tried: &[SocketAddr],
) -> Option<Picked> {
    let Target::Service(svc) = target else {
        return None;
    };
    let picked = pick_endpoint(snap, svc, tried).ok()?;
    if let Some(timeout) = svc.affinity {
        affinities.record(svc.service_port, picked.addr, timeout, Instant::now());
    }
    Some(picked)
}

/// The endpoint this pod's affinity to `svc` names, if it has not expired,
/// is still one of the Service port's endpoints and egress still allows it.
fn sticky_endpoint(
    snap: &Snapshot,
    affinities: &Affinities,
    svc: &ServiceTarget,
    now: Instant,
) -> Option<Picked> {
    let addr = affinities.current(svc.service_port, now)?;
    let i = svc
        .endpoints
        .iter()
        .position(|ep| SocketAddr::new(ep.ip, ep.port) == addr)?;
    if svc
        .unreachable
        .is_set_aside(i, svc.unreachable.active_now())
    {
        return None;
    }
    policy::egress(snap, addr.ip(), addr.port()).ok()?;
    Some(in_flight(svc, i))
}

/// Endpoint `i` of `svc`, counted as in flight.
fn in_flight(svc: &ServiceTarget, i: usize) -> Picked {
    let ep = &svc.endpoints[i];
    let counter = svc.in_flight[i].clone();
    counter.fetch_add(1, Ordering::Relaxed);
    Picked {
        addr: SocketAddr::new(ep.ip, ep.port),
        in_flight: Some(counter),
    }
}

/// Power of two choices among the endpoints egress allows, leaving out
/// `exclude` and, while others remain, those set aside as unreachable.
fn pick_endpoint(
    snap: &Snapshot,
    svc: &ServiceTarget,
    exclude: &[SocketAddr],
) -> Result<Picked, Denied> {
    match svc.unreachable.active_now() {
        None => pick_among(snap, svc, exclude, None),
        now => {
            pick_among(snap, svc, exclude, now).or_else(|_| pick_among(snap, svc, exclude, None))
        }
    }
}

/// [`pick_endpoint`], passing over endpoints set aside at `now` (if given).
fn pick_among(
    snap: &Snapshot,
    svc: &ServiceTarget,
    exclude: &[SocketAddr],
    now: Option<u64>,
) -> Result<Picked, Denied> {
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
        if exclude.contains(&SocketAddr::new(ep.ip, ep.port))
            || svc.unreachable.is_set_aside(i, now)
        {
            return Err(Denied {
                policy: svc.name.clone(),
                rule: String::new(),
                reason: format!("endpoint {}:{} could not be reached", ep.ip, ep.port),
            });
        }
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
    Ok(in_flight(svc, chosen))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// A pod calling `web` (cluster IP 198.19.0.10:80, three endpoints),
    /// with `affinity` as the Service's sessionAffinity and egress allowing
    /// `egress_to` (every endpoint when empty).
    fn snapshot(affinity: &str, endpoints: &[&str], egress_to: &[&str]) -> Snapshot {
        let eps: String = endpoints
            .iter()
            .map(|ip| format!("          - {{ ip: {ip}, port: 8080, workload: x/web }}\n"))
            .collect();
        let egress = if egress_to.is_empty() {
            "{ isolated: false }".to_string()
        } else {
            let nets: Vec<String> = egress_to.iter().map(|ip| format!("{ip}/32")).collect();
            format!(
                "{{ isolated: true, rules: [{{ policy: x/egress, rule: 0, peers: [{{ description: test, nets: [{}] }}] }}] }}",
                nets.join(", ")
            )
        };
        crate::state::test_snapshot(
            &egress,
            &format!(
                r#"
  - name: x/web
    clusterIps: [198.19.0.10]
    {affinity}
    ports:
      - port: 80
        protocol: TCP
        endpoints:
{eps}"#
            ),
        )
    }

    const VIP: &str = "198.19.0.10:80";
    const THREE: &[&str] = &["198.18.0.5", "198.18.0.6", "198.18.0.7"];
    const CLIENT_IP: &str = "sessionAffinity: { timeoutSeconds: 10800 }";

    fn picks(snap: &Snapshot, affinities: &Affinities, n: usize) -> BTreeSet<SocketAddr> {
        let target = resolve(snap, VIP.parse().unwrap());
        (0..n)
            .map(|_| pick(snap, affinities, &target).unwrap().addr)
            .collect()
    }

    #[test]
    fn without_affinity_picks_spread() {
        let snap = snapshot("", THREE, &[]);
        assert!(picks(&snap, &Affinities::default(), 60).len() > 1);
    }

    /// Kubernetes conformance "should have session affinity work for
    /// service with type clusterIP": every request from one client reaches
    /// the same pod.
    #[test]
    fn client_ip_affinity_sticks_to_one_endpoint() {
        let snap = snapshot(CLIENT_IP, THREE, &[]);
        let affinities = Affinities::default();
        assert_eq!(picks(&snap, &affinities, 60).len(), 1);
        assert_eq!(affinities.live(Instant::now()), 1);
    }

    #[test]
    fn affinity_survives_a_new_config_version_while_its_endpoint_remains() {
        let affinities = Affinities::default();
        let first = picks(&snapshot(CLIENT_IP, THREE, &[]), &affinities, 1);
        let first = *first.iter().next().unwrap();
        // A new version (same endpoints, reordered, plus one more).
        let mut more: Vec<&str> = THREE.iter().rev().copied().collect();
        more.push("198.18.0.8");
        let again = picks(&snapshot(CLIENT_IP, &more, &[]), &affinities, 30);
        assert_eq!(again, BTreeSet::from([first]));
        // The endpoint goes away: another is picked, and then kept.
        let rest: Vec<String> = more
            .iter()
            .filter(|ip| **ip != first.ip().to_string())
            .map(|s| s.to_string())
            .collect();
        let rest: Vec<&str> = rest.iter().map(String::as_str).collect();
        let moved = picks(&snapshot(CLIENT_IP, &rest, &[]), &affinities, 30);
        assert_eq!(moved.len(), 1);
        assert_ne!(moved, BTreeSet::from([first]));
    }

    #[test]
    fn affinity_never_overrides_egress_policy() {
        let affinities = Affinities::default();
        let first = *picks(&snapshot(CLIENT_IP, THREE, &[]), &affinities, 1)
            .iter()
            .next()
            .unwrap();
        let others: Vec<String> = THREE
            .iter()
            .filter(|ip| **ip != first.ip().to_string())
            .map(|s| s.to_string())
            .collect();
        let others: Vec<&str> = others.iter().map(String::as_str).collect();
        let snap = snapshot(CLIENT_IP, THREE, &others);
        let now = picks(&snap, &affinities, 30);
        assert_eq!(now.len(), 1, "{now:?}");
        assert!(!now.contains(&first), "egress denies {first}");
    }

    #[test]
    fn an_expired_affinity_lets_the_balancer_choose_again() {
        let snap = snapshot("sessionAffinity: { timeoutSeconds: 1 }", THREE, &[]);
        let affinities = Affinities::default();
        let target = resolve(&snap, VIP.parse().unwrap());
        let Target::Service(svc) = &target else {
            panic!("not a Service")
        };
        let first = pick(&snap, &affinities, &target).unwrap().addr;
        let later = Instant::now() + std::time::Duration::from_secs(2);
        assert_eq!(affinities.current(svc.service_port, later), None);
        assert!(sticky_endpoint(&snap, &affinities, svc, later).is_none());
        assert!(
            sticky_endpoint(&snap, &affinities, svc, Instant::now())
                .is_some_and(|p| p.addr == first)
        );
    }

    #[test]
    fn another_endpoint_skips_those_tried_and_takes_the_affinity_along() {
        let snap = snapshot(CLIENT_IP, THREE, &[]);
        let affinities = Affinities::default();
        let target = resolve(&snap, VIP.parse().unwrap());
        let first = pick(&snap, &affinities, &target).unwrap().addr;
        let second = pick_another(&snap, &affinities, &target, &[first])
            .unwrap()
            .addr;
        assert_ne!(second, first);
        // The affinity follows the endpoint that answered.
        assert_eq!(picks(&snap, &affinities, 20), BTreeSet::from([second]));
        let third = pick_another(&snap, &affinities, &target, &[first, second])
            .unwrap()
            .addr;
        assert!(third != first && third != second);
        assert!(pick_another(&snap, &affinities, &target, &[first, second, third]).is_none());
        // A fixed endpoint has no other.
        let fixed = Target::Endpoint(first);
        assert!(pick_another(&snap, &affinities, &fixed, &[first]).is_none());
    }

    #[test]
    fn an_unreachable_endpoint_is_passed_over_unless_all_are() {
        let snap = snapshot("", THREE, &[]);
        let affinities = Affinities::default();
        let target = resolve(&snap, VIP.parse().unwrap());
        let gone: SocketAddr = "198.18.0.5:8080".parse().unwrap();
        set_aside(&target, gone);
        let got = picks(&snap, &affinities, 60);
        assert!(!got.contains(&gone), "{got:?}");
        assert_eq!(got.len(), 2);
        // With every endpoint set aside, they are all candidates again.
        set_aside(&target, "198.18.0.6:8080".parse().unwrap());
        set_aside(&target, "198.18.0.7:8080".parse().unwrap());
        assert_eq!(picks(&snap, &affinities, 60).len(), 3);
        // A sticky endpoint set aside is left too.
        let sticky = snapshot(CLIENT_IP, THREE, &[]);
        let target = resolve(&sticky, VIP.parse().unwrap());
        let first = pick(&sticky, &affinities, &target).unwrap().addr;
        set_aside(&target, first);
        assert!(!picks(&sticky, &affinities, 20).contains(&first));
    }

    #[test]
    fn being_set_aside_ends() {
        let u = Unreachable::new(1);
        u.until[0].store(now_ms(Instant::now()) + 1, Ordering::Relaxed);
        u.latest
            .store(now_ms(Instant::now()) + 1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(5));
        assert_eq!(u.active_now(), None);
        assert_eq!(u.latest.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_timeout_out_of_range_is_refused_when_the_config_is_read() {
        for bad in ["0", "86401", "-1"] {
            let yaml = format!(
                "name: x/web\nclusterIps: [198.19.0.10]\nsessionAffinity: {{ timeoutSeconds: {bad} }}\nports: []\n"
            );
            let err = serde_yaml::from_str::<palisade_api::Service>(&yaml).unwrap_err();
            assert!(err.to_string().contains("timeoutSeconds"), "{bad}: {err}");
        }
    }
}
