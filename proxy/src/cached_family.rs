//! A prometheus-client metric family whose metrics are found through a
//! foldhash map first. The family's own map hashes the whole label set with
//! SipHash under a lock: a few hundred instructions for a label holding a
//! SPIFFE ID, paid on every connection or request that counts. The cached
//! metrics are the family's own (a clone of a counter or histogram is the
//! same metric), so what `/metrics` shows does not change.
use std::hash::Hash;
use std::sync::RwLock;

use prometheus_client::metrics::family::{Family, MetricConstructor};

use crate::fast_map::FastMap;

/// Label sets kept before the cache starts over: policies and peers come
/// and go with config versions, and the cache must not keep every one ever
/// seen (the family keeps them, as it always did).
pub const CACHE_CAPACITY: usize = 4096;

pub struct CachedFamily<L, M, C = fn() -> M> {
    family: Family<L, M, C>,
    cache: RwLock<FastMap<L, M>>,
}

impl<L, M, C> CachedFamily<L, M, C>
where
    L: Clone + Hash + Eq,
    M: Clone,
    C: MetricConstructor<M>,
{
    pub fn new(family: Family<L, M, C>) -> Self {
        Self {
            family,
            cache: RwLock::default(),
        }
    }

    /// The family, to register (a clone shares its metrics).
    pub fn family(&self) -> &Family<L, M, C> {
        &self.family
    }

    /// Calls `f` with the metric of `labels`, made on first use.
    pub fn with<R>(&self, labels: &L, f: impl FnOnce(&M) -> R) -> R {
        if let Ok(cache) = self.cache.read()
            && let Some(metric) = cache.get(labels)
        {
            return f(metric);
        }
        let metric = self.family.get_or_create(labels).clone();
        let result = f(&metric);
        if let Ok(mut cache) = self.cache.write() {
            if cache.len() >= CACHE_CAPACITY {
                cache.clear();
            }
            cache.insert(labels.clone(), metric);
        }
        result
    }

    /// A handle on the metric of `labels`.
    pub fn get(&self, labels: &L) -> M {
        self.with(labels, M::clone)
    }
}

#[cfg(test)]
mod tests {
    use prometheus_client::metrics::counter::Counter;

    use super::*;

    #[test]
    fn counts_land_in_the_family_also_after_the_cache_starts_over() {
        let cached: CachedFamily<Vec<(String, String)>, Counter> =
            CachedFamily::new(Family::default());
        let labels = |i: usize| vec![("n".to_owned(), i.to_string())];
        cached.with(&labels(0), |c| c.inc());
        for i in 0..=CACHE_CAPACITY {
            cached.with(&labels(i), |c| c.inc());
        }
        cached.with(&labels(0), |c| c.inc());
        assert_eq!(cached.family().get_or_create(&labels(0)).get(), 3);
        assert_eq!(
            cached.family().get_or_create(&labels(CACHE_CAPACITY)).get(),
            1
        );
        // A handle is the family's own counter.
        cached.get(&labels(7)).inc();
        assert_eq!(cached.family().get_or_create(&labels(7)).get(), 2);
    }
}
