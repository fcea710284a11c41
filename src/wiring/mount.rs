//! `quloud mount` and `quloud status`: wires the manifest, the fabric, the pipeline and FUSE,
//! serves the control socket, and unmounts in order.

use super::{load_master_key, Bus};
use crate::adapters::fuse::{mount as fuse_mount, MountSettings};
use crate::adapters::metrics::vault::VaultExporter;
use crate::adapters::nats::fabric::{FabricOptions, NatsFabric};
use crate::app::vault::{
    nodes_json, nodes_render, run_maintenance, run_pipeline, FabricLink, HealthOptions, Pace, PipelineStats,
    Replicas, Scope, SnapshotOutcome, Vault, VaultOptions, VaultStatus,
};
use crate::cli::MountOpts;
use crate::ports::fabric::{FabricError, Link};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

/// The control socket of a mounted vault.
pub fn control_socket(home: &Path) -> PathBuf {
    home.join("control.sock")
}

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
    cancel: CancellationToken,
) {
    let url = opts.broker.display();
    let mut warned = false;
    loop {
        match NatsFabric::connect(token, opts.clone(), None).await {
            Ok(f) => {
                tracing::info!(%url, "connected to the fabric");
                vault.set_fabric(Arc::new(f));
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

/// Maps a path given to `quloud audit` to a vault path: a path inside the mount loses the mount
/// point; anything else is taken as a path from the vault's root.
fn vault_path(mountpoint: &Path, given: &str) -> String {
    let p = Path::new(given);
    match p.strip_prefix(mountpoint) {
        Ok(rel) => format!("/{}", rel.to_string_lossy()),
        Err(_) => given.to_string(),
    }
}

/// Most time an unmount spends on its snapshot.
const UNMOUNT_SNAPSHOT_WAIT: Duration = Duration::from_secs(15);

/// How long `quloud snapshot` and `quloud share` wait for their pieces to be quorum-durable.
pub(super) const SNAPSHOT_WAIT: Duration = Duration::from_secs(600);

/// What the control socket needs besides the vault.
#[derive(Clone)]
struct Control {
    /// The mount point (canonical).
    mountpoint: PathBuf,
    /// The broker servers, for `status`.
    servers: String,
    /// When the mount started (Unix ms): disconnected since then until a first connection.
    started_ms: u64,
}

/// The running mount's status, with its broker connection.
fn live_status(vault: &Vault<NatsFabric>, ctl: &Control) -> Result<VaultStatus, crate::domain::fs::FsError> {
    let mut s = vault.status()?;
    let link = vault.fabric_link().unwrap_or(Link { connected: false, since_ms: ctl.started_ms });
    s.fabric =
        Some(FabricLink { servers: ctl.servers.clone(), connected: link.connected, since_ms: link.since_ms });
    Ok(s)
}

/// Answers one control connection: `status [text]`, `nodes [text]`, `snapshot`, `snapshots`,
/// `share <path>`, or
/// `audit <now|due> <json|text> <path>`, which streams `progress DONE TOTAL` lines and ends with
/// `result <0|1>` and the report.
async fn control_conn(vault: Arc<Vault<NatsFabric>>, ctl: Control, mut stream: tokio::net::UnixStream) {
    let mountpoint = ctl.mountpoint.clone();
    let mut line = String::new();
    let mut reader = tokio::io::BufReader::new(&mut stream);
    if tokio::time::timeout(Duration::from_secs(5), reader.read_line(&mut line)).await.is_err() {
        return;
    }
    let line = line.trim_end_matches('\n');
    let words: Vec<&str> = match line.strip_prefix("share ") {
        Some(path) => vec!["share", path],
        None => line.splitn(4, ' ').collect(),
    };
    let reply = match words.as_slice() {
        ["status"] => live_status(&vault, &ctl).map(|s| s.to_json()),
        ["status", "text"] => live_status(&vault, &ctl).map(|s| s.render()),
        ["nodes"] => vault.nodes().map(|n| nodes_json(&n)),
        ["nodes", "text"] => vault.nodes().map(|n| nodes_render(&n)),
        ["snapshot"] => vault.snapshot(SNAPSHOT_WAIT).await.map(|o| super::recovery::outcome_json(&o)),
        ["snapshots"] => vault.snapshots().map(|s| super::recovery::snapshots_json(&s)),
        ["snapshots", "text"] => vault.snapshots().map(|s| super::recovery::render(&s)),
        ["share", path] => vault
            .share(&vault_path(&mountpoint, path), SNAPSHOT_WAIT)
            .await
            .map(|cap| format!("{{\"capability\":{:?}}}", cap.encode())),
        ["audit", when, format, path] => {
            let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<(u64, u64)>();
            let scope = Scope::Path(vault_path(&mountpoint, path));
            let (force, json) = (*when == "now", *format == "json");
            let v = vault.clone();
            let run = tokio::spawn(async move {
                v.audit(&scope, Replicas::all_if(force), Pace::Foreground, &move |d, t| {
                    let _ = tx.send((d, t));
                })
                .await
            });
            while let Some((d, t)) = rx.recv().await {
                if stream.write_all(format!("progress {d} {t}\n").as_bytes()).await.is_err() {
                    break;
                }
            }
            match run.await {
                Ok(Ok(r)) => {
                    let body = if json { r.to_json() } else { r.render() };
                    Ok(format!("result {}\n{body}", u8::from(!r.all_healthy())))
                }
                Ok(Err(e)) => Err(e),
                Err(e) => Ok(format!("result 2\naudit task failed: {e}")),
            }
        }
        _ => Ok("{\"error\":\"unknown command\"}".to_string()),
    };
    let reply = reply.unwrap_or_else(|e| format!("{{\"error\":{:?}}}", e.to_string()));
    let _ = stream.write_all(reply.as_bytes()).await;
}

async fn serve_control(
    vault: Arc<Vault<NatsFabric>>,
    path: PathBuf,
    ctl: Control,
    cancel: CancellationToken,
) {
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::warn!(error = %e, "cannot open the control socket; `quloud status` will not see this mount");
            return;
        }
    };
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600));
    let bound = std::fs::metadata(&path).map(|m| m.ino()).ok();
    loop {
        let conn = tokio::select! {
            _ = cancel.cancelled() => break,
            c = listener.accept() => c,
        };
        let Ok((stream, _)) = conn else { continue };
        tokio::spawn(control_conn(vault.clone(), ctl.clone(), stream));
    }
    // Only our own socket: a mount of the same home started while this one shuts down has
    // already bound a new one there.
    if std::fs::metadata(&path).map(|m| m.ino()).ok() == bound {
        let _ = std::fs::remove_file(&path);
    }
}

