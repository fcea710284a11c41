//! The hub's membership register: pending invites (hashes of their secrets), the houses that
//! joined, their nodes' certificates and whether they are revoked; and the enrolment messages
//! a new house exchanges with the hub. Pure: time comes in as an argument.

use crate::domain::house::{secret_hash, HouseCert, HouseName, SECRET_LEN};
use crate::domain::identity::{verify_signature, NodeIdentity, SIGNATURE_LEN};
use crate::domain::ids::{from_hex, to_hex, NodeId};
use serde::{Deserialize, Serialize};

/// Why the hub refused an enrolment or a command.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum MembershipError {
    /// No invite with this secret, or it was used already.
    #[error(
        "the hub knows no unused invite with this secret: it was used already, replaced or never issued"
    )]
    UnknownInvite,
    /// The invite's time ran out.
    #[error("the invite expired; ask the hub's operator for a new one")]
    Expired,
    /// The request is malformed or its signature is wrong.
    #[error("malformed enrolment request: {0}")]
    Malformed(&'static str),
    /// A house of this name is a member already.
    #[error("house {0} is a member already (`quloud revoke {0}` first to invite it again)")]
    Member(HouseName),
    /// No such house.
    #[error("no house named {0}")]
    NoSuchHouse(HouseName),
}

/// An invite the hub handed out and not yet used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PendingInvite {
    /// The house it is for.
    pub name: HouseName,
    /// `secret_hash` of its secret (hex).
    pub secret_hash: String,
    /// Unix seconds after which it is refused.
    pub expires_at: u64,
}

/// A house that joined.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct House {
    /// Its name.
    pub name: HouseName,
    /// The NATS user its leaf connection logs in as.
    pub user: String,
    /// That user's password (the house chose it; the hub's config lists it).
    pub password: String,
    /// Its nodes, each certified by the hub.
    pub nodes: Vec<HouseCert>,
    /// Storage the house offers, in bytes.
    pub capacity: u64,
    /// The owner the house backs up for, when it has one: (ack token, root locator), which its
    /// credentials name.
    pub owner: Option<(String, String)>,
    /// When it joined (Unix seconds).
    pub joined_at: u64,
    /// When its leaf connection was last seen at the hub (Unix seconds; 0: never).
    pub last_seen: u64,
    /// Cut off: its credentials are refused.
    pub revoked: bool,
}

/// The register, as the hub keeps it on disk (JSON).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Register {
    /// Invites not yet used (expired ones are dropped when the next is issued).
    pub invites: Vec<PendingInvite>,
    /// Houses that joined, revoked ones included.
    pub houses: Vec<House>,
}

/// The request a new house sends the hub, once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnrolRequest {
    /// The invite's secret (hex).
    pub secret: String,
    /// The house's storage node (hex public key).
    pub node: String,
    /// The password of the house's leaf connection.
    pub password: String,
    /// Storage offered, bytes.
    pub capacity: u64,
    /// The owner backing up at this house, if any: (ack token, root locator).
    pub owner: Option<(String, String)>,
    /// The node's signature over the request (proves the house holds the node's key).
    pub signature: String,
}

/// The hub's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EnrolReply {
    /// Enrolled: the node's certificate and the JetStream domain of the hub.
    Enrolled {
        /// The certificate binding the node to the house.
        cert: HouseCert,
        /// The NATS user of the house's leaf connection.
        user: String,
        /// The hub's JetStream domain.
        js_domain: String,
    },
    /// Refused, with the reason as one line.
    Refused(String),
}

fn request_message(
    secret: &str,
    node: &str,
    password: &str,
    capacity: u64,
    owner: &Option<(String, String)>,
) -> Vec<u8> {
    let mut m = b"quloud v1 enrol\0".to_vec();
    for part in [secret, node, password] {
        m.extend_from_slice(part.as_bytes());
        m.push(0);
    }
    m.extend_from_slice(&capacity.to_be_bytes());
    if let Some((token, locator)) = owner {
        m.extend_from_slice(format!("{token}\0{locator}").as_bytes());
    }
    m
}

