//! `quloud mount` and `quloud status`: wires the manifest, the fabric, the pipeline and FUSE,
//! serves the control socket, and unmounts in order.

use super::common::{
    ask, control_socket, health_options, load_master_key, start_metrics, unexpected, writer_id, Bus, ASK_WAIT,
};
use super::control::{answer, Control};
use super::open::serve_fuse;
use crate::adapters::control::client::listening;
use crate::adapters::control::server::{ControlServer, Progress};
use crate::adapters::control::{Reply, Request};
use crate::adapters::fuse::MountSettings;
use crate::adapters::metrics::vault::VaultExporter;
use crate::adapters::nats::fabric::{FabricOptions, NatsFabric};
use crate::adapters::redb::manifest::RedbManifests;
use crate::app::vault::{
    run_houses, run_maintenance, run_pipeline, run_writer_watch, Claim, PipelineStats, SnapshotOutcome,
    Vault, VaultOptions, VaultStatus,
};
use crate::cli::MountOpts;
use crate::domain::ids::NodeId;
use crate::domain::placement::{HousePolicy, OwnHouse};
use crate::ports::fabric::FabricError;
use crate::render::{self, Format};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Whether `path` is a mount point in this mount namespace.
fn is_mounted(path: &Path) -> bool {
    let Ok(canon) = path.canonicalize() else { return false };
    let target = canon.to_string_lossy().replace(' ', "\\040");
    std::fs::read_to_string("/proc/self/mountinfo")
        .map(|t| t.lines().any(|l| l.split(' ').nth(4) == Some(target.as_str())))
        .unwrap_or(false)
}

/// Detects a mount left behind by a crash (ENOTCONN) and clears it with fusermount3.
fn clear_stale_mount(mountpoint: &Path) -> Result<()> {
    match std::fs::metadata(mountpoint) {
        Err(e) if e.raw_os_error() == Some(libc::ENOTCONN) => {
            tracing::warn!(path = %mountpoint.display(), "clearing a stale mount left by a crash");
            let status =
                std::process::Command::new("fusermount3").arg("-u").arg("-z").arg(mountpoint).status();
            if !matches!(status, Ok(s) if s.success()) {
                bail!(
                    "{} is a stale mount left by a crashed quloud; clear it with `fusermount3 -u {}`",
                    mountpoint.display(),
                    mountpoint.display()
                );
            }
            Ok(())
        }
        Err(e) => Err(e).with_context(|| format!("cannot use mount point {}", mountpoint.display())),
        Ok(m) if !m.is_dir() => bail!("mount point {} is not a directory", mountpoint.display()),
        Ok(_) if is_mounted(mountpoint) => {
            bail!(
                "{} is already mounted (unmount it with `fusermount3 -u {}`)",
                mountpoint.display(),
                mountpoint.display()
            )
        }
        Ok(_) => Ok(()),
    }
}

