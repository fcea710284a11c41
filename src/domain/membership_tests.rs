//! Unit tests of the membership register.

use super::*;

fn setup() -> (Register, NodeIdentity, HouseName, [u8; SECRET_LEN]) {
    let mut reg = Register::default();
    let name: HouseName = "alice".parse().unwrap();
    let secret = [7; SECRET_LEN];
    reg.invite(&name, &secret, 1000, 10).unwrap();
    (reg, NodeIdentity::generate(), name, secret)
}

fn request(secret: &[u8; SECRET_LEN]) -> (EnrolRequest, NodeIdentity) {
    let node = NodeIdentity::generate();
    (EnrolRequest::new(secret, &node, "p".repeat(32), 1 << 30, None), node)
}

#[test]
fn an_invite_admits_one_house_once() {
    let (mut reg, hub, name, secret) = setup();
    let (req, node) = request(&secret);
    let house = reg.enrol(&req, &hub, 20).unwrap();
    assert_eq!(house.name, name);
    assert_eq!(house.nodes[0].verify(&hub.id()), Some(node.id()));
    assert!(!serde_json::to_string(&reg).unwrap().contains(&req.secret), "the secret is not kept");
    assert_eq!(reg.enrol(&request(&secret).0, &hub, 21).unwrap_err(), MembershipError::UnknownInvite);
    assert_eq!(reg.active().count(), 1);
}

#[test]
fn expired_forged_and_tampered_requests_are_refused() {
    let (mut reg, hub, _, secret) = setup();
    assert_eq!(
        reg.enrol(&request(&[8; SECRET_LEN]).0, &hub, 20).unwrap_err(),
        MembershipError::UnknownInvite
    );
    let (mut tampered, _) = request(&secret);
    tampered.capacity += 1;
    assert!(matches!(reg.enrol(&tampered, &hub, 20), Err(MembershipError::Malformed(_))));
    assert_eq!(reg.enrol(&request(&secret).0, &hub, 1000).unwrap_err(), MembershipError::Expired);
    assert!(reg.houses.is_empty());
}

#[test]
fn a_member_cannot_be_invited_again_until_revoked() {
    let (mut reg, hub, name, secret) = setup();
    reg.enrol(&request(&secret).0, &hub, 20).unwrap();
    assert_eq!(
        reg.invite(&name, &[1; SECRET_LEN], 2000, 30).unwrap_err(),
        MembershipError::Member(name.clone())
    );
    reg.revoke(&name).unwrap();
    assert_eq!(reg.active().count(), 0);
    assert!(reg.revoke(&name).is_err());
    reg.invite(&name, &[1; SECRET_LEN], 2000, 30).unwrap();
    reg.enrol(&request(&[1; SECRET_LEN]).0, &hub, 40).unwrap();
    assert_eq!(reg.houses.len(), 1);
    assert_eq!(reg.active().count(), 1);
}
