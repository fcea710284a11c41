//! Owner-side maintenance (DESIGN §5–6): audits of every replica with fresh challenges, healing
//! of chunks below N healthy replicas, lease renewal, and garbage collection of chunks no file
//! references any more. The background loop (`run_maintenance`) runs all four on the owner's
//! schedule; `Vault::audit` runs a full pass in the foreground for `quloud audit`.

use super::Vault;
use crate::domain::fs::{ChunkRecord, ChunkState, FsError, Ino, Kind, Replica, ROOT_INO};
use crate::domain::health::{apply_outcome, is_healthy, NodeRecord, Outcome};
use crate::domain::ids::{Addr, NodeId};
use crate::domain::unix_ms;
use crate::ports::fabric::{AuditVerdict, ChunkFabric, FabricError, Publish, StoreGoal};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio_util::sync::CancellationToken;

/// The owner's maintenance schedule.
#[derive(Clone, Debug)]
pub struct HealthOptions {
    /// Every replica is challenged at least this often.
    pub audit_interval: Duration,
    /// Most background audit challenges per second (foreground passes are not limited).
    pub audit_rate: u32,
    /// Lease asked for on store and renew; renewed when a third of it is left.
    pub lease: Duration,
    /// How long an unreferenced chunk waits before it is deleted from its replicas.
    pub gc_grace: Duration,
    /// How often the manifest is snapshotted into the fabric when it changed (zero: only at
    /// unmount and on request).
    pub snapshot_interval: Duration,
    /// Which snapshots are kept.
    pub retention: crate::domain::snapshot::Retention,
}

impl Default for HealthOptions {
    fn default() -> Self {
        HealthOptions {
            audit_interval: Duration::from_secs(24 * 3600),
            audit_rate: 200,
            lease: Duration::from_secs(90 * 24 * 3600),
            gc_grace: Duration::from_secs(3600),
            snapshot_interval: Duration::from_secs(3600),
            retention: crate::domain::snapshot::Retention::default(),
        }
    }
}

/// Challenges in flight at once in a foreground pass.
const AUDIT_CONCURRENCY: usize = 256;
/// Challenges sent to one node in one request (its proofs are verified as a batch).
const AUDIT_BATCH: usize = 32;
/// Chunks healed at once (each waits for one node's fsync and signed ack).
const HEAL_CONCURRENCY: usize = 32;
/// Audit results applied to the manifest per transaction.
const APPLY_BATCH: usize = 512;

/// Which chunks a pass covers.
#[derive(Clone, Debug)]
pub enum Scope {
    /// Every referenced chunk (background passes: no file names needed).
    All,
    /// The files under a vault path ("/" for the whole vault), named in the report.
    Path(String),
}

/// What an audit pass found and did.
#[derive(Clone, Debug, Default)]
pub struct AuditReport {
    /// Files covered.
    pub files: u64,
    /// Distinct chunks covered.
    pub chunks: u64,
    /// Replica challenges sent.
    pub checked: u64,
    /// Challenges passed.
    pub passed: u64,
    /// Challenges answered with a wrong proof.
    pub failed: u64,
    /// Replicas whose node said it no longer holds the chunk.
    pub not_found: u64,
    /// Challenges nobody answered in time.
    pub silent: u64,
    /// Chunks brought back to N healthy replicas.
    pub healed: u64,
    /// Bytes re-replicated.
    pub healed_bytes: u64,
    /// Wall time spent challenging replicas.
    pub challenge_secs: f64,
    /// Wall time spent healing (after the challenges).
    pub heal_secs: f64,
    /// Files (or chunks, for `Scope::All`) with fewer than N healthy replicas at the end, and why.
    pub at_risk: Vec<(String, String)>,
    /// Wall time of the pass.
    pub secs: f64,
}

