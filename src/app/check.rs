//! The fabric check (`quloud check`, and `quloud up` once its fabric is up): an end-to-end
//! round trip through a fabric, with timings. Stores random data with a throwaway key, reads it
//! back with proofs, audits every replica, and deletes what it stored, so checking a fabric
//! leaves nothing behind on friends' disks.

use crate::app::report::CheckReport;
use crate::domain::chunker::chunk_ranges;
use crate::domain::ids::{Addr, NodeId};
use crate::domain::keys::VaultKeys;
use crate::domain::seal::{SealError, SealedChunk};
use crate::ports::fabric::{AuditVerdict, ChunkFabric, FabricError, Publish, StoreGoal};
use futures::{stream, StreamExt, TryStreamExt};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::ops::Range;
use std::sync::Arc;
use std::time::Instant;

/// Why a check failed.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Asked for no replicas.
    #[error("--replicas must be at least 1")]
    NoReplicas,
    /// A sealing task died.
    #[error("sealing task failed: {0}")]
    Seal(#[from] tokio::task::JoinError),
    /// The chunks did not all become quorum-durable.
    #[error("storing with quorum failed (are enough storage nodes running?): {0}")]
    Store(FabricError),
    /// A read, audit or delete failed.
    #[error(transparent)]
    Fabric(#[from] FabricError),
    /// A chunk stored was not read back.
    #[error("chunk {0:?} was not retrieved")]
    Missing(Addr),
    /// A chunk read back did not decrypt.
    #[error("retrieved chunk failed to decrypt: {0}")]
    Open(#[from] SealError),
    /// A chunk read back decrypted to other bytes.
    #[error("retrieved chunk {0:?} differs from what was stored")]
    Differs(Addr),
}

/// The sealed chunks of the check's data, each with its range in the data.
type Sealed = Vec<(Range<usize>, SealedChunk)>;

fn random_data(len: u64) -> Vec<u8> {
    let mut seed = [0u8; 32];
    crate::domain::random_bytes(&mut seed);
    let mut out = vec![0u8; len as usize];
    blake3::Hasher::new_keyed(&seed).finalize_xof().fill(&mut out);
    out
}

async fn seal_all(keys: &Arc<VaultKeys>, data: &Arc<Vec<u8>>) -> Result<Sealed, CheckError> {
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
        .map(|r| r.map_err(CheckError::from))
        .try_collect()
        .await
}

/// Stores every chunk with `replicas` replicas; the nodes that acknowledged each.
async fn store_all<F: ChunkFabric>(
    fabric: &F,
    sealed: &Sealed,
    replicas: usize,
) -> Result<HashMap<Addr, Vec<NodeId>>, CheckError> {
    stream::iter(sealed)
        .map(|(_, c)| async move {
            let publish = Publish { addr: c.addr, commitment: c.commitment, ciphertext: &c.ciphertext };
            let acks = fabric.store(publish, StoreGoal::fresh(replicas)).await?;
            Ok::<_, FabricError>((c.addr, acks.iter().map(|a| a.node).collect()))
        })
        .buffer_unordered(32)
        .try_collect()
        .await
        .map_err(CheckError::Store)
}

/// Reads every chunk back (with proofs) from one of its holders and checks it against the data.
async fn get_all<F: ChunkFabric>(
    fabric: &F,
    keys: &Arc<VaultKeys>,
    sealed: &Sealed,
    holders: &HashMap<Addr, Vec<NodeId>>,
    data: &[u8],
) -> Result<(), CheckError> {
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
            let keys = keys.clone();
            async move {
                let items: Vec<_> = batch.iter().map(|c| (c.addr, keys.proof_secret(&c.addr))).collect();
                fabric.get(&items, &[node]).await
            }
        })
        .buffer_unordered(6)
        .try_collect()
        .await?;
    let fetched: HashMap<Addr, bytes::Bytes> = got.into_iter().flatten().collect();
    for (r, c) in sealed {
        let ct = fetched.get(&c.addr).ok_or(CheckError::Missing(c.addr))?;
        if keys.open(&c.id, &c.addr, ct)? != data[r.clone()] {
            return Err(CheckError::Differs(c.addr));
        }
    }
    Ok(())
}

/// Audits every replica; how many passed of how many.
async fn audit_all<F: ChunkFabric>(
    fabric: &F,
    keys: &Arc<VaultKeys>,
    sealed: &Sealed,
    holders: &HashMap<Addr, Vec<NodeId>>,
) -> Result<(usize, usize), CheckError> {
    let audits: Vec<AuditVerdict> =
        stream::iter(sealed.iter().flat_map(|(_, c)| holders[&c.addr].iter().map(move |n| (c, *n))))
            .map(|(c, n)| {
                let keys = keys.clone();
                async move {
                    fabric.audit(n, c.addr, &keys.proof_secret(&c.addr), c.ciphertext.len() as u64).await
                }
            })
            .buffer_unordered(16)
            .try_collect()
            .await?;
    Ok((audits.iter().filter(|v| **v == AuditVerdict::Passed).count(), audits.len()))
}

/// Deletes every replica from its node (what cannot be deleted expires with its lease).
async fn delete_all<F: ChunkFabric>(
    fabric: &F,
    keys: &VaultKeys,
    sealed: &Sealed,
    holders: &HashMap<Addr, Vec<NodeId>>,
) {
    let nodes: HashSet<NodeId> = holders.values().flatten().copied().collect();
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
}

/// Stores `size` random bytes with `replicas` replicas through `fabric` under `keys` (a
/// throwaway vault's), reads them back, audits every replica, deletes everything, and reports.
pub async fn round_trip<F: ChunkFabric>(
    fabric: &F,
    keys: Arc<VaultKeys>,
    size: u64,
    replicas: usize,
) -> Result<CheckReport, CheckError> {
    if replicas == 0 {
        return Err(CheckError::NoReplicas);
    }
    let data = Arc::new(random_data(size));
    let t = Instant::now();
    let sealed = seal_all(&keys, &data).await?;
    let seal_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let holders = store_all(fabric, &sealed, replicas).await?;
    let store_secs = t.elapsed().as_secs_f64();
    let t = Instant::now();
    get_all(fabric, &keys, &sealed, &holders, &data).await?;
    let get_secs = t.elapsed().as_secs_f64();
    let (audits_passed, audits) = audit_all(fabric, &keys, &sealed, &holders).await?;
    delete_all(fabric, &keys, &sealed, &holders).await;
    let nodes = holders.values().flatten().collect::<HashSet<_>>().len();
    Ok(CheckReport {
        bytes: size,
        chunks: sealed.len(),
        replicas,
        nodes,
        seal_secs,
        store_secs,
        get_secs,
        audits_passed,
        audits,
    })
}
