#!/usr/bin/env bash
# Mount benchmark: the same workload, in one run, on
#   (a) a plain local directory,
#   (b) gocryptfs over a local directory,
#   (c) the Quloud FUSE mount with a real nats-server (JetStream) and 3 local storage nodes, N=3.
#
# Usage: benches/mount.sh                  (1 GiB, needs root for drop_caches)
#        SIZE=256M NO_BUILD=1 benches/mount.sh
# Env:   SIZE (default 1G; 256M, 1GiB, ... accepted), FILES (10000 small files), DIRS (100),
#        CACHE_MIB (256, passed as --cache-size), DISK_CACHE (2GiB, --disk-cache-size), REPLICAS (3),
#        NODES (3), CAPACITY (20GiB),
#        TIMEOUT (600 s per step), KEEP=1 keeps the temp dir, NO_BUILD=1 skips
#        `cargo build --release`, QULOUD_BIN (binary to test; default target/release/quloud),
#        LOGDIR (where logs are copied at the end).
#
# Workload, per system:
#   write    dd if=SRC of=MP/big.bin bs=1M conv=fsync (SRC: random file in /dev/shm, made once)
#   durable  quloud only: from the start of the write until `status --json` reports
#            pending == 0 && staged_files == 0 (polled every 0.2 s)
#   read     drop caches, dd if=MP/big.bin of=/dev/null bs=1M (quloud: its LRU and its disk cache
#            of sealed chunks are warm)
#   cold     quloud: unmount, empty the disk cache, remount (empty LRU), drop caches, read again
#            from the nodes
#            gocryptfs: unmount, remount, drop caches, read again
#   rsync    rsync -a SRC_SMALL/ MP/small/  (FILES files of 1-8 KiB in DIRS dirs, made once)
#   rss      quloud mount VmRSS sampled every 0.2 s from the start of the write until durable
# Every read is checked with cmp against the source (not timed).
# Prints a table (absolute figures, ratios vs gocryptfs and vs the plain dir) and one line per
# target (docs/PERFORMANCE.md, section "Mount").
set -euo pipefail

SIZE=${SIZE:-1G}
FILES=${FILES:-10000}
DIRS=${DIRS:-100}
CACHE_MIB=${CACHE_MIB:-256}
DISK_CACHE=${DISK_CACHE:-2GiB}
REPLICAS=${REPLICAS:-3}
NODES=${NODES:-3}
CAPACITY=${CAPACITY:-20GiB}
TIMEOUT=${TIMEOUT:-600}

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${QULOUD_BIN:-$ROOT/target/release/quloud}
TMP=$(mktemp -d "${TMPDIR:-/tmp}/quloud-mount.XXXXXX")
if [[ -d /dev/shm && -w /dev/shm ]]; then
    SHM=$(mktemp -d /dev/shm/quloud-mount-src.XXXXXX)
else
    SHM=$TMP/src
    mkdir -p "$SHM"
fi
LOGDIR=${LOGDIR:-${TMPDIR:-/tmp}/quloud-mount-logs.$(date +%Y%m%d-%H%M%S)}
PIDS=()     # background processes to kill at exit, in start order
MOUNTS=()   # mountpoints to unmount at exit
QPID=""     # the quloud mount process
SAMPLER_PIDS=()

die() {
    echo "ERROR: $*" >&2
    exit 1
}

log() { echo "== $(date +%T) $*" >&2; }

