//! `quloud snapshot`, `snapshots`, `restore`, `share`, and the read-only mounts of a snapshot
//! (`mount --snapshot ID`) and of a share (`mount --share CAP`).

use super::common::{
    ask, key_path, load_master_key, qr, signal_token, unexpected, Bus, ASK_WAIT, SNAPSHOT_WAIT,
};
use super::control::snapshot_report;
use super::files;
use super::open::{open_manifest, open_unmounted, serve_fuse};
use super::settle::wait_then_snapshot;
use crate::adapters::control::{Reply, Request};
use crate::adapters::fuse::MountSettings;
use crate::adapters::memory::MemoryManifest;
use crate::adapters::nats::fabric::NatsFabric;
use crate::adapters::redb::manifest::RedbManifests;
use crate::app::report::{SnapshotReport, SnapshotRow};
use crate::app::vault::{
    fetch_share, find_root, materialize_snapshot, run_pipeline, Claim, ManifestFile, PipelineStats,
    RootFound, Secrets, Vault, VaultOptions, RESTORED_MS,
};
use crate::cli::{MountOpts, RestoreArgs, ShareArgs, SnapshotArgs, SnapshotsArgs};
use crate::domain::keys::{MasterKey, VaultKeys};
use crate::domain::paper;
use crate::domain::share::Capability;
use crate::domain::size::format_size;
use crate::domain::snapshot::SnapshotInfo;
use crate::ports::clock::Clock;
use crate::ports::manifest::ManifestFiles;
use crate::render::{self, progress_bar, utc, Format};
use anyhow::{anyhow, bail, Context, Result};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a fetch of one batch of snapshot pieces may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// A progress bar callback for `what`.
fn progress(what: &'static str) -> impl Fn(u64, u64) + Sync {
    move |done, total| progress_bar(done, total, what)
}

/// A read-only connection: it never stores, so it leaves no ack consumer on the broker.
async fn connect_read_only(bus: &Bus, keys: &VaultKeys) -> Result<NatsFabric> {
    let mut opts = bus.fabric_options();
    opts.collect_acks = false;
    Ok(NatsFabric::connect(keys.ack_token(), opts, None).await?)
}

/// The vault's root record, with rollbacks and forgeries reported on stderr.
async fn root(fabric: &NatsFabric, keys: &VaultKeys, bus: &Bus) -> Result<RootFound> {
    let url = bus.display();
    let found = find_root(fabric, keys).await?.ok_or_else(|| {
        anyhow!(
            "no snapshot of this vault found at {url}: either the key belongs to another vault \
             (check it against your paper copy), or this vault never stored a snapshot there"
        )
    })?;
    for w in found.warnings() {
        eprintln!("warning: {w}");
    }
    Ok(found)
}

fn pick(found: &RootFound, id: Option<u64>) -> Result<SnapshotInfo> {
    let list = &found.record.snapshots;
    match id {
        None => list
            .iter()
            .max_by_key(|s| s.order())
            .copied()
            .ok_or_else(|| anyhow!("the root record lists no snapshot")),
        Some(id) => list.iter().find(|s| s.id == id).copied().ok_or_else(|| {
            let ids: Vec<String> = list.iter().map(|s| s.id.to_string()).collect();
            anyhow!("no snapshot {id}; the fabric keeps snapshots {}", ids.join(", "))
        }),
    }
}

/// Opens the unmounted vault of `home` with its uploader running, runs `f`, and saves.
async fn unmounted<T, E, Fut>(
    home: &Path,
    bus: &Bus,
    f: impl FnOnce(Arc<Vault<NatsFabric>>) -> Fut,
) -> Result<T>
where
    Fut: std::future::Future<Output = Result<T, E>>,
    anyhow::Error: From<E>,
{
    let (vault, _) = open_unmounted(home, bus, None).await?;
    let cancel = CancellationToken::new();
    let stats = Arc::new(PipelineStats::default());
    let pipeline = tokio::spawn(run_pipeline(vault.clone(), stats, cancel.clone()));
    let out = f(vault.clone()).await;
    cancel.cancel();
    let _ = pipeline.await;
    vault.checkpoint().context("saving the manifest")?;
    Ok(out?)
}

