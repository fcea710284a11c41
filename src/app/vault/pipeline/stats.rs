//! Counters of the pipeline, for status.

use std::sync::atomic::AtomicU64;

/// Counters of the pipeline, for status.
#[derive(Debug, Default)]
pub struct PipelineStats {
    /// Files chunked.
    pub files_chunked: AtomicU64,
    /// Chunks made durable.
    pub chunks_uploaded: AtomicU64,
    /// Ciphertext bytes of the chunks made durable (each counted once, whatever N is).
    pub uploaded_bytes: AtomicU64,
    /// Upload attempts that failed.
    pub upload_failures: AtomicU64,
}
