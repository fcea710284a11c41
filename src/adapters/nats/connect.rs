//! Connecting to the broker as it is deployed for real: several servers of a cluster (the client
//! reconnects across them and learns the rest from the cluster), TLS with a custom CA and client
//! certificates, NATS credentials or nkey seed files, and a private inbox prefix so that account
//! permissions can keep one client from reading another's replies (docs/OPERATIONS.md).

use crate::ports::fabric::FabricError;
use async_nats::{ConnectErrorKind, ConnectOptions, Event, ServerAddr, ServerError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// Where and how to connect. Built from the command line (`--nats`, `--nats-creds`, …).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BrokerConfig {
    /// Server URLs (`nats://`, `tls://`), tried in turn and used for reconnecting.
    pub servers: Vec<String>,
    /// A NATS credentials file (user JWT + nkey seed), for operator-mode deployments.
    pub creds: Option<PathBuf>,
    /// A file holding an nkey user seed (`SU…`), for nkey users in the server config.
    pub nkey: Option<PathBuf>,
    /// PEM file of CA certificates to trust for `tls://` servers (added to the system roots).
    pub ca: Option<PathBuf>,
    /// PEM client certificate and key, for servers that verify clients.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    /// Prefix of this client's reply subjects (default `_INBOX`). Give each user its own and
    /// allow it only that prefix, so nobody reads another client's replies.
    pub inbox_prefix: Option<String>,
    /// Messages buffered per subscription before the client drops (and logs) the excess: with
    /// messages of at most 1 MiB, this bounds what a flood can make a slow subscriber hold.
    pub subscription_capacity: Option<usize>,
    /// The JetStream domain holding Quloud's streams, when they live on another cluster than
    /// the server connected to (a NAS's leaf node reaching its hub: docs/OPERATIONS.md).
    pub js_domain: Option<String>,
}

impl From<&str> for BrokerConfig {
    /// One URL or a comma-separated list, no TLS files, no credentials.
    fn from(urls: &str) -> Self {
        BrokerConfig { servers: split_urls(urls), ..Default::default() }
    }
}

impl From<String> for BrokerConfig {
    fn from(urls: String) -> Self {
        BrokerConfig::from(urls.as_str())
    }
}

/// Splits a comma-separated list of URLs, dropping blanks.
pub fn split_urls(urls: &str) -> Vec<String> {
    urls.split(',').map(str::trim).filter(|u| !u.is_empty()).map(str::to_string).collect()
}

impl BrokerConfig {
    /// The servers as one line, for messages (`nats://a:4222,nats://b:4222`), with any
    /// password in them masked.
    pub fn display(&self) -> String {
        self.servers.iter().map(|u| mask_password(u)).collect::<Vec<_>>().join(",")
    }

    /// Checks everything that can be checked before connecting: at least one server, every URL
    /// parses, files exist, one kind of credentials at most.
    pub fn validate(&self) -> Result<Vec<ServerAddr>, FabricError> {
        let bad = |reason: String| FabricError::Config(reason);
        if self.servers.is_empty() {
            return Err(bad("no NATS server given: pass --nats URL (several separated by commas)".into()));
        }
        let mut addrs = Vec::with_capacity(self.servers.len());
        for url in &self.servers {
            let addr: ServerAddr = url.parse().map_err(|e| {
                bad(format!(
                    "bad NATS server URL {url:?}: {e} (expected nats://HOST:PORT or tls://HOST:PORT)"
                ))
            })?;
            addrs.push(addr);
        }
        if self.creds.is_some() && self.nkey.is_some() {
            return Err(bad("give either --nats-creds or --nats-nkey, not both".into()));
        }
        let files = [self.creds.as_deref(), self.nkey.as_deref(), self.ca.as_deref()]
            .into_iter()
            .chain(self.client_cert.iter().flat_map(|(c, k)| [Some(c.as_path()), Some(k.as_path())]));
        for file in files.flatten() {
            if !file.is_file() {
                return Err(bad(format!("{} does not exist or is not a file", file.display())));
            }
        }
        if let Some(domain) = &self.js_domain {
            if domain.is_empty() || domain.contains(['.', ' ', '*', '>']) {
                return Err(bad(format!("bad JetStream domain {domain:?}: one subject token, such as hub")));
            }
        }
        if let Some(prefix) = &self.inbox_prefix {
            let valid = !prefix.is_empty()
                && !prefix.starts_with('.')
                && !prefix.ends_with('.')
                && !prefix.contains([' ', '*', '>', '\t']);
            if !valid {
                return Err(bad(format!(
                    "bad inbox prefix {prefix:?}: use subject tokens such as _INBOX_node1"
                )));
            }
        }
        Ok(addrs)
    }