save_logs() {
    mkdir -p "$LOGDIR"
    cp "$TMP"/*.log "$LOGDIR"/ 2>/dev/null || true
    cp "$TMP"/*.txt "$LOGDIR"/ 2>/dev/null || true
}

cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    for pid in "${SAMPLER_PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for mp in "${MOUNTS[@]}"; do
        if mountpoint -q "$mp" 2>/dev/null; then
            fusermount3 -u "$mp" 2>/dev/null || fusermount3 -u -z "$mp" 2>/dev/null || true
        fi
    done
    # Give the mount processes a moment to exit after the unmount, then stop everything else.
    for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do
        kill "${PIDS[$i]}" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        for _ in $(seq 1 50); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -9 "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    save_logs
    if ((rc != 0)); then
        echo "failed (exit $rc); logs in $LOGDIR" >&2
        if [[ -f $TMP/mount.log ]]; then
            echo "--- last 40 lines of the quloud mount log ---" >&2
            tail -40 "$TMP/mount.log" >&2 || true
        fi
    else
        echo "logs in $LOGDIR" >&2
    fi
    if [[ ${KEEP:-0} == 1 ]]; then
        echo "kept $TMP and $SHM" >&2
    else
        rm -rf "$TMP" "$SHM"
    fi
    exit "$rc"
}
trap cleanup EXIT INT TERM

now() { date +%s.%N; }
elapsed() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", b - a }'; }
mib_s() { awk -v m="$1" -v t="$2" 'BEGIN { printf "%.1f", (t > 0 ? m / t : 0) }'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
loadavg() { cut -d' ' -f1-3 /proc/loadavg; }

# SIZE in MiB: 256M, 256MiB, 1G, 1GiB, 1024 (MiB).
size_mib() {
    local s=${1^^}
    s=${s%IB}
    s=${s%B}
    case $s in
    *G) echo $((${s%G} * 1024)) ;;
    *M) echo "${s%M}" ;;
    *[0-9]) echo "$s" ;;
    *) die "cannot parse SIZE=$1 (use 256M or 1G)" ;;
    esac
}
MIB=$(size_mib "$SIZE")

# CPU seconds "user sys" a process has used so far.
cpu_secs() {
    local hz
    hz=$(getconf CLK_TCK)
    awk -v hz="$hz" '{ sub(/^.*\) /, ""); print $12 / hz, $13 / hz }' "/proc/$1/stat" 2>/dev/null || echo 0 0
}
cpu_delta() {
    awk -v a="$1" -v b="$2" 'BEGIN { split(a, x, " "); split(b, y, " "); printf "%.1f user + %.1f sys", y[1] - x[1], y[2] - x[2] }'
}

# Named processes whose CPU is accounted per phase: name=pid
declare -A WATCH=()
declare -A CPU0=()
cpu_begin() {
    local n
    for n in "${!WATCH[@]}"; do CPU0[$n]=$(cpu_secs "${WATCH[$n]}"); done
    CPU_T0=$(now)
    NATS0=$(nats_bytes)
    IO0=$(proc_io "${WATCH[mount]:-}")
}
# "in out" bytes nats-server has received/sent so far (monitoring endpoint), or empty.
nats_bytes() {
    [[ -n ${NATS_MON:-} ]] || return 0
    curl -s --max-time 2 "$NATS_MON/varz" | jq -r '"\(.in_bytes) \(.out_bytes)"' 2>/dev/null || true
}
# "read_bytes write_bytes" (block I/O) of a process so far, or empty.
proc_io() {
    [[ -n $1 && -r /proc/$1/io ]] || return 0
    awk '/^read_bytes:/ { r = $2 } /^write_bytes:/ { w = $2 } END { print r, w }' "/proc/$1/io" 2>/dev/null || true
}
# cpu_end PHASE: appends per-process CPU seconds of the phase to cpu.txt
cpu_end() {
    local n t1
    t1=$(now)
    {
        printf '%s (wall %ss, load %s):' "$1" "$(elapsed "$CPU_T0" "$t1")" "$(loadavg)"
        for n in $(printf '%s\n' "${!WATCH[@]}" | sort); do
            [[ -n ${CPU0[$n]:-} ]] || continue
            printf ' %s %s;' "$n" "$(cpu_delta "${CPU0[$n]}" "$(cpu_secs "${WATCH[$n]}")")"
        done
        local nb io
        nb=$(nats_bytes)
        if [[ -n $NATS0 && -n $nb ]]; then
            awk -v a="$NATS0" -v b="$nb" 'BEGIN { split(a, x, " "); split(b, y, " ");
                printf " nats-server moved %.0f MiB in, %.0f MiB out;", (y[1] - x[1]) / 1048576, (y[2] - x[2]) / 1048576 }'
        fi
        io=$(proc_io "${WATCH[mount]:-}")
        if [[ -n $IO0 && -n $io ]]; then
            awk -v a="$IO0" -v b="$io" 'BEGIN { split(a, x, " "); split(b, y, " ");
                printf " mount block I/O %.0f MiB read, %.0f MiB written;", (y[1] - x[1]) / 1048576, (y[2] - x[2]) / 1048576 }'
        fi
        echo
    } >>"$TMP/cpu.txt"
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

drop_caches() {
    sync
    echo 3 >/proc/sys/vm/drop_caches
}

# timed_dd_write DST -> prints seconds; fsync of the destination is included.
timed_write() {
    local t0 t1
    t0=$(now)
    timeout "$TIMEOUT" dd if="$SHM/big.bin" of="$1" bs=1M conv=fsync status=none ||
        die "write to $1 failed or timed out"
    t1=$(now)
    elapsed "$t0" "$t1"
}

# timed_read SRC -> prints seconds; then checks the content (not timed).
timed_read() {
    local t0 t1
    t0=$(now)
    timeout "$TIMEOUT" dd if="$1" of=/dev/null bs=1M status=none || die "read of $1 failed or timed out"
    t1=$(now)
    timeout "$TIMEOUT" cmp -s "$SHM/big.bin" "$1" || die "content of $1 differs from the source"
    elapsed "$t0" "$t1"
}

timed_rsync() {
    local t0 t1
    t0=$(now)
    timeout "$TIMEOUT" rsync -a "$SHM/small/" "$1/" || die "rsync into $1 failed or timed out"
    t1=$(now)
    elapsed "$t0" "$t1"
}

# --- build, inputs --------------------------------------------------------------------------
[[ $(id -u) == 0 ]] || die "run as root (drop_caches)"
for tool in nats-server gocryptfs fusermount3 rsync jq python3 cmp curl; do
    command -v "$tool" >/dev/null || die "$tool is missing"
done
if [[ ${NO_BUILD:-0} != 1 && -z ${QULOUD_BIN:-} ]]; then
    log "cargo build --release"
    (cd "$ROOT" && cargo build --release --quiet)
fi
[[ -x $BIN ]] || die "$BIN is missing (build first)"
# Run a private copy, so a concurrent `cargo build`/`cargo test` cannot swap the binary mid-run
# (named quloud-bench: a `pkill -f "quloud node"` elsewhere on the machine must not hit it).
mkdir -p "$TMP/bin"
cp "$BIN" "$TMP/bin/quloud-bench"
BIN_INFO="$BIN (source tree $(cd "$ROOT" && git describe --always --dirty 2>/dev/null || echo unknown)), built $(date -u -r "$BIN" '+%Y-%m-%d %H:%M UTC'), sha256 $(sha256sum "$BIN" | cut -c1-12)"
BIN=$TMP/bin/quloud-bench

LOAD_START=$(loadavg)
top -b -n 1 | head -15 >"$TMP/top-start.txt"
log "load average at start: $LOAD_START; size $MIB MiB; $FILES small files; temp $TMP; sources $SHM"

log "generating the source file ($MIB MiB from /dev/urandom) and $FILES small files in $DIRS dirs"
dd if=/dev/urandom of="$SHM/big.bin" bs=1M count="$MIB" status=none
python3 - "$SHM/small" "$FILES" "$DIRS" <<'EOF'
import os, random, sys
root, files, dirs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rnd = random.Random(42)
for i in range(files):
    d = os.path.join(root, f"d{i % dirs:03d}")
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, f"f{i:05d}.bin"), "wb") as f:
        f.write(os.urandom(rnd.randint(1024, 8192)))
EOF
SMALL_KIB=$(du -sk --apparent-size "$SHM/small" | cut -f1)

declare -A R=() # results: R[metric.system] = seconds (or MiB for rss)

# --- (a) plain local directory --------------------------------------------------------------
PLAIN=$TMP/plain
mkdir -p "$PLAIN"
log "plain: write"
drop_caches
R[write.plain]=$(timed_write "$PLAIN/big.bin")
log "plain: read"
drop_caches
R[read.plain]=$(timed_read "$PLAIN/big.bin")
log "plain: rsync"
drop_caches
R[rsync.plain]=$(timed_rsync "$PLAIN/small")
rm -rf "$PLAIN"

# --- (b) gocryptfs --------------------------------------------------------------------------
GC_CIPHER=$TMP/gc.cipher
GC_MNT=$TMP/gc.mnt
mkdir -p "$GC_CIPHER" "$GC_MNT"
gocryptfs -q -init -extpass 'echo pw' "$GC_CIPHER" >"$TMP/gocryptfs-init.log" 2>&1
GC_PID=""
gc_mount() {
    gocryptfs -fg -q -extpass 'echo pw' "$GC_CIPHER" "$GC_MNT" >>"$TMP/gocryptfs.log" 2>&1 &
    GC_PID=$!
    PIDS+=("$GC_PID")
    MOUNTS+=("$GC_MNT")
    WATCH[gocryptfs]=$GC_PID
    for _ in $(seq 1 100); do
        mountpoint -q "$GC_MNT" && return 0
        sleep 0.1
    done
    die "gocryptfs did not mount"
}
gc_umount() {
    fusermount3 -u "$GC_MNT"
    wait "$GC_PID" 2>/dev/null || true
    unset 'WATCH[gocryptfs]'
}
gc_mount
log "gocryptfs: write"
drop_caches
cpu_begin
R[write.gocryptfs]=$(timed_write "$GC_MNT/big.bin")
cpu_end "gocryptfs write"
log "gocryptfs: read"
drop_caches
cpu_begin
R[read.gocryptfs]=$(timed_read "$GC_MNT/big.bin")
cpu_end "gocryptfs read"
log "gocryptfs: remount, cold read"
gc_umount
gc_mount
drop_caches
cpu_begin
R[cold.gocryptfs]=$(timed_read "$GC_MNT/big.bin")
cpu_end "gocryptfs cold read"
log "gocryptfs: rsync"
drop_caches
cpu_begin
R[rsync.gocryptfs]=$(timed_rsync "$GC_MNT/small")
cpu_end "gocryptfs rsync"
gc_umount

# --- (c) quloud: nats-server + nodes + mount ------------------------------------------------
PORT=$(free_port)
URL="nats://127.0.0.1:$PORT"
mkdir -p "$TMP/js"
MON_PORT=$(free_port)
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
PIDS+=($!)
WATCH[nats]=$!
wait_for_line "$TMP/nats.log" "Server is ready" 20
NATS_MON=http://127.0.0.1:$MON_PORT

for i in $(seq 1 "$NODES"); do
    mkdir -p "$TMP/node$i"
    "$BIN" node --nats "$URL" --data "$TMP/node$i" --capacity "$CAPACITY" >"$TMP/node$i.log" 2>&1 &
    PIDS+=($!)
    WATCH[node$i]=$!
done
for i in $(seq 1 "$NODES"); do
    wait_for_line "$TMP/node$i.log" "storage node serving" 60
done
log "$NODES storage nodes serving"

QHOME=$TMP/qhome
QMNT=$TMP/q.mnt
mkdir -p "$QHOME" "$QMNT"
"$BIN" --home "$QHOME" init >"$TMP/init.txt.secret" 2>&1 </dev/null || die "quloud init failed: $(cat "$TMP/init.txt.secret")"
rm -f "$TMP/init.txt.secret"

q_mount() {
    echo "--- mount at $(date +%T)" >>"$TMP/mount.log"
    local before
    before=$(grep -c "vault mounted at" "$TMP/mount.log" || true)
    RUST_LOG=${RUST_LOG:-info} "$BIN" --home "$QHOME" mount "$QMNT" --nats "$URL" --replicas "$REPLICAS" \
        --cache-size "${CACHE_MIB}MiB" --disk-cache-size "$DISK_CACHE" >>"$TMP/mount.log" 2>&1 &
    QPID=$!
    PIDS+=("$QPID")
    MOUNTS+=("$QMNT")
    WATCH[mount]=$QPID
    local deadline=$((SECONDS + 60))
    until (($(grep -c "vault mounted at" "$TMP/mount.log" || true) > before)) && mountpoint -q "$QMNT"; do
        kill -0 "$QPID" 2>/dev/null || die "quloud mount exited early"
        ((SECONDS < deadline)) || die "quloud mount not ready after 60 s"
        sleep 0.2
    done
}
q_umount() {
    local before
    before=$(grep -c "vault unmounted" "$TMP/mount.log" || true)
    fusermount3 -u "$QMNT" || die "fusermount3 -u $QMNT failed"
    local deadline=$((SECONDS + 120))
    while kill -0 "$QPID" 2>/dev/null; do
        ((SECONDS < deadline)) || die "quloud mount still running 120 s after fusermount3 -u"
        sleep 0.2
    done
    local rc=0
    wait "$QPID" || rc=$?
    ((rc == 0)) || die "quloud mount exited with $rc after unmount"
    (($(grep -c "vault unmounted" "$TMP/mount.log" || true) > before)) || die "no 'vault unmounted' in the mount log"
    unset 'WATCH[mount]'
}
q_status() { timeout 10 "$BIN" --home "$QHOME" status --json 2>>"$TMP/status-errors.log"; }
q_durable() { # true when pending == 0 && staged_files == 0
    local s
    s=$(q_status) || return 1
    jq -e '.pending == 0 and .staged_files == 0 and .chunks > 0 and .durable == .chunks' >/dev/null 2>&1 <<<"$s"
}
# wait_durable T0 -> prints seconds from T0 until durable
wait_durable() {
    local deadline=$((SECONDS + TIMEOUT))
    until q_durable; do
        if ((SECONDS >= deadline)); then
            q_status >&2 || true
            die "quloud not quorum-durable after $TIMEOUT s"
        fi
        sleep 0.2
    done
    elapsed "$1" "$(now)"
}
# RSS sampler: peak VmRSS (KiB) of the mount every 0.2 s, into a file, until killed.
start_rss_sampler() {
    local pid=$1 out=$2
    (
        peak=0
        while kill -0 "$pid" 2>/dev/null; do
            kb=$(awk '/^VmRSS:/ { print $2 }' "/proc/$pid/status" 2>/dev/null || echo 0)
            kb=${kb:-0}
            if ((kb > peak)); then
                peak=$kb
                echo "$peak" >"$out"
            fi
            sleep 0.2
        done
    ) &
    SAMPLER_PIDS+=($!)
}
# top sampler: a `top -b -n 1` snapshot every 2 s, into a file, until killed.
start_top_sampler() {
    local out=$1
    (
        while true; do
            {
                echo "--- $(date +%T) load $(loadavg)"
                top -b -n 1 -w 200 | sed -n '7,16p'
            } >>"$out"
            sleep 2
        done
    ) &
    SAMPLER_PIDS+=($!)
}
stop_samplers() {
    for pid in "${SAMPLER_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
        wait "$pid" 2>/dev/null || true
    done
    SAMPLER_PIDS=()
}

q_mount
log "quloud mounted (pid $QPID); status: $(q_status | tr -d '\n')"

log "quloud: write + wait until quorum-durable"
drop_caches
echo 0 >"$TMP/rss-write.txt"
start_rss_sampler "$QPID" "$TMP/rss-write.txt"
start_top_sampler "$TMP/top-quloud-write.txt"
cpu_begin
T0=$(now)
R[write.quloud]=$(timed_write "$QMNT/big.bin")
RSS_WRITE_KIB=$(cat "$TMP/rss-write.txt")
cpu_end "quloud write (until dd+fsync returns)"
cpu_begin
R[durable.quloud]=$(wait_durable "$T0")
cpu_end "quloud upload tail (after fsync until quorum-durable)"
stop_samplers
RSS_DURABLE_KIB=$(cat "$TMP/rss-write.txt")
log "quloud: status after write: $(q_status | tr -d '\n')"

log "quloud: read (warm LRU)"
drop_caches
echo 0 >"$TMP/rss-read.txt"
start_rss_sampler "$QPID" "$TMP/rss-read.txt"
start_top_sampler "$TMP/top-quloud-read.txt"
cpu_begin
R[read.quloud]=$(timed_read "$QMNT/big.bin")
cpu_end "quloud warm read"
stop_samplers
RSS_READ_KIB=$(cat "$TMP/rss-read.txt")

log "quloud: unmount, empty the disk cache, remount, cold read"
q_umount
rm -rf "$QHOME/chunks"
q_mount
drop_caches
echo 0 >"$TMP/rss-cold.txt"
start_rss_sampler "$QPID" "$TMP/rss-cold.txt"
start_top_sampler "$TMP/top-quloud-cold.txt"
cpu_begin
R[cold.quloud]=$(timed_read "$QMNT/big.bin")
cpu_end "quloud cold read"
stop_samplers
RSS_COLD_KIB=$(cat "$TMP/rss-cold.txt")

log "quloud: rsync"
drop_caches
start_top_sampler "$TMP/top-quloud-rsync.txt"
cpu_begin
T0=$(now)
R[rsync.quloud]=$(timed_rsync "$QMNT/small")
cpu_end "quloud rsync"
cpu_begin
R[rsyncdurable.quloud]=$(wait_durable "$T0")
cpu_end "quloud rsync upload tail (until quorum-durable)"
stop_samplers
log "quloud: status at the end: $(q_status | tr -d '\n')"
# Content check of the small files (not timed).
diff -r -q "$SHM/small" "$QMNT/small" >"$TMP/diff-small.txt" 2>&1 || die "rsync copy differs in the quloud mount (see diff-small.txt)"
q_umount
JS_SIZE=$(du -sh "$TMP/js" | cut -f1)
NODE_SIZES=$(for i in $(seq 1 "$NODES"); do du -sh "$TMP/node$i" | cut -f1; done | paste -sd' ')
LOAD_END=$(loadavg)

# --- report ---------------------------------------------------------------------------------
kib_mib() { awk -v k="$1" 'BEGIN { printf "%.0f", k / 1024 }'; }
BUDGET=$((CACHE_MIB + 200))
RSS_MIB=$(kib_mib "$RSS_WRITE_KIB")
SMALL_MIB=$(awk -v k="$SMALL_KIB" 'BEGIN { printf "%.1f", k / 1024 }')

row() { # label metric unit(MiB/s|files/s) amount
    local label=$1 m=$2 amount=$4 p g q
    p=${R[$m.plain]:-}
    g=${R[$m.gocryptfs]:-}
    q=${R[$m.quloud]:-}
    fmt() { [[ -n $1 ]] && printf '%ss = %s %s' "$1" "$(mib_s "$amount" "$1")" "$3" || printf -- '-'; }
    printf '| %-34s | %-26s | %-26s | %-26s | %-13s | %-11s |\n' "$label" \
        "$(fmt "$p" x "$3")" "$(fmt "$g" x "$3")" "$(fmt "$q" x "$3")" \
        "$([[ -n $g && -n $q ]] && ratio "$g" "$q" || echo -)" \
        "$([[ -n $p && -n $q ]] && ratio "$p" "$q" || echo -)"
}

{
    echo
    echo "Mount benchmark: $MIB MiB file, $FILES small files ($SMALL_MIB MiB) in $DIRS dirs; quloud N=$REPLICAS on $NODES local nodes, --cache-size ${CACHE_MIB}MiB --disk-cache-size $DISK_CACHE"
    echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, load average at start $LOAD_START, at end $LOAD_END"
    echo "quloud: $BIN_INFO"
    echo "ratios are throughput ratios (= time of the other system / time of quloud; > 1 means quloud is faster)"
    echo
    printf '| %-34s | %-26s | %-26s | %-26s | %-13s | %-11s |\n' figure plain gocryptfs quloud "q/gocryptfs" "q/plain"
    printf '|%s|%s|%s|%s|%s|%s|\n' "$(printf -- '-%.0s' {1..36})" "$(printf -- '-%.0s' {1..28})" "$(printf -- '-%.0s' {1..28})" "$(printf -- '-%.0s' {1..28})" "$(printf -- '-%.0s' {1..15})" "$(printf -- '-%.0s' {1..13})"
    row "seq write $MIB MiB (dd conv=fsync)" write MiB/s "$MIB"
    row "read after drop_caches (warm LRU)" read MiB/s "$MIB"
    row "cold read (remount + drop_caches)" cold MiB/s "$MIB"
    R[durable.gocryptfs]=${R[write.gocryptfs]}
    R[durable.plain]=${R[write.plain]}
    row "write until durable (q: quorum)" durable MiB/s "$MIB"
    row "rsync -a $FILES files" rsync files/s "$FILES"
    unset 'R[durable.gocryptfs]' 'R[durable.plain]'
    echo
    echo "quloud rsync until quorum-durable: ${R[rsyncdurable.quloud]}s"
    echo "quloud mount peak VmRSS: write ${RSS_MIB} MiB (until dd returned), write+upload $(kib_mib "$RSS_DURABLE_KIB") MiB, warm read $(kib_mib "$RSS_READ_KIB") MiB, cold read $(kib_mib "$RSS_COLD_KIB") MiB; budget cache ${CACHE_MIB} + 200 = $BUDGET MiB"
    echo "after the run: jetstream dir $JS_SIZE, node dirs $NODE_SIZES"
    echo
    echo "CPU seconds per process and phase:"
    sed 's/^/  /' "$TMP/cpu.txt"
    echo
    target() { # name ok(0/1) text
        printf '%-44s %s  (%s)\n' "$1" "$([[ $2 == 1 ]] && echo MET || echo MISSED)" "$3"
    }
    w=$(ratio "${R[write.gocryptfs]}" "${R[write.quloud]}")
    target "seq write >= 1.0x gocryptfs" "$(awk -v r="$w" 'BEGIN { print (r >= 1.0) }')" "$w x"
    r=$(ratio "${R[read.gocryptfs]}" "${R[read.quloud]}")
    target "warm read >= 1.0x gocryptfs" "$(awk -v r="$r" 'BEGIN { print (r >= 1.0) }')" "$r x"
    c=$(ratio "${R[read.gocryptfs]}" "${R[cold.quloud]}")
    target "cold read >= 0.4x gocryptfs read" "$(awk -v r="$c" 'BEGIN { print (r >= 0.4) }')" "$c x"
    d=$(ratio "${R[durable.quloud]}" "${R[write.gocryptfs]}")
    target "quorum-durable <= 3x gocryptfs write time" "$(awk -v r="$d" 'BEGIN { print (r <= 3.0) }')" "${R[durable.quloud]}s = $d x ${R[write.gocryptfs]}s"
    s=$(ratio "${R[rsync.gocryptfs]}" "${R[rsync.quloud]}")
    target "rsync 10k files >= 0.8x gocryptfs" "$(awk -v r="$s" 'BEGIN { print (r >= 0.8) }')" "$s x"
    target "peak RSS <= cache + 200 MiB" "$((RSS_MIB <= BUDGET ? 1 : 0))" "$RSS_MIB MiB during the write, $(kib_mib "$RSS_DURABLE_KIB") MiB until durable, budget $BUDGET MiB"
} | tee "$TMP/result.txt"
