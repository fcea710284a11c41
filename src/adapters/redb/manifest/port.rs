//! The redb manifest as the manifest port: its read snapshot, write transaction and store behind
//! the port's traits, and the files of a vault's home opened as port manifests.

use super::{Manifest, Rx, Tx};
use crate::domain::fs::{Attr, ChunkRecord, Extent, FsError, Ino};
use crate::domain::health::NodeRecord;
use crate::domain::ids::{Addr, NodeId};
use crate::domain::partial::Partial;
use crate::domain::snapshot::BlobRow;
use crate::ports::manifest::{
    self as port, Commit, Dump, ManifestFiles, ManifestRead, ManifestSnapshot, ManifestStore, ManifestTx,
    ReadFn, ShareSecret, Summary, WriteFn,
};
use redb::Durability;
use std::cell::RefCell;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

/// Forwards a port trait's methods to the inherent methods of the same name.
macro_rules! forward {
    ($trait:ident for $ty:ty { $(fn $name:ident(&self $(, $arg:ident: $t:ty)*) -> $ret:ty;)* }) => {
        impl $trait for $ty {
            $(
                fn $name(&self $(, $arg: $t)*) -> Result<$ret, FsError> {
                    <$ty>::$name(self $(, $arg)*)
                }
            )*
        }
    };
}

/// The port's reader methods, forwarded for one transaction type.
macro_rules! forward_reads {
    ($ty:ty) => {
        forward! { ManifestRead for $ty {
            fn inode(&self, ino: Ino) -> Attr;
            fn lookup(&self, parent: Ino, name: &[u8]) -> Option<Ino>;
            fn children(&self, dir: Ino) -> Vec<(Vec<u8>, Ino)>;
            fn has_children(&self, dir: Ino) -> bool;
            fn symlink(&self, ino: Ino) -> Vec<u8>;
            fn extents(&self, ino: Ino, start: u64, end: u64) -> Vec<Extent>;
            fn chunk(&self, addr: &Addr) -> Option<ChunkRecord>;
            fn xattr(&self, ino: Ino, name: &[u8]) -> Option<Vec<u8>>;
            fn xattr_names(&self, ino: Ino) -> Vec<Vec<u8>>;
            fn small_outbox(&self, addr: &Addr) -> Option<Vec<u8>>;
            fn meta(&self, key: &str) -> Option<u64>;
            fn node(&self, node: &NodeId) -> Option<NodeRecord>;
            fn nodes(&self) -> Vec<(NodeId, NodeRecord)>;
            fn unreferenced(&self, before_ms: u64, limit: usize) -> Vec<Addr>;
            fn blobs(&self, shares: bool) -> Vec<BlobRow>;
            fn share_secret(&self, addr: &Addr) -> Option<ShareSecret>;
            fn uploads(&self, limit: usize) -> Vec<Addr>;
            fn is_staged(&self, ino: Ino) -> bool;
        }}
    };
}

forward_reads!(Rx);
forward_reads!(Tx<'_>);

forward! { ManifestSnapshot for Rx {
    fn unlinked_inodes(&self) -> Vec<Ino>;
    fn upload_queued(&self, addr: &Addr) -> bool;
    fn sealing(&self) -> Vec<Addr>;
    fn staged(&self) -> Vec<Ino>;
    fn partial(&self, ino: Ino) -> Option<Partial>;
    fn inode_count(&self) -> u64;
    fn summary(&self) -> Summary;
    fn content_hash(&self) -> [u8; 32];
    fn dump(&self) -> Dump;
}}

forward! { ManifestTx for Tx<'_> {
    fn put_inode(&self, a: &Attr) -> ();
    fn delete_inode(&self, ino: Ino) -> ();
    fn next_ino(&self) -> Ino;
    fn set_meta(&self, key: &str, value: u64) -> ();
    fn put_dirent(&self, parent: Ino, name: &[u8], ino: Ino) -> ();
    fn del_dirent(&self, parent: Ino, name: &[u8]) -> ();
    fn put_symlink(&self, ino: Ino, target: &[u8]) -> ();
    fn put_xattr(&self, ino: Ino, name: &[u8], value: Option<&[u8]>) -> ();
    fn set_staged(&self, ino: Ino, staged: bool) -> ();
    fn set_partial(&self, ino: Ino, p: Option<&Partial>) -> ();
    fn put_chunk(&self, addr: &Addr, c: &ChunkRecord) -> ();
    fn set_extents(&self, ino: Ino, new: &[Extent]) -> ();
    fn adjust_refs(&self, addr: &Addr, delta: i64) -> ();
    fn forget_chunk(&self, addr: &Addr) -> ();
    fn set_upload(&self, addr: &Addr, queued_at: Option<u64>) -> ();
    fn set_small_outbox(&self, addr: &Addr, ct: Option<&[u8]>) -> ();
    fn set_sealing(&self, addr: &Addr, since: Option<u64>) -> ();
    fn release_sealed(&self, addr: &Addr) -> ();
    fn put_blob(&self, shares: bool, row: &BlobRow, keep: bool) -> ();
    fn put_node(&self, node: &NodeId, n: &NodeRecord) -> ();
}}

impl ManifestStore for Manifest {
    fn read(&self) -> Result<port::Rx, FsError> {
        Ok(Box::new(Manifest::read(self)?))
    }

    fn view_with(&self, f: &mut ReadFn<'_>) -> Result<(), FsError> {
        // Only one of the two runs; the cell lets both hold `f`.
        let f = RefCell::new(f);
        self.view().with(|tx| (f.borrow_mut())(tx), |rx| (f.borrow_mut())(rx))
    }

    fn write_with(&self, commit: Commit, f: &mut WriteFn<'_>) -> Result<(), FsError> {
        match commit {
            Commit::Grouped => self.write_grouped(|tx| f(tx)),
            Commit::Now => self.run(Some(Durability::None), |tx| f(tx)),
            Commit::Durable => self.run(Some(Durability::Immediate), |tx| f(tx)),
        }
    }

    fn start_group_commits(&self, delay: Duration) -> Result<(), FsError> {
        self.start_flusher(delay)
    }

    fn flush(&self) -> Result<(), FsError> {
        Manifest::flush(self)
    }

    fn checkpoint(&self) -> Result<(), FsError> {
        Manifest::checkpoint(self)
    }

    fn sync(&self) -> Result<(), FsError> {
        Manifest::sync(self)
    }

    fn is_read_only(&self) -> bool {
        Manifest::is_read_only(self)
    }
}

/// Manifests in redb files.
#[derive(Clone, Copy, Debug, Default)]
pub struct RedbManifests;

impl ManifestFiles for RedbManifests {
    fn open(&self, path: &Path, uid: u32, gid: u32) -> Result<port::Manifest, FsError> {
        Ok(Arc::new(Manifest::open(path, uid, gid)?))
    }

    fn open_read_only(&self, path: &Path) -> Result<port::Manifest, FsError> {
        Ok(Arc::new(Manifest::open_read_only(path)?))
    }

    fn import(&self, path: &Path, dump: &[u8]) -> Result<port::Manifest, FsError> {
        Ok(Arc::new(Manifest::import(path, dump, &|_, _| {})?))
    }
}

/// For tests: the vault manifest of `home` (`home/manifest.redb`), its root owned by this user.
#[cfg(test)]
pub(crate) fn open_in(home: &Path) -> port::Manifest {
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    RedbManifests.open(&home.join("manifest.redb"), uid, gid).expect("opening the test manifest")
}
