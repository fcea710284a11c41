//! The reports the CLI shows: a vault's status, an audit pass, the nodes view, snapshots and a
//! fabric check. Plain data, built by the use cases, carried over the control socket (serde) and
//! turned into text or JSON by `crate::render` only.
//!
//! Their serde form is the control socket's, lossless (a non-UTF-8 path travels as its bytes);
//! the JSON that `--json` prints is a separate view built in `crate::render`.

use crate::domain::health::NodeRecord;
use crate::domain::ids::NodeId;
use crate::domain::snapshot::SnapshotInfo;
pub use crate::ports::local_disk::DiskCacheUsage;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::path::PathBuf;

/// A vault's state at a glance (`quloud status`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VaultStatus {
    /// Inodes (files, directories, links…).
    pub inodes: u64,
    /// Regular files.
    pub files: u64,
    /// Their logical bytes (the sum of their sizes, before dedup and encryption).
    pub file_bytes: u64,
    /// Distinct chunks referenced by files.
    pub chunks: u64,
    /// Bytes of distinct referenced chunk plaintext (after dedup).
    pub bytes: u64,
    /// Chunks sealed locally, not yet quorum-durable.
    pub pending: u64,
    /// Chunks with at least N replicas.
    pub durable: u64,
    /// Chunks acknowledged once but now below N replicas.
    pub degraded: u64,
    /// Restored chunks whose replicas this home has not learned yet (a snapshot's own pieces,
    /// until the first audit since the restore).
    pub unverified: u64,
    /// When this home was restored, while no audit has run here since (Unix ms).
    pub restored_ms: Option<u64>,
    /// Files whose newest content is still only in local staging.
    pub staged_files: u64,
    /// Replicas held per node.
    #[serde(with = "node_map")]
    pub per_node: BTreeMap<NodeId, u64>,
    /// Replicas wanted per chunk.
    pub replicas: usize,
    /// When the last audit pass ended (Unix ms), replicas it challenged, and how many did not pass.
    pub last_audit: Option<(u64, u64, u64)>,
    /// Chunks waiting out the grace period before garbage collection.
    pub unreferenced: u64,
    /// Chunks in the upload queue (file chunks, snapshot pieces, chunks referenced again).
    pub queued: u64,
    /// Ciphertext bytes of the chunks in the upload queue.
    pub queued_bytes: u64,
    /// Snapshots retained.
    pub snapshots: u64,
    /// When the newest retained snapshot was taken (Unix ms).
    pub last_snapshot_ms: Option<u64>,
    /// Sealed chunks kept on local disk (the disk cache).
    pub disk_cache: DiskCacheUsage,
    /// Whether a running mount answered (else the figures come from the manifest on disk).
    pub mounted: bool,
    /// The running mount's broker connection (`None` when not mounted).
    pub fabric: Option<FabricLink>,
    /// A mount point left behind by a mount process that died (found in the mount table, with
    /// nothing answering on the control socket).
    #[serde(with = "path_bytes")]
    pub stale_mount: Option<PathBuf>,
    /// Whether the vault's home is full: new data fails with ENOSPC until space is freed
    /// (docs/SEMANTICS.md, full disk).
    #[serde(default)]
    pub home_full: bool,
    /// Whether this home may write the vault (the writer lease); `None` when not mounted.
    #[serde(default)]
    pub writer: Option<WriterState>,
    /// Placement by houses, for a mounted vault that lives in a house.
    #[serde(default)]
    pub placement: Option<PlacementStatus>,
    /// Nodes by presence, and whether repair is paused (docs/SEMANTICS.md, replica health).
    #[serde(default)]
    pub churn: ChurnStatus,
    /// Nodes' clocks as the running mount measured them (docs/SEMANTICS.md, clock skew).
    #[serde(default)]
    pub clocks: ClockStatus,
}

/// Nodes whose clock is wrong, and gets that waited out a node, for `quloud status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClockStatus {
    /// Nodes whose clock is off by a second or more.
    pub skewed: Vec<SkewedNode>,
    /// Gets aimed at one node that waited the whole reply timeout for it.
    pub get_timeouts: u64,
}

