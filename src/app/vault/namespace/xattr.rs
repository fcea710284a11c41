//! Extended attributes, and the POSIX ACLs kept in them (`system.posix_acl_access` and
//! `system.posix_acl_default`) with the mode rules of Linux filesystems: an access ACL that a
//! mode can say becomes that mode, an extended one is kept with its mask in the group bits, chmod
//! updates an extended ACL, and a directory's default ACL is inherited by new entries.

use crate::app::vault::{FsError, Tx, Vault};
use crate::domain::acl::{AccessUpdate, Acl, AclError, Inherited, NodeClass, ACCESS_XATTR, DEFAULT_XATTR};
use crate::domain::fs::{Attr, Ino, Kind, Time};
use crate::ports::fabric::ChunkFabric;

impl From<AclError> for FsError {
    fn from(e: AclError) -> Self {
        match e {
            AclError::Version(_) => FsError::NotSupported,
            AclError::Malformed(why) => FsError::Invalid(why),
        }
    }
}

/// Which ACL an xattr name is, if any.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AclKind {
    Access,
    Default,
}

fn acl_kind(name: &[u8]) -> Option<AclKind> {
    match name {
        n if n == ACCESS_XATTR => Some(AclKind::Access),
        n if n == DEFAULT_XATTR => Some(AclKind::Default),
        _ => None,
    }
}

/// Stores `value` as the ACL `kind` of the node `a` (changing `a.perm` for an access ACL), as
/// Linux's `set_posix_acl` does.
fn set_acl(tx: &Tx<'_>, a: &mut Attr, kind: AclKind, value: &[u8]) -> Result<(), FsError> {
    if a.kind == Kind::Symlink {
        return Err(FsError::NotSupported);
    }
    let acl = Acl::decode(value)?;
    match kind {
        AclKind::Default if a.kind != Kind::Dir => match acl {
            Some(_) => Err(FsError::Access),
            None => Ok(()),
        },
        AclKind::Default => tx.put_xattr(a.ino, DEFAULT_XATTR, acl.map(|acl| acl.encode()).as_deref()),
        AclKind::Access => match acl.map(|acl| acl.update_mode(a.perm)) {
            None => tx.put_xattr(a.ino, ACCESS_XATTR, None),
            Some(AccessUpdate::ModeOnly(perm)) => {
                a.perm = perm;
                tx.put_xattr(a.ino, ACCESS_XATTR, None)
            }
            Some(AccessUpdate::Extended(perm, acl)) => {
                a.perm = perm;
                tx.put_xattr(a.ino, ACCESS_XATTR, Some(&acl.encode()))
            }
        },
    }
}

/// After a chmod of `a` to its current `perm`: an extended access ACL follows the new mode
/// (`posix_acl_chmod`). A stored value that does not parse is left as it is.
pub(in crate::app::vault) fn chmod_acl(tx: &Tx<'_>, a: &Attr) -> Result<(), FsError> {
    let Some(value) = tx.xattr(a.ino, ACCESS_XATTR)? else { return Ok(()) };
    let Ok(Some(mut acl)) = Acl::decode(&value) else { return Ok(()) };
    acl.chmod(a.perm);
    tx.put_xattr(a.ino, ACCESS_XATTR, Some(&acl.encode()))
}

/// The permission bits of a node created in `parent` with `mode` and `umask`, and the ACLs it
/// inherits: with a default ACL on the parent, that ACL replaces the umask (`posix_acl_create`);
/// without one, the umask applies.
pub(in crate::app::vault) fn inherit(
    tx: &Tx<'_>,
    parent: Ino,
    kind: Kind,
    mode: u16,
    umask: u16,
) -> Result<Inherited, FsError> {
    let plain = Inherited { perm: mode & !umask, access: None, default: None };
    if kind == Kind::Symlink {
        return Ok(plain);
    }
    let Some(value) = tx.xattr(parent, DEFAULT_XATTR)? else { return Ok(plain) };
    let Ok(Some(def)) = Acl::decode(&value) else { return Ok(plain) };
    let class = if kind == Kind::Dir { NodeClass::Dir } else { NodeClass::Other };
    Ok(def.inherit(mode, class))
}

/// Stores the ACLs a new node inherited.
pub(in crate::app::vault) fn put_inherited(tx: &Tx<'_>, ino: Ino, got: &Inherited) -> Result<(), FsError> {
    if let Some(acl) = &got.access {
        tx.put_xattr(ino, ACCESS_XATTR, Some(&acl.encode()))?;
    }
    if let Some(acl) = &got.default {
        tx.put_xattr(ino, DEFAULT_XATTR, Some(&acl.encode()))?;
    }
    Ok(())
}

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Sets an extended attribute (flags: XATTR_CREATE, XATTR_REPLACE). Setting an ACL updates
    /// the mode as Linux filesystems do.
    pub fn setxattr(&self, ino: Ino, name: &[u8], value: &[u8], flags: i32) -> Result<(), FsError> {
        self.writable()?;
        if name.is_empty() || name.len() > 255 {
            return Err(FsError::Range);
        }
        if value.len() > 64 * 1024 {
            return Err(FsError::Range);
        }
        let acl = acl_kind(name);
        // The mode of a staged file may be deferred in memory: it joins this commit, since an
        // access ACL reads and sets it.
        let deferred = match acl {
            Some(AclKind::Access) => Self::lock(&self.writer.files).get_mut(&ino).and_then(|f| f.meta.take()),
            _ => None,
        };
        self.m.write_grouped(|tx| {
            let exists = tx.xattr(ino, name)?.is_some();
            if flags & libc::XATTR_CREATE != 0 && exists {
                return Err(FsError::Exists);
            }
            if flags & libc::XATTR_REPLACE != 0 && !exists {
                return Err(FsError::NoXattr);
            }
            let mut a = tx.inode(ino)?;
            if let Some(meta) = &deferred {
                meta.apply(&mut a);
            }
            match acl {
                Some(kind) => set_acl(tx, &mut a, kind, value)?,
                None => tx.put_xattr(ino, name, Some(value))?,
            }
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

    /// Removes an extended attribute (removing an access ACL leaves the mode as it is).
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

#[cfg(test)]
#[path = "xattr_tests.rs"]
mod tests;
