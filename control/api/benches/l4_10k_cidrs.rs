//! One NetworkPolicy decision against 10,000 CIDRs (goal: < 100 ns median).
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};

use criterion::{Criterion, criterion_group, criterion_main};
use ipnet::{IpNet, Ipv4Net};
use palisade_api::l4::CompiledDirection;
use palisade_api::{DirectionPolicy, L4Peer, L4Rule, PortRange, Protocol};

fn policy() -> DirectionPolicy {
    // 100 peers x 100 CIDRs: /32 pods and /28 blocks spread over 198.18.0.0/15.
    let mut peers = Vec::new();
    for p in 0..100u32 {
        let nets = (0..100u32)
            .map(|i| {
                let n = p * 100 + i;
                let addr = Ipv4Addr::from(0xC612_0000u32 + n * 16);
                let len = if n % 2 == 0 { 32 } else { 28 };
                IpNet::V4(Ipv4Net::new(addr, len).unwrap())
            })
            .collect();
        peers.push(L4Peer {
            description: format!("podSelector app=p{p}"),
            nets,
            except: vec![],
        });
    }
    DirectionPolicy {
        isolated: true,
        policies: vec!["bench/big".into()],
        rules: vec![
            L4Rule {
                policy: "bench/dns".into(),
                rule: 0,
                peers: None,
                ports: Some(vec![PortRange {
                    protocol: Protocol::Udp,
                    port: 53,
                    end_port: 53,
                }]),
            },
            L4Rule {
                policy: "bench/big".into(),
                rule: 0,
                peers: Some(peers),
                ports: Some(vec![PortRange {
                    protocol: Protocol::Tcp,
                    port: 8000,
                    end_port: 9000,
                }]),
            },
        ],
    }
}

fn bench(c: &mut Criterion) {
    let compiled = CompiledDirection::new(&policy());
    let hit = IpAddr::V4(Ipv4Addr::from(0xC612_0000u32 + 7_777 * 16));
    let miss = IpAddr::V4(Ipv4Addr::from(0xC612_0000u32 + 7_776 * 16 + 3));
    assert!(compiled.evaluate(hit, 8080, Protocol::Tcp).is_allowed());
    assert!(!compiled.evaluate(miss, 8080, Protocol::Tcp).is_allowed());
    c.bench_function("l4_10k_cidrs/allowed", |b| {
        b.iter(|| compiled.evaluate(black_box(hit), black_box(8080), Protocol::Tcp))
    });
    c.bench_function("l4_10k_cidrs/denied", |b| {
        b.iter(|| compiled.evaluate(black_box(miss), black_box(8080), Protocol::Tcp))
    });
    c.bench_function("l4_10k_cidrs/compile", |b| {
        let p = policy();
        b.iter(|| CompiledDirection::new(black_box(&p)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
