#!/usr/bin/env bash
# End-to-end fabric benchmark: a real nats-server with JetStream, 3 storage nodes and
# `quloud check` (store with quorum N=3, read back with proofs, audit every replica).
#
# Usage: benches/fabric.sh            (1 GiB, 3 replicas, 1 run)
#        SIZE=256MiB RUNS=2 benches/fabric.sh
# Env:   SIZE (default 1GiB), REPLICAS (3), NODES (3), RUNS (1), CAPACITY (20GiB),
#        KEEP=1 keeps the temp dir, NO_BUILD=1 skips `cargo build --release`.
#
# Prints, per run, the check's JSON plus the CPU seconds each process spent during the check,
# and once, a raw local-disk baseline (1 GiB dd with fsync) and the store/baseline ratio.
# Targets (docs/PERFORMANCE.md): store >= 100 MiB/s until quorum-durable, get >= 150 MiB/s.
set -euo pipefail

SIZE=${SIZE:-1GiB}
REPLICAS=${REPLICAS:-3}
NODES=${NODES:-3}
RUNS=${RUNS:-1}
CAPACITY=${CAPACITY:-20GiB}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=$ROOT/target/release/quloud
TMP=$(mktemp -d "${TMPDIR:-/tmp}/quloud-fabric.XXXXXX")
PIDS=()

cleanup() {
    local rc=$?
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT INT TERM

log() { echo "== $*" >&2; }

now() { date +%s.%N; }

# CPU seconds "user sys" a process has used so far.
cpu_secs() {
    local hz
    hz=$(getconf CLK_TCK)
    awk -v hz="$hz" '{ sub(/^.*\) /, ""); print $12 / hz, $13 / hz }' "/proc/$1/stat" 2>/dev/null || echo 0 0
}

# "user/sys" seconds between two cpu_secs readings.
cpu_delta() {
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.2f user + %.2f sys", y[1] - x[1], y[2] - x[2] }'
}

# "in_bytes out_bytes" of nats-server so far (its monitoring endpoint).
nats_bytes() {
    curl -s --max-time 2 "http://127.0.0.1:$MON_PORT/varz" | jq -r '"\(.in_bytes) \(.out_bytes)"'
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()'
}

wait_for_line() { # file pattern timeout_s
    local deadline=$((SECONDS + $3))
    until grep -q "$2" "$1" 2>/dev/null; do
        if ((SECONDS >= deadline)); then
            echo "timed out waiting for '$2' in $1:" >&2
            tail -20 "$1" >&2 || true
            return 1
        fi
        sleep 0.2
    done
}

if [[ ${NO_BUILD:-0} != 1 ]]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet)
fi

# --- baseline: raw local disk write with fsync, same filesystem as the node stores ----------
log "baseline: dd 1 GiB with conv=fsync into $TMP"
t0=$(now)
dd if=/dev/zero of="$TMP/dd.bin" bs=1M count=1024 conv=fsync status=none
t1=$(now)
rm -f "$TMP/dd.bin"
DISK_MIB_S=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", 1024 / (b - a) }')
log "baseline disk write+fsync: $DISK_MIB_S MiB/s"

# --- nats-server with JetStream -------------------------------------------------------------
PORT=$(free_port)
MON_PORT=$(free_port)
URL="nats://127.0.0.1:$PORT"
mkdir -p "$TMP/js"
cat >"$TMP/nats.conf" <<EOF
listen: 127.0.0.1:$PORT
http: 127.0.0.1:$MON_PORT
jetstream {
  store_dir: "$TMP/js"
}
EOF
log "nats-server on $URL"
# Go's GC target as `quloud up` sets it for its nats-server (NATS_GOGC in src/wiring/up.rs).
GOGC=${GOGC:-400} nats-server -c "$TMP/nats.conf" >"$TMP/nats.log" 2>&1 &
NATS_PID=$!
PIDS+=("$NATS_PID")
wait_for_line "$TMP/nats.log" "Server is ready" 20

