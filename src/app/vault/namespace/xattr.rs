//! Extended attributes.

use crate::app::vault::{FsError, Vault};
use crate::domain::fs::{Ino, Time};
use crate::ports::fabric::ChunkFabric;

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Sets an extended attribute (flags: XATTR_CREATE, XATTR_REPLACE).
    pub fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], flags: i32) -> Result<(), FsError> {
        self.writable()?;
        if name.is_empty() || name.len() > 255 {
            return Err(FsError::Range);
        }
        if value.len() > 64 * 1024 {
            return Err(FsError::Range);
        }
        self.m.write_grouped(|tx| {
            let exists = tx.xattr(ino, name)?.is_some();
            if flags & libc::XATTR_CREATE != 0 && exists {
                return Err(FsError::Exists);
            }
            if flags & libc::XATTR_REPLACE != 0 && !exists {
                return Err(FsError::NoXattr);
            }
            tx.put_xattr(ino, name, Some(value))?;
            let mut a = tx.inode(ino)?;
            a.ctime = Time::now();
            tx.put_inode(&a)
        })
    }

    /// An extended attribute's value.
    pub fn getxattr(&self, ino: Ino, name: &[u8]) -> Result<Vec<u8>, FsError> {
        let view = self.m.view();
        view.inode(ino)?;
        view.xattr(ino, name)?.ok_or(FsError::NoXattr)
    }

    /// Extended attribute names, each NUL-terminated.
    pub fn listxattr(&self, ino: Ino) -> Result<Vec<u8>, FsError> {
        let view = self.m.view();
        view.inode(ino)?;
        let mut out = Vec::new();
        for n in view.xattr_names(ino)? {
            out.extend_from_slice(&n);
            out.push(0);
        }
        Ok(out)
    }

    /// Removes an extended attribute.
    pub fn removexattr(&self, ino: Ino, name: &[u8]) -> Result<(), FsError> {
        self.writable()?;
        self.m.write_grouped(|tx| {
            if tx.xattr(ino, name)?.is_none() {
                return Err(FsError::NoXattr);
            }
            tx.put_xattr(ino, name, None)?;
            let mut a = tx.inode(ino)?;
            a.ctime = Time::now();
            tx.put_inode(&a)
        })
    }
}
