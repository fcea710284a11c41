//! Free space on the vault's home (docs/SEMANTICS.md, full disk): the floor below which new data
//! is refused with ENOSPC, so that the manifest's reserve stays for deletes and renames, and the
//! episode of a full home (logged once when it starts and once when space returns).

use crate::domain::fs::is_no_space;
use crate::ports::local_disk::HomeSpace;
use std::ffi::CString;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Most bytes kept free for the manifest: its reserve file, and the floor under new data.
const RESERVE_MAX: u64 = 8 << 20;
/// Fewest bytes kept free for the manifest.
const RESERVE_MIN: u64 = 256 << 10;
/// How long a measurement is reused while the home is far from full.
const FRESH: Duration = Duration::from_millis(100);
/// New data keeps this many reserves free: the manifest gives its reserve back only when the
/// disk fills past this floor (another program, or the manifest's own growth), and writers
/// stay refused after it did.
const DATA_FLOOR: u64 = 2;
/// The disk cache keeps this many reserves free: it never grows into space a person just freed.
const CACHE_FLOOR: u64 = 6;

/// Free and total bytes of a filesystem, as an unprivileged user sees them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FreeSpace {
    /// Bytes available to this user.
    pub avail: u64,
    /// Size of the filesystem.
    pub total: u64,
}

/// Measures the filesystem that holds `dir`.
pub fn free_space(dir: &Path) -> io::Result<FreeSpace> {
    let path = CString::new(dir.as_os_str().as_bytes()).map_err(|_| io::ErrorKind::InvalidInput)?;
    // SAFETY: an all-zero statvfs is a valid value for the call to fill in.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `st` a valid statvfs to write to.
    if unsafe { libc::statvfs(path.as_ptr(), &mut st) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let frsize = st.f_frsize as u64;
    Ok(FreeSpace { avail: st.f_bavail as u64 * frsize, total: st.f_blocks as u64 * frsize })
}

/// Bytes kept free on a filesystem of `total` bytes for the manifest: 1/32 of it, between
/// 256 KiB and 8 MiB, in whole 4 KiB blocks.
pub fn reserve_bytes(total: u64) -> u64 {
    (total / 32).clamp(RESERVE_MIN, RESERVE_MAX) & !4095
}

/// What may use the space: new file data (staging, outbox) down to the floor, or the disk cache,
/// which stops well above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Use {
    /// Data a writer is waiting for.
    Data,
    /// A copy kept for faster reads.
    Cache,
}

/// Watches the free space of one home, with a short-lived cached measurement.
#[derive(Debug)]
pub struct SpaceGauge {
    dir: PathBuf,
    last: Mutex<Option<(Instant, FreeSpace)>>,
    full: AtomicBool,
    /// Near the floor, writers of new data take turns (admission and write together).
    turn: Mutex<()>,
}

impl SpaceGauge {
    /// A gauge of the filesystem that holds `dir`.
    pub fn new(dir: &Path) -> Self {
        SpaceGauge {
            dir: dir.to_path_buf(),
            last: Mutex::new(None),
            full: AtomicBool::new(false),
            turn: Mutex::new(()),
        }
    }

    /// The free space now (measured again unless a recent figure leaves plenty of room).
    fn measure(&self, wanted: u64) -> Option<FreeSpace> {
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((at, s)) = last.as_mut() {
            let plenty = s.avail > (16 * reserve_bytes(s.total)).saturating_add(wanted.saturating_mul(16));
            if plenty && at.elapsed() < FRESH && !self.full.load(Ordering::Relaxed) {
                // What is admitted on a reused measurement counts against it, so that fast
                // writers cannot run past the floor between two measurements.
                let seen = *s;
                s.avail = s.avail.saturating_sub(wanted);
                return Some(seen);
            }
        }
        let s = free_space(&self.dir).ok()?;
        *last = Some((Instant::now(), s));
        Some(s)
    }

