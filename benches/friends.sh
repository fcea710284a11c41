#!/usr/bin/env bash
# Friends' houses across shaped links (docs/PERFORMANCE.md §9): a hub and four houses, each in a
# network namespace of its own joined by veth pairs and a bridge, run as a person would run them
# (`quloud up --hub`, `invite`, `join`, `up --house`); house 1 (alice) backs up its vault.
#
# Usage: sudo NO_BUILD=1 benches/friends.sh          (root: namespaces, tc, FUSE)
# Env:   QULOUD_BENCH_MIB (default 256: MiB uploaded and read back per phase), CAP_MBIT (40: the
#        shaped uplink and downlink), OFFLINE_SECS (30: how long house 4 stays offline),
#        KEEP=1 keeps the temp dir and logs, NO_BUILD=1 skips `cargo build --release`,
#        QULOUD_BIN (default $CARGO_TARGET_DIR/release/quloud).
#
# Figures, each against a baseline of the same run:
#   invite    `quloud invite dave` until dave's node stores its first chunk (alice's chunks wait
#             for a third other house until then), with `invite`, `join` and `up` timed apart
#   upload    SIZE into the mount until quorum-durable (3 replicas in bob's, carol's and dave's
#             houses), unshaped, then through a tbf cap on alice's eth0: goodput as % of the cap,
#             and alice's eth0 tx bytes per stored byte (the uplink cost; 1.0 = each byte once)
#   read      cold read (mount restarted, disk cache emptied) of SIZE, unshaped, then through a
#             tbf cap on the switch side of alice's link (her downlink): % of the cap
#   offline   bytes sent by every namespace during `quloud audit --now` with all houses up; then
#             dave's link down, an audit, OFFLINE_SECS, another audit (the mount runs
#             --offline-after 10s, so dave is offline, within the 72 h grace): bytes sent in that
#             window outside the audits, and what the audits healed, are re-replication
# The bytes are the kernel's interface counters (ip -s link); the tbf qdiscs and namespaces are
# removed on exit.
set -euo pipefail

MIB=${QULOUD_BENCH_MIB:-256}
CAP_MBIT=${CAP_MBIT:-40}
OFFLINE_SECS=${OFFLINE_SECS:-30}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${QULOUD_BIN:-${CARGO_TARGET_DIR:-$ROOT/target}/release/quloud}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/quloud-friends.XXXXXX")
chmod 755 "$TMP"
TAG=qf$(printf '%x' $(($$ % 0xffff)))
NET=10.214.$(($$ % 200 + 20))
SW=${TAG}sw
NAMES=(hub alice bob carol dave)
NS=()
PIDS=()
MNT=$TMP/vault

die() { echo "ERROR: $*" >&2; exit 1; }
cleanup() {
    set +e
    local kids
    kids=$(for p in "${PIDS[@]}"; do ps -o pid= --ppid "$p"; done)
    for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
    for p in "${PIDS[@]}"; do
        for _ in $(seq 150); do kill -0 "$p" 2>/dev/null || break; sleep 0.2; done
    done
    for p in "${PIDS[@]}" $kids; do kill -KILL "$p" 2>/dev/null; done
    mountpoint -q "$MNT" 2>/dev/null && { fusermount3 -u "$MNT" || fusermount3 -u -z "$MNT"; }
    for ns in "${NS[@]}" "$SW"; do ip netns del "$ns" 2>/dev/null; done
    [[ ${KEEP:-0} == 1 ]] && echo "kept $TMP" || rm -rf "$TMP"
}
trap cleanup EXIT
[[ $(id -u) == 0 ]] || die "run as root (network namespaces, tc, FUSE)"
for tool in ip tc nsenter nats-server openssl fusermount3 jq cmp; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
[[ ${NO_BUILD:-0} == 1 ]] || (cd "$ROOT" && cargo build --release)

