//! `quloud audit` and `quloud nodes`: through the running mount's control socket when the vault
//! is mounted, otherwise by opening the vault here.

use super::common::{ask, control_socket, unexpected, Bus, ASK_WAIT};
use super::open::{open_manifest, open_unmounted, require_manifest};
use crate::adapters::control::client::{ControlClient, Wait};
use crate::adapters::control::{AuditWhen, Reply, Request};
use crate::app::report::{AuditReport, NodeRow};
use crate::app::vault::{nodes_view, Pace, Replicas, Scope};
use crate::cli::AuditArgs;
use crate::render::{self, progress_bar, Format};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// The audit's progress bar.
fn progress(done: u64, total: u64) {
    progress_bar(done, total, "replicas challenged");
}

/// The path as given, made absolute when it exists locally (so a path inside the mount can be
/// recognised by the mount); a vault path such as `/photos` is passed through.
fn given_path(path: Option<&Path>) -> String {
    match path {
        None => "/".to_string(),
        Some(p) => p.canonicalize().unwrap_or_else(|_| p.to_path_buf()).to_string_lossy().into_owned(),
    }
}

/// Prints the report; an error when something is at risk.
fn finish(report: &AuditReport, format: Format) -> Result<()> {
    let body = match format {
        Format::Json => render::audit_json(report),
        Format::Text => render::audit_text(report),
    };
    print!("{body}");
    if !body.ends_with('\n') {
        println!();
    }
    if !report.all_healthy() {
        bail!("some data has fewer healthy replicas than wanted (listed above)");
    }
    Ok(())
}

/// `quloud audit [--now] [PATH]`.
pub async fn audit(home: &Path, args: AuditArgs) -> Result<()> {
    let path = given_path(args.path.as_deref());
    let format = Format::from_json_flag(args.json);
    let when = if args.now { AuditWhen::Now } else { AuditWhen::Due };
    if let Ok(client) = ControlClient::connect(&control_socket(home)).await {
        let request = Request::Audit { path, when };
        return match client.ask(&request, Wait::UntilDone, &progress).await? {
            Reply::Audit(report) => finish(&report, format),
            Reply::Error { message } => bail!("the mount could not run the audit: {message}"),
            other => Err(unexpected(&other)),
        };
    }
    let report = audit_unmounted(home, &args, &path, when).await?;
    finish(&report, format)
}

/// Opens the vault here (it is not mounted), connects to the fabric and runs the pass.
async fn audit_unmounted(home: &Path, args: &AuditArgs, path: &str, when: AuditWhen) -> Result<AuditReport> {
    let (vault, _) = open_unmounted(home, &Bus::from_args(&args.nats, home)?, args.replicas).await?;
    let report = vault
        .audit(
            &Scope::Path(path.to_string()),
            Replicas::all_if(when == AuditWhen::Now),
            Pace::Foreground,
            &progress,
        )
        .await;
    vault.checkpoint().context("saving the manifest")?;
    Ok(report?)
}

/// `quloud nodes [--json]`.
pub async fn nodes(home: &Path, format: Format) -> Result<()> {
    let rows = match ask(home, &Request::Nodes, ASK_WAIT).await? {
        Some(Reply::Nodes(rows)) => rows,
        Some(other) => return Err(unexpected(&other)),
        None => {
            require_manifest(home)?;
            NodeRow::rows(&nodes_view(&open_manifest(home)?)?)
        }
    };
    match format {
        Format::Json => println!("{}", render::nodes_json(&rows)),
        Format::Text => print!("{}", render::nodes_text(&rows)),
    }
    Ok(())
}
