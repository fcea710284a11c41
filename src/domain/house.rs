//! Houses: a house's name, the one-line invite a hub hands out (`QI1-…`), and the certificate
//! by which the hub binds a node to exactly one house (DESIGN.md §10).
//!
//! An invite carries the hub's addresses, the hub's TLS CA, the hub's membership key and a
//! one-time enrolment secret with its expiry; a checksum catches typing and scanning errors.
//! Nothing in it lets the holder act as the hub: the CA's private key and the membership key's
//! secret never leave the hub.

use crate::domain::identity::{verify_signature, NodeIdentity, SIGNATURE_LEN};
use crate::domain::ids::{AckToken, NodeId};
use crate::domain::paper::{from_base32, to_base32};
use serde::{Deserialize, Serialize};
use std::fmt;

const PREFIX: &str = "QI1-";
const VERSION: u8 = 1;
const CHECK_LEN: usize = 4;
/// Longest invite payload accepted (a P-256 CA certificate is ~450 bytes).
const MAX_PAYLOAD: usize = 4096;
/// Length of an enrolment secret.
pub const SECRET_LEN: usize = 32;

/// Errors of the house formats.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HouseError {
    /// Not a house name.
    #[error("bad house name {0:?}: use 1 to 32 lower-case letters, digits and dashes")]
    Name(String),
    /// Not of the `QI1-…` form, or damaged.
    #[error("not a Quloud invite: {0}")]
    Invite(&'static str),
    /// The checksum does not match: a typo or a truncated copy.
    #[error("the invite is mistyped or truncated (its checksum does not match): copy it again")]
    Checksum,
}

/// A house's name, chosen by the hub's operator at `quloud invite NAME`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct HouseName(String);

impl HouseName {
    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for HouseName {
    type Error = HouseError;
    fn try_from(s: String) -> Result<Self, HouseError> {
        let valid = (1..=32).contains(&s.len())
            && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            && !s.starts_with('-');
        if valid {
            Ok(HouseName(s))
        } else {
            Err(HouseError::Name(s))
        }
    }
}

impl std::str::FromStr for HouseName {
    type Err = HouseError;
    fn from_str(s: &str) -> Result<Self, HouseError> {
        HouseName::try_from(s.to_string())
    }
}

impl From<HouseName> for String {
    fn from(n: HouseName) -> String {
        n.0
    }
}

impl fmt::Display for HouseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for HouseName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "HouseName({})", self.0)
    }
}

/// Everything a new house needs to enrol with the hub once.
#[derive(Clone, PartialEq, Eq)]
pub struct Invite {
    /// The house this invite is for.
    pub name: HouseName,
    /// `HOST:PORT` of the hub's client port (TLS): enrolment goes there.
    pub hub: String,
    /// `HOST:PORT` of the hub's leaf-node port (TLS).
    pub leaf: String,
    /// The hub's TLS CA certificate (DER): the house trusts this CA only.
    pub ca_der: Vec<u8>,
    /// The hub's membership key, which signs house certificates.
    pub hub_key: NodeId,
    /// The one-time enrolment secret.
    pub secret: [u8; SECRET_LEN],
    /// When the secret stops being accepted (Unix seconds).
    pub expires_at: u64,
}

impl fmt::Debug for Invite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Invite")
            .field("name", &self.name)
            .field("hub", &self.hub)
            .field("leaf", &self.leaf)
            .field("expires_at", &self.expires_at)
            .finish_non_exhaustive()
    }
}

/// What the hub keeps of an invite: the secret's hash, never the secret.
pub fn secret_hash(secret: &[u8; SECRET_LEN]) -> [u8; 32] {
    *blake3::keyed_hash(&[0x51; 32], secret).as_bytes()
}

