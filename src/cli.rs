//! The command line (clap derive). No logic lives here: `wiring` runs each command.

use crate::domain::size::{parse_duration, parse_size};
use clap::{Args, Parser, Subcommand, ValueEnum};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Quloud: your files, encrypted on your machine, stored on friends' storage nodes over NATS.
///
/// Quick start: `quloud up ~/vault` creates your master key if there is none (printing it once as
/// a paper key), starts a one-machine fabric and mounts your vault there. With a fabric already
/// running elsewhere: `quloud init`, then `quloud mount ~/vault --nats URL`. To offer storage to
/// others: `quloud node`.
#[derive(Debug, Parser)]
#[command(name = "quloud", version, propagate_version = true, max_term_width = 100)]
pub struct Cli {
    /// Directory holding all owner state: master key, manifest, staging, cache, control socket.
    /// Default: `$XDG_DATA_HOME/quloud`, else `~/.local/share/quloud`.
    #[arg(long, global = true, env = "QULOUD_HOME", value_name = "DIR")]
    pub home: Option<PathBuf>,

    /// Log filter, e.g. `info`, `debug`, `quloud=debug,async_nats=info`. The NATS client's own
    /// messages are left at warnings by default: Quloud logs connects and disconnects itself.
    #[arg(
        long,
        global = true,
        env = "QULOUD_LOG",
        default_value = "info,async_nats=warn",
        value_name = "FILTER"
    )]
    pub log: String,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create the vault's master key and print it once as a paper key (text + QR code).
    ///
    /// The paper key plus the fabric is everything needed to get your vault back. Write it down
    /// and keep it somewhere safe; anyone holding it can read your files.
    Init,
    /// Show or manage the master key.
    #[command(subcommand)]
    Key(KeyCommand),
    /// Run a storage node: store other people's encrypted chunks in DIR, up to SIZE.
    ///
    /// The node never sees plaintext, paths or owner identities. It prints its node id at start
    /// and runs until SIGINT/SIGTERM.
    Node(NodeArgs),
    /// Mount the vault at MOUNTPOINT: files written there are chunked, encrypted and stored on
    /// the fabric in the background; reads come back through a local cache.
    ///
    /// Runs until SIGINT/SIGTERM or `fusermount3 -u MOUNTPOINT`, then unmounts cleanly. Works
    /// offline: with the broker unreachable it serves cached and staged data, accepts writes and
    /// uploads them once the broker is back.
    Mount(MountArgs),
    /// Show files, bytes and chunks pending upload / durable / degraded, and replicas per node.
    Status(StatusArgs),
    /// Start a one-machine fabric: nats-server with JetStream on a loopback port plus K storage
    /// nodes, all under --home; check it with a store/retrieve round trip; then mount the vault
    /// at MOUNTPOINT (if given) and serve until Ctrl-C.
    ///
    /// One `up` per home. Ctrl-C or SIGTERM at any point stops the mount, the nodes and
    /// nats-server in that order; if `up` itself is killed, they stop too. A child that exits
    /// while serving is reported and restarted (nats-server on the same port and store).
    Up(UpArgs),
    /// Check a fabric end to end: store random data with quorum, read it back with proofs, audit
    /// every replica, and report throughput.
    Check(CheckArgs),
    /// Challenge every replica of the vault's chunks (or of the files under PATH) to prove it
    /// still holds its data, heal chunks with fewer than N healthy replicas, and report files at
    /// risk.
    ///
    /// Talks to the running mount if there is one, else opens the vault itself. Exits 0 only when
    /// every chunk ends with at least N healthy replicas. Without --now, replicas verified within
    /// the audit interval are not challenged again.
    Audit(AuditArgs),
    /// List the storage nodes holding this vault's chunks: replicas held, audits passed and
    /// failed, latency, last seen, and whether the node is written off.
    Nodes(NodesArgs),
    /// Snapshot the vault's manifest into the fabric now (encrypted, stored with quorum) and
    /// publish a signed root record pointing at it.
    ///
    /// The mount also snapshots every --snapshot-interval when something changed, and at
    /// unmount. It first waits (up to --wait) until nothing is pending upload, showing what is
    /// left, so `rsync … && quloud snapshot` snapshots what rsync wrote.
    Snapshot(SnapshotArgs),
    /// List the snapshots kept in the fabric (mount one with `quloud mount --snapshot ID`).
    Snapshots(SnapshotsArgs),
    /// Rebuild a lost vault from the fabric with nothing but the paper key, then mount it.
    ///
    /// Finds the vault's newest validly signed root record, fetches and verifies the newest
    /// snapshot (or --snapshot ID) with a progress bar, writes a new home (key and manifest) and
    /// mounts it at MOUNTPOINT. A wrong or mistyped key writes nothing.
    Restore(RestoreArgs),
    /// Print a read capability for a file or directory tree: whoever holds it can mount that
    /// subtree read-only with `quloud mount --share CAP`, and nothing else.
    ///
    /// The capability carries the secrets of that subtree's chunks only, never the master key.
    /// It cannot be revoked once handed out. Sealing is deterministic, so a copy of a file has
    /// the same chunks: only changed content, or deleting every copy (freed once retention drops
    /// older snapshots), puts data out of a recipient's reach. See docs/SECURITY.md.
    Share(ShareArgs),
    /// Print the nats-server `users` entry that lets a storage node, or this vault's owner, use
    /// exactly the subjects it needs and nothing else (docs/OPERATIONS.md).
    ///
    /// A node so restricted cannot read any vault's acks or other clients' replies. With --nkey
    /// FILE the entry names an nkey user (FILE is created, mode 0600, if missing): start the
    /// node or the mount with --nats-nkey FILE.
    NatsUser(NatsUserArgs),
    /// On the hub: print a one-line invite (and its QR code) that lets one friend's box join
    /// as house NAME, once, before it expires.
    Invite(InviteArgs),
    /// On a friend's box: join the hub of INVITE as a house (make this box's keys, enrol once,
    /// write the house's configuration), then run it with `quloud up --house`.
    Join(JoinArgs),
    /// On the hub: list the houses (nodes, capacity offered, last seen, revoked).
    Members(MembersArgs),
    /// On the hub: cut house NAME off; its credentials are refused from then on.
    Revoke(RevokeArgs),
}