/// The maintenance schedule chosen on the command line.
pub fn health_options(opts: &MountOpts) -> HealthOptions {
    HealthOptions {
        audit_interval: opts.audit_interval.max(Duration::from_secs(1)),
        audit_rate: opts.audit_rate.max(1),
        lease: opts.lease.max(Duration::from_secs(10)),
        gc_grace: opts.gc_grace,
        snapshot_interval: opts.snapshot_interval,
        retention: crate::domain::snapshot::Retention { last: opts.keep_last.max(1), daily: opts.keep_daily },
    }
}

/// Mounts the vault of `home` and serves it until `stop` (a signal: `super::signal_token`) or an
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
        ..VaultOptions::default()
    };
    let vault = Arc::new(
        Vault::load(
            home,
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
            Some(super::start_metrics(addr, opts.metrics_public, exporter, cancel.clone()).await?)
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
    tasks.spawn(connect_in_background(vault.clone(), token, fabric_opts, cancel.clone()));
    tasks.spawn(run_pipeline(vault.clone(), stats.clone(), cancel.clone()));
    tasks.spawn(run_maintenance(vault.clone(), cancel.clone()));
    let canonical = mountpoint.canonicalize().unwrap_or_else(|_| mountpoint.to_path_buf());
    remember_mountpoint(home, &canonical);
    let started_ms = crate::domain::unix_ms(std::time::SystemTime::now());
    let ctl = Control { mountpoint: canonical, servers: bus.display(), started_ms };
    tasks.spawn(serve_control(vault.clone(), control_socket(home), ctl, cancel.clone()));
    let settings = MountSettings {
        allow_other: opts.allow_other,
        read_only: false,
        threads: 4,
        fsname: opts.fsname.clone().unwrap_or_else(|| format!("quloud:{}", home.display())),
    };
    serve_fuse(vault.clone(), mountpoint, &settings, "vault", stop).await?;
    // The last snapshot: while the uploader still runs (its pieces go through it).
    if vault.fabric_within(Duration::ZERO).await.is_some() {
        // Bounded, so an unmount never hangs on an unreachable broker; an unfinished snapshot
        // is completed by the next mount (an overdue snapshot is taken at its first pass).
        let snap = tokio::time::timeout(UNMOUNT_SNAPSHOT_WAIT, vault.snapshot(UNMOUNT_SNAPSHOT_WAIT));
        match snap.await {
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

/// Mounts `vault` at `mountpoint` and serves it until `stop` or an external unmount; returns
/// once it is unmounted.
pub(super) async fn serve_fuse(
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
    tokio::task::spawn_blocking(move || {
        if let Err(e) = session.umount_and_join() {
            tracing::debug!(error = %e, "unmount");
        }
    })
    .await
    .ok();
    Ok(())
}

/// Sends one short command to the running mount of `home`; `None` when it is not mounted.
pub(super) async fn ask(home: &Path, command: &str) -> Option<String> {
    ask_within(home, command, Duration::from_secs(5)).await
}

/// `ask` for a command that may take up to `within`.
pub(super) async fn ask_within(home: &Path, command: &str, within: Duration) -> Option<String> {
    let live = async {
        let mut s = tokio::net::UnixStream::connect(control_socket(home)).await.ok()?;
        s.write_all(format!("{command}\n").as_bytes()).await.ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).await.ok()?;
        Some(out)
    };
    tokio::time::timeout(within, live).await.ok().flatten()
}

/// Prints the status of the vault in `home`, asking the running mount if there is one.
pub async fn status(home: &Path, json: bool) -> Result<()> {
    if let Some(text) = ask(home, if json { "status" } else { "status text" }).await {
        if json {
            println!("{text}");
        } else {
            print!("{text}");
        }
        return Ok(());
    }
    let mut s = VaultStatus::offline(home, &crate::adapters::local::LocalFiles).with_context(|| {
        format!("no vault manifest in {} (mount the vault once, or pass --home)", home.display())
    })?;
    s.stale_mount = stale_mount(home).await;
    if json {
        println!("{}", s.to_json());
    } else {
        print!("{}", s.render());
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
    if tokio::net::UnixStream::connect(control_socket(home)).await.is_ok() {
        return None; // alive (just slow to answer)
    }
    let target = mp.to_string_lossy().replace(' ', "\\040");
    let table = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let fuse = |l: &str| l.split(" - ").nth(1).is_some_and(|rest| rest.starts_with("fuse"));
    table.lines().any(|l| l.split(' ').nth(4) == Some(target.as_str()) && fuse(l)).then_some(mp)
}