/// Rebuilds snapshot `info` into a manifest at `path`, with a progress bar.
async fn fetch_snapshot(
    fabric: &NatsFabric,
    keys: &VaultKeys,
    found: &RootFound,
    info: &SnapshotInfo,
    path: &Path,
) -> Result<()> {
    let progress = progress("snapshot pieces");
    materialize_snapshot(
        fabric,
        keys,
        &found.record,
        info,
        ManifestFile { path, files: &RedbManifests },
        FETCH_TIMEOUT,
        &progress,
    )
    .await
    .context("rebuilding the manifest from the snapshot")?;
    Ok(())
}

/// `quloud snapshot`: waits (up to `--wait`) until nothing is pending upload, then snapshots,
/// through the running mount if there is one, else on the vault opened here.
pub async fn snapshot(home: &Path, args: SnapshotArgs) -> Result<()> {
    let report = match ask(home, &Request::Status, ASK_WAIT).await {
        Ok(Some(Reply::Status(_))) => snapshot_mounted(home, args.wait).await,
        Ok(Some(other)) => return Err(unexpected(&other)),
        Ok(None) => {
            let bus = Bus::from_args(&args.nats, home)?;
            unmounted(home, &bus, |v| async move {
                let status = || {
                    let v = v.clone();
                    async move { Ok(v.status()?) }
                };
                let take = |within| {
                    let v = v.clone();
                    async move { Ok(snapshot_report(&v.snapshot(within).await?)) }
                };
                wait_then_snapshot(args.wait, status, take).await
            })
            .await
        }
        Err(e) => Err(e),
    }
    .context("snapshot failed")?;
    match (Format::from_json_flag(args.json), report) {
        (Format::Json, r) => println!("{}", render::snapshot_json(&r)),
        (Format::Text, SnapshotReport::Pending) => {
            bail!("files are still being uploaded; run `quloud snapshot` again once `quloud status` shows nothing pending")
        }
        (Format::Text, SnapshotReport::Unchanged) => {
            println!(
                "no file changed since the last snapshot; nothing stored (`quloud snapshots` lists them)"
            )
        }
        (Format::Text, SnapshotReport::Taken(s)) => print!("{}", render::snapshot_text(&s)),
    }
    Ok(())
}

/// `quloud snapshot` through the running mount's control socket.
async fn snapshot_mounted(home: &Path, wait: Duration) -> Result<SnapshotReport> {
    let status = || async move {
        match ask(home, &Request::Status, ASK_WAIT).await? {
            Some(Reply::Status(s)) => Ok(*s),
            Some(other) => Err(unexpected(&other)),
            None => bail!("the mount stopped answering on {}", home.join("control.sock").display()),
        }
    };
    // The mount bounds its own wait for the snapshot's pieces; `wait_then_snapshot` bounds ours.
    let take = |within: Duration| async move {
        match ask(home, &Request::Snapshot, within + ASK_WAIT).await? {
            Some(Reply::Snapshot(r)) => Ok(r),
            Some(other) => Err(unexpected(&other)),
            None => bail!("the mount stopped answering during the snapshot"),
        }
    };
    wait_then_snapshot(wait, status, take).await
}

/// `quloud snapshots`.
pub async fn snapshots(home: &Path, args: SnapshotsArgs) -> Result<()> {
    let list: Vec<SnapshotRow> = match ask(home, &Request::Snapshots, ASK_WAIT).await? {
        Some(Reply::Snapshots(list)) => list,
        Some(other) => return Err(unexpected(&other)),
        None if home.join("manifest.redb").exists() => {
            let mut rows: Vec<SnapshotInfo> =
                open_manifest(home)?.read()?.blobs(false)?.iter().map(|r| r.info).collect();
            rows.sort_by_key(|s| s.order());
            rows.iter().map(SnapshotRow::from).collect()
        }
        None => {
            let keys = load_master_key(home)?.derive();
            let bus = Bus::from_args(&args.nats, home)?;
            let fabric = connect_read_only(&bus, &keys).await?;
            let mut rows = root(&fabric, &keys, &bus).await?.record.snapshots;
            rows.sort_by_key(|s| s.order());
            rows.iter().map(SnapshotRow::from).collect()
        }
    };
    match Format::from_json_flag(args.json) {
        Format::Json => println!("{}", render::snapshots_json(&list)),
        Format::Text => print!("{}", render::snapshots_text(&list)),
    }
    Ok(())
}

