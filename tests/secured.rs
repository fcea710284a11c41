//! A secured bus (docs/OPERATIONS.md): TLS with a private CA and nkey users whose permissions
//! come from `quloud nats-user`. A storage node and a mount restricted to exactly those subjects
//! do all their work, and the node's credentials cannot read any vault's acks or anyone else's
//! replies.

mod common;

use common::*;
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

/// A client connected as the user of `seed_file`, recording the server errors it is sent.
async fn client_as(
    url: &str,
    ca: &Path,
    seed_file: &Path,
    inbox: &str,
) -> (async_nats::Client, tokio::sync::mpsc::UnboundedReceiver<String>) {
    let seed = std::fs::read_to_string(seed_file).unwrap().trim().to_string();
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let client = async_nats::ConnectOptions::with_nkey(seed)
        .add_root_certificates(ca.to_path_buf())
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
        .expect("connect with the node's nkey");
    (client, rx)
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
    let out = within(Duration::from_secs(30), "a node without the CA", {
        let (url, data) = (url.clone(), node_data.clone());
        move || {
            Command::new(env!("CARGO_BIN_EXE_quloud"))
                .args(["node", "--nats", &url, "--capacity", "1GiB", "--data"])
                .arg(&data)
                .args(["--nats-nkey", s(&data.with_file_name("node.nk"))])
                .output()
                .unwrap()
        }
    });
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("cannot reach NATS"), "{err}");
    std::fs::write(
        d.join("stranger.nk"),
        format!("{}\n", quloud::adapters::nats::connect::new_user_nkey().0),
    )
    .unwrap();
    let out = within(Duration::from_secs(30), "a node with an unknown nkey", {
        let (url, data, ca, nk) = (url.clone(), node_data.clone(), ca.clone(), d.join("stranger.nk"));
        move || {
            Command::new(env!("CARGO_BIN_EXE_quloud"))
                .args(["node", "--nats", &url, "--capacity", "1GiB", "--data"])
                .arg(&data)
                .args(["--nats-ca", s(&ca), "--nats-nkey", s(&nk)])
                .output()
                .unwrap()
        }
    });
    let err = String::from_utf8_lossy(&out.stderr).to_lowercase();
    assert!(!out.status.success() && err.contains("authorization"), "{err}");

    // The restricted node and owner do all their work: store, ack, retrieve, snapshot.
    let tls = ["--nats-ca", s(&ca)];
    let node_nk = d.join("node.nk");
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
    let (spy, mut errors) = client_as(&url, &ca, &node_nk, &node_inbox).await;
    let mut acks = spy.subscribe("quloud.v1.ack.>").await.unwrap();
    let mut replies = spy.subscribe(format!("{owner_inbox}.>")).await.unwrap();
    let mut all_inboxes = spy.subscribe("_INBOX.>").await.unwrap();
    let js = async_nats::jetstream::new(spy.clone());
    let admin = async_nats::ConnectOptions::with_user_and_password("admin".into(), "admin-secret".into())
        .add_root_certificates(ca.clone())
        .connect(&url)
        .await
        .unwrap();
    let mut control = admin.subscribe("quloud.v1.ack.>").await.unwrap();
    spy.flush().await.unwrap();
    admin.flush().await.unwrap();

    write_synced(&m.path("b.bin"), &bytes(2 << 20, 12));
    wait_durable_within(&home, Duration::from_secs(60));
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
    m.unmount();
    drop(node);
}

fn write_synced(path: &Path, data: &[u8]) {
    let mut f = std::fs::File::create(path).unwrap();
    f.write_all(data).unwrap();
    f.sync_all().unwrap();
}

use futures::StreamExt;
