//! The reports as JSON for programs, written by `serde_json` from views that fix each field's
//! name and order (the documented `--json` forms).
//!
//! Names and paths: a string field holds the name decoded as UTF-8, with any invalid bytes
//! replaced by U+FFFD, so the output is always valid JSON; where the original bytes are not
//! valid UTF-8 (a mount point's path), a sibling field `<field>_bytes` holds them losslessly as
//! an array of byte values, and is absent otherwise. Control characters, quotes and
//! backslashes are escaped as JSON requires; composed and decomposed forms are kept as they are.
//! Durations are seconds rounded to the precision shown (milliseconds for an audit).

use super::text::{rate_mib_s, utc};
use crate::app::report::{AuditReport, CheckReport, NodeRow, SnapshotReport, SnapshotRow, VaultStatus};
use serde::Serialize;
use std::collections::BTreeMap;
use std::os::unix::ffi::OsStrExt;

/// `x` rounded to `digits` decimals.
fn round(x: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (x * scale).round() / scale
}

/// Compact JSON of a view; views hold only strings, numbers, booleans, maps and sequences,
/// which serialize without error.
fn to_json(view: &impl Serialize) -> String {
    serde_json::to_string(view).unwrap_or_else(|e| serde_json::json!({ "error": e.to_string() }).to_string())
}

#[derive(Serialize)]
struct FabricView<'a> {
    servers: &'a str,
    connected: bool,
    since_ms: u64,
}

#[derive(Serialize)]
struct LastAuditView {
    at_ms: u64,
    checked: u64,
    not_passed: u64,
}

#[derive(Serialize)]
struct StatusView<'a> {
    mounted: bool,
    fabric: Option<FabricView<'a>>,
    stale_mount: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    stale_mount_bytes: Option<&'a [u8]>,
    inodes: u64,
    files: u64,
    file_bytes: u64,
    chunks: u64,
    bytes: u64,
    pending: u64,
    durable: u64,
    degraded: u64,
    unverified: u64,
    restored_ms: Option<u64>,
    unreferenced: u64,
    staged_files: u64,
    queued: u64,
    queued_bytes: u64,
    snapshots: u64,
    last_snapshot_ms: Option<u64>,
    replicas: usize,
    per_node: BTreeMap<String, u64>,
    last_audit: Option<LastAuditView>,
    disk_cache_bytes: u64,
    disk_cache_capacity: u64,
    home_full: bool,
    /// Whether this home may write (the writer lease) and why not; `null` when not mounted.
    writer: Option<WriterView<'a>>,
    /// Placement by houses; `null` outside a house or when not mounted.
    placement: Option<&'a crate::app::report::PlacementStatus>,
    /// Nodes by presence under the churn policy.
    nodes: NodesView,
    /// Durable chunks that reach N only by counting offline replicas within the grace.
    in_grace: u64,
    /// Whether repair is paused, and why.
    repair: RepairView,
    /// Nodes whose clock is off, with what to say about each.
    clock_skew: Vec<SkewView>,
    /// Gets aimed at one node that waited the whole reply timeout for it.
    get_timeouts: u64,
    /// Chunks waiting for new nodes' vetting audit, and nodes that failed it.
    vetting: VettingView<'a>,
}

#[derive(Serialize)]
struct VettingView<'a> {
    chunks: u64,
    failed_nodes: &'a [String],
}

#[derive(Serialize)]
struct SkewView {
    node: String,
    offset_ms: i64,
    message: String,
}

#[derive(Serialize)]
struct WriterView<'a> {
    #[serde(flatten)]
    state: &'a crate::app::report::WriterState,
    read_only: bool,
    reason: String,
}

#[derive(Serialize)]
struct NodesView {
    online: u64,
    missing: u64,
    offline: u64,
    offline_past_grace: u64,
    written_off: u64,
}

#[derive(Serialize)]
struct RepairView {
    paused: bool,
    reason: Option<String>,
}

