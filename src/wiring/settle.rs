//! `quloud snapshot` waiting for the vault to settle: it polls the vault's status until no file
//! is staged and no chunk is queued for upload, showing what is left, then snapshots; the whole
//! wait is bounded by `--wait`, after which it fails with its own exit code.

use crate::app::report::{SnapshotReport, VaultStatus};
use crate::domain::size::format_size;
use anyhow::Result;
use std::future::Future;
use std::io::{IsTerminal, Write};
use std::time::{Duration, Instant};

/// How often the status is asked while waiting.
const POLL: Duration = Duration::from_millis(250);
/// How often a plain (not a terminal) progress line is written while the figures change.
const PLAIN_EVERY: Duration = Duration::from_secs(5);

/// The exit code of `quloud snapshot` when `--wait` ran out (EX_TEMPFAIL: try again later).
pub const EXIT_WAIT_TIMED_OUT: u8 = 75;

/// What is still to upload before a snapshot can be taken.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Left {
    /// Files whose newest content is only in local staging.
    pub files: u64,
    /// Chunks in the upload queue.
    pub chunks: u64,
    /// Ciphertext bytes of those chunks.
    pub bytes: u64,
}

impl Left {
    /// From a vault's status.
    pub fn of(s: &VaultStatus) -> Left {
        Left { files: s.staged_files, chunks: s.queued, bytes: s.queued_bytes }
    }

    fn is_empty(&self) -> bool {
        self.files == 0 && self.chunks == 0
    }
}

impl std::fmt::Display for Left {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} files being sealed, {} chunks ({}) left to upload",
            self.files,
            self.chunks,
            format_size(self.bytes)
        )
    }
}

/// `--wait` ran out before the snapshot was stored.
#[derive(Debug, thiserror::Error)]
#[error(
    "no snapshot taken: {what} within --wait {wait:?}; {left}. Nothing is lost: the uploads go on \
     in the background; run `quloud snapshot` again later, or with a longer --wait"
)]
pub struct WaitTimedOut {
    /// What did not finish.
    pub what: &'static str,
    /// The `--wait` given.
    pub wait: Duration,
    /// What was still left.
    pub left: Left,
}

/// Waits until `status` shows nothing left to upload, then runs `snapshot` with the time that
/// remains; a snapshot that still finds something pending (a file closed meanwhile) waits again.
pub async fn wait_then_snapshot<S, SF, T, TF>(
    wait: Duration,
    mut status: S,
    mut snapshot: T,
) -> Result<SnapshotReport>
where
    S: FnMut() -> SF,
    SF: Future<Output = Result<VaultStatus>>,
    T: FnMut(Duration) -> TF,
    TF: Future<Output = Result<SnapshotReport>>,
{
    let deadline = Instant::now() + wait;
    let mut shown = Shown::new();
    loop {
        let left = Left::of(&status().await?);
        if left.is_empty() {
            let remaining = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(remaining, snapshot(remaining)).await {
                Ok(Ok(SnapshotReport::Pending)) => {}
                Ok(done) => {
                    shown.finish(None);
                    return done;
                }
                Err(_) => {
                    shown.finish(None);
                    let what = "the snapshot's pieces were not stored with quorum";
                    return Err(WaitTimedOut { what, wait, left }.into());
                }
            }
        } else {
            shown.show(&left);
        }
        if Instant::now() >= deadline {
            shown.finish(Some(&left));
            return Err(WaitTimedOut { what: "the pending uploads did not finish", wait, left }.into());
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Progress on stderr: one line that updates on a terminal, plain lines otherwise.
struct Shown {
    terminal: bool,
    last: Option<(Left, Instant)>,
}

impl Shown {
    fn new() -> Shown {
        Shown { terminal: std::io::stderr().is_terminal(), last: None }
    }

    fn show(&mut self, left: &Left) {
        let mut err = std::io::stderr();
        if self.terminal {
            let _ = write!(err, "\r\x1b[Kwaiting for uploads: {left}");
            let _ = err.flush();
        } else if self.last.is_none_or(|(l, at)| l != *left && at.elapsed() >= PLAIN_EVERY) {
            let _ = writeln!(err, "waiting for uploads: {left}");
        } else {
            return;
        }
        self.last = Some((*left, Instant::now()));
    }

    /// Ends the progress line (a terminal's), writing the final figures if given.
    fn finish(&mut self, left: Option<&Left>) {
        if let Some(left) = left {
            self.last = None;
            self.show(left);
        }
        if self.terminal && self.last.is_some() {
            let _ = writeln!(std::io::stderr());
        }
    }
}

/// The exit code for an error of a command: `EXIT_WAIT_TIMED_OUT` when a wait ran out, else 1.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<WaitTimedOut>().is_some() {
        EXIT_WAIT_TIMED_OUT
    } else {
        1
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering};

    fn pending(files: u64, chunks: u64) -> VaultStatus {
        VaultStatus { staged_files: files, queued: chunks, queued_bytes: chunks * 100, ..Default::default() }
    }

    #[tokio::test]
    async fn waits_until_nothing_is_left_then_snapshots() {
        let polls = AtomicU64::new(0);
        let status = || {
            let n = polls.fetch_add(1, Ordering::SeqCst);
            async move { Ok(pending(2u64.saturating_sub(n), 3u64.saturating_sub(n))) }
        };
        let took = AtomicU64::new(0);
        let snapshot = |_| {
            // The first attempt finds a file closed meanwhile.
            let n = took.fetch_add(1, Ordering::SeqCst);
            async move { Ok(if n == 0 { SnapshotReport::Pending } else { SnapshotReport::Unchanged }) }
        };
        let r = wait_then_snapshot(Duration::from_secs(30), status, snapshot).await.unwrap();
        assert_eq!(r, SnapshotReport::Unchanged);
        assert!(polls.load(Ordering::SeqCst) >= 5);
        assert_eq!(took.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_wait_that_runs_out_is_its_own_error() {
        let status = || async { Ok(pending(1, 4)) };
        let snapshot = |_| async { Ok(SnapshotReport::Unchanged) };
        let e = wait_then_snapshot(Duration::from_millis(300), status, snapshot).await.unwrap_err();
        assert_eq!(exit_code(&e), EXIT_WAIT_TIMED_OUT);
        let text = e.to_string();
        assert!(text.contains("1 files being sealed, 4 chunks") && text.contains("--wait"), "{text}");
        assert_eq!(exit_code(&anyhow::anyhow!("other")), 1);
    }
}