now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", b - a }'; }
wait_until() { # timeout_s description command...
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || die "timed out waiting for $what"
        sleep 0.2
    done
}
in_ns() { local i=$1; shift; nsenter --net="/run/netns/${NS[$i]}" "$@"; }
q() { local i=$1; shift; in_ns "$i" "$BIN" --home "$TMP/${NAMES[$i]}" "$@"; }
start() { # i log args...: a `quloud up` (it stops its children on SIGTERM) as PIDS[i]
    local i=$1 log=$2
    shift 2
    rm -f "$TMP/pid.$i"
    # nsenter may fork: the shell inside writes the pid that `exec` keeps.
    in_ns "$i" bash -c 'echo $$ >"$0"; exec "$@"' "$TMP/pid.$i" \
        "$BIN" --home "$TMP/${NAMES[$i]}" "$@" >"$log" 2>&1 &
    wait_until 10 "${NAMES[$i]}'s pid" test -s "$TMP/pid.$i"
    PIDS[i]=$(cat "$TMP/pid.$i")
}
tx() { ip -n "${NS[$1]}" -s -j link show eth0 | jq '.[0].stats64.tx.bytes'; }
rx() { ip -n "${NS[$1]}" -s -j link show eth0 | jq '.[0].stats64.rx.bytes'; }
tx_all() { local s=0; for i in 0 1 2 3 4; do s=$((s + $(tx "$i"))); done; echo "$s"; }
mib() { awk -v b="$1" 'BEGIN { printf "%.1f MiB", b / 1048576 }'; }
status() { "$BIN" --home "$TMP/alice" status --json; }
durable() { status | jq -e '.pending == 0 and .staged_files == 0 and .queued == 0 and .durable == .chunks'; }
log_has() { grep -q "$2" "$1"; }
stored_first() { [[ -n $(find "$TMP/$1/house/node/chunks" -type f -print -quit 2>/dev/null) ]]; }

# The bed: a switch namespace with a bridge, one namespace per machine on $NET.0/24.
ip netns add "$SW"
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up
for i in 0 1 2 3 4; do
    NS+=("$TAG${NAMES[$i]}")
    ip netns add "${NS[$i]}"
    ip -n "$SW" link add "p$i" type veth peer name eth0 netns "${NS[$i]}"
    ip -n "$SW" link set "p$i" master br0 up
    ip -n "${NS[$i]}" addr add "$NET.$((i + 1))/24" dev eth0
    ip -n "${NS[$i]}" link set eth0 up
    ip -n "${NS[$i]}" link set lo up
done
shape() { # netns dev: tbf at CAP_MBIT on dev's egress
    ip netns exec "$1" tc qdisc replace dev "$2" root tbf rate "${CAP_MBIT}mbit" burst 64kb latency 100ms
}
unshape() { ip netns exec "$1" tc qdisc del dev "$2" root 2>/dev/null || true; }

start 0 "$TMP/hub.log" up --hub --public "$NET.1"
wait_until 60 "the hub" log_has "$TMP/hub.log" "invite a friend's box"
invite() { q 0 invite "$1" | grep '^QI1-'; }
join_house() { # i [join args]
    local i=$1 name=${NAMES[$1]} inv
    shift
    inv=$(invite "$name")
    q "$i" join "$inv" --capacity 20GiB "$@" >"$TMP/$name-join.log" 2>&1 || { cat "$TMP/$name-join.log"; die "join $name"; }
    start "$i" "$TMP/$name.log" up --house --offline-after 10s
    wait_until 60 "$name's house" log_has "$TMP/$name.log" "is up: nats-server at"
}
mkdir -p "$MNT"
join_house 1 --vault "$MNT"
wait_until 60 "alice's mount" mountpoint -q "$MNT"
join_house 2
join_house 3
reachable() { status | jq -e ".placement.houses_reachable == $1"; }
wait_until 120 "alice to see bob and carol" reachable 2

# 1. From invite to the new house's first stored chunk; alice's first file waits for it.
head -c 4M /dev/urandom >"$MNT/first.bin"
wait_until 60 "the first file's chunks queued" bash -c "'$BIN' --home '$TMP/alice' status --json | jq -e '.chunks > 0 and .pending == .chunks'"
t0=$(now)
inv=$(invite dave)
t1=$(now)
q 4 join "$inv" --capacity 20GiB >"$TMP/dave-join.log" 2>&1 || die "join dave"
t2=$(now)
start 4 "$TMP/dave.log" up --house --offline-after 10s
wait_until 60 "dave's house" log_has "$TMP/dave.log" "is up: nats-server at"
t3=$(now)
wait_until 180 "dave's first chunk" stored_first dave
t4=$(now)
wait_until 180 "the first file durable" durable
t5=$(now)
echo "invite → dave's first chunk: $(secs "$t0" "$t4") s (invite $(secs "$t0" "$t1") s, join $(secs "$t1" "$t2") s," \
    "house up $(secs "$t2" "$t3") s, first chunk $(secs "$t3" "$t4") s); alice's first file durable after $(secs "$t0" "$t5") s"