fn json_str(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl AuditReport {
    /// Whether every covered chunk ended with at least N healthy replicas.
    pub fn all_healthy(&self) -> bool {
        self.at_risk.is_empty()
    }

    /// JSON form.
    pub fn to_json(&self) -> String {
        let risk: Vec<String> = self
            .at_risk
            .iter()
            .map(|(p, why)| format!("{{\"path\":{},\"reason\":{}}}", json_str(p), json_str(why)))
            .collect();
        format!(
            "{{\"files\":{},\"chunks\":{},\"checked\":{},\"passed\":{},\"failed\":{},\"not_found\":{},\"silent\":{},\"healed\":{},\"healed_bytes\":{},\"challenge_secs\":{:.3},\"heal_secs\":{:.3},\"secs\":{:.3},\"healthy\":{},\"at_risk\":[{}]}}",
            self.files, self.chunks, self.checked, self.passed, self.failed, self.not_found, self.silent,
            self.healed, self.healed_bytes, self.challenge_secs, self.heal_secs, self.secs, self.all_healthy(), risk.join(",")
        )
    }

    /// Human form.
    pub fn render(&self) -> String {
        let rate = if self.secs > 0.0 { self.checked as f64 / self.secs } else { 0.0 };
        let mut out = format!(
            "audited {} replicas of {} chunks in {} files in {:.1} s ({rate:.0}/s)\n  passed {}, wrong proof {}, not found {}, no answer {}\nhealed {} chunks ({})\n",
            self.checked, self.chunks, self.files, self.secs, self.passed, self.failed, self.not_found,
            self.silent, self.healed, crate::domain::size::format_size(self.healed_bytes)
        );
        if self.checked == 0 && self.chunks > 0 {
            out.push_str("  (no replica was due: each is challenged once per audit interval after its last proof; `--now` challenges them all)\n");
        }
        if self.at_risk.is_empty() {
            out.push_str("every chunk has its full set of healthy replicas\n");
        } else {
            out.push_str(&format!("{} at risk:\n", self.at_risk.len()));
            for (p, why) in self.at_risk.iter().take(50) {
                out.push_str(&format!("  {p}: {why}\n"));
            }
            if self.at_risk.len() > 50 {
                out.push_str(&format!("  … and {} more (use --json for all)\n", self.at_risk.len() - 50));
            }
        }
        out
    }
}

/// Counters of the background maintenance, for status.
#[derive(Debug, Default)]
pub struct HealthStats {
    /// Replica challenges sent.
    pub checked: AtomicU64,
    /// Challenges that did not pass.
    pub failed: AtomicU64,
    /// Chunks healed.
    pub healed: AtomicU64,
    /// Leases renewed.
    pub renewed: AtomicU64,
    /// Unreferenced chunks deleted from their replicas.
    pub collected: AtomicU64,
}

/// Releases a chunk claimed for upload, healing or collection when dropped.
pub(super) struct Claim<'a> {
    set: &'a std::sync::Mutex<HashSet<Addr>>,
    addr: Addr,
}

impl Drop for Claim<'_> {
    fn drop(&mut self) {
        self.set.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.addr);
    }
}

fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// One replica to challenge.
struct Target {
    addr: Addr,
    node: NodeId,
    ct_len: u64,
}

/// The verdict of one challenge as an outcome for the replica's record.
fn outcome_of(v: AuditVerdict, t: &Target) -> Outcome {
    match v {
        AuditVerdict::Passed => Outcome::Passed,
        AuditVerdict::NotFound => Outcome::NotFound,
        AuditVerdict::Failed(why) => {
            tracing::warn!(node = ?t.node, addr = ?t.addr, %why, "audit failed");
            Outcome::Failed
        }
    }
}

/// Splits targets into per-node batches of at most `size`, taking one batch from each node in
/// turn so that nodes are challenged side by side; each batch carries the number of challenges
/// before it (for rate limiting).
fn batches_by_node(targets: Vec<Target>, size: usize) -> Vec<(usize, NodeId, Vec<Target>)> {
    let mut by_node: BTreeMap<NodeId, std::collections::VecDeque<Target>> = BTreeMap::new();
    for t in targets {
        by_node.entry(t.node).or_default().push_back(t);
    }
    let mut out = Vec::new();
    let mut first = 0;
    while by_node.values().any(|q| !q.is_empty()) {
        for (node, q) in by_node.iter_mut() {
            let take = q.len().min(size);
            if take > 0 {
                let batch: Vec<Target> = q.drain(..take).collect();
                out.push((first, *node, batch));
                first += take;
            }
        }
    }
    out
}

