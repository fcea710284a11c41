//! Rechunking a file staged in part (docs/DESIGN.md §12): only the span around its changes is
//! chunked again; the committed chunks before and after it are kept, so the result is the chunk
//! list a fresh chunking of the whole file gives.

use super::{Early, Prepared};
use crate::app::vault::reader::read_full_at;
use crate::app::vault::Vault;
use crate::domain::chunker::chunk_stream;
use crate::domain::fs::{FsError, Ino};
use crate::domain::ids::Addr;
use crate::domain::partial::{Partial, Run};
use crate::ports::fabric::ChunkFabric;
use crate::ports::local_disk::StagedFile;
use std::collections::HashSet;
use tokio::runtime::Handle;

/// Reads a file staged in part from `pos`: local runs from its staging copy, the others from its
/// committed chunks (fetched through the read path, waiting on the runtime).
struct RunReader<'a, F: ChunkFabric + 'static> {
    vault: &'a Vault<F>,
    runtime: &'a Handle,
    ino: Ino,
    file: &'a dyn StagedFile,
    part: &'a Partial,
    pos: u64,
    end: u64,
}

impl<F: ChunkFabric + 'static> std::io::Read for RunReader<'_, F> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let want = (self.end - self.pos).min(buf.len() as u64);
        if want == 0 {
            return Ok(0);
        }
        let (start, end) = match self.part.run(self.pos, self.pos + want) {
            Run::Local { start, end } => {
                let part = &mut buf[..(end - start) as usize];
                let n = read_full_at(self.file, part, start)?;
                part[n..].fill(0);
                (start, end)
            }
            Run::Chunks { start, end } => {
                let part = &mut buf[..(end - start) as usize];
                self.runtime
                    .block_on(self.vault.read_chunks(self.ino, start, part))
                    .map_err(std::io::Error::other)?;
                (start, end)
            }
        };
        self.pos = end;
        Ok((end - start) as usize)
    }
}

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Chunks a file staged in part into `p`: a committed chunk that [`Partial::keeps`] stays
    /// as it is; from any other point the file is chunked again, until a new cut lands on the
    /// start of a committed chunk that stays (FastCDC cuts depend only on the bytes since the
    /// previous cut, so from there on a fresh chunking would agree with the committed one).
    /// Only the chunks around the changes are read, and fetched when not local.
    pub(super) fn rechunk(
        &self,
        p: &mut Prepared,
        fresh: &mut HashSet<Addr>,
        early: &mut Early,
        file: &dyn StagedFile,
        part: &Partial,
    ) -> Result<(), FsError> {
        let base = self.m.view().extents(p.ino, 0, u64::MAX)?;
        let runtime = Handle::try_current()
            .map_err(|_| FsError::Io("rechunking a file staged in part needs the runtime".into()))?;
        let size = p.size;
        let keeps = |i: usize| part.keeps(&base[i], i + 1 == base.len(), size);
        // The index of the committed chunk starting at `pos` that stays, if there is one.
        let kept_at = |i: &mut usize, pos: u64| {
            while *i < base.len() && base[*i].offset < pos {
                *i += 1;
            }
            (*i < base.len() && base[*i].offset == pos && keeps(*i)).then_some(*i)
        };
        let (mut pos, mut i) = (0u64, 0usize);
        while pos < size {
            if let Some(k) = kept_at(&mut i, pos) {
                p.extents.push(base[k]);
                pos += u64::from(base[k].len);
                continue;
            }
            let from = pos;
            let reader = RunReader { vault: self, runtime: &runtime, ino: p.ino, file, part, pos, end: size };
            for chunk in chunk_stream(reader, self.keys.chunker_seed()) {
                let (offset, data) = chunk?;
                pos = from + offset + data.len() as u64;
                self.seal_into(p, fresh, early, from + offset, data)?;
                if kept_at(&mut i, pos).is_some() {
                    break;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
#[path = "rechunk_tests.rs"]
mod tests;
