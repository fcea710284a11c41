//! `quloud audit` and `quloud nodes`: through the running mount's control socket when the vault
//! is mounted, otherwise by opening the vault here.

use super::mount::{ask, control_socket, health_options};
use super::{load_master_key, Bus};
use crate::adapters::nats::fabric::NatsFabric;
use crate::adapters::redb::manifest::Manifest;
use crate::app::vault::{
    nodes_json, nodes_render, nodes_view, AuditReport, Pace, Replicas, Scope, Vault, VaultOptions,
};
use crate::cli::{AuditArgs, MountOpts};
use anyhow::{bail, Context, Result};
use clap::Parser;
use std::io::{IsTerminal, Write};
use std::path::Path;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};

/// The audit's progress bar.
fn progress(done: u64, total: u64) {
    progress_bar(done, total, "replicas challenged");
}

/// Draws a progress bar on stderr when it is a terminal: `done` of `total` `what`.
pub(super) fn progress_bar(done: u64, total: u64, what: &str) {
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

/// The path as given, made absolute when it exists locally (so a path inside the mount can be
/// recognised by the mount); a vault path such as `/photos` is passed through.
fn given_path(path: Option<&Path>) -> String {
    match path {
        None => "/".to_string(),
        Some(p) => p.canonicalize().unwrap_or_else(|_| p.to_path_buf()).to_string_lossy().into_owned(),
    }
}

fn finish(at_risk: bool, body: &str) -> Result<()> {
    print!("{body}");
    if !body.ends_with('\n') {
        println!();
    }
    if at_risk {
        bail!("some data has fewer healthy replicas than wanted (listed above)");
    }
    Ok(())
}

/// `quloud audit [--now] [PATH]`.
pub async fn audit(home: &Path, args: AuditArgs) -> Result<()> {
    let path = given_path(args.path.as_deref());
    if let Ok(mut s) = tokio::net::UnixStream::connect(control_socket(home)).await {
        let when = if args.now { "now" } else { "due" };
        let format = if args.json { "json" } else { "text" };
        s.write_all(format!("audit {when} {format} {path}\n").as_bytes()).await?;
        let mut reader = tokio::io::BufReader::new(s);
        let mut line = String::new();
        loop {
            line.clear();
            if reader.read_line(&mut line).await? == 0 {
                bail!("the mount closed the control connection before the audit finished");
            }
            let words: Vec<&str> = line.split_whitespace().collect();
            match words.as_slice() {
                ["progress", d, t] => progress(d.parse().unwrap_or(0), t.parse().unwrap_or(0)),
                ["result", code] => {
                    let mut body = String::new();
                    reader.read_to_string(&mut body).await?;
                    return finish(*code != "0", &body);
                }
                _ => bail!("the mount could not run the audit: {}", line.trim()),
            }
        }
    }
    let report = audit_unmounted(home, &args, &path).await?;
    finish(!report.all_healthy(), &if args.json { report.to_json() } else { report.render() })
}

/// Opens the vault here (it is not mounted), connects to the fabric and runs the pass.
async fn audit_unmounted(home: &Path, args: &AuditArgs, path: &str) -> Result<AuditReport> {
    let (vault, _) = open_unmounted(home, &Bus::from_args(&args.nats, home)?, args.replicas).await?;
    let report = vault
        .audit(&Scope::Path(path.to_string()), Replicas::all_if(args.now), Pace::Foreground, &progress)
        .await;
    vault.checkpoint().context("saving the manifest")?;
    Ok(report?)
}

/// Opens the vault of `home` here (it is not mounted) with the defaults of `quloud mount`, and
/// hands it a fabric connection. `replicas` defaults to the number it was last mounted with.
pub(super) async fn open_unmounted(
    home: &Path,
    bus: &Bus,
    replicas: Option<usize>,
) -> Result<(Arc<Vault<NatsFabric>>, MountOpts)> {
    let key = load_master_key(home)?;
    if !home.join("manifest.redb").exists() {
        bail!("no vault manifest in {} (mount the vault once, or pass --home)", home.display());
    }
    // The replica count and disk cache budget the vault was last mounted with.
    let (mounted_replicas, disk_cache_bytes) = {
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let m = Manifest::open(&home.join("manifest.redb"), uid, gid)
            .with_context(|| format!("cannot open the vault in {}", home.display()))?;
        let rx = m.read()?;
        (rx.meta("replicas")?, rx.meta("disk_cache_bytes")?)
    };
    let replicas = replicas.unwrap_or(mounted_replicas.unwrap_or(3) as usize).max(1);
    // The defaults of `quloud mount` (lease, interval) apply to an unmounted audit.
    #[derive(Parser)]
    struct Defaults {
        #[command(flatten)]
        opts: MountOpts,
    }
    let defaults = Defaults::try_parse_from(["mount"]).context("default mount options")?.opts;
    let opts = VaultOptions {
        replicas,
        disk_cache_bytes: disk_cache_bytes.unwrap_or(defaults.disk_cache_size),
        health: health_options(&defaults),
        ..VaultOptions::default()
    };
    let keys = Arc::new(key.derive());
    let token = keys.ack_token();
    let vault = Vault::<NatsFabric>::load(
        home,
        keys,
        opts,
        &crate::adapters::local::LocalFiles,
        Arc::new(crate::adapters::clock::SystemClock),
    )
    .with_context(|| format!("cannot open the vault in {} (is it mounted elsewhere?)", home.display()))?;
    let mut fabric_opts = bus.fabric_options();
    fabric_opts.lease = defaults.lease;
    vault.set_fabric(Arc::new(NatsFabric::connect(token, fabric_opts, None).await?));
    Ok((Arc::new(vault), defaults))
}

/// `quloud nodes [--json]`.
pub async fn nodes(home: &Path, json: bool) -> Result<()> {
    if let Some(text) = ask(home, if json { "nodes" } else { "nodes text" }).await {
        print!("{text}");
        if json {
            println!();
        }
        return Ok(());
    }
    if !home.join("manifest.redb").exists() {
        bail!("no vault manifest in {} (mount the vault once, or pass --home)", home.display());
    }
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    let m = Manifest::open(&home.join("manifest.redb"), uid, gid)
        .with_context(|| format!("cannot open the vault in {}", home.display()))?;
    let view = nodes_view(&m)?;
    if json {
        println!("{}", nodes_json(&view));
    } else {
        print!("{}", nodes_render(&view));
    }
    Ok(())
}
