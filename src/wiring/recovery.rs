//! `quloud snapshot`, `snapshots`, `restore`, `share`, and the read-only mounts of a snapshot
//! (`mount --snapshot ID`) and of a share (`mount --share CAP`).

use super::audit::{open_unmounted, progress_bar};
use super::mount::{ask, ask_within, serve_fuse, SNAPSHOT_WAIT};
use super::{files, key_path, load_master_key, qr, Bus};
use crate::adapters::fuse::MountSettings;
use crate::adapters::nats::fabric::NatsFabric;
use crate::adapters::redb::manifest::Manifest;
use crate::app::vault::{
    find_root, materialize_share, materialize_snapshot, run_pipeline, PipelineStats, RootFound, Secrets,
    SnapshotOutcome, Vault, VaultOptions,
};
use crate::cli::{MountOpts, RestoreArgs, ShareArgs, SnapshotArgs, SnapshotsArgs};
use crate::domain::keys::{MasterKey, VaultKeys};
use crate::domain::paper;
use crate::domain::share::Capability;
use crate::domain::size::format_size;
use crate::domain::snapshot::SnapshotInfo;
use anyhow::{anyhow, bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long a fetch of one batch of snapshot pieces may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(30);

/// A snapshot outcome as JSON (the control socket's answer to `snapshot`).
pub fn outcome_json(o: &SnapshotOutcome) -> String {
    match o {
        SnapshotOutcome::Taken(s) => format!("{{\"taken\":{}}}", info_json(s)),
        SnapshotOutcome::Unchanged => "{\"unchanged\":true}".into(),
        SnapshotOutcome::Pending => "{\"pending\":true}".into(),
    }
}

fn info_json(s: &SnapshotInfo) -> String {
    format!(
        "{{\"id\":{},\"taken_ms\":{},\"taken\":{:?},\"files\":{},\"bytes\":{}}}",
        s.id,
        s.taken_ms,
        utc(s.taken_ms),
        s.files,
        s.bytes
    )
}

/// Snapshots as a JSON array.
pub fn snapshots_json(list: &[SnapshotInfo]) -> String {
    format!("[{}]", list.iter().map(info_json).collect::<Vec<_>>().join(","))
}

/// `YYYY-MM-DD HH:MM:SS UTC` of a Unix-ms time.
fn utc(ms: u64) -> String {
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

/// Snapshots as a table.
pub fn render(list: &[SnapshotInfo]) -> String {
    if list.is_empty() {
        return "no snapshots yet (the mount takes one at unmount and every --snapshot-interval; or run `quloud snapshot`)\n".into();
    }
    let mut out = format!("{:>6}  {:<23}  {:>9}  {:>10}\n", "ID", "TAKEN", "FILES", "SIZE");
    for s in list {
        out +=
            &format!("{:>6}  {:<23}  {:>9}  {:>10}\n", s.id, utc(s.taken_ms), s.files, format_size(s.bytes));
    }
    out
}

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
            .max_by_key(|s| s.id)
            .copied()
            .ok_or_else(|| anyhow!("the root record lists no snapshot")),
        Some(id) => list.iter().find(|s| s.id == id).copied().ok_or_else(|| {
            let ids: Vec<String> = list.iter().map(|s| s.id.to_string()).collect();
            anyhow!("no snapshot {id}; the fabric keeps snapshots {}", ids.join(", "))
        }),
    }
}

/// Opens the unmounted vault of `home` with its uploader running, runs `f`, and saves.
async fn unmounted<T, Fut>(home: &Path, bus: &Bus, f: impl FnOnce(Arc<Vault<NatsFabric>>) -> Fut) -> Result<T>
where
    Fut: std::future::Future<Output = Result<T, crate::app::vault::FsError>>,
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
    materialize_snapshot(fabric, keys, &found.record, info, path, FETCH_TIMEOUT, &progress)
        .await
        .context("rebuilding the manifest from the snapshot")?;
    Ok(())
}

/// `quloud snapshot`.
pub async fn snapshot(home: &Path, args: SnapshotArgs) -> Result<()> {
    let reply = match ask_within(home, "snapshot", SNAPSHOT_WAIT + Duration::from_secs(30)).await {
        Some(r) => r,
        None => outcome_json(
            &unmounted(home, &Bus::from_args(&args.nats, home)?, |v| async move {
                v.snapshot(SNAPSHOT_WAIT).await
            })
            .await?,
        ),
    };
    if reply.starts_with("{\"error\"") {
        bail!("snapshot failed: {reply}");
    }
    if args.json {
        println!("{reply}");
    } else if reply.contains("\"pending\"") {
        bail!("files are still being uploaded; run `quloud snapshot` again once `quloud status` shows nothing pending");
    } else if reply.contains("\"unchanged\"") {
        println!("no file changed since the last snapshot; nothing stored (`quloud snapshots` lists them)");
    } else {
        let field = |key| json_number(&reply, key).map_or_else(|| "?".into(), |n| n.to_string());
        let size = json_number(&reply, "bytes").map_or_else(|| "?".into(), format_size);
        let id = field("id");
        println!(
            "snapshot {id} stored: {} files, {size}; the vault's root record now points at it (see it with `quloud mount --snapshot {id}`)",
            field("files")
        );
    }
    Ok(())
}

