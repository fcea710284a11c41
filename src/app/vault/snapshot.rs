//! Disaster recovery and sharing (docs/DESIGN.md §8, §4): manifest snapshots stored in the fabric, the
//! signed root record that points at them, and read capabilities for a subtree.
//!
//! A snapshot is taken only when the vault is settled (nothing staged, nothing waiting for
//! upload), so every chunk it names is already in the fabric. Its pieces go through the ordinary
//! upload queue, and the root record is published only once they are quorum-durable: a root
//! record never points at data that could be missing.

use super::pipeline::{queue_upload, SMALL_CHUNK};
use super::Manifest;
use super::{FsError, Vault};
use crate::domain::dump::DumpWriter;
use crate::domain::fs::{Attr, ChunkRecord, Ino, Kind, ROOT_INO};
use crate::domain::ids::Addr;
use crate::domain::keys::{ChunkKeys, VaultKeys, SHARE_SECRET_LEN};
use crate::domain::share::Capability;
use crate::domain::snapshot::{
    choose_root, open_head, open_index, open_piece, retain, root_locator, seal_blob, BlobHead, BlobRow,
    PieceRef, PinScope, RootChoice, RootRecord, SealedBlob, SnapshotInfo,
};
use crate::ports::fabric::ChunkFabric;
use crate::ports::manifest::ManifestFiles;
use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::time::Duration;

/// What a stored blob holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum BlobKind {
    /// A snapshot of the whole manifest.
    Snapshot,
    /// A share of a subtree.
    Share,
}

/// Pieces fetched per request when reading a blob back.
const FETCH_BATCH: usize = 64;

/// What `snapshot` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotOutcome {
    /// A snapshot was stored and the root record now points at it.
    Taken(SnapshotInfo),
    /// Nothing changed since the last snapshot.
    Unchanged,
    /// Files are still staged or uploading; a snapshot would name data not yet in the fabric.
    Pending,
}

/// What the fabric holds as this vault's root: the chosen record and what was wrong elsewhere.
pub struct RootFound {
    /// The newest validly signed record, opened.
    pub record: RootRecord,
    /// Sources that served an older record, and refused records.
    pub choice: RootChoice,
}

impl RootFound {
    /// Warnings for the user: rollbacks and forgeries seen.
    pub fn warnings(&self) -> Vec<String> {
        let mut w = Vec::new();
        for (source, v) in &self.choice.rolled_back {
            w.push(format!(
                "rollback detected: {source} serves root record version {v}, but version {} exists; using the newest",
                self.record.version
            ));
        }
        for (source, e) in &self.choice.refused {
            w.push(format!("refused a root record from {source}: {e}"));
        }
        w
    }
}

fn fs_err(e: impl std::fmt::Display) -> FsError {
    FsError::Unavailable(e.to_string())
}

/// Finds the vault's newest validly signed root record in the fabric. `Ok(None)` when there is
/// none (a new vault, or a key that never made a snapshot).
pub async fn find_root<F: ChunkFabric>(fabric: &F, keys: &VaultKeys) -> Result<Option<RootFound>, FsError> {
    let vk = keys.root_signing_key().verifying_key();
    let served = fabric.fetch_roots(&root_locator(&vk)).await.map_err(fs_err)?;
    let choice = choose_root(&served, &vk);
    let Some((_, bytes)) = &choice.newest else {
        for (source, e) in &choice.refused {
            tracing::warn!(%source, error = %e, "refused a root record");
        }
        return Ok(None);
    };
    let record = RootRecord::open(bytes, &vk, &keys.root_body_key()).map_err(fs_err)?;
    Ok(Some(RootFound { record, choice }))
}

/// One get of `items` from any node, within `timeout`.
async fn get_within<F: ChunkFabric>(
    fabric: &F,
    timeout: Duration,
    items: Vec<(Addr, crate::domain::proof::ProofSecret)>,
) -> Result<Vec<(Addr, bytes::Bytes)>, FsError> {
    tokio::time::timeout(timeout, fabric.get(&items, &[]))
        .await
        .map_err(|_| FsError::Unavailable("no node answered in time".into()))?
        .map_err(fs_err)
}

