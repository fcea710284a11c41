//! POSIX ACLs in the Linux xattr format (`system.posix_acl_access`, `system.posix_acl_default`)
//! and the mode rules Linux filesystems apply with them (`fs/posix_acl.c`): equivalence to a
//! mode, chmod, and inheritance of a directory's default ACL by a new entry.

use thiserror::Error;

/// The xattr holding a node's access ACL.
pub const ACCESS_XATTR: &[u8] = b"system.posix_acl_access";
/// The xattr holding a directory's default ACL.
pub const DEFAULT_XATTR: &[u8] = b"system.posix_acl_default";

/// The only xattr format version Linux knows.
const VERSION: u32 = 2;
/// The id stored with entries that name no user or group.
const UNDEFINED_ID: u32 = u32::MAX;
/// Most entries accepted in one ACL (a 64 KiB xattr holds fewer).
const MAX_ENTRIES: usize = 8 * 1024;

/// Why an ACL value was refused.
#[derive(Debug, Error, Clone, PartialEq, Eq)]
pub enum AclError {
    /// The header's version is not 2 (Linux: EOPNOTSUPP).
    #[error("unsupported ACL version {0}")]
    Version(u32),
    /// Any other malformed value (Linux: EINVAL).
    #[error("malformed ACL: {0}")]
    Malformed(&'static str),
}

/// An entry's tag, in the order entries must appear.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Tag {
    /// The owner (`user::`).
    UserObj,
    /// A named user (`user:ID:`).
    User(u32),
    /// The owning group (`group::`).
    GroupObj,
    /// A named group (`group:ID:`).
    Group(u32),
    /// The mask of named entries and the owning group (`mask::`).
    Mask,
    /// Everyone else (`other::`).
    Other,
}

impl Tag {
    fn code(self) -> u16 {
        match self {
            Tag::UserObj => 0x01,
            Tag::User(_) => 0x02,
            Tag::GroupObj => 0x04,
            Tag::Group(_) => 0x08,
            Tag::Mask => 0x10,
            Tag::Other => 0x20,
        }
    }

    fn id(self) -> u32 {
        match self {
            Tag::User(id) | Tag::Group(id) => id,
            _ => UNDEFINED_ID,
        }
    }

    fn decode(code: u16, id: u32) -> Result<Tag, AclError> {
        Ok(match code {
            0x01 => Tag::UserObj,
            0x02 => Tag::User(id),
            0x04 => Tag::GroupObj,
            0x08 => Tag::Group(id),
            0x10 => Tag::Mask,
            0x20 => Tag::Other,
            _ => return Err(AclError::Malformed("unknown tag")),
        })
    }
}

/// One entry: who, and which of read (4), write (2), execute (1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entry {
    /// Who the entry is about.
    pub tag: Tag,
    /// rwx bits (0..=7).
    pub perm: u16,
}

/// A valid ACL: one owner, one owning group and one other entry, a mask whenever there are
/// named entries, named entries sorted by id without repeats.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acl {
    entries: Vec<Entry>,
}

/// What setting an access ACL does to a node (`posix_acl_update_mode`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccessUpdate {
    /// The ACL says no more than a mode: only the mode is kept, no xattr.
    ModeOnly(u16),
    /// An extended ACL: the new mode (group bits from the mask) and the ACL to keep.
    Extended(u16, Acl),
}

/// What a new node gets from its directory's default ACL (`posix_acl_create`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Inherited {
    /// The new node's permission bits.
    pub perm: u16,
    /// Its access ACL, when it is more than its mode.
    pub access: Option<Acl>,
    /// Its default ACL (directories only).
    pub default: Option<Acl>,
}

impl Acl {
    /// Parses and validates the xattr value. `Ok(None)` for an ACL with no entries (a bare
    /// header), which Linux treats as removing the ACL.
    pub fn decode(value: &[u8]) -> Result<Option<Acl>, AclError> {
        let (header, body) = value.split_at_checked(4).ok_or(AclError::Malformed("short header"))?;
        let version = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        if version != VERSION {
            return Err(AclError::Version(version));
        }
        if body.len() % 8 != 0 {
            return Err(AclError::Malformed("size is not a whole number of entries"));
        }
        if body.is_empty() {
            return Ok(None);
        }
        if body.len() / 8 > MAX_ENTRIES {
            return Err(AclError::Malformed("too many entries"));
        }
        let mut entries = Vec::with_capacity(body.len() / 8);
        for e in body.chunks_exact(8) {
            let code = u16::from_le_bytes([e[0], e[1]]);
            let perm = u16::from_le_bytes([e[2], e[3]]);
            let id = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
            entries.push(Entry { tag: Tag::decode(code, id)?, perm });
        }
        Acl::new(entries).map(Some)
    }