    async fn options(
        &self,
        addrs: &[ServerAddr],
        name: &str,
        watch: &Watch,
    ) -> Result<ConnectOptions, FabricError> {
        // A user and password (or a token) given in a URL, as in nats://USER:PASS@HOST:PORT.
        let in_url = addrs
            .iter()
            .find_map(|a| a.username().map(|u| (u.to_string(), a.password().map(str::to_string))));
        let mut opts = match (&self.creds, &self.nkey, in_url) {
            (Some(creds), _, _) => ConnectOptions::with_credentials_file(creds).await.map_err(|e| {
                FabricError::Config(format!("cannot use NATS credentials file {}: {e}", creds.display()))
            })?,
            (None, Some(nkey), _) => ConnectOptions::with_nkey(read_seed(nkey)?),
            (None, None, Some((user, Some(pass)))) => ConnectOptions::with_user_and_password(user, pass),
            (None, None, Some((token, None))) => ConnectOptions::with_token(token),
            (None, None, None) => ConnectOptions::new(),
        };
        if let Some(ca) = &self.ca {
            opts = opts.add_root_certificates(ca.clone());
        }
        if let Some((cert, key)) = &self.client_cert {
            opts = opts.add_client_certificate(cert.clone(), key.clone());
        }
        if let Some(prefix) = &self.inbox_prefix {
            opts = opts.custom_inbox_prefix(prefix);
        }
        if let Some(n) = self.subscription_capacity {
            opts = opts.subscription_capacity(n.max(1));
        }
        let (who, watch) = (name.to_string(), watch.clone());
        Ok(opts
            .name(name)
            .connection_timeout(Duration::from_secs(5))
            .request_timeout(Some(Duration::from_secs(10)))
            .event_callback(move |event| {
                match &event {
                    Event::ServerError(e) => watch.violations.record(e),
                    Event::Connected => watch.link.record(true),
                    Event::Disconnected => watch.link.record(false),
                    _ => {}
                }
                let who = who.clone();
                async move { log_event(&who, event) }
            }))
    }
}

/// `url` with the password between `:` and `@` replaced by `***`.
fn mask_password(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    match rest.split_once('@') {
        Some((auth, host)) => match auth.split_once(':') {
            Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
            None => format!("{scheme}://***@{host}"),
        },
        None => url.to_string(),
    }
}