/// Fetches each distinct piece of `refs` (`what`, for errors) in batches of [`FETCH_BATCH`] and
/// hands it to `each` with its ciphertext, in the order first listed; fails if a node has none.
async fn fetch_each<F: ChunkFabric>(
    fabric: &F,
    timeout: Duration,
    refs: &[PieceRef],
    what: &str,
    mut each: impl FnMut(&PieceRef, &[u8]) -> Result<(), FsError>,
) -> Result<(), FsError> {
    let mut seen = HashSet::new();
    let distinct: Vec<&PieceRef> = refs.iter().filter(|p| seen.insert(p.addr)).collect();
    for batch in distinct.chunks(FETCH_BATCH) {
        let got = get_within(fabric, timeout, batch.iter().map(|p| (p.addr, p.secret())).collect()).await?;
        for p in batch {
            let ct = got.iter().find(|(a, _)| *a == p.addr).map(|(_, ct)| ct).ok_or_else(|| {
                FsError::Unavailable(format!("{what} {:?} could not be retrieved from any node", p.addr))
            })?;
            each(p, ct)?;
        }
    }
    Ok(())
}

/// Fetches a blob's head and pieces, verifying each against its addr, and returns the head and
/// the payload. `progress` gets (pieces done, total).
pub async fn fetch_blob<F: ChunkFabric>(
    fabric: &F,
    keys: &ChunkKeys,
    head: &PieceRef,
    timeout: Duration,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<(BlobHead, Vec<u8>), FsError> {
    let got = get_within(fabric, timeout, vec![(head.addr, head.secret())]).await?;
    let ct =
        got.into_iter().find(|(a, _)| *a == head.addr).map(|(_, ct)| ct).ok_or_else(|| {
            FsError::Unavailable(format!("no node holds the head {:?} any more", head.addr))
        })?;
    let mut head = open_head(keys, head, &ct).map_err(fs_err)?;
    if !head.index.is_empty() {
        let mut cts: HashMap<Addr, Vec<u8>> = HashMap::new();
        fetch_each(fabric, timeout, &head.index, "index piece", |p, ct| {
            cts.insert(p.addr, ct.to_vec());
            Ok(())
        })
        .await?;
        let ordered: Vec<&[u8]> = head.index.iter().map(|p| cts[&p.addr].as_slice()).collect();
        open_index(keys, &mut head, &ordered).map_err(fs_err)?;
    }
    let total = head.pieces.len() as u64;
    let mut plain: HashMap<Addr, Vec<u8>> = HashMap::new();
    let mut done = 0;
    progress(0, total);
    fetch_each(fabric, timeout, &head.pieces, "piece", |p, ct| {
        plain.insert(p.addr, open_piece(keys, p, ct).map_err(fs_err)?);
        done += 1;
        progress(done, total);
        Ok(())
    })
    .await?;
    let mut out = Vec::with_capacity(head.len as usize);
    for p in &head.pieces {
        out.extend_from_slice(&plain[&p.addr]);
    }
    if out.len() as u64 != head.len {
        return Err(FsError::Unavailable("blob length does not match its head".into()));
    }
    Ok((head, out))
}

/// Where a fetched manifest goes: the file `path`, written by the manifest adapter `files`.
#[derive(Clone, Copy)]
pub struct ManifestFile<'a> {
    /// The manifest's file.
    pub path: &'a Path,
    /// Opens and creates manifest files.
    pub files: &'a dyn ManifestFiles,
}