/// `quloud invite …`
#[derive(Debug, Clone, Args)]
pub struct InviteArgs {
    /// The new house's name (lower-case letters, digits and dashes).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// How long the invite may be used.
    #[arg(long, default_value = "24h", value_name = "DURATION", value_parser = parse_duration)]
    pub expires: Duration,
}

/// `quloud join …`
#[derive(Debug, Clone, Args)]
pub struct JoinArgs {
    /// The invite printed by `quloud invite` on the hub (QI1-…).
    #[arg(value_name = "INVITE")]
    pub invite: String,
    /// Storage this house offers to the others.
    #[arg(long, default_value = "100GiB", value_name = "SIZE", value_parser = parse_size)]
    pub capacity: u64,
    /// Back up the vault of --home from this house, mounted at DIR by `quloud up --house`
    /// (its master key is created now if there is none).
    #[arg(long, value_name = "DIR")]
    pub vault: Option<PathBuf>,
    /// The paper key (a file, as for `restore --key-file`) of a vault whose box was lost: this
    /// house gets that vault's owner subjects, and `quloud restore` in this home brings it back.
    #[arg(long, value_name = "FILE", conflicts_with = "vault")]
    pub key_file: Option<PathBuf>,
    /// Loopback port of the house's own nats-server. Default: a free one.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
}

/// `quloud members …`
#[derive(Debug, Clone, Args)]
pub struct MembersArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `quloud revoke …`
#[derive(Debug, Clone, Args)]
pub struct RevokeArgs {
    /// The house to cut off.
    #[arg(value_name = "NAME")]
    pub name: String,
}