fn put(out: &mut Vec<u8>, field: &[u8]) {
    out.extend_from_slice(&(field.len() as u16).to_be_bytes());
    out.extend_from_slice(field);
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], HouseError> {
        if self.0.len() < n {
            return Err(HouseError::Invite("it is cut short"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn field(&mut self) -> Result<&'a [u8], HouseError> {
        let len = self.take(2)?;
        self.take(u16::from_be_bytes([len[0], len[1]]) as usize)
    }
    fn text(&mut self) -> Result<String, HouseError> {
        String::from_utf8(self.field()?.to_vec()).map_err(|_| HouseError::Invite("a field is not text"))
    }
}

fn checksum(payload: &[u8]) -> [u8; CHECK_LEN] {
    let h = blake3::hash(payload);
    let mut c = [0u8; CHECK_LEN];
    c.copy_from_slice(&h.as_bytes()[..CHECK_LEN]);
    c
}

impl Invite {
    /// The one-line form: `QI1-` and Crockford base32 (QR alphanumeric mode packs it well).
    pub fn encode(&self) -> String {
        let mut out = vec![VERSION];
        out.extend_from_slice(&self.expires_at.to_be_bytes());
        out.extend_from_slice(&self.secret);
        out.extend_from_slice(self.hub_key.as_bytes());
        put(&mut out, self.name.as_str().as_bytes());
        put(&mut out, self.hub.as_bytes());
        put(&mut out, self.leaf.as_bytes());
        put(&mut out, &self.ca_der);
        let check = checksum(&out);
        out.extend_from_slice(&check);
        format!("{PREFIX}{}", to_base32(&out))
    }

    /// Parses an invite as pasted or scanned (whitespace ignored, either case).
    pub fn decode(text: &str) -> Result<Invite, HouseError> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace()).collect();
        let upper = compact.to_ascii_uppercase();
        let body = upper.strip_prefix(PREFIX).ok_or(HouseError::Invite("it should start with QI1-"))?;
        if body.len() > MAX_PAYLOAD * 8 / 5 + 1 {
            return Err(HouseError::Invite("it is too long"));
        }
        let bytes =
            from_base32(body).map_err(|_| HouseError::Invite("it has a character outside 0-9 A-Z"))?;
        if bytes.len() < 1 + CHECK_LEN {
            return Err(HouseError::Invite("it is cut short"));
        }
        let (payload, check) = bytes.split_at(bytes.len() - CHECK_LEN);
        if check != checksum(payload) {
            return Err(HouseError::Checksum);
        }
        Self::parse(payload)
    }

    fn parse(payload: &[u8]) -> Result<Invite, HouseError> {
        let mut r = Reader(payload);
        if r.take(1)? != [VERSION] {
            return Err(HouseError::Invite("it is of a newer version: update quloud"));
        }
        let expires_at =
            u64::from_be_bytes(r.take(8)?.try_into().map_err(|_| HouseError::Invite("bad expiry"))?);
        let mut secret = [0u8; SECRET_LEN];
        secret.copy_from_slice(r.take(SECRET_LEN)?);
        let mut key = [0u8; 32];
        key.copy_from_slice(r.take(32)?);
        let name = HouseName::try_from(r.text()?)?;
        let (hub, leaf) = (r.text()?, r.text()?);
        let ca_der = r.field()?.to_vec();
        if !r.0.is_empty() {
            return Err(HouseError::Invite("it has trailing bytes"));
        }
        Ok(Invite { name, hub, leaf, ca_der, hub_key: NodeId(key), secret, expires_at })
    }
}

/// The hub's statement "node N belongs to house H", signed with the hub's membership key. An
/// owner that trusts the hub's key can count houses from these, never from a node's own claim.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct HouseCert {
    /// The house.
    pub house: HouseName,
    /// The node (its public key), bound to `house` and no other.
    pub node: String,
    /// When the hub issued it (Unix seconds).
    pub issued_at: u64,
    /// The hub's ed25519 signature over the three fields above (hex).
    pub signature: String,
}

/// The ack token `quloud check` uses in the house of `node`: it follows from the node's public
/// id, so the hub names it in the house's NATS permissions without any secret of the house's.
/// (A check proves nothing it stores to anyone else: its chunks are throwaway.)
pub fn check_token(node: &NodeId) -> AckToken {
    let key = blake3::derive_key("quloud v1 house check token", node.as_bytes());
    let mut token = [0u8; 16];
    token.copy_from_slice(&key[..16]);
    AckToken(token)
}

fn cert_message(house: &HouseName, node: &NodeId, issued_at: u64) -> Vec<u8> {
    let mut m = b"quloud v1 house cert\0".to_vec();
    m.extend_from_slice(node.as_bytes());
    m.extend_from_slice(&issued_at.to_be_bytes());
    m.extend_from_slice(house.as_str().as_bytes());
    m
}

impl HouseCert {
    /// Signs "`node` belongs to `house`" with the hub's key.
    pub fn issue(hub: &NodeIdentity, house: &HouseName, node: &NodeId, issued_at: u64) -> HouseCert {
        let sig = hub.sign(&cert_message(house, node, issued_at));
        HouseCert {
            house: house.clone(),
            node: node.to_hex(),
            issued_at,
            signature: crate::domain::ids::to_hex(&sig),
        }
    }

    /// The node this certifies, when the certificate is signed by `hub_key`; else `None`.
    pub fn verify(&self, hub_key: &NodeId) -> Option<NodeId> {
        let node = NodeId::from_hex(&self.node)?;
        let sig = crate::domain::ids::from_hex::<SIGNATURE_LEN>(&self.signature)?;
        verify_signature(hub_key, &cert_message(&self.house, &node, self.issued_at), &sig).then_some(node)
    }
}

#[cfg(test)]
#[path = "house_tests.rs"]
mod tests;