/// A node whose clock is off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SkewedNode {
    /// The node.
    #[serde(with = "node_hex")]
    pub node: NodeId,
    /// Its clock minus this machine's, ms.
    pub offset_ms: i64,
}

impl SkewedNode {
    /// "node X's clock is 600 s ahead", for status and the log.
    pub fn describe(&self) -> String {
        crate::domain::skew::describe(&self.node, self.offset_ms)
    }
}

impl From<crate::ports::fabric::ClockReport> for ClockStatus {
    fn from(r: crate::ports::fabric::ClockReport) -> Self {
        let skewed = r.skewed.into_iter().map(|(node, offset_ms)| SkewedNode { node, offset_ms }).collect();
        ClockStatus { skewed, get_timeouts: r.get_timeouts }
    }
}

/// Where a vault in a house may place replicas (docs/SEMANTICS.md, placement).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlacementStatus {
    /// The owner's own house.
    pub own_house: String,
    /// Whether one replica may be in it (`--allow-own-house`).
    pub own_house_allowed: bool,
    /// Eligible houses the hub reports reachable (`None`: the hub has not answered yet).
    pub houses_reachable: Option<usize>,
    /// Why chunks stay pending, when too few houses are reachable.
    pub waiting: Option<String>,
}

/// Nodes by presence under the churn policy, for `quloud status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChurnStatus {
    /// Nodes that answered their latest check.
    pub online: u64,
    /// Nodes that missed checks over less than `--offline-after`.
    pub missing: u64,
    /// Offline nodes seen within `--offline-grace`: their replicas still count.
    pub offline: u64,
    /// Offline nodes past the grace: their replicas no longer count.
    pub lapsed: u64,
    /// Nodes written off (unseen for `--dead-after`, or wrong answers).
    pub written_off: u64,
    /// Durable chunks that reach N only by counting offline replicas within the grace.
    pub in_grace: u64,
    /// Repair paused: (nodes unreachable at once, nodes known).
    pub repair_paused: Option<(u64, u64)>,
    /// Chunks stored but waiting for their nodes' vetting audit (counted in `pending`).
    #[serde(default)]
    pub vetting_chunks: u64,
    /// Nodes that failed their vetting audit (written off; their acks never count).
    #[serde(default)]
    pub failed_vetting: Vec<String>,
}

impl ChurnStatus {
    /// Why repair is paused, for status and the log; `None` when it is not.
    pub fn paused_reason(&self) -> Option<String> {
        self.repair_paused.map(|(gone, known)| {
            format!(
                "repair paused: {gone} of {known} nodes stopped answering at once; this machine's own link is \
                 the likelier cause, so nothing is re-replicated or written off until they answer again"
            )
        })
    }
}

/// Whether a mount may write its vault (docs/DESIGN.md §11), for `quloud status` and the log.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum WriterState {
    /// The fabric has not been reached since the mount: changes are accepted under the lease
    /// this home last held, and nothing is published or deleted until it is checked.
    Unchecked {
        /// The epoch of the lease last held (0: none).
        epoch: u64,
    },
    /// This home holds the writer lease.
    Holder {
        /// Its epoch.
        epoch: u64,
    },
    /// Another home holds the lease: changes fail with EROFS; nothing is deleted from the fabric.
    Fenced {
        /// The epoch this home wrote under (0: never held it).
        epoch: u64,
        /// The epoch of the lease the other home holds.
        holder_epoch: u64,
        /// The other home's writer id (hex).
        holder: String,
        /// When this home learnt it (Unix ms, this machine's clock).
        since_ms: u64,
        /// Whether this home's last changes are published as the closed record of its lineage.
        closed: bool,
    },
}

impl WriterState {
    /// Whether changes are refused.
    pub fn is_fenced(&self) -> bool {
        matches!(self, WriterState::Fenced { .. })
    }

