//! Composition root: turns a parsed command line into adapters and services and runs them.

use crate::adapters::disk::DiskChunkStore;
use crate::adapters::metrics::{http, node::NodeExporter, Exporter};
use crate::adapters::nats::fabric::FabricOptions;
use crate::adapters::nats::node::{run_node, NodeRunOptions};
use crate::adapters::nats::{connect::split_urls, BrokerConfig, Layout};
use crate::app::node::{NodePolicy, NodeService};
use crate::app::rate::RateLimit;
use crate::cli::{CheckArgs, Cli, Command, KeyCommand, NatsArgs, NodeArgs};
use crate::domain::identity::{NodeIdentity, IDENTITY_LEN};
use crate::domain::keys::MasterKey;
use crate::domain::{paper, unix_ms};
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::SystemTime;
use tokio_util::sync::CancellationToken;

mod audit;
mod check;
mod children;
mod files;
mod mount;
mod nats_user;
mod recovery;
mod up;
mod up_lock;

pub use check::{run_check, CheckReport};

/// Runs one command to completion.
pub async fn run(cli: Cli) -> Result<()> {
    let home = resolve_home(cli.home.as_deref())?;
    match cli.command {
        Command::Init => init(&home),
        Command::Key(KeyCommand::Show { reveal, qr }) => key_show(&home, reveal, qr),
        Command::Node(args) => node(args, &home).await,
        Command::Up(args) => up::up(&home, args).await,
        Command::Mount(args)
            if args.opts.metrics.is_some() && (args.snapshot.is_some() || args.share.is_some()) =>
        {
            bail!("--metrics is for the vault's own mount, not for --snapshot or --share mounts")
        }
        Command::Mount(args) => {
            let bus = Bus::from_args(&args.nats, &home)?;
            match (args.snapshot, &args.share) {
                (Some(id), _) => {
                    recovery::mount_snapshot(&home, &bus, &args.mountpoint, id, &args.opts).await
                }
                (None, Some(cap)) => recovery::mount_share(&bus, &args.mountpoint, cap, &args.opts).await,
                (None, None) => {
                    mount::mount(&home, &bus, &args.mountpoint, &args.opts, &signal_token()).await
                }
            }
        }
        Command::Status(args) => mount::status(&home, args.json).await,
        Command::Check(args) => check(args, &home).await,
        Command::Audit(args) => audit::audit(&home, args).await,
        Command::Nodes(args) => audit::nodes(&home, args.json).await,
        Command::Snapshot(args) => recovery::snapshot(&home, args).await,
        Command::Snapshots(args) => recovery::snapshots(&home, args).await,
        Command::Restore(args) => recovery::restore(&home, args).await,
        Command::Share(args) => recovery::share(&home, args).await,
        Command::NatsUser(args) => nats_user::nats_user(&home, &args),
    }
}

/// `--home`, else `$XDG_DATA_HOME/quloud`, else `~/.local/share/quloud`.
pub fn resolve_home(flag: Option<&Path>) -> Result<PathBuf> {
    if let Some(h) = flag {
        return Ok(h.to_path_buf());
    }
    if let Some(x) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(x).join("quloud"));
    }
    match std::env::var_os("HOME") {
        Some(h) => Ok(PathBuf::from(h).join(".local/share/quloud")),
        None => bail!("cannot find a home for Quloud's state: set --home DIR or QULOUD_HOME"),
    }
}

pub(crate) fn key_path(home: &Path) -> PathBuf {
    home.join("master.key")
}

/// Loads the master key of the vault at `home`.
pub fn load_master_key(home: &Path) -> Result<MasterKey> {
    let path = key_path(home);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("cannot read the master key at {}: run `quloud init` first (or pass --home)", path.display())
    })?;
    paper::decode(text.trim()).with_context(|| format!("master key file {} is damaged", path.display()))
}

pub(crate) fn qr(text: &str) -> Result<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(text.as_bytes()).context("cannot render the QR code")?;
    Ok(code.render::<Dense1x2>().quiet_zone(true).build())
}

