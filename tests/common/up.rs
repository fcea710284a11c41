//! `quloud up` as a user runs it: the process, its output, and the processes of its home.

use super::quloud;
use std::fs::{self, File};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

/// A `quloud up` process in its own process group (as a terminal runs it), its stdout and
/// stderr in one log. Dropped, it kills `up` and whatever of this home's fabric still runs.
pub struct Up {
    child: Child,
    home: PathBuf,
    log: PathBuf,
}

impl Up {
    pub fn start(home: &Path, args: &[&str]) -> Up {
        use std::os::unix::process::CommandExt;
        let log = unique(home.with_extension("up"));
        let out = File::create(&log).unwrap();
        let child = quloud(home)
            .arg("up")
            .args(args)
            .process_group(0)
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap();
        Up { child, home: home.to_path_buf(), log }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn out(&self) -> String {
        String::from_utf8_lossy(&fs::read(&self.log).unwrap_or_default()).into_owned()
    }

    /// Waits until the output holds `text`; fails early if `up` exits first.
    pub fn wait_for(&mut self, text: &str, within: Duration) {
        let deadline = Instant::now() + within;
        while !self.out().contains(text) {
            if let Some(status) = self.child.try_wait().unwrap() {
                // It may have printed `text` just before exiting.
                assert!(
                    self.out().contains(text),
                    "quloud up exited ({status}) before printing {text:?}:\n{}",
                    self.out()
                );
                return;
            }
            assert!(
                Instant::now() < deadline,
                "quloud up did not print {text:?} within {within:?}:\n{}",
                self.out()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on the process we started; no memory is involved.
        assert_eq!(unsafe { libc::kill(self.pid(), sig) }, 0);
    }

    pub fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let deadline = Instant::now() + within;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "quloud up did not exit within {within:?}:\n{}", self.out());
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = Command::new("pkill").arg("-9").arg("-f").arg(&self.home).output();
    }
}

fn unique(path: PathBuf) -> PathBuf {
    (0..).map(|i| path.with_extension(format!("{i}.log"))).find(|p| !p.exists()).unwrap()
}

/// The processes whose command line names `home` (`up`, its nats-server and nodes).
pub fn running(home: &Path) -> String {
    let out = Command::new("pgrep").arg("-af").arg(home).output().unwrap();
    String::from_utf8_lossy(&out.stdout).into_owned()
}

pub fn assert_nothing_left(home: &Path, within: Duration) {
    let deadline = Instant::now() + within;
    while !running(home).is_empty() {
        assert!(Instant::now() < deadline, "processes left behind after {within:?}:\n{}", running(home));
        std::thread::sleep(Duration::from_millis(50));
    }
}

pub fn pid_of(pattern: &str) -> i32 {
    let out = Command::new("pgrep").arg("-f").arg(pattern).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    text.trim().parse().unwrap_or_else(|_| panic!("not exactly one process matches {pattern:?}: {text:?}"))
}