# 2. Upload, unshaped then through the cap on alice's uplink; alice's eth0 tx per stored byte.
BYTES=$((MIB * 1048576))
CAP_BPS=$((CAP_MBIT * 1000000 / 8))
upload() { # name label
    head -c "$BYTES" /dev/urandom >"$TMP/$1"
    local tx0 rx0 t0 t1 tx1 rx1
    tx0=$(tx 1) rx0=$(rx 1) t0=$(now)
    cp "$TMP/$1" "$MNT/$1"
    wait_until 1800 "$1 durable" durable
    t1=$(now) tx1=$(tx 1) rx1=$(rx 1)
    awk -v b="$BYTES" -v a="$t0" -v z="$t1" -v tx=$((tx1 - tx0)) -v rx=$((rx1 - rx0)) -v cap="$CAP_BPS" -v l="$2" 'BEGIN {
        r = b / (z - a)
        printf "upload %s: %d MiB durable in %.1f s = %.2f MiB/s (%.0f %% of %d Mbit/s); alice tx %.1f MiB = %.3f per stored byte (%.2f GiB per GiB), rx %.1f MiB\n",
            l, b / 1048576, z - a, r / 1048576, 100 * r / cap, cap * 8 / 1e6, tx / 1048576, tx / b, tx / b, rx / 1048576 }'
}
upload base.bin "unshaped"
shape "${NS[1]}" eth0
upload capped.bin "capped"
unshape "${NS[1]}" eth0

# 3. Cold reads: restart alice's house with her disk cache emptied, then read a file.
restart_alice() {
    kill -TERM "${PIDS[1]}"
    wait_until 60 "alice's house to stop" bash -c "! kill -0 ${PIDS[1]}"
    wait_until 30 "alice's mount to go" bash -c "! mountpoint -q '$MNT'"
    rm -rf "$TMP/alice/chunks"
    echo 3 >/proc/sys/vm/drop_caches
    start 1 "$TMP/alice.log" up --house --offline-after 10s
    wait_until 60 "alice's mount" mountpoint -q "$MNT"
}
cold_read() { # name label
    local t0 t1 rx0 rx1
    rx0=$(rx 1) t0=$(now)
    cmp "$TMP/$1" "$MNT/$1" || die "$1 differs"
    t1=$(now) rx1=$(rx 1)
    awk -v b="$BYTES" -v a="$t0" -v z="$t1" -v rx=$((rx1 - rx0)) -v cap="$CAP_BPS" -v l="$2" 'BEGIN {
        r = b / (z - a)
        printf "cold read %s: %d MiB in %.1f s = %.2f MiB/s (%.0f %% of %d Mbit/s), content exact; alice rx %.3f per byte read\n",
            l, b / 1048576, z - a, r / 1048576, 100 * r / cap, cap * 8 / 1e6, rx / b }'
}
restart_alice
cold_read base.bin "unshaped"
restart_alice
shape "$SW" p1
cold_read capped.bin "capped"
unshape "$SW" p1

# 4. A house offline within the grace: bytes sent during an audit, all up, then dave down.
AUDIT_SENT=0
audit_bytes() { # label
    local b0 t0 out sent
    b0=$(tx_all) t0=$(now)
    out=$("$BIN" --home "$TMP/alice" audit --now --json 2>&1 || true)
    sent=$(($(tx_all) - b0))
    AUDIT_SENT=$((AUDIT_SENT + sent))
    echo "audit $1: $(secs "$t0" "$(now)") s, all namespaces sent $(mib "$sent") during it;" \
        "$(jq -c '{checked, passed, silent, healed, healed_bytes}' <<<"$out" 2>/dev/null || echo "$out" | tail -1)"
}
audit_bytes "all houses up"
AUDIT_SENT=0
b0=$(tx_all)
o0=$(tx 1)
ip -n "$SW" link set p4 down
audit_bytes "dave's link down"
sleep "$OFFLINE_SECS"
audit_bytes "dave's link down, ${OFFLINE_SECS} s later"
sent=$(($(tx_all) - b0))
echo "dave offline ${OFFLINE_SECS}+ s, within the grace: all namespaces sent $(mib "$sent"), $(mib $((sent - AUDIT_SENT)))" \
    "of it outside the two audits; alice $(mib $(($(tx 1) - o0))); $(status | jq -c '{nodes, in_grace, chunks, durable, pending}')"
ip -n "$SW" link set p4 up
