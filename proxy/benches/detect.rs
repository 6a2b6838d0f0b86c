//! Detection cost on the hot path: classifying the first bytes of a
//! connection (HTTP/1 request line, HTTP/2 preface, non-mesh bytes).
use criterion::{Criterion, criterion_group, criterion_main};
use palisade_proxy::detect::{detect_http, detect_tls};

fn bench(c: &mut Criterion) {
    let req = b"GET /api/v1/items?id=42 HTTP/1.1\r\nHost: svc.ns\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n";
    c.bench_function("detect_http1", |b| {
        b.iter(|| detect_http(std::hint::black_box(req)))
    });
    let preface = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
    c.bench_function("detect_h2", |b| {
        b.iter(|| detect_http(std::hint::black_box(preface)))
    });
    c.bench_function("detect_tls_on_http", |b| {
        b.iter(|| detect_tls(std::hint::black_box(req)))
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