/// `quloud status --json`.
pub fn status_json(s: &VaultStatus) -> String {
    let stale = s.stale_mount.as_ref().map(|p| p.as_os_str().as_bytes());
    to_json(&StatusView {
        mounted: s.mounted,
        fabric: s.fabric.as_ref().map(|f| FabricView {
            servers: &f.servers,
            connected: f.connected,
            since_ms: f.since_ms,
        }),
        stale_mount: stale.map(|b| String::from_utf8_lossy(b).into_owned()),
        stale_mount_bytes: stale.filter(|b| std::str::from_utf8(b).is_err()),
        inodes: s.inodes,
        files: s.files,
        file_bytes: s.file_bytes,
        chunks: s.chunks,
        bytes: s.bytes,
        pending: s.pending,
        durable: s.durable,
        degraded: s.degraded,
        unverified: s.unverified,
        restored_ms: s.restored_ms,
        unreferenced: s.unreferenced,
        staged_files: s.staged_files,
        queued: s.queued,
        queued_bytes: s.queued_bytes,
        snapshots: s.snapshots,
        last_snapshot_ms: s.last_snapshot_ms,
        replicas: s.replicas,
        per_node: s.per_node.iter().map(|(n, c)| (n.to_string(), *c)).collect(),
        last_audit: s.last_audit.map(|(at_ms, checked, not_passed)| LastAuditView {
            at_ms,
            checked,
            not_passed,
        }),
        disk_cache_bytes: s.disk_cache.bytes,
        disk_cache_capacity: s.disk_cache.capacity,
        home_full: s.home_full,
        writer: s.writer.as_ref().map(|w| WriterView {
            state: w,
            read_only: w.is_fenced(),
            reason: w.describe(),
        }),
        placement: s.placement.as_ref(),
        nodes: NodesView {
            online: s.churn.online,
            missing: s.churn.missing,
            offline: s.churn.offline,
            offline_past_grace: s.churn.lapsed,
            written_off: s.churn.written_off,
        },
        in_grace: s.churn.in_grace,
        repair: RepairView { paused: s.churn.repair_paused.is_some(), reason: s.churn.paused_reason() },
        clock_skew: s
            .clocks
            .skewed
            .iter()
            .map(|k| SkewView { node: k.node.to_string(), offset_ms: k.offset_ms, message: k.describe() })
            .collect(),
        get_timeouts: s.clocks.get_timeouts,
        vetting: VettingView { chunks: s.churn.vetting_chunks, failed_nodes: &s.churn.failed_vetting },
    })
}

#[derive(Serialize)]
struct RiskView<'a> {
    path: &'a str,
    reason: &'a str,
}

#[derive(Serialize)]
struct AuditView<'a> {
    files: u64,
    chunks: u64,
    checked: u64,
    passed: u64,
    failed: u64,
    not_found: u64,
    silent: u64,
    healed: u64,
    healed_bytes: u64,
    trimmed: u64,
    challenge_secs: f64,
    heal_secs: f64,
    secs: f64,
    healthy: bool,
    at_risk: Vec<RiskView<'a>>,
}

/// `quloud audit --json`.
pub fn audit_json(r: &AuditReport) -> String {
    to_json(&AuditView {
        files: r.files,
        chunks: r.chunks,
        checked: r.checked,
        passed: r.passed,
        failed: r.failed,
        not_found: r.not_found,
        silent: r.silent,
        healed: r.healed,
        healed_bytes: r.healed_bytes,
        trimmed: r.trimmed,
        challenge_secs: round(r.challenge_secs, 3),
        heal_secs: round(r.heal_secs, 3),
        secs: round(r.secs, 3),
        healthy: r.all_healthy(),
        at_risk: r.at_risk.iter().map(|(path, reason)| RiskView { path, reason }).collect(),
    })
}

