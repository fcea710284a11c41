#!/usr/bin/env bash
# Big-vault benchmark, in one run:
#   snapshot  a vault of FILES small files (100-600 bytes, DIRS dirs): bytes the first snapshot
#             stores on the nodes, then the bytes a second and a third store, each after ONE
#             file changed (chunk body bytes summed over the nodes' data dirs, all replicas)
#   cold      read back every file of the tree with an empty cache (new mount process, disk
#             cache emptied, page cache dropped) against gocryptfs over a local dir (remounted,
#             page cache dropped); plus the mount's get counters for the Quloud read
#
# Usage: benches/bigvault.sh                 (needs root for drop_caches)
#        FILES=2000 NO_BUILD=1 benches/bigvault.sh
# Env:   FILES (10000), DIRS (100), NODES (3), REPLICAS (3), CAPACITY (20GiB), TIMEOUT (1800 s
#        to become durable), QULOUD_BIN (default target/release/quloud), NO_BUILD=1, KEEP=1.
# Results: docs/PERFORMANCE.md, section "Big vaults".
set -euo pipefail

FILES=${FILES:-10000}
DIRS=${DIRS:-100}
NODES=${NODES:-3}
REPLICAS=${REPLICAS:-3}
CAPACITY=${CAPACITY:-20GiB}
TIMEOUT=${TIMEOUT:-1800}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${QULOUD_BIN:-$ROOT/target/release/quloud}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/quloud-bigvault.XXXXXX")
PIDS=()
MOUNTS=()

die() { echo "ERROR: $*" >&2; exit 1; }
log() { echo "== $(date +%T) $*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
drop_caches() { sync; echo 3 >/proc/sys/vm/drop_caches 2>/dev/null || log "cannot drop caches (not root)"; }
wait_for() { # what timeout_s command...
    local what=$1 deadline=$((SECONDS + $2)); shift 2
    until "$@"; do ((SECONDS < deadline)) || die "timed out waiting for $what"; sleep 0.2; done
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for mp in "${MOUNTS[@]}"; do mountpoint -q "$mp" 2>/dev/null && fusermount3 -u -z "$mp" 2>/dev/null || true; done
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[$i]}" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    ((rc == 0)) || { echo "failed; logs in $TMP" >&2; exit "$rc"; }
    [[ ${KEEP:-0} == 1 ]] && echo "kept $TMP" >&2 || rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

for tool in nats-server gocryptfs fusermount3 jq python3 curl; do
    command -v "$tool" >/dev/null || die "$tool is required (apt-get install -y $tool)"
done
[[ ${NO_BUILD:-0} == 1 ]] || (cd "$ROOT" && cargo build --release)
[[ -x $BIN ]] || die "$BIN is missing (build first)"

log "making $FILES small files in $DIRS dirs"
SRC=$TMP/src
python3 - "$SRC" "$FILES" "$DIRS" <<'PY'
import os, sys, random
src, files, dirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(7)
for i in range(files):
    d = os.path.join(src, f"d{i % dirs:04}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:07}.txt"), "wb") as f:
        f.write(rnd.randbytes(100 + i % 500))
PY

# --- gocryptfs: cold read of the tree ---------------------------------------------------------
GC_CIPHER=$TMP/gc.cipher GC_MNT=$TMP/gc.mnt
mkdir -p "$GC_CIPHER" "$GC_MNT"
gocryptfs -q -init -extpass 'echo pw' "$GC_CIPHER" >"$TMP/gocryptfs-init.log" 2>&1
gc_mount() {
    gocryptfs -fg -q -extpass 'echo pw' "$GC_CIPHER" "$GC_MNT" >>"$TMP/gocryptfs.log" 2>&1 &
    GC_PID=$!; PIDS+=("$GC_PID"); MOUNTS+=("$GC_MNT")
    wait_for "gocryptfs to mount" 10 mountpoint -q "$GC_MNT"
}
gc_mount
cp -a "$SRC/." "$GC_MNT/"
fusermount3 -u "$GC_MNT"; wait "$GC_PID" 2>/dev/null || true
gc_mount
drop_caches
t0=$(now); tar -C "$GC_MNT" -cf - . | cat >/dev/null; GC_COLD=$(elapsed "$t0" "$(now)")
fusermount3 -u "$GC_MNT"; wait "$GC_PID" 2>/dev/null || true