/// What a pass covers: each chunk and the first file that uses it.
struct Covered {
    chunks: BTreeMap<Addr, Option<usize>>,
    files: Vec<String>,
    /// Files whose newest content is still only on this machine.
    staged: Vec<String>,
}

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Claims `addr` so that no upload, heal or collection of it runs at the same time.
    pub(super) fn claim(&self, addr: Addr) -> Option<Claim<'_>> {
        // The guard must be gone before a `Claim` exists: dropping one takes the same lock.
        let claimed = Self::lock(&self.busy).insert(addr);
        claimed.then(|| Claim { set: &self.busy, addr })
    }

    fn written_off(&self) -> Result<HashSet<NodeId>, FsError> {
        self.m.read()?.written_off()
    }

    /// Healthy replicas of a chunk.
    fn healthy<'r>(c: &'r ChunkRecord, off: &HashSet<NodeId>) -> Vec<&'r Replica> {
        c.replicas.iter().filter(|r| is_healthy(r, &|n: &NodeId| off.contains(n))).collect()
    }

    /// Resolves a vault path ("/a/b") to its inode.
    pub(super) fn resolve(&self, path: &str) -> Result<Ino, FsError> {
        let rx = self.m.read()?;
        let mut ino = ROOT_INO;
        for part in path.split('/').filter(|p| !p.is_empty() && *p != ".") {
            ino = rx.lookup(ino, part.as_bytes())?.ok_or(FsError::NotFound)?;
        }
        Ok(ino)
    }

    fn cover(&self, scope: &Scope) -> Result<Covered, FsError> {
        let rx = self.m.read()?;
        let mut cov = Covered { chunks: BTreeMap::new(), files: Vec::new(), staged: Vec::new() };
        let Scope::Path(path) = scope else {
            for (addr, c) in rx.summary()?.chunks {
                if c.refs > 0 {
                    cov.chunks.insert(addr, None);
                }
            }
            return Ok(cov);
        };
        let staged_now: HashSet<Ino> =
            Self::lock(&self.files).iter().filter(|(_, f)| f.staging.is_some()).map(|(i, _)| *i).collect();
        let root = self.resolve(path)?;
        let base = if path.trim_end_matches('/').is_empty() {
            String::new()
        } else {
            path.trim_end_matches('/').to_string()
        };
        let mut stack = vec![(root, if base.is_empty() { "/".to_string() } else { base })];
        let mut seen = HashSet::new();
        while let Some((ino, name)) = stack.pop() {
            let a = rx.inode(ino)?;
            match a.kind {
                Kind::Dir => {
                    for (child, cino) in rx.children(ino)? {
                        let sep = if name.ends_with('/') { "" } else { "/" };
                        stack.push((cino, format!("{name}{sep}{}", String::from_utf8_lossy(&child))));
                    }
                }
                Kind::File if seen.insert(ino) => {
                    if staged_now.contains(&ino) || rx.is_staged(ino)? {
                        cov.staged.push(name.clone());
                    }
                    let idx = cov.files.len();
                    cov.files.push(name);
                    for e in rx.extents(ino, 0, u64::MAX)? {
                        cov.chunks.entry(e.addr).or_insert(Some(idx));
                    }
                }
                _ => {}
            }
        }
        Ok(cov)
    }

    /// Runs one audit pass over `scope`: challenges every replica (or only those not verified
    /// within the audit interval, unless `force`), records the outcomes, heals chunks below N
    /// healthy replicas, renews leases, and reports what is still at risk. `progress` is told
    /// (done, total) challenges as they complete.
    pub async fn audit(
        &self,
        scope: &Scope,
        force: bool,
        background: bool,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<AuditReport, FsError> {
        let started = Instant::now();
        let fabric = self.reachable_fabric(Duration::from_secs(10)).await?;
        let cov = self.cover(scope)?;
        let now = now_ms();
        let due_before = now.saturating_sub(self.health.audit_interval.as_millis() as u64);
        let mut targets = Vec::new();
        {
            let rx = self.m.read()?;
            for addr in cov.chunks.keys() {
                let Some(c) = rx.chunk(addr)? else { continue };
                for r in &c.replicas {
                    if force || r.failures > 0 || r.verified_ms <= due_before {
                        targets.push(Target { addr: *addr, node: r.node, ct_len: c.ct_len as u64 });
                    }
                }
            }
        }
        let mut report = AuditReport {
            files: cov.files.len() as u64,
            chunks: cov.chunks.len() as u64,
            ..Default::default()
        };
        let challenge_started = Instant::now();
        self.challenge(&*fabric, targets, background, progress, &mut report).await?;
        report.challenge_secs = challenge_started.elapsed().as_secs_f64();
        let addrs: Vec<Addr> = cov.chunks.keys().copied().collect();
        let heal_started = Instant::now();
        self.heal(&fabric, &addrs, &mut report).await?;
        report.heal_secs = heal_started.elapsed().as_secs_f64();
        self.renew_leases(&*fabric).await?;
        // What is still at risk, named by file where the scope has names.
        let off = self.written_off()?;
        let rx = self.m.read()?;
        let mut risk: BTreeMap<String, String> = BTreeMap::new();
        for name in &cov.staged {
            risk.insert(name.clone(), "newest content is only on this machine (being sealed)".into());
        }
        for (addr, file) in &cov.chunks {
            let why = match rx.chunk(addr)? {
                None => "chunk record missing from the manifest".to_string(),
                Some(c) if c.state == ChunkState::Pending => "waiting in the upload queue".to_string(),
                Some(c) => {
                    let n = Self::healthy(&c, &off).len();
                    if n >= self.opts.replicas {
                        continue;
                    }
                    format!("{n} of {} healthy replicas ({} known)", self.opts.replicas, c.replicas.len())
                }
            };
            let name = match file {
                Some(i) => cov.files[*i].clone(),
                None => format!("chunk {addr:?}"),
            };
            risk.entry(name).or_insert(why);
        }
        report.at_risk = risk.into_iter().collect();
        report.secs = started.elapsed().as_secs_f64();
        self.m.write(|tx| {
            tx.set_meta("last_audit_ms", now_ms())?;
            tx.set_meta("last_audit_checked", report.checked)?;
            tx.set_meta("last_audit_bad", report.failed + report.not_found + report.silent)
        })?;
        Ok(report)
    }

    /// Sends the challenges, batched per node and interleaved across nodes (rate-limited in
    /// the background), and records their outcomes.
    async fn challenge(
        &self,
        fabric: &F,
        targets: Vec<Target>,
        background: bool,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
        report: &mut AuditReport,
    ) -> Result<(), FsError> {
        let total = targets.len() as u64;
        progress(0, total);
        let batches = batches_by_node(targets, AUDIT_BATCH);
        let spacing = Duration::from_secs_f64(1.0 / self.health.audit_rate.max(1) as f64);
        let concurrency = if background { 2 } else { AUDIT_CONCURRENCY / AUDIT_BATCH };
        let start = tokio::time::Instant::now();
        let mut results = futures::stream::iter(batches)
            .map(|(first, node, batch)| async move {
                if background {
                    tokio::time::sleep_until(start + spacing * first as u32).await;
                }
                let items: Vec<_> =
                    batch.iter().map(|t| (t.addr, self.keys.proof_secret(&t.addr), t.ct_len)).collect();
                let sent = Instant::now();
                let verdicts = fabric.audit_many(node, &items).await;
                let latency = sent.elapsed().as_micros() as u64;
                let outcomes: Vec<Option<Outcome>> = match verdicts {
                    Ok(v) => v.into_iter().zip(&batch).map(|(v, t)| Some(outcome_of(v, t))).collect(),
                    Err(FabricError::Timeout(_)) => vec![Some(Outcome::Silent); batch.len()],
                    Err(FabricError::BadReply { why, .. }) => {
                        tracing::warn!(?node, %why, "audit reply invalid");
                        vec![Some(Outcome::Failed); batch.len()]
                    }
                    // Our own connection failed: not the node's fault, so not held against it.
                    Err(e) => {
                        tracing::debug!(error = %e, "audits not sent");
                        vec![None; batch.len()]
                    }
                };
                (batch, outcomes, latency)
            })
            .buffer_unordered(concurrency.max(1));
        let mut pending = Vec::with_capacity(APPLY_BATCH);
        let mut done = 0;
        while let Some((batch, outcomes, latency)) = results.next().await {
            for (t, outcome) in batch.into_iter().zip(outcomes) {
                done += 1;
                let Some(o) = outcome else { continue };
                report.checked += 1;
                match o {
                    Outcome::Passed => report.passed += 1,
                    Outcome::Failed => report.failed += 1,
                    Outcome::NotFound => report.not_found += 1,
                    Outcome::Silent => report.silent += 1,
                }
                self.health_stats.checked.fetch_add(1, Ordering::Relaxed);
                if o != Outcome::Passed {
                    self.health_stats.failed.fetch_add(1, Ordering::Relaxed);
                }
                pending.push((t.addr, t.node, o, latency));
            }
            if pending.len() >= APPLY_BATCH {
                self.record_outcomes(std::mem::take(&mut pending))?;
            }
            progress(done, total);
        }
        self.record_outcomes(pending)
    }

    fn record_outcomes(&self, batch: Vec<(Addr, NodeId, Outcome, u64)>) -> Result<(), FsError> {
        if batch.is_empty() {
            return Ok(());
        }
        let now = now_ms();
        self.m.write(|tx| {
            let mut nodes: HashMap<NodeId, NodeRecord> = HashMap::new();
            for (addr, node, outcome, latency) in &batch {
                if let Some(mut c) = tx.chunk(addr)? {
                    if apply_outcome(&mut c, node, *outcome, now) {
                        tracing::info!(?node, ?addr, ?outcome, "replica forgotten");
                    }
                    tx.put_chunk(addr, &c)?;
                }
                let rec = match nodes.entry(*node) {
                    std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                    std::collections::hash_map::Entry::Vacant(e) => {
                        e.insert(tx.node(node)?.unwrap_or_default())
                    }
                };
                let was = rec.written_off;
                rec.observe(*outcome, *latency, now);
                if rec.written_off && !was {
                    tracing::warn!(?node, "node written off after repeated audit failures");
                }
            }
            for (id, rec) in &nodes {
                tx.put_node(id, rec)?;
            }
            Ok(())
        })
    }

    /// Brings every chunk of `addrs` that has fewer than N healthy replicas back to N.
    async fn heal(&self, fabric: &Arc<F>, addrs: &[Addr], report: &mut AuditReport) -> Result<(), FsError> {
        let off = self.written_off()?;
        let wanted = self.opts.replicas;
        let weak: Vec<Addr> = {
            let rx = self.m.read()?;
            let mut v = Vec::new();
            for a in addrs {
                if let Some(c) = rx.chunk(a)? {
                    if c.state == ChunkState::Durable && c.refs > 0 && Self::healthy(&c, &off).len() < wanted
                    {
                        v.push(*a);
                    }
                }
            }
            v
        };
        let mut results = futures::stream::iter(weak)
            .map(|addr| {
                let off = &off;
                async move { (addr, self.heal_one(fabric, addr, off).await) }
            })
            .buffer_unordered(HEAL_CONCURRENCY);
        while let Some((addr, r)) = results.next().await {
            match r {
                Ok(0) => {}
                Ok(bytes) => {
                    report.healed += 1;
                    report.healed_bytes += bytes;
                    self.health_stats.healed.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => tracing::warn!(?addr, error = %e, "healing failed; will retry"),
            }
        }
        Ok(())
    }

    /// Re-replicates one chunk; returns the bytes stored anew (0: nothing to do).
    async fn heal_one(&self, fabric: &Arc<F>, addr: Addr, off: &HashSet<NodeId>) -> Result<u64, FsError> {
        let Some(_claim) = self.claim(addr) else { return Ok(0) };
        let Some(c) = self.m.read()?.chunk(&addr)? else { return Ok(0) };
        let healthy = Self::healthy(&c, off);
        if healthy.len() >= self.opts.replicas {
            return Ok(0);
        }
        let ct = self.ciphertext_for_heal(fabric, &addr, &c, &healthy).await?;
        let held: Vec<(NodeId, u8)> = healthy.iter().map(|r| (r.node, r.slot)).collect();
        let mut exclude: Vec<NodeId> = off.iter().copied().collect();
        exclude.extend(c.replicas.iter().filter(|r| !held.iter().any(|(n, _)| *n == r.node)).map(|r| r.node));
        let goal = StoreGoal { replicas: self.opts.replicas, held: &held, exclude: &exclude };
        let secret = self.keys.proof_secret(&addr);
        let (commitment, control) = (secret.commitment(), secret.control_commitment());
        let acks = fabric
            .store_controlled(Publish { addr, commitment, ciphertext: &ct }, control, goal)
            .await
            .map_err(|e| FsError::Unavailable(e.to_string()))?;
        let now = now_ms();
        self.m.write(|tx| {
            let Some(mut c) = tx.chunk(&addr)? else { return Ok(()) };
            for a in &acks {
                c.replicas.retain(|r| r.node != a.node);
                c.replicas.push(Replica::acked(a.node, a.slot, a.lease_expiry_ms, now));
            }
            tx.put_chunk(&addr, &c)
        })?;
        tracing::info!(?addr, new = acks.len(), "chunk healed");
        Ok(ct.len() as u64 * acks.len() as u64)
    }

    /// A verified copy of a chunk's ciphertext: from the outbox or the disk cache, re-sealed from the cached
    /// plaintext (sealing is deterministic), or fetched from a replica.
    async fn ciphertext_for_heal(
        &self,
        fabric: &Arc<F>,
        addr: &Addr,
        c: &ChunkRecord,
        healthy: &[&Replica],
    ) -> Result<Vec<u8>, FsError> {
        if let Some(ct) = self.m.read()?.small_outbox(addr)? {
            return Ok(ct);
        }
        if let Some(disk) = &self.disk_cache {
            match tokio::task::block_in_place(|| disk.get(addr)) {
                Some(ct) if Addr::of(&ct) == *addr => return Ok(ct),
                Some(_) => disk.forget(addr),
                None => {}
            }
        }
        if let Some(plain) = Self::lock(&self.cache).get(&c.id) {
            let sealed = self.keys.seal(&plain);
            if sealed.addr == *addr {
                return Ok(sealed.ciphertext);
            }
        }
        let mut hints: Vec<NodeId> = healthy.iter().map(|r| r.node).collect();
        for r in &c.replicas {
            if !hints.contains(&r.node) {
                hints.push(r.node);
            }
        }
        let items = [(*addr, self.keys.proof_secret(addr))];
        let got = tokio::time::timeout(self.opts.fetch_timeout * 2, fabric.get(&items, &hints))
            .await
            .map_err(|_| FsError::Unavailable("no replica answered in time".into()))?
            .map_err(|e| FsError::Unavailable(e.to_string()))?;
        got.into_iter()
            .find(|(a, ct)| a == addr && Addr::of(ct) == *addr)
            .map(|(_, ct)| Vec::from(ct))
            .ok_or_else(|| FsError::Unavailable("no copy left that could be fetched".into()))
    }

    /// Renews the leases of referenced chunks' replicas that have less than a third left.
    pub(super) async fn renew_leases(&self, fabric: &F) -> Result<u64, FsError> {
        let lease = self.health.lease.as_millis() as u64;
        let now = now_ms();
        let mut by_node: HashMap<NodeId, Vec<Addr>> = HashMap::new();
        for (addr, c) in self.m.read()?.summary()?.chunks {
            if c.refs == 0 {
                continue;
            }
            for r in &c.replicas {
                if r.lease_expiry_ms < now + lease / 3 {
                    by_node.entry(r.node).or_default().push(addr);
                }
            }
        }
        let mut renewed = 0;
        for (node, addrs) in by_node {
            let items: Vec<_> = addrs.iter().map(|a| (*a, self.keys.proof_secret(a))).collect();
            let expiry = now_ms() + lease;
            let results = match fabric.renew(node, &items, expiry).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!(?node, error = %e, "lease renewal failed; audits will judge the node");
                    continue;
                }
            };
            let now = now_ms();
            self.m.write(|tx| {
                for (addr, status) in &results {
                    let Some(mut c) = tx.chunk(addr)? else { continue };
                    match status {
                        crate::domain::wire::Status::Ok => {
                            for r in c.replicas.iter_mut().filter(|r| r.node == node) {
                                r.lease_expiry_ms = expiry;
                            }
                            renewed += 1;
                        }
                        crate::domain::wire::Status::NotFound => {
                            apply_outcome(&mut c, &node, Outcome::NotFound, now);
                        }
                        _ => continue,
                    }
                    tx.put_chunk(addr, &c)?;
                }
                Ok(())
            })?;
        }
        self.health_stats.renewed.fetch_add(renewed, Ordering::Relaxed);
        Ok(renewed)
    }

    /// Deletes chunks unreferenced for longer than the grace period from their replicas, then
    /// forgets them. Returns how many were collected.
    pub(super) async fn collect_garbage(&self, fabric: &F) -> Result<u64, FsError> {
        let mut before = now_ms().saturating_sub(self.health.gc_grace.as_millis() as u64);
        // A chunk unreferenced after the oldest retained snapshot was taken may be named by a
        // snapshot: it stays until retention drops every snapshot older than its unreferencing.
        if let Some(oldest) = self.oldest_snapshot_ms()? {
            before = before.min(oldest);
        }
        let candidates = self.m.read()?.unreferenced(before, 1024)?;
        let mut collected = 0;
        for addr in candidates {
            let Some(_claim) = self.claim(addr) else { continue };
            // Uploaded but not recorded yet: its replicas are not in the manifest, so forgetting
            // it now would leave them on the nodes until their leases end. The next round gets it.
            if Self::lock(&self.uploads_done).iter().any(|(a, _)| *a == addr) {
                continue;
            }
            let Some(c) = self.m.read()?.chunk(&addr)? else {
                self.m.write(|tx| tx.forget_chunk(&addr))?;
                continue;
            };
            if c.refs > 0 {
                continue;
            }
            let secret = [(addr, self.keys.proof_secret(&addr))];
            for r in &c.replicas {
                if let Err(e) = fabric.delete(r.node, &secret).await {
                    tracing::info!(node = ?r.node, ?addr, error = %e, "delete not confirmed; the copy expires with its lease");
                }
            }
            let forgotten = self.m.write(|tx| match tx.chunk(&addr)? {
                Some(c) if c.refs == 0 => tx.forget_chunk(&addr).map(|_| true),
                // Referenced again while its replicas were being deleted: the file that
                // references it queued a fresh upload, which runs once this claim is released.
                Some(mut c) => {
                    c.replicas.clear();
                    c.state = ChunkState::Pending;
                    tx.put_chunk(&addr, &c).map(|_| false)
                }
                None => Ok(false),
            })?;
            if forgotten {
                // Its outbox file, if any, stays: the chunker may have just sealed the same
                // content again into it, to queue it as a new chunk. Unqueued outbox files go
                // at the next mount.
                if let Some(disk) = &self.disk_cache {
                    disk.forget(&addr);
                }
                collected += 1;
            }
        }
        self.health_stats.collected.fetch_add(collected, Ordering::Relaxed);
        Ok(collected)
    }

    /// Per-node view for `quloud nodes`: the owner's record and how many replicas it holds.
    pub fn nodes(&self) -> Result<Vec<(NodeId, NodeRecord, u64)>, FsError> {
        nodes_view(&self.m)
    }
}

