//! The reports as text for people: tables and summaries, relative times against the clock now.

use crate::app::report::{AuditReport, CheckReport, FabricLink, NodeRow, SnapshotRow, VaultStatus};
use crate::domain::size::format_size;
use crate::domain::unix_ms;
use std::path::Path;
use std::time::SystemTime;

fn now_ms() -> u64 {
    unix_ms(SystemTime::now())
}

/// `1 chunk`, `2 chunks`.
fn chunk_count(n: u64) -> String {
    if n == 1 {
        "1 chunk".into()
    } else {
        format!("{n} chunks")
    }
}

/// `secs` as `42 s`, `5 min` or `3 h`.
fn format_age(secs: u64) -> String {
    match secs {
        0..120 => format!("{secs} s"),
        120..7200 => format!("{} min", secs / 60),
        _ => format!("{} h", secs / 3600),
    }
}

/// `YYYY-MM-DD HH:MM:SS UTC` of a Unix-ms time.
pub fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC", rem / 3600, rem % 3600 / 60, rem % 60)
}

fn fabric_text(link: &FabricLink) -> String {
    let ago = format_age(now_ms().saturating_sub(link.since_ms) / 1000);
    if link.connected {
        format!("connected to {} for {ago}", link.servers)
    } else {
        format!(
            "DISCONNECTED from {} for {ago}: reads of data not kept locally fail with EIO; \
             writes are kept and uploaded once it is back",
            link.servers
        )
    }
}

/// The status's first lines: whether it is mounted, and its broker connection.
fn mount_text(s: &VaultStatus) -> String {
    let mut out = match (&s.stale_mount, s.mounted) {
        (_, true) => "mounted       yes\n".to_string(),
        (Some(mp), false) => format!(
            "mounted       no: {mp} is a stale mount left by a quloud mount that died; clear it with \
             `fusermount3 -u {mp}` (the next `quloud mount` there also clears it)\n",
            mp = mp.display()
        ),
        (None, false) => "mounted       no\n".to_string(),
    };
    if let Some(link) = &s.fabric {
        out += &format!("fabric        {}\n", fabric_text(link));
    }
    out
}

/// Restored chunks whose replicas this home has not learned yet (shown only if any).
fn unverified_line(n: u64) -> String {
    match n {
        0 => String::new(),
        n => format!(
            "  unverified  {n} (restored snapshot pieces; the first audit here learns their replicas)\n"
        ),
    }
}

/// `quloud status`.
pub fn status_text(s: &VaultStatus) -> String {
    let audit = match s.last_audit {
        Some((at, checked, bad)) => {
            let ago = now_ms().saturating_sub(at) / 1000;
            format!("{ago} s ago: {checked} replicas challenged, {bad} did not pass")
        }
        None => match s.restored_ms {
            Some(at) => format!(
                "not audited yet since the restore of {}: replica health is as the snapshot recorded it",
                utc(at)
            ),
            None => "never".to_string(),
        },
    };
    let mut out = mount_text(s);
    if let Some(w) = &s.writer {
        out += &format!("writer        {}\n", w.describe());
    }
    out += &format!(
        "files         {} ({})\ninodes        {}\nchunks        {} ({} of unique data)\n  pending     {}\n  durable     {} (≥ {} healthy replicas)\n  degraded    {}\n{}  unused      {} (referenced by no file; deleted from nodes after the grace period)\nstaged files  {}\nupload queue  {} ({})\nsnapshots     {}\nlast audit    {audit}\ndisk cache    {} of {} ({} kept locally)\n",
        s.files,
        format_size(s.file_bytes),
        s.inodes,
        s.chunks,
        format_size(s.bytes),
        s.pending,
        s.durable,
        s.replicas,
        s.degraded,
        unverified_line(s.unverified),
        s.unreferenced,
        s.staged_files,
        chunk_count(s.queued),
        format_size(s.queued_bytes),
        s.snapshots,
        format_size(s.disk_cache.bytes),
        format_size(s.disk_cache.capacity),
        chunk_count(s.disk_cache.chunks)
    );
    if let Some(p) = &s.placement {
        out += &placement_text(p);
    }
    out += &churn_text(s);
    for k in &s.clocks.skewed {
        out +=
            &format!("clock         {}: requests to it carry its time; fix that box's NTP\n", k.describe());
    }
    if s.home_full {
        out.push_str("home disk     FULL: new data fails with ENOSPC; delete or move files (also through the mount) to free space\n");
    }
    if !s.per_node.is_empty() {
        out.push_str("replicas per node\n");
        for (n, c) in &s.per_node {
            out.push_str(&format!("  {n}  {c}\n"));
        }
    }
    out
}

