//! Chunk bodies at rest: sealing under the node's per-addr body key, the MAC audits check, and
//! writing with direct I/O (see `mod.rs` for the layout and crash safety).

use chacha20::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20poly1305::aead::{AeadInPlace, KeyInit};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use std::fs::{self, File};
use std::io::Write;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

pub(super) const NONCE_LEN: usize = 24;
pub(super) const TAG_LEN: usize = 16;

/// How a body is sealed at rest under the node's per-addr body key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Format {
    /// nonce ‖ XChaCha20-Poly1305(ciphertext), AAD = addr.
    Aead,
    /// nonce ‖ XChaCha20(ciphertext), the same keystream as `Aead` without its tag; integrity
    /// comes from the record's keyed-BLAKE3 MAC of addr ‖ body (encrypt-then-MAC) and, on reads,
    /// from the decrypted ciphertext hashing to its addr.
    Mac,
}

impl Format {
    /// Length of the sealed body of a `len`-byte ciphertext.
    pub(super) fn sealed_len(self, len: u32) -> usize {
        NONCE_LEN + len as usize + if self == Format::Aead { TAG_LEN } else { 0 }
    }
}

/// Direct I/O writes whole blocks from block-aligned memory.
pub(super) const BLOCK: usize = 4096;

/// What a body of `sealed` bytes counts against the capacity: whole blocks, as the disk
/// allocates them either way.
pub(super) fn charge(sealed: usize) -> u64 {
    sealed.next_multiple_of(BLOCK) as u64
}

/// Whether a body file of `file_len` bytes holds a sealed body of `sealed` bytes: exactly, or
/// padded to whole blocks.
pub(super) fn fits(file_len: usize, sealed: usize) -> bool {
    file_len == sealed || file_len == sealed.next_multiple_of(BLOCK)
}

/// The stream cipher of a body: XChaCha20 with the payload from block 1 on, as in
/// XChaCha20-Poly1305, so both formats share one keystream layout.
fn keystream(key: &[u8; 32], nonce: &[u8], offset: usize) -> chacha20::XChaCha20 {
    let mut cipher = chacha20::XChaCha20::new(key.into(), nonce.into());
    cipher.seek(64 + offset as u64);
    cipher
}

/// Seals `ciphertext` (addr `addr`) in `format` under `key` into `buf`, reused across calls, and
/// calls `f` with the block-aligned, zero-padded file image and the sealed body's length.
pub(super) fn with_sealed<R>(
    buf: &mut Vec<u8>,
    format: Format,
    key: &[u8; 32],
    addr: &[u8; 32],
    ciphertext: &[u8],
    f: impl FnOnce(&[u8], usize) -> R,
) -> R {
    let sealed = format.sealed_len(ciphertext.len() as u32);
    let padded = sealed.next_multiple_of(BLOCK);
    if buf.len() < padded + BLOCK {
        buf.resize(padded + BLOCK, 0);
    }
    let start = buf.as_ptr().align_offset(BLOCK);
    let image = &mut buf[start..start + padded];
    let (nonce, rest) = image.split_at_mut(NONCE_LEN);
    crate::domain::random_bytes(nonce);
    let (body, rest) = rest.split_at_mut(ciphertext.len());
    let padding = match format {
        Format::Mac => {
            // Encrypted on the way from the received bytes into the image: one pass, no copy.
            keystream(key, nonce, 0)
                .apply_keystream_b2b(ciphertext, body)
                .unwrap_or_else(|_| unreachable!("input and output have one length"));
            rest
        }
        Format::Aead => {
            body.copy_from_slice(ciphertext);
            let tag = XChaCha20Poly1305::new(key.into())
                .encrypt_in_place_detached(XNonce::from_slice(nonce), addr, body)
                .unwrap_or_else(|_| unreachable!("XChaCha20 input limit exceeded"));
            let (tag_out, padding) = rest.split_at_mut(TAG_LEN);
            tag_out.copy_from_slice(&tag);
            padding
        }
    };
    padding.fill(0);
    f(image, sealed)
}