/// Per-node view of a manifest: record and replicas held for this vault. A node's last seen
/// time counts its store acks too (a replica's `verified_ms`), not only audits: a node that just
/// acknowledged every chunk has been seen, whether or not it was audited yet.
pub fn nodes_view(
    m: &crate::adapters::redb::manifest::Manifest,
) -> Result<Vec<(NodeId, NodeRecord, u64)>, FsError> {
    let rx = m.read()?;
    let mut held: BTreeMap<NodeId, (u64, u64)> = BTreeMap::new();
    for (_, c) in rx.summary()?.chunks {
        for r in &c.replicas {
            let e = held.entry(r.node).or_default();
            e.0 += 1;
            e.1 = e.1.max(r.verified_ms);
        }
    }
    let mut out: BTreeMap<NodeId, (NodeRecord, u64)> =
        rx.nodes()?.into_iter().map(|(id, n)| (id, (n, 0))).collect();
    for (id, (count, verified_ms)) in held {
        let e = out.entry(id).or_default();
        e.1 = count;
        e.0.last_seen_ms = e.0.last_seen_ms.max(verified_ms);
    }
    Ok(out.into_iter().map(|(id, (n, c))| (id, n, c)).collect())
}

/// JSON for `quloud nodes --json`.
pub fn nodes_json(nodes: &[(NodeId, NodeRecord, u64)]) -> String {
    let rows: Vec<String> = nodes
        .iter()
        .map(|(id, n, held)| {
            format!(
                "{{\"node\":\"{id}\",\"chunks\":{held},\"audits_passed\":{},\"audits_failed\":{},\"consecutive_failures\":{},\"latency_ms\":{:.2},\"last_seen_ms\":{},\"written_off\":{}}}",
                n.passed, n.failed, n.consecutive_failures, n.latency_us as f64 / 1000.0, n.last_seen_ms, n.written_off
            )
        })
        .collect();
    format!("[{}]", rows.join(","))
}

