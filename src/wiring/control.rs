//! What the running mount answers on its control socket: each request mapped to a call on the
//! vault and its result to a typed reply (the socket itself is `adapters::control`).

use super::common::SNAPSHOT_WAIT;
use crate::adapters::control::server::Progress;
use crate::adapters::control::{AuditWhen, Reply, Request};
use crate::adapters::nats::fabric::NatsFabric;
use crate::app::report::{NodeRow, SnapshotReport, SnapshotRow};
use crate::app::vault::{FabricLink, FsError, Pace, Replicas, Scope, SnapshotOutcome, Vault, VaultStatus};
use crate::ports::fabric::Link;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// What the control socket needs besides the vault.
#[derive(Clone)]
pub struct Control {
    /// The mount point (canonical).
    pub mountpoint: PathBuf,
    /// The broker servers, for `status`.
    pub servers: String,
    /// When the mount started (Unix ms): disconnected since then until a first connection.
    pub started_ms: u64,
}

/// Maps a path given to `quloud audit` or `share` to a vault path: a path inside the mount
/// loses the mount point; anything else is taken as a path from the vault's root.
fn vault_path(mountpoint: &Path, given: &str) -> String {
    let p = Path::new(given);
    match p.strip_prefix(mountpoint) {
        Ok(rel) => format!("/{}", rel.to_string_lossy()),
        Err(_) => given.to_string(),
    }
}

/// What `quloud snapshot` reports of a snapshot attempt.
pub fn snapshot_report(o: &SnapshotOutcome) -> SnapshotReport {
    match o {
        SnapshotOutcome::Taken(s) => SnapshotReport::Taken(SnapshotRow::from(s)),
        SnapshotOutcome::Unchanged => SnapshotReport::Unchanged,
        SnapshotOutcome::Pending => SnapshotReport::Pending,
    }
}

/// The running mount's status, with its broker connection.
fn live_status(vault: &Vault<NatsFabric>, ctl: &Control) -> Result<VaultStatus, FsError> {
    let mut s = vault.status()?;
    let link = vault.fabric_link().unwrap_or(Link { connected: false, since_ms: ctl.started_ms });
    s.fabric =
        Some(FabricLink { servers: ctl.servers.clone(), connected: link.connected, since_ms: link.since_ms });
    Ok(s)
}

/// Answers one request.
pub async fn answer(
    vault: Arc<Vault<NatsFabric>>,
    ctl: Control,
    request: Request,
    progress: Progress,
) -> Reply {
    let reply = match request {
        Request::Status => live_status(&vault, &ctl).map(|s| Reply::Status(Box::new(s))),
        Request::Nodes => vault.nodes().map(|n| Reply::Nodes(NodeRow::rows(&n))),
        Request::Snapshot => {
            vault.snapshot(SNAPSHOT_WAIT).await.map(|o| Reply::Snapshot(snapshot_report(&o)))
        }
        Request::Snapshots => {
            vault.snapshots().map(|l| Reply::Snapshots(l.iter().map(SnapshotRow::from).collect()))
        }
        Request::Share { path } => vault
            .share(&vault_path(&ctl.mountpoint, &path), SNAPSHOT_WAIT)
            .await
            .map(|cap| Reply::Shared { capability: cap.encode() }),
        Request::Audit { path, when } => {
            let scope = Scope::Path(vault_path(&ctl.mountpoint, &path));
            let report = move |done, total| progress.report(done, total);
            vault
                .audit(&scope, Replicas::all_if(when == AuditWhen::Now), Pace::Foreground, &report)
                .await
                .map(Reply::Audit)
        }
    };
    reply.unwrap_or_else(|e| Reply::Error { message: e.to_string() })
}
