//! Criterion benches for the owner's per-core chunk pipeline on 64 MiB of pseudo-random data:
//! FastCDC chunking, then per chunk `VaultKeys::seal` (keyed BLAKE3 chunk id, ChaCha20-Poly1305,
//! BLAKE3 addr, BN254 proof commitment).
//!
//! Run pinned to one core: `taskset -c 0 cargo bench --bench pipeline`.
//! Target (docs/PERFORMANCE.md): whole pipeline >= 500 MiB/s on one core.
//!
//! Groups:
//! - `pipeline/*`: chunking alone, seal alone (pre-computed ranges), the whole pipeline, and the
//!   whole pipeline without the proof commitment (what the commitment costs).
//! - `stage/*`: each step of `seal` on its own over the same chunks, to see which stage limits.
//! - `chunk_size/*`: the whole pipeline with FastCDC at average 256 KiB / 512 KiB / 1 MiB
//!   (min = avg/2, max = 2·avg − 4 KiB, as the production constants), built with fastcdc here.

use std::hint::black_box;
use std::ops::Range;
use std::time::Duration;

use criterion::measurement::WallTime;
use criterion::{criterion_group, criterion_main, BenchmarkGroup, BenchmarkId, Criterion, Throughput};
use fastcdc::v2020::{FastCDC, Normalization};
use quloud::domain::chunker::chunk_ranges;
use quloud::domain::ids::Addr;
use quloud::domain::keys::{MasterKey, VaultKeys};
use quloud::domain::seal::encrypt_with_key;

const DATA_LEN: usize = 64 << 20;

/// Deterministic pseudo-random input (incompressible, so FastCDC sees realistic content).
fn data() -> Vec<u8> {
    let mut d = vec![0u8; DATA_LEN];
    blake3::Hasher::new().update(b"pipeline bench").finalize_xof().fill(&mut d);
    d
}

fn keys() -> VaultKeys {
    MasterKey::from_bytes([1; 32]).derive()
}

/// Everything `seal` does except the proof commitment.
fn seal_without_commitment(keys: &VaultKeys, plain: &[u8]) -> (Addr, Vec<u8>) {
    let id = keys.chunk_id(plain);
    let ct = encrypt_with_key(&keys.content_key(&id), plain);
    (Addr::of(&ct), ct)
}

fn configure<'a>(c: &'a mut Criterion, name: &str) -> BenchmarkGroup<'a, WallTime> {
    let mut g = c.benchmark_group(name);
    g.sample_size(10);
    g.warm_up_time(Duration::from_secs(1));
    g.measurement_time(Duration::from_secs(4));
    g.throughput(Throughput::Bytes(DATA_LEN as u64));
    g
}

fn bench_pipeline(c: &mut Criterion) {
    let data = data();
    let keys = keys();
    let seed = keys.chunker_seed();
    let ranges: Vec<Range<usize>> = chunk_ranges(&data, seed).collect();
    eprintln!(
        "pipeline: {} bytes -> {} chunks, mean {} KiB",
        data.len(),
        ranges.len(),
        data.len() / ranges.len() / 1024
    );

    let mut g = configure(c, "pipeline");
    g.bench_function("chunk", |b| b.iter(|| chunk_ranges(black_box(&data), seed).count()));
    g.bench_function("seal", |b| {
        b.iter(|| {
            for r in &ranges {
                black_box(keys.seal(black_box(&data[r.clone()])));
            }
        })
    });
    g.bench_function("chunk_and_seal", |b| {
        b.iter(|| {
            for r in chunk_ranges(black_box(&data), seed) {
                black_box(keys.seal(&data[r]));
            }
        })
    });
    g.bench_function("chunk_and_seal_no_commitment", |b| {
        b.iter(|| {
            for r in chunk_ranges(black_box(&data), seed) {
                black_box(seal_without_commitment(&keys, &data[r]));
            }
        })
    });
    g.finish();

    // Each step of seal over the same chunks, for attribution.
    let ids: Vec<_> = ranges.iter().map(|r| keys.chunk_id(&data[r.clone()])).collect();
    let sealed: Vec<_> = ranges.iter().map(|r| keys.seal(&data[r.clone()])).collect();
    let mut g = configure(c, "stage");
    g.bench_function("chunk_id_keyed_blake3", |b| {
        b.iter(|| {
            for r in &ranges {
                black_box(keys.chunk_id(black_box(&data[r.clone()])));
            }
        })
    });
    g.bench_function("encrypt_chacha20poly1305", |b| {
        b.iter(|| {
            for (r, id) in ranges.iter().zip(&ids) {
                black_box(encrypt_with_key(&keys.content_key(id), black_box(&data[r.clone()])));
            }
        })
    });
    g.bench_function("addr_blake3", |b| {
        b.iter(|| {
            for s in &sealed {
                black_box(Addr::of(black_box(&s.ciphertext)));
            }
        })
    });
    // Throughput here is "bytes of chunks committed to": the cost is per chunk, not per byte.
    g.bench_function("commitment_only", |b| {
        b.iter(|| {
            for s in &sealed {
                black_box(keys.proof_secret(black_box(&s.addr)).commitment());
            }
        })
    });
    g.bench_function("memcpy_baseline", |b| {
        b.iter(|| {
            for r in &ranges {
                black_box(black_box(&data[r.clone()]).to_vec());
            }
        })
    });
    g.finish();
}

fn bench_chunk_sizes(c: &mut Criterion) {
    let data = data();
    let keys = keys();
    let seed = keys.chunker_seed();
    let mut g = configure(c, "chunk_size");
    for avg_kib in [256usize, 512, 1024] {
        let avg = avg_kib * 1024;
        let (min, max) = (avg / 2, 2 * avg - 4096);
        let n = FastCDC::with_level_and_seed(&data, min, avg, max, Normalization::Level1, seed).count();
        eprintln!("chunk_size: avg {avg_kib} KiB -> {n} chunks, mean {} KiB", data.len() / n / 1024);
        g.bench_with_input(BenchmarkId::new("chunk_and_seal_avg_KiB", avg_kib), &avg, |b, _| {
            b.iter(|| {
                for ch in
                    FastCDC::with_level_and_seed(black_box(&data), min, avg, max, Normalization::Level1, seed)
                {
                    black_box(keys.seal(&data[ch.offset..ch.offset + ch.length]));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_pipeline, bench_chunk_sizes);
criterion_main!(benches);
