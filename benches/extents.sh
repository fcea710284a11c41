#!/usr/bin/env bash
# Writes proportional to the change (docs/PERFORMANCE.md §7): a real nats-server, NODES storage
# nodes and a Quloud mount with its metrics endpoint.
#
# Usage: NO_BUILD=1 benches/extents.sh        (SIZE=1G)
# Env:   SIZE (default 1G: the big file, dd units), NODES (3), REPLICAS (3), KEEP=1 keeps the
#        temp dir, NO_BUILD=1 skips `cargo build --release`, QULOUD_BIN (default
#        target/release/quloud).
#
# Steps: write SIZE of random data into big.bin and wait until quorum-durable; unmount, empty
# the disk cache, remount (cold); then
#   write4k   dd 4 KiB into the middle (conv=notrunc): wall time of the dd, then until durable;
#             bytes loaded (outbox, disk cache, fabric) and staged, from the mount's counters
#             (quloud_vault_loaded_bytes_total, quloud_vault_staged_bytes_total), and the
#             staging directory's disk use right after the write
#   inplace   after another cold remount, 1 MiB of the copy's middle replaced and
#             `rsync --inplace --no-whole-file -I` of the copy onto the file: wall time of rsync,
#             bytes uploaded (quloud_vault_uploaded_bytes_total: ciphertext, each chunk once),
#             loaded (rsync reads the whole old file to find the change) and staged
#   append    after another cold remount, append 1 MiB: chunks and bytes uploaded
#             (quloud_vault_chunks_uploaded_total, quloud_vault_uploaded_bytes_total) and the
#             counters as above
# Every step starts in a fresh mount process, so each step's counters start at zero.
# Every figure is checked against a copy: the file is compared with cmp after a cold remount.
set -euo pipefail

SIZE=${SIZE:-1G}
NODES=${NODES:-3}
REPLICAS=${REPLICAS:-3}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${QULOUD_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/quloud}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/quloud-extents.XXXXXX")
PIDS=()
QPID=""

