//! The NATS subjects each role needs, as nats-server `permissions` blocks: one place that knows
//! every subject, stream and consumer a storage node or a vault owner touches, so the least
//! privilege an operator grants always matches the code (`quloud nats-user`, docs/OPERATIONS.md).
//!
//! A node may pull store requests, read pending chunk bodies, publish signed acks (signatures, not subjects, keep it from
//! acking for another node), answer requests on its own subject and the broadcast subject, and
//! read its own inbox. It can read no vault's ack subject, no ack stream message and no other
//! client's replies. An owner may publish store requests, chunk bodies and requests to nodes, and read only
//! its own vault's acks (its durable consumer's filter is part of the create subject) and root
//! records.

use super::{
    ack_subject, lease_subject, root_subject, roots_request_subject, ACK_STREAM, BODY_STREAM, BROADCAST_GET,
    LEASE_STREAM, ROOT_STREAM, STORE_CONSUMER, STORE_STREAM, STORE_SUBJECT,
};
use crate::domain::house::check_token;
use crate::domain::ids::{AckToken, NodeId};
use crate::domain::wire::MAX_ITEMS;

/// The name of a node's durable consumer on the root record stream.
pub fn node_roots_consumer(node: &NodeId) -> String {
    format!("node-roots-{node}")
}

/// The name of a vault's durable consumer on the ack stream.
pub fn owner_ack_consumer(token: &AckToken) -> String {
    format!("owner-{token}")
}

/// A node's reply-subject prefix unless `--nats-inbox-prefix` says otherwise: its own, so its
/// account can be allowed that one and no other client's replies.
pub fn node_inbox(node: &NodeId) -> String {
    format!("_INBOX_node_{}", &node.to_string()[..16])
}

/// A vault owner's reply-subject prefix unless `--nats-inbox-prefix` says otherwise.
pub fn owner_inbox(token: &AckToken) -> String {
    format!("_INBOX_owner_{}", &token.to_string()[..16])
}

/// What one NATS user may publish and subscribe to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Permissions {
    /// Subjects it may publish to.
    pub publish: Vec<String>,
    /// Subjects it may subscribe to.
    pub subscribe: Vec<String>,
    /// Replies it may send to each request it received (0: none).
    pub responses: usize,
}

fn api(s: &str) -> String {
    format!("$JS.API.{s}")
}

/// Binding (and, on an empty broker, creating) Quloud's four streams.
fn stream_access() -> Vec<String> {
    [STORE_STREAM, BODY_STREAM, ACK_STREAM, ROOT_STREAM, LEASE_STREAM]
        .iter()
        .flat_map(|s| [api(&format!("STREAM.INFO.{s}")), api(&format!("STREAM.CREATE.{s}"))])
        .chain([api("INFO")])
        .collect()
}

/// Binding and pulling from one durable consumer, and acknowledging its messages.
fn durable_access(stream: &str, consumer: &str, filter: Option<&str>) -> Vec<String> {
    let create = match filter {
        Some(f) => api(&format!("CONSUMER.CREATE.{stream}.{consumer}.{f}")),
        None => api(&format!("CONSUMER.CREATE.{stream}.{consumer}")),
    };
    vec![
        create,
        api(&format!("CONSUMER.INFO.{stream}.{consumer}")),
        api(&format!("CONSUMER.MSG.NEXT.{stream}.{consumer}")),
        format!("$JS.ACK.{stream}.{consumer}.>"),
    ]
}

/// A storage node's permissions; `inbox` is its `--nats-inbox-prefix`.
pub fn node_permissions(node: &NodeId, inbox: &str) -> Permissions {
    let mut publish = stream_access();
    publish.extend(durable_access(STORE_STREAM, STORE_CONSUMER, None));
    // The body of a slot it took: `DIRECT.GET.<stream>.<body subject>`.
    publish.push(api(&format!("DIRECT.GET.{BODY_STREAM}.>")));
    publish.extend(durable_access(ROOT_STREAM, &node_roots_consumer(node), None));
    publish.push("quloud.v1.ack.*".into());
    Permissions {
        publish,
        subscribe: vec![
            format!("{inbox}.>"),
            format!("quloud.v1.node.{node}.>"),
            BROADCAST_GET.into(),
            roots_request_subject("*"),
        ],
        // A get answers each chunk in its own message.
        responses: MAX_ITEMS + 1,
    }
}

