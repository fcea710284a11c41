//! The outbox: sealed chunks waiting for upload, one file per chunk named by its address,
//! written and read back with direct I/O.

use crate::app::vault::Vault;
use crate::domain::fs::FsError;
use crate::domain::ids::Addr;
use crate::ports::fabric::ChunkFabric;
use std::fs::File;

impl<F: ChunkFabric + 'static> Vault<F> {
    pub(in crate::app::vault) fn outbox_path(&self, addr: &Addr) -> std::path::PathBuf {
        self.pipeline.outbox.join(addr.to_hex())
    }

    /// Writes a sealed chunk's ciphertext into the outbox (not yet fsynced) unless it is there:
    /// through a temporary name, so a crash never leaves a torn file under the addr, and with
    /// direct I/O (the kernel's copy into the page cache was a third of the mount's CPU while it
    /// uploaded; the uploader reads each file back once, also with direct I/O).
    pub(in crate::app::vault) fn write_outbox(&self, addr: &Addr, ciphertext: &[u8]) -> std::io::Result<()> {
        let path = self.outbox_path(addr);
        // A power cut after the rename but before the data reached the disk can leave the name
        // with fewer bytes: such a file is written again.
        if std::fs::metadata(&path).map_or(true, |m| m.len() != ciphertext.len() as u64) {
            let tmp = path.with_extension("tmp");
            self.pipeline.outbox_io.write(&tmp, ciphertext)?;
            std::fs::rename(&tmp, &path)?;
        }
        Ok(())
    }

    /// Makes everything written into the outbox durable (one `syncfs` of its filesystem).
    pub(in crate::app::vault) fn sync_outbox(&self) -> Result<(), FsError> {
        let outbox = File::open(&self.pipeline.outbox)?;
        // SAFETY: syncfs on a valid open descriptor; no memory is passed.
        if unsafe { libc::syncfs(std::os::fd::AsRawFd::as_raw_fd(&outbox)) } != 0 {
            return Err(std::io::Error::last_os_error().into());
        }
        Ok(())
    }
}