/// Reads an nkey user seed from `path` and checks that it is one.
pub fn read_seed(path: &Path) -> Result<String, FabricError> {
    let bad =
        |why: String| FabricError::Config(format!("cannot use nkey seed file {}: {why}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| bad(e.to_string()))?;
    let seed = text.lines().map(str::trim).find(|l| l.starts_with("SU")).ok_or_else(|| {
        bad("no user seed (a line starting with SU) in it; create one with `quloud nats-user ROLE --nkey FILE`".into())
    })?;
    nkeys::KeyPair::from_seed(seed).map_err(|e| bad(e.to_string()))?;
    Ok(seed.to_string())
}

fn log_event(who: &str, event: Event) {
    match event {
        Event::Connected => tracing::info!(client = who, "connected to NATS"),
        Event::Disconnected => tracing::warn!(client = who, "lost the NATS connection; reconnecting"),
        Event::ServerError(e) => tracing::warn!(client = who, error = %e,
            "NATS server error (a permissions violation means the account lacks a subject: see docs/OPERATIONS.md)"),
        Event::SlowConsumer(_) => tracing::warn!(client = who, "NATS slow consumer: messages were dropped"),
        Event::LameDuckMode => {
            tracing::info!(client = who, "NATS server is shutting down; moving to another")
        }
        other => tracing::debug!(client = who, event = %other, "NATS event"),
    }
}

/// The newest permissions violation the server reported on a connection: the user lacks a
/// subject its role needs. The server drops what it denies, so a denied JetStream request only
/// times out; a command binding its streams waits on [`Violations::first`] alongside, to fail at
/// once and say why ([`BrokerConfig::lacks_permission`]).
#[derive(Clone, Debug)]
pub struct Violations(Arc<watch::Sender<Option<String>>>);

impl Default for Violations {
    fn default() -> Self {
        Violations(Arc::new(watch::channel(None).0))
    }
}

impl Violations {
    /// The newest violation, as the server worded it.
    pub fn last(&self) -> Option<String> {
        self.0.borrow().clone()
    }

    /// The first violation reported (at once if there was one already).
    pub async fn first(&self) -> String {
        let mut seen = self.0.subscribe();
        loop {
            if let Some(v) = seen.borrow_and_update().clone() {
                return v;
            }
            // The sender lives in `self`: `changed` cannot fail while we wait.
            let _ = seen.changed().await;
        }
    }

    fn record(&self, error: &ServerError) {
        let text = error.to_string();
        let text = text.strip_prefix("nats: ").unwrap_or(&text);
        if text.to_lowercase().starts_with("permissions violation") {
            self.0.send_replace(Some(text.to_string()));
        }
    }
}

/// Whether a connection is up, and since when (Unix ms), as the client's events report it: a
/// mount fails reads at once while it is down, and `quloud status` shows it.
#[derive(Clone, Debug)]
pub struct LinkState(Arc<watch::Sender<(bool, u64)>>);

impl LinkState {
    fn new() -> Self {
        LinkState(Arc::new(watch::channel((true, crate::domain::unix_ms(std::time::SystemTime::now()))).0))
    }

    /// (connected, since when in Unix ms).
    pub fn now(&self) -> (bool, u64) {
        *self.0.borrow()
    }

    /// Whether the connection is up now or comes back within `within`.
    pub async fn up_within(&self, within: Duration) -> bool {
        let mut rx = self.0.subscribe();
        let up = tokio::time::timeout(within, rx.wait_for(|(up, _)| *up)).await.is_ok_and(|r| r.is_ok());
        up
    }

    fn record(&self, up: bool) {
        let now = crate::domain::unix_ms(std::time::SystemTime::now());
        self.0.send_if_modified(|state| {
            let changed = state.0 != up;
            if changed {
                *state = (up, now);
            }
            changed
        });
    }
}

/// What a connection's events tell: permissions violations and whether it is up.
#[derive(Clone, Debug)]
struct Watch {
    violations: Violations,
    link: LinkState,
}

/// Connects to one of the servers, failing fast with a clear error when none can be reached or
/// the server refuses the credentials. Once connected, the client reconnects across all of them
/// (and the cluster's other servers) for as long as it lives; the connection's permissions
/// violations are recorded in the [`Violations`] returned with it, and whether it is up in the
/// [`LinkState`].
pub async fn connect(
    broker: &BrokerConfig,
    name: &str,
) -> Result<(async_nats::Client, Violations, LinkState), FabricError> {
    let addrs = broker.validate()?;
    let watch = Watch { violations: Violations::default(), link: LinkState::new() };
    let client = broker.options(&addrs, name, &watch).await?.connect(addrs).await.map_err(|e| {
        match e.kind() {
            // The server's log says why (unknown user, revoked or expired JWT, untrusted issuer).
            ConnectErrorKind::AuthorizationViolation => broker.refused(e.kind().to_string(), None),
            ConnectErrorKind::Authentication => broker.refused(e.to_string(), None),
            _ => FabricError::Unreachable { url: broker.display(), reason: e.to_string() },
        }
    })?;
    Ok((client, watch.violations, watch.link))
}

impl BrokerConfig {
    /// The error for a connection whose user lacks a subject: `violation` is what the server
    /// said, `role` the argument of `quloud nats-user` that prints the permissions it needs.
    pub fn lacks_permission(&self, violation: String, role: &str) -> FabricError {
        let domain = self.js_domain.as_ref().map(|d| format!(" --js-domain {d}")).unwrap_or_default();
        let hint = format!(
            "the user lacks a subject a {} needs: grant it what `quloud nats-user {role}{domain}` prints \
             (docs/OPERATIONS.md)",
            if role == "node" { "storage node" } else { "vault owner" }
        );
        self.refused(violation, Some(hint))
    }

    /// The error for a server that refused this client, naming the credentials given and what
    /// to check (`hint`, or what usually makes a server refuse those credentials).
    fn refused(&self, reason: String, hint: Option<String>) -> FabricError {
        let user_in_url =
            self.servers.iter().any(|u| u.parse::<ServerAddr>().is_ok_and(|a| a.username().is_some()));
        let (who, usual) = match (&self.creds, &self.nkey) {
            (Some(f), _) => (
                format!("the credentials in {} (--nats-creds)", f.display()),
                "check that the server trusts the operator and account that signed its user JWT, \
                 and that the JWT is neither expired nor revoked"
                    .to_string(),
            ),
            (None, Some(f)) => (
                format!("the nkey in {} (--nats-nkey)", f.display()),
                format!(
                    "check that the server's users list its public key (`quloud nats-user ROLE --nkey {}` \
                     prints the entry)",
                    f.display()
                ),
            ),
            (None, None) if user_in_url => (
                "the user and password (or token) in the URL".to_string(),
                "check them against the server's users".to_string(),
            ),
            (None, None) => (
                "this client (no credentials given)".to_string(),
                "pass --nats-creds FILE, --nats-nkey FILE or nats://USER:PASS@HOST:PORT".to_string(),
            ),
        };
        FabricError::Refused { url: self.display(), who, reason, hint: hint.unwrap_or(usual) }
    }
}

/// The JetStream context for `client`: the server's own, or that of `broker.js_domain`.
pub fn jetstream(broker: &BrokerConfig, client: async_nats::Client) -> async_nats::jetstream::Context {
    match &broker.js_domain {
        Some(domain) => async_nats::jetstream::with_domain(client, domain),
        None => async_nats::jetstream::new(client),
    }
}

/// Generates an nkey user: returns (seed, public key).
pub fn new_user_nkey() -> (String, String) {
    let pair = nkeys::KeyPair::new_user();
    (pair.seed().unwrap_or_default(), pair.public_key())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_split_on_commas_and_blanks_are_dropped() {
        let b = BrokerConfig::from(" nats://a:1, tls://b:2 ,,");
        assert_eq!(b.servers, vec!["nats://a:1", "tls://b:2"]);
        assert_eq!(b.validate().unwrap().len(), 2);
        assert_eq!(b.display(), "nats://a:1,tls://b:2");
    }

    #[test]
    fn passwords_and_tokens_in_urls_are_masked_in_messages() {
        let b = BrokerConfig::from("nats://alice:s3cret@a:1,nats://tok@b:2,tls://c:3");
        assert_eq!(b.display(), "nats://alice:***@a:1,nats://***@b:2,tls://c:3");
        assert!(!b.display().contains("s3cret") && !b.display().contains("tok@"));
    }

    #[test]
    fn bad_configurations_are_refused_with_a_reason() {
        let e = BrokerConfig::from("").validate().unwrap_err().to_string();
        assert!(e.contains("no NATS server"), "{e}");
        let e = BrokerConfig::from("http://[::1").validate().unwrap_err().to_string();
        assert!(e.contains("bad NATS server URL"), "{e}");
        let mut b = BrokerConfig::from("nats://a:1");
        b.ca = Some("/nonexistent/ca.pem".into());
        assert!(b.validate().unwrap_err().to_string().contains("does not exist"));
        let mut b = BrokerConfig::from("nats://a:1");
        b.creds = Some("/etc/hostname".into());
        b.nkey = Some("/etc/hostname".into());
        assert!(b.validate().unwrap_err().to_string().contains("not both"));
        let mut b = BrokerConfig::from("nats://a:1");
        b.inbox_prefix = Some("_INBOX.>".into());
        assert!(b.validate().unwrap_err().to_string().contains("inbox prefix"));
    }

    #[test]
    fn a_refusal_names_the_credentials_and_what_to_check() {
        let reason = || "authorization violation".to_string();
        let mut b = BrokerConfig::from("nats://alice:s3cret@a:1");
        let e = b.refused(reason(), None).to_string();
        assert!(e.starts_with("NATS at nats://alice:***@a:1 refused the user and password"), "{e}");
        assert!(!e.contains("s3cret") && !e.contains('\n'), "{e}");
        b.creds = Some("/etc/quloud/node.creds".into());
        let e = b.refused(reason(), None).to_string();
        assert!(e.contains("/etc/quloud/node.creds (--nats-creds): authorization violation; "), "{e}");
        assert!(e.contains("revoked"), "{e}");
        b.js_domain = Some("hub".into());
        let e = b.lacks_permission("Permissions Violation for Publish to \"x\"".into(), "node").to_string();
        assert!(e.contains("--nats-creds): Permissions Violation for Publish to \"x\"; "), "{e}");
        assert!(e.contains("`quloud nats-user node --js-domain hub`"), "{e}");
        let b = BrokerConfig { nkey: Some("n.nk".into()), ..BrokerConfig::from("nats://a:1") };
        assert!(b.refused(reason(), None).to_string().contains("quloud nats-user ROLE --nkey n.nk"));
        let e = BrokerConfig::from("nats://a:1").refused(reason(), None).to_string();
        assert!(e.contains("no credentials given") && e.contains("--nats-creds FILE"), "{e}");
    }

    #[test]
    fn only_permissions_violations_are_recorded() {
        let v = Violations::default();
        v.record(&ServerError::AuthorizationViolation);
        assert_eq!(v.last(), None);
        v.record(&ServerError::Other("Permissions Violation for Subscription to \"a.>\"".into()));
        assert_eq!(v.last().as_deref(), Some("Permissions Violation for Subscription to \"a.>\""));
    }

    #[test]
    fn a_seed_file_must_hold_a_user_seed() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("seed");
        std::fs::write(&path, "not a seed\n").unwrap();
        assert!(read_seed(&path).unwrap_err().to_string().contains("no user seed"));
        std::fs::write(&path, "SUAAAAAAAAAAAAAAAAAAAAAAAAAAAAA\n").unwrap();
        assert!(read_seed(&path).is_err());
        let (seed, public) = new_user_nkey();
        assert!(public.starts_with('U'));
        std::fs::write(&path, format!("# comment\n{seed}\n")).unwrap();
        assert_eq!(read_seed(&path).unwrap(), seed);
    }
}
