//! Prefetch of cold trees: when a directory is listed or its first file is read, the chunks of
//! its small files are fetched in batched get requests (up to [`MAX_ITEMS`] addrs each, grouped
//! by the replica asked first) into the memory cache, within a quarter of its budget, so reads of
//! the other files hit the cache instead of paying a round trip each.

use super::cache::Plain;
use super::open::Checked;
use crate::app::vault::{FsError, Vault};
use crate::domain::fs::{Extent, Ino, Kind};
use crate::domain::ids::{ChunkId, NodeId};
use crate::domain::wire::MAX_ITEMS;
use crate::ports::fabric::ChunkFabric;
use lru::LruCache;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::sync::oneshot;

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Files up to this size are prefetched (one chunk each: FastCDC cuts no chunk smaller).
pub const PREFETCH_FILE_MAX: u64 = crate::domain::chunker::MIN_CHUNK as u64;
/// Most plaintext bytes one directory's prefetch brings in (and at most a quarter of the cache).
const PREFETCH_BYTES_MAX: u64 = 64 << 20;
/// Directories (and looked-up files) remembered.
const REMEMBERED: usize = 4096;
/// A directory is prefetched again only after this long (its chunks may have left the cache).
const AGAIN_AFTER_MS: u64 = 60_000;
/// Most subdirectories a directory's prefetch looks into.
const SUBDIRS_MAX: usize = 256;

/// What the prefetcher remembers: directories prefetched lately (not prefetched again within
/// [`AGAIN_AFTER_MS`]) and the directory each file was last looked up in (its first read prefetches it).
pub(in crate::app::vault) struct Prefetch {
    done: Mutex<LruCache<Ino, u64>>,
    parents: Mutex<LruCache<Ino, Ino>>,
}

impl Default for Prefetch {
    fn default() -> Self {
        let n = NonZeroUsize::new(REMEMBERED).unwrap_or(NonZeroUsize::MIN);
        Prefetch { done: Mutex::new(LruCache::new(n)), parents: Mutex::new(LruCache::new(n)) }
    }
}

impl Prefetch {
    /// Remembers that file `child` was looked up in `dir`.
    pub(in crate::app::vault) fn looked_up(&self, dir: Ino, child: Ino) {
        lock(&self.parents).put(child, dir);
    }

    /// Claims `dir` for a prefetch at `now_ms`: false when it was prefetched lately.
    fn claim(&self, dir: Ino, now_ms: u64) -> bool {
        let mut done = lock(&self.done);
        if done.get(&dir).is_some_and(|at| now_ms.saturating_sub(*at) < AGAIN_AFTER_MS) {
            return false;
        }
        done.put(dir, now_ms);
        true
    }

    /// Forgets a claim whose prefetch did not fit the budget: listing `dir` prefetches it.
    fn unclaim(&self, dir: Ino) {
        lock(&self.done).pop(&dir);
    }
}

/// The chunks a prefetch has gathered so far, and their plaintext bytes.
#[derive(Default)]
struct Gathered {
    out: Vec<Wanted>,
    bytes: u64,
    seen: HashSet<ChunkId>,
}

