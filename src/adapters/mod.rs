//! Adapters: the concrete implementations of the ports.
//!
//! - `clock`: the system's wall clock
//! - `control`: the control socket of a running mount (typed requests and replies, server and client)
//! - `disk`: the storage node's chunk store (files + redb index under the at-rest key)
//! - `local`: the vault's local disk: outbox, disk cache and staging spares (direct I/O)
//! - `hub`: the hub of friends' houses: its TLS identity, nats-server configs, membership register file
//! - `fuse`: the thin fuser adapter over the vault service, and the one errno mapping
//! - `memory`: in-memory stores for unit tests of the core
//! - `metrics`: Prometheus text rendering and the tiny HTTP server for `/metrics` and `/healthz`
//! - `nats`: the fabric over NATS JetStream, node side and owner side
//! - `process`: the supervisor of `quloud up`'s children, its lock, and allocator tuning
//! - `redb`: every redb table definition, in one place

pub mod clock;
pub mod control;
pub mod disk;
pub mod fuse;
pub mod hub;
pub mod local;
pub mod memory;
pub mod metrics;
pub mod nats;
pub mod process;
pub mod redb;
