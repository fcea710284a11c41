#!/usr/bin/env bash
# Audit and heal benchmark: a real nats-server (JetStream), NODES local storage nodes and a Quloud
# mount with N=3, all on this machine.
#
#   1. write SIZE of random data into the mount (files of 64 MiB) and wait until durable
#   2. reads alone: read the data back through the mount (warm LRU) for READ_SECS, MiB/s
#   3. audit: `quloud audit --now --json` (every replica challenged with a fresh seed), first
#      alone, then while the same read loop runs: checks per second, and the read MiB/s during
#      the audit
#   4. heal: kill -9 the node holding most chunk bodies and delete its data dir, then
#      `quloud audit --now --json`: MiB/s re-replicated (healed_bytes / pass time, and over the
#      time after the challenges, when only healing runs)
# Baselines in the same run: the read rate without an audit (step 2).
#
# Usage: benches/health.sh             SIZE=1G NO_BUILD=1 benches/health.sh
# Env:   SIZE (512M), NODES (5), READ_SECS (10), KEEP=1 keeps the temp dir, NO_BUILD=1,
#        QULOUD_BIN (default target/release/quloud).
set -euo pipefail

SIZE=${SIZE:-512M}
NODES=${NODES:-5}
READ_SECS=${READ_SECS:-10}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${QULOUD_BIN:-$ROOT/target/release/quloud}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/quloud-health.XXXXXX")
PIDS=()
MP=$TMP/mp
HOME_DIR=$TMP/home

log() { echo "== $(date +%T) $*" >&2; }
die() { echo "ERROR: $*" >&2; exit 1; }

cleanup() {
    trap - EXIT INT TERM
    if mountpoint -q "$MP" 2>/dev/null; then fusermount3 -u "$MP" 2>/dev/null || fusermount3 -u -z "$MP" || true; fi
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[$i]}" 2>/dev/null || true; done
    wait 2>/dev/null || true
    if [[ -n "${KEEP:-}" ]]; then echo "kept $TMP" >&2; else rm -rf "$TMP"; fi
}
trap cleanup EXIT INT TERM

command -v nats-server >/dev/null || die "nats-server not found: apt-get install -y nats-server"
command -v fusermount3 >/dev/null || die "fusermount3 not found: apt-get install -y fuse3"
if [[ -z "${NO_BUILD:-}" ]]; then (cd "$ROOT" && cargo build --release --quiet); fi
[[ -x "$BIN" ]] || die "$BIN not built: run cargo build --release"

num() { sed -n "s/.*\"$2\":\([0-9.]*\).*/\1/p" <<<"$1"; }
now() { date +%s.%N; }
calc() { awk "BEGIN { printf \"%.1f\", $* }"; }
size_mib() { numfmt --from=iec "$1" | awk '{ printf "%d", $1 / 1048576 }'; }

PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
mkdir -p "$TMP/nats" "$MP"
printf 'host: 127.0.0.1\nport: %s\njetstream { store_dir: "%s" }\n' "$PORT" "$TMP/nats/js" >"$TMP/nats.conf"
nats-server -c "$TMP/nats.conf" >"$TMP/nats.log" 2>&1 &
PIDS+=($!)
URL=nats://127.0.0.1:$PORT
for _ in $(seq 100); do (echo >/dev/tcp/127.0.0.1/"$PORT") 2>/dev/null && break; sleep 0.1; done
NODE_PIDS=()
for i in $(seq 0 $((NODES - 1))); do
    "$BIN" node --nats "$URL" --data "$TMP/node-$i" --capacity 20GiB >"$TMP/node-$i.log" 2>&1 &
    PIDS+=($!)
    NODE_PIDS+=($!)
done
for i in $(seq 0 $((NODES - 1))); do
    for _ in $(seq 200); do grep -q "storage node serving" "$TMP/node-$i.log" 2>/dev/null && break; sleep 0.1; done
done
"$BIN" --home "$HOME_DIR" init >/dev/null
# Mounts the vault with extra flags; sets MOUNT_PID.
start_mount() {
    QULOUD_LOG=${MOUNT_LOG:-warn} "$BIN" --home "$HOME_DIR" mount "$MP" --nats "$URL" --replicas 3 --cache-size 1GiB "$@" >>"$TMP/mount.log" 2>&1 &
    MOUNT_PID=$!
    PIDS+=($MOUNT_PID)
    for _ in $(seq 300); do mountpoint -q "$MP" && break; sleep 0.1; done
    mountpoint -q "$MP" || die "mount failed: $(cat "$TMP/mount.log")"
}
start_mount

MIB=$(size_mib "$SIZE")
FILES=$(( (MIB + 63) / 64 ))
log "writing $MIB MiB in $FILES files, waiting until durable"
for f in $(seq 1 "$FILES"); do
    head -c $((64 << 20)) /dev/urandom >"$MP/f$f.bin"
done
sync "$MP"/f1.bin
for _ in $(seq 1200); do
    S=$("$BIN" --home "$HOME_DIR" status --json)
    [[ $(num "$S" pending) == 0 && $(num "$S" staged_files) == 0 ]] && break
    sleep 0.25
done
CHUNKS=$(num "$S" chunks)
log "durable: $CHUNKS chunks"

