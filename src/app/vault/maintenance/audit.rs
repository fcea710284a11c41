//! The audit worker: challenges replicas with fresh proofs of storage, batched per node, and
//! records the outcomes; a pass then heals and renews leases over what it covered.

use super::{HealWorker, LeaseWorker, Pace, Replicas, Scope};
use crate::app::report::AuditReport;
use crate::app::vault::vetting::{awaits_vetting, counted, fleet};
use crate::app::vault::Vault;
use crate::domain::churn::NodeState;
use crate::domain::fs::{ChunkState, FsError, Ino, Kind};
use crate::domain::health::{apply_outcome, not_found_recently, NodeRecord, Outcome, Wanted};
use crate::domain::ids::{Addr, NodeId};
use crate::ports::fabric::{AuditVerdict, ChunkFabric, FabricError};
use futures::StreamExt;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Challenges in flight at once in a foreground pass.
const AUDIT_CONCURRENCY: usize = 256;
/// Challenges sent to one node in one request (its proofs are verified as a batch).
const AUDIT_BATCH: usize = 32;
/// Audit results applied to the manifest per transaction.
const APPLY_BATCH: usize = 512;

/// Runs audit passes: which replicas it challenges, and how fast.
#[derive(Clone, Copy, Debug)]
pub struct AuditWorker {
    /// Which replicas a pass challenges.
    pub replicas: Replicas,
    /// How fast.
    pub pace: Pace,
}

/// One replica to challenge.
pub(super) struct Target {
    pub(super) addr: Addr,
    pub(super) node: NodeId,
    pub(super) ct_len: u64,
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

fn cover<F: ChunkFabric + 'static>(v: &Vault<F>, scope: &Scope) -> Result<Covered, FsError> {
    let rx = v.m.read()?;
    let mut cov = Covered { chunks: BTreeMap::new(), files: Vec::new(), staged: Vec::new() };
    let Scope::Path(path) = scope else {
        for (addr, c) in rx.summary()?.chunks {
            if c.refs > 0 {
                cov.chunks.insert(addr, None);
            }
        }
        return Ok(cov);
    };
    let staged_now: HashSet<Ino> = v.writer.staged_inos();
    let root = v.resolve(path)?;
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
    if path.trim_end_matches('/').is_empty() {
        // The whole vault: also the chunks no file names (snapshot and share pieces), as status
        // counts them.
        for (addr, _) in rx.summary()?.chunks.into_iter().filter(|(_, c)| c.refs > 0) {
            cov.chunks.entry(addr).or_insert(None);
        }
    }
    Ok(cov)
}

impl AuditWorker {
    /// The background pass: replicas that are due, rate-limited.
    pub fn background() -> Self {
        AuditWorker { replicas: Replicas::Due, pace: Pace::Background }
    }

    /// Runs one audit pass over `scope`: challenges the replicas it selects, records the
    /// outcomes, heals chunks below N healthy replicas, renews leases, and reports what is still
    /// at risk. `progress` is told (done, total) challenges as they complete.
    pub async fn run_once<F: ChunkFabric + 'static>(
        &self,
        v: &Vault<F>,
        scope: &Scope,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<AuditReport, FsError> {
        let started = Instant::now();
        let fabric = v.reachable_fabric(Duration::from_secs(10)).await?;
        let cov = cover(v, scope)?;
        let targets = self.targets(v, &cov)?;
        let mut report = AuditReport {
            files: cov.files.len() as u64,
            chunks: cov.chunks.len() as u64,
            ..Default::default()
        };
        let challenge_started = Instant::now();
        self.challenge(v, &*fabric, targets, progress, &mut report).await?;
        report.challenge_secs = challenge_started.elapsed().as_secs_f64();
        let addrs: Vec<Addr> = cov.chunks.keys().copied().collect();
        let heal_started = Instant::now();
        HealWorker.heal(v, &fabric, &addrs, self.pace, &mut report).await?;
        v.promote_vetted()?;
        report.trimmed = super::trim::trim(v, &*fabric, &addrs).await?;
        report.heal_secs = heal_started.elapsed().as_secs_f64();
        LeaseWorker.run_once(v, &*fabric).await?;
        report.at_risk = at_risk(v, &cov)?;
        report.secs = started.elapsed().as_secs_f64();
        v.m.write(|tx| {
            tx.set_meta("last_audit_ms", v.clock.now_ms())?;
            tx.set_meta("last_audit_checked", report.checked)?;
            tx.set_meta("last_audit_bad", report.failed + report.not_found + report.silent)
        })?;
        Ok(report)
    }