/// Rebuilds a manifest at `to.path` from snapshot `info` of the vault: fetches and verifies it,
/// imports it, and records the snapshot itself, pinning every chunk it names (so it stays listed
/// and, while kept, what it names stays in the fabric whatever this home deletes).
pub async fn materialize_snapshot<F: ChunkFabric>(
    fabric: &F,
    keys: &VaultKeys,
    root: &RootRecord,
    info: &SnapshotInfo,
    to: ManifestFile<'_>,
    timeout: Duration,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<Manifest, FsError> {
    let (head, dump) = fetch_blob(fabric, keys.snapshot(), &info.head, timeout, progress).await?;
    let ManifestFile { path, files } = to;
    let tmp = path.with_extension("partial");
    let _ = std::fs::remove_file(&tmp);
    let m = files.import(&tmp, &dump)?;
    let named = super::lineage::named_chunks(&dump)?;
    m.write_durable(|tx| {
        super::lineage::keep_pinned(tx, info, &head, &named)?;
        let last = root.snapshots.iter().map(|s| s.id).max().unwrap_or(info.id);
        tx.set_meta("last_snapshot", last)?;
        tx.set_meta("root_version", root.version)
    })?;
    drop(m);
    std::fs::rename(&tmp, path)?;
    files.open(path, 0, 0)
}

/// Manifest meta key: the content tag of the newest snapshot taken.
const SNAPSHOT_CONTENT: &str = "snapshot_content";

/// The first 8 bytes of a content hash, as the manifest's meta table keeps numbers.
fn content_tag(hash: &[u8; 32]) -> u64 {
    let mut first = [0u8; 8];
    first.copy_from_slice(&hash[..8]);
    u64::from_le_bytes(first)
}

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Snapshots the manifest into the fabric and publishes a root record pointing at it,
    /// unless no file changed since the last snapshot.
    /// Waits up to `wait` for the snapshot's pieces to become quorum-durable.
    pub async fn snapshot(&self, wait: Duration) -> Result<SnapshotOutcome, FsError> {
        if self.is_read_only() {
            return Err(FsError::ReadOnly);
        }
        let _one_at_a_time = self.snapshotting.lock().await;
        let fabric = self.reachable_fabric(self.opts.fetch_timeout).await?;
        let (dump, files, bytes, id, content) = {
            let rx = self.m.read()?;
            if !rx.staged()?.is_empty() || !rx.uploads(1)?.is_empty() {
                return Ok(SnapshotOutcome::Pending);
            }
            let content = content_tag(&rx.content_hash()?);
            if rx.meta(SNAPSHOT_CONTENT)? == Some(content) {
                return Ok(SnapshotOutcome::Unchanged);
            }
            let (dump, files, bytes) = rx.dump()?;
            (dump, files, bytes, rx.meta("last_snapshot")?.unwrap_or(0) + 1, content)
        };
        let blob = seal_blob(self.keys.snapshot(), &dump, self.keys.chunker_seed()).map_err(fs_err)?;
        let now = self.clock.now_ms();
        let info =
            SnapshotInfo { id, taken_ms: now, head: blob.head_ref, files, bytes, epoch: self.my_epoch() };
        let row = BlobRow { info, pins: blob.addrs(), scope: PinScope::Pieces, path: Vec::new() };
        self.store_blob(&blob, &row, BlobKind::Snapshot, wait).await?;
        // Retention: drop what the policy no longer keeps (their pieces become garbage).
        let rows = self.m.read()?.blobs(false)?;
        let mut keep = retain(
            &rows.iter().map(|r| (r.info.id, r.info.taken_ms)).collect::<Vec<_>>(),
            self.opts.health.retention,
        );
        // The newest snapshot of every lineage (writer epoch) stays, whatever the policy: an
        // adopted lineage of a writer that lost the lease is reachable only through it.
        let mut newest: HashMap<u64, &SnapshotInfo> = HashMap::new();
        for r in &rows {
            let e = newest.entry(r.info.epoch).or_insert(&r.info);
            if r.info.order() > e.order() {
                *e = &r.info;
            }
        }
        keep.extend(newest.values().map(|s| s.id));
        let dropped: Vec<&BlobRow> = rows.iter().filter(|r| !keep.contains(&r.info.id)).collect();
        self.m.write_durable(|tx| dropped.iter().try_for_each(|r| tx.put_blob(false, r, false)))?;
        self.publish_root(&*fabric).await?;
        // Kept in the manifest, so "unchanged" holds across remounts (every unmount snapshots).
        self.m.write_durable(|tx| tx.set_meta(SNAPSHOT_CONTENT, content))?;
        tracing::info!(id, files, pieces = row.pins.len(), "snapshot stored");
        Ok(SnapshotOutcome::Taken(info))
    }

    /// Compares the fabric's newest root record with the last one this vault published: a
    /// broker that lost or withheld newer records is a rollback, reported (and healed by the
    /// next snapshot, which publishes a version above both). Returns the warnings.
    pub async fn check_root(&self) -> Result<Vec<String>, FsError> {
        let Some(fabric) = self.fabric_within(Duration::ZERO).await else { return Ok(Vec::new()) };
        let local = self.m.read()?.meta("root_version")?.unwrap_or(0);
        let found = find_root(&*fabric, &self.keys).await?;
        let mut warnings = found.as_ref().map(|f| f.warnings()).unwrap_or_default();
        // A record of a later epoch is the new writer's (this home is fenced), not a rollback.
        let (served, epoch) = found.map_or((0, 0), |f| (f.record.version, f.record.epoch));
        if served < local && epoch <= self.my_epoch() {
            warnings.push(format!(
                "rollback detected: the fabric's newest root record is version {served}, but this vault published version {local}; the next snapshot publishes a newer one"
            ));
        }
        for w in &warnings {
            tracing::warn!("{w}");
        }
        Ok(warnings)
    }

    /// Retained snapshots, oldest first: by writer epoch, then id (docs/DESIGN.md §11).
    pub fn snapshots(&self) -> Result<Vec<SnapshotInfo>, FsError> {
        let mut list: Vec<SnapshotInfo> = self.m.read()?.blobs(false)?.into_iter().map(|r| r.info).collect();
        list.sort_by_key(|s| s.order());
        Ok(list)
    }

    /// The bound of garbage collection: the time of the oldest retained snapshot this home took.
    /// A chunk unreferenced after it may be named by a snapshot, so collection keeps it.
    /// Restored and adopted snapshots pin every chunk they name and set no bound.
    pub(super) fn oldest_snapshot_ms(&self) -> Result<Option<u64>, FsError> {
        let rows = self.m.read()?.blobs(false)?;
        Ok(rows.iter().filter(|r| r.scope == PinScope::Pieces).map(|r| r.info.taken_ms).min())
    }

    /// Publishes a root record listing the retained snapshots again (a fenced home closing its
    /// lineage when nothing changed since its last snapshot).
    pub(super) async fn publish_kept(&self) -> Result<(), FsError> {
        let fabric = self.reachable_fabric(self.opts.fetch_timeout).await?;
        self.publish_root(&*fabric).await.map(|_| ())
    }

    /// Signs and publishes a root record listing the retained snapshots, with a version above
    /// any seen. The lease holder first adopts the closed lineages of earlier epochs; a home
    /// that lost the lease publishes the closed record of its own epoch.
    async fn publish_root(&self, fabric: &F) -> Result<u64, FsError> {
        let (epoch, closed) = match self.ensure_writer(fabric).await {
            Ok(epoch) => {
                self.adopt_lineages(fabric).await?;
                (epoch, false)
            }
            Err(FsError::ReadOnly) => (self.my_epoch(), true),
            Err(e) => return Err(e),
        };
        let mut snapshots = self.snapshots()?;
        snapshots.sort_by_key(|s| s.order());
        let local = self.m.read()?.meta("root_version")?.unwrap_or(0);
        let seen = match find_root(fabric, &self.keys).await? {
            Some(found) => {
                for w in found.warnings() {
                    tracing::warn!("{w}");
                }
                if found.record.version < local && found.record.epoch <= epoch {
                    tracing::warn!(
                        fabric = found.record.version,
                        local,
                        "rollback detected: the fabric's newest root record is older than the last one this vault published; publishing a newer one"
                    );
                }
                found.record.version
            }
            None => 0,
        };
        let version = local.max(seen) + 1;
        let record = RootRecord { version, epoch, closed, written_ms: self.clock.now_ms(), snapshots };
        let bytes = record.seal(self.keys.root_signing_key(), &self.keys.root_body_key());
        let locator = root_locator(&self.keys.root_signing_key().verifying_key());
        fabric.publish_root(&locator, &bytes).await.map_err(fs_err)?;
        self.m.write_durable(|tx| tx.set_meta("root_version", version))?;
        if closed {
            self.lineage_closed();
            tracing::warn!(epoch, version, "published the closed root record of this home's lineage");
        }
        Ok(version)
    }

    /// Queues a blob's pieces for upload (pinning them with `row`) and waits until they are
    /// quorum-durable.
    async fn store_blob(
        &self,
        blob: &SealedBlob,
        row: &BlobRow,
        kind: BlobKind,
        wait: Duration,
    ) -> Result<(), FsError> {
        let mut fresh = Vec::new();
        {
            let rx = self.m.read()?;
            let mut seen = HashSet::new();
            for p in blob.stored() {
                if seen.insert(p.addr) && rx.chunk(&p.addr)?.is_none_or(|c| c.refs == 0) {
                    fresh.push(p);
                }
            }
        }
        for p in fresh.iter().filter(|p| p.ciphertext.len() > SMALL_CHUNK) {
            self.pipeline.outbox.write(&p.addr, &p.ciphertext)?;
        }
        // The pieces' bytes, not only their names, must be on disk before the queue names them.
        self.sync_outbox()?;
        let now = self.clock.now_ms();
        self.m.write_durable(|tx| {
            for p in &fresh {
                let rec = ChunkRecord::pending(p.id, p.ciphertext.len());
                let small = (p.ciphertext.len() <= SMALL_CHUNK).then_some(p.ciphertext.as_slice());
                queue_upload(tx, &p.addr, &rec, small, now)?;
            }
            let share = kind == BlobKind::Share;
            tx.set_meta(if share { "last_share" } else { "last_snapshot" }, row.info.id)?;
            tx.put_blob(share, row, true)
        })?;
        self.pipeline.upload_work.notify_one();
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let notified = self.pipeline.uploaded.notified();
            let rx = self.m.read()?;
            let mut waiting = 0;
            for a in &row.pins {
                waiting += usize::from(rx.upload_queued(a)?);
            }
            drop(rx);
            if waiting == 0 {
                return Ok(());
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Err(FsError::Unavailable(format!(
                    "{waiting} snapshot pieces are not quorum-durable yet; they keep uploading in the background"
                )));
            }
        }
    }

    /// Creates a read capability for the file or directory tree at `path` (from the vault's
    /// root): stores the subtree's manifest, with each chunk's content key and proof-secret
    /// seed, as a blob under a fresh share secret (cut with a chunker seed of its own), and pins it.
    pub async fn share(&self, path: &str, wait: Duration) -> Result<Capability, FsError> {
        if self.is_read_only() {
            return Err(FsError::ReadOnly);
        }
        let (dump, files, bytes) = {
            let rx = self.m.read()?;
            let target = self.resolve(path)?;
            let mut w = DumpWriter::default();
            let attr = rx.inode(target)?;
            let mut queue: Vec<(Ino, Ino)> = Vec::new(); // (real ino, ino in the share)
            if attr.kind == Kind::Dir {
                queue.push((target, ROOT_INO));
            } else {
                let mut root = Attr::new(ROOT_INO, Kind::Dir, 0o555, attr.uid, attr.gid);
                root.mtime = attr.mtime;
                w.inode(&root);
                let name = path.rsplit('/').find(|s| !s.is_empty()).unwrap_or("file");
                w.dirent(ROOT_INO, name.as_bytes(), target);
                queue.push((target, target));
            }
            let mut seen_chunks = HashSet::new();
            let mut seen_inodes = HashSet::new();
            while let Some((real, ino)) = queue.pop() {
                if !seen_inodes.insert(real) {
                    continue;
                }
                if rx.is_staged(real)? {
                    return Err(FsError::Unavailable(format!(
                        "{path} has files not yet uploaded; share it once `quloud status` shows nothing pending"
                    )));
                }
                let mut a = rx.inode(real)?;
                a.ino = ino;
                w.inode(&a);
                match a.kind {
                    Kind::Dir => {
                        for (name, child) in rx.children(real)? {
                            w.dirent(ino, &name, child);
                            queue.push((child, child));
                        }
                    }
                    Kind::Symlink => w.symlink(ino, &rx.symlink(real)?),
                    _ => {}
                }
                for name in rx.xattr_names(real)? {
                    if let Some(v) = rx.xattr(real, &name)? {
                        w.xattr(ino, &name, &v);
                    }
                }
                for e in rx.extents(real, 0, u64::MAX)? {
                    w.extent(ino, &e);
                    if seen_chunks.insert(e.addr) {
                        let mut c =
                            rx.chunk(&e.addr)?.ok_or_else(|| FsError::Io("extent without chunk".into()))?;
                        if rx.upload_queued(&e.addr)? {
                            return Err(FsError::Unavailable(format!(
                                "{path} has chunks not yet uploaded; share it once `quloud status` shows nothing pending"
                            )));
                        }
                        c.refs = 1;
                        w.chunk(&e.addr, &c);
                        w.share_secret(
                            &e.addr,
                            &self.keys.content_key(&e.id),
                            &self.keys.data().proof_seed(&e.addr),
                        );
                    }
                }
            }
            let (files, bytes) = w.counts();
            (zeroize::Zeroizing::new(w.finish()), files, bytes)
        };
        let mut secret = zeroize::Zeroizing::new([0u8; SHARE_SECRET_LEN]);
        crate::domain::random_bytes(&mut *secret);
        let keys = self.keys.share(&secret);
        let seed = crate::domain::keys::share_chunker_seed(&secret);
        let blob = seal_blob(&keys, &dump, seed).map_err(fs_err)?;
        let id = self.m.read()?.meta("last_share")?.unwrap_or(0) + 1;
        let info =
            SnapshotInfo { id, taken_ms: self.clock.now_ms(), head: blob.head_ref, files, bytes, epoch: 0 };
        let row =
            BlobRow { info, pins: blob.addrs(), scope: PinScope::Pieces, path: path.as_bytes().to_vec() };
        self.store_blob(&blob, &row, BlobKind::Share, wait).await?;
        Ok(Capability { secret: *secret, head: blob.head_ref })
    }
}

/// Fetches a share's manifest with its capability: its dump, which holds every shared chunk's
/// keys, wiped from memory when dropped.
pub async fn fetch_share<F: ChunkFabric>(
    fabric: &F,
    cap: &Capability,
    timeout: Duration,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<zeroize::Zeroizing<Vec<u8>>, FsError> {
    let keys = crate::domain::keys::share_piece_keys(&cap.secret);
    let (_, dump) = fetch_blob(fabric, &keys, &cap.head, timeout, progress).await?;
    Ok(zeroize::Zeroizing::new(dump))
}

/// Fetches a share's manifest with its capability and writes it to `to.path`.
pub async fn materialize_share<F: ChunkFabric>(
    fabric: &F,
    cap: &Capability,
    to: ManifestFile<'_>,
    timeout: Duration,
    progress: &(dyn Fn(u64, u64) + Sync),
) -> Result<(), FsError> {
    let dump = fetch_share(fabric, cap, timeout, progress).await?;
    let _ = std::fs::remove_file(to.path);
    drop(to.files.import(to.path, &dump)?);
    Ok(())
}
