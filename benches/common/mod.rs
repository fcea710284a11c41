//! Inputs shared by the proof benchmarks (`proof.rs`, criterion; `proof_cpu.rs`, CPU time).

use quloud::domain::proof::{ProofContext, Purpose};

/// A distinct, fixed proof context per index.
pub fn context(i: u64) -> ProofContext {
    ProofContext {
        purpose: Purpose::Get,
        addr: [i as u8; 32],
        target: [0; 32],
        timestamp_ms: 1_700_000_000_000 + i,
        request_id: [(i >> 8) as u8; 16],
    }
}
