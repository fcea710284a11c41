//! Adopting the lineage of a writer that lost the lease (docs/DESIGN.md §11): its closed root
//! record names its last snapshot; the writer that took over keeps that snapshot, and pins every
//! chunk it names, so garbage collection never deletes what either lineage still names.

use super::fence::{AWAITING_EPOCH, AWAITING_SINCE};
use super::{fetch_blob, find_root, FsError, Vault};
use crate::domain::dump::{addr_of, records, Code};
use crate::domain::fs::{ChunkRecord, ChunkState};
use crate::domain::ids::Addr;
use crate::domain::snapshot::{BlobHead, BlobRow, PinScope, RootRecord, SnapshotInfo};
use crate::ports::fabric::ChunkFabric;
use crate::ports::manifest::Tx;
use std::collections::HashSet;

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Adopts the newest snapshot of every closed lineage of an earlier epoch that this vault
    /// does not keep yet; once the lineage garbage collection waits for is adopted, it resumes.
    pub(super) async fn adopt_lineages(&self, fabric: &F) -> Result<(), FsError> {
        let Some(found) = find_root(fabric, &self.keys).await? else { return Ok(()) };
        let vk = self.keys.root_signing_key().verifying_key();
        let mine = self.my_epoch();
        for (order, bytes) in &found.choice.closed {
            if order.epoch >= mine {
                continue;
            }
            let record = match RootRecord::open(bytes, &vk, &self.keys.root_body_key()) {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot open a closed root record; not adopted");
                    continue;
                }
            };
            if let Some(last) = record.snapshots.iter().max_by_key(|s| s.order()) {
                let known = self.m.read()?.blobs(false)?.iter().any(|r| r.info.head.addr == last.head.addr);
                if !known {
                    self.adopt(fabric, last).await?;
                }
            }
            let rx = self.m.read()?;
            let (awaited, since) =
                (rx.meta(AWAITING_EPOCH)?.unwrap_or(0), rx.meta(AWAITING_SINCE)?.unwrap_or(0));
            drop(rx);
            if since != 0 && order.epoch >= awaited {
                self.m.write_durable(|tx| tx.set_meta(AWAITING_SINCE, 0))?;
                tracing::info!(
                    epoch = order.epoch,
                    "the previous writer closed its lineage; garbage collection resumes"
                );
            }
        }
        Ok(())
    }

    /// Keeps snapshot `info` of another lineage: fetches its manifest, records the chunks it
    /// names (with their replicas, so they are audited, renewed and healed) and pins them.
    async fn adopt(&self, fabric: &F, info: &SnapshotInfo) -> Result<(), FsError> {
        let nothing = |_: u64, _: u64| {};
        let (head, dump) =
            fetch_blob(fabric, self.keys.snapshot(), &info.head, self.opts.fetch_timeout, &nothing).await?;
        let named = named_chunks(&dump)?;
        let id = self.m.write_durable(|tx| {
            let id = tx.meta("last_snapshot")?.unwrap_or(0) + 1;
            tx.set_meta("last_snapshot", id)?;
            keep_pinned(tx, &SnapshotInfo { id, ..*info }, &head, &named)?;
            Ok(id)
        })?;
        tracing::warn!(
            id,
            epoch = info.epoch,
            their_id = info.id,
            chunks = named.len(),
            "adopted the last snapshot of a writer that lost the lease: its files stay reachable as this snapshot"
        );
        Ok(())
    }
}

/// The chunks the files of a snapshot's manifest `dump` name, with their records.
pub(super) fn named_chunks(dump: &[u8]) -> Result<Vec<(Addr, ChunkRecord)>, FsError> {
    let mut named = Vec::new();
    for r in records(dump)? {
        if matches!(r.code, Code::Chunks | Code::PinnedChunks) {
            match ChunkRecord::decode(r.value) {
                Some(c) if c.refs > 0 => named.push((Addr(addr_of(r.key)?), c)),
                Some(_) => {}
                None => return Err(FsError::Io("a snapshot names a malformed chunk record".into())),
            }
        }
    }
    Ok(named)
}

/// Keeps snapshot `info` (its head `head`, naming the chunks `named`) of another home's lineage,
/// pinning its pieces and every chunk it names (`PinScope::Named`): no time bound of garbage
/// collection, taken on another machine's clock, guards them. Chunks not recorded yet are
/// recorded as durable, with the replicas the snapshot knows.
pub(super) fn keep_pinned(
    tx: &Tx<'_>,
    info: &SnapshotInfo,
    head: &BlobHead,
    named: &[(Addr, ChunkRecord)],
) -> Result<(), FsError> {
    let mut pins = HashSet::new();
    for p in std::iter::once(&info.head).chain(head.stored()) {
        if pins.insert(p.addr) && tx.chunk(&p.addr)?.is_none() {
            let rec = ChunkRecord {
                id: p.id,
                ct_len: p.len,
                refs: 0,
                state: ChunkState::Durable,
                replicas: Vec::new(),
            };
            tx.put_chunk(&p.addr, &rec)?;
        }
    }
    for (addr, c) in named {
        if pins.insert(*addr) && tx.chunk(addr)?.is_none() {
            tx.put_chunk(addr, &ChunkRecord { refs: 0, ..c.clone() })?;
        }
    }
    let row =
        BlobRow { info: *info, pins: pins.into_iter().collect(), scope: PinScope::Named, path: Vec::new() };
    tx.put_blob(false, &row, true)
}