/// A number in the flat JSON the control socket answers with (`"key":123`).
fn json_number(json: &str, key: &str) -> Option<u64> {
    let at = json.find(&format!("\"{key}\":"))? + key.len() + 3;
    json[at..].chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()
}

/// `quloud snapshots`.
pub async fn snapshots(home: &Path, args: SnapshotsArgs) -> Result<()> {
    if let Some(reply) = ask(home, if args.json { "snapshots" } else { "snapshots text" }).await {
        print!("{reply}");
        if args.json {
            println!();
        }
        return Ok(());
    }
    let list: Vec<SnapshotInfo> = if home.join("manifest.redb").exists() {
        // SAFETY: getuid/getgid have no preconditions.
        let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
        let m = Manifest::open(&home.join("manifest.redb"), uid, gid)
            .with_context(|| format!("cannot open the vault in {}", home.display()))?;
        let rows = m.read()?.blobs(false)?;
        rows.into_iter().map(|r| r.info).collect()
    } else {
        let keys = load_master_key(home)?.derive();
        let bus = Bus::from_args(&args.nats, home)?;
        let fabric = connect_read_only(&bus, &keys).await?;
        root(&fabric, &keys, &bus).await?.record.snapshots
    };
    if args.json {
        println!("{}", snapshots_json(&list));
    } else {
        print!("{}", render(&list));
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
        paper::decode(text.trim()).map_err(|e| anyhow!("the paper key is not valid: {e}"))?;
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
    files::write_new_private(&key_path(home), format!("{}\n", paper::encode(&key)).as_bytes())
        .with_context(|| format!("cannot write the master key to {}", key_path(home).display()))?;
    println!("vault restored into {} from snapshot {}", home.display(), info.id);
    drop(fabric);
    if args.no_mount {
        return Ok(());
    }
    super::mount::mount(home, &bus, &args.mountpoint, &args.opts, &super::signal_token()).await
}

/// `quloud share PATH [--qr]`.
pub async fn share(home: &Path, args: ShareArgs) -> Result<()> {
    let given = args.path.canonicalize().unwrap_or_else(|_| args.path.clone());
    let given = given.to_string_lossy().into_owned();
    let text =
        match ask_within(home, &format!("share {given}"), SNAPSHOT_WAIT + Duration::from_secs(30)).await {
            Some(reply) => {
                let cap = reply.split("\"capability\":\"").nth(1).and_then(|r| r.split('"').next());
                match cap {
                    Some(c) => c.to_string(),
                    None => bail!("cannot share {}: {reply}", args.path.display()),
                }
            }
            None => {
                let given = given.clone();
                unmounted(home, &Bus::from_args(&args.nats, home)?, |v| async move {
                    v.share(&given, SNAPSHOT_WAIT).await
                })
                .await
                .with_context(|| format!("cannot share {}", args.path.display()))?
                .encode()
            }
        };
    println!(
        "Read capability for {} (anyone holding it can read that subtree; it cannot be revoked):\n",
        args.path.display()
    );
    println!("{text}\n");
    if args.qr {
        println!("{}", qr(&text)?);
    }
    println!("The recipient mounts it with: quloud mount MOUNTPOINT --share {text}");
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
    serve_fuse(vault, mountpoint, &settings, &what, &super::signal_token()).await?;
    println!("snapshot unmounted");
    Ok(())
}

/// `quloud mount MOUNTPOINT --share CAP`: the subtree a capability grants, read-only.
pub async fn mount_share(bus: &Bus, mountpoint: &Path, cap: &str, opts: &MountOpts) -> Result<()> {
    let cap = Capability::decode(cap)?;
    // A recipient has no vault: this throwaway key only names the connection; every chunk is
    // opened and proven for with the secrets the share lists.
    let keys = Arc::new(MasterKey::generate().derive());
    let fabric = connect_read_only(bus, &keys).await?;
    let dir = tempfile_dir()?;
    let manifest = dir.join("share.redb");
    let fetched = materialize_share(&fabric, &cap, &manifest, FETCH_TIMEOUT, &progress("share pieces")).await;
    if let Err(e) = fetched {
        let _ = std::fs::remove_dir_all(&dir);
        return Err(anyhow!("cannot open the share: {e}"));
    }
    let vault_opts = VaultOptions { cache_bytes: opts.cache_size, ..VaultOptions::default() };
    let vault = Arc::new(Vault::load_read_only(
        &manifest,
        keys,
        vault_opts,
        Secrets::Shared,
        &crate::adapters::local::LocalFiles,
        Arc::new(crate::adapters::clock::SystemClock),
    )?);
    vault.set_fabric(Arc::new(fabric));
    let settings = read_only_settings(opts, "quloud-share".into());
    let served = serve_fuse(vault, mountpoint, &settings, "share (read-only)", &super::signal_token()).await;
    let _ = std::fs::remove_dir_all(&dir);
    served?;
    println!("share unmounted");
    Ok(())
}

/// A private temporary directory for a share's manifest.
fn tempfile_dir() -> Result<PathBuf> {
    let mut name = [0u8; 8];
    crate::domain::random_bytes(&mut name);
    let dir = std::env::temp_dir().join(format!("quloud-share-{}", crate::domain::ids::to_hex(&name)));
    files::create_private_dir(&dir)?;
    Ok(dir)
}