    /// One line for people: what this home may do, and why.
    pub fn describe(&self) -> String {
        match self {
            WriterState::Unchecked { epoch } => format!(
                "writing under the lease of epoch {epoch}, not yet checked with the fabric (nothing is published or deleted until it is)"
            ),
            WriterState::Holder { epoch } => format!("this home holds the writer lease (epoch {epoch})"),
            WriterState::Fenced { holder_epoch, holder, closed, .. } => format!(
                "read-only: another home ({}) holds the writer lease (epoch {holder_epoch}); {}; take it back with `quloud mount --take-over` (the other home then stops writing)",
                &holder[..holder.len().min(12)],
                if *closed {
                    "this home's last changes are kept as a snapshot the other home adopts"
                } else {
                    "this home's last changes are published as a snapshot once uploaded"
                }
            ),
        }
    }
}

/// A mount's broker connection, for `quloud status`.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FabricLink {
    /// The servers it connects to (passwords masked).
    pub servers: String,
    /// Whether it is connected now.
    pub connected: bool,
    /// Since when (Unix ms) it has been connected, or disconnected.
    pub since_ms: u64,
}

/// What an audit pass found and did.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
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
    /// Surplus replicas deleted (above N once a returning node proved its copies again).
    #[serde(default)]
    pub trimmed: u64,
    /// Wall time spent challenging replicas.
    pub challenge_secs: f64,
    /// Wall time spent healing (after the challenges).
    pub heal_secs: f64,
    /// Files (or chunks, for `Scope::All`) with fewer than N healthy replicas at the end, and why.
    /// A file's path is its vault path with each name decoded as UTF-8 (invalid bytes become
    /// U+FFFD), as the audit names it.
    pub at_risk: Vec<(String, String)>,
    /// Wall time of the pass.
    pub secs: f64,
}

impl AuditReport {
    /// Whether every covered chunk ended with at least N healthy replicas.
    pub fn all_healthy(&self) -> bool {
        self.at_risk.is_empty()
    }
}

/// One row of `quloud nodes`: what the owner remembers about a node, and the replicas it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeRow {
    /// The node.
    #[serde(with = "node_hex")]
    pub node: NodeId,
    /// Replicas of this vault's chunks it holds.
    pub chunks: u64,
    /// Audits passed.
    pub passed: u64,
    /// Audits failed (wrong proof, not found, no answer).
    pub failed: u64,
    /// Failures since its last pass.
    pub consecutive_failures: u32,
    /// Smoothed audit round trip, microseconds (0: not measured yet).
    pub latency_us: u64,
    /// Last time it answered anything valid, Unix ms (0: never).
    pub last_seen_ms: u64,
    /// Written off: too many failures in a row.
    pub written_off: bool,
}

impl NodeRow {
    /// The row of a node's record and the replicas it holds.
    pub fn new(node: NodeId, record: &NodeRecord, chunks: u64) -> NodeRow {
        NodeRow {
            node,
            chunks,
            passed: record.passed,
            failed: record.failed,
            consecutive_failures: record.consecutive_failures,
            latency_us: record.latency_us,
            last_seen_ms: record.last_seen_ms,
            written_off: record.written_off,
        }
    }

    /// Rows of the nodes view (`Vault::nodes`, `nodes_view`).
    pub fn rows(view: &[(NodeId, NodeRecord, u64)]) -> Vec<NodeRow> {
        view.iter().map(|(id, rec, held)| NodeRow::new(*id, rec, *held)).collect()
    }
}

/// One retained snapshot, as listed by `quloud snapshots`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotRow {
    /// Number, growing with each snapshot of the vault.
    pub id: u64,
    /// When it was taken (Unix ms).
    pub taken_ms: u64,
    /// Files in it.
    pub files: u64,
    /// Bytes of file data in it.
    pub bytes: u64,
    /// The writer epoch it was taken in: listings are ordered by epoch, then id.
    #[serde(default)]
    pub epoch: u64,
}

impl From<&SnapshotInfo> for SnapshotRow {
    fn from(s: &SnapshotInfo) -> SnapshotRow {
        SnapshotRow { id: s.id, taken_ms: s.taken_ms, files: s.files, bytes: s.bytes, epoch: s.epoch }
    }
}

/// What `quloud snapshot` did.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotReport {
    /// A snapshot was stored and the root record now points at it.
    Taken(SnapshotRow),
    /// Nothing changed since the last snapshot.
    Unchanged,
    /// Files are still staged or uploading.
    Pending,
}

