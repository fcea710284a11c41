//! Opening a vault here: the manifest of an unmounted vault, the whole vault with a fabric
//! connection (for `audit`, `snapshot`, `share` without a mount), and serving one over FUSE.

use super::common::{health_options, load_master_key, Bus};
use crate::adapters::clock::SystemClock;
use crate::adapters::fuse::{mount as fuse_mount, MountSettings};
use crate::adapters::local::LocalFiles;
use crate::adapters::nats::fabric::NatsFabric;
use crate::adapters::redb::manifest::RedbManifests;
use crate::app::vault::{Vault, VaultOptions};
use crate::cli::MountOpts;
use crate::ports::manifest::{Manifest, ManifestFiles};
use anyhow::{bail, Context, Result};
use clap::Parser;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Opens the manifest of the vault in `home` (which must exist), as this user.
pub fn open_manifest(home: &Path) -> Result<Manifest> {
    // SAFETY: getuid/getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    RedbManifests
        .open(&home.join("manifest.redb"), uid, gid)
        .with_context(|| format!("cannot open the vault in {} (is it mounted elsewhere?)", home.display()))
}

/// Fails unless `home` holds a vault manifest.
pub fn require_manifest(home: &Path) -> Result<()> {
    if !home.join("manifest.redb").exists() {
        bail!("no vault manifest in {} (mount the vault once, or pass --home)", home.display());
    }
    Ok(())
}

/// Opens the vault of `home` here (it is not mounted) with the defaults of `quloud mount`, and
/// hands it a fabric connection. `replicas` defaults to the number it was last mounted with.
pub async fn open_unmounted(
    home: &Path,
    bus: &Bus,
    replicas: Option<usize>,
) -> Result<(Arc<Vault<NatsFabric>>, MountOpts)> {
    let key = load_master_key(home)?;
    require_manifest(home)?;
    // The replica count and disk cache budget the vault was last mounted with.
    let (mounted_replicas, disk_cache_bytes) = {
        let m = open_manifest(home)?;
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
        writer: super::common::writer_id(home)?,
        ..VaultOptions::default()
    };
    let keys = Arc::new(key.derive());
    let token = keys.ack_token();
    let vault =
        Vault::<NatsFabric>::load(home, open_manifest(home)?, keys, opts, &LocalFiles, Arc::new(SystemClock))
            .with_context(|| {
                format!("cannot open the vault in {} (is it mounted elsewhere?)", home.display())
            })?;
    let mut fabric_opts = bus.fabric_options();
    fabric_opts.lease = defaults.lease;
    vault.set_fabric(Arc::new(NatsFabric::connect(token, fabric_opts, None).await?));
    Ok((Arc::new(vault), defaults))
}

/// Mounts `vault` at `mountpoint` and serves it until `stop` or an external unmount; returns
/// once it is unmounted.
pub async fn serve_fuse(
    vault: Arc<Vault<NatsFabric>>,
    mountpoint: &Path,
    settings: &MountSettings,
    what: &str,
    stop: &CancellationToken,
) -> Result<()> {
    let session =
        fuse_mount(vault, tokio::runtime::Handle::current(), mountpoint, settings).with_context(|| {
            format!("cannot mount at {} (is fuse3 installed and /dev/fuse usable?)", mountpoint.display())
        })?;
    if let Err(e) = crate::adapters::fuse::raise_read_ahead(mountpoint) {
        tracing::info!(error = %e, "kept the kernel's 128 KiB read-ahead for the mount (as root, sequential reads ask for 1 MiB at a time; see OPERATIONS.md)");
    }
    println!(
        "{what} mounted at {} (Ctrl-C or `fusermount3 -u {}` to unmount)",
        mountpoint.display(),
        mountpoint.display()
    );
    loop {
        if session.guard.is_finished() {
            tracing::info!("unmounted externally");
            break;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
        }
    }
    let (allow_other, mountpoint) = (settings.allow_other, mountpoint.to_path_buf());
    let started = std::time::Instant::now();
    tracing::info!("unmounting {}", mountpoint.display());
    let watchdog = tokio::spawn(async move {
        for waited in (10..).step_by(10) {
            tokio::time::sleep(Duration::from_secs(10)).await;
            tracing::warn!(
                seconds = waited,
                waits_in = %kernel_waits(),
                "the kernel has not released the mount yet (open files or requests still in flight?)"
            );
        }
    });
    tokio::task::spawn_blocking(move || {
        // With `allow_other` the mount uses fusermount3's auto-unmount, and fuser's unmount then
        // only closes the socket that daemon watches; unmount explicitly so the join cannot wait
        // on it (`-z`: open files elsewhere do not keep the unmount from happening).
        if allow_other && !session.guard.is_finished() {
            let _ = std::process::Command::new("fusermount3").arg("-u").arg("-z").arg(&mountpoint).status();
        }
        if let Err(e) = session.umount_and_join() {
            tracing::debug!(error = %e, "unmount");
        }
    })
    .await
    .ok();
    watchdog.abort();
    tracing::info!(ms = started.elapsed().as_millis() as u64, "the kernel released the mount");
    Ok(())
}

/// Where this process's threads wait in the kernel (`/proc/self/task/*/wchan`, those not idle in
/// the scheduler), counted: what a slow unmount waits for.
fn kernel_waits() -> String {
    let mut waits: std::collections::BTreeMap<String, usize> = std::collections::BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").into_iter().flatten().flatten() {
        let wchan = std::fs::read_to_string(task.path().join("wchan")).unwrap_or_default();
        if !wchan.is_empty() && wchan != "0" {
            *waits.entry(wchan).or_default() += 1;
        }
    }
    waits.iter().map(|(w, n)| format!("{w}×{n}")).collect::<Vec<_>>().join(" ")
}
