#!/usr/bin/env bash
# POSIX conformance: runs pjdfstest (the Rust port, crate `pjdfstest`) in one run against
#   (a) a plain local directory, (b) gocryptfs over a local directory, (c) a Quloud mount
#   (--allow-other) over a real nats-server with JetStream and 3 local storage nodes,
# and prints each summary line and the failing tests.
#
# Needs root (pjdfstest switches users), fuse3, gocryptfs, nats-server, and pjdfstest itself:
#   cargo install pjdfstest --root /opt/pjdfstest   (or set PJDFSTEST=/path/to/pjdfstest)
# pjdfstest expects a user `tests` and a group `pjdfstest`; they are created when missing.
# Usage: benches/posix.sh        NO_BUILD=1 benches/posix.sh       KEEP=1 keeps the temp dir
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${QULOUD_BIN:-$ROOT/target/release/quloud}
PJD=${PJDFSTEST:-$(command -v pjdfstest || echo /opt/pjdfstest/bin/pjdfstest)}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/quloud-posix.XXXXXX")
chmod 755 "$TMP" # pjdfstest runs some checks as an unprivileged user, who must reach the mounts
PIDS=()

die() { echo "ERROR: $*" >&2; exit 1; }
cleanup() {
    trap - EXIT INT TERM
    for mp in "$TMP/quloud" "$TMP/gocryptfs"; do
        mountpoint -q "$mp" 2>/dev/null && { fusermount3 -u "$mp" 2>/dev/null || fusermount3 -u -z "$mp" || true; }
    done
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[$i]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n "${KEEP:-}" ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT INT TERM

[[ $(id -u) == 0 ]] || die "run as root: pjdfstest switches users"
[[ -x "$PJD" ]] || die "pjdfstest not found: cargo install pjdfstest --root /opt/pjdfstest"
for tool in nats-server fusermount3 gocryptfs; do
    command -v "$tool" >/dev/null || die "$tool not found: apt-get install -y nats-server fuse3 gocryptfs"
done
id tests >/dev/null 2>&1 || useradd -M -s /usr/sbin/nologin tests
getent group pjdfstest >/dev/null || groupadd pjdfstest
if [[ -z "${NO_BUILD:-}" ]]; then (cd "$ROOT" && cargo build --release --quiet); fi

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
printf 'host: 127.0.0.1\nport: %s\njetstream { store_dir: "%s" }\n' "$PORT" "$TMP/js" >"$TMP/nats.conf"
nats-server -c "$TMP/nats.conf" >"$TMP/nats.log" 2>&1 &
PIDS+=($!)
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done
for i in 0 1 2; do
    "$BIN" node --nats "nats://127.0.0.1:$PORT" --data "$TMP/node-$i" --capacity 5GiB >"$TMP/node-$i.log" 2>&1 &
    PIDS+=($!)
done
for i in 0 1 2; do
    for _ in $(seq 200); do grep -q "storage node serving" "$TMP/node-$i.log" 2>/dev/null && break; sleep 0.1; done
done
mkdir -p "$TMP/plain" "$TMP/quloud" "$TMP/gocryptfs" "$TMP/gocryptfs.cipher"
"$BIN" --home "$TMP/home" init >/dev/null
QULOUD_LOG=warn "$BIN" --home "$TMP/home" mount "$TMP/quloud" --nats "nats://127.0.0.1:$PORT" --allow-other >"$TMP/mount.log" 2>&1 &
PIDS+=($!)
echo pass >"$TMP/pw"
gocryptfs -q -init -passfile "$TMP/pw" "$TMP/gocryptfs.cipher" >/dev/null 2>&1
gocryptfs -q -passfile "$TMP/pw" -allow_other "$TMP/gocryptfs.cipher" "$TMP/gocryptfs" 2>/dev/null
for _ in $(seq 100); do mountpoint -q "$TMP/quloud" && break; sleep 0.1; done
mountpoint -q "$TMP/quloud" || die "quloud did not mount: $(cat "$TMP/mount.log")"

echo "pjdfstest $("$PJD" --version 2>/dev/null | awk '{print $2}'), $(date -u +%FT%TZ)"
for fs in plain gocryptfs quloud; do
    (cd "$TMP/$fs" && "$PJD" -p "$TMP/$fs" >"$TMP/pjd-$fs.txt" 2>&1) || true
    printf '%-10s %s\n' "$fs" "$(grep Summary "$TMP/pjd-$fs.txt" || echo 'no summary (see log)')"
    grep FAILED "$TMP/pjd-$fs.txt" | sed 's/^/           failed: /' || true
done
