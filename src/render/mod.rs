//! Everything the CLI prints about the vault, in one place: the reports of `crate::app::report`
//! as text for people (`text`) and as JSON for programs (`json`, always through `serde_json`,
//! so the output is valid JSON whatever bytes a name holds), and the progress bar.

mod json;
mod text;

pub use json::{audit_json, check_json, nodes_json, snapshot_json, snapshots_json, status_json};
pub use text::{
    audit_text, check_text, nodes_text, shared_text, snapshot_text, snapshots_text, status_text, utc,
};

use std::io::{IsTerminal, Write};

/// How a command prints its report.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// For people.
    Text,
    /// For programs.
    Json,
}

impl Format {
    /// From a command's `--json` flag.
    pub fn from_json_flag(json: bool) -> Format {
        if json {
            Format::Json
        } else {
            Format::Text
        }
    }
}

/// Draws a progress bar on stderr when it is a terminal: `done` of `total` `what`.
pub fn progress_bar(done: u64, total: u64, what: &str) {
    let mut err = std::io::stderr();
    if !err.is_terminal() || total == 0 {
        return;
    }
    let width = 30;
    let filled = (done * width / total.max(1)) as usize;
    let _ = write!(
        err,
        "\r[{}{}] {done}/{total} {what}",
        "#".repeat(filled),
        ".".repeat(width as usize - filled)
    );
    if done == total {
        let _ = writeln!(err);
    }
    let _ = err.flush();
}
