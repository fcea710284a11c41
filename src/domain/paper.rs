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
    /// No `QK1-…` key anywhere in the text.
    #[error(
        "no paper key found: the text should hold the QK1-… line that `quloud key show --reveal` prints"
    )]
    Missing,
    /// Two different keys in one text.
    #[error("the text holds more than one paper key; keep only the one of this vault")]
    Several,
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

/// Finds and parses the paper key in what a person saved: the bare key, or the whole block
/// `quloud key show --reveal` prints (headings, blank lines, the QR code). A key copied over
/// several lines is joined while the lines after its `QK1` hold only key characters.
pub fn from_printout(text: &str) -> Result<MasterKey, PaperKeyError> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found: Option<MasterKey> = None;
    let mut first_error = None;
    for (i, line) in lines.iter().enumerate() {
        let Some(at) = key_start(line) else { continue };
        match decode(&gather(&lines[i..], at)) {
            Ok(k) if found.as_ref().is_some_and(|f| *f != k) => return Err(PaperKeyError::Several),
            Ok(k) => found = Some(k),
            Err(e) => {
                first_error.get_or_insert(e);
            }
        }
    }
    found.ok_or(first_error.unwrap_or(PaperKeyError::Missing))
}

/// Where a key starts in `line`: a `QK1` (any case) not inside a longer word.
fn key_start(line: &str) -> Option<usize> {
    let upper = line.to_ascii_uppercase();
    upper
        .match_indices(PREFIX)
        .map(|(at, _)| at)
        .find(|&at| !upper[..at].chars().next_back().is_some_and(|c| c.is_ascii_alphanumeric()))
}

/// The key text from `at` in the first line, continued over the following lines that hold
/// only key characters until 56 characters are gathered.
fn gather(lines: &[&str], at: usize) -> String {
    let key_chars = |s: &str| s.chars().filter(|c| !c.is_whitespace() && *c != '-').count();
    let mut text = lines[0][at..].to_string();
    for next in &lines[1..] {
        let only_key = next.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c.is_whitespace());
        if key_chars(&text) >= PREFIX.len() + CHARS || next.trim().is_empty() || !only_key {
            break;
        }
        text.push_str(next);
    }
    text
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

    /// What `quloud key show --reveal --qr` prints, as a user saves it into paper.txt.
    fn printout(key: &str) -> String {
        format!(
            "Your paper key (write it down, keep it safe; anyone holding it can read your vault):\n\n    \
             {key}\n\n \u{2588}\u{2580}\u{2580}\u{2584} \u{2588}\n \u{2584}\u{2584}\u{2580}\u{2588}\n\n\
             With this key and the fabric you can restore everything on a new machine.\n"
        )
    }

    #[test]
    fn the_printed_block_and_the_bare_key_are_accepted() {
        let k = MasterKey::generate();
        let key = encode(&k);
        assert_eq!(from_printout(&printout(&key)).unwrap(), k);
        assert_eq!(from_printout(&format!("{key}\n")).unwrap(), k);
        assert_eq!(from_printout(&format!("  {}  ", key.to_lowercase())).unwrap(), k);
        // Copied by hand over two lines, with the heading above it.
        let (a, b) = key.split_at(40);
        assert_eq!(from_printout(&format!("my vault key:\n{a}\n{b}\n\nstored in the safe")).unwrap(), k);
    }

    #[test]
    fn a_mistyped_or_missing_key_in_a_printout_is_a_clear_error() {
        let key = encode(&MasterKey::from_bytes([7; 32]));
        let pos = key.len() - 6;
        let swap = if &key[pos..pos + 1] == "7" { "8" } else { "7" };
        let typo = format!("{}{swap}{}", &key[..pos], &key[pos + 1..]);
        assert_eq!(from_printout(&printout(&typo)), Err(PaperKeyError::Checksum));
        assert_eq!(from_printout(&printout(&key[..30])), Err(PaperKeyError::Length(21)));
        assert_eq!(from_printout("Your paper key:\n\n(lost)\n"), Err(PaperKeyError::Missing));
        let other = encode(&MasterKey::from_bytes([8; 32]));
        assert_eq!(from_printout(&format!("{key}\n{other}\n")), Err(PaperKeyError::Several));
        assert!(PaperKeyError::Missing.to_string().contains("key show --reveal"));
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
