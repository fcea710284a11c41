//! Criterion benchmarks for the Schnorr proof module.
use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use quloud::domain::proof::{batch_verify, prove, verify, Commitment, Proof, ProofSecret};

mod common;
use common::context;

fn secret(i: u64) -> ProofSecret {
    let mut seed = [0x42; 32];
    seed[..8].copy_from_slice(&i.to_le_bytes());
    ProofSecret::from_seed(&seed)
}

fn bench_single(c: &mut Criterion) {
    let sk = secret(0);
    let ctx = context(0);
    let proof = prove(&sk, &ctx);
    let cm = sk.commitment();
    c.bench_function("prove", |b| b.iter(|| prove(black_box(&sk), black_box(&ctx))));
    c.bench_function("verify", |b| b.iter(|| verify(black_box(&cm), black_box(&ctx), black_box(&proof))));
    c.bench_function("secret_from_seed", |b| b.iter(|| ProofSecret::from_seed(black_box(&[7; 32]))));
    let cm_bytes = cm.to_bytes();
    let proof_bytes = proof.to_bytes();
    c.bench_function("commitment_encode", |b| b.iter(|| black_box(&cm).to_bytes()));
    c.bench_function("commitment_decode", |b| b.iter(|| Commitment::from_bytes(black_box(&cm_bytes))));
    c.bench_function("proof_encode", |b| b.iter(|| black_box(&proof).to_bytes()));
    c.bench_function("proof_decode", |b| b.iter(|| Proof::from_bytes(black_box(&proof_bytes))));
}

fn bench_batch(c: &mut Criterion) {
    let mut group = c.benchmark_group("batch_verify");
    for n in [2u64, 4, 8, 16, 32, 64, 256] {
        let items: Vec<_> = (0..n)
            .map(|i| {
                let sk = secret(i);
                let ctx = context(i);
                (sk.commitment(), ctx, prove(&sk, &ctx))
            })
            .collect();
        assert!(batch_verify(&items).is_ok());
        group.throughput(Throughput::Elements(n));
        group.bench_with_input(BenchmarkId::from_parameter(n), &items, |b, items| {
            b.iter(|| batch_verify(black_box(items)))
        });
    }
    group.finish();
}

criterion_group!(benches, bench_single, bench_batch);
criterion_main!(benches);