/// What a fabric check (`quloud check`) measured.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    /// Plaintext bytes stored and read back.
    pub bytes: u64,
    /// Chunks.
    pub chunks: usize,
    /// Replicas per chunk asked for.
    pub replicas: usize,
    /// Distinct nodes that acknowledged.
    pub nodes: usize,
    /// Seconds to chunk and encrypt.
    pub seal_secs: f64,
    /// Seconds from first publish until every chunk was quorum-durable.
    pub store_secs: f64,
    /// Seconds to retrieve (with proofs) and verify everything.
    pub get_secs: f64,
    /// Replica audits that passed.
    pub audits_passed: usize,
    /// Replica audits run.
    pub audits: usize,
}

/// A `NodeId` as its hex form.
mod node_hex {
    use crate::domain::ids::NodeId;
    use serde::{de::Error, Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(id: &NodeId, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&id.to_hex())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<NodeId, D::Error> {
        let hex = String::deserialize(d)?;
        NodeId::from_hex(&hex).ok_or_else(|| D::Error::custom(format!("not a node id: {hex:?}")))
    }
}

/// A map keyed by `NodeId`, keyed by the ids' hex forms.
mod node_map {
    use crate::domain::ids::NodeId;
    use serde::{de::Error, Deserialize, Deserializer, Serialize, Serializer};
    use std::collections::BTreeMap;

    pub fn serialize<S: Serializer>(map: &BTreeMap<NodeId, u64>, s: S) -> Result<S::Ok, S::Error> {
        let hex: BTreeMap<String, u64> = map.iter().map(|(k, v)| (k.to_hex(), *v)).collect();
        hex.serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<NodeId, u64>, D::Error> {
        let hex = BTreeMap::<String, u64>::deserialize(d)?;
        hex.into_iter()
            .map(|(k, v)| {
                NodeId::from_hex(&k)
                    .map(|id| (id, v))
                    .ok_or_else(|| D::Error::custom(format!("not a node id: {k:?}")))
            })
            .collect()
    }
}

/// A path as its bytes: lossless for any name, UTF-8 or not.
mod path_bytes {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;
    use std::path::PathBuf;

    pub fn serialize<S: Serializer>(p: &Option<PathBuf>, s: S) -> Result<S::Ok, S::Error> {
        p.as_ref().map(|p| p.as_os_str().as_bytes()).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
        let bytes = Option::<Vec<u8>>::deserialize(d)?;
        Ok(bytes.map(|b| PathBuf::from(OsStr::from_bytes(&b))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsStr;
    use std::os::unix::ffi::OsStrExt;

    #[test]
    fn a_status_with_any_bytes_in_its_paths_survives_the_control_socket() {
        let mut s = VaultStatus {
            stale_mount: Some(PathBuf::from(OsStr::from_bytes(b"/mnt/e\xcc\x81\n\x01\xff\xfe"))),
            fabric: Some(FabricLink { servers: "nats://\u{1}\"x\"".into(), connected: true, since_ms: 5 }),
            last_audit: Some((1, 2, 3)),
            ..VaultStatus::default()
        };
        s.per_node.insert(NodeId([7; 32]), 9);
        let wire = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<VaultStatus>(&wire).unwrap(), s, "{wire}");
    }

    #[test]
    fn a_report_with_any_names_survives_the_control_socket() {
        let r = AuditReport {
            at_risk: vec![("/e\u{301}\n\u{1}\u{FFFD}".into(), "why \"not\"".into())],
            secs: 0.5,
            ..AuditReport::default()
        };
        let wire = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<AuditReport>(&wire).unwrap(), r);
        let row = NodeRow::new(NodeId([3; 32]), &NodeRecord { latency_us: 1500, ..NodeRecord::default() }, 4);
        let wire = serde_json::to_string(&row).unwrap();
        assert_eq!(serde_json::from_str::<NodeRow>(&wire).unwrap(), row);
        assert!(serde_json::from_str::<NodeRow>(&wire.replace("03", "zz")).is_err(), "a bad id is refused");
    }
}