/// Keeps trying to connect to the fabric and hands it to the vault once connected.
async fn connect_in_background(
    vault: Arc<Vault<NatsFabric>>,
    token: crate::domain::ids::AckToken,
    opts: FabricOptions,
    claim: Claim,
    cancel: CancellationToken,
) {
    let url = opts.broker.display();
    let mut warned = false;
    loop {
        match NatsFabric::connect(token, opts.clone(), None).await {
            Ok(f) => {
                tracing::info!(%url, "connected to the fabric");
                vault.set_fabric(Arc::new(f));
                claim_writer(&vault, claim, &cancel).await;
                if let Err(e) = vault.check_root().await {
                    tracing::warn!(error = %e, "cannot check the vault's root record");
                }
                return;
            }
            Err(e) => {
                if !warned {
                    let why = match e {
                        FabricError::Refused { .. } => "the broker refused the credentials",
                        _ => "fabric unreachable",
                    };
                    tracing::warn!(error = %e, "{why}; serving cached and staged data, accepting writes, retrying every 5 s");
                    warned = true;
                }
            }
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// Claims the writer lease as `claim` says, retrying while the fabric does not answer.
async fn claim_writer(vault: &Vault<NatsFabric>, claim: Claim, cancel: &CancellationToken) {
    loop {
        match vault.claim_writer(claim).await {
            Ok(_) => return,
            Err(e) => tracing::warn!(error = %e, "cannot read the writer lease; retrying in 5 s"),
        }
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(5)) => {}
        }
    }
}

/// How long a mount waits for the writer lease before it mounts (read-write under the lease
/// last held when the fabric does not answer in time).
const CLAIM_WAIT: Duration = Duration::from_secs(10);

/// Serves the control socket of `home` for `vault` until `cancel`; a mount whose socket cannot be
/// bound still runs, unseen by `quloud status`.
fn start_control(
    tasks: &mut tokio::task::JoinSet<()>,
    vault: Arc<Vault<NatsFabric>>,
    home: &Path,
    ctl: Control,
    cancel: &CancellationToken,
) {
    match ControlServer::bind(&control_socket(home)) {
        Ok(server) => {
            let handler =
                move |req: Request, progress: Progress| answer(vault.clone(), ctl.clone(), req, progress);
            tasks.spawn(server.serve(handler, cancel.clone()));
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the control socket; `quloud status` will not see this mount")
        }
    }
}

/// Most time an unmount spends on its snapshot.
const UNMOUNT_SNAPSHOT_WAIT: Duration = Duration::from_secs(15);

/// Mounts the vault of `home` and serves it until `stop` (a signal: `common::signal_token`) or an
/// external unmount.
pub async fn mount(
    home: &Path,
    bus: &Bus,
    mountpoint: &Path,
    opts: &MountOpts,
    stop: &CancellationToken,
) -> Result<()> {
    let key = load_master_key(home)?;
    clear_stale_mount(mountpoint)?;
    let keys = Arc::new(key.derive());
    let token = keys.ack_token();
    let vault_opts = VaultOptions {
        replicas: opts.replicas.max(1),
        cache_bytes: opts.cache_size,
        disk_cache_bytes: opts.disk_cache_size,
        sync_quorum: opts.sync_quorum,
        health: health_options(opts),
        writer: writer_id(home)?,
        houses: house_policy(home, opts)?,
        ..VaultOptions::default()
    };
    if let Some(p) = &vault_opts.houses {
        println!("{}", placement_line(p, vault_opts.replicas));
    }
    let vault = Arc::new(
        Vault::load(
            home,
            super::open::open_manifest(home)?,
            keys,
            vault_opts,
            &crate::adapters::local::LocalFiles,
            Arc::new(crate::adapters::clock::SystemClock),
        )
        .with_context(|| format!("cannot open the vault in {} (is it mounted elsewhere?)", home.display()))?,
    );
    let cancel = CancellationToken::new();
    let stats = Arc::new(PipelineStats::default());
    // Bound before anything starts, so a taken or refused address fails the mount cleanly.
    let metrics = match opts.metrics {
        Some(addr) => {
            let started = crate::domain::unix_ms(std::time::SystemTime::now());
            let exporter = Arc::new(VaultExporter::new(vault.clone(), stats.clone(), started));
            Some(start_metrics(addr, opts.metrics_public, exporter, cancel.clone()).await?)
        }
        None => None,
    };
    let mut tasks = tokio::task::JoinSet::new();
    if let Some(server) = metrics {
        tasks.spawn(async move {
            let _ = server.await;
        });
    }
    let mut fabric_opts = bus.fabric_options();
    fabric_opts.lease = opts.lease;
    let claim = if opts.take_over { Claim::TakeOver } else { Claim::Keep };
    tasks.spawn(connect_in_background(vault.clone(), token, fabric_opts, claim, cancel.clone()));
    tasks.spawn(run_pipeline(vault.clone(), stats.clone(), cancel.clone()));
    tasks.spawn(run_maintenance(vault.clone(), cancel.clone()));
    tasks.spawn(run_writer_watch(vault.clone(), cancel.clone()));
    tasks.spawn(run_houses(vault.clone(), cancel.clone()));
    let writer = vault.writer_settled(CLAIM_WAIT).await;
    if writer.is_fenced() {
        eprintln!("mounting read-only: {}", writer.describe());
    }
    let canonical = mountpoint.canonicalize().unwrap_or_else(|_| mountpoint.to_path_buf());
    remember_mountpoint(home, &canonical);
    let started_ms = crate::domain::unix_ms(std::time::SystemTime::now());
    let ctl = Control { mountpoint: canonical, servers: bus.display(), started_ms };
    start_control(&mut tasks, vault.clone(), home, ctl, &cancel);
    let settings = MountSettings {
        allow_other: opts.allow_other,
        read_only: writer.is_fenced(),
        threads: 4,
        fsname: opts.fsname.clone().unwrap_or_else(|| format!("quloud:{}", home.display())),
    };
    serve_fuse(vault.clone(), mountpoint, &settings, "vault", stop).await?;
    // The last snapshot: while the uploader still runs (its pieces go through it).
    if vault.fabric_within(Duration::ZERO).await.is_some() {
        // Bounded, so an unmount never hangs on an unreachable broker; an unfinished snapshot
        // is completed by the next mount (an overdue snapshot is taken at its first pass).
        let started = std::time::Instant::now();
        let snap = tokio::time::timeout(UNMOUNT_SNAPSHOT_WAIT, vault.snapshot(UNMOUNT_SNAPSHOT_WAIT)).await;
        tracing::info!(ms = started.elapsed().as_millis() as u64, "the snapshot at unmount ended");
        match snap {
            Ok(Ok(SnapshotOutcome::Taken(s))) => println!("snapshot {} stored in the fabric", s.id),
            Ok(Ok(SnapshotOutcome::Pending)) => {
                println!("no snapshot at unmount: uploads are pending; the next mount takes one once they are durable, or run `quloud snapshot`")
            }
            Ok(Ok(SnapshotOutcome::Unchanged)) => {}
            Ok(Err(e)) => tracing::warn!(error = %e, "snapshot at unmount failed"),
            Err(_) => println!(
                "no snapshot at unmount: the fabric did not answer within {} s; the next mount takes one",
                UNMOUNT_SNAPSHOT_WAIT.as_secs()
            ),
        }
    }
    cancel.cancel();
    while tasks.join_next().await.is_some() {}
    vault.checkpoint().context("saving the manifest at unmount")?;
    println!("vault unmounted");
    Ok(())
}

/// Placement by houses for a vault whose home is a house (`quloud join`): the hub key and the
/// house name kept since joining; `None` for any other home (every node counts).
fn house_policy(home: &Path, opts: &MountOpts) -> Result<Option<HousePolicy>> {
    if !super::house_config::house_dir(home).join("house.json").exists() {
        return Ok(None);
    }
    let cfg = super::house_config::load_house(home)?;
    let hub_key = NodeId::from_hex(&cfg.hub_key)
        .with_context(|| format!("the hub key in {}/house/house.json is damaged", home.display()))?;
    let own_house = if opts.allow_own_house { OwnHouse::Allowed } else { OwnHouse::Excluded };
    Ok(Some(HousePolicy { hub_key, own: cfg.name, own_house }))
}

/// What a mount in a house says about where its replicas go.
fn placement_line(p: &HousePolicy, replicas: usize) -> String {
    match p.own_house {
        OwnHouse::Excluded => format!(
            "replicas: {replicas} per chunk, each in another house than {} (at most one per house;              --allow-own-house lets one stay here)",
            p.own
        ),
        OwnHouse::Allowed => format!(
            "replicas: {replicas} per chunk, at most one per house, one of them may be in this house ({})              (--allow-own-house)",
            p.own
        ),
    }
}

/// Prints the status of the vault in `home`, asking the running mount if there is one.
pub async fn status(home: &Path, format: Format) -> Result<()> {
    let status = match ask(home, &Request::Status, ASK_WAIT).await? {
        Some(Reply::Status(s)) => *s,
        Some(other) => return Err(unexpected(&other)),
        None => {
            let mut s = VaultStatus::offline(home, &crate::adapters::local::LocalFiles, &RedbManifests)
                .with_context(|| {
                    format!("no vault manifest in {} (mount the vault once, or pass --home)", home.display())
                })?;
            s.stale_mount = stale_mount(home).await;
            s
        }
    };
    match format {
        Format::Json => println!("{}", render::status_json(&status)),
        Format::Text => print!("{}", render::status_text(&status)),
    }
    Ok(())
}

/// Where the mount point of the last mount of `home` is recorded (for `quloud status`).
fn mountpoint_file(home: &Path) -> PathBuf {
    home.join("mountpoint")
}

/// Records the mount point, so that `quloud status` can tell a mount left by a crash.
fn remember_mountpoint(home: &Path, mountpoint: &Path) {
    if let Err(e) = std::fs::write(mountpoint_file(home), mountpoint.as_os_str().as_encoded_bytes()) {
        tracing::debug!(error = %e, "cannot record the mount point");
    }
}

/// The last mount point of `home`, if it is still a FUSE mount in the mount table while nothing
/// listens on the control socket: the mount process died (kill -9, a crash) and left it stale.
async fn stale_mount(home: &Path) -> Option<PathBuf> {
    let recorded = std::fs::read(mountpoint_file(home)).ok()?;
    let mp = PathBuf::from(<std::ffi::OsStr as std::os::unix::ffi::OsStrExt>::from_bytes(&recorded));
    if listening(&control_socket(home)).await {
        return None; // alive (just slow to answer)
    }
    let target = mp.to_string_lossy().replace(' ', "\\040");
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let fuse = |l: &str| l.split(" - ").nth(1).is_some_and(|rest| rest.starts_with("fuse"));
    table.lines().any(|l| l.split(' ').nth(4) == Some(target.as_str()) && fuse(l)).then_some(mp)
}
