//! In-memory adapters, for unit, model and contract tests of the core only (never what a
//! feature is proven on): the node's chunk store, the owner's fabric, the manifest and a fake
//! clock.

mod chunk_store;
mod clock;
mod fabric;
mod manifest;

pub use chunk_store::MemoryChunkStore;
pub use clock::FakeClock;
pub use fabric::{MemoryFabric, MemoryFabricOptions, NodeFault};
pub use manifest::MemoryManifest;
