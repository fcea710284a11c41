//! `quloud nats-user node|owner`: prints the least-privilege nats-server `users` entry for a
//! storage node or for this vault's owner, creating an nkey seed file on request.

use super::common::load_master_key;
use super::files;
use super::keys::load_or_create_identity;
use crate::adapters::nats::connect::{new_user_nkey, read_seed};
use crate::adapters::nats::permissions::{node_inbox, node_permissions, owner_inbox, owner_permissions};
use crate::cli::{NatsRole, NatsUserArgs};
use crate::domain::snapshot::root_locator;
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Runs `quloud nats-user`.
pub fn nats_user(home: &Path, args: &NatsUserArgs) -> Result<()> {
    let (what, perms, default_inbox) = match args.role {
        NatsRole::Node => {
            let key_file = match (&args.key, &args.data) {
                (Some(k), _) => k.clone(),
                (None, Some(d)) => {
                    files::create_private_dir(d)?;
                    d.join("node.key")
                }
                (None, None) => bail!("a node user needs the node's --data DIR (or --key FILE)"),
            };
            let id = load_or_create_identity(&key_file)?.id();
            let inbox = args.inbox_prefix.clone().unwrap_or_else(|| node_inbox(&id));
            (format!("storage node {id}"), node_permissions(&id, &inbox), node_inbox(&id))
        }
        NatsRole::Owner => {
            let keys = load_master_key(home)?.derive();
            let token = keys.ack_token();
            let locator = root_locator(&keys.root_signing_key().verifying_key());
            let inbox = args.inbox_prefix.clone().unwrap_or_else(|| owner_inbox(&token));
            (
                format!("the owner of the vault in {}", home.display()),
                owner_permissions(&token, &locator, &inbox),
                owner_inbox(&token),
            )
        }
    };
    let auth = match &args.nkey {
        Some(file) => format!("nkey: {}", nkey_public(file)?),
        None => "user: \"CHANGE_ME\", password: \"CHANGE_ME\"".to_string(),
    };
    println!("# Quloud: {what}. Paste into `authorization {{ users = [ … ] }}` of every server.");
    match (&args.nkey, &args.inbox_prefix) {
        (Some(f), Some(p)) if *p != default_inbox => {
            println!("# Connect with --nats-nkey {} --nats-inbox-prefix {p}", f.display())
        }
        (Some(f), _) => println!("# Connect with --nats-nkey {}", f.display()),
        (None, Some(p)) if *p != default_inbox => println!("# Connect with --nats-inbox-prefix {p}"),
        (None, _) => println!("# Connect with nats://USER:PASSWORD@HOST:PORT"),
    }
    let perms = match &args.js_domain {
        Some(domain) => perms.in_domain(domain),
        None => perms,
    };
    print!("{}", perms.user_entry(&auth));
    Ok(())
}

/// The public key of the nkey seed in `file`, creating the file with a new seed if missing.
fn nkey_public(file: &Path) -> Result<String> {
    if !file.exists() {
        let (seed, public) = new_user_nkey();
        files::write_new_private(file, format!("{seed}\n").as_bytes())
            .with_context(|| format!("cannot create nkey seed file {}", file.display()))?;
        eprintln!("created nkey seed file {} (keep it secret: it is this user's password)", file.display());
        return Ok(public);
    }
    let seed = read_seed(file)?;
    Ok(nkeys::KeyPair::from_seed(&seed).map(|k| k.public_key())?)
}