/// Table for `quloud nodes`.
pub fn nodes_render(nodes: &[(NodeId, NodeRecord, u64)]) -> String {
    if nodes.is_empty() {
        return "no nodes known yet (nothing uploaded)\n".to_string();
    }
    let now = now_ms();
    let mut out = format!(
        "{:<64}  {:>7}  {:>7}  {:>6}  {:>9}  {:>10}  state\n",
        "node", "chunks", "passed", "failed", "latency", "last seen"
    );
    for (id, n, held) in nodes {
        let seen = if n.last_seen_ms == 0 {
            "never".to_string()
        } else {
            format!("{}s ago", now.saturating_sub(n.last_seen_ms) / 1000)
        };
        // Latency is measured by audits; before the first one there is none to show.
        let latency = if n.latency_us == 0 {
            "—".to_string()
        } else {
            format!("{:.1}ms", n.latency_us as f64 / 1000.0)
        };
        let state = if n.written_off {
            "written off"
        } else if n.consecutive_failures > 0 {
            "failing"
        } else {
            "ok"
        };
        out.push_str(&format!(
            "{:<64}  {:>7}  {:>7}  {:>6}  {:>9}  {:>10}  {state}\n",
            id.to_string(),
            held,
            n.passed,
            n.failed,
            latency,
            seen
        ));
    }
    out
}