#[derive(Serialize)]
struct NodeView {
    node: String,
    chunks: u64,
    audits_passed: u64,
    audits_failed: u64,
    consecutive_failures: u32,
    latency_ms: f64,
    last_seen_ms: u64,
    written_off: bool,
}

/// `quloud nodes --json`.
pub fn nodes_json(nodes: &[NodeRow]) -> String {
    let rows: Vec<NodeView> = nodes
        .iter()
        .map(|n| NodeView {
            node: n.node.to_string(),
            chunks: n.chunks,
            audits_passed: n.passed,
            audits_failed: n.failed,
            consecutive_failures: n.consecutive_failures,
            latency_ms: round(n.latency_us as f64 / 1000.0, 2),
            last_seen_ms: n.last_seen_ms,
            written_off: n.written_off,
        })
        .collect();
    to_json(&rows)
}

#[derive(Serialize)]
struct SnapshotView {
    id: u64,
    taken_ms: u64,
    taken: String,
    files: u64,
    bytes: u64,
    epoch: u64,
}

fn snapshot_view(s: &SnapshotRow) -> SnapshotView {
    let (id, taken_ms, files, bytes, epoch) = (s.id, s.taken_ms, s.files, s.bytes, s.epoch);
    SnapshotView { id, taken_ms, taken: utc(taken_ms), files, bytes, epoch }
}

/// `quloud snapshots --json`.
pub fn snapshots_json(list: &[SnapshotRow]) -> String {
    to_json(&list.iter().map(snapshot_view).collect::<Vec<_>>())
}

#[derive(Serialize)]
#[serde(rename_all = "snake_case")]
enum OutcomeView {
    Taken(SnapshotView),
    Unchanged(bool),
    Pending(bool),
}

/// `quloud snapshot --json`: `{"taken":{…}}`, `{"unchanged":true}` or `{"pending":true}`.
pub fn snapshot_json(o: &SnapshotReport) -> String {
    to_json(&match o {
        SnapshotReport::Taken(s) => OutcomeView::Taken(snapshot_view(s)),
        SnapshotReport::Unchanged => OutcomeView::Unchanged(true),
        SnapshotReport::Pending => OutcomeView::Pending(true),
    })
}

#[derive(Serialize)]
struct CheckView {
    bytes: u64,
    chunks: usize,
    replicas: usize,
    nodes: usize,
    seal_secs: f64,
    store_secs: f64,
    get_secs: f64,
    store_mib_s: f64,
    get_mib_s: f64,
    audits_passed: usize,
    audits: usize,
}