    /// The replicas of the covered chunks this pass challenges: those due (failed, unanswered,
    /// not verified within the audit interval or since their node came back), or all. A due pass
    /// sends a node that missed its last check one batch only, as a probe: the rest of its
    /// replicas are challenged once it answers again.
    fn targets<F: ChunkFabric + 'static>(&self, v: &Vault<F>, cov: &Covered) -> Result<Vec<Target>, FsError> {
        let now = v.clock.now_ms();
        let due_before = now.saturating_sub(v.opts.health.audit_interval.as_millis() as u64);
        let fleet = fleet(v)?;
        let mut probes: HashMap<NodeId, usize> = HashMap::new();
        let mut targets = Vec::new();
        let rx = v.m.read()?;
        for addr in cov.chunks.keys() {
            let Some(c) = rx.chunk(addr)? else { continue };
            for r in &c.replicas {
                let stale = r.verified_ms <= due_before || r.verified_ms < fleet.returned_ms(&r.node);
                let due = (r.failures > 0 || r.silent > 0 || stale) && !not_found_recently(r, now);
                if self.replicas == Replicas::Due && !matches!(fleet.state(&r.node), NodeState::Online) {
                    let sent = probes.entry(r.node).or_default();
                    if *sent >= AUDIT_BATCH {
                        continue;
                    }
                    *sent += due as usize;
                }
                if self.replicas == Replicas::All || due {
                    targets.push(Target { addr: *addr, node: r.node, ct_len: c.ct_len as u64 });
                }
            }
        }
        Ok(targets)
    }

    /// Sends the challenges, batched per node and interleaved across nodes (rate-limited in
    /// the background), and records their outcomes.
    pub(super) async fn challenge<F: ChunkFabric + 'static>(
        &self,
        v: &Vault<F>,
        fabric: &F,
        targets: Vec<Target>,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
        report: &mut AuditReport,
    ) -> Result<(), FsError> {
        let total = targets.len() as u64;
        progress(0, total);
        let batches = batches_by_node(targets, AUDIT_BATCH);
        let spacing = Duration::from_secs_f64(1.0 / v.opts.health.audit_rate.max(1) as f64);
        let background = self.pace == Pace::Background;
        let concurrency = if background { 2 } else { AUDIT_CONCURRENCY / AUDIT_BATCH };
        let start = tokio::time::Instant::now();
        let mut results = futures::stream::iter(batches)
            .map(|(first, node, batch)| async move {
                if background {
                    tokio::time::sleep_until(start + spacing * first as u32).await;
                }
                let items: Vec<_> =
                    batch.iter().map(|t| (t.addr, v.keys.proof_secret(&t.addr), t.ct_len)).collect();
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
                v.health_stats.checked.fetch_add(1, Ordering::Relaxed);
                if o != Outcome::Passed {
                    v.health_stats.failed.fetch_add(1, Ordering::Relaxed);
                }
                pending.push((t.addr, t.node, o, latency));
            }
            if pending.len() >= APPLY_BATCH {
                record_outcomes(v, std::mem::take(&mut pending))?;
            }
            progress(done, total);
        }
        record_outcomes(v, pending)
    }
}

