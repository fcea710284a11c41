//! Renames: atomic replace, RENAME_NOREPLACE and RENAME_EXCHANGE, with directory link counts.

use super::check_name;
use crate::app::vault::Tx;
use crate::app::vault::{FsError, Vault};
use crate::domain::fs::{Attr, Ino, Kind, Time};
use crate::ports::fabric::ChunkFabric;

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Renames atomically, replacing an existing target (flags: RENAME_NOREPLACE,
    /// RENAME_EXCHANGE).
    pub fn rename(
        &self,
        parent: Ino,
        name: &[u8],
        newparent: Ino,
        newname: &[u8],
        flags: u32,
    ) -> Result<(), FsError> {
        self.writable()?;
        check_name(newname)?;
        self.namespace_op();
        let noreplace = flags & libc::RENAME_NOREPLACE != 0;
        let exchange = flags & libc::RENAME_EXCHANGE != 0;
        let freed = self.m.write_grouped(|tx| {
            let src = tx.lookup(parent, name)?.ok_or(FsError::NotFound)?;
            let src_attr = tx.inode(src)?;
            let dst = tx.lookup(newparent, newname)?;
            if tx.inode(newparent)?.kind != Kind::Dir {
                return Err(FsError::NotDir);
            }
            if src_attr.kind == Kind::Dir && self.is_ancestor(tx, src, newparent)? {
                return Err(FsError::Invalid("cannot move a directory into itself"));
            }
            let now = Time::now();
            let mut freed = Vec::new();
            match dst {
                Some(d) if d == src => return Ok(freed),
                Some(_) if noreplace => return Err(FsError::Exists),
                Some(d) if exchange => {
                    tx.put_dirent(parent, name, d)?;
                    tx.put_dirent(newparent, newname, src)?;
                    self.fix_dir_links(tx, parent, newparent, &src_attr, Some(&tx.inode(d)?), now)?;
                    return Ok(freed);
                }
                Some(d) => {
                    let dattr = tx.inode(d)?;
                    match (src_attr.kind == Kind::Dir, dattr.kind == Kind::Dir) {
                        (true, false) => return Err(FsError::NotDir),
                        (false, true) => return Err(FsError::IsDir),
                        (true, true) if tx.has_children(d)? => return Err(FsError::NotEmpty),
                        _ => {}
                    }
                    if dattr.kind == Kind::Dir {
                        let mut np = tx.inode(newparent)?;
                        np.nlink = np.nlink.saturating_sub(1);
                        tx.put_inode(&np)?;
                    }
                    if Self::drop_link(tx, d, now)? {
                        freed.push(d);
                    }
                }
                None if exchange => return Err(FsError::NotFound),
                None => {}
            }
            tx.del_dirent(parent, name)?;
            tx.put_dirent(newparent, newname, src)?;
            self.fix_dir_links(tx, parent, newparent, &src_attr, None, now)?;
            Ok(freed)
        })?;
        self.free_inodes(freed)
    }

    /// Whether `node` is `dir` or lies somewhere below it (a directory may not move into itself).
    fn is_ancestor(&self, tx: &Tx<'_>, dir: Ino, node: Ino) -> Result<bool, FsError> {
        let mut stack = vec![dir];
        while let Some(d) = stack.pop() {
            if d == node {
                return Ok(true);
            }
            for (_, child) in tx.children(d)? {
                if tx.inode(child)?.kind == Kind::Dir {
                    stack.push(child);
                }
            }
        }
        Ok(false)
    }

    fn fix_dir_links(
        &self,
        tx: &Tx<'_>,
        parent: Ino,
        newparent: Ino,
        moved: &Attr,
        swapped: Option<&Attr>,
        now: Time,
    ) -> Result<(), FsError> {
        let mut p = tx.inode(parent)?;
        let delta_src =
            i64::from(moved.kind == Kind::Dir) - i64::from(swapped.is_some_and(|s| s.kind == Kind::Dir));
        if parent != newparent {
            p.nlink = (p.nlink as i64 - delta_src).max(2) as u32;
        }
        p.mtime = now;
        p.ctime = now;
        tx.put_inode(&p)?;
        if parent != newparent {
            let mut np = tx.inode(newparent)?;
            np.nlink = (np.nlink as i64 + delta_src).max(2) as u32;
            np.mtime = now;
            np.ctime = now;
            tx.put_inode(&np)?;
        }
        let mut m = tx.inode(moved.ino)?;
        m.ctime = now;
        tx.put_inode(&m)
    }
}