# --- quloud: nats-server, nodes, mount --------------------------------------------------------
PORT=$(free_port); URL="nats://127.0.0.1:$PORT"
printf 'listen: 127.0.0.1:%s\njetstream { store_dir: "%s/js" }\n' "$PORT" "$TMP" >"$TMP/nats.conf"
GOGC=${GOGC:-400} nats-server -c "$TMP/nats.conf" >"$TMP/nats.log" 2>&1 &
PIDS+=($!)
wait_for "nats-server" 20 grep -q "Server is ready" "$TMP/nats.log"
for i in $(seq 1 "$NODES"); do
    mkdir -p "$TMP/node$i"
    "$BIN" node --nats "$URL" --data "$TMP/node$i" --capacity "$CAPACITY" >"$TMP/node$i.log" 2>&1 &
    PIDS+=($!)
done
for i in $(seq 1 "$NODES"); do wait_for "node $i" 60 grep -q "storage node serving" "$TMP/node$i.log"; done
QHOME=$TMP/qhome QMNT=$TMP/q.mnt MPORT=$(free_port)
mkdir -p "$QHOME" "$QMNT"
"$BIN" --home "$QHOME" init >/dev/null 2>&1 </dev/null || die "quloud init failed"
q_mount() {
    "$BIN" --home "$QHOME" mount "$QMNT" --nats "$URL" --replicas "$REPLICAS" --metrics "127.0.0.1:$MPORT" \
        >>"$TMP/mount.log" 2>&1 &
    QPID=$!; PIDS+=("$QPID"); MOUNTS+=("$QMNT")
    wait_for "the mount" 60 mountpoint -q "$QMNT"
}
q_umount() { fusermount3 -u "$QMNT"; wait "$QPID" 2>/dev/null || true; }
q_durable() {
    "$BIN" --home "$QHOME" status --json 2>/dev/null |
        jq -e '.pending == 0 and .staged_files == 0 and .durable == .chunks' >/dev/null 2>&1
}
body_bytes() { find "$TMP"/node*/chunks -type f -printf '%s\n' 2>/dev/null | awk '{ s += $1 } END { print s + 0 }'; }
metric() { curl -s "http://127.0.0.1:$MPORT/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }

q_mount
log "quloud: loading the tree"
cp -a "$SRC/." "$QMNT/"
wait_for "quorum durability" "$TIMEOUT" q_durable
b0=$(body_bytes)
"$BIN" --home "$QHOME" snapshot >"$TMP/snap1.txt"
b1=$(body_bytes)
echo "changed" >"$QMNT/d0001/f0000001.txt"
wait_for "quorum durability" "$TIMEOUT" q_durable
b2=$(body_bytes)
"$BIN" --home "$QHOME" snapshot >"$TMP/snap2.txt"
b3=$(body_bytes)
echo "changed again" >"$QMNT/d0002/f0000002.txt"
wait_for "quorum durability" "$TIMEOUT" q_durable
b4=$(body_bytes)
"$BIN" --home "$QHOME" snapshot >"$TMP/snap3.txt"
b5=$(body_bytes)
FIRST=$((b1 - b0)) SECOND=$((b3 - b2)) THIRD=$((b5 - b4))

log "quloud: cold read of the tree"
q_umount
rm -rf "$QHOME/chunks"
q_mount
drop_caches
t0=$(now); tar -C "$QMNT" -cf - . | cat >/dev/null; Q_COLD=$(elapsed "$t0" "$(now)")
SINGLES=$(metric quloud_vault_fabric_fetch_seconds_count)
BATCHED=$(metric quloud_vault_prefetch_requests_total)
PREFETCHED=$(metric quloud_vault_prefetched_chunks_total)
q_umount

echo
echo "files: $FILES in $DIRS dirs; quloud $(cd "$ROOT" && git describe --always --dirty 2>/dev/null)"
echo "first snapshot:              $FIRST body bytes on the nodes (all replicas)"
pct() { awk -v a="$1" -v b="$FIRST" 'BEGIN { printf "%.2f", 100 * a / b }'; }
echo "second, after one change:    $SECOND body bytes ($(pct "$SECOND") % of the first; it records the first's pieces)"
echo "third, after another change: $THIRD body bytes ($(pct "$THIRD") % of the first)"
echo "cold read, gocryptfs:        $GC_COLD s"
echo "cold read, quloud:           $Q_COLD s ($(ratio "$GC_COLD" "$Q_COLD") x gocryptfs)"
echo "quloud gets for the read:    $SINGLES single, $BATCHED batched ($PREFETCHED chunks prefetched) for $FILES files"
