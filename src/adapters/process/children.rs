//! The processes `quloud up` starts (nats-server, storage nodes): spawned so they die with `up`,
//! watched so `up` notices when one exits, restarted within a budget, and stopped in order.
//!
//! Why children cannot outlive `up`, even after `kill -9`: each one asks the kernel for SIGTERM
//! when its parent dies (`PR_SET_PDEATHSIG`). The kernel sends it when the *thread* that forked
//! the child exits, and tokio's worker threads come and go (`block_in_place` hands a worker's
//! core to a new thread), so every child is forked on one thread of its own that lives as long
//! as the process. A child whose parent died between fork and exec sees another parent and does
//! not start. This covers every way `up` can end; `up_lock` still stops leftovers found
//! at start (children of an older `quloud` without it, or one that ignored SIGTERM).

use anyhow::{bail, Context, Result};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// How a child is started (again).
pub struct Spec {
    /// `nats-server` or `node-N`, for messages.
    pub name: String,
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    /// The loopback port it must listen on before it counts as started.
    pub port: Option<u16>,
    /// Builds its command (program, arguments, environment; stdio and process group are set here).
    pub command: Box<dyn Fn() -> Result<Command> + Send + Sync>,
}

struct Proc {
    spec: Arc<Spec>,
    child: Child,
    restarts: Vec<Instant>,
}

/// A child that exited, taken out of its `Children`.
pub struct Exited {
    /// What it was.
    pub spec: Arc<Spec>,
    /// How it ended.
    pub status: std::io::Result<ExitStatus>,
    index: usize,
    restarts: Vec<Instant>,
}

impl Exited {
    /// `node-1 exited (exit status: 1); log: …/node-1.log, last lines:` and the log's tail.
    pub fn describe(&self) -> String {
        let status = match &self.status {
            Ok(s) => s.to_string(),
            Err(e) => format!("status unknown: {e}"),
        };
        format!(
            "{} exited ({status}); log: {}{}",
            self.spec.name,
            self.spec.log.display(),
            tail(&self.spec.log)
        )
    }
}

/// The last lines of `log`, indented, for an error message (empty if it cannot be read).
pub fn tail(log: &Path) -> String {
    const BYTES: usize = 2048;
    let Ok(text) = std::fs::read(log) else { return String::new() };
    let text = strip_ansi(&String::from_utf8_lossy(&text[text.len().saturating_sub(BYTES)..]));
    let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    let last = &lines[lines.len().saturating_sub(8)..];
    if last.is_empty() {
        return String::new();
    }
    format!(", last lines:\n    {}", last.join("\n    "))
}