fn record_outcomes<F: ChunkFabric + 'static>(
    v: &Vault<F>,
    mut batch: Vec<(Addr, NodeId, Outcome, u64)>,
) -> Result<(), FsError> {
    if batch.is_empty() {
        return Ok(());
    }
    // Passes last: a node not vetted yet that answers one of its vetting challenges wrongly is
    // written off, whatever else it answered in the same batch.
    batch.sort_by_key(|(_, _, o, _)| *o == Outcome::Passed);
    let now = v.clock.now_ms();
    let fleet = fleet(v)?;
    // Nothing is written off while repair is paused: the owner's own link is the likelier cause.
    let off = if fleet.link_down.is_some() { Default::default() } else { fleet.dead() };
    let want = Wanted { replicas: v.opts.replicas, written_off: &|n: &NodeId| off.contains(n) };
    v.m.write(|tx| {
        let mut nodes: HashMap<NodeId, NodeRecord> = HashMap::new();
        for (addr, node, outcome, latency) in &batch {
            if let Some(mut c) = tx.chunk(addr)? {
                if apply_outcome(&mut c, node, *outcome, now, &want) {
                    tracing::info!(?node, ?addr, ?outcome, "replica forgotten");
                }
                tx.put_chunk(addr, &c)?;
            }
            let rec = match nodes.entry(*node) {
                std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
                std::collections::hash_map::Entry::Vacant(e) => e.insert(tx.node(node)?.unwrap_or_default()),
            };
            let (was, missed, vetted) = (rec.written_off, rec.missed_since_ms, rec.vetted);
            rec.observe(*outcome, *latency, now);
            if rec.failed_vetting() && !was {
                tracing::warn!(
                    ?node,
                    ?addr,
                    ?outcome,
                    "node {node:?} failed its vetting audit: written off, its acks never count, its chunks go elsewhere"
                );
            } else if rec.written_off && !was {
                tracing::warn!(?node, "node written off after repeated wrong answers");
            }
            if rec.vetted && !vetted {
                tracing::info!(?node, "node {node:?} passed its vetting audit: its replicas count");
            }
            if missed != 0 && rec.missed_since_ms == 0 {
                tracing::info!(
                    ?node,
                    away_ms = now.saturating_sub(missed),
                    "node answers again; re-auditing its replicas"
                );
            } else if missed == 0 && rec.missed_since_ms != 0 {
                tracing::info!(?node, "node missed a check");
            }
        }
        for (id, rec) in &nodes {
            tx.put_node(id, rec)?;
        }
        Ok(())
    })
}

/// What is still at risk at the end of a pass, named by file where the scope has names.
fn at_risk<F: ChunkFabric + 'static>(v: &Vault<F>, cov: &Covered) -> Result<Vec<(String, String)>, FsError> {
    let fleet = fleet(v)?;
    let rx = v.m.read()?;
    let mut risk: BTreeMap<String, String> = BTreeMap::new();
    for name in &cov.staged {
        risk.insert(name.clone(), "newest content is only on this machine (being sealed)".into());
    }
    for (addr, file) in &cov.chunks {
        let why = match rx.chunk(addr)? {
            None => "chunk record missing from the manifest".to_string(),
            Some(c) if awaits_vetting(&c, rx.upload_queued(addr)?) => {
                "stored on nodes not vetted yet: durable once they pass their first audit".to_string()
            }
            Some(c) if c.state == ChunkState::Pending => "waiting in the upload queue".to_string(),
            Some(c) => {
                let n = counted(v, &fleet, &c).0.len();
                if n >= v.opts.replicas {
                    continue;
                }
                format!("{n} of {} healthy replicas ({} known)", v.opts.replicas, c.replicas.len())
            }
        };
        let name = match file {
            Some(i) => cov.files[*i].clone(),
            None => format!("chunk {addr:?}"),
        };
        risk.entry(name).or_insert(why);
    }
    Ok(risk.into_iter().collect())
}

impl<F: ChunkFabric + 'static> Vault<F> {
    /// Runs one audit pass over `scope` in the foreground or background (see [`AuditWorker`]).
    pub async fn audit(
        &self,
        scope: &Scope,
        replicas: Replicas,
        pace: Pace,
        progress: &(dyn Fn(u64, u64) + Send + Sync),
    ) -> Result<AuditReport, FsError> {
        AuditWorker { replicas, pace }.run_once(self, scope, progress).await
    }
}
