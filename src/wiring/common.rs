//! What every command shares: where the home and its files are, the master key, the broker
//! connection of the command line, signals, the metrics endpoint, the maintenance schedule, and
//! asking the running mount. Imports no other part of `wiring`.

use crate::adapters::control::client::{ControlClient, Wait};
use crate::adapters::control::{Reply, Request};
use crate::adapters::metrics::{http, Exporter};
use crate::adapters::nats::fabric::FabricOptions;
use crate::adapters::nats::{connect::split_urls, BrokerConfig, Layout};
use crate::adapters::process::up_lock;
use crate::app::vault::HealthOptions;
use crate::cli::{MountOpts, NatsArgs};
use crate::domain::ids::WriterId;
use crate::domain::keys::MasterKey;
use crate::domain::paper;
use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// How long `quloud snapshot` and `quloud share` wait for their pieces to be quorum-durable.
pub const SNAPSHOT_WAIT: Duration = Duration::from_secs(600);

/// How long a short question to the running mount (status, nodes, snapshots) may take.
pub const ASK_WAIT: Duration = Duration::from_secs(5);

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

/// This home's writer id (named in the writer lease it takes), made once and kept in the home:
/// a restored manifest brings the other home's metadata, never its writer id.
pub fn writer_id(home: &Path) -> Result<WriterId> {
    let path = home.join("writer-id");
    match std::fs::read_to_string(&path) {
        Ok(text) => WriterId::from_hex(text.trim())
            .with_context(|| format!("{} is damaged; delete it to make a new writer id", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let id = WriterId::random();
            super::files::write_new_private(&path, format!("{id}\n").as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            Ok(id)
        }
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

/// The master key's file in `home`.
pub fn key_path(home: &Path) -> PathBuf {
    home.join("master.key")
}

/// The control socket of a mounted vault.
pub fn control_socket(home: &Path) -> PathBuf {
    home.join("control.sock")
}

/// Loads the master key of the vault at `home`.
pub fn load_master_key(home: &Path) -> Result<MasterKey> {
    let path = key_path(home);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("cannot read the master key at {}: run `quloud init` first (or pass --home)", path.display())
    })?;
    paper::decode(text.trim()).with_context(|| format!("master key file {} is damaged", path.display()))
}

/// `text` as a QR code for a terminal.
pub fn qr(text: &str) -> Result<String> {
    use qrcode::render::unicode::Dense1x2;
    let code = qrcode::QrCode::new(text.as_bytes()).context("cannot render the QR code")?;
    Ok(code.render::<Dense1x2>().quiet_zone(true).build())
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
        writer_check: opts.writer_check.max(Duration::from_millis(100)),
        churn: crate::domain::churn::ChurnPolicy {
            offline_after: opts.offline_after,
            offline_grace: opts.offline_grace,
            dead_after: opts.dead_after.max(opts.offline_grace),
            vet_within: opts.vet_within.max(Duration::from_secs(1)),
        },
        repair_rate: opts.repair_rate.max(1),
        ..HealthOptions::default()
    }
}

/// Asks the running mount of `home`; `None` when it is not mounted or did not answer within
/// `within`. A `Reply::Error` is an error.
pub async fn ask(home: &Path, request: &Request, within: Duration) -> Result<Option<Reply>> {
    let Ok(client) = ControlClient::connect(&control_socket(home)).await else { return Ok(None) };
    match client.ask(request, Wait::Within(within), &|_, _| {}).await {
        Ok(Reply::Error { message }) => bail!("the mount could not answer: {message}"),
        Ok(reply) => Ok(Some(reply)),
        Err(e) => {
            tracing::debug!(error = %e, "no answer from the mount's control socket");
            Ok(None)
        }
    }
}

/// The error for a reply that does not answer the request.
pub fn unexpected(reply: &Reply) -> anyhow::Error {
    anyhow::anyhow!("the mount answered something else: {reply:?}")
}

/// Binds the metrics endpoint (failing now if it cannot) and serves it until `cancel`.
pub async fn start_metrics(
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