/// The MAC a record keeps of a sealed body (`Aead` records of older versions: of the body
/// alone; `Mac`: of addr ‖ body).
pub(super) fn mac(format: Format, key: &[u8; 32], addr: &[u8; 32], sealed: &[u8]) -> [u8; 32] {
    let mut h = blake3::Hasher::new_keyed(key);
    if format == Format::Mac {
        h.update(addr);
    }
    *h.update(sealed).finalize().as_bytes()
}

/// The ciphertext inside the sealed body at `at` in `buf`. `Aead`: `None` unless its tag
/// verifies. `Mac`: decrypted only; the caller checks it against its addr.
pub(super) fn open(
    format: Format,
    key: &[u8; 32],
    addr: &[u8; 32],
    mut sealed: Vec<u8>,
    at: Range<usize>,
) -> Option<Vec<u8>> {
    if at.len() < format.sealed_len(0) || at.end > sealed.len() {
        return None;
    }
    let nonce: [u8; NONCE_LEN] = sealed[at.start..at.start + NONCE_LEN].try_into().ok()?;
    sealed.truncate(at.end);
    sealed.drain(..at.start + NONCE_LEN);
    match format {
        Format::Mac => keystream(key, &nonce, 0).apply_keystream(&mut sealed),
        Format::Aead => {
            let tag_at = sealed.len() - TAG_LEN;
            let tag = sealed.split_off(tag_at);
            XChaCha20Poly1305::new(key.into())
                .decrypt_in_place_detached(
                    XNonce::from_slice(&nonce),
                    addr,
                    &mut sealed,
                    tag.as_slice().into(),
                )
                .ok()?;
        }
    }
    Some(sealed)
}

/// Decrypts `ct[start..start + len]` of a body's encrypted ciphertext, `nonce` its nonce.
pub(super) fn decrypt_range(
    key: &[u8; 32],
    nonce: &[u8],
    ct: &[u8],
    start: usize,
    len: usize,
) -> Option<Vec<u8>> {
    let mut out = ct.get(start..start + len)?.to_vec();
    keystream(key, nonce, start).apply_keystream(&mut out);
    Some(out)
}

/// Writes `image` (block-aligned, padded) with direct I/O, or its first `sealed` bytes through
/// the page cache once the filesystem has refused direct I/O (`direct` then turns false); then
/// fsyncs the file.
pub(super) fn write_file(
    direct: &AtomicBool,
    path: &Path,
    image: &[u8],
    sealed: usize,
) -> std::io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    if direct.load(Ordering::Relaxed) {
        let opened = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .custom_flags(libc::O_DIRECT)
            .open(path);
        match opened.and_then(|mut f| f.write_all(image).and_then(|()| f.sync_all())) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                direct.store(false, Ordering::Relaxed);
                let dir = path.parent().and_then(Path::parent).unwrap_or(path);
                tracing::info!(dir = %dir.display(), "the filesystem refuses direct I/O; writing chunk bodies through the page cache");
            }
            other => return other,
        }
    }
    let mut f = File::create(path)?;
    f.write_all(&image[..sealed])?;
    f.sync_all()
}

/// Reads the body file at `path`, which holds a sealed body of `sealed` bytes (exactly, or
/// padded to whole blocks): with direct I/O into a block-aligned part of a fresh buffer, or
/// through the page cache once the filesystem has refused direct I/O (`direct` then turns
/// false). Returns the buffer and where the body starts in it; `None` when the file is not of a
/// length that holds such a body.
pub(super) fn read_file(
    direct: &AtomicBool,
    path: &Path,
    sealed: usize,
) -> std::io::Result<Option<(Vec<u8>, usize)>> {
    use std::os::unix::fs::OpenOptionsExt;
    if direct.load(Ordering::Relaxed) {
        let opened = fs::OpenOptions::new().read(true).custom_flags(libc::O_DIRECT).open(path);
        match opened.and_then(|f| read_direct(&f, sealed)) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => {
                direct.store(false, Ordering::Relaxed);
                let dir = path.parent().and_then(Path::parent).unwrap_or(path);
                tracing::info!(dir = %dir.display(), "the filesystem refuses direct I/O; reading chunk bodies through the page cache");
            }
            other => return other,
        }
    }
    let body = fs::read(path)?;
    Ok(fits(body.len(), sealed).then_some((body, 0)))
}

