//! Recovery after a restart: staged files come back and are queued for chunking; leftovers go.

use super::OpenFile;
use crate::app::vault::{FsError, Vault};
use crate::domain::fs::{ChunkState, Ino};
use crate::ports::fabric::ChunkFabric;

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Re-opens staged files after a restart and queues them for chunking.
    pub(in crate::app::vault) fn recover(&self) -> Result<(), FsError> {
        // Files unlinked while open when the previous mount died: nothing can have them open now.
        let orphans = self.m.read()?.unlinked_inodes()?;
        if !orphans.is_empty() {
            tracing::info!(
                count = orphans.len(),
                "freeing files that were deleted while open before a crash"
            );
            self.m.write(|tx| orphans.iter().try_for_each(|&ino| tx.delete_inode(ino)))?;
            for &ino in &orphans {
                self.discard_staging(ino);
            }
        }
        // Chunks queued ahead of a commit that never came: the files they were sealed from are
        // still staged and are sealed again below, and any chunk no file takes is collected.
        let sealing = self.m.read()?.sealing()?;
        if !sealing.is_empty() {
            tracing::info!(chunks = sealing.len(), "releasing chunks queued by an interrupted chunking pass");
            self.m.write(|tx| sealing.iter().try_for_each(|a| tx.release_sealed(a)))?;
        }
        let rx = self.m.read()?;
        let staged: std::collections::HashSet<Ino> = rx.staged()?.into_iter().collect();
        // Leftovers of interrupted materializations, and staging copies of inodes freed before
        // the crash (their removal was durable, the copy's retirement had not happened yet).
        for ino in self.writer.staging.sweep()? {
            if !staged.contains(&ino) {
                self.writer.staging.remove(ino);
            }
        }
        for ino in staged {
            let attr = match rx.inode(ino) {
                Ok(a) => a,
                Err(_) => {
                    self.writer.staging.remove(ino);
                    continue;
                }
            };
            let file = match self.writer.staging.open(ino) {
                Ok(f) => f,
                Err(e) => {
                    tracing::error!(ino, error = %e, "staged file is missing; keeping the last uploaded version");
                    continue;
                }
            };
            let size = file.size()?.max(attr.size);
            // A file staged in part: the ranges recorded at its last sync, the rest from its chunks.
            let partial = rx.partial(ino)?.map(|mut p| {
                p.truncate(size);
                p
            });
            let entry = OpenFile {
                staging: Some(file),
                size,
                mtime: attr.mtime,
                generation: 1,
                flushed: 1,
                partial_synced: 1,
                partial,
                ..OpenFile::default()
            };
            Self::lock(&self.writer.files).insert(ino, entry);
            Self::lock(&self.pipeline.chunk_queue).push(ino);
        }
        // Outbox files that are not queued: a chunking pass interrupted before its commit, or
        // an upload whose durable commit happened but whose file was not yet removed. A chunk
        // stored on nodes not vetted yet keeps its copy until it is durable.
        for addr in self.pipeline.outbox.sweep()? {
            let waits =
                rx.chunk(&addr)?.is_some_and(|c| c.state == ChunkState::Pending && !c.replicas.is_empty());
            if !rx.upload_queued(&addr)? && !waits {
                self.pipeline.outbox.remove(&addr);
            }
        }
        Ok(())
    }
}