die() { echo "ERROR: $*" >&2; exit 1; }
cleanup() {
    mountpoint -q "$TMP/mnt" 2>/dev/null && { fusermount3 -u "$TMP/mnt" || fusermount3 -u -z "$TMP/mnt"; }
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    wait 2>/dev/null || true
    [[ ${KEEP:-0} == 1 ]] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
wait_for_line() { # file pattern timeout_s
    local deadline=$((SECONDS + $3))
    until grep -q "$2" "$1" 2>/dev/null; do
        ((SECONDS < deadline)) || { tail -20 "$1" >&2; die "timed out waiting for '$2' in $1"; }
        sleep 0.2
    done
}
for tool in nats-server fusermount3 jq curl python3 cmp rsync; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
[[ ${NO_BUILD:-0} == 1 ]] || (cd "$ROOT" && cargo build --release)

PORT=$(free_port)
URL=nats://127.0.0.1:$PORT
mkdir -p "$TMP/js"
printf 'listen: 127.0.0.1:%s\njetstream { store_dir: "%s" }\n' "$PORT" "$TMP/js" >"$TMP/nats.conf"
GOGC=400 nats-server -c "$TMP/nats.conf" >"$TMP/nats.log" 2>&1 &
PIDS+=($!)
wait_for_line "$TMP/nats.log" "Server is ready" 20
for i in $(seq 1 "$NODES"); do
    "$BIN" node --nats "$URL" --data "$TMP/node$i" --capacity 20GiB >"$TMP/node$i.log" 2>&1 &
    PIDS+=($!)
done
for i in $(seq 1 "$NODES"); do wait_for_line "$TMP/node$i.log" "storage node serving" 60; done

HOME_DIR=$TMP/home
MET=$(free_port)
mkdir -p "$HOME_DIR" "$TMP/mnt"
"$BIN" --home "$HOME_DIR" init >/dev/null 2>&1 </dev/null || die "init failed"
q_mount() {
    "$BIN" --home "$HOME_DIR" mount "$TMP/mnt" --nats "$URL" --replicas "$REPLICAS" \
        --metrics "127.0.0.1:$MET" >>"$TMP/mount.log" 2>&1 &
    QPID=$!
    PIDS+=("$QPID")
    local deadline=$((SECONDS + 60))
    until mountpoint -q "$TMP/mnt" && curl -sf "http://127.0.0.1:$MET/metrics" >/dev/null; do
        ((SECONDS < deadline)) || die "mount not ready"
        sleep 0.2
    done
}
q_cold_remount() {
    fusermount3 -u "$TMP/mnt"
    while kill -0 "$QPID" 2>/dev/null; do sleep 0.2; done
    rm -rf "$HOME_DIR/chunks"
    q_mount
}
q_durable() {
    until "$BIN" --home "$HOME_DIR" status --json 2>/dev/null |
        jq -e '.pending == 0 and .staged_files == 0 and .durable == .chunks' >/dev/null; do
        sleep 0.2
    done
}
metric() { curl -sf "http://127.0.0.1:$MET/metrics" | awk -v n="$1" '$1 == n { print $2 }'; }
now() { date +%s.%N; }
mib() { awk -v b="$1" 'BEGIN { printf "%.3f MiB", b / 1048576 }'; }

q_mount
head -c "$SIZE" /dev/urandom >"$TMP/ref.bin"
cp "$TMP/ref.bin" "$TMP/mnt/big.bin"
q_durable
echo "big file: $(mib "$(stat -c %s "$TMP/ref.bin")"), durable"

q_cold_remount
HALF=$(($(stat -c %s "$TMP/ref.bin") / 2 / 4096))
head -c 4096 /dev/urandom >"$TMP/patch"
t0=$(now)
dd if="$TMP/patch" of="$TMP/mnt/big.bin" bs=4096 seek="$HALF" conv=notrunc status=none
t1=$(now)
staging_du=$(du -s -B1 "$HOME_DIR/staging" | cut -f1)
dd if="$TMP/patch" of="$TMP/ref.bin" bs=4096 seek="$HALF" conv=notrunc status=none
q_durable
t2=$(now)
echo "write4k: dd $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f s", b - a }'), durable after $(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.2f s", b - a }')," \
    "loaded $(mib "$(metric quloud_vault_loaded_bytes_total)"), staged $(mib "$(metric quloud_vault_staged_bytes_total)"), staging dir $(mib "$staging_du")"

q_cold_remount
head -c 1048576 /dev/urandom >"$TMP/patch"
dd if="$TMP/patch" of="$TMP/ref.bin" bs=1M seek=$((HALF * 4096 + 12345)) oflag=seek_bytes conv=notrunc status=none
t0=$(now)
rsync --inplace --no-whole-file -I "$TMP/ref.bin" "$TMP/mnt/big.bin"
t1=$(now)
q_durable
t2=$(now)
echo "inplace 1 MiB: rsync $(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.2f s", b - a }'), durable after $(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.2f s", b - a }')," \
    "uploaded $(mib "$(metric quloud_vault_uploaded_bytes_total)") in $(metric quloud_vault_chunks_uploaded_total) chunks," \
    "loaded $(mib "$(metric quloud_vault_loaded_bytes_total)"), staged $(mib "$(metric quloud_vault_staged_bytes_total)")"

q_cold_remount
head -c 1048576 /dev/urandom >"$TMP/tail"
t0=$(now)
cat "$TMP/tail" >>"$TMP/mnt/big.bin"
cat "$TMP/tail" >>"$TMP/ref.bin"
q_durable
t2=$(now)
echo "append 1 MiB: durable after $(awk -v a="$t0" -v b="$t2" 'BEGIN { printf "%.2f s", b - a }'), uploaded $(mib "$(metric quloud_vault_uploaded_bytes_total)") in $(metric quloud_vault_chunks_uploaded_total) chunks," \
    "loaded $(mib "$(metric quloud_vault_loaded_bytes_total)"), staged $(mib "$(metric quloud_vault_staged_bytes_total)")"

q_cold_remount
cmp "$TMP/ref.bin" "$TMP/mnt/big.bin" && echo "content exact after a cold remount"