/// The placement lines of `quloud status` for a vault in a house.
fn placement_text(p: &crate::app::report::PlacementStatus) -> String {
    let own = if p.own_house_allowed { "one replica may stay here" } else { "none here" };
    let reachable = match p.houses_reachable {
        Some(n) => format!("{n} eligible houses reachable"),
        None => "the hub has not listed the houses yet".into(),
    };
    let mut out =
        format!("placement     at most one replica per house, {own} (house {}); {reachable}\n", p.own_house);
    if let Some(why) = &p.waiting {
        out += &format!("  uploads wait: {why}\n");
    }
    out
}

/// Nodes by presence and the repair state (shown once any node was checked).
fn churn_text(s: &VaultStatus) -> String {
    let c = &s.churn;
    let mut out = String::new();
    if c.online + c.missing + c.offline + c.lapsed + c.written_off > 0 {
        out += &format!(
            "nodes         {} online, {} missing, {} offline (replicas still count), {} offline past grace, {} written off\n",
            c.online, c.missing, c.offline, c.lapsed, c.written_off
        );
    }
    if c.in_grace > 0 {
        out += &format!("  in grace    {} durable chunks count replicas on offline nodes\n", c.in_grace);
    }
    if c.vetting_chunks > 0 {
        out += &format!(
            "vetting       {} pending chunks wait for new nodes to pass their first audit\n",
            c.vetting_chunks
        );
    }
    for node in &c.failed_vetting {
        out += &format!(
            "  FAILED      node {node} failed its vetting audit: written off, its chunks go elsewhere\n"
        );
    }
    out += &match c.paused_reason() {
        Some(why) => format!("repair        PAUSED: {why}\n"),
        None => "repair        active\n".to_string(),
    };
    out
}

/// `quloud audit`.
pub fn audit_text(r: &AuditReport) -> String {
    let rate = if r.secs > 0.0 { r.checked as f64 / r.secs } else { 0.0 };
    let mut out = format!(
        "audited {} replicas of {} chunks in {} files in {:.1} s ({rate:.0}/s)\n  passed {}, wrong proof {}, not found {}, no answer {}\nhealed {} chunks ({})\n",
        r.checked, r.chunks, r.files, r.secs, r.passed, r.failed, r.not_found,
        r.silent, r.healed, format_size(r.healed_bytes)
    );
    if r.trimmed > 0 {
        out.push_str(&format!("deleted {} surplus replicas\n", r.trimmed));
    }
    if r.checked == 0 && r.chunks > 0 {
        out.push_str("  (no replica was due: each is challenged once per audit interval after its last proof; `--now` challenges them all)\n");
    }
    if r.at_risk.is_empty() {
        out.push_str("every chunk has its full set of healthy replicas\n");
    } else {
        out.push_str(&format!("{} at risk:\n", r.at_risk.len()));
        for (p, why) in r.at_risk.iter().take(50) {
            out.push_str(&format!("  {p}: {why}\n"));
        }
        if r.at_risk.len() > 50 {
            out.push_str(&format!("  … and {} more (use --json for all)\n", r.at_risk.len() - 50));
        }
    }
    out
}