impl EnrolRequest {
    /// A request signed with the house's node key.
    pub fn new(
        secret: &[u8; SECRET_LEN],
        node: &NodeIdentity,
        password: String,
        capacity: u64,
        owner: Option<(String, String)>,
    ) -> EnrolRequest {
        let (secret, id) = (to_hex(secret), node.id().to_hex());
        let sig = node.sign(&request_message(&secret, &id, &password, capacity, &owner));
        EnrolRequest { secret, node: id, password, capacity, owner, signature: to_hex(&sig) }
    }

    fn check(&self) -> Result<(NodeId, [u8; SECRET_LEN]), MembershipError> {
        let node = NodeId::from_hex(&self.node).ok_or(MembershipError::Malformed("node id"))?;
        let secret = from_hex::<SECRET_LEN>(&self.secret).ok_or(MembershipError::Malformed("secret"))?;
        let sig =
            from_hex::<SIGNATURE_LEN>(&self.signature).ok_or(MembershipError::Malformed("signature"))?;
        let msg = request_message(&self.secret, &self.node, &self.password, self.capacity, &self.owner);
        if !verify_signature(&node, &msg, &sig) {
            return Err(MembershipError::Malformed("the node's signature does not verify"));
        }
        let token_ok =
            |s: &str| !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric());
        if !(16..=128).contains(&self.password.len())
            || !self.password.bytes().all(|b| b.is_ascii_alphanumeric())
        {
            return Err(MembershipError::Malformed("password"));
        }
        if let Some((token, locator)) = &self.owner {
            if !token_ok(token) || !token_ok(locator) {
                return Err(MembershipError::Malformed("owner"));
            }
        }
        Ok((node, secret))
    }
}

impl Register {
    /// Records a new invite for `name` (replacing a pending one of that name), dropping expired
    /// invites. Refused while `name` is a member.
    pub fn invite(
        &mut self,
        name: &HouseName,
        secret: &[u8; SECRET_LEN],
        expires_at: u64,
        now: u64,
    ) -> Result<(), MembershipError> {
        if self.houses.iter().any(|h| h.name == *name && !h.revoked) {
            return Err(MembershipError::Member(name.clone()));
        }
        self.invites.retain(|i| i.expires_at > now && i.name != *name);
        let secret_hash = to_hex(&secret_hash(secret));
        self.invites.push(PendingInvite { name: name.clone(), secret_hash, expires_at });
        Ok(())
    }

    /// Spends the invite `request` names and admits its house; its certificate signed by `hub`.
    pub fn enrol(
        &mut self,
        request: &EnrolRequest,
        hub: &NodeIdentity,
        now: u64,
    ) -> Result<&House, MembershipError> {
        let (node, secret) = request.check()?;
        let hash = to_hex(&secret_hash(&secret));
        let at =
            self.invites.iter().position(|i| i.secret_hash == hash).ok_or(MembershipError::UnknownInvite)?;
        if self.invites[at].expires_at <= now {
            self.invites.remove(at);
            return Err(MembershipError::Expired);
        }
        let name = self.invites.remove(at).name;
        if self.houses.iter().any(|h| h.name == name && !h.revoked) {
            return Err(MembershipError::Member(name));
        }
        self.houses.retain(|h| h.name != name);
        self.houses.push(House {
            user: format!("house-{name}"),
            nodes: vec![HouseCert::issue(hub, &name, &node, now)],
            name,
            password: request.password.clone(),
            capacity: request.capacity,
            owner: request.owner.clone(),
            joined_at: now,
            last_seen: 0,
            revoked: false,
        });
        Ok(self.houses.last().expect("just pushed"))
    }

    /// Cuts `name` off: its credentials leave the hub's config.
    pub fn revoke(&mut self, name: &HouseName) -> Result<(), MembershipError> {
        let house = self
            .houses
            .iter_mut()
            .find(|h| h.name == *name && !h.revoked)
            .ok_or_else(|| MembershipError::NoSuchHouse(name.clone()))?;
        house.revoked = true;
        Ok(())
    }

    /// Houses whose credentials the hub accepts.
    pub fn active(&self) -> impl Iterator<Item = &House> {
        self.houses.iter().filter(|h| !h.revoked)
    }
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
