//! Hash maps on the per-request path keyed by addresses from the config
//! (peers, Services, upstream endpoints): foldhash instead of the standard
//! library's SipHash, which cost a few hundred instructions per lookup of a
//! socket address. Still randomly seeded per map; the keys are not the
//! caller's to choose.
pub type FastMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;
