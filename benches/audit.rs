//! Criterion benches for proof-of-storage audits: prove and verify 4 leaves of a 1 MiB chunk.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use quloud::domain::audit::{prove_leaves, select_leaves, verify_audit, verify_leaf};

const CHUNK_LEN: usize = 1 << 20;
const LEAVES: usize = 4;
const SEED: [u8; 32] = [0x42; 32];

/// Deterministic pseudo-random 1 MiB "ciphertext".
fn ciphertext() -> Vec<u8> {
    let mut data = vec![0u8; CHUNK_LEN];
    blake3::Hasher::new().update(b"audit bench").finalize_xof().fill(&mut data);
    data
}

fn bench_audit(c: &mut Criterion) {
    let data = ciphertext();
    let total_len = data.len() as u64;
    let addr = *blake3::hash(&data).as_bytes();
    let indices = select_leaves(&SEED, total_len, LEAVES);
    let proofs = prove_leaves(&data, &indices).expect("indices in range");
    verify_audit(&addr, total_len, &SEED, LEAVES, &proofs).expect("honest proofs verify");

    c.bench_function("blake3_hash_1MiB_baseline", |b| b.iter(|| blake3::hash(black_box(&data))));
    c.bench_function("prove_1MiB_4_leaves", |b| {
        b.iter(|| prove_leaves(black_box(&data), black_box(&indices)))
    });
    c.bench_function("verify_audit_1MiB_4_leaves", |b| {
        b.iter(|| verify_audit(&addr, total_len, black_box(&SEED), LEAVES, black_box(&proofs)))
    });
    c.bench_function("verify_leaf_1MiB_1_leaf", |b| {
        b.iter(|| verify_leaf(&addr, total_len, black_box(&proofs[0])))
    });
}

criterion_group!(benches, bench_audit);
criterion_main!(benches);
