//! Indexes over a loaded cluster that make selector resolution cheap: pods by
//! namespace (a contiguous range, since pods are sorted), pods by label pair,
//! and pods by IP (sorted, for ipBlock range queries). A hostNetwork pod is
//! in the namespace and label indexes (a Service may select it) but not in
//! the IP index: its addresses are its node's, and "traffic to/from
//! `hostNetwork` pods is treated the same as all other traffic to/from the
//! node IP" (kubernetes.io, "Network Policies").
use std::collections::HashMap;
use std::net::IpAddr;
use std::ops::Range;

use ipnet::IpNet;

use crate::cluster::{Cluster, Selector};

pub struct ClusterIndex<'a> {
    pub cluster: &'a Cluster,
    ns_ranges: HashMap<&'a str, Range<usize>>,
    by_label: HashMap<(&'a str, &'a str), Vec<usize>>,
    by_ip: Vec<(IpAddr, usize)>,
}

impl<'a> ClusterIndex<'a> {
    pub fn new(cluster: &'a Cluster) -> Self {
        let mut ns_ranges: HashMap<&str, Range<usize>> = HashMap::new();
        let mut by_label: HashMap<(&str, &str), Vec<usize>> = HashMap::new();
        let mut by_ip = Vec::new();
        for (i, pod) in cluster.pods.iter().enumerate() {
            ns_ranges
                .entry(pod.namespace.as_str())
                .and_modify(|r| r.end = i + 1)
                .or_insert(i..i + 1);
            for (k, v) in &pod.labels {
                by_label
                    .entry((k.as_str(), v.as_str()))
                    .or_default()
                    .push(i);
            }
            if !pod.host_network {
                by_ip.extend(pod.ips.iter().map(|ip| (*ip, i)));
            }
        }
        by_ip.sort_unstable();
        Self {
            cluster,
            ns_ranges,
            by_label,
            by_ip,
        }
    }

    /// Pod indices of `namespace` that `selector` selects (`None`: all).
    pub fn pods_in(&self, namespace: &str, selector: Option<&Selector>) -> Vec<usize> {
        let Some(range) = self.ns_ranges.get(namespace).cloned() else {
            return Vec::new();
        };
        let pods = &self.cluster.pods;
        let Some(sel) = selector.filter(|s| !s.is_empty()) else {
            return range.collect();
        };
        // Narrow by the rarest required label pair, then check the rest.
        let posting = sel
            .required_pairs()
            .iter()
            .map(|(k, v)| {
                self.by_label
                    .get(&(k.as_str(), v.as_str()))
                    .map(Vec::as_slice)
                    .unwrap_or(&[])
            })
            .min_by_key(|l| l.len());
        match posting {
            Some(list) => {
                let start = list.partition_point(|&i| i < range.start);
                list[start..]
                    .iter()
                    .copied()
                    .take_while(|&i| i < range.end)
                    .filter(|&i| sel.matches(&pods[i].labels))
                    .collect()
            }
            None => range.filter(|&i| sel.matches(&pods[i].labels)).collect(),
        }
    }

    /// Names of the namespaces `selector` selects.
    pub fn namespaces(&self, selector: &Selector) -> Vec<&'a str> {
        self.cluster
            .namespaces
            .values()
            .filter(|n| selector.matches(&n.labels))
            .map(|n| n.name.as_str())
            .collect()
    }

    /// Pods with an IP inside `net` and outside every `except` (never a
    /// hostNetwork pod: its IP is the node's).
    pub fn pods_in_net(&self, net: &IpNet, except: &[IpNet]) -> Vec<usize> {
        let start = self.by_ip.partition_point(|(ip, _)| *ip < net.network());
        let mut out: Vec<usize> = self.by_ip[start..]
            .iter()
            .take_while(|(ip, _)| *ip <= net.broadcast())
            .filter(|(ip, _)| net.contains(ip) && !except.iter().any(|e| e.contains(ip)))
            .map(|(_, i)| *i)
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// The pod that owns `ip`, if any (a node's address names no pod).
    pub fn pod_by_ip(&self, ip: IpAddr) -> Option<usize> {
        let i = self.by_ip.partition_point(|(p, _)| *p < ip);
        self.by_ip.get(i).filter(|(p, _)| *p == ip).map(|(_, i)| *i)
    }
}
