//! `quloud check`: an end-to-end round trip through a fabric, with timings.
//!
//! Uses a throwaway vault key and a one-hour lease, and deletes what it stored at the end, so
//! checking a fabric leaves nothing behind on friends' disks.

use super::common::Bus;
use crate::adapters::nats::fabric::NatsFabric;
use crate::app::report::CheckReport;
use crate::domain::chunker::chunk_ranges;
use crate::domain::ids::{Addr, NodeId};
use crate::domain::keys::{MasterKey, VaultKeys};
use crate::domain::seal::SealedChunk;
use crate::ports::fabric::{AuditVerdict, ChunkFabric, Publish, StoreGoal};
use anyhow::{bail, Context, Result};
use futures::{stream, StreamExt, TryStreamExt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn random_data(len: u64) -> Vec<u8> {
    let mut seed = [0u8; 32];
    crate::domain::random_bytes(&mut seed);
    let mut out = vec![0u8; len as usize];
    blake3::Hasher::new_keyed(&seed).finalize_xof().fill(&mut out);
    out
}

async fn seal_all(
    keys: &Arc<VaultKeys>,
    data: &Arc<Vec<u8>>,
) -> Result<Vec<(std::ops::Range<usize>, SealedChunk)>> {
    let ranges: Vec<_> = chunk_ranges(data, keys.chunker_seed()).collect();
    stream::iter(ranges)
        .map(|r| {
            let (keys, data) = (keys.clone(), data.clone());
            tokio::task::spawn_blocking(move || {
                let sealed = keys.seal(&data[r.clone()]);
                (r, sealed)
            })
        })
        .buffered(4)
        .map(|r| r.context("sealing task failed"))
        .try_collect()
        .await
}

/// Stores `size` random bytes with `replicas` replicas, reads them back, audits every replica,
/// deletes everything, and reports.
pub async fn run_check(bus: &Bus, size: u64, replicas: usize) -> Result<CheckReport> {
    if replicas == 0 {
        bail!("--replicas must be at least 1");
    }
    let keys = Arc::new(MasterKey::generate().derive());
    let mut opts = bus.fabric_options();
    opts.lease = Duration::from_secs(3600);
    let fabric = NatsFabric::connect(keys.ack_token(), opts, None).await?;
    let data = Arc::new(random_data(size));

    let t = Instant::now();
    let sealed = seal_all(&keys, &data).await?;
    let seal_secs = t.elapsed().as_secs_f64();

    let t = Instant::now();
    let acks: Vec<(Addr, Vec<NodeId>)> = stream::iter(&sealed)
        .map(|(_, c)| {
            let f = &fabric;
            async move {
                let publish = Publish { addr: c.addr, commitment: c.commitment, ciphertext: &c.ciphertext };
                let acks = f.store(publish, StoreGoal::fresh(replicas)).await?;
                Ok::<_, anyhow::Error>((c.addr, acks.iter().map(|a| a.node).collect()))
            }
        })
        .buffer_unordered(32)
        .try_collect()
        .await
        .context("storing with quorum failed (are enough storage nodes running?)")?;
    let store_secs = t.elapsed().as_secs_f64();
    let holders: HashMap<Addr, Vec<NodeId>> = acks.into_iter().collect();
    let nodes: HashSet<NodeId> = holders.values().flatten().copied().collect();

    let t = Instant::now();
    let mut by_node: BTreeMap<NodeId, Vec<&SealedChunk>> = BTreeMap::new();
    for (i, (_, c)) in sealed.iter().enumerate() {
        let hs = &holders[&c.addr];
        by_node.entry(hs[i % hs.len()]).or_default().push(c);
    }
    let batches: Vec<(NodeId, Vec<&SealedChunk>)> = by_node
        .into_iter()
        .flat_map(|(n, cs)| cs.chunks(8).map(|b| (n, b.to_vec())).collect::<Vec<_>>())
        .collect();
    let got: Vec<Vec<(Addr, bytes::Bytes)>> = stream::iter(batches)
        .map(|(node, batch)| {
            let (f, keys) = (&fabric, keys.clone());
            async move {
                let items: Vec<_> = batch.iter().map(|c| (c.addr, keys.proof_secret(&c.addr))).collect();
                f.get(&items, &[node]).await
            }
        })
        .buffer_unordered(6)
        .try_collect()
        .await?;
    let fetched: HashMap<Addr, bytes::Bytes> = got.into_iter().flatten().collect();
    for (r, c) in &sealed {
        let ct = fetched.get(&c.addr).with_context(|| format!("chunk {:?} was not retrieved", c.addr))?;
        let plain = keys.open(&c.id, &c.addr, ct).context("retrieved chunk failed to decrypt")?;
        if plain != data[r.clone()] {
            bail!("retrieved chunk {:?} differs from what was stored", c.addr);
        }
    }
    let get_secs = t.elapsed().as_secs_f64();

    let audits: Vec<AuditVerdict> = stream::iter(
        sealed.iter().flat_map(|(_, c)| holders[&c.addr].iter().map(move |n| (c, *n))),
    )
    .map(|(c, n)| {
        let (f, keys) = (&fabric, keys.clone());
        async move { f.audit(n, c.addr, &keys.proof_secret(&c.addr), c.ciphertext.len() as u64).await }
    })
    .buffer_unordered(16)
    .try_collect()
    .await?;
    let audits_passed = audits.iter().filter(|v| **v == AuditVerdict::Passed).count();

    for n in &nodes {
        let items: Vec<_> = sealed
            .iter()
            .filter(|(_, c)| holders[&c.addr].contains(n))
            .map(|(_, c)| (c.addr, keys.proof_secret(&c.addr)))
            .collect();
        if let Err(e) = fabric.delete(*n, &items).await {
            tracing::warn!(node = ?n, error = %e, "could not delete check data; it expires with its one-hour lease");
        }
    }

    if let Err(e) = fabric.delete_ack_consumer().await {
        tracing::debug!(error = %e, "could not remove the check's ack consumer");
    }
    Ok(CheckReport {
        bytes: size,
        chunks: sealed.len(),
        replicas,
        nodes: nodes.len(),
        seal_secs,
        store_secs,
        get_secs,
        audits_passed,
        audits: audits.len(),
    })
}
