//! CPU-time medians of prove, verify and batch_verify (2..256 proofs) on the calling thread.
//!
//! Criterion measures wall time, which on a shared machine includes time the bench spends
//! preempted; this harness reads `CLOCK_THREAD_CPUTIME_ID` instead, so figures taken under
//! load stay comparable. Run with `taskset -c 0 cargo bench --bench proof_cpu`.

use std::hint::black_box;

use quloud::domain::proof::{batch_verify, prove, verify, ProofSecret};

mod common;
use common::context;

fn cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `ts` is a valid, writable timespec; the clock id is a constant Linux supports.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Median over 21 samples of the CPU time per call, each sample `reps` calls.
fn median_us(mut f: impl FnMut(), reps: u32) -> f64 {
    f();
    let mut samples: Vec<f64> = (0..21)
        .map(|_| {
            let start = cpu_ns();
            for _ in 0..reps {
                f();
            }
            (cpu_ns() - start) as f64 / 1000.0 / f64::from(reps)
        })
        .collect();
    samples.sort_by(|a, b| a.total_cmp(b));
    samples[10]
}

fn main() {
    let items: Vec<_> = (0..256u64)
        .map(|i| {
            let mut seed = [0x42; 32];
            seed[..8].copy_from_slice(&i.to_le_bytes());
            let sk = ProofSecret::from_seed(&seed);
            let ctx = context(i);
            (sk.commitment(), ctx, prove(&sk, &ctx))
        })
        .collect();
    let sk = ProofSecret::from_seed(&[1; 32]);
    let (cm, ctx, proof) = items[0];
    let prove_us = median_us(
        || {
            let _ = black_box(prove(black_box(&sk), black_box(&ctx)));
        },
        40,
    );
    println!("prove            {prove_us:8.1} µs");
    let verify_us = median_us(
        || {
            let _ = black_box(verify(black_box(&cm), &ctx, &proof));
        },
        20,
    );
    println!("verify           {verify_us:8.1} µs");
    for n in [2usize, 4, 8, 16, 32, 64, 256] {
        let reps = (512 / n).max(1) as u32;
        let t = median_us(
            || {
                let _ = black_box(batch_verify(black_box(&items[..n])));
            },
            reps,
        );
        println!("batch_verify/{n:<3} {t:8.1} µs = {:5.1} µs/proof", t / n as f64);
    }
}