/// `quloud snapshot …`
#[derive(Debug, Clone, Args)]
pub struct SnapshotArgs {
    /// Broker connection (used only when the vault is not mounted).
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// How long to wait for pending uploads and for the snapshot to be stored. When it runs
    /// out, nothing is stored and the exit code is 75 (try again later); the uploads go on.
    #[arg(long, default_value = "10m", value_name = "DURATION", value_parser = parse_duration)]
    pub wait: Duration,
}

/// `quloud snapshots …`
#[derive(Debug, Clone, Args)]
pub struct SnapshotsArgs {
    /// Broker connection (used when the vault is not mounted and has no local manifest).
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `quloud restore …`
#[derive(Debug, Clone, Args)]
pub struct RestoreArgs {
    /// Where to mount the restored vault.
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
    /// The paper key (QK1-…). Prefer --key-file: a key on the command line lands in shell history.
    #[arg(long, value_name = "PAPERKEY", conflicts_with = "key_file", required_unless_present = "key_file")]
    pub key: Option<String>,
    /// A file holding the paper key: what `quloud key show --reveal` prints (headings and QR
    /// code included), or just the QK1-… line.
    #[arg(long, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
    /// Restore this snapshot instead of the newest.
    #[arg(long, value_name = "ID")]
    pub snapshot: Option<u64>,
    /// Rebuild the home but do not mount.
    #[arg(long)]
    pub no_mount: bool,
    /// Broker connection.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Options of the mount that follows.
    #[command(flatten)]
    pub opts: MountOpts,
}

/// `quloud share …`
#[derive(Debug, Clone, Args)]
pub struct ShareArgs {
    /// The file or directory to share: a path inside the mount (e.g. ~/vault/photos) or a path
    /// from the vault's root (e.g. /photos).
    #[arg(value_name = "PATH")]
    pub path: PathBuf,
    /// Also print the capability as a QR code.
    #[arg(long)]
    pub qr: bool,
    /// Broker connection (used only when the vault is not mounted).
    #[command(flatten)]
    pub nats: NatsArgs,
}

/// `quloud key …`
#[derive(Debug, Subcommand)]
pub enum KeyCommand {
    /// Print the paper key again (requires --reveal: anyone who sees it can read your vault).
    Show {
        /// Confirm that you want the secret printed on this terminal.
        #[arg(long)]
        reveal: bool,
        /// Also print the QR code.
        #[arg(long)]
        qr: bool,
    },
}

/// Connection to the broker (docs/OPERATIONS.md shows cluster, leaf-node, TLS and permission
/// set-ups).
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Broker connection")]
pub struct NatsArgs {
    /// NATS server URL, or several servers of a cluster separated by commas: the client connects
    /// to one of them (in random order, which spreads clients) and moves to another when it
    /// fails. tls:// needs TLS. [default: the broker of the `quloud up` running for --home,
    /// else nats://127.0.0.1:4222]
    #[arg(long, env = "QULOUD_NATS", value_name = "URL[,URL…]")]
    pub nats: Option<String>,
    /// NATS credentials file (user JWT and seed, from `nsc`) for servers in operator mode.
    #[arg(long, env = "QULOUD_NATS_CREDS", value_name = "FILE", conflicts_with = "nats_nkey")]
    pub nats_creds: Option<PathBuf>,
    /// File holding an nkey user seed (SU…), for nkey users in the server config. Create one
    /// with `quloud nats-user ROLE --nkey FILE`.
    #[arg(long, env = "QULOUD_NATS_NKEY", value_name = "FILE")]
    pub nats_nkey: Option<PathBuf>,
    /// PEM file of CA certificates to trust for tls:// servers (e.g. your own CA).
    #[arg(long, env = "QULOUD_NATS_CA", value_name = "FILE")]
    pub nats_ca: Option<PathBuf>,
    /// PEM client certificate, for servers that verify clients (with --nats-client-key).
    #[arg(long, env = "QULOUD_NATS_CLIENT_CERT", value_name = "FILE", requires = "nats_client_key")]
    pub nats_client_cert: Option<PathBuf>,
    /// PEM private key of --nats-client-cert.
    #[arg(long, env = "QULOUD_NATS_CLIENT_KEY", value_name = "FILE", requires = "nats_client_cert")]
    pub nats_client_key: Option<PathBuf>,
    /// Prefix of this client's reply subjects. Default: its own, `_INBOX_node_<node id>` for a
    /// node and `_INBOX_owner_<ack token>` for a vault owner (16 hex digits each), so each NATS
    /// user can be allowed only its own and no user can read others' replies
    /// (`quloud nats-user` prints the permissions).
    #[arg(long, env = "QULOUD_NATS_INBOX_PREFIX", value_name = "PREFIX")]
    pub nats_inbox_prefix: Option<String>,
    /// JetStream replicas of the streams this command creates if they do not exist yet: 1 on
    /// one server, 3 on a cluster. Default: 1, and accept existing streams as they are
    /// (given, a differing existing stream is reported).
    #[arg(long, env = "QULOUD_JS_REPLICAS", value_name = "R")]
    pub js_replicas: Option<usize>,
    /// JetStream domain of the cluster holding Quloud's streams, when connecting through a
    /// leaf node (a NAS's local nats-server) to a hub whose JetStream has this domain.
    #[arg(long, env = "QULOUD_JS_DOMAIN", value_name = "DOMAIN")]
    pub js_domain: Option<String>,
}

/// `quloud node …`
#[derive(Debug, Clone, Args)]
pub struct NodeArgs {
    /// Broker connection.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Data directory for chunk bodies and the index.
    #[arg(long, value_name = "DIR")]
    pub data: PathBuf,
    /// Most space to use, with units: 500MiB, 50GiB, 2TB.
    #[arg(long, value_name = "SIZE", value_parser = parse_size)]
    pub capacity: u64,
    /// Node identity and at-rest key file (created if missing). Default: DIR/node.key. Keep it
    /// on another disk than DIR if a stolen data disk must reveal nothing.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// Store requests handled at once (they share index commits, so more overlap is cheaper).
    #[arg(long, default_value_t = 8, value_name = "N")]
    pub store_concurrency: usize,
    /// Store bytes per second each vault may send this node (0 = no limit). A vault over its
    /// rate waits a second, or another node takes its chunk.
    #[arg(long, default_value = "256MiB", value_name = "SIZE", value_parser = parse_size)]
    pub store_rate: u64,
    /// Proof items per second each client may ask this node to check in gets, audits, renews
    /// and deletes (0 = no limit); requests beyond it are dropped.
    #[arg(long, default_value_t = 4096, value_name = "N")]
    pub request_rate: u64,
    /// How often chunks whose lease ran out are deleted (e.g. 60s, 10m).
    #[arg(long, default_value = "60s", value_name = "DURATION", value_parser = parse_duration)]
    pub sweep_interval: Duration,
    /// A vault backed up from this node's own house (its ack token, hex; repeatable): its store
    /// requests are declined so that other houses' nodes take them. `quloud up --house` sets it
    /// for the house's own vault unless the mount is given `--allow-own-house`.
    #[arg(long = "own-vault", value_name = "ACK_TOKEN", value_parser = crate::domain::ids::AckToken::parse_hex)]
    pub own_vaults: Vec<crate::domain::ids::AckToken>,
    /// For testing only: run the node's clock this many ms ahead (negative: behind) of the
    /// system's, to see how owners cope with a friend's box whose clock is wrong.
    #[arg(long, hide = true, default_value_t = 0, value_name = "MS", allow_hyphen_values = true)]
    pub test_clock_offset_ms: i64,
    /// Metrics and health over HTTP.
    #[command(flatten)]
    pub metrics: NodeMetricsArgs,
}

/// `--metrics` of `quloud node`.
#[derive(Debug, Clone, Args)]
pub struct NodeMetricsArgs {
    /// Serve Prometheus metrics (GET /metrics) and a health check (GET /healthz) over plain HTTP
    /// on this address, e.g. 127.0.0.1:9464. Off by default.
    #[arg(long = "metrics", env = "QULOUD_NODE_METRICS", value_name = "ADDR")]
    pub addr: Option<SocketAddr>,
    /// Allow --metrics on an address other than loopback (plain HTTP, no authentication).
    #[arg(long = "metrics-public")]
    pub public: bool,
}

/// `quloud mount …`
#[derive(Debug, Clone, Args)]
pub struct MountArgs {
    /// Where to mount the vault: an existing directory (whatever it holds is hidden while the
    /// vault is mounted).
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: PathBuf,
    /// Broker connection.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Mount snapshot ID of this vault read-only (time travel; see `quloud snapshots`).
    #[arg(long, value_name = "ID", conflicts_with = "share")]
    pub snapshot: Option<u64>,
    /// Mount the subtree a capability (QS1-…, from `quloud share`) grants, read-only. Needs no
    /// master key and no home of its own.
    #[arg(long, value_name = "CAP")]
    pub share: Option<String>,
    /// Mount options shared with `quloud up`.
    #[command(flatten)]
    pub opts: MountOpts,
}

/// Options of a mount.
#[derive(Debug, Clone, Args)]
pub struct MountOpts {
    /// Replicas per chunk (N): a chunk is durable once N distinct nodes acknowledged it.
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub replicas: usize,
    /// Memory for decrypted chunks (the read cache).
    #[arg(long, default_value = "256MiB", value_name = "SIZE", value_parser = parse_size)]
    pub cache_size: u64,
    /// Local disk for sealed (encrypted) chunks: uploaded chunks stay here and fetched ones are
    /// kept, so recent data reads at local-disk speed and without the fabric. Under --home in
    /// `chunks/`; safe to delete while unmounted. 0 keeps nothing.
    #[arg(long, default_value = "2GiB", value_name = "SIZE", value_parser = parse_size)]
    pub disk_cache_size: u64,
    /// Let other users access the mount (needs `user_allow_other` in /etc/fuse.conf unless root).
    #[arg(long)]
    pub allow_other: bool,
    /// Make fsync wait until the file's chunks are quorum-durable (default: durable on local disk).
    #[arg(long)]
    pub sync_quorum: bool,
    /// Stay in the foreground (the mount always does; accepted for fstab/systemd compatibility).
    #[arg(long)]
    pub foreground: bool,
    /// The mount's source as df and /proc/mounts show it. Default: `quloud:HOME`. mount.quloud
    /// passes the fstab entry's first field, so `mount -a` sees the vault as mounted.
    #[arg(long, value_name = "NAME")]
    pub fsname: Option<String>,
    /// Challenge every replica at least this often (e.g. 24h, 7d). Audits run in the background,
    /// rate-limited by --audit-rate.
    #[arg(long, default_value = "24h", value_name = "DURATION", value_parser = parse_duration)]
    pub audit_interval: Duration,
    /// Most background audit challenges per second, so audits never starve reads and writes.
    #[arg(long, default_value_t = 200, value_name = "N")]
    pub audit_rate: u32,
    /// Lease asked of nodes for each chunk; renewed in the background when a third is left.
    /// Nodes drop chunks whose lease runs out, so an abandoned vault frees friends' disks.
    #[arg(long, default_value = "90d", value_name = "DURATION", value_parser = parse_duration)]
    pub lease: Duration,
    /// How long a chunk no file references any more is kept before it is deleted from its nodes.
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = parse_duration)]
    pub gc_grace: Duration,
    /// A node that stops answering is offline once its missed checks span this long (shorter
    /// silences are reboots: its replicas count as healthy).
    #[arg(long, default_value = "4h", value_name = "DURATION", value_parser = parse_duration)]
    pub offline_after: Duration,
    /// An offline node's replicas keep counting toward N while it was seen within this long and
    /// the chunk keeps 2 healthy copies; only then are its chunks re-replicated.
    #[arg(long, default_value = "72h", value_name = "DURATION", value_parser = parse_duration)]
    pub offline_grace: Duration,
    /// A node unseen this long (while others answer) is written off: its replicas are forgotten.
    #[arg(long, default_value = "14d", value_name = "DURATION", value_parser = parse_duration)]
    pub dead_after: Duration,
    /// A node that has not passed an audit yet is challenged within this long of its first acks;
    /// until it passes, chunks it holds stay pending (and are placed elsewhere if it stays
    /// silent this long, or at once if it answers wrongly).
    #[arg(long, default_value = "5m", value_name = "DURATION", value_parser = parse_duration)]
    pub vet_within: Duration,
    /// Most bytes per second background repair re-publishes, so a returning fabric is not
    /// flooded (an explicit `quloud audit` is not limited).
    #[arg(long, default_value = "4MiB", value_name = "SIZE", value_parser = parse_size)]
    pub repair_rate: u64,
    /// Snapshot the manifest into the fabric this often when it changed (0 = only at unmount
    /// and on `quloud snapshot`).
    #[arg(long, default_value = "1h", value_name = "DURATION", value_parser = parse_duration)]
    pub snapshot_interval: Duration,
    /// Keep the newest N snapshots...
    #[arg(long, default_value_t = 24, value_name = "N")]
    pub keep_last: usize,
    /// ...plus the newest snapshot of each of the last D days that have one. Deleted data stays
    /// in the fabric while a kept snapshot may name it.
    #[arg(long, default_value_t = 30, value_name = "D")]
    pub keep_daily: usize,
    /// Serve the mount's Prometheus metrics (GET /metrics) and a health check (GET /healthz)
    /// over plain HTTP on this address, e.g. 127.0.0.1:9465. Off by default; not for read-only
    /// mounts.
    #[arg(long = "metrics", env = "QULOUD_MOUNT_METRICS", value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Allow --metrics on an address other than loopback (plain HTTP, no authentication).
    #[arg(long = "metrics-public")]
    pub metrics_public: bool,
    /// Take the vault's writer lease even though another home holds it: that home stops
    /// writing (EROFS) within its --writer-check, and its last changes stay as a snapshot.
    /// Without it, a vault another home writes mounts read-only. `restore` always takes it.
    #[arg(long)]
    pub take_over: bool,
    /// In a house (`quloud join`): let one replica of each chunk be stored in this house's own
    /// node. Without it replicas go to other houses only, at most one per house. The one-machine
    /// `quloud up MOUNTPOINT` always allows it (every node is on this machine).
    #[arg(long)]
    pub allow_own_house: bool,
    /// How often the mount reads the writer lease: a home that lost it stops writing within
    /// this long.
    #[arg(long, default_value = "30s", value_name = "DURATION", value_parser = parse_duration)]
    pub writer_check: Duration,
}