/// `quloud check --json`.
pub fn check_json(r: &CheckReport) -> String {
    to_json(&CheckView {
        bytes: r.bytes,
        chunks: r.chunks,
        replicas: r.replicas,
        nodes: r.nodes,
        seal_secs: round(r.seal_secs, 4),
        store_secs: round(r.store_secs, 4),
        get_secs: round(r.get_secs, 4),
        store_mib_s: round(rate_mib_s(r.bytes, r.store_secs), 1),
        get_mib_s: round(rate_mib_s(r.bytes, r.get_secs), 1),
        audits_passed: r.audits_passed,
        audits: r.audits,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::report::FabricLink;
    use crate::domain::health::NodeRecord;
    use crate::domain::ids::NodeId;
    use serde_json::{json, Value};
    use std::ffi::OsStr;
    use std::path::PathBuf;

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap_or_else(|e| panic!("not valid JSON ({e}): {text}"))
    }

    /// Names a user can give a file: decomposed (NFD), with control characters, quotes, and bytes
    /// that are not UTF-8 (shown as U+FFFD).
    const NAMES: [&str; 4] =
        ["/e\u{301}t\u{e9}", "/line\nbreak\u{1}\u{7f}", "/\"quoted\" \\ back", "/bad\u{FFFD}"];

    #[test]
    fn audit_json_carries_any_name_and_parses_back() {
        let r = AuditReport {
            checked: 3,
            secs: 1.23456,
            at_risk: NAMES.iter().map(|n| (n.to_string(), "why: \"x\"\t".to_string())).collect(),
            ..AuditReport::default()
        };
        let v = parse(&audit_json(&r));
        let paths: Vec<&str> =
            v["at_risk"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
        assert_eq!(paths, NAMES);
        assert_eq!(v["at_risk"][0]["reason"], "why: \"x\"\t");
        assert_eq!(
            (v["checked"].clone(), v["secs"].clone(), v["healthy"].clone()),
            (json!(3), json!(1.235), json!(false))
        );
        let line = audit_json(&r);
        assert!(!line.contains('\n'), "one line: {line}");
    }

    #[test]
    fn status_json_keeps_a_non_utf8_mount_point_losslessly() {
        let raw: &[u8] = b"/mnt/e\xcc\x81\n\x01\xff";
        let mut s = VaultStatus {
            stale_mount: Some(PathBuf::from(OsStr::from_bytes(raw))),
            fabric: Some(FabricLink { servers: "nats://a\u{1}".into(), connected: false, since_ms: 7 }),
            ..VaultStatus::default()
        };
        s.per_node.insert(NodeId([1; 32]), 4);
        let text = status_json(&s);
        let v = parse(&text);
        assert_eq!(v["stale_mount"], "/mnt/e\u{301}\n\u{1}\u{FFFD}");
        let bytes: Vec<u8> =
            v["stale_mount_bytes"].as_array().unwrap().iter().map(|b| b.as_u64().unwrap() as u8).collect();
        assert_eq!(bytes, raw);
        assert_eq!(v["fabric"]["servers"], "nats://a\u{1}");
        assert_eq!(v["per_node"][NodeId([1; 32]).to_string()], 4);
        assert!(text.starts_with("{\"mounted\":false,\"fabric\":{\"servers\""), "{text}");
    }

    #[test]
    fn status_json_names_a_utf8_mount_point_once() {
        let s = VaultStatus { stale_mount: Some("/mnt/v\u{e9}".into()), ..VaultStatus::default() };
        let text = status_json(&s);
        assert!(
            text.starts_with(
                "{\"mounted\":false,\"fabric\":null,\"stale_mount\":\"/mnt/v\u{e9}\",\"inodes\":0"
            ),
            "{text}"
        );
        assert!(!text.contains("stale_mount_bytes"), "{text}");
        assert!(status_json(&VaultStatus::default()).contains("\"stale_mount\":null,"));
    }

    #[test]
    fn nodes_snapshots_and_check_json_parse_back() {
        let rec = NodeRecord { passed: 2, latency_us: 1234, last_seen_ms: 9, ..NodeRecord::default() };
        let v = parse(&nodes_json(&[NodeRow::new(NodeId([2; 32]), &rec, 5)]));
        assert_eq!(v[0]["node"], NodeId([2; 32]).to_string());
        assert_eq!((v[0]["chunks"].clone(), v[0]["latency_ms"].clone()), (json!(5), json!(1.23)));
        let row = SnapshotRow { id: 3, taken_ms: 0, files: 1, bytes: 2, epoch: 1 };
        let v = parse(&snapshots_json(&[row]));
        assert_eq!(v[0]["taken"], "1970-01-01 00:00:00 UTC");
        assert_eq!(parse(&snapshot_json(&SnapshotReport::Taken(row)))["taken"]["id"], 3);
        assert_eq!(snapshot_json(&SnapshotReport::Pending), "{\"pending\":true}");
        assert_eq!(snapshot_json(&SnapshotReport::Unchanged), "{\"unchanged\":true}");
        let c = CheckReport { bytes: 1 << 20, store_secs: 0.5, nodes: 3, ..CheckReport::default() };
        let v = parse(&check_json(&c));
        assert_eq!((v["nodes"].clone(), v["store_mib_s"].clone()), (json!(3), json!(2.0)));
    }
}