/// Creates the master key; refuses to overwrite one.
pub fn init(home: &Path) -> Result<()> {
    let key = MasterKey::generate();
    let text = paper::encode(&key);
    files::create_private_dir(home)?;
    files::write_new_private(&key_path(home), format!("{text}\n").as_bytes()).with_context(|| {
        format!(
            "a master key already exists at {}; refusing to overwrite it (use `quloud key show --reveal` to see it)",
            key_path(home).display()
        )
    })?;
    println!("Created the master key of a new vault in {}.\n", home.display());
    print_paper_key(&text, true)?;
    Ok(())
}

fn print_paper_key(text: &str, with_qr: bool) -> Result<()> {
    println!("Your paper key (write it down, keep it safe; anyone holding it can read your vault):\n");
    println!("    {text}\n");
    if with_qr {
        println!("{}", qr(text)?);
    }
    println!("With this key and the fabric you can restore everything on a new machine.");
    Ok(())
}

fn key_show(home: &Path, reveal: bool, with_qr: bool) -> Result<()> {
    if !reveal {
        bail!("this prints your master secret; run `quloud key show --reveal` if no one is watching");
    }
    let key = load_master_key(home)?;
    print_paper_key(&paper::encode(&key), with_qr)
}

/// Loads the node identity at `path`, creating it (mode 0600) if missing.
pub fn load_or_create_identity(path: &Path) -> Result<NodeIdentity> {
    match std::fs::read(path) {
        Ok(bytes) => {
            let arr: [u8; IDENTITY_LEN] = bytes.as_slice().try_into().map_err(|_| {
                anyhow::anyhow!(
                    "node key file {} is damaged ({} bytes, expected {IDENTITY_LEN})",
                    path.display(),
                    bytes.len()
                )
            })?;
            Ok(NodeIdentity::from_bytes(&arr))
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = NodeIdentity::generate();
            files::write_new_private(path, &id.to_bytes())
                .with_context(|| format!("cannot create node key file {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read node key file {}", path.display())),
    }
}

/// Tunes glibc's allocator, before any thread starts, for the chunk-sized buffers that pass
/// through a mount or a node (chunks, ciphertexts, NATS receive buffers): one arena, and buffers
/// up to 8 MiB from it rather than from mmap, so a freed buffer's pages serve the next one
/// instead of being unmapped and faulted in again (a cold 1 GiB read: 3.66 s -> 3.43 s, the
/// mount's CPU 3.4 -> 3.0 s). The mount's long-lived buffers (cache entries) all come from the
/// cache's pool of one size (`READ_BUF`), so they do not fragment the arena: a 1 GiB write
/// until quorum-durable peaks at 302-304 MiB of resident memory, a cold read and `cmp` at
/// 311-327 MiB (with cache entries of every size: 558 MiB after a write, reads and `cmp`).
pub fn tune_allocator() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: mallopt only sets a tunable of the allocator; no memory is passed.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 8 * 1024 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 1);
    }
}

async fn node(args: NodeArgs, home: &Path) -> Result<()> {
    files::create_private_dir(&args.data)?;
    let key_file = args.key.clone().unwrap_or_else(|| args.data.join("node.key"));
    let id = load_or_create_identity(&key_file)?;
    let node_id = id.id();
    let store = DiskChunkStore::open(&args.data, id.clone(), args.capacity)
        .with_context(|| format!("cannot open the node's data directory {}", args.data.display()))?;
    let policy = NodePolicy {
        store_rate: RateLimit::per_second(args.store_rate),
        request_rate: RateLimit::per_second(args.request_rate),
        ..NodePolicy::default()
    };
    let svc = Arc::new(NodeService::new(id, Arc::new(store), policy, unix_ms(SystemTime::now())));
    println!("node id: {node_id}");
    let cancel = CancellationToken::new();
    let metrics = match args.metrics.addr {
        Some(addr) => {
            let exporter = Arc::new(NodeExporter::new(svc.clone()));
            Some(start_metrics(addr, args.metrics.public, exporter, cancel.clone()).await?)
        }
        None => None,
    };
    tokio::spawn(cancel_on_signal(cancel.clone()));
    let bus = Bus::from_args(&args.nats, home)?;
    let mut opts = NodeRunOptions::new(bus.broker);
    opts.layout = bus.layout;
    opts.store_concurrency = args.store_concurrency.max(1);
    opts.sweep_interval = args.sweep_interval.max(std::time::Duration::from_millis(100));
    let outcome = run_node(svc, opts, cancel.clone()).await;
    cancel.cancel();
    if let Some(server) = metrics {
        let _ = server.await;
    }
    outcome?;
    Ok(())
}

