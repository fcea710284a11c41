//! Reads through the open group commit of the redb manifest (`Manifest::view`).

use super::{not_in_write, Manifest, Rx, Tx};
use crate::domain::fs::{Attr, ChunkRecord, Extent, FsError, Ino};
use crate::domain::ids::Addr;

/// Reads through the open group, if any (see [`Manifest::view`]).
pub struct View<'a>(pub(super) &'a Manifest);

impl View<'_> {
    pub(super) fn with<T>(
        &self,
        on_tx: impl FnOnce(&Tx) -> Result<T, FsError>,
        on_rx: impl FnOnce(&Rx) -> Result<T, FsError>,
    ) -> Result<T, FsError> {
        not_in_write()?;
        let open = self.0.group.lock();
        if let Some(txn) = open.txn.as_ref() {
            return on_tx(&Tx { txn, undo: None });
        }
        drop(open);
        on_rx(&Rx(self.0.group.store.begin_read()?))
    }
}

/// The [`View`] form of reader methods: each runs on the open group or a fresh snapshot.
macro_rules! view_readers {
    ($($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty;)*) => {
        impl View<'_> {
            $(
                $(#[$doc])*
                pub fn $name(&self, $($arg: $ty),*) -> Result<$ret, FsError> {
                    self.with(move |tx| tx.$name($($arg),*), move |rx| rx.$name($($arg),*))
                }
            )*
        }
    };
}

view_readers! {
    /// An inode's attributes.
    fn inode(ino: Ino) -> Attr;
    /// The child named `name` in `parent`.
    fn lookup(parent: Ino, name: &[u8]) -> Option<Ino>;
    /// A symlink's target.
    fn symlink(ino: Ino) -> Vec<u8>;
    /// A file's extents overlapping `[start, end)`.
    fn extents(ino: Ino, start: u64, end: u64) -> Vec<Extent>;
    /// A chunk's record.
    fn chunk(addr: &Addr) -> Option<ChunkRecord>;
    /// An xattr's value.
    fn xattr(ino: Ino, name: &[u8]) -> Option<Vec<u8>>;
    /// An inode's xattr names.
    fn xattr_names(ino: Ino) -> Vec<Vec<u8>>;
    /// The ciphertext of a small queued chunk.
    fn small_outbox(addr: &Addr) -> Option<Vec<u8>>;
    /// Up to `limit` queued uploads.
    fn uploads(limit: usize) -> Vec<Addr>;
}
