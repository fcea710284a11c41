//! In-memory adapters, for unit, model and contract tests of the core only (never what a
//! feature is proven on).

mod chunk_store;
mod clock;
mod manifest;

pub use chunk_store::MemoryChunkStore;
pub use clock::FakeClock;
pub use manifest::MemoryManifest;