/// What storing, reading, auditing and deleting chunks takes, for the vault of `token`: the
/// part of an owner's permissions that needs no root key (all `quloud check` does).
fn chunk_owner_permissions(token: &AckToken, inbox: &str) -> Permissions {
    let acks = owner_ack_consumer(token);
    let mut publish = stream_access();
    publish.extend(durable_access(ACK_STREAM, &acks, Some(&ack_subject(token))));
    publish.push(api(&format!("CONSUMER.DELETE.{ACK_STREAM}.{acks}")));
    publish.extend([
        STORE_SUBJECT.to_string(),
        "quloud.v1.body.*".into(),
        "quloud.v1.node.*.*".into(),
        BROADCAST_GET.into(),
    ]);
    Permissions { publish, subscribe: vec![format!("{inbox}.>")], responses: 0 }
}

/// A vault owner's permissions; `locator` names its root records, `inbox` is its prefix.
pub fn owner_permissions(token: &AckToken, locator: &str, inbox: &str) -> Permissions {
    let mut p = chunk_owner_permissions(token, inbox);
    let publish = &mut p.publish;
    // Reading its root record history: a short-lived consumer whose name the server picks.
    // Root records are signed and encrypted, so reading another vault's gains nothing.
    publish.push(api(&format!("CONSUMER.CREATE.{ROOT_STREAM}")));
    publish.extend(["INFO", "MSG.NEXT", "DELETE"].map(|op| api(&format!("CONSUMER.{op}.{ROOT_STREAM}.*"))));
    // Reading the writer lease (signed, and naming only an epoch and a random writer id).
    publish.push(api(&format!("STREAM.MSG.GET.{LEASE_STREAM}")));
    publish.extend([root_subject(locator), lease_subject(locator), roots_request_subject(locator)]);
    p
}

/// The reply inboxes of one house's clients: its node's, `quloud check`'s there, and its owner's.
pub fn house_inboxes(node: &NodeId, owner: Option<&AckToken>) -> Vec<String> {
    let mut inboxes = vec![node_inbox(node), owner_inbox(&check_token(node))];
    inboxes.extend(owner.map(owner_inbox));
    inboxes
}

/// What a house's leaf connection to the hub may carry, in the hub's JetStream `domain`: its
/// node's subjects, `quloud check`'s (the ack token `check_token(node)`), its owner's when it
/// backs up (`owner`: ack token and root locator), and replies to `reply_to`, the members'
/// reply inboxes ([`house_inboxes`]). Publish is what the house may send into the hub, subscribe
/// what the hub delivers to it. A leaf connection has no `allow_responses`: a node's answers to
/// another house's requests need the requester's inbox by name.
pub fn house_permissions(
    node: &NodeId,
    owner: Option<(&AckToken, &str)>,
    reply_to: &[String],
    domain: &str,
) -> Permissions {
    let check = check_token(node);
    let mut house = node_permissions(node, &node_inbox(node));
    house.responses = 0;
    house.merge(chunk_owner_permissions(&check, &owner_inbox(&check)));
    if let Some((token, locator)) = owner {
        house.merge(owner_permissions(token, locator, &owner_inbox(token)));
        // Placement: the owner asks the hub for the houses' certificates.
        house.merge(Permissions {
            publish: vec![super::HOUSES_SUBJECT.into()],
            subscribe: Vec::new(),
            responses: 0,
        });
    }
    let replies = reply_to.iter().map(|inbox| format!("{inbox}.>")).collect();
    house.merge(Permissions { publish: replies, subscribe: Vec::new(), responses: 0 });
    house.in_domain(domain)
}

impl Permissions {
    /// Adds what `other` allows (each subject once); the larger response allowance stays.
    pub fn merge(&mut self, other: Permissions) {
        for (list, more) in [(&mut self.publish, other.publish), (&mut self.subscribe, other.subscribe)] {
            for s in more {
                if !list.contains(&s) {
                    list.push(s);
                }
            }
        }
        self.responses = self.responses.max(other.responses);
    }

    /// The same permissions for a client that reaches JetStream through `domain` (its API
    /// subjects are `$JS.<domain>.API.…`, mapped to `$JS.API.…` by the domain's servers).
    pub fn in_domain(mut self, domain: &str) -> Permissions {
        for s in &mut self.publish {
            if let Some(rest) = s.strip_prefix("$JS.API.") {
                *s = format!("$JS.{domain}.API.{rest}");
            }
        }
        self
    }