    /// Whether `bytes` more for `what` leave the floor free; a refusal of data starts a full
    /// episode, and a measurement with room again ends it.
    pub fn admits(&self, what: Use, bytes: u64) -> bool {
        let Some(s) = self.measure(bytes) else { return true };
        let reserve = reserve_bytes(s.total);
        let floor = DATA_FLOOR * reserve;
        if self.is_full() && s.avail >= (floor + reserve).saturating_add(bytes) {
            self.set_full(false);
        }
        match what {
            Use::Data if s.avail < floor.saturating_add(bytes) => {
                self.set_full(true);
                false
            }
            Use::Data => true,
            Use::Cache => !self.is_full() && s.avail >= (CACHE_FLOOR * reserve).saturating_add(bytes),
        }
    }

    /// Admits `bytes` of new data and runs `write`, noting a full disk. Near the floor the
    /// admission and the write happen in turns, so that concurrent writers cannot together
    /// run past the floor into the manifest's reserve.
    pub fn write_data<T>(&self, bytes: u64, write: impl FnOnce() -> io::Result<T>) -> io::Result<T> {
        let near = self.measure(0).is_none_or(|s| {
            s.avail <= (16 * reserve_bytes(s.total)).saturating_add(bytes.saturating_mul(16))
        });
        let _turn = near.then(|| self.turn.lock().unwrap_or_else(|p| p.into_inner()));
        self.admit_data(bytes)?;
        self.note(write())
    }

    /// Refuses `bytes` of new data with ENOSPC when they would leave less than the floor.
    pub fn admit_data(&self, bytes: u64) -> io::Result<()> {
        if self.admits(Use::Data, bytes) {
            return Ok(());
        }
        Err(io::Error::new(io::ErrorKind::StorageFull, "the vault's home is full"))
    }

    /// Notes an error of a write to the home: ENOSPC starts a full episode.
    pub fn note<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            if is_no_space(e) {
                self.set_full(true);
            }
        }
        r
    }

    fn set_full(&self, full: bool) {
        if self.full.swap(full, Ordering::AcqRel) == full {
            return;
        }
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = None;
        if full {
            tracing::warn!(home = %self.dir.display(), "the vault's disk is full: new data fails with ENOSPC and background work waits; reads, deletes and renames still work (free space on this disk to resume)");
        } else {
            tracing::info!(home = %self.dir.display(), "the vault's disk has room again; writes and background work resume");
        }
    }
}

impl HomeSpace for SpaceGauge {
    fn is_full(&self) -> bool {
        self.full.load(Ordering::Acquire)
    }

    fn recheck(&self) -> bool {
        self.admits(Use::Data, 0);
        self.is_full()
    }
}

/// Whether the filesystem of `dir` is below the floor now (for an unmounted vault's status).
pub fn below_floor(dir: &Path) -> bool {
    free_space(dir).is_ok_and(|s| s.avail < DATA_FLOOR * reserve_bytes(s.total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reserve_scales_with_the_disk_within_bounds() {
        assert_eq!(reserve_bytes(1 << 20), RESERVE_MIN);
        assert_eq!(reserve_bytes(64 << 20), 2 << 20);
        assert_eq!(reserve_bytes(1 << 40), RESERVE_MAX);
        assert_eq!(reserve_bytes(100_003) % 4096, 0);
    }

    #[test]
    fn measures_a_real_filesystem_and_notes_enospc_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = free_space(dir.path()).unwrap();
        assert!(s.total > 0 && s.avail <= s.total);
        let g = SpaceGauge::new(dir.path());
        assert!(!g.is_full());
        let enospc = io::Error::from_raw_os_error(libc::ENOSPC);
        assert!(g.note::<()>(Err(enospc)).is_err());
        assert!(g.is_full(), "ENOSPC starts an episode");
        if s.avail > CACHE_FLOOR * reserve_bytes(s.total) {
            assert!(g.admits(Use::Cache, 0), "a measurement with room ends the episode");
            assert!(!g.recheck(), "room on the disk ends the episode");
            assert!(g.admit_data(0).is_ok());
        }
        let err = g.admit_data(u64::MAX / 2).unwrap_err();
        assert!(is_no_space(&err), "refused data is ENOSPC: {err}");
        assert!(g.is_full());
    }
}
