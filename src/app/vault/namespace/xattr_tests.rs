//! ACLs through the vault service: the mode follows an access ACL, chmod follows into an
//! extended ACL (also while the file is open and staged), default ACLs are inherited, and
//! malformed values are refused without changing anything.

use crate::app::vault::pipeline::uploader_tests::CountingFabric;
use crate::app::vault::{Caller, FsError, SetAttr, Vault, VaultOptions};
use crate::domain::acl::{Acl, Entry, Tag, ACCESS_XATTR, DEFAULT_XATTR};
use crate::domain::fs::{Ino, ROOT_INO};
use crate::domain::keys::MasterKey;
use std::sync::Arc;

const ROOT: Caller = Caller { uid: 0, gid: 0 };

fn load(home: &std::path::Path) -> Arc<Vault<CountingFabric>> {
    let keys = Arc::new(MasterKey::from_bytes([7; 32]).derive());
    let manifest = crate::adapters::redb::manifest::open_in(home);
    let clock = Arc::new(crate::adapters::clock::SystemClock);
    Arc::new(
        Vault::load(
            home,
            manifest,
            keys,
            VaultOptions::default(),
            &crate::adapters::local::LocalFiles,
            clock,
        )
        .unwrap(),
    )
}

/// `user::rwx user:1000:rwx group::r-x mask::MASK other::OTHER`.
fn extended(mask: u16, other: u16) -> Acl {
    let e = |tag, perm| Entry { tag, perm };
    Acl::new(vec![
        e(Tag::UserObj, 7),
        e(Tag::User(1000), 7),
        e(Tag::GroupObj, 5),
        e(Tag::Mask, mask),
        e(Tag::Other, other),
    ])
    .unwrap()
}

fn perm(v: &Vault<CountingFabric>, ino: Ino) -> u16 {
    v.getattr(ino).unwrap().perm
}

#[test]
fn an_access_acl_sets_the_mode_and_chmod_updates_it() {
    let home = tempfile::tempdir().unwrap();
    let v = load(home.path());
    // Created 0600 and still open (staged), as cp -a leaves a file before it sets the ACL.
    let (a, _fh) = v.create(ROOT, ROOT_INO, b"f", 0o600, 0, 0).unwrap();
    v.setxattr(a.ino, ACCESS_XATTR, &Acl::from_mode(0o644).encode(), 0).unwrap();
    assert_eq!(perm(&v, a.ino), 0o644);
    assert!(
        matches!(v.getxattr(a.ino, ACCESS_XATTR), Err(FsError::NoXattr)),
        "an equivalent ACL is the mode only"
    );

    v.setxattr(a.ino, ACCESS_XATTR, &extended(6, 4).encode(), 0).unwrap();
    assert_eq!(perm(&v, a.ino), 0o764, "group bits are the mask");
    v.setattr_meta(a.ino, SetAttr { mode: Some(0o750), ..Default::default() }).unwrap();
    assert_eq!(perm(&v, a.ino), 0o750);
    let stored = Acl::decode(&v.getxattr(a.ino, ACCESS_XATTR).unwrap()).unwrap().unwrap();
    assert_eq!(stored, extended(5, 0), "chmod set the mask and other entries");

    v.removexattr(a.ino, ACCESS_XATTR).unwrap();
    assert_eq!(perm(&v, a.ino), 0o750, "removing the ACL leaves the mode");
}

#[test]
fn malformed_acls_are_refused_and_change_nothing() {
    let home = tempfile::tempdir().unwrap();
    let v = load(home.path());
    let a = v.mkdir(ROOT, ROOT_INO, b"d", 0o755, 0).unwrap();
    let (f, _fh) = v.create(ROOT, ROOT_INO, b"f", 0o640, 0, 0).unwrap();
    let mut bad = extended(7, 5).encode();
    bad.truncate(bad.len() - 8); // no other entry
    assert!(matches!(v.setxattr(a.ino, ACCESS_XATTR, &bad, 0), Err(FsError::Invalid(_))));
    assert!(matches!(v.setxattr(a.ino, DEFAULT_XATTR, &bad[..7], 0), Err(FsError::Invalid(_))));
    assert!(matches!(v.setxattr(a.ino, ACCESS_XATTR, &[1, 0, 0, 0], 0), Err(FsError::NotSupported)));
    assert!(matches!(v.setxattr(f.ino, DEFAULT_XATTR, &extended(7, 5).encode(), 0), Err(FsError::Access)));
    assert_eq!((perm(&v, a.ino), perm(&v, f.ino)), (0o755, 0o640));
    assert_eq!(v.listxattr(a.ino).unwrap(), b"");
}

#[test]
fn a_default_acl_is_inherited_instead_of_the_umask() {
    let home = tempfile::tempdir().unwrap();
    let v = load(home.path());
    let d = v.mkdir(ROOT, ROOT_INO, b"d", 0o755, 0o022).unwrap();
    let def = extended(7, 0);
    v.setxattr(d.ino, DEFAULT_XATTR, &def.encode(), 0).unwrap();

    let (f, _fh) = v.create(ROOT, d.ino, b"f", 0o666, 0o077, 0).unwrap();
    assert_eq!(f.perm, 0o660, "masked by the create mode, not by the umask");
    let access = Acl::decode(&v.getxattr(f.ino, ACCESS_XATTR).unwrap()).unwrap().unwrap();
    assert_eq!(access.mode_bits(0), 0o660);
    assert!(matches!(v.getxattr(f.ino, DEFAULT_XATTR), Err(FsError::NoXattr)), "files get no default ACL");

    let sub = v.mkdir(ROOT, d.ino, b"sub", 0o777, 0o077).unwrap();
    assert_eq!(sub.perm, 0o770);
    assert_eq!(v.getxattr(sub.ino, DEFAULT_XATTR).unwrap(), def.encode(), "directories inherit the default");

    let plain = v.mkdir(ROOT, ROOT_INO, b"plain", 0o777, 0o027).unwrap();
    assert_eq!(plain.perm, 0o750, "without a default ACL the umask applies");
}
