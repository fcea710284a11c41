//! Composition root: turns a parsed command line into adapters and services and runs them.
//!
//! Modules in dependency order (each imports only those above it):
//! - `files`, `common`: private files; the home, master key, broker connection, signals,
//!   metrics endpoint, maintenance schedule, and asking the running mount
//! - `keys`, `check`, `open`, `control`: paper key and node identity; the fabric check; opening
//!   a vault here and serving it over FUSE; the mount's answers on its control socket
//! - `node`, `mount`, `audit`, `nats_user`: the commands of those names (and `status`, `nodes`)
//! - `settle`: waiting for pending uploads before a snapshot, with progress
//! - `recovery`, `up`: snapshots, restore and shares; the one-machine fabric
//! - `hub`, `house`, `invite`, `join`, `members`: friends' houses (the hub, a house, onboarding)

use crate::cli::{Cli, Command, KeyCommand};
use crate::render::Format;
use anyhow::{bail, Result};

mod audit;
mod check;
mod common;
mod control;
mod files;
mod house;
mod house_config;
mod hub;
mod invite;
mod join;
mod keys;
mod members;
mod mount;
mod nats_user;
mod node;
mod open;
mod recovery;
mod settle;
mod up;

pub use crate::adapters::process::tune_allocator;
pub use check::run_check;
pub use common::{cancel_on_signal, load_master_key, resolve_home, signal_token, Bus, DEFAULT_NATS};
pub use keys::{init, load_or_create_identity};
pub use settle::{exit_code, EXIT_WAIT_TIMED_OUT};

/// Runs one command to completion.
pub async fn run(cli: Cli) -> Result<()> {
    let home = resolve_home(cli.home.as_deref())?;
    match cli.command {
        Command::Init => init(&home),
        Command::Key(KeyCommand::Show { reveal, qr }) => keys::key_show(&home, reveal, qr),
        Command::Node(args) => node::node(args, &home).await,
        Command::Up(args) if args.role.hub => hub::up_hub(&home, args).await,
        Command::Up(args) if args.role.house => house::up_house(&home, args).await,
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
        Command::Status(args) => mount::status(&home, Format::from_json_flag(args.json)).await,
        Command::Check(args) => {
            let bus = Bus::from_args(&args.nats, &home)?;
            let token = house_config::load_house(&home)
                .ok()
                .and_then(|h| crate::domain::ids::NodeId::from_hex(&h.cert.node))
                .map(|node| crate::domain::house::check_token(&node));
            let report = check::run_check_as(&bus, token, args.size, args.replicas).await?;
            match Format::from_json_flag(args.json) {
                Format::Json => println!("{}", crate::render::check_json(&report)),
                Format::Text => print!("{}", crate::render::check_text(&report)),
            }
            Ok(())
        }
        Command::Audit(args) => audit::audit(&home, args).await,
        Command::Nodes(args) => audit::nodes(&home, Format::from_json_flag(args.json)).await,
        Command::Snapshot(args) => recovery::snapshot(&home, args).await,
        Command::Snapshots(args) => recovery::snapshots(&home, args).await,
        Command::Restore(args) => recovery::restore(&home, args).await,
        Command::Share(args) => recovery::share(&home, args).await,
        Command::NatsUser(args) => nats_user::nats_user(&home, &args),
        Command::Invite(args) => invite::invite(&home, &args),
        Command::Join(args) => join::join(&home, &args).await,
        Command::Members(args) => members::members(&home, &args),
        Command::Revoke(args) => members::revoke(&home, &args),
    }
}