/// Binds the metrics endpoint (failing now if it cannot) and serves it until `cancel`.
pub(crate) async fn start_metrics(
    addr: std::net::SocketAddr,
    public: bool,
    exporter: Arc<dyn Exporter>,
    cancel: CancellationToken,
) -> Result<tokio::task::JoinHandle<()>> {
    let listener = http::bind(addr, public).await?;
    let local = listener.local_addr().context("metrics listener")?;
    if !local.ip().is_loopback() {
        tracing::warn!(%local, "metrics are served on a non-loopback address, without authentication");
    }
    println!("metrics at http://{local}/metrics, health at http://{local}/healthz");
    Ok(tokio::spawn(http::serve(listener, exporter, http::Limits::default(), cancel)))
}

/// A token cancelled by SIGINT or SIGTERM. The handlers are installed before it returns: from
/// then on a signal neither kills the process nor is lost, whatever the caller is doing.
pub fn signal_token() -> CancellationToken {
    use tokio::signal::unix::{signal, SignalKind};
    let token = CancellationToken::new();
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers: Ctrl-C will stop Quloud without cleaning up");
        return token;
    };
    let cancel = token.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
        cancel.cancel();
    });
    token
}

/// Cancels `token` on SIGINT or SIGTERM.
pub async fn cancel_on_signal(token: CancellationToken) {
    use tokio::signal::unix::{signal, SignalKind};
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt()))
    else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    token.cancel();
}

async fn check(args: CheckArgs, home: &Path) -> Result<()> {
    let report = run_check(&Bus::from_args(&args.nats, home)?, args.size, args.replicas).await?;
    if args.json {
        println!("{}", report.to_json());
    } else {
        report.print();
    }
    Ok(())
}

/// The broker a command connects to without `--nats` and without a running `quloud up`.
pub const DEFAULT_NATS: &str = "nats://127.0.0.1:4222";

/// The broker connection a command was given: servers, TLS, credentials and stream layout.
#[derive(Clone, Debug)]
pub struct Bus {
    /// Servers, TLS and credentials.
    pub broker: BrokerConfig,
    /// Streams' replica count.
    pub layout: Layout,
}

impl Bus {
    /// From the command line, checked (URLs parse, files exist) before anything connects.
    /// Without `--nats`: the broker of the `quloud up` running for `home`, else the default.
    pub fn from_args(args: &NatsArgs, home: &Path) -> Result<Bus> {
        let url = match &args.nats {
            Some(url) => url.clone(),
            None => match up_lock::running_url(&home.join("fabric")) {
                Some(url) => {
                    tracing::info!(%url, "no --nats given: using the broker of the `quloud up` running for this home");
                    url
                }
                None => DEFAULT_NATS.to_string(),
            },
        };
        let broker = BrokerConfig {
            servers: split_urls(&url),
            creds: args.nats_creds.clone(),
            nkey: args.nats_nkey.clone(),
            ca: args.nats_ca.clone(),
            client_cert: args.nats_client_cert.clone().zip(args.nats_client_key.clone()),
            inbox_prefix: args.nats_inbox_prefix.clone(),
            subscription_capacity: None,
            js_domain: args.js_domain.clone(),
        };
        broker.validate()?;
        if let Some(r) = args.js_replicas {
            if !(1..=5).contains(&r) {
                bail!("--js-replicas must be 1 to 5 (1 on one server, 3 on a cluster), not {r}");
            }
        }
        let layout = Layout { stream_replicas: args.js_replicas, ..Layout::default() };
        Ok(Bus { broker, layout })
    }

    /// A plain connection to `url` (one server or a comma-separated list), default layout.
    pub fn url(url: &str) -> Bus {
        Bus { broker: BrokerConfig::from(url), layout: Layout::default() }
    }

    /// Owner-side fabric options over this connection.
    pub fn fabric_options(&self) -> FabricOptions {
        let mut opts = FabricOptions::new(self.broker.clone());
        opts.layout = self.layout.clone();
        opts
    }

    /// The servers, for messages.
    pub fn display(&self) -> String {
        self.broker.display()
    }
}