/// A chunk to prefetch and the node asked first.
type Wanted = (Extent, Option<NodeId>);

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Prefetches the small files of the directory `ino` was looked up in, unless done lately.
    pub(super) fn prefetch_parent(self: &Arc<Self>, ino: Ino) {
        let dir = Self::lock(&self.reader.prefetch.parents).get(&ino).copied();
        if let Some(dir) = dir.filter(|d| self.reader.prefetch.claim(*d, self.clock.now_ms())) {
            let me = self.clone();
            tokio::spawn(async move { me.prefetch_claimed(dir).await });
        }
    }

    /// Fetches the chunks of `dir`'s small files into the memory cache in batched gets, unless
    /// `dir` was prefetched lately. Failures only mean later reads fetch on their own.
    pub async fn prefetch_dir(&self, dir: Ino) {
        if self.reader.prefetch.claim(dir, self.clock.now_ms()) {
            self.prefetch_claimed(dir).await;
        }
    }

    /// Prefetches `dir`, claimed already.
    async fn prefetch_claimed(&self, dir: Ino) {
        let Some(fabric) = self.fabric_within(std::time::Duration::ZERO).await else { return };
        let wanted = match self.prefetch_list(dir) {
            Ok(w) => w,
            Err(e) => return tracing::debug!(dir, error = %e, "no prefetch"),
        };
        let mut by_node: BTreeMap<Option<NodeId>, Vec<Extent>> = BTreeMap::new();
        for (e, node) in wanted {
            by_node.entry(node).or_default().push(e);
        }
        let batches = by_node.into_iter().flat_map(|(node, extents)| {
            extents.chunks(MAX_ITEMS).map(|b| (node, b.to_vec())).collect::<Vec<_>>()
        });
        futures::future::join_all(batches.map(|(node, b)| self.prefetch_batch(&*fabric, node, b))).await;
    }

    /// The chunks of `dir`'s small files that no cache holds, within the prefetch budget; then,
    /// while the budget lasts, those of each subdirectory whose small files all fit (and which
    /// was not prefetched lately), so a copy of a tree finds the next directory's files cached.
    fn prefetch_list(&self, dir: Ino) -> Result<Vec<Wanted>, FsError> {
        let budget = (self.opts.cache_bytes / 4).min(PREFETCH_BYTES_MAX);
        let rx = self.m.read()?;
        let mut got = Gathered::default();
        let Some(subdirs) = self.gather(&rx, dir, budget, &mut got)? else { return Ok(got.out) };
        let now = self.clock.now_ms();
        for sub in subdirs.into_iter().take(SUBDIRS_MAX) {
            if !self.reader.prefetch.claim(sub, now) {
                continue;
            }
            let (len, bytes) = (got.out.len(), got.bytes);
            if self.gather(&rx, sub, budget, &mut got)?.is_none() {
                got.out.truncate(len);
                got.bytes = bytes;
                self.reader.prefetch.unclaim(sub);
                break;
            }
        }
        Ok(got.out)
    }

    /// Adds the chunks of `dir`'s small files to `got` until `budget`; returns `dir`'s
    /// subdirectories, or `None` if the budget ran out first.
    fn gather(
        &self,
        rx: &crate::ports::manifest::Rx,
        dir: Ino,
        budget: u64,
        got: &mut Gathered,
    ) -> Result<Option<Vec<Ino>>, FsError> {
        let mut subdirs = Vec::new();
        for (_, child) in rx.children(dir)? {
            let a = rx.inode(child)?;
            if a.kind == Kind::Dir {
                subdirs.push(child);
            }
            if a.kind != Kind::File || a.size == 0 || a.size > PREFETCH_FILE_MAX || rx.is_staged(child)? {
                continue;
            }
            for e in rx.extents(child, 0, u64::MAX)? {
                if got.bytes + u64::from(e.len) > budget {
                    return Ok(None);
                }
                let cached = Self::lock(&self.reader.cache).get(&e.id).is_some();
                if cached || !got.seen.insert(e.id) || rx.upload_queued(&e.addr)? {
                    continue;
                }
                let replicas = rx.chunk(&e.addr)?.map(|c| c.replicas).unwrap_or_default();
                // The replica a single read would ask first (see `FabricFetch`).
                let first =
                    (!replicas.is_empty()).then(|| replicas[e.addr.0[0] as usize % replicas.len()].node);
                got.bytes += u64::from(e.len);
                got.out.push((e, first));
            }
        }
        Ok(Some(subdirs))
    }

    /// One batched get for `batch`: each chunk's load is claimed first, so a reader that wants
    /// one meanwhile waits for this get instead of fetching it again.
    async fn prefetch_batch(&self, fabric: &F, node: Option<NodeId>, batch: Vec<Extent>) {
        let memory = &self.reader.chunks;
        let cells: Vec<_> = batch.iter().map(|e| memory.claim(e.id)).collect();
        let mut senders: HashMap<ChunkId, oneshot::Sender<Arc<Plain>>> = HashMap::new();
        let waits = batch.iter().zip(&cells).map(|(e, cell)| {
            let (tx, rx) = oneshot::channel();
            senders.insert(e.id, tx);
            let gone = |_| FsError::Unavailable("not prefetched".into());
            cell.get_or_try_init(move || async move { rx.await.map_err(gone) })
        });
        let waits = futures::future::join_all(waits.collect::<Vec<_>>());
        let fetch = self.prefetch_get(fabric, node, &batch, senders);
        let _ = futures::join!(waits, fetch);
        for (e, cell) in batch.iter().zip(&cells) {
            memory.release(e.id, cell);
        }
    }

    /// Gets `batch` from the fabric (asking `node` first), opens each chunk and hands it to its
    /// claimed load; chunks not returned are left for reads to fetch.
    async fn prefetch_get(
        &self,
        fabric: &F,
        node: Option<NodeId>,
        batch: &[Extent],
        mut senders: HashMap<ChunkId, oneshot::Sender<Arc<Plain>>>,
    ) {
        let items: Result<Vec<_>, FsError> =
            batch.iter().map(|e| Ok((e.addr, self.proof_secret(&e.addr)?))).collect();
        let Ok(items) = items else { return };
        let hints: Vec<NodeId> = node.into_iter().collect();
        self.read_stats.prefetch_requests.fetch_add(1, Ordering::Relaxed);
        let got = match tokio::time::timeout(self.opts.fetch_timeout, fabric.get(&items, &hints)).await {
            Ok(Ok(got)) => got,
            Ok(Err(e)) => return tracing::debug!(error = %e, "prefetch get failed"),
            Err(_) => return tracing::debug!("prefetch get timed out"),
        };
        let by_addr: HashMap<_, _> = batch.iter().map(|e| (e.addr, e)).collect();
        for (addr, ct) in got {
            let Some(e) = by_addr.get(&addr) else { continue };
            let mut buf = ct.to_vec();
            let plain = match self.open_in(e, &mut buf, Checked::Already) {
                Ok(len) => Arc::new(Plain::from({
                    buf.truncate(len);
                    buf
                })),
                Err(err) => {
                    tracing::warn!(?addr, error = %err, "a prefetched chunk does not open");
                    continue;
                }
            };
            if let Some(disk) = &self.reader.disk_cache {
                tokio::task::block_in_place(|| disk.put(&addr, &ct));
            }
            Self::lock(&self.reader.cache).put(e.id, plain.clone());
            self.read_stats.prefetched.fetch_add(1, Ordering::Relaxed);
            if let Some(tx) = senders.remove(&e.id) {
                let _ = tx.send(plain);
            }
        }
    }
}