/// Runs background maintenance until `cancel` fires: audits replicas as they come due (rate
/// limited), heals, renews leases and collects garbage.
pub async fn run_maintenance<F: ChunkFabric + 'static>(vault: Arc<Vault<F>>, cancel: CancellationToken) {
    let h = vault.health.clone();
    let every = [Duration::from_secs(60), h.audit_interval / 4, h.gc_grace / 2, h.lease / 10]
        .into_iter()
        .min()
        .unwrap_or(Duration::from_secs(60))
        .max(Duration::from_secs(1));
    let every = if h.snapshot_interval.is_zero() { every } else { every.min(h.snapshot_interval) };
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // The next snapshot is due one interval after the newest one kept (at once when that is
    // long past, e.g. the last mount ended with uploads pending); a vault without any, one
    // interval after mounting.
    let newest = vault.snapshots().ok().and_then(|s| s.iter().map(|s| s.taken_ms).max());
    let now = tokio::time::Instant::now();
    let mut last_snapshot = match newest {
        None => Some(now),
        Some(ms) => now.checked_sub(Duration::from_millis(now_ms().saturating_sub(ms))),
    };
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Some(fabric) = vault.fabric_within(Duration::ZERO).await else { continue };
        let pass = async {
            let due = last_snapshot.is_none_or(|t| t.elapsed() >= h.snapshot_interval);
            if !h.snapshot_interval.is_zero() && due {
                match vault.snapshot(Duration::from_secs(600)).await {
                    Ok(super::SnapshotOutcome::Pending) => {} // tried again at the next tick
                    Ok(_) => last_snapshot = Some(tokio::time::Instant::now()),
                    Err(e) => tracing::warn!(error = %e, "periodic snapshot failed; retrying later"),
                }
            }
            if let Err(e) = vault.collect_garbage(&*fabric).await {
                tracing::warn!(error = %e, "garbage collection failed");
            }
            match vault.audit(&Scope::All, false, true, &|_, _| {}).await {
                Ok(r) if r.checked > 0 || r.healed > 0 => tracing::info!(
                    checked = r.checked,
                    passed = r.passed,
                    healed = r.healed,
                    at_risk = r.at_risk.len(),
                    "background audit"
                ),
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "background audit failed"),
            }
        };
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = pass => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::nats::fabric::NatsFabric;
    use crate::app::vault::VaultOptions;
    use crate::domain::keys::MasterKey;

    #[test]
    fn a_chunk_is_claimed_once_and_released_by_its_holder_only() {
        let home = tempfile::tempdir().unwrap();
        let keys = Arc::new(MasterKey::from_bytes([5; 32]).derive());
        let vault = Vault::<NatsFabric>::load(home.path(), keys, VaultOptions::default()).unwrap();
        let addr = Addr([1; 32]);
        let first = vault.claim(addr).expect("free chunk");
        // A failed claim must neither block nor release the holder's claim.
        assert!(vault.claim(addr).is_none());
        assert!(vault.claim(addr).is_none(), "a failed claim released the first one");
        assert!(vault.claim(Addr([2; 32])).is_some());
        drop(first);
        assert!(vault.claim(addr).is_some(), "released when the holder drops it");
    }

    #[test]
    fn a_report_that_challenged_nothing_says_why_and_how_to_challenge_all() {
        let idle = AuditReport { files: 2, chunks: 5, ..AuditReport::default() };
        assert!(idle.render().contains("no replica was due"), "{}", idle.render());
        let done = AuditReport { files: 2, chunks: 5, checked: 15, passed: 15, ..AuditReport::default() };
        assert!(!done.render().contains("no replica was due"), "{}", done.render());
    }
}
