//! The lease worker: renews the leases of referenced chunks' replicas before they run out.

use crate::app::vault::Vault;
use crate::domain::fs::FsError;
use crate::domain::health::{apply_outcome, Outcome, Wanted};
use crate::domain::ids::{Addr, NodeId};
use crate::ports::fabric::ChunkFabric;
use std::collections::HashMap;
use std::sync::atomic::Ordering;

/// Renews leases that have less than a third left.
#[derive(Clone, Copy, Debug, Default)]
pub struct LeaseWorker;

impl LeaseWorker {
    /// Renews the leases of referenced chunks' replicas that have less than a third left;
    /// returns how many were renewed.
    pub async fn run_once<F: ChunkFabric + 'static>(&self, v: &Vault<F>, fabric: &F) -> Result<u64, FsError> {
        let lease = v.opts.health.lease.as_millis() as u64;
        let now = v.clock.now_ms();
        let mut by_node: HashMap<NodeId, Vec<Addr>> = HashMap::new();
        for (addr, c) in v.m.read()?.summary()?.chunks {
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
            renewed += renew_on(v, fabric, node, &addrs, lease).await?;
        }
        v.health_stats.renewed.fetch_add(renewed, Ordering::Relaxed);
        Ok(renewed)
    }
}

/// Renews `addrs` on `node`; a replica the node no longer holds is recorded as not found.
async fn renew_on<F: ChunkFabric + 'static>(
    v: &Vault<F>,
    fabric: &F,
    node: NodeId,
    addrs: &[Addr],
    lease: u64,
) -> Result<u64, FsError> {
    let items: Vec<_> = addrs.iter().map(|a| (*a, v.keys.proof_secret(a))).collect();
    let expiry = v.clock.now_ms() + lease;
    let results = match fabric.renew(node, &items, expiry).await {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(?node, error = %e, "lease renewal failed; audits will judge the node");
            return Ok(0);
        }
    };
    let now = v.clock.now_ms();
    let off = crate::app::vault::vetting::fleet(v)?.dead();
    let want = Wanted { replicas: v.opts.replicas, written_off: &|n: &NodeId| off.contains(n) };
    let mut renewed = 0;
    v.m.write(|tx| {
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
                    apply_outcome(&mut c, &node, Outcome::NotFound, now, &want);
                }
                _ => continue,
            }
            tx.put_chunk(addr, &c)?;
        }
        Ok(())
    })?;
    Ok(renewed)
}
