//! Quloud: an encrypted vault whose chunks live on other people's storage nodes, over NATS
//! JetStream, without trusting them.
//!
//! # Architecture map (dependency order)
//!
//! - [`domain`] — pure and synchronous: ids, keys, FastCDC chunking, chunk encryption, the
//!   Schnorr retrieval proof, BLAKE3 Merkle audits, the wire messages, the manifest dump. No I/O,
//!   no tokio.
//! - [`ports`] — traits only: the node's `chunk_store`, the owner's `fabric` (`ChunkFabric`),
//!   the vault's `manifest`, the `clock` and the owner's `local_disk` (outbox, disk cache,
//!   staging spares).
//! - [`app`] — use cases on the ports, naming no adapter: the storage node (`app::node`), the
//!   vault's filesystem service (`app::vault`: a façade `Vault` over `namespace`, `writer`,
//!   `reader`, `pipeline` and the `maintenance` workers), the fabric check (`app::check`), the
//!   reply checks every fabric shares (`app::fabric_checks`) and the reports for the CLI
//!   (`app::report`).
//! - [`adapters`] — implementations: `fuse` (thin fuser adapter over `app::vault`), `nats`
//!   (JetStream fabric, owner and node side), `redb` (every table definition, the manifest),
//!   `disk` (node chunk store), `local` (the owner's outbox, disk cache and spares), `clock`,
//!   `memory` (in-memory chunk store, manifest, fabric and fake clock for tests), `metrics`
//!   (prometheus-client pages and the small HTTP server), `control` (the mount's typed control
//!   socket), `process` (`quloud up`'s children).
//! - [`render`] — what the CLI prints: the reports of `app::report` as text and as JSON.
//! - [`cli`], [`wiring`] — the command line and the composition root; `main.rs` only parses,
//!   starts logging and the runtime, and calls wiring.
//!
//! # Where a write and a read go
//!
//! - write(2) → `adapters::fuse` → `app::vault::writer` (a staging file; never waits on the
//!   network) → at the last close `app::vault::pipeline` (chunk, seal, outbox, one manifest
//!   commit) → its uploader stores each chunk with quorum through `ports::fabric` (the NATS
//!   adapter in production) → the manifest records the replicas.
//! - read(2) → `adapters::fuse` → `app::vault::reader`: the staging file, or per chunk the
//!   memory cache → the local copies (outbox, disk cache) → the fabric, each ciphertext checked
//!   against its address before it is opened.
//!
//! See docs/ARCHITECTURE.md, docs/DESIGN.md, docs/PROTOCOL.md and docs/SECURITY.md.

pub mod adapters;
pub mod app;
pub mod cli;
pub mod domain;
pub mod ports;
pub mod render;
pub mod wiring;