fn read_direct(file: &File, sealed: usize) -> std::io::Result<Option<(Vec<u8>, usize)>> {
    let Ok(len) = usize::try_from(file.metadata()?.len()) else { return Ok(None) };
    if !fits(len, sealed) {
        return Ok(None);
    }
    let padded = len.next_multiple_of(BLOCK);
    let mut buf = vec![0u8; padded + BLOCK];
    let start = buf.as_ptr().align_offset(BLOCK);
    let area = &mut buf[start..start + padded];
    let mut done = 0;
    while done < len {
        match file.read_at(&mut area[done..], done as u64)? {
            0 => return Ok(None),
            n => done += n,
        }
    }
    Ok(Some((buf, start)))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Both formats encrypt with one keystream layout: a `Mac` body is the `Aead` body of the
    /// same nonce without its tag, and each opens to the ciphertext; a flipped `Aead` byte fails.
    #[test]
    fn both_formats_seal_and_open_and_share_the_keystream() {
        let (key, addr) = ([4u8; 32], [5u8; 32]);
        let ct: Vec<u8> = (0..50_000u32).map(|i| (i * 7) as u8).collect();
        let mut buf = Vec::new();
        let aead = with_sealed(&mut buf, Format::Aead, &key, &addr, &ct, |img, n| img[..n].to_vec());
        let mac_body = with_sealed(&mut buf, Format::Mac, &key, &addr, &ct, |img, n| {
            assert_eq!(img.len() % BLOCK, 0);
            assert!(img[n..].iter().all(|&b| b == 0), "padding is zero");
            img[..n].to_vec()
        });
        assert_eq!(aead.len(), mac_body.len() + TAG_LEN);
        let nonce = &aead[..NONCE_LEN];
        let whole = |b: &Vec<u8>| 0..b.len();
        let re = open(Format::Aead, &key, &addr, aead.clone(), whole(&aead)).unwrap();
        assert_eq!(re, ct);
        // Re-encrypt under the Aead body's nonce: the bytes equal the Aead body without its tag.
        let mut enc = ct.clone();
        keystream(&key, nonce, 0).apply_keystream(&mut enc);
        assert_eq!(enc, aead[NONCE_LEN..aead.len() - TAG_LEN]);
        // A body inside a larger buffer (as a direct read leaves it) opens the same.
        let mut framed = vec![7u8; 5];
        framed.extend_from_slice(&mac_body);
        framed.extend_from_slice(&[9u8; 3]);
        let at = 5..5 + mac_body.len();
        assert_eq!(open(Format::Mac, &key, &addr, framed, at).unwrap(), ct);
        assert_eq!(open(Format::Mac, &key, &addr, mac_body.clone(), whole(&mac_body)).unwrap(), ct);
        assert_eq!(decrypt_range(&key, nonce, &enc, 1000, 300).unwrap(), ct[1000..1300]);
        let mut bad = aead;
        bad[NONCE_LEN + 10] ^= 1;
        assert_eq!(open(Format::Aead, &key, &addr, bad.clone(), whole(&bad)), None);
        assert_eq!(
            open(Format::Mac, &key, &addr, mac_body.clone(), 0..mac_body.len() + 1),
            None,
            "past the end"
        );
        assert_eq!(open(Format::Mac, &key, &addr, vec![0; NONCE_LEN - 1], 0..NONCE_LEN - 1), None);
    }
}