# --- storage nodes --------------------------------------------------------------------------
NODE_PIDS=()
for i in $(seq 1 "$NODES"); do
    mkdir -p "$TMP/node$i"
    "$BIN" node --nats "$URL" --data "$TMP/node$i" --capacity "$CAPACITY" >"$TMP/node$i.log" 2>&1 &
    NODE_PIDS+=($!)
    PIDS+=($!)
done
for i in $(seq 1 "$NODES"); do
    wait_for_line "$TMP/node$i.log" "storage node serving" 60
done
log "$NODES storage nodes serving"

# --- runs -----------------------------------------------------------------------------------
for run in $(seq 1 "$RUNS"); do
    log "run $run/$RUNS: quloud check --size $SIZE --replicas $REPLICAS"
    declare -A before=()
    before[nats]=$(cpu_secs "$NATS_PID")
    for i in "${!NODE_PIDS[@]}"; do before[node$((i + 1))]=$(cpu_secs "${NODE_PIDS[$i]}"); done
    read -r nats_in0 nats_out0 < <(nats_bytes)
    t0=$(now)
    # `times`-style accounting for the check process itself via /usr/bin/time if present.
    if [[ -x /usr/bin/time ]]; then
        JSON=$(/usr/bin/time -f '%U %S %M' -o "$TMP/check.time" \
            "$BIN" check --nats "$URL" --size "$SIZE" --replicas "$REPLICAS" --json)
        read -r cu cs cmax <"$TMP/check.time"
        CHECK_CPU="$cu user + $cs sys"
        CHECK_RSS="$((cmax / 1024)) MiB"
    else
        JSON=$("$BIN" check --nats "$URL" --size "$SIZE" --replicas "$REPLICAS" --json)
        CHECK_CPU=n/a
        CHECK_RSS=n/a
    fi
    t1=$(now)
    WALL=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f", b - a }')
    echo "$JSON"
    STORE=$(jq -r .store_mib_s <<<"$JSON")
    GET=$(jq -r .get_mib_s <<<"$JSON")
    {
        printf 'run %d: store %s MiB/s (target >= 100), get %s MiB/s (target >= 150), disk baseline %s MiB/s, store/disk = %s\n' \
            "$run" "$STORE" "$GET" "$DISK_MIB_S" "$(awk -v a="$STORE" -v b="$DISK_MIB_S" 'BEGIN { printf "%.2f", a / b }')"
        printf '  cpu seconds during the check (wall %ss incl. data generation, 2 cores => %ss available):\n' \
            "$WALL" "$(awk -v w="$WALL" 'BEGIN { printf "%.1f", 2 * w }')"
        printf '    check      %s (max rss %s)\n' "$CHECK_CPU" "$CHECK_RSS"
        printf '    nats       %s\n' "$(cpu_delta "${before[nats]}" "$(cpu_secs "$NATS_PID")")"
        for i in "${!NODE_PIDS[@]}"; do
            n=node$((i + 1))
            printf '    %-10s %s\n' "$n" "$(cpu_delta "${before[$n]}" "$(cpu_secs "${NODE_PIDS[$i]}")")"
        done
        read -r nats_in1 nats_out1 < <(nats_bytes)
        printf '  nats-server moved %s MiB in, %s MiB out (out/in %s; a store is 1x in and 1x out per replica delivered once)\n' \
            "$(((nats_in1 - nats_in0) >> 20))" "$(((nats_out1 - nats_out0) >> 20))" \
            "$(awk -v i="$((nats_in1 - nats_in0))" -v o="$((nats_out1 - nats_out0))" 'BEGIN { printf "%.2f", o / (i ? i : 1) }')"
        printf '  jetstream store dir now: %s\n' "$(du -sh "$TMP/js" | cut -f1)"
    } >&2
    unset before
done
