//! `quloud members` and `quloud revoke NAME` on the hub: the register of houses, and cutting a
//! house off (its user leaves the hub's config, which the running nats-server reloads, closing
//! the house's leaf connection and refusing it from then on).

use super::hub::{apply, hub_dir, load_settings, now_secs};
use crate::adapters::hub::RegisterFile;
use crate::cli::{MembersArgs, RevokeArgs};
use crate::domain::house::HouseName;
use crate::domain::size::format_size;
use anyhow::Result;
use std::path::Path;

/// Runs `quloud members`.
pub fn members(home: &Path, args: &MembersArgs) -> Result<()> {
    let dir = hub_dir(home);
    load_settings(&dir)?;
    let register = RegisterFile::lock(&dir)?.load()?;
    let now = now_secs();
    if args.json {
        let houses: Vec<_> = register
            .houses
            .iter()
            .map(|h| {
                serde_json::json!({
                    "name": h.name, "nodes": h.nodes, "capacity": h.capacity, "joined_at": h.joined_at,
                    "last_seen": h.last_seen, "revoked": h.revoked,
                })
            })
            .collect();
        let pending: Vec<_> =
            register.invites.iter().filter(|i| i.expires_at > now).map(|i| &i.name).collect();
        println!("{}", serde_json::json!({ "houses": houses, "pending_invites": pending }));
        return Ok(());
    }
    println!("{:<20} {:>5} {:>10}  {:<16} state", "house", "nodes", "capacity", "last seen");
    for h in &register.houses {
        let seen = match h.last_seen {
            0 => "never".to_string(),
            t => format!("{} s ago", now.saturating_sub(t)),
        };
        let state = if h.revoked { "revoked" } else { "member" };
        println!(
            "{:<20} {:>5} {:>10}  {:<16} {state}",
            h.name.as_str(),
            h.nodes.len(),
            format_size(h.capacity),
            seen
        );
    }
    for i in register.invites.iter().filter(|i| i.expires_at > now) {
        println!("{:<20} invited, expires in {} s", i.name.as_str(), i.expires_at - now);
    }
    Ok(())
}

/// Runs `quloud revoke`.
pub fn revoke(home: &Path, args: &RevokeArgs) -> Result<()> {
    let name: HouseName = args.name.parse()?;
    let dir = hub_dir(home);
    load_settings(&dir)?;
    let file = RegisterFile::lock(&dir)?;
    let mut register = file.load()?;
    register.revoke(&name)?;
    file.save(&register)?;
    apply(&dir, &register)?;
    println!(
        "revoked house {name}: the running hub restarts its nats-server within seconds, closing the \
         house's connection and refusing its credentials from then on (the other houses reconnect)"
    );
    Ok(())
}
