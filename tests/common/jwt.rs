//! Operator-mode NATS without `nsc`: an operator, accounts and users minted as JWTs in the
//! nats-io/jwt v2 format that nats-server 2.9 checks (claims signed with the issuer's nkey),
//! `.creds` files for users, and the server config that trusts the operator.
//!
//! A JWT is `base64url(header).base64url(claims).base64url(signature)`, unpadded, where the
//! signature is the issuer's ed25519 signature of the first two parts. Operators sign
//! themselves and their accounts; an account signs its users.

use nkeys::KeyPair;
use quloud::adapters::nats::permissions::Permissions;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

/// Unpadded base64url (RFC 4648 §5), as JWTs use.
pub fn base64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for group in bytes.chunks(3) {
        let b = [group[0], *group.get(1).unwrap_or(&0), *group.get(2).unwrap_or(&0)];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..=group.len() {
            out.push(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize] as char);
        }
    }
    out
}

fn now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()
}

/// A JSON string literal.
fn quote(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn list(items: &[String]) -> String {
    format!("[{}]", items.iter().map(|s| quote(s)).collect::<Vec<_>>().join(","))
}

/// A JWT issued by `issuer` to `subject` (a public nkey) with the type-specific `nats` fields
/// (a JSON object body without braces, `type` and `version` added here).
fn sign(issuer: &KeyPair, subject: &str, name: &str, iat: u64, nats: &str, kind: &str) -> String {
    let header = base64url(br#"{"typ":"JWT","alg":"ed25519-nkey"}"#);
    let body = |jti: &str| {
        format!(
            r#"{{"jti":{},"iat":{iat},"iss":{},"name":{},"sub":{},"nats":{{{nats}{}"type":{},"version":2}}}}"#,
            quote(jti),
            quote(&issuer.public_key()),
            quote(name),
            quote(subject),
            if nats.is_empty() { "" } else { "," },
            quote(kind),
        )
    };
    // The id is a hash of the claims without it, as nsc makes it (any unique string passes).
    let jti = blake3::hash(body("").as_bytes()).to_hex().to_uppercase()[..52].to_string();
    let signed = format!("{header}.{}", base64url(body(&jti).as_bytes()));
    let signature = issuer.sign(signed.as_bytes()).expect("the issuer key holds a seed");
    format!("{signed}.{}", base64url(&signature))
}

/// The root of trust: a self-signed operator.
pub struct Operator {
    key: KeyPair,
}

impl Operator {
    pub fn new() -> Operator {
        Operator { key: KeyPair::new_operator() }
    }

    /// The operator's own JWT (for the server's `operator:` file).
    pub fn jwt(&self) -> String {
        sign(&self.key, &self.key.public_key(), "quloud-test-operator", now(), "", "operator")
    }

    /// `account`'s JWT signed by this operator. With `jetstream`, the account may use it
    /// without limits; users in `revoked` are refused from now on.
    pub fn account_jwt(&self, account: &Account, jetstream: bool, revoked: &[&User]) -> String {
        let storage = if jetstream { -1 } else { 0 };
        let mut nats = format!(
            r#""limits":{{"subs":-1,"data":-1,"payload":-1,"imports":-1,"exports":-1,"wildcards":true,"conn":-1,"leaf":-1,"mem_storage":{storage},"disk_storage":{storage},"streams":-1,"consumer":-1}},"default_permissions":{{"pub":{{}},"sub":{{}}}}"#
        );
        if !revoked.is_empty() {
            // A user JWT issued at or before its revocation time is refused.
            let entries: Vec<_> = revoked.iter().map(|u| format!("{}:{}", quote(&u.public), u.iat)).collect();
            nats.push_str(&format!(r#","revocations":{{{}}}"#, entries.join(",")));
        }
        sign(&self.key, &account.public(), &account.name, now(), &nats, "account")
    }
}

/// An account: its users connect into it and share its subjects and JetStream.
pub struct Account {
    key: KeyPair,
    pub name: String,
}

impl Account {
    pub fn new(name: &str) -> Account {
        Account { key: KeyPair::new_account(), name: name.into() }
    }

    pub fn public(&self) -> String {
        self.key.public_key()
    }

    /// A user of this account restricted to `perms` (`None`: no restriction).
    pub fn user(&self, name: &str, perms: Option<&Permissions>) -> User {
        let key = KeyPair::new_user();
        let mut nats = r#""subs":-1,"data":-1,"payload":-1"#.to_string();
        if let Some(p) = perms {
            nats.push_str(&user_permissions(p));
        }
        let iat = now();
        let jwt = sign(&self.key, &key.public_key(), name, iat, &nats, "user");
        User { seed: key.seed().unwrap(), public: key.public_key(), jwt, iat }
    }
}

/// The `pub`/`sub`/`resp` claims of a user allowed exactly `p`. An empty allow list means
/// "anything" in a JWT, so an empty list becomes a deny of everything.
fn user_permissions(p: &Permissions) -> String {
    let part = |allow: &[String]| match allow {
        [] => r#"{"deny":[">"]}"#.to_string(),
        _ => format!(r#"{{"allow":{}}}"#, list(allow)),
    };
    let mut out = format!(r#","pub":{},"sub":{}"#, part(&p.publish), part(&p.subscribe));
    if p.responses > 0 {
        // `ttl` is a Go time.Duration: nanoseconds. `quloud nats-user` says 2 minutes.
        out.push_str(&format!(r#","resp":{{"max":{},"ttl":{}}}"#, p.responses, 120_000_000_000u64));
    }
    out
}

/// A user: its JWT and nkey seed, which together make its `.creds` file.
pub struct User {
    pub seed: String,
    pub public: String,
    pub jwt: String,
    iat: u64,
}

impl User {
    /// The standard `.creds` text, as `nsc generate creds` writes it.
    pub fn creds(&self) -> String {
        format!(
            "-----BEGIN NATS USER JWT-----\n{}\n------END NATS USER JWT------\n\n\
             ************************* IMPORTANT *************************\n\
             NKEY Seed printed below can be used to sign and prove identity.\n\
             NKEYs are sensitive and should be treated as secrets.\n\n\
             -----BEGIN USER NKEY SEED-----\n{}\n------END USER NKEY SEED------\n\n\
             *************************************************************\n",
            self.jwt, self.seed
        )
    }

    /// Writes the `.creds` file to `path` and returns the path.
    pub fn write_creds(&self, path: &Path) -> std::path::PathBuf {
        std::fs::write(path, self.creds()).unwrap();
        path.to_path_buf()
    }
}

/// The permissions of a `users` entry printed by `quloud nats-user` (its publish and subscribe
/// allow lists and `allow_responses: { max: N … }`), to put the same lists into a user JWT.
pub fn parse_users_entry(entry: &str) -> Permissions {
    let section = |start: &str| -> Vec<String> {
        let Some(at) = entry.find(start) else { return Vec::new() };
        let rest = &entry[at + start.len()..];
        let end = rest.find(']').expect("an allow list ends with ]");
        rest[..end].split('"').skip(1).step_by(2).map(str::to_string).collect()
    };
    let responses = entry
        .split_once("allow_responses: { max: ")
        .map(|(_, rest)| rest.split(',').next().unwrap().trim().parse().unwrap())
        .unwrap_or(0);
    let p = Permissions {
        publish: section("publish: { allow: ["),
        subscribe: section("subscribe: { allow: ["),
        responses,
    };
    assert!(!p.publish.is_empty() && !p.subscribe.is_empty(), "no allow lists in:\n{entry}");
    p
}

/// A nats-server config trusting `operator`, with `accounts` (public key, JWT) preloaded in a
/// memory resolver, `system` as the system account, and JetStream in `dir/js`.
pub fn operator_config(
    dir: &Path,
    port: u16,
    operator: &Operator,
    system: &str,
    accounts: &[(String, String)],
) -> String {
    std::fs::create_dir_all(dir).unwrap();
    let op_file = dir.join("operator.jwt");
    std::fs::write(&op_file, operator.jwt()).unwrap();
    let preload: String = accounts.iter().map(|(public, jwt)| format!("  {public}: {jwt}\n")).collect();
    format!(
        "host: 127.0.0.1\nport: {port}\noperator: \"{}\"\nsystem_account: {system}\n\
         resolver: MEMORY\nresolver_preload: {{\n{preload}}}\njetstream {{\n  store_dir: \"{}\"\n}}\n",
        op_file.display(),
        dir.join("js").display()
    )
}