/// `quloud audit …`
#[derive(Debug, Clone, Args)]
pub struct AuditArgs {
    /// Audit only the files under this path: a path inside the mount (e.g. ~/vault/photos) or a
    /// path from the vault's root (e.g. /photos). Default: the whole vault.
    #[arg(value_name = "PATH")]
    pub path: Option<PathBuf>,
    /// Challenge every replica now, even those verified within the audit interval.
    #[arg(long)]
    pub now: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Broker connection (used only when the vault is not mounted).
    #[command(flatten)]
    pub nats: NatsArgs,
    /// Replicas per chunk (N) when the vault is not mounted. Default: as last mounted.
    #[arg(long, value_name = "N")]
    pub replicas: Option<usize>,
}

/// `quloud nodes …`
#[derive(Debug, Clone, Args)]
pub struct NodesArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `quloud status …`
#[derive(Debug, Clone, Args)]
pub struct StatusArgs {
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `quloud up …`
#[derive(Debug, Clone, Args)]
pub struct UpArgs {
    /// Mount the vault here once the fabric is up (omit to run only the fabric).
    #[arg(value_name = "MOUNTPOINT")]
    pub mountpoint: Option<PathBuf>,
    /// Options for the mount.
    #[command(flatten)]
    pub mount: MountOpts,
    /// Number of local storage nodes.
    #[arg(long, default_value_t = 3, value_name = "K")]
    pub nodes: usize,
    /// Capacity of each local node.
    #[arg(long, default_value = "10GiB", value_name = "SIZE", value_parser = parse_size)]
    pub node_capacity: u64,
    /// Exit after the check instead of serving until Ctrl-C.
    #[arg(long)]
    pub once: bool,
    /// Port of the nats-server on 127.0.0.1. Without it `up` takes the previous run's port
    /// (kept in HOME/fabric/nats.url) when it is free, else a free one, so the URL your scripts,
    /// extra nodes or mounts on this machine use stays valid across restarts.
    #[arg(long, value_name = "PORT")]
    pub port: Option<u16>,
    /// How long the fabric check may take before `up` gives up, stops what it started and names
    /// the logs to read.
    #[arg(long, default_value = "2m", value_name = "DURATION", value_parser = parse_duration)]
    pub check_within: std::time::Duration,
    /// The role of this box among friends' houses (docs/OPERATIONS.md, Back up to friends).
    #[command(flatten)]
    pub role: RoleArgs,
}

/// `quloud up --hub` / `--house`.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Houses")]
pub struct RoleArgs {
    /// Run the hub: nats-server with JetStream and TLS on a public port (--port, default 4222)
    /// and a leaf-node port (--leaf-port), and the membership service. Makes its CA and keys on
    /// first run.
    #[arg(long, conflicts_with_all = ["house", "mountpoint"], requires = "public")]
    pub hub: bool,
    /// The hub's address as friends reach it (a DNS name or IP): it goes into the TLS
    /// certificate and into invites.
    #[arg(long, value_name = "HOST")]
    pub public: Option<String>,
    /// The hub's leaf-node port (TLS).
    #[arg(long, default_value_t = 7422, value_name = "PORT")]
    pub leaf_port: u16,
    /// The hub's monitoring port on 127.0.0.1 (the membership service reads /leafz there).
    #[arg(long, default_value_t = 8222, value_name = "PORT")]
    pub monitor_port: u16,
    /// Run this box's house as `quloud join` configured it: its nats-server as a leaf node of
    /// the hub, its storage node and, if it backs up, the mount.
    #[arg(long)]
    pub house: bool,
}

/// `quloud check …`
#[derive(Debug, Clone, Args)]
pub struct CheckArgs {
    /// Broker connection.
    #[command(flatten)]
    pub nats: NatsArgs,
    /// How much random data to store and read back.
    #[arg(long, default_value = "16MiB", value_name = "SIZE", value_parser = parse_size)]
    pub size: u64,
    /// Replicas per chunk (N).
    #[arg(long, default_value_t = 3, value_name = "N")]
    pub replicas: usize,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Who a NATS user is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum NatsRole {
    /// A storage node (`quloud node --data DIR`).
    Node,
    /// The owner of the vault in --home (`quloud mount` and the other vault commands).
    Owner,
}

/// `quloud nats-user …`
#[derive(Debug, Clone, Args)]
pub struct NatsUserArgs {
    /// node: a storage node (give --data or --key); owner: the vault of --home.
    #[arg(value_enum, value_name = "ROLE")]
    pub role: NatsRole,
    /// The node's data directory (its identity is DIR/node.key, created if missing).
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
    /// The node's identity file, when not DIR/node.key.
    #[arg(long, value_name = "FILE")]
    pub key: Option<PathBuf>,
    /// An nkey seed file for this user, created (mode 0600) if missing; the entry names its
    /// public key. Without it the entry has a user and password to fill in.
    #[arg(long, value_name = "FILE")]
    pub nkey: Option<PathBuf>,
    /// The reply-subject prefix the client runs with, when given --nats-inbox-prefix.
    #[arg(long, value_name = "PREFIX")]
    pub inbox_prefix: Option<String>,
    /// The --js-domain the client runs with (its JetStream API subjects carry the domain).
    #[arg(long, value_name = "DOMAIN")]
    pub js_domain: Option<String>,
}