/// `quloud restore MOUNTPOINT --key … | --key-file …`.
pub async fn restore(home: &Path, args: RestoreArgs) -> Result<()> {
    let text = match (&args.key, &args.key_file) {
        (Some(k), _) => k.clone(),
        (None, Some(f)) => {
            std::fs::read_to_string(f).with_context(|| format!("cannot read the key file {}", f.display()))?
        }
        (None, None) => bail!("give the paper key with --key or --key-file"),
    };
    let key: MasterKey =
        paper::from_printout(&text).map_err(|e| anyhow!("the paper key is not valid: {e}"))?;
    if key_path(home).exists() || home.join("manifest.redb").exists() {
        bail!(
            "{} already holds a vault; restore into a fresh home (pass --home DIR) so nothing is overwritten",
            home.display()
        );
    }
    let keys = key.derive();
    let bus = Bus::from_args(&args.nats, home)?;
    let fabric = connect_read_only(&bus, &keys).await?;
    let found = root(&fabric, &keys, &bus).await?;
    let info = pick(&found, args.snapshot)?;
    eprintln!(
        "restoring snapshot {} of {} ({} files, {})",
        info.id,
        utc(info.taken_ms),
        info.files,
        format_size(info.bytes)
    );
    files::create_private_dir(home)?;
    let manifest = home.join("manifest.redb");
    fetch_snapshot(&fabric, &keys, &found, &info, &manifest).await?;
    // From now on "last audit" and replica health are this home's own.
    let now = crate::adapters::clock::SystemClock.now_ms();
    open_manifest(home)?.write_durable(|tx| tx.set_meta(RESTORED_MS, now))?;
    files::write_new_private(&key_path(home), format!("{}\n", paper::encode(&key)).as_bytes())
        .with_context(|| format!("cannot write the master key to {}", key_path(home).display()))?;
    println!("vault restored into {} from snapshot {}", home.display(), info.id);
    drop(fabric);
    // Restoring moves the vault here: this home takes the writer lease, and a home that still
    // writes the vault stops (its last changes stay as a snapshot this one adopts).
    if args.no_mount {
        let state = unmounted(home, &bus, |v| async move { v.claim_writer(Claim::TakeOver).await }).await?;
        println!("{}", state.describe());
        return Ok(());
    }
    let mut opts = args.opts.clone();
    opts.take_over = true;
    super::mount::mount(home, &bus, &args.mountpoint, &opts, &signal_token()).await
}

/// `quloud share PATH [--qr]`.
pub async fn share(home: &Path, args: ShareArgs) -> Result<()> {
    let given = args.path.canonicalize().unwrap_or_else(|_| args.path.clone());
    let given = given.to_string_lossy().into_owned();
    let request = Request::Share { path: given.clone() };
    let capability = match ask(home, &request, SNAPSHOT_WAIT + Duration::from_secs(30)).await {
        Ok(Some(Reply::Shared { capability })) => capability,
        Ok(Some(other)) => return Err(unexpected(&other)),
        Err(e) => return Err(e.context(format!("cannot share {}", args.path.display()))),
        Ok(None) => unmounted(home, &Bus::from_args(&args.nats, home)?, |v| async move {
            v.share(&given, SNAPSHOT_WAIT).await
        })
        .await
        .with_context(|| format!("cannot share {}", args.path.display()))?
        .encode(),
    };
    let code = if args.qr { Some(qr(&capability)?) } else { None };
    print!("{}", render::shared_text(&args.path, &capability, code.as_deref()));
    Ok(())
}

fn read_only_settings(opts: &MountOpts, fsname: String) -> MountSettings {
    MountSettings { allow_other: opts.allow_other, read_only: true, threads: 4, fsname }
}

