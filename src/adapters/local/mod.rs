//! The vault's local disk (`ports::local_disk`) on the local filesystem: the outbox, the disk
//! cache and the staging area, with direct I/O for chunk files where the filesystem allows it.

mod direct_io;
mod disk_cache;
mod outbox;
mod space;
mod spares;
mod staging;

pub use disk_cache::FileDiskCache;
pub use outbox::FileOutbox;
pub use space::{free_space, reserve_bytes, FreeSpace, SpaceGauge};
pub use spares::Spares;
pub use staging::FileStaging;

use crate::ports::local_disk::{DiskCacheUsage, LocalDisk, LocalStores};
use std::path::Path;
use std::sync::Arc;

/// Opens a vault's local stores as files and directories.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalFiles;

impl LocalDisk for LocalFiles {
    fn open(
        &self,
        staging: &Path,
        outbox: &Path,
        cache: &Path,
        cache_bytes: u64,
    ) -> std::io::Result<LocalStores> {
        std::fs::create_dir_all(staging)?;
        std::fs::create_dir_all(outbox)?;
        let space = Arc::new(SpaceGauge::new(staging));
        Ok(LocalStores {
            outbox: Arc::new(FileOutbox::new(outbox, space.clone())),
            disk_cache: Some(Arc::new(FileDiskCache::open(cache, cache_bytes)?.with_space(space.clone()))),
            staging: Arc::new(FileStaging::new(staging, space.clone())),
            space,
        })
    }

    fn absent(&self, dir: &Path) -> LocalStores {
        let space = Arc::new(SpaceGauge::new(dir));
        LocalStores {
            outbox: Arc::new(FileOutbox::new(dir, space.clone())),
            disk_cache: None,
            staging: Arc::new(FileStaging::new(dir, space.clone())),
            space,
        }
    }

    fn home_full(&self, home: &Path) -> bool {
        space::below_floor(home)
    }

    fn measure_cache(&self, cache: &Path, capacity: u64) -> DiskCacheUsage {
        FileDiskCache::measure(cache, capacity)
    }
}
