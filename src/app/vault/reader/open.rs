//! Opening a ciphertext: checked against its address and decrypted with the vault's secrets
//! (the owner's keys, or a share's per-chunk secrets).

use crate::app::vault::{FsError, Secrets, Vault};
use crate::domain::fs::Extent;
use crate::domain::ids::Addr;
use crate::domain::proof::ProofSecret;
use crate::ports::fabric::ChunkFabric;

/// Whether a ciphertext was checked against its address before it reached the opener.
#[derive(Clone, Copy)]
pub(super) enum Checked {
    /// Not yet: a local copy (outbox, disk cache).
    No,
    /// By the fabric, which returns only ciphertexts it checked.
    Already,
}

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Verifies a ciphertext against its address and decrypts it with this vault's secrets.
    pub(super) fn open_chunk(&self, e: &Extent, mut ct: Vec<u8>) -> Result<Vec<u8>, FsError> {
        let len = self.open_in(e, &mut ct, Checked::No)?;
        ct.truncate(len);
        Ok(ct)
    }

    /// [`Vault::open_chunk`] in place; returns the plaintext's length. `checked`: whether the
    /// ciphertext was checked against its address already (by the fabric).
    pub(super) fn open_in(&self, e: &Extent, ct: &mut [u8], checked: Checked) -> Result<usize, FsError> {
        use crate::domain::seal::{decrypt_checked_in_place, decrypt_in_place};
        let opened = match (&self.secrets, checked) {
            (Secrets::Owner, Checked::No) => self.keys.data().open_in_place(&e.id, &e.addr, ct),
            (Secrets::Owner, Checked::Already) => self.keys.data().open_checked_in_place(&e.id, ct),
            (Secrets::Shared, checked) => {
                let secret = zeroize::Zeroizing::new(self.shared_secret(&e.addr)?);
                match checked {
                    Checked::No => decrypt_in_place(&secret.0, &e.addr, ct),
                    Checked::Already => decrypt_checked_in_place(&secret.0, ct),
                }
            }
        };
        opened.map_err(|err| FsError::Unavailable(err.to_string()))
    }

    /// A shared chunk's content key and proof-secret seed, from the share's manifest.
    fn shared_secret(&self, addr: &Addr) -> Result<([u8; 32], [u8; 32]), FsError> {
        self.m
            .read()?
            .share_secret(addr)?
            .ok_or_else(|| FsError::Unavailable(format!("chunk {addr:?} is not part of this share")))
    }

    /// The proof secret that lets this vault fetch `addr`.
    pub(in crate::app::vault) fn proof_secret(&self, addr: &Addr) -> Result<ProofSecret, FsError> {
        match self.secrets {
            Secrets::Owner => Ok(self.keys.proof_secret(addr)),
            Secrets::Shared => {
                Ok(ProofSecret::from_seed(&zeroize::Zeroizing::new(self.shared_secret(addr)?).1))
            }
        }
    }
}
