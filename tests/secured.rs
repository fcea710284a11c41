//! A secured bus (docs/OPERATIONS.md): TLS with a private CA and nkey users whose permissions
//! come from `quloud nats-user`. A storage node and a mount restricted to exactly those subjects
//! do all their work, and the node's credentials cannot read any vault's acks or anyone else's
//! replies.

mod common;

use common::*;
use quloud::adapters::nats::permissions::Permissions;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

fn openssl(dir: &Path, args: &[&str]) {
    let bin = require_tool("openssl", "apt-get install -y openssl");
    let out = Command::new(bin).current_dir(dir).args(args).output().unwrap();
    assert!(out.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&out.stderr));
}

/// A CA and a server certificate for 127.0.0.1 signed by it: (ca.pem, server.pem, server.key).
fn certificates(dir: &Path) -> (PathBuf, PathBuf, PathBuf) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let mut ca = vec!["req", "-x509"];
    ca.extend(ec);
    ca.extend(["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=Quloud test CA"]);
    ca.extend(["-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign"]);
    openssl(dir, &ca);
    let mut req = vec!["req"];
    req.extend(ec);
    req.extend(["-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"]);
    openssl(dir, &req);
    std::fs::write(dir.join("san.ext"), "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        .unwrap();
    openssl(
        dir,
        &["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial"]
            .into_iter()
            .chain(["-out", "server.pem", "-days", "2", "-extfile", "san.ext"])
            .collect::<Vec<_>>(),
    );
    (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"))
}

/// `quloud [--home H] nats-user ROLE …` → the users entry it prints.
fn nats_user(home: &Path, args: &[&str]) -> String {
    let out = quloud(home).arg("nats-user").args(args).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "quloud nats-user {args:?}: {text}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// A client connected with `opts` (the credentials of some user), recording the server errors
/// it is sent.
async fn client_as(
    url: &str,
    opts: async_nats::ConnectOptions,
    inbox: &str,
) -> (async_nats::Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = opts
        .custom_inbox_prefix(inbox)
        .request_timeout(Some(Duration::from_secs(2)))
        .event_callback(move |e| {
            let tx = tx.clone();
            async move {
                if let async_nats::Event::ServerError(e) = e {
                    let _ = tx.send(e.to_string());
                }
            }
        })
        .connect(url)
        .await
        .expect("connect with the node's credentials");
    (client, rx)
}

/// Runs `quloud node` against `url` with `flags`, expecting it to give up within 30 s; returns
/// what it printed on stderr.
fn node_fails(what: &str, url: &str, data: &Path, flags: &[&str]) -> String {
    let flags: Vec<String> = flags.iter().map(|f| f.to_string()).collect();
    let out = within(Duration::from_secs(30), what, {
        let (url, data) = (url.to_string(), data.to_path_buf());
        move || {
            Command::new(env!("CARGO_BIN_EXE_quloud"))
                .args(["node", "--nats", &url, "--capacity", "1GiB", "--data"])
                .arg(&data)
                .args(&flags)
                .output()
                .unwrap()
        }
    });
    let err = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "{what}: the node did not fail; stderr:\n{err}");
    err
}

/// Stores a file through `m` while `spy` (connected with a node's credentials) subscribes to
/// every vault's ack subject, the owner's replies and every `_INBOX.>` and tries the ack stream,
/// and `admin` watches the acks. The control must see an ack, the spy nothing, and the server
/// must tell the spy about at least three permissions violations (collected by `errors`).
async fn assert_node_cannot_snoop(
    (spy, mut errors): (async_nats::Client, tokio::sync::mpsc::UnboundedReceiver<String>),
    admin: async_nats::Client,
    m: &Mount,
    owner_inbox: &str,
) {
    let mut acks = spy.subscribe("quloud.v1.ack.>").await.unwrap();
    let mut replies = spy.subscribe(format!("{owner_inbox}.>")).await.unwrap();
    let mut all_inboxes = spy.subscribe("_INBOX.>").await.unwrap();
    let js = async_nats::jetstream::new(spy.clone());
    let mut control = admin.subscribe("quloud.v1.ack.>").await.unwrap();
    spy.flush().await.unwrap();
    admin.flush().await.unwrap();

    write_synced(&m.path("snooped.bin"), &bytes(2 << 20, 12));
    wait_durable_within(&m.home, Duration::from_secs(60));
    let seen = tokio::time::timeout(Duration::from_secs(5), control.next()).await;
    assert!(matches!(seen, Ok(Some(_))), "the control subscriber saw no ack: the test proves nothing");
    for (what, sub) in [("acks", &mut acks), ("owner replies", &mut replies), ("_INBOX.>", &mut all_inboxes)]
    {
        let got = tokio::time::timeout(Duration::from_millis(500), sub.next()).await;
        assert!(!matches!(got, Ok(Some(_))), "the node's credentials read {what}");
    }
    let stream = js.get_stream("QULOUD_ACKS_V1").await;
    if let Ok(stream) = stream {
        let config = async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("spy".into()),
            ..Default::default()
        };
        assert!(stream.create_consumer(config).await.is_err(), "the node's credentials made an ack consumer");
        assert!(stream.get_raw_message(1).await.is_err(), "the node's credentials read an ack message");
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut violations = Vec::new();
    while violations.len() < 3 && Instant::now() < deadline {
        if let Ok(Some(e)) = tokio::time::timeout(Duration::from_millis(200), errors.recv()).await {
            violations.push(e);
        }
    }
    assert!(
        violations.iter().filter(|e| e.to_lowercase().contains("permissions violation")).count() >= 3,
        "expected permission violations for the snooping subscriptions, got {violations:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn least_privilege_users_work_and_a_node_cannot_read_acks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let (ca, cert, key) = certificates(d);
    let home = d.join("home");
    init_home(&home);
    let node_data = d.join("node-0");
    let node_entry = nats_user(&home, &["node", "--data", s(&node_data), "--nkey", s(&d.join("node.nk"))]);
    let owner_entry = nats_user(&home, &["owner", "--nkey", s(&d.join("owner.nk"))]);
    assert!(node_entry.contains("nkey: U") && owner_entry.contains("nkey: U"), "{node_entry}\n{owner_entry}");
    let owner_inbox = owner_entry
        .split('"')
        .find(|t| t.starts_with("_INBOX_owner_"))
        .expect("the owner's inbox in its entry")
        .trim_end_matches(".>")
        .to_string();
    let node_inbox = node_entry
        .split('"')
        .find(|t| t.starts_with("_INBOX_node_"))
        .expect("the node's inbox in its entry")
        .trim_end_matches(".>")
        .to_string();

    let port = free_port();
    let conf = format!(
        "host: 127.0.0.1\nport: {port}\njetstream {{\n  store_dir: \"{}\"\n}}\n\
         tls {{\n  cert_file: \"{}\"\n  key_file: \"{}\"\n  timeout: 5\n}}\n\
         authorization {{\n  users = [\n{node_entry}{owner_entry}  {{ user: admin, password: admin-secret }}\n  ]\n}}\n",
        d.join("nats/js").display(),
        cert.display(),
        key.display()
    );
    let nats = Nats::with_config(&d.join("nats"), port, &conf);
    let url = format!("tls://127.0.0.1:{port}");

    // Without the CA, or with a key the server does not know: a clear refusal, no hang.
    let node_nk = d.join("node.nk");
    let err = node_fails("a node without the CA", &url, &node_data, &["--nats-nkey", s(&node_nk)]);
    assert!(err.contains("cannot reach NATS"), "{err}");
    let stranger = d.join("stranger.nk");
    std::fs::write(&stranger, format!("{}\n", quloud::adapters::nats::connect::new_user_nkey().0)).unwrap();
    let flags = ["--nats-ca", s(&ca), "--nats-nkey", s(&stranger)];
    let err = node_fails("a node with an unknown nkey", &url, &node_data, &flags).to_lowercase();
    assert!(err.contains("authorization"), "{err}");

    // The restricted node and owner do all their work: store, ack, retrieve, snapshot.
    let tls = ["--nats-ca", s(&ca)];
    let node_flags = [tls[0], tls[1], "--nats-nkey", s(&node_nk)];
    let node = Node::start_with(&url, &node_data, "1GiB", &node_flags);
    let owner_nk = d.join("owner.nk");
    let mount_flags = ["--replicas", "1", tls[0], tls[1], "--nats-nkey", s(&owner_nk)];
    let mut m = Mount::start(&home, &d.join("mp"), &url, &mount_flags);
    let data = bytes(3 << 20, 11);
    write_synced(&m.path("a.bin"), &data);
    wait_durable_within(&home, Duration::from_secs(60));
    m.remount();
    let path = m.path("a.bin");
    let back = within(Duration::from_secs(30), "reading a.bin back", move || std::fs::read(path)).unwrap();
    assert!(back == data, "a.bin does not read back identical through the restricted users");
    assert!(
        !nats.log().contains("Permissions Violation"),
        "a restricted user lacked a subject:\n{}",
        nats.log()
    );

    // Node credentials snooping: every vault's ack subject, the ack stream, the owner's replies.
    let seed = std::fs::read_to_string(&node_nk).unwrap().trim().to_string();
    let as_node = async_nats::ConnectOptions::with_nkey(seed).add_root_certificates(ca.clone());
    let spy = client_as(&url, as_node, &node_inbox).await;
    let admin = async_nats::ConnectOptions::with_user_and_password("admin".into(), "admin-secret".into())
        .add_root_certificates(ca.clone())
        .connect(&url)
        .await
        .unwrap();
    assert_node_cannot_snoop(spy, admin, &m, &owner_inbox).await;
    m.unmount();
    drop(node);
}

/// Operator mode (docs/OPERATIONS.md): a server that trusts only JWTs signed by its operator,
/// a JetStream account, and users whose `pub`/`sub` allow lists are those `quloud nats-user`
/// prints. A node and a mount given `--nats-creds` do all their work; a node's credentials
/// cannot read acks; bad, revoked and powerless credentials are refused in one clear line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_mode_creds_with_the_nats_user_lists_work_and_a_node_cannot_read_acks() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let home = d.join("home");
    init_home(&home);
    let node_data = d.join("node-0");
    let node_perms = jwt::parse_users_entry(&nats_user(&home, &["node", "--data", s(&node_data)]));
    let owner_perms = jwt::parse_users_entry(&nats_user(&home, &["owner"]));
    let inbox = |p: &Permissions, prefix: &str| {
        let found = p.subscribe.iter().find(|t| t.starts_with(prefix)).expect("an inbox in the entry");
        found.trim_end_matches(".>").to_string()
    };
    let (node_inbox, owner_inbox) =
        (inbox(&node_perms, "_INBOX_node_"), inbox(&owner_perms, "_INBOX_owner_"));

    let operator = jwt::Operator::new();
    let (system, account) = (jwt::Account::new("SYS"), jwt::Account::new("QULOUD"));
    let creds = |user: jwt::User, name: &str| user.write_creds(&d.join(name));
    let node_creds = creds(account.user("node-0", Some(&node_perms)), "node.creds");
    let owner_creds = creds(account.user("owner", Some(&owner_perms)), "owner.creds");
    let admin_creds = creds(account.user("admin", None), "admin.creds");
    let nothing = Permissions { publish: vec![], subscribe: vec![], responses: 0 };
    let powerless_creds = creds(account.user("powerless", Some(&nothing)), "powerless.creds");
    let revoked = account.user("revoked", Some(&node_perms));
    let revoked_creds = revoked.write_creds(&d.join("revoked.creds"));
    let stranger = jwt::Account::new("STRANGER").user("stranger", Some(&node_perms));
    let stranger_creds = creds(stranger, "stranger.creds");
    let accounts = [
        (system.public(), operator.account_jwt(&system, false, &[])),
        (account.public(), operator.account_jwt(&account, true, &[&revoked])),
    ];
    let port = free_port();
    let conf = jwt::operator_config(&d.join("nats"), port, &operator, &system.public(), &accounts);
    let nats = Nats::with_config(&d.join("nats"), port, &conf);
    let url = nats.url();

    // Unusable credentials: one line saying what is wrong with which file, and no hang.
    std::fs::write(d.join("garbage.creds"), "not a credentials file\n").unwrap();
    let refused = ["refused the credentials", "neither expired nor revoked"];
    let powerless = ["Permissions Violation for ", "grant it what `quloud nats-user node` prints"];
    for (what, file, expect) in [
        ("a node with a garbage creds file", d.join("garbage.creds"), &["cannot parse user JWT"][..]),
        ("a node with revoked creds", revoked_creds, &refused),
        ("a node with creds from an unknown account", stranger_creds, &refused),
        ("a node with creds that allow nothing", powerless_creds, &powerless),
    ] {
        let err = node_fails(what, &url, &node_data, &["--nats-creds", s(&file)]);
        let line = err.lines().find(|l| l.starts_with("error: ")).unwrap_or_else(|| panic!("{what}: {err}"));
        assert!(expect.iter().all(|e| line.contains(e)) && line.contains(s(&file)), "{what}: {line}");
    }

    // The node and the owner with their creds store, ack and read back through a fresh mount.
    let node = Node::start_with(&url, &node_data, "1GiB", &["--nats-creds", s(&node_creds)]);
    let mut m =
        Mount::start(&home, &d.join("mp"), &url, &["--replicas", "1", "--nats-creds", s(&owner_creds)]);
    let data = bytes(3 << 20, 21);
    write_synced(&m.path("a.bin"), &data);
    wait_durable_within(&home, Duration::from_secs(60));
    m.remount();
    let path = m.path("a.bin");
    let back = within(Duration::from_secs(30), "reading a.bin back", move || std::fs::read(path)).unwrap();
    assert!(back == data, "a.bin does not read back identical through the creds users");
    assert!(!nats.log().contains("Permissions Violation"), "a creds user lacked a subject:\n{}", nats.log());

    let as_node = async_nats::ConnectOptions::with_credentials_file(&node_creds).await.unwrap();
    let spy = client_as(&url, as_node, &node_inbox).await;
    let admin = async_nats::ConnectOptions::with_credentials_file(&admin_creds).await.unwrap();
    let admin = admin.connect(&url).await.unwrap();
    assert_node_cannot_snoop(spy, admin, &m, &owner_inbox).await;
    m.unmount();
    drop(node);
}

fn write_synced(path: &Path, data: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

use futures::StreamExt;
