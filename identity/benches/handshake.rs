//! Full mTLS handshakes (TLS 1.3, ECDSA P-256 SVIDs, our verifiers on both
//! sides), in memory, per crypto provider; and the cost of verifying one SVID
//! chain (leaf + intermediate) against a bundle.
//!
//! `cargo bench -p palisade-identity --features ring` measures both providers.
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use palisade_identity::{
    CaOptions, CertificateAuthority, CredentialStore, Credentials, PeerRole, SpiffeId, TlsOptions,
    TrustDomain, client_config_with, server_config_with, verify_svid_chain,
};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{ServerName, UnixTime};
use rustls::{ClientConnection, ServerConnection};

const SERVER: &str = "spiffe://bench.test/ns/prod/sa/db";
const CLIENT: &str = "spiffe://bench.test/ns/prod/sa/api";

fn providers() -> Vec<(&'static str, Arc<CryptoProvider>)> {
    [
        #[cfg(feature = "aws-lc-rs")]
        ("aws-lc-rs", palisade_identity::provider::aws_lc_rs()),
        #[cfg(feature = "ring")]
        ("ring", palisade_identity::provider::ring()),
    ]
    .into_iter()
    .collect()
}

fn ca() -> CertificateAuthority {
    let td = TrustDomain::new("bench.test").unwrap();
    let opts = CaOptions {
        intermediate: true,
        ..CaOptions::default()
    };
    CertificateAuthority::create(&td, &opts).unwrap()
}

fn store(ca: &CertificateAuthority, id: &str, provider: &CryptoProvider) -> Arc<CredentialStore> {
    let svid = ca
        .issue(&SpiffeId::parse(id).unwrap(), Duration::from_secs(3600))
        .unwrap();
    let creds = Credentials::new_with_provider(
        svid.chain,
        svid.key.unwrap(),
        ca.bundle().clone(),
        provider,
    )
    .unwrap();
    CredentialStore::new(creds)
}

/// Moves TLS records between the two sides until both finish the handshake.
fn handshake(client: &mut ClientConnection, server: &mut ServerConnection) {
    let mut buf = Vec::with_capacity(8192);
    while client.is_handshaking() || server.is_handshaking() {
        while client.wants_write() {
            buf.clear();
            client.write_tls(&mut buf).unwrap();
            let mut rd = &buf[..];
            while !rd.is_empty() {
                server.read_tls(&mut rd).unwrap();
            }
            server.process_new_packets().unwrap();
        }
        while server.wants_write() {
            buf.clear();
            server.write_tls(&mut buf).unwrap();
            let mut rd = &buf[..];
            while !rd.is_empty() {
                client.read_tls(&mut rd).unwrap();
            }
            client.process_new_packets().unwrap();
        }
    }
}

fn bench_handshake(c: &mut Criterion) {
    let ca = ca();
    let mut group = c.benchmark_group("mtls_handshake");
    for (name, provider) in providers() {
        let opts = TlsOptions {
            provider: provider.clone(),
            ..TlsOptions::default()
        };
        let server_cfg =
            Arc::new(server_config_with(&store(&ca, SERVER, &provider), &opts).unwrap());
        let client_cfg = Arc::new(
            client_config_with(
                &store(&ca, CLIENT, &provider),
                SpiffeId::parse(SERVER).unwrap(),
                &opts,
            )
            .unwrap(),
        );
        let name_ip = ServerName::IpAddress(std::net::Ipv4Addr::LOCALHOST.into());
        let mut probe = ClientConnection::new(client_cfg.clone(), name_ip.clone()).unwrap();
        let mut probe_server = ServerConnection::new(server_cfg.clone()).unwrap();
        handshake(&mut probe, &mut probe_server);
        eprintln!(
            "{name}: key exchange {:?}, cipher suite {:?}",
            probe.negotiated_key_exchange_group().map(|g| g.name()),
            probe.negotiated_cipher_suite().map(|s| s.suite()),
        );
        let one = || {
            let mut client = ClientConnection::new(client_cfg.clone(), name_ip.clone()).unwrap();
            let mut server = ServerConnection::new(server_cfg.clone()).unwrap();
            handshake(&mut client, &mut server);
            assert!(server.peer_certificates().is_some());
        };
        group.bench_function(format!("{name}/wall"), |b| b.iter(one));
        // The machine is shared: thread CPU time is steadier than wall time.
        group.bench_function(format!("{name}/cpu"), |b| {
            b.iter_custom(|iters| {
                let start = thread_cpu_time();
                for _ in 0..iters {
                    one();
                }
                thread_cpu_time() - start
            })
        });
    }
    group.finish();
}

/// CPU time consumed by this thread.
fn thread_cpu_time() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime(CLOCK_THREAD_CPUTIME_ID) failed");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

fn bench_verify(c: &mut Criterion) {
    let ca = ca();
    let svid = ca
        .issue(&SpiffeId::parse(CLIENT).unwrap(), Duration::from_secs(3600))
        .unwrap();
    let mut group = c.benchmark_group("verify_svid_chain");
    for (name, provider) in providers() {
        let verify_one = || {
            verify_svid_chain(
                ca.bundle(),
                &svid.chain,
                UnixTime::now(),
                PeerRole::Client,
                &provider,
            )
            .unwrap()
        };
        group.bench_function(format!("{name}/cpu"), |b| {
            b.iter_custom(|iters| {
                let start = thread_cpu_time();
                for _ in 0..iters {
                    verify_one();
                }
                thread_cpu_time() - start
            })
        });
        group.bench_function(format!("{name}/wall"), |b| b.iter(verify_one));
    }
    group.finish();
}

criterion_group!(benches, bench_handshake, bench_verify);
criterion_main!(benches);