/// `text` without terminal colour sequences (`ESC [ … letter`), which the nodes' logs carry.
fn strip_ansi(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // Skip `[`, parameters, and the final letter.
            for c in chars.by_ref() {
                if c.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Restarts allowed per child within `RESTART_WINDOW` before `up` gives up on it.
const RESTARTS: usize = 3;
const RESTART_WINDOW: Duration = Duration::from_secs(60);

/// The running children, in start order; stopped in reverse order (nodes, then the broker).
#[derive(Default)]
pub struct Children {
    procs: Vec<Proc>,
}

impl Children {
    /// Starts `spec` after the children already running (and waits for its port, if it has one).
    pub async fn start(&mut self, spec: Spec) -> Result<()> {
        let spec = Arc::new(spec);
        let child = spawn(&spec).await?;
        self.procs.push(Proc { spec, child, restarts: Vec::new() });
        self.started(self.procs.len() - 1).await
    }

    /// Waits up to 10 s for the port of child `index`, if it has one, failing at once if the
    /// child exits first (and taking it out).
    async fn started(&mut self, index: usize) -> Result<()> {
        let spec = self.procs[index].spec.clone();
        let Some(port) = spec.port else { return Ok(()) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_err() {
            if let Ok(Some(status)) = self.procs[index].child.try_wait() {
                let p = self.procs.remove(index);
                let exited = Exited { spec: p.spec, status: Ok(status), index, restarts: p.restarts };
                bail!("{} did not start: {}", spec.name, exited.describe());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} does not listen on 127.0.0.1:{port} after 10 s; see {}{}",
                    spec.name,
                    spec.log.display(),
                    tail(&spec.log)
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Resolves when a child exits, taking it out (never, when there are none). Cancel-safe.
    pub async fn exited(&mut self) -> Exited {
        if self.procs.is_empty() {
            return std::future::pending().await;
        }
        let waits = self.procs.iter_mut().map(|p| Box::pin(p.child.wait()));
        let (status, index, _) = futures::future::select_all(waits).await;
        let p = self.procs.remove(index);
        Exited { spec: p.spec, status, index, restarts: p.restarts }
    }

    /// Starts an exited child again in its place, unless it already restarted `RESTARTS` times
    /// within `RESTART_WINDOW`.
    pub async fn restart(&mut self, mut exited: Exited) -> Result<()> {
        let now = Instant::now();
        exited.restarts.retain(|t| now.duration_since(*t) < RESTART_WINDOW);
        if exited.restarts.len() >= RESTARTS {
            bail!("{} exited {RESTARTS} times within {RESTART_WINDOW:?}", exited.spec.name);
        }
        // Back off 1, 2, 4 s: a server that exited because its ports were still held (an older
        // instance shutting down) must not spend the whole budget in a few milliseconds.
        tokio::time::sleep(Duration::from_secs(1 << exited.restarts.len())).await;
        exited.restarts.push(now);
        let child = spawn(&exited.spec).await?;
        let index = exited.index.min(self.procs.len());
        self.procs.insert(index, Proc { spec: exited.spec, child, restarts: exited.restarts });
        self.started(index).await
    }

    /// Stops the child named `name` and starts it again at once: a deliberate restart (for a new
    /// config), not counted against the restart budget.
    pub async fn restart_now(&mut self, name: &str) -> Result<()> {
        let Some(index) = self.procs.iter().position(|p| p.spec.name == name) else {
            bail!("no child named {name} runs");
        };
        stop(&mut self.procs[index].child).await;
        self.procs[index].child = spawn(&self.procs[index].spec).await?;
        self.started(index).await
    }

    /// How many children named `prefix…` run.
    pub fn running(&self, prefix: &str) -> usize {
        self.procs.iter().filter(|p| p.spec.name.starts_with(prefix)).count()
    }

    /// Stops every child, last started first: SIGTERM, then SIGKILL after 10 s.
    pub async fn stop_all(&mut self) {
        while let Some(mut p) = self.procs.pop() {
            stop(&mut p.child).await;
        }
    }
}

/// Sends SIGTERM and waits up to 10 s before killing.
async fn stop(child: &mut Child) {
    if let Some(pid) = child.id() {
        // SAFETY: plain kill(2) on a child we started and have not reaped; no memory is touched.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
        let _ = child.kill().await;
    }
}

fn log_file(path: &Path) -> Result<Stdio> {
    let f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .with_context(|| format!("cannot open log file {}", path.display()))?;
    Ok(Stdio::from(f))
}

type Job = Box<dyn FnOnce() + Send>;

/// The thread every child is forked on: it lives as long as the process (see the module doc).
fn spawner() -> &'static Mutex<Sender<Job>> {
    static SPAWNER: OnceLock<Mutex<Sender<Job>>> = OnceLock::new();
    SPAWNER.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("quloud-spawner".into())
            .spawn(move || rx.into_iter().for_each(|job| job()))
            .expect("cannot start the thread that starts child processes");
        Mutex::new(tx)
    })
}

/// Starts `spec` on the spawner thread: logging to its log, in its own process group (Ctrl-C in
/// the terminal reaches `up` only, which stops the mount first, while the fabric is still up
/// for its last snapshot), killed when dropped, and sent SIGTERM when `up` dies.
async fn spawn(spec: &Spec) -> Result<Child> {
    let mut cmd = (spec.command)()?;
    cmd.stdout(log_file(&spec.log)?).stderr(log_file(&spec.log)?).process_group(0).kill_on_drop(true);
    let parent = std::process::id() as libc::pid_t;
    // SAFETY: the closure runs in the forked child before exec and calls only async-signal-safe
    // functions (prctl, getppid); it allocates nothing.
    unsafe {
        cmd.pre_exec(move || {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            if libc::getppid() != parent {
                return Err(std::io::Error::from_raw_os_error(libc::ESRCH));
            }
            Ok(())
        });
    }
    let runtime = tokio::runtime::Handle::current();
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        let _entered = runtime.enter();
        let _ = tx.send(cmd.spawn());
    });
    let sent = spawner().lock().map(|s| s.send(job).is_ok()).unwrap_or(false);
    if !sent {
        bail!("cannot start {}: the spawner thread is gone", spec.name);
    }
    let spawned = rx.await.context("the spawner thread is gone")?;
    spawned.with_context(|| format!("cannot start {}", spec.name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_colours() {
        assert_eq!(strip_ansi("\x1b[2mtime\x1b[0m \x1b[31mERROR\x1b[0m x"), "time ERROR x");
        assert_eq!(strip_ansi("plain"), "plain");
    }
}
