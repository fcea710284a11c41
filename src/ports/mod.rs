//! Ports: the traits the application layer needs from the outside world, and their errors.
//!
//! Adapters in `crate::adapters` implement them; only `wiring.rs`, `main.rs` and tests name the
//! concrete adapters.

pub mod chunk_store;
pub mod clock;
pub mod fabric;
pub mod local_disk;
pub mod manifest;
#[cfg(test)]
pub(crate) mod manifest_contract;
