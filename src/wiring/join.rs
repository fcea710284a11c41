//! `quloud join INVITE`: on a friend's box, makes the house's keys, enrols with the hub once
//! over TLS (trusting only the CA in the invite), checks the certificate the hub returns, and
//! writes the house's configuration. A refused, expired or mistyped invite changes nothing.

use super::common::key_path;
use super::files;
use super::house_config::{house_dir, HouseConfig};
use super::hub::now_secs;
use super::keys::save_new_key;
use crate::adapters::hub::conf::{leaf_config, ENROL_INBOX, ENROL_SUBJECT, ENROL_USER};
use crate::adapters::hub::tls::pem_of_der;
use crate::adapters::hub::write_private_atomic;
use crate::adapters::nats::{connect, BrokerConfig};
use crate::cli::JoinArgs;
use crate::domain::house::Invite;
use crate::domain::identity::NodeIdentity;
use crate::domain::ids::to_hex;
use crate::domain::keys::MasterKey;
use crate::domain::membership::{EnrolReply, EnrolRequest};
use crate::domain::snapshot::root_locator;
use anyhow::{bail, Context, Result};
use std::path::Path;
use std::time::Duration;

/// How long the hub has to answer.
const ENROL_WITHIN: Duration = Duration::from_secs(20);

/// Runs `quloud join`.
pub async fn join(home: &Path, args: &JoinArgs) -> Result<()> {
    let invite = Invite::decode(&args.invite)?;
    let now = now_secs();
    if invite.expires_at <= now {
        bail!("the invite expired {} s ago; ask the hub's operator for a new one", now - invite.expires_at);
    }
    let dir = house_dir(home);
    if dir.join("house.json").exists() {
        bail!(
            "{} is a house already (HOME/house/house.json): give another --home to join again",
            home.display()
        );
    }
    let port = match args.port {
        Some(p) => p,
        None => std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
    };
    let node = NodeIdentity::generate();
    let mut pw = [0u8; 24];
    crate::domain::random_bytes(&mut pw);
    let password = to_hex(&pw);
    let new_key = (args.vault.is_some() && !key_path(home).exists()).then(MasterKey::generate);
    // A home that holds a vault key backs up, whether `up --house` mounts it (`--vault`) or the
    // owner mounts it by hand: its house's NATS user gets that vault's owner subjects.
    // A paper key given to restore a lost box's vault here: the same subjects, and the key is
    // left for `quloud restore` to write.
    let owner = match (&new_key, &args.key_file) {
        (_, Some(file)) => Some(owner_of(&paper_key(file)?)),
        (Some(key), None) => Some(owner_of(key)),
        (None, None) if key_path(home).exists() => Some(owner_of(&super::common::load_master_key(home)?)),
        (None, None) => None,
    };
    let request = EnrolRequest::new(&invite.secret, &node, password.clone(), args.capacity, owner);
    let reply = enrol(&invite, &request).await?;
    let (cert, user, js_domain) = match reply {
        EnrolReply::Enrolled { cert, user, js_domain } => (cert, user, js_domain),
        EnrolReply::Refused(why) => bail!("the hub refused the invite: {why}"),
    };
    if cert.verify(&invite.hub_key) != Some(node.id()) || cert.house != invite.name {
        bail!("the hub's answer does not carry a certificate for this node signed by the key in the invite");
    }
    files::create_private_dir(&dir)?;
    let ca = dir.join("ca.pem");
    write_private_atomic(&ca, pem_of_der(&invite.ca_der).as_bytes())?;
    files::write_new_private(&dir.join("node.key"), &node.to_bytes())?;
    let leaf = leaf_config(invite.name.as_str(), port, &invite.leaf, &user, &password, &ca);
    write_private_atomic(&dir.join("leaf.conf"), leaf.as_bytes())?;
    if let Some(key) = &new_key {
        save_new_key(home, key)?;
    }
    let cfg = HouseConfig {
        name: invite.name.clone(),
        hub: invite.hub.clone(),
        leaf: invite.leaf.clone(),
        hub_key: invite.hub_key.to_hex(),
        cert,
        js_domain,
        port,
        capacity: args.capacity,
        vault: args.vault.as_deref().map(std::path::absolute).transpose()?,
    };
    write_private_atomic(&dir.join("house.json"), serde_json::to_string_pretty(&cfg)?.as_bytes())?;
    println!("joined the hub at {} as house {} (node {})", invite.hub, invite.name, node.id());
    println!("start the house now with `quloud --home {} up --house`,", home.display());
    println!(
        "or at boot with `systemctl enable --now quloud-house@$USER` (mount/systemd/quloud-house@.service)"
    );
    Ok(())
}

/// The master key in a paper key file (`restore --key-file`).
fn paper_key(file: &Path) -> Result<MasterKey> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("cannot read the key file {}", file.display()))?;
    crate::domain::paper::from_printout(&text).map_err(|e| anyhow::anyhow!("the paper key is not valid: {e}"))
}

fn owner_of(key: &MasterKey) -> (String, String) {
    let keys = key.derive();
    (keys.ack_token().to_string(), root_locator(&keys.root_signing_key().verifying_key()))
}

/// Sends the enrolment request to the hub, trusting only the invite's CA.
async fn enrol(invite: &Invite, request: &EnrolRequest) -> Result<EnrolReply> {
    let mut tag = [0u8; 8];
    crate::domain::random_bytes(&mut tag);
    let ca = std::env::temp_dir().join(format!("quloud-join-{}.pem", to_hex(&tag)));
    write_private_atomic(&ca, pem_of_der(&invite.ca_der).as_bytes())?;
    let broker = BrokerConfig {
        servers: vec![format!("tls://{ENROL_USER}:{ENROL_USER}@{}", invite.hub)],
        ca: Some(ca.clone()),
        inbox_prefix: Some(ENROL_INBOX.into()),
        ..Default::default()
    };
    // The hub restarts its nats-server for a few seconds after each join and revoke: an
    // unreachable server or a missing membership service is retried until ENROL_WITHIN.
    let deadline = tokio::time::Instant::now() + ENROL_WITHIN;
    let answer = loop {
        match try_enrol(&broker, invite, request).await {
            Err(e) if tokio::time::Instant::now() < deadline && e.is::<Retry>() => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => break other,
        }
    };
    let _ = std::fs::remove_file(&ca);
    answer
}

/// A failure worth retrying while the hub restarts.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct Retry(String);

async fn try_enrol(broker: &BrokerConfig, invite: &Invite, request: &EnrolRequest) -> Result<EnrolReply> {
    let hint = "is `quloud up --hub` running there?";
    let (client, _, _) = match connect(broker, "quloud-join").await {
        Ok(c) => c,
        Err(e @ crate::ports::fabric::FabricError::Unreachable { .. }) => {
            return Err(Retry(e.to_string()).into())
        }
        Err(e) => return Err(e.into()),
    };
    let payload = serde_json::to_vec(request)?;
    let msg = match tokio::time::timeout(ENROL_WITHIN, client.request(ENROL_SUBJECT, payload.into())).await {
        Err(_) => bail!("the hub at {} did not answer within {ENROL_WITHIN:?} ({hint})", invite.hub),
        Ok(Err(e)) if e.kind() == async_nats::RequestErrorKind::NoResponders => {
            return Err(Retry(format!("the hub at {} did not answer: {e} ({hint})", invite.hub)).into())
        }
        Ok(Err(e)) => bail!("the hub at {} did not answer: {e} ({hint})", invite.hub),
        Ok(Ok(m)) => m,
    };
    serde_json::from_slice::<EnrolReply>(&msg.payload).context("the hub's answer is malformed")
}
