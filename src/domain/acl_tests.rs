//! Tests of the ACL format and mode rules against what Linux (fs/posix_acl.c) does.

use super::*;
use proptest::prelude::*;

fn e(tag: Tag, perm: u16) -> Entry {
    Entry { tag, perm }
}

/// `user::rwx user:1000:r-x group::r-x mask::r-x other::---`, written the way setfacl sends it.
fn extended() -> Acl {
    Acl::new(vec![
        e(Tag::UserObj, 7),
        e(Tag::User(1000), 5),
        e(Tag::GroupObj, 5),
        e(Tag::Mask, 5),
        e(Tag::Other, 0),
    ])
    .unwrap()
}

fn raw(entries: &[(u16, u16, u32)]) -> Vec<u8> {
    let mut v = 2u32.to_le_bytes().to_vec();
    for (tag, perm, id) in entries {
        v.extend_from_slice(&tag.to_le_bytes());
        v.extend_from_slice(&perm.to_le_bytes());
        v.extend_from_slice(&id.to_le_bytes());
    }
    v
}

#[test]
fn the_linux_encoding_round_trips() {
    let bytes =
        raw(&[(1, 7, u32::MAX), (2, 5, 1000), (4, 5, u32::MAX), (0x10, 5, u32::MAX), (0x20, 0, u32::MAX)]);
    let acl = Acl::decode(&bytes).unwrap().unwrap();
    assert_eq!(acl, extended());
    assert_eq!(acl.encode(), bytes);
}

#[test]
fn ids_of_unnamed_entries_are_ignored_and_written_as_undefined() {
    // cp and older tools send 0 rather than -1 for the owner's id.
    let acl = Acl::decode(&raw(&[(1, 6, 0), (4, 4, 0), (0x20, 4, 0)])).unwrap().unwrap();
    assert_eq!(acl, Acl::from_mode(0o644));
    assert_eq!(acl.encode(), raw(&[(1, 6, u32::MAX), (4, 4, u32::MAX), (0x20, 4, u32::MAX)]));
}

#[test]
fn malformed_values_are_refused() {
    let m = |v: &[u8]| matches!(Acl::decode(v), Err(AclError::Malformed(_)));
    assert!(m(b""));
    assert!(m(&[2, 0, 0]));
    assert_eq!(Acl::decode(&[1, 0, 0, 0]), Err(AclError::Version(1)));
    let mut odd = raw(&[(1, 7, 0), (4, 5, 0), (0x20, 5, 0)]);
    odd.push(0);
    assert!(m(&odd), "size not a multiple of 8");
    assert!(m(&raw(&[(1, 7, 0), (4, 5, 0)])), "no other entry");
    assert!(m(&raw(&[(1, 7, 0), (4, 5, 0), (0x20, 5, 0), (0x20, 5, 0)])), "repeated");
    assert!(m(&raw(&[(4, 5, 0), (1, 7, 0), (0x20, 5, 0)])), "out of order");
    assert!(m(&raw(&[(1, 7, 0), (2, 5, 7), (4, 5, 0), (0x20, 5, 0)])), "named entry without mask");
    let two_users = [(1, 7, 0), (2, 5, 8), (2, 5, 7), (4, 5, 0), (0x10, 7, 0), (0x20, 5, 0)];
    assert!(m(&raw(&two_users)), "named ids not sorted");
    let same_user = [(1, 7, 0), (2, 5, 7), (2, 5, 7), (4, 5, 0), (0x10, 7, 0), (0x20, 5, 0)];
    assert!(m(&raw(&same_user)), "named id repeated");
    assert!(m(&raw(&[(1, 8, 0), (4, 5, 0), (0x20, 5, 0)])), "perm beyond rwx");
    assert!(m(&raw(&[(1, 7, 0), (3, 5, 0), (4, 5, 0), (0x20, 5, 0)])), "unknown tag");
    assert_eq!(Acl::decode(&raw(&[])), Ok(None), "a bare header is no ACL");
}

#[test]
fn a_minimal_acl_becomes_the_mode_only() {
    let acl = Acl::decode(&raw(&[(1, 7, 0), (4, 5, 0), (0x20, 4, 0)])).unwrap().unwrap();
    assert_eq!(acl.update_mode(0o4600), AccessUpdate::ModeOnly(0o4754));
}

