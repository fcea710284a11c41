//! Read capabilities (docs/DESIGN.md §4): what `quloud share` prints and `quloud mount --share` takes.
//!
//! A capability is a random share secret S and the head of a shared manifest stored in the
//! fabric like any data. The shared manifest (sealed with keys derived from S) lists the subtree's
//! files with, for each chunk, its content key `K_c` and the seed of its proof secret `x` —
//! nothing from which the master key or any other chunk's secret follows.
//!
//! Text form: `QS1-` then groups of 4 Crockford base32 characters encoding S, the head reference
//! and a 3-byte checksum, read as forgivingly as a paper key.

use crate::domain::keys::SHARE_SECRET_LEN;
use crate::domain::paper::{from_base32, to_base32, PaperKeyError};
use crate::domain::snapshot::{PieceRef, PIECE_REF_LEN};

const PREFIX: &str = "QS1";
const CHECK_LEN: usize = 3;
const PAYLOAD_LEN: usize = SHARE_SECRET_LEN + PIECE_REF_LEN + CHECK_LEN;
const CHARS: usize = (PAYLOAD_LEN * 8).div_ceil(5);

/// A read capability for one file or directory tree.
#[derive(Clone, PartialEq, Eq)]
pub struct Capability {
    /// The share secret: derives the keys of the shared manifest's pieces.
    pub secret: [u8; SHARE_SECRET_LEN],
    /// The shared manifest's head.
    pub head: PieceRef,
}

impl std::fmt::Debug for Capability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capability").field("head", &self.head.addr).finish_non_exhaustive()
    }
}

/// Why a capability was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CapabilityError {
    /// Not of the `QS1-…` form.
    #[error("not a Quloud share capability: it should start with QS1- (paste all of it, as printed by `quloud share`)")]
    Format,
    /// Wrong number of characters.
    #[error(
        "share capability has {0} characters after QS1-, expected {CHARS}: part of it is missing or doubled"
    )]
    Length(usize),
    /// A character outside the alphabet.
    #[error("share capability contains {0:?}, which is not a valid character")]
    BadChar(char),
    /// The checksum does not match.
    #[error("share capability checksum does not match: a character was mistyped")]
    Checksum,
}

fn checksum(b: &[u8]) -> [u8; CHECK_LEN] {
    let h = blake3::derive_key("quloud v1 share capability checksum", b);
    [h[0], h[1], h[2]]
}

impl Capability {
    /// The text form.
    pub fn encode(&self) -> String {
        let mut payload = self.secret.to_vec();
        self.head.encode_into(&mut payload);
        let check = checksum(&payload);
        payload.extend_from_slice(&check);
        let chars = to_base32(&payload);
        let groups: Vec<String> =
            chars.as_bytes().chunks(4).map(|g| String::from_utf8_lossy(g).into_owned()).collect();
        format!("{PREFIX}-{}", groups.join("-"))
    }

    /// Parses a capability as typed, pasted or scanned.
    pub fn decode(text: &str) -> Result<Capability, CapabilityError> {
        let compact: String = text.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
        let upper = compact.to_ascii_uppercase();
        let body = upper.strip_prefix(PREFIX).ok_or(CapabilityError::Format)?;
        let n = body.chars().count();
        if n != CHARS {
            return Err(CapabilityError::Length(n));
        }
        let bytes = from_base32(body).map_err(|e| match e {
            PaperKeyError::BadChar(c) => CapabilityError::BadChar(c),
            _ => CapabilityError::Format,
        })?;
        if bytes.len() < PAYLOAD_LEN {
            return Err(CapabilityError::Length(n));
        }
        let (payload, check) = bytes[..PAYLOAD_LEN].split_at(PAYLOAD_LEN - CHECK_LEN);
        if check != checksum(payload) {
            return Err(CapabilityError::Checksum);
        }
        let mut secret = [0u8; SHARE_SECRET_LEN];
        secret.copy_from_slice(&payload[..SHARE_SECRET_LEN]);
        let head = PieceRef::decode(&payload[SHARE_SECRET_LEN..]).ok_or(CapabilityError::Format)?;
        Ok(Capability { secret, head })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::ids::{Addr, ChunkId};

    fn cap() -> Capability {
        Capability {
            secret: [7; 32],
            head: PieceRef { id: ChunkId([1; 32]), addr: Addr([2; 32]), len: 4242, seed: [3; 32] },
        }
    }

    #[test]
    fn round_trip_and_forgiving_input() {
        let text = cap().encode();
        assert!(text.starts_with("QS1-"));
        assert_eq!(Capability::decode(&text).unwrap(), cap());
        let sloppy = text.to_lowercase().replace('-', " \n");
        assert_eq!(Capability::decode(&sloppy).unwrap(), cap());
    }

    #[test]
    fn malformed_capabilities_get_clear_errors() {
        let text = cap().encode();
        assert_eq!(Capability::decode("hello"), Err(CapabilityError::Format));
        assert_eq!(Capability::decode("QK1-ABCD"), Err(CapabilityError::Format));
        assert!(matches!(Capability::decode(&text[..text.len() - 5]), Err(CapabilityError::Length(_))));
        let typo = {
            let mut t = text.clone().into_bytes();
            let i = 10;
            t[i] = if t[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(t).unwrap()
        };
        assert_eq!(Capability::decode(&typo), Err(CapabilityError::Checksum));
        let bad_char = format!("{}U{}", &text[..10], &text[11..]);
        assert_eq!(Capability::decode(&bad_char), Err(CapabilityError::BadChar('U')));
    }

    #[test]
    fn debug_never_prints_the_secret() {
        assert!(!format!("{:?}", cap()).contains("7, 7"));
    }
}