/// `quloud nodes`.
pub fn nodes_text(nodes: &[NodeRow]) -> String {
    if nodes.is_empty() {
        return "no nodes known yet (nothing uploaded)\n".to_string();
    }
    let now = now_ms();
    let mut out = format!(
        "{:<64}  {:>7}  {:>7}  {:>6}  {:>9}  {:>10}  state\n",
        "node", "chunks", "passed", "failed", "latency", "last seen"
    );
    for n in nodes {
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
            n.node.to_string(),
            n.chunks,
            n.passed,
            n.failed,
            latency,
            seen
        ));
    }
    out
}

/// `quloud snapshots`.
pub fn snapshots_text(list: &[SnapshotRow]) -> String {
    if list.is_empty() {
        return "no snapshots yet (the mount takes one at unmount and every --snapshot-interval; or run `quloud snapshot`)\n".into();
    }
    let mut out = format!("{:>6}  {:>5}  {:<23}  {:>9}  {:>10}\n", "ID", "EPOCH", "TAKEN", "FILES", "SIZE");
    for s in list {
        let (taken, size) = (utc(s.taken_ms), format_size(s.bytes));
        out += &format!("{:>6}  {:>5}  {taken:<23}  {:>9}  {size:>10}\n", s.id, s.epoch, s.files);
    }
    out
}

/// `quloud snapshot` when it stored one.
pub fn snapshot_text(s: &SnapshotRow) -> String {
    format!(
        "snapshot {id} stored: {} files, {}; the vault's root record now points at it (see it with `quloud mount --snapshot {id}`)\n",
        s.files,
        format_size(s.bytes),
        id = s.id
    )
}

/// `quloud share`: the capability and how to use it (`qr`: its QR code, when asked for).
pub fn shared_text(path: &Path, capability: &str, qr: Option<&str>) -> String {
    let mut out = format!(
        "Read capability for {} (anyone holding it can read that subtree; it cannot be revoked):\n\n{capability}\n\n",
        path.display()
    );
    if let Some(code) = qr {
        out += &format!("{code}\n");
    }
    out + &format!("The recipient mounts it with: quloud mount MOUNTPOINT --share {capability}\n")
}

fn mib_s(bytes: u64, secs: f64) -> f64 {
    bytes as f64 / (1 << 20) as f64 / secs.max(1e-9)
}

/// `quloud check`.
pub fn check_text(r: &CheckReport) -> String {
    format!(
        "stored   {} in {} chunks with {} replicas each on {} nodes: {:.2}s until quorum-durable ({:.0} MiB/s)\n\
         read     everything back with proofs and verified it: {:.2}s ({:.0} MiB/s)\n\
         audited  {} of {} replicas passed\n\
         sealed   chunk + encrypt at {:.0} MiB/s\n",
        format_size(r.bytes),
        r.chunks,
        r.replicas,
        r.nodes,
        r.store_secs,
        mib_s(r.bytes, r.store_secs),
        r.get_secs,
        mib_s(r.bytes, r.get_secs),
        r.audits_passed,
        r.audits,
        mib_s(r.bytes, r.seal_secs)
    )
}

/// MiB/s of `bytes` in `secs`, for the JSON form too.
pub(super) fn rate_mib_s(bytes: u64, secs: f64) -> f64 {
    mib_s(bytes, secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_report_that_challenged_nothing_says_why_and_how_to_challenge_all() {
        let idle = AuditReport { files: 2, chunks: 5, ..AuditReport::default() };
        assert!(audit_text(&idle).contains("no replica was due"), "{}", audit_text(&idle));
        let done = AuditReport { files: 2, chunks: 5, checked: 15, passed: 15, ..AuditReport::default() };
        assert!(!audit_text(&done).contains("no replica was due"), "{}", audit_text(&done));
    }

    #[test]
    fn dates_are_civil_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400_000 + 3_723_000), "2000-02-29 01:02:03 UTC");
    }
}
