//! nats-server configurations of the two roles: the hub's (JetStream with a domain, TLS on the
//! client and leaf-node ports, one user per house that joined) and a house's leaf node.

use super::tls::HubTls;
use crate::adapters::nats::permissions::{house_inboxes, house_permissions, Permissions};
use crate::domain::ids::{AckToken, NodeId};
use crate::domain::membership::{House, Register};
use serde::{Deserialize, Serialize};
use std::path::Path;

/// The JetStream domain of the hub: houses' clients name it (`--js-domain`).
pub const JS_DOMAIN: &str = "hub";
/// The subject the membership service answers enrolment requests on.
pub const ENROL_SUBJECT: &str = "quloud.v1.hub.enrol";
/// The NATS user (and password) enrolment logs in as: it may publish enrolment requests and
/// read its own replies, nothing else. Knowing it grants nothing: the invite's secret does.
pub const ENROL_USER: &str = "enrol";
/// Reply prefix of enrolling clients.
pub const ENROL_INBOX: &str = "_INBOX_enrol";

/// Keep-alives of hub and house: a house whose link died is noticed within ~30 s on both sides
/// (nats-server's default is two missed pings 2 minutes apart).
const PINGS: &str = "ping_interval: \"10s\"\nping_max: 2\n";

/// Where and how the hub listens; kept in the hub's directory (`hub.json`).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct HubSettings {
    /// The name or IP friends reach the hub at.
    pub public: String,
    /// Client port (TLS): enrolment and the hub's own clients.
    pub port: u16,
    /// Leaf-node port (TLS): houses.
    pub leaf_port: u16,
    /// Monitoring port, on loopback.
    pub monitor_port: u16,
    /// Password of the membership service's own user.
    pub password: String,
}

fn quoted(p: &Path) -> String {
    format!("{:?}", p.display().to_string())
}

/// The hub's nats-server config for the houses in `register` that are not revoked.
pub fn hub_config(dir: &Path, s: &HubSettings, tls: &HubTls, register: &Register) -> String {
    let tls_block =
        format!("tls {{ cert_file: {}, key_file: {}, timeout: 5 }}", quoted(&tls.cert), quoted(&tls.key));
    let mut users = vec![
        format!("      {{ user: hub, password: {:?} }}", s.password),
        format!(
            "      {{ user: {ENROL_USER}, password: {ENROL_USER}, permissions: {{ publish: {{ allow: [\"{ENROL_SUBJECT}\"] }}, subscribe: {{ allow: [\"{ENROL_INBOX}.>\"] }} }} }}"
        ),
    ];
    let reply_to: Vec<String> = register.active().flat_map(|h| house_roles(h).inboxes).collect();
    for house in register.active() {
        let roles = house_roles(house);
        if roles.nodes.is_empty() {
            // No subject to allow (an empty allow list would allow everything): not admitted.
            continue;
        }
        let auth = format!("user: {:?}, password: {:?}", house.user, house.password);
        users.push(roles.permissions(&reply_to).user_entry(&auth));
    }
    format!(
        "server_name: quloud-hub\nhost: 0.0.0.0\nport: {port}\n{PINGS}http: \"127.0.0.1:{mport}\"\n{tls_block}\n\
         jetstream {{\n  store_dir: {js}\n  domain: {JS_DOMAIN}\n}}\n\
         accounts {{\n  QULOUD {{\n    jetstream: enabled\n    users: [\n{users}\n    ]\n  }}\n}}\n\
         leafnodes {{\n  host: 0.0.0.0\n  port: {leaf}\n  {tls_block}\n}}\n",
        port = s.port,
        mport = s.monitor_port,
        js = quoted(&dir.join("jetstream")),
        users = users.join("\n"),
        leaf = s.leaf_port,
    )
}

/// Who uses one house's leaf connection: its nodes and the owner who backs up there.
struct HouseRoles {
    nodes: Vec<NodeId>,
    owner: Option<(AckToken, String)>,
    /// The reply inboxes of those clients.
    inboxes: Vec<String>,
}

fn house_roles(house: &House) -> HouseRoles {
    let nodes: Vec<NodeId> = house.nodes.iter().filter_map(|c| NodeId::from_hex(&c.node)).collect();
    let owner =
        house.owner.as_ref().and_then(|(token, locator)| Some((AckToken::from_hex(token)?, locator.clone())));
    let inboxes = nodes.iter().flat_map(|n| house_inboxes(n, owner.as_ref().map(|(t, _)| t))).collect();
    HouseRoles { nodes, owner, inboxes }
}

impl HouseRoles {
    /// The house's permissions (docs/SECURITY.md, houses): exactly the subjects of its nodes, of
    /// `quloud check` run there and of its owner, and replies to the members' inboxes.
    fn permissions(&self, reply_to: &[String]) -> Permissions {
        let owner = self.owner.as_ref().map(|(t, l)| (t, l.as_str()));
        let mut p = Permissions { publish: Vec::new(), subscribe: Vec::new(), responses: 0 };
        for node in &self.nodes {
            p.merge(house_permissions(node, owner, reply_to, JS_DOMAIN));
        }
        p
    }
}

/// A house's nats-server: on loopback `port`, a leaf node of the hub at `leaf` (`HOST:PORT`),
/// logging in as `user`, trusting only the CA in `ca`.
pub fn leaf_config(name: &str, port: u16, leaf: &str, user: &str, password: &str, ca: &Path) -> String {
    format!(
        "server_name: house-{name}\nhost: 127.0.0.1\nport: {port}\n{PINGS}\
         leafnodes {{\n  remotes = [ {{\n    url: \"tls://{user}:{password}@{leaf}\"\n    tls {{ ca_file: {} }}\n  }} ]\n}}\n",
        quoted(ca)
    )
}
