//! Identifier newtypes (`Addr`, `ChunkId`, `NodeId`, `RequestId`) and their hex forms.
//!
//! Every id is a fixed-size byte array. `Debug` prints a short hex prefix so logs stay readable;
//! `Display` prints the full lowercase hex used in subjects and on the command line.

use std::fmt;

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 0xf) as usize] as char);
    }
    out
}

/// Parses exactly `N` bytes of hex (either case); `None` on any other input.
pub fn from_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    let s = s.as_bytes();
    if s.len() != N * 2 {
        return None;
    }
    let nibble = |c: u8| -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            b'A'..=b'F' => Some(c - b'A' + 10),
            _ => None,
        }
    };
    let mut out = [0u8; N];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident, $len:expr) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub [u8; $len]);

        impl $name {
            /// Byte length of this id.
            pub const LEN: usize = $len;

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Full lowercase hex.
            pub fn to_hex(&self) -> String {
                to_hex(&self.0)
            }

            /// Parses full hex; `None` when malformed.
            pub fn from_hex(s: &str) -> Option<Self> {
                from_hex::<$len>(s).map(Self)
            }

            /// Parses full hex, saying what was wrong (a command-line value).
            pub fn parse_hex(s: &str) -> Result<Self, String> {
                Self::from_hex(s).ok_or_else(|| {
                    format!("`{s}` is not {} hex digits", 2 * $len)
                })
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}({}…)", stringify!($name), &to_hex(&self.0[..6]))
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&to_hex(&self.0))
            }
        }
    };
}

id_type!(
    /// Network address of a chunk: `blake3(ciphertext)`, the BLAKE3 Merkle root of the ciphertext.
    Addr,
    32
);
id_type!(
    /// Owner-private id of a chunk: `keyed_hash(chunk-id key, plaintext)`. Never leaves the owner.
    ChunkId,
    32
);
id_type!(
    /// A storage node's ed25519 public key.
    NodeId,
    32
);
id_type!(
    /// Random id of one request, for replay protection.
    RequestId,
    16
);
id_type!(
    /// Names the subject on which one vault's store acks arrive.
    AckToken,
    16
);

id_type!(
    /// A writing home of a vault: random, made once per home, named in the writer lease.
    WriterId,
    16
);

impl WriterId {
    /// A fresh random writer id.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        crate::domain::random_bytes(&mut b);
        WriterId(b)
    }
}

impl Addr {
    /// The address of `ciphertext`.
    pub fn of(ciphertext: &[u8]) -> Self {
        Addr(*blake3::hash(ciphertext).as_bytes())
    }
}

impl NodeId {
    /// The all-zero id, meaning "any node" in a proof's target field.
    pub const ANY: NodeId = NodeId([0u8; 32]);
}

impl RequestId {
    /// A fresh random request id.
    pub fn random() -> Self {
        let mut b = [0u8; 16];
        crate::domain::random_bytes(&mut b);
        RequestId(b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_rejects_garbage() {
        let a = Addr([0xab; 32]);
        assert_eq!(Addr::from_hex(&a.to_hex()), Some(a));
        assert_eq!(Addr::from_hex("zz"), None);
        assert_eq!(Addr::from_hex(&"g".repeat(64)), None);
        assert!(format!("{a:?}").len() < 30);
    }
}
