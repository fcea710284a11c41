#!/usr/bin/env bash
# Small files in bulk: how fast FILES small files (100-600 bytes, DIRS dirs) become quorum-durable,
# for one or more quloud binaries in the same run (same files, same machine load), each on a
# fresh nats-server, NODES fresh nodes and a fresh vault. Prints, per binary: seconds from the
# start of the copy until `status` says everything is durable, files/s, and the CPU seconds each
# part spent meanwhile (broker, nodes summed, mount) — where the time goes.
#
# Usage: benches/bulk.sh                                  (the binary of this checkout)
#        BINS="before=/tmp/quloud-main after=target/release/quloud" FILES=100000 DIRS=1000 benches/bulk.sh
# Env:   FILES (20000), DIRS (200), NODES (3), REPLICAS (3), TIMEOUT (1800 s), BINS (label=path ...),
#        NODE_ARGS (extra `quloud node` flags), KEEP=1 (keep the temp dir).
# Results: docs/PERFORMANCE.md, section 8 (Big vaults).
set -euo pipefail

FILES=${FILES:-20000}
DIRS=${DIRS:-200}
NODES=${NODES:-3}
REPLICAS=${REPLICAS:-3}
TIMEOUT=${TIMEOUT:-1800}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BINS=${BINS:-"this=${CARGO_TARGET_DIR:-$ROOT/target}/release/quloud"}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/quloud-bulk.XXXXXX")
PIDS=()
MOUNTS=()

die() { echo "ERROR: $*" >&2; exit 1; }
log() { echo "== $(date +%T) $*" >&2; }
now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'; }
wait_for() { # what timeout_s command...
    local what=$1 deadline=$((SECONDS + $2)); shift 2
    until "$@"; do ((SECONDS < deadline)) || die "timed out waiting for $what"; sleep 0.5; done
}
# CPU seconds (user + system) of the given pids so far.
cpu() { for p in "$@"; do awk '{ print $14 + $15 }' "/proc/$p/stat" 2>/dev/null || echo 0; done |
    awk -v hz="$(getconf CLK_TCK)" '{ s += $1 } END { printf "%.1f", s / hz }'; }
stop_all() {
    for mp in "${MOUNTS[@]}"; do mountpoint -q "$mp" 2>/dev/null && fusermount3 -u -z "$mp" 2>/dev/null || true; done
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[$i]}" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=() MOUNTS=()
}
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    stop_all
    ((rc == 0)) || { echo "failed; logs in $TMP" >&2; exit "$rc"; }
    [[ ${KEEP:-0} == 1 ]] && echo "kept $TMP" >&2 || rm -rf "$TMP"
}
trap cleanup EXIT INT TERM

for tool in nats-server fusermount3 jq python3; do
    command -v "$tool" >/dev/null || die "$tool is required (apt-get install -y $tool)"
done

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

# run LABEL BIN: one fresh fabric and vault; prints one result line.
run() {
    local label=$1 bin=$2 dir=$TMP/$1
    [[ -x $bin ]] || die "$bin is missing (build first)"
    mkdir -p "$dir"
    local port url nats_pid mount_pid node_pids=()
    port=$(free_port); url="nats://127.0.0.1:$port"
    printf 'listen: 127.0.0.1:%s\njetstream { store_dir: "%s/js" }\n' "$port" "$dir" >"$dir/nats.conf"
    GOGC=${GOGC:-400} nats-server -c "$dir/nats.conf" >"$dir/nats.log" 2>&1 &
    nats_pid=$!; PIDS+=("$nats_pid")
    wait_for "nats-server" 20 grep -q "Server is ready" "$dir/nats.log"
    for i in $(seq 1 "$NODES"); do
        mkdir -p "$dir/node$i"
        # shellcheck disable=SC2086
        "$bin" node --nats "$url" --data "$dir/node$i" --capacity 20GiB ${NODE_ARGS:-} >"$dir/node$i.log" 2>&1 &
        node_pids+=($!); PIDS+=($!)
    done
    for i in $(seq 1 "$NODES"); do wait_for "node $i" 60 grep -q "storage node serving" "$dir/node$i.log"; done
    mkdir -p "$dir/home" "$dir/mnt"
    "$bin" --home "$dir/home" init >/dev/null 2>&1 </dev/null || die "quloud init failed"
    "$bin" --home "$dir/home" mount "$dir/mnt" --nats "$url" --replicas "$REPLICAS" >"$dir/mount.log" 2>&1 &
    mount_pid=$!; PIDS+=("$mount_pid"); MOUNTS+=("$dir/mnt")
    wait_for "the mount" 60 mountpoint -q "$dir/mnt"
    durable() {
        "$bin" --home "$dir/home" status --json 2>/dev/null |
            jq -e '.pending == 0 and .staged_files == 0 and .durable == .chunks and .chunks > 0' >/dev/null 2>&1
    }
    local c0 n0 m0 t0 copied done_at
    c0=$(cpu "$nats_pid") n0=$(cpu "${node_pids[@]}") m0=$(cpu "$mount_pid")
    log "$label: copying into the vault"
    t0=$(now)
    cp -a "$SRC/." "$dir/mnt/"
    copied=$(elapsed "$t0" "$(now)")
    wait_for "quorum durability ($label)" "$TIMEOUT" durable
    done_at=$(elapsed "$t0" "$(now)")
    printf '%-8s %6d files  copied %6.1f s  durable %6.1f s  %7.0f files/s  cpu s: broker %6.1f  nodes %6.1f  mount %6.1f\n' \
        "$label" "$FILES" "$copied" "$done_at" "$(awk -v f="$FILES" -v t="$done_at" 'BEGIN { print f / t }')" \
        "$(awk -v a="$c0" -v b="$(cpu "$nats_pid")" 'BEGIN { print b - a }')" \
        "$(awk -v a="$n0" -v b="$(cpu "${node_pids[@]}")" 'BEGIN { print b - a }')" \
        "$(awk -v a="$m0" -v b="$(cpu "$mount_pid")" 'BEGIN { print b - a }')"
    stop_all
}

echo "files: $FILES in $DIRS dirs, $NODES nodes, $REPLICAS replicas; quloud $(cd "$ROOT" && git describe --always --dirty 2>/dev/null)"
for spec in $BINS; do run "${spec%%=*}" "${spec#*=}"; done
