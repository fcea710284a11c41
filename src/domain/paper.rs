//! The paper key: the master secret as text a person can copy by hand, with a checksum.
//!
//! Format: `QK1-` followed by 14 groups of 4 Crockford base32 characters, encoding the 32-byte
//! secret and a 3-byte BLAKE3 checksum (56 characters, 280 bits). Decoding ignores case, spaces
//! and dashes and reads the look-alikes `O`→`0`, `I`/`L`→`1`, so transcription slips that are
//! harmless stay harmless; any other typo fails the checksum instead of yielding a wrong key.

use crate::domain::keys::{MasterKey, MASTER_KEY_LEN};

const PREFIX: &str = "QK1";
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
const CHECK_LEN: usize = 3;
const PAYLOAD_LEN: usize = MASTER_KEY_LEN + CHECK_LEN;
const CHARS: usize = PAYLOAD_LEN * 8 / 5;

/// Why a paper key was not accepted.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PaperKeyError {
    /// Not of the `QK1-…` form.
    #[error("not a Quloud paper key: it should start with QK1- followed by 14 groups of 4 characters")]
    Format,
    /// A character outside the alphabet.
    #[error("paper key contains {0:?}, which is not a valid character (0-9 and letters except U)")]
    BadChar(char),
    /// Wrong number of characters.
    #[error("paper key has {0} characters after QK1-, expected 56: a group is missing or doubled")]
    Length(usize),
    /// The checksum does not match: a typo.
    #[error("paper key checksum does not match: a character was mistyped; check each group again")]
    Checksum,
}

fn checksum(key: &[u8]) -> [u8; CHECK_LEN] {
    let h = blake3::derive_key("quloud v1 paper key checksum", key);
    [h[0], h[1], h[2]]
}

/// Renders the master key as a paper key.
pub fn encode(key: &MasterKey) -> String {
    let mut payload = key.as_bytes().to_vec();
    payload.extend_from_slice(&checksum(key.as_bytes()));
    let chars = to_base32(&payload);
    let groups: Vec<&str> = (0..CHARS / 4).map(|i| &chars[i * 4..i * 4 + 4]).collect();
    format!("{PREFIX}-{}", groups.join("-"))
}

/// Crockford base32 of `bytes` (the last character padded with zero bits).
pub(crate) fn to_base32(bytes: &[u8]) -> String {
    let mut chars = String::with_capacity(bytes.len() * 8 / 5 + 1);
    let (mut acc, mut bits) = (0u32, 0u32);
    for &b in bytes {
        acc = (acc << 8) | b as u32;
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            chars.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        chars.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
    chars
}

/// Bytes of Crockford base32 text (upper case, no separators), forgiving look-alikes.
pub(crate) fn from_base32(text: &str) -> Result<Vec<u8>, PaperKeyError> {
    let mut out = Vec::with_capacity(text.len() * 5 / 8);
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in text.chars() {
        acc = ((acc << 5) | value_of(c)?) & 0xffff;
        bits += 5;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Ok(out)
}

fn value_of(c: char) -> Result<u32, PaperKeyError> {
    let u = match c.to_ascii_uppercase() {
        'O' => '0',
        'I' | 'L' => '1',
        u => u,
    };
    ALPHABET.iter().position(|&a| a as char == u).map(|p| p as u32).ok_or(PaperKeyError::BadChar(c))
}

/// Parses a paper key typed or scanned by a person.
pub fn decode(text: &str) -> Result<MasterKey, PaperKeyError> {
    let compact: String = text.chars().filter(|c| !c.is_whitespace() && *c != '-').collect();
    let upper = compact.to_ascii_uppercase();
    let body = upper.strip_prefix(PREFIX).ok_or(PaperKeyError::Format)?;
    let n = body.chars().count();
    if n != CHARS {
        return Err(PaperKeyError::Length(n));
    }
    let out = from_base32(body)?;
    let (key, check) = out.split_at(MASTER_KEY_LEN);
    if check != checksum(key) {
        return Err(PaperKeyError::Checksum);
    }
    let mut k = [0u8; MASTER_KEY_LEN];
    k.copy_from_slice(key);
    Ok(MasterKey::from_bytes(k))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_forgiving_input() {
        let k = MasterKey::generate();
        let text = encode(&k);
        assert!(text.starts_with("QK1-"));
        assert_eq!(text.len(), 3 + 14 * 5);
        assert_eq!(decode(&text).unwrap(), k);
        let sloppy = text.to_lowercase().replace('-', " ").replace('0', "o");
        assert_eq!(decode(&sloppy).unwrap(), k);
    }

    #[test]
    fn every_single_typo_is_caught() {
        let k = MasterKey::from_bytes([0x42; 32]);
        let text = encode(&k);
        let alphabet: Vec<char> = ALPHABET.iter().map(|&b| b as char).collect();
        for (i, c) in text.char_indices().skip(4).filter(|(_, c)| *c != '-') {
            for &r in alphabet.iter().filter(|&&r| r != c) {
                let mut bad = text.clone();
                bad.replace_range(i..i + 1, &r.to_string());
                // Only the last character carries padding bits, which may be changed harmlessly.
                match decode(&bad) {
                    Err(_) => {}
                    Ok(got) => assert_eq!(got, k, "typo at {i} accepted as another key"),
                }
            }
        }
    }

    #[test]
    fn clear_errors() {
        assert_eq!(decode("hello"), Err(PaperKeyError::Format));
        assert_eq!(decode("QK1-ABCD"), Err(PaperKeyError::Length(4)));
        let text = encode(&MasterKey::from_bytes([1; 32])).replacen('A', "U", 1);
        if text.contains('U') {
            assert_eq!(decode(&text), Err(PaperKeyError::BadChar('U')));
        }
    }
}
