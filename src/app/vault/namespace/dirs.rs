//! Directory listings: `opendir` hands out a handle, the first `readdir` from offset 0 takes a
//! snapshot of the directory, and later calls continue in that snapshot by offset, so entries
//! removed or added meanwhile never make the listing skip or repeat the others (POSIX leaves
//! only those entries unspecified). `releasedir` drops the snapshot.

use crate::app::vault::Rx;
use crate::app::vault::{DirEntry, Vault};
use crate::domain::fs::{FsError, Ino, Kind};
use crate::ports::fabric::ChunkFabric;
use std::sync::atomic::Ordering;
use std::sync::Arc;

/// A directory handle.
pub type DirFh = u64;

/// Listings of open directory handles (`None` until the first `readdir`).
pub(in crate::app::vault) type Listings = std::collections::HashMap<DirFh, Option<Arc<[DirEntry]>>>;

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Opens a directory for listing.
    pub fn opendir(&self, ino: Ino) -> Result<DirFh, FsError> {
        if self.getattr(ino)?.kind != Kind::Dir {
            return Err(FsError::NotDir);
        }
        let fh = self.writer.next_fh.fetch_add(1, Ordering::Relaxed);
        Self::lock(&self.namespace.listings).insert(fh, None);
        Ok(fh)
    }

    /// Feeds the entries after `offset` to `add` until it returns true (its buffer is full).
    /// Offset 0 (a new listing, or `rewinddir`) takes a fresh snapshot; a handle this vault did
    /// not open (0) lists afresh each time.
    pub fn readdir(
        &self,
        ino: Ino,
        fh: DirFh,
        offset: u64,
        mut add: impl FnMut(&DirEntry) -> bool,
    ) -> Result<(), FsError> {
        let kept = match Self::lock(&self.namespace.listings).get(&fh) {
            Some(Some(listing)) if offset > 0 => Some(listing.clone()),
            _ => None,
        };
        let listing = match kept {
            Some(l) => l,
            None => {
                let fresh: Arc<[DirEntry]> = self.list(ino)?.into();
                if let Some(slot) = Self::lock(&self.namespace.listings).get_mut(&fh) {
                    *slot = Some(fresh.clone());
                }
                fresh
            }
        };
        // Cookies are positions in the snapshot, counted from 1.
        let start = usize::try_from(offset).unwrap_or(usize::MAX).min(listing.len());
        for e in &listing[start..] {
            if add(e) {
                break;
            }
        }
        Ok(())
    }

    /// Forgets a directory handle's listing.
    pub fn releasedir(&self, fh: DirFh) {
        Self::lock(&self.namespace.listings).remove(&fh);
    }

    /// Every entry of a directory, `.` and `..` first, with cookies 1, 2, ….
    pub fn list(&self, ino: Ino) -> Result<Vec<DirEntry>, FsError> {
        let rx = self.m.read()?;
        list_in(&rx, ino)
    }
}

fn list_in(rx: &Rx, ino: Ino) -> Result<Vec<DirEntry>, FsError> {
    if rx.inode(ino)?.kind != Kind::Dir {
        return Err(FsError::NotDir);
    }
    let mut all = vec![
        DirEntry { ino, kind: Kind::Dir, name: b".".to_vec(), cookie: 1 },
        DirEntry { ino, kind: Kind::Dir, name: b"..".to_vec(), cookie: 2 },
    ];
    for (i, (name, child)) in rx.children(ino)?.into_iter().enumerate() {
        let kind = rx.inode(child).map(|a| a.kind).unwrap_or(Kind::File);
        all.push(DirEntry { ino: child, kind, name, cookie: i as u64 + 3 });
    }
    Ok(all)
}
