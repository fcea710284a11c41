//! Quloud: an encrypted vault whose chunks live on other people's storage nodes, over NATS
//! JetStream, without trusting them.
//!
//! # Architecture map (dependency order)
//!
//! - [`domain`] — pure and synchronous: ids, keys, FastCDC chunking, chunk encryption, the
//!   Schnorr retrieval proof, BLAKE3 Merkle audits and the wire messages. No I/O, no tokio.
//! - [`ports`] — the traits the use cases need: the node's [`ports::chunk_store::ChunkStore`]
//!   and the owner's [`ports::fabric::ChunkFabric`].
//! - [`app`] — use cases on the ports: the storage node's request handling (`app::node`) and
//!   the vault's filesystem service with its upload pipeline (`app::vault`), and the reports
//!   they hand the CLI (`app::report`).
//! - [`adapters`] — implementations: `disk` (node store), `memory` (unit tests), `nats`
//!   (JetStream fabric, node and owner side), `redb` (every table definition and the vault
//!   manifest), `fuse` (the thin fuser adapter over `app::vault`), `metrics` (Prometheus text and
//!   the small HTTP server behind `--metrics`), `control` (the running mount's control socket),
//!   `process` (`quloud up`'s children).
//! - [`render`] — what the CLI prints: the reports of `app::report` as text and as JSON.
//! - [`cli`], [`wiring`] — the command line and the composition root; `main.rs` only parses,
//!   starts logging and the runtime, and calls wiring.
//!
//! See docs/ARCHITECTURE.md, docs/PROTOCOL.md and docs/SECURITY.md.

pub mod adapters;
pub mod app;
pub mod cli;
pub mod domain;
pub mod ports;
pub mod render;
pub mod wiring;