    /// Builds an ACL from entries, checking every rule of `posix_acl_valid`.
    pub fn new(entries: Vec<Entry>) -> Result<Acl, AclError> {
        if entries.iter().any(|e| e.perm & !7 != 0) {
            return Err(AclError::Malformed("permission bits beyond rwx"));
        }
        if !entries.windows(2).all(|w| w[0].tag < w[1].tag) {
            return Err(AclError::Malformed("entries out of order or repeated"));
        }
        let has = |t: Tag| entries.iter().any(|e| e.tag == t);
        if !has(Tag::UserObj) || !has(Tag::GroupObj) || !has(Tag::Other) {
            return Err(AclError::Malformed("owner, owning group or other entry missing"));
        }
        let named = entries.iter().any(|e| matches!(e.tag, Tag::User(_) | Tag::Group(_)));
        if named && !has(Tag::Mask) {
            return Err(AclError::Malformed("named entries without a mask"));
        }
        Ok(Acl { entries })
    }

    /// The minimal ACL that says exactly what the permission bits `perm` say.
    pub fn from_mode(perm: u16) -> Acl {
        let e = |tag, shift: u16| Entry { tag, perm: (perm >> shift) & 7 };
        Acl { entries: vec![e(Tag::UserObj, 6), e(Tag::GroupObj, 3), e(Tag::Other, 0)] }
    }

    /// The entries, in order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The xattr value, as Linux writes it.
    pub fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(4 + 8 * self.entries.len());
        v.extend_from_slice(&VERSION.to_le_bytes());
        for e in &self.entries {
            v.extend_from_slice(&e.tag.code().to_le_bytes());
            v.extend_from_slice(&e.perm.to_le_bytes());
            v.extend_from_slice(&e.tag.id().to_le_bytes());
        }
        v
    }

    fn perm_of(&self, tag: Tag) -> Option<u16> {
        self.entries.iter().find(|e| e.tag == tag).map(|e| e.perm)
    }

    fn set(&mut self, tag: Tag, perm: u16) {
        if let Some(e) = self.entries.iter_mut().find(|e| e.tag == tag) {
            e.perm = perm;
        }
    }

    /// Whether the ACL is more than a mode (has a mask or named entries).
    pub fn is_extended(&self) -> bool {
        self.entries.len() > 3
    }

    /// The permission bits the ACL implies, keeping the setuid/setgid/sticky bits of `perm`
    /// (`posix_acl_equiv_mode`): the group bits come from the mask when there is one.
    pub fn mode_bits(&self, perm: u16) -> u16 {
        let p = |t| self.perm_of(t).unwrap_or(0);
        let group = self.perm_of(Tag::Mask).unwrap_or(p(Tag::GroupObj));
        (perm & !0o777) | p(Tag::UserObj) << 6 | group << 3 | p(Tag::Other)
    }

    /// Setting this as a node's access ACL when its permission bits are `perm`.
    pub fn update_mode(self, perm: u16) -> AccessUpdate {
        let mode = self.mode_bits(perm);
        if self.is_extended() {
            AccessUpdate::Extended(mode, self)
        } else {
            AccessUpdate::ModeOnly(mode)
        }
    }

    /// The access ACL after a chmod to `perm` (`posix_acl_chmod`): owner, other and the mask
    /// (or the owning group when there is no mask) follow the new mode; named entries stay.
    pub fn chmod(&mut self, perm: u16) {
        self.set(Tag::UserObj, (perm >> 6) & 7);
        self.set(Tag::Other, perm & 7);
        let group = if self.perm_of(Tag::Mask).is_some() { Tag::Mask } else { Tag::GroupObj };
        self.set(group, (perm >> 3) & 7);
    }

    /// A new node made in a directory with this default ACL, asked for with `mode` (no umask:
    /// a default ACL replaces it). `is_dir` nodes also keep the default ACL as their own.
    pub fn inherit(&self, mode: u16, kind: NodeClass) -> Inherited {
        let mut acl = self.clone();
        let mut mode = mode;
        // posix_acl_create_masq: each class entry is masked by the mode and the mode by it.
        for e in acl.entries.iter_mut() {
            match e.tag {
                Tag::UserObj => {
                    e.perm &= (mode >> 6) & 7;
                    mode &= (e.perm << 6) | !0o700;
                }
                Tag::Other => {
                    e.perm &= mode & 7;
                    mode &= e.perm | !0o007;
                }
                _ => {}
            }
        }
        let group = if acl.perm_of(Tag::Mask).is_some() { Tag::Mask } else { Tag::GroupObj };
        let g = acl.perm_of(group).unwrap_or(0) & ((mode >> 3) & 7);
        acl.set(group, g);
        mode &= (g << 3) | !0o070;
        let access = acl.is_extended().then_some(acl);
        let default = (kind == NodeClass::Dir).then(|| self.clone());
        Inherited { perm: mode, access, default }
    }
}

/// Whether a new node is a directory (it then inherits the default ACL as its own default).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NodeClass {
    /// A directory.
    Dir,
    /// Anything else that carries ACLs.
    Other,
}

#[cfg(test)]
#[path = "acl_tests.rs"]
mod tests;