# Reads the data in a loop for up to $1 seconds (or until the file $2 exists); prints MiB/s.
read_loop() {
    local until=$1 stop=$2 t0 bytes=0
    t0=$(now)
    while [[ ! -e "$stop" ]] && awk -v a="$t0" -v b="$(now)" -v u="$until" 'BEGIN { exit !(b - a < u) }'; do
        for f in "$MP"/f*.bin; do
            cat "$f" >/dev/null
            bytes=$((bytes + 64))
            [[ -e "$stop" ]] && break
        done
    done
    calc "$bytes / ($(now) - $t0)"
}

log "reads alone for $READ_SECS s"
READ_ALONE=$(read_loop "$READ_SECS" "$TMP/never")

log "audit --now alone"
T0=$(now)
ALONE=$("$BIN" --home "$HOME_DIR" audit --now --json) || die "audit failed: $ALONE"
T1=$(now)
ALONE_RATE=$(calc "$(num "$ALONE" checked) / ($T1 - $T0)")
ALONE_PHASE=$(calc "$(num "$ALONE" checked) / $(num "$ALONE" challenge_secs)")

log "audit --now with reads running"
rm -f "$TMP/stop"
read_loop 100000 "$TMP/stop" >"$TMP/read_during.txt" &
READER=$!
T0=$(now)
AUDIT=$("$BIN" --home "$HOME_DIR" audit --now --json) || die "audit failed: $AUDIT"
T1=$(now)
touch "$TMP/stop"
wait "$READER"
READ_DURING=$(cat "$TMP/read_during.txt")
CHECKED=$(num "$AUDIT" checked)
AUDIT_SECS=$(calc "$T1 - $T0")
AUDIT_RATE=$(calc "$CHECKED / ($T1 - $T0)")
AUDIT_PHASE=$(calc "$CHECKED / $(num "$AUDIT" challenge_secs)")

log "background auditor at its default rate (--audit-interval 1s: every replica always due), reads for $READ_SECS s"
fusermount3 -u "$MP"
wait "$MOUNT_PID" 2>/dev/null || true
start_mount --audit-interval 1s
for f in "$MP"/f*.bin; do cat "$f" >/dev/null; done # warm the cache again
passed_total() { "$BIN" --home "$HOME_DIR" nodes --json | grep -o '"audits_passed":[0-9]*' | cut -d: -f2 | paste -sd+ | bc; }
BG_BEFORE=$(passed_total)
T0=$(now)
READ_BG=$(read_loop "$READ_SECS" "$TMP/never")
T1=$(now)
BG_RATE=$(calc "($(passed_total) - $BG_BEFORE) / ($T1 - $T0)")

VICTIM=0
MOST=0
for i in $(seq 0 $((NODES - 1))); do
    n=$(find "$TMP/node-$i/chunks" -type f | wc -l)
    if ((n > MOST)); then MOST=$n; VICTIM=$i; fi
done
log "killing node $VICTIM ($MOST chunk bodies) and deleting its data"
kill -9 "${NODE_PIDS[$VICTIM]}"
rm -rf "$TMP/node-$VICTIM"
T0=$(now)
HEAL=$("$BIN" --home "$HOME_DIR" audit --now --json) || die "heal audit failed: $HEAL"
T1=$(now)
HEALED=$(num "$HEAL" healed)
HEALED_MIB=$(calc "$(num "$HEAL" healed_bytes) / 1048576")
HEAL_SECS=$(calc "$T1 - $T0")
HEAL_RATE=$(calc "$HEALED_MIB / ($T1 - $T0)")
HEAL_ONLY_SECS=$(num "$HEAL" heal_secs)
HEAL_ONLY_RATE=$(calc "$HEALED_MIB / $HEAL_ONLY_SECS")

cat <<EOF

Quloud audit/heal benchmark — $(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)
data: $MIB MiB in $FILES files, $CHUNKS chunks, N=3 on $NODES nodes

| figure | value | target |
|---|---|---|
| audit: challenges per second, challenge phase (nothing else running) | $ALONE_PHASE /s | ≥ 2000 /s |
| audit: challenges per second, whole \`quloud audit --now\` command (nothing else running) | $ALONE_RATE /s | — |
| audit: challenges per second, challenge phase (reads running flat out) | $AUDIT_PHASE /s | ≥ 2000 /s |
| audit: challenges per second, whole command (reads running flat out) | $AUDIT_RATE /s ($CHECKED in $AUDIT_SECS s) | — |
| reads alone (warm cache, baseline) | $READ_ALONE MiB/s | — |
| reads during the foreground \`audit --now\` (unthrottled) | $READ_DURING MiB/s ($(calc "$READ_DURING / $READ_ALONE") × alone) | serving |
| reads while the background auditor runs (default limit 200/s; measured $BG_RATE challenges/s) | $READ_BG MiB/s ($(calc "$READ_BG / $READ_ALONE") × alone) | serving |
| heal: re-replicated after losing a node (heal phase) | $HEAL_ONLY_RATE MiB/s ($HEALED chunks, $HEALED_MIB MiB in $HEAL_ONLY_SECS s) | ≥ 50 MiB/s |
| whole \`audit --now\` pass that found the loss and healed it | $HEAL_RATE MiB/s ($HEAL_SECS s) | — |
EOF
