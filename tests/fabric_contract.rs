//! The fabric contract (`tests/common/fabric_contract.rs`) kept by the NATS fabric: a real
//! nats-server with JetStream and four real `quloud node` processes.

mod common;

#[path = "common/fabric_contract.rs"]
mod contract;

use common::{owner, test_options, vault, Fabric};
use quloud::adapters::nats::fabric::NatsFabric;
use quloud::domain::ids::{Addr, NodeId};
use quloud::domain::keys::{MasterKey, VaultKeys};
use quloud::domain::proof::ProofSecret;
use quloud::domain::seal::SealedChunk;
use quloud::domain::snapshot::{choose_root, root_locator, RootRecord};
use quloud::domain::unix_ms;
use quloud::domain::wire::{Status, StoreAck};
use quloud::ports::fabric::{AuditVerdict, ChunkFabric, FabricError, LeaseSwap, Publish, StoreGoal};
use std::collections::HashSet;
use std::time::{Duration, Instant};

struct NatsBench {
    fabric: Fabric,
    owner: NatsFabric,
    reply_timeout: Duration,
}

impl contract::Bench for NatsBench {
    type Fabric = NatsFabric;

    fn fabric(&self) -> &NatsFabric {
        &self.owner
    }

    fn nodes(&self) -> Vec<NodeId> {
        self.fabric.node_ids()
    }

    /// Flips a byte in the middle of every chunk body on the node's disk (bodies are not named
    /// by addr).
    fn corrupt_stored(&mut self, node: NodeId, _addr: Addr) {
        let n = self.fabric.nodes.iter().find(|n| n.id == node).expect("a node of this fabric");
        for body in n.bodies() {
            let mut raw = std::fs::read(&body).unwrap();
            let mid = raw.len() / 2;
            raw[mid] ^= 0x01;
            std::fs::write(&body, &raw).unwrap();
        }
    }

    /// Stops the node process (SIGSTOP): still connected as far as the broker knows, silent.
    /// The fabric's `Drop` kills it.
    fn silence(&mut self, node: NodeId) {
        let n = self.fabric.nodes.iter().find(|n| n.id == node).expect("a node of this fabric");
        let pid = n.pid().expect("the node runs") as libc::pid_t;
        // SAFETY: kill(2) on our own child's pid.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    }

    fn reply_timeout(&self) -> Duration {
        self.reply_timeout
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_nats_fabric_keeps_the_fabric_contract() {
    let fabric = Fabric::start(4, "1GiB");
    let opts = test_options(&fabric.url());
    let reply_timeout = opts.reply_timeout;
    let owner = owner(&vault(40), opts).await;
    contract::run(&mut NatsBench { fabric, owner, reply_timeout }).await;
}
