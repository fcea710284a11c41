//! Every redb table definition, with versioned names, and the vault manifest built on them.
//! Nothing else defines a table.

pub mod dump;
#[cfg(test)]
mod dump_tests;
pub mod manifest;
#[cfg(test)]
mod manifest_tests;

use redb::TableDefinition;

/// Storage node index: on-disk locator (keyed hash of addr) → sealed chunk record.
pub const NODE_CHUNKS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("node-chunks-v1");

/// Storage node: vault root locator → the newest validly signed root record seen for it.
pub const NODE_ROOTS: TableDefinition<&str, &[u8]> = TableDefinition::new("node-roots-v1");

/// Manifest: inode → encoded `Attr`.
pub const INODES: TableDefinition<u64, &[u8]> = TableDefinition::new("inodes-v1");
/// Manifest: parent ino (big-endian) ‖ name → child ino.
pub const DIRENTS: TableDefinition<&[u8], u64> = TableDefinition::new("dirents-v1");
/// Manifest: symlink ino → target.
pub const SYMLINKS: TableDefinition<u64, &[u8]> = TableDefinition::new("symlinks-v1");
/// Manifest: (ino, file offset) → encoded `Extent` (chunk id, addr, length).
pub const EXTENTS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("extents-v1");
/// Manifest: addr → encoded `ChunkRecord` (id, length, refcount, state, replicas).
pub const CHUNKS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("chunks-v1");
/// Manifest: ino (big-endian) ‖ xattr name → value.
pub const XATTRS: TableDefinition<&[u8], &[u8]> = TableDefinition::new("xattrs-v1");
/// Manifest: inodes whose current content is in the local staging area (ino → size).
pub const STAGED: TableDefinition<u64, u64> = TableDefinition::new("staged-v1");
/// Manifest: files staged in part, ino → encoded `Partial` (which ranges of the sparse staging
/// copy hold the file's content; the rest is its chunks). Local-only, like `staged-v1`.
pub const STAGED_RANGES: TableDefinition<u64, &[u8]> = TableDefinition::new("staged-ranges-v1");
/// Manifest: the upload queue, addr → time queued (Unix ms); the ciphertext is in the outbox.
pub const UPLOADS: TableDefinition<&[u8; 32], u64> = TableDefinition::new("uploads-v1");
/// Manifest: ciphertexts of small queued chunks (≤ 64 KiB), kept here instead of one outbox
/// file each; addr → ciphertext.
pub const SMALL_OUTBOX: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("small-outbox-v1");
/// Manifest: chunks no file references any more, addr → since when (Unix ms); collected from
/// their replicas after the grace period.
pub const UNREFERENCED: TableDefinition<&[u8; 32], u64> = TableDefinition::new("unreferenced-v1");
/// Manifest: chunks queued for upload while the files they belong to are still being sealed,
/// addr → since when (Unix ms). No file references them yet; the files' commit releases them,
/// or the next mount after a crash does (into the garbage-collection grace period).
pub const SEALING: TableDefinition<&[u8; 32], u64> = TableDefinition::new("sealing-v1");
/// Manifest: what the owner knows about each storage node, node id → encoded `NodeRecord`
/// (versioned by its first byte: version 3 carries vetting; versions 1 and 2 read as vetted).
pub const NODES: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("nodes-v1");
/// Manifest: snapshots of this manifest kept in the fabric, id → encoded `SnapshotRow`.
pub const SNAPSHOTS: TableDefinition<u64, &[u8]> = TableDefinition::new("snapshots-v1");
/// Manifest: shares this vault handed out, id → encoded `ShareRow` (their pieces stay pinned).
pub const SHARES: TableDefinition<u64, &[u8]> = TableDefinition::new("shares-v1");
/// A shared manifest (mounted with `--share`): addr → content key ‖ proof-secret seed.
pub const SHARE_SECRETS: TableDefinition<&[u8; 32], &[u8]> = TableDefinition::new("share-secrets-v1");
/// Manifest: counters and format version.
pub const META: TableDefinition<&str, u64> = TableDefinition::new("meta-v1");
