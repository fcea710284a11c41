//! Criterion bench of the manifest's commit cost: a create-like call (new inode, directory entry,
//! parent times, inode counter, staged mark) on a manifest that already holds 10 000 files,
//! committed on its own (`Manifest::write`, one redb commit per call, as every filesystem call
//! did before group commits) or in a group commit (`Manifest::write_grouped`; the group is
//! committed at `GROUP_MAX` calls, so the figure includes its share of the commits).
//!
//! The same calls through the manifest port (`Arc<dyn ManifestStore>`) show what its dynamic
//! dispatch costs, and `view_inode` times the FUSE hot path's `m.view().inode(ino)`.
//!
//! Run: `cargo bench --bench manifest`. The manifest lives in a temp dir on the default temp
//! filesystem, like a vault's home on the same disk. Figures: docs/PERFORMANCE.md §4.
//! The process's `wchar` (bytes handed to write(2)) per call is printed after each bench.

use std::hint::black_box;
use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion};
use quloud::adapters::redb::manifest::{Manifest, Tx};
use quloud::domain::fs::{Attr, FsError, Kind, Time, ROOT_INO};
use quloud::ports::manifest as port;
use std::sync::Arc;

const FILES: u64 = 10_000;

fn create(tx: &Tx, n: u64) -> Result<(), FsError> {
    let dir = 1 + n % 100 + 1;
    let ino = tx.next_ino()?;
    tx.put_inode(&Attr::new(ino, Kind::File, 0o644, 1000, 1000))?;
    tx.put_dirent(dir, format!(".file{n}.XXXXXX").as_bytes(), ino)?;
    let mut parent = tx.inode(dir)?;
    parent.mtime = Time::now();
    tx.put_inode(&parent)?;
    tx.set_staged(ino, true)
}

fn populated(dir: &std::path::Path, grouped: bool) -> Manifest {
    let mut m = Manifest::open(&dir.join("manifest.redb"), 1000, 1000).unwrap();
    m.write(|tx| {
        for d in 0..100u64 {
            let ino = tx.next_ino()?;
            tx.put_inode(&Attr::new(ino, Kind::Dir, 0o755, 1000, 1000))?;
            tx.put_dirent(ROOT_INO, format!("d{d:03}").as_bytes(), ino)?;
        }
        (0..FILES).try_for_each(|n| create(tx, n))
    })
    .unwrap();
    m.checkpoint().unwrap();
    if grouped {
        m.group_commits(Duration::from_secs(3600)).unwrap();
    }
    m
}

fn wchar() -> u64 {
    let io = std::fs::read_to_string("/proc/self/io").unwrap_or_default();
    io.lines().find_map(|l| l.strip_prefix("wchar: ")).and_then(|v| v.trim().parse().ok()).unwrap_or(0)
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("manifest_create");
    for (name, grouped) in [("own_commit", false), ("group_commit", true)] {
        let tmp = tempfile::tempdir().unwrap();
        let m = populated(tmp.path(), grouped);
        let mut n = FILES;
        let (w0, n0) = (wchar(), n);
        g.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                if grouped {
                    m.write_grouped(|tx| create(tx, black_box(n))).unwrap();
                } else {
                    m.write(|tx| create(tx, black_box(n))).unwrap();
                }
            })
        });
        println!("{name}: {} bytes written per call", (wchar() - w0) / (n - n0).max(1));
    }
    g.finish();
}

/// `m.view().inode(ino)` on the populated manifest, with no group open.
fn bench_view(c: &mut Criterion) {
    let mut g = c.benchmark_group("manifest_view_inode");
    let tmp = tempfile::tempdir().unwrap();
    let m = populated(tmp.path(), false);
    let mut ino = 0;
    g.bench_function("redb", |b| {
        b.iter(|| {
            ino = ino % FILES + 2;
            black_box(m.view().inode(black_box(ino)).unwrap());
        })
    });
    let m: port::Manifest = Arc::new(m);
    g.bench_function("port", |b| {
        b.iter(|| {
            ino = ino % FILES + 2;
            black_box(m.view().inode(black_box(ino)).unwrap());
        })
    });
    g.finish();
}

/// The create-like call through the port.
fn bench_port(c: &mut Criterion) {
    let mut g = c.benchmark_group("manifest_create_port");
    for (name, grouped) in [("own_commit", false), ("group_commit", true)] {
        let tmp = tempfile::tempdir().unwrap();
        let m: port::Manifest = Arc::new(populated(tmp.path(), grouped));
        let mut n = FILES;
        g.bench_function(name, |b| {
            b.iter(|| {
                n += 1;
                if grouped {
                    m.write_grouped(|tx| create_port(tx, black_box(n))).unwrap();
                } else {
                    m.write(|tx| create_port(tx, black_box(n))).unwrap();
                }
            })
        });
    }
    g.finish();
}

fn create_port(tx: &port::Tx, n: u64) -> Result<(), FsError> {
    let dir = 1 + n % 100 + 1;
    let ino = tx.next_ino()?;
    tx.put_inode(&Attr::new(ino, Kind::File, 0o644, 1000, 1000))?;
    tx.put_dirent(dir, format!(".file{n}.XXXXXX").as_bytes(), ino)?;
    let mut parent = tx.inode(dir)?;
    parent.mtime = Time::now();
    tx.put_inode(&parent)?;
    tx.set_staged(ino, true)
}

criterion_group!(benches, bench, bench_view, bench_port);
criterion_main!(benches);