#[test]
fn an_extended_acl_keeps_the_mask_in_the_group_bits() {
    let mut acl = extended();
    acl.set(Tag::GroupObj, 4);
    match acl.clone().update_mode(0o600) {
        AccessUpdate::Extended(mode, kept) => {
            assert_eq!(mode, 0o750, "group bits are the mask's r-x, not group::r--");
            assert_eq!(kept, acl);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn chmod_sets_owner_mask_and_other_and_keeps_named_entries() {
    let mut acl = extended();
    acl.chmod(0o640);
    let want =
        [e(Tag::UserObj, 6), e(Tag::User(1000), 5), e(Tag::GroupObj, 5), e(Tag::Mask, 4), e(Tag::Other, 0)];
    assert_eq!(acl.entries(), want);
    let mut minimal = Acl::from_mode(0o777);
    minimal.chmod(0o751);
    assert_eq!(minimal, Acl::from_mode(0o751), "without a mask the owning group follows");
}

#[test]
fn a_file_inherits_the_default_masked_by_its_create_mode() {
    // setfacl -d -m u:1000:rwx,g::r-x,o::r-x dir; then open(O_CREAT, 0666).
    let def = Acl::new(vec![
        e(Tag::UserObj, 7),
        e(Tag::User(1000), 7),
        e(Tag::GroupObj, 5),
        e(Tag::Mask, 7),
        e(Tag::Other, 5),
    ])
    .unwrap();
    let got = def.inherit(0o666, NodeClass::Other);
    assert_eq!(got.perm, 0o664);
    let access = got.access.expect("extended");
    let want =
        [e(Tag::UserObj, 6), e(Tag::User(1000), 7), e(Tag::GroupObj, 5), e(Tag::Mask, 6), e(Tag::Other, 4)];
    assert_eq!(access.entries(), want);
    assert_eq!(got.default, None);
    let dir = def.inherit(0o777, NodeClass::Dir);
    assert_eq!(dir.perm, 0o775);
    assert_eq!(dir.default, Some(def));
}

#[test]
fn a_minimal_default_gives_a_mode_and_no_access_acl() {
    let def = Acl::from_mode(0o750);
    let got = def.inherit(0o2777 & 0o777, NodeClass::Other);
    assert_eq!((got.perm, got.access), (0o750, None));
    assert_eq!(def.inherit(0o4644, NodeClass::Other).perm, 0o4640, "special bits are kept");
}

fn arb_acl() -> impl Strategy<Value = Acl> {
    let perm = || 0u16..8;
    (
        perm(),
        perm(),
        perm(),
        proptest::option::of(perm()),
        proptest::collection::btree_map(any::<u32>(), perm(), 0..4),
        proptest::collection::btree_map(any::<u32>(), perm(), 0..4),
    )
        .prop_map(|(u, g, o, mask, users, groups)| {
            let named = !users.is_empty() || !groups.is_empty();
            let mut v = vec![e(Tag::UserObj, u)];
            v.extend(users.into_iter().map(|(id, p)| e(Tag::User(id), p)));
            v.push(e(Tag::GroupObj, g));
            v.extend(groups.into_iter().map(|(id, p)| e(Tag::Group(id), p)));
            if let Some(m) = mask.or(named.then_some(7)) {
                v.push(e(Tag::Mask, m));
            }
            v.push(e(Tag::Other, o));
            Acl::new(v).unwrap()
        })
}

proptest! {
    #[test]
    fn every_valid_acl_round_trips(acl in arb_acl()) {
        prop_assert_eq!(Acl::decode(&acl.encode()).unwrap(), Some(acl));
    }

    #[test]
    fn decoding_arbitrary_bytes_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
        let _ = Acl::decode(&bytes);
        let mut v = 2u32.to_le_bytes().to_vec();
        v.extend_from_slice(&bytes);
        if let Ok(Some(acl)) = Acl::decode(&v) {
            prop_assert_eq!(Acl::decode(&acl.encode()).unwrap(), Some(acl));
        }
    }

    #[test]
    fn chmod_then_mode_bits_gives_the_new_mode(acl in arb_acl(), perm in 0u16..0o7777) {
        let mut acl = acl;
        acl.chmod(perm);
        prop_assert_eq!(acl.mode_bits(perm), perm);
    }
}
