//! The control socket end to end on a real unix socket: typed exchanges, progress, and hostile
//! or broken peers.

use super::client::{listening, ControlClient, Wait};
use super::server::{ControlServer, Progress};
use super::{AuditWhen, ControlError, Reply, Request, MAX_REQUEST};
use crate::app::report::{AuditReport, VaultStatus};
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio_util::sync::CancellationToken;

const WAIT: Wait = Wait::Within(Duration::from_secs(10));

async fn handler(req: Request, progress: Progress) -> Reply {
    match req {
        Request::Status => Reply::Status(Box::new(VaultStatus { inodes: 7, ..VaultStatus::default() })),
        Request::Audit { path, when } => {
            for i in 1..=3 {
                progress.report(i, 3);
            }
            let why = format!("{when:?}");
            Reply::Audit(AuditReport { checked: 3, at_risk: vec![(path, why)], ..AuditReport::default() })
        }
        Request::Snapshot => panic!("a handler that fails"),
        Request::Nodes => {
            tokio::time::sleep(Duration::from_secs(30)).await;
            Reply::Nodes(vec![])
        }
        _ => Reply::Error { message: "not here".into() },
    }
}

fn start(dir: &Path) -> (PathBuf, CancellationToken) {
    let path = dir.join("control.sock");
    let server = ControlServer::bind(&path).unwrap();
    let cancel = CancellationToken::new();
    tokio::spawn(server.serve(handler, cancel.clone()));
    (path, cancel)
}

async fn ask(path: &Path, req: &Request, wait: Wait) -> Result<Reply, ControlError> {
    ControlClient::connect(path).await?.ask(req, wait, &|_, _| {}).await
}

#[tokio::test]
async fn a_request_gets_its_typed_reply_and_an_audit_its_progress_first() {
    let dir = tempfile::tempdir().unwrap();
    let (path, cancel) = start(dir.path());
    let Reply::Status(s) = ask(&path, &Request::Status, WAIT).await.unwrap() else { panic!("not a status") };
    assert_eq!(s.inodes, 7);
    let seen = std::sync::Mutex::new(Vec::new());
    let name = "/e\u{301}\n\u{1}\u{FFFD}".to_string();
    let req = Request::Audit { path: name.clone(), when: AuditWhen::Now };
    let client = ControlClient::connect(&path).await.unwrap();
    let reply = client.ask(&req, WAIT, &|d, t| seen.lock().unwrap().push((d, t))).await.unwrap();
    assert_eq!(*seen.lock().unwrap(), vec![(1, 3), (2, 3), (3, 3)]);
    let Reply::Audit(r) = reply else { panic!("not an audit: {reply:?}") };
    assert_eq!(r.at_risk, vec![(name, "Now".to_string())]);
    cancel.cancel();
}

/// Sends raw bytes and returns the first reply line.
async fn raw(path: &Path, bytes: &[u8]) -> String {
    let mut s = tokio::net::UnixStream::connect(path).await.unwrap();
    s.write_all(bytes).await.unwrap();
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).await.unwrap();
    line
}

#[tokio::test]
async fn malformed_or_oversized_requests_get_an_error_reply_and_the_server_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let (path, cancel) = start(dir.path());
    for bad in [&b"status\n"[..], b"{\"audit\":{\"path\":1}}\n", b"\xff\xfe\n", b"[\n"] {
        let line = raw(&path, bad).await;
        let reply: Reply = serde_json::from_str(&line).unwrap();
        assert!(matches!(reply, Reply::Error { .. }), "{line}");
    }
    let mut huge = vec![b'"'; MAX_REQUEST + 10];
    huge.push(b'\n');
    let line = raw(&path, &huge).await;
    assert!(line.contains("longer than"), "{line}");
    assert!(matches!(ask(&path, &Request::Status, WAIT).await, Ok(Reply::Status(_))), "still serving");
    cancel.cancel();
}

#[tokio::test]
async fn a_failing_handler_is_an_error_reply_and_a_slow_one_is_bounded_by_the_wait() {
    let dir = tempfile::tempdir().unwrap();
    let (path, cancel) = start(dir.path());
    let reply = ask(&path, &Request::Snapshot, WAIT).await.unwrap();
    assert!(matches!(reply, Reply::Error { .. }), "{reply:?}");
    let slow = ask(&path, &Request::Nodes, Wait::Within(Duration::from_millis(200))).await;
    assert!(matches!(slow, Err(ControlError::TimedOut(_))), "{slow:?}");
    assert!(listening(&path).await);
    cancel.cancel();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while path.exists() {
        assert!(std::time::Instant::now() < deadline, "the socket outlived its server");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(!listening(&path).await);
    assert!(matches!(ask(&path, &Request::Status, WAIT).await, Err(ControlError::Io(_))));
}
