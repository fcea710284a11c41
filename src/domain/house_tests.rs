//! Unit tests of the invite format and house certificates.

use super::*;

fn invite() -> Invite {
    Invite {
        name: "alice".parse().unwrap(),
        hub: "hub.example.net:4222".into(),
        leaf: "hub.example.net:7422".into(),
        ca_der: (0..450u32).map(|i| i as u8).collect(),
        hub_key: NodeIdentity::generate().id(),
        secret: [9; SECRET_LEN],
        expires_at: 1_800_000_000,
    }
}

#[test]
fn invite_round_trips_in_any_case_and_with_whitespace() {
    let i = invite();
    let text = i.encode();
    assert!(text.starts_with("QI1-") && !text.contains(' '));
    assert_eq!(Invite::decode(&text).unwrap(), i);
    let messy = format!("  {}\n", text.to_ascii_lowercase());
    assert_eq!(Invite::decode(&messy).unwrap(), i);
}

#[test]
fn every_changed_character_is_refused() {
    let text = invite().encode();
    for at in (4..text.len() - 1).step_by(7) {
        let mut chars: Vec<char> = text.chars().collect();
        chars[at] = if chars[at] == 'A' { 'B' } else { 'A' };
        let forged: String = chars.into_iter().collect();
        assert!(Invite::decode(&forged).is_err(), "changed at {at}");
    }
    assert_eq!(Invite::decode(&text[..text.len() - 3]).unwrap_err(), HouseError::Checksum);
    assert!(matches!(Invite::decode("QK1-ABCD"), Err(HouseError::Invite(_))));
    assert!(matches!(Invite::decode("QI1-U!"), Err(HouseError::Invite(_))));
}

#[test]
fn house_names_are_subject_safe() {
    for bad in ["", "Alice", "a.b", "a b", "-x", "a*", &"x".repeat(33)] {
        assert!(bad.parse::<HouseName>().is_err(), "{bad:?}");
    }
    assert!("bob-2".parse::<HouseName>().is_ok());
}

#[test]
fn a_cert_verifies_only_under_the_hub_key_and_for_its_own_fields() {
    let hub = NodeIdentity::generate();
    let node = NodeIdentity::generate().id();
    let name: HouseName = "alice".parse().unwrap();
    let cert = HouseCert::issue(&hub, &name, &node, 42);
    assert_eq!(cert.verify(&hub.id()), Some(node));
    assert_eq!(cert.verify(&NodeIdentity::generate().id()), None);
    let mut moved = cert.clone();
    moved.house = "mallory".parse().unwrap();
    assert_eq!(moved.verify(&hub.id()), None);
    let mut other = cert;
    other.node = NodeIdentity::generate().id().to_hex();
    assert_eq!(other.verify(&hub.id()), None);
}