/// `quloud mount MOUNTPOINT --snapshot ID`: a past state of the vault, read-only.
pub async fn mount_snapshot(
    home: &Path,
    bus: &Bus,
    mountpoint: &Path,
    id: u64,
    opts: &MountOpts,
) -> Result<()> {
    let keys = Arc::new(load_master_key(home)?.derive());
    let fabric = connect_read_only(bus, &keys).await?;
    let found = root(&fabric, &keys, bus).await?;
    let info = pick(&found, Some(id))?;
    let dir = home.join("snapshots");
    files::create_private_dir(&dir)?;
    let manifest = dir.join(format!("{id}.redb"));
    if !manifest.exists() {
        fetch_snapshot(&fabric, &keys, &found, &info, &manifest).await?;
    }
    let vault_opts = VaultOptions { cache_bytes: opts.cache_size, ..VaultOptions::default() };
    let vault = Arc::new(Vault::load_read_only(
        RedbManifests.open_read_only(&manifest)?,
        &manifest,
        keys,
        vault_opts,
        Secrets::Owner,
        &crate::adapters::local::LocalFiles,
        Arc::new(crate::adapters::clock::SystemClock),
    )?);
    vault.set_fabric(Arc::new(fabric));
    let what = format!("snapshot {id} ({}, read-only)", utc(info.taken_ms));
    let settings = read_only_settings(opts, format!("quloud-snapshot-{id}"));
    serve_fuse(vault, mountpoint, &settings, &what, &signal_token()).await?;
    println!("snapshot unmounted");
    Ok(())
}

/// `quloud mount MOUNTPOINT --share CAP`: the subtree a capability grants, read-only. The share's
/// manifest, which holds every shared chunk's keys, lives only in this process's memory: nothing
/// of it reaches a disk, and nothing is left behind by a crash.
pub async fn mount_share(bus: &Bus, mountpoint: &Path, cap: &str, opts: &MountOpts) -> Result<()> {
    sweep_share_leftovers(&std::env::temp_dir());
    let cap = Capability::decode(cap)?;
    // A recipient has no vault: this throwaway key only names the connection; every chunk is
    // opened and proven for with the secrets the share lists.
    let keys = Arc::new(MasterKey::generate().derive());
    let fabric = connect_read_only(bus, &keys).await?;
    let dump = fetch_share(&fabric, &cap, FETCH_TIMEOUT, &progress("share pieces"))
        .await
        .map_err(|e| anyhow!("cannot open the share: {e}"))?;
    let manifest = MemoryManifest::import(&dump).map_err(|e| anyhow!("cannot open the share: {e}"))?;
    drop(dump);
    let vault_opts = VaultOptions { cache_bytes: opts.cache_size, ..VaultOptions::default() };
    // No local data: the path only names where none is kept.
    let nowhere = std::env::temp_dir().join("quloud-share-in-memory");
    let vault = Arc::new(Vault::load_read_only(
        Arc::new(manifest.into_read_only()),
        &nowhere,
        keys,
        vault_opts,
        Secrets::Shared,
        &crate::adapters::local::LocalFiles,
        Arc::new(crate::adapters::clock::SystemClock),
    )?);
    vault.set_fabric(Arc::new(fabric));
    let settings = read_only_settings(opts, "quloud-share".into());
    serve_fuse(vault, mountpoint, &settings, "share (read-only)", &signal_token()).await?;
    println!("share unmounted");
    Ok(())
}

/// Removes share manifests that share mounts of earlier versions kept, unencrypted, in `tmp`
/// (`quloud-share-*`) and that a crash left behind; those of other users are not ours to remove.
fn sweep_share_leftovers(tmp: &Path) {
    let Ok(entries) = std::fs::read_dir(tmp) else { return };
    for e in entries.flatten() {
        let name = e.file_name();
        if !name.to_string_lossy().starts_with("quloud-share-") || !e.file_type().is_ok_and(|t| t.is_dir()) {
            continue;
        }
        match std::fs::remove_dir_all(e.path()) {
            Ok(()) => {
                tracing::info!(dir = %e.path().display(), "removed a share manifest a crashed mount left")
            }
            Err(err) => {
                tracing::debug!(dir = %e.path().display(), error = %err, "share leftover not removed")
            }
        }
    }
}
