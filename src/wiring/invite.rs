//! `quloud invite NAME`: on the hub, records a one-time enrolment secret for house NAME and
//! prints the invite (hub addresses, CA, membership key, secret, expiry) as a line and a QR code.

use super::common::qr;
use super::hub::{hub_dir, load_settings, now_secs};
use super::keys::load_or_create_identity;
use crate::adapters::hub::RegisterFile;
use crate::cli::InviteArgs;
use crate::domain::house::{HouseName, Invite, SECRET_LEN};
use anyhow::{Context, Result};
use std::path::Path;

/// Runs `quloud invite`.
pub fn invite(home: &Path, args: &InviteArgs) -> Result<()> {
    let name: HouseName = args.name.parse()?;
    let dir = hub_dir(home);
    let settings = load_settings(&dir)?;
    let ca_der = std::fs::read(dir.join("ca.der")).with_context(|| {
        format!("the hub's CA is missing in {}: run `quloud up --hub` once", dir.display())
    })?;
    let hub_key = load_or_create_identity(&dir.join("hub.key"))?.id();
    let mut secret = [0u8; SECRET_LEN];
    crate::domain::random_bytes(&mut secret);
    let now = now_secs();
    let expires_at = now.saturating_add(args.expires.as_secs());
    let file = RegisterFile::lock(&dir)?;
    let mut register = file.load()?;
    register.invite(&name, &secret, expires_at, now)?;
    file.save(&register)?;
    let invite = Invite {
        name: name.clone(),
        hub: format!("{}:{}", settings.public, settings.port),
        leaf: format!("{}:{}", settings.public, settings.leaf_port),
        ca_der,
        hub_key,
        secret,
        expires_at,
    };
    let text = invite.encode();
    println!("Invite for house {name}, usable once within {}:\n", humanize(args.expires.as_secs()));
    println!("{text}\n");
    println!("{}", qr(&text)?);
    println!("On the friend's box: quloud join {text} --capacity 500GiB");
    Ok(())
}

fn humanize(secs: u64) -> String {
    match secs {
        s if s >= 86_400 && s % 86_400 == 0 => format!("{} d", s / 86_400),
        s if s >= 3600 && s % 3600 == 0 => format!("{} h", s / 3600),
        s if s >= 60 && s % 60 == 0 => format!("{} min", s / 60),
        s => format!("{s} s"),
    }
}