    /// A `users` entry for a nats-server config: `auth` is the identity part (for example
    /// `nkey: UAB…` or `user: node1, password: …`).
    pub fn user_entry(&self, auth: &str) -> String {
        let list = |items: &[String]| {
            items.iter().map(|s| format!("          \"{s}\"")).collect::<Vec<_>>().join(",\n")
        };
        let responses = if self.responses > 0 {
            format!("\n      allow_responses: {{ max: {}, expires: \"2m\" }}", self.responses)
        } else {
            String::new()
        };
        format!(
            "  {{\n    {auth}\n    permissions: {{\n      publish: {{ allow: [\n{}\n      ] }}\n      subscribe: {{ allow: [\n{}\n      ] }}{responses}\n    }}\n  }}\n",
            list(&self.publish),
            list(&self.subscribe),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_may_read_no_ack_subject_and_only_its_own_inbox_and_subject() {
        let node = NodeId([7; 32]);
        let p = node_permissions(&node, "_INBOX_n1");
        assert!(p.subscribe.iter().all(|s| !s.contains("ack") && !s.starts_with("_INBOX.")));
        assert!(p.subscribe.contains(&format!("quloud.v1.node.{node}.>")));
        assert!(p.publish.iter().all(|s| !s.contains(ACK_STREAM) || s.starts_with("$JS.API.STREAM.")));
        // Direct gets only of chunk bodies (ciphertext any node may be asked to store).
        let direct: Vec<_> = p.publish.iter().filter(|s| s.contains("DIRECT.GET")).collect();
        assert_eq!(direct, [&format!("$JS.API.DIRECT.GET.{BODY_STREAM}.>")]);
        assert!(p.publish.iter().all(|s| !s.contains("MSG.GET")));
        assert!(p.publish.iter().all(|s| !s.starts_with("quloud.v1.body")));
    }

    #[test]
    fn a_house_hears_only_its_own_node_and_inboxes_and_speaks_in_the_hubs_domain() {
        let (node, other) = (NodeId([7; 32]), NodeId([8; 32]));
        let token = AckToken([3; 16]);
        let members = [house_inboxes(&node, Some(&token)), house_inboxes(&other, None)].concat();
        let p = house_permissions(&node, Some((&token, "loc")), &members, "hub");
        let mut heard = vec![
            format!("{}.>", node_inbox(&node)),
            format!("quloud.v1.node.{node}.>"),
            BROADCAST_GET.to_string(),
            roots_request_subject("*"),
            format!("{}.>", owner_inbox(&check_token(&node))),
            format!("{}.>", owner_inbox(&token)),
        ];
        let mut subscribe = p.subscribe.clone();
        heard.sort();
        subscribe.sort();
        assert_eq!(subscribe, heard);
        assert!(p.publish.iter().all(|s| !s.starts_with("$JS.API.") && s != ">" && !s.starts_with("*")));
        assert!(p.publish.contains(&format!("$JS.hub.API.DIRECT.GET.{BODY_STREAM}.>")));
        assert!(p.publish.contains(&format!("{}.>", node_inbox(&other))));
        assert!(p.publish.contains(&format!("{}.>", owner_inbox(&check_token(&other)))));
        assert!(p.publish.contains(&root_subject("loc")));
        let acks =
            |t: &AckToken| format!("$JS.hub.API.CONSUMER.CREATE.{ACK_STREAM}.owner-{t}.quloud.v1.ack.{t}");
        assert!(p.publish.contains(&acks(&token)) && p.publish.contains(&acks(&check_token(&node))));
        assert!(!p.publish.contains(&acks(&check_token(&other))));
        assert_eq!(p.responses, 0, "a leaf connection has no allow_responses");
        // Without an owner: no root, lease or owner ack subjects.
        let bare = house_permissions(&node, None, &members, "hub");
        assert!(bare.publish.iter().all(|s| !s.contains("loc") && !s.contains(&token.to_string())));
    }

    #[test]
    fn an_owner_reads_only_its_own_acks() {
        let token = AckToken([3; 16]);
        let p = owner_permissions(&token, "loc", "_INBOX_me");
        let filtered = format!("$JS.API.CONSUMER.CREATE.{ACK_STREAM}.owner-{token}.quloud.v1.ack.{token}");
        assert!(p.publish.contains(&filtered));
        assert!(p.publish.contains(&"$JS.API.CONSUMER.INFO.QULOUD_ROOTS_V1.*".to_string()));
        assert!(p.publish.contains(&"$JS.API.CONSUMER.CREATE.QULOUD_ROOTS_V1".to_string()));
        assert_eq!(p.subscribe, vec!["_INBOX_me.>".to_string()]);
        let conf = p.user_entry("nkey: UABC");
        assert!(conf.contains("nkey: UABC") && conf.contains(&filtered) && !conf.contains("allow_responses"));
    }
}
