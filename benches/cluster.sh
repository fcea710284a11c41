#!/usr/bin/env bash
# Store/get throughput on a 3-server NATS cluster (JetStream R3) against a single nats-server,
# on the same machine and in one run.
#
# Each configuration runs 3 storage nodes and one `quloud check --size SIZE --replicas 3 --json`:
#   single:  one nats-server with JetStream, nodes and check with --js-replicas 1
#   cluster: three nats-servers on loopback routed into one cluster (each with JetStream, its own
#            store dir, max_memory_store 1GB and a monitoring port), nodes and check given all
#            three URLs (--nats A,B,C) and --js-replicas 3. After the check the script asks the
#            monitoring endpoint (/jsz) how many replicas each QULOUD_* stream has, and fails if
#            QULOUD_SLOTS_V1 is not R3.
# The pair runs RUNS times in alternating order (single, cluster, cluster, single, ...) to cancel
# drift; every configuration starts from fresh directories and all of its processes are stopped
# before the next one starts. Node 1 starts alone (it creates the streams), the others once the
# store consumer has a leader, and the check waits SETTLE seconds more (see wait_settled).
#
# Usage: SIZE=256MiB RUNS=2 benches/cluster.sh
# Env:   BIN (default target/release/quloud; never builds), SIZE (256MiB), RUNS (2), NODES (3),
#        CAPACITY (20GiB), SETTLE (6: seconds to wait, in both configurations, after all nodes
#        serve and the store consumer has a leader, before the check),
#        KEEP=1 keeps the temp dir (logs, configs, jsz dumps; also kept when something fails),
#        QULOUD_LOG (e.g. quloud=debug: nodes and check; default: nodes at
#        info,quloud::adapters::nats::node=debug, check at info).
# Prints per run the store/get MiB/s, CPU seconds per process class (and what the rest of the
# machine used meanwhile: on a shared box that is the contamination), the longest pause between
# two stored replicas (a ~10 s pause is a store waiting out the owner's retry_after), then a
# summary with the medians and the cluster/single ratios. Target (docs/PERFORMANCE.md): cluster
# store >= 0.5x single store. Exits non-zero if a check or a node fails, or if the store stream
# is not R3 on all three servers; the trap stops every process it started.
set -euo pipefail

SIZE=${SIZE:-256MiB}
RUNS=${RUNS:-2}
NODES=${NODES:-3}
CAPACITY=${CAPACITY:-20GiB}
SETTLE=${SETTLE:-6}
# Nodes log each stored replica at debug (one line per replica, negligible next to the store):
# the script reads those lines to find pauses in the store phase.
NODE_LOG=${QULOUD_LOG:-info,quloud::adapters::nats::node=debug}
REPLICAS=3

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
BIN=${BIN:-$ROOT/target/release/quloud}
[[ -x $BIN ]] || { echo "no executable at BIN=$BIN (build with cargo build --release)" >&2; exit 2; }
for tool in nats-server jq curl python3 /usr/bin/time; do
    command -v "$tool" >/dev/null || { echo "missing tool: $tool" >&2; exit 2; }
done
TMP=$(mktemp -d "${TMPDIR:-/tmp}/quloud-cluster.XXXXXX")
PIDS=()       # every process started, for the trap

cleanup() {
    local rc=$?
    stop_all
    if [[ ${KEEP:-0} == 1 || $rc != 0 ]]; then
        echo "kept $TMP" >&2
    else
        rm -rf "$TMP"
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

log() { echo "== $*" >&2; }

now() { date +%s.%N; }

stop_all() {
    local pid
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    PIDS=()
}

# CPU seconds (user + sys) a process has used so far.
cpu_secs() {
    local hz
    hz=$(getconf CLK_TCK)
    awk -v hz="$hz" '{ sub(/^.*\) /, ""); printf "%.2f\n", ($12 + $13) / hz }' "/proc/$1/stat" 2>/dev/null || echo 0
}

# Sum of cpu_secs over several pids.
cpu_sum() {
    local pid total=0
    for pid in "$@"; do total=$(awk -v a="$total" -v b="$(cpu_secs "$pid")" 'BEGIN { printf "%.2f", a + b }'); done
    echo "$total"
}

# CPU seconds the whole machine has been busy (all processes, all cores).
machine_busy() {
    awk -v hz="$(getconf CLK_TCK)" '/^cpu / { printf "%.2f\n", ($2 + $3 + $4 + $7 + $8 + $9) / hz }' /proc/stat
}

sub() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a - b }'; }

# N distinct free loopback ports (all bound at once, so they differ).
free_ports() {
    python3 - "$1" <<'EOF'
import socket, sys
socks = []
for _ in range(int(sys.argv[1])):
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    socks.append(s)
print(" ".join(str(s.getsockname()[1]) for s in socks))
EOF
}

wait_for_line() { # file pattern timeout_s [pid: fail at once if it exits]
    local deadline=$((SECONDS + $3))
    until grep -q "$2" "$1" 2>/dev/null; do
        if [[ -n ${4:-} ]] && ! kill -0 "$4" 2>/dev/null; then
            echo "process $4 exited before '$2' appeared in $1:" >&2
            tail -20 "$1" >&2 || true
            return 1
        fi
        if ((SECONDS >= deadline)); then
            echo "timed out waiting for '$2' in $1:" >&2
            tail -20 "$1" >&2 || true
            return 1
        fi
        sleep 0.2
    done
}

wait_healthy() { # http_port timeout_s
    local deadline=$((SECONDS + $2))
    until [[ $(curl -s -o /dev/null -w '%{http_code}' "http://127.0.0.1:$1/healthz" || true) == 200 ]]; do
        if ((SECONDS >= deadline)); then
            echo "nats-server with monitoring port $1 not healthy after $2 s:" >&2
            curl -s "http://127.0.0.1:$1/healthz" >&2 || true
            return 1
        fi
        sleep 0.2
    done
}

median() { # values...
    printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END {
        if (NR == 0) { print "n/a"; exit }
        if (NR % 2) printf "%.1f", v[(NR + 1) / 2]; else printf "%.1f", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'
}

# --- the two configurations -----------------------------------------------------------------
# Each sets NATS_PIDS, HTTP_PORTS, URLS and JS_REPLICAS in the global scope.

start_single() { # dir
    local dir=$1 ports port http
    read -r port http <<<"$(free_ports 2)"
    mkdir -p "$dir/s0/js"
    cat >"$dir/s0/nats.conf" <<EOF
server_name: s0
host: 127.0.0.1
port: $port
http: 127.0.0.1:$http
jetstream {
  store_dir: "$dir/s0/js"
}
EOF
    nats-server -c "$dir/s0/nats.conf" >"$dir/s0/nats.log" 2>&1 &
    NATS_PIDS=($!)
    PIDS+=($!)
    HTTP_PORTS=("$http")
    URLS="nats://127.0.0.1:$port"
    JS_REPLICAS=1
    wait_healthy "$http" 30
}

start_cluster() { # dir
    local dir=$1 i j ports routes
    read -r -a ports <<<"$(free_ports 9)" # client, route, http per server
    NATS_PIDS=()
    HTTP_PORTS=()
    local urls=()
    for i in 0 1 2; do
        routes=()
        for j in 0 1 2; do
            ((j == i)) || routes+=("nats-route://127.0.0.1:${ports[3 * j + 1]}")
        done
        mkdir -p "$dir/s$i/js"
        cat >"$dir/s$i/nats.conf" <<EOF
server_name: s$i
host: 127.0.0.1
port: ${ports[3 * i]}
http: 127.0.0.1:${ports[3 * i + 2]}
jetstream {
  store_dir: "$dir/s$i/js"
  max_memory_store: 1GB
}
cluster {
  name: quloud-bench
  host: 127.0.0.1
  port: ${ports[3 * i + 1]}
  routes: [$(IFS=,; echo "${routes[*]}")]
}
EOF
        nats-server -c "$dir/s$i/nats.conf" >"$dir/s$i/nats.log" 2>&1 &
        NATS_PIDS+=($!)
        PIDS+=($!)
        HTTP_PORTS+=("${ports[3 * i + 2]}")
        urls+=("nats://127.0.0.1:${ports[3 * i]}")
    done
    URLS=$(IFS=,; echo "${urls[*]}")
    JS_REPLICAS=3
    for i in 0 1 2; do wait_healthy "${HTTP_PORTS[$i]}" 60; done
    # /healthz turns 200 before the routes have settled: each server dials its peers, the dials
    # that raced a peer's start are retried after 1 s and the duplicate routes this makes are
    # then closed. A JetStream API request crossing a route as it closes is lost, and a node
    # whose start-up `stream info` is lost times out after 10 s and exits. So wait until every
    # server has exactly 2 routes, 2 s past the first retry, before starting anything.
    sleep 2
    local deadline=$((SECONDS + 30)) n
    for i in 0 1 2; do
        until n=$(curl -s "http://127.0.0.1:${HTTP_PORTS[$i]}/routez" | jq -r '.num_routes') && [[ $n == 2 ]]; do
            ((SECONDS < deadline)) || { echo "s$i has ${n:-?} routes, expected 2" >&2; return 1; }
            sleep 0.2
        done
    done
}

# Streams and consumers as the monitoring endpoints see them (/jsz on every server): per stream
# the configured replicas, storage, the servers that host it, its leader and, from the leader's
# view, whether each follower is current; per consumer its leader. Fails in the cluster unless
# QULOUD_SLOTS_V1 is configured R3 and hosted on all three servers.
report_streams() { # dir config
    local dir=$1 cfg=$2 i
    for i in "${!HTTP_PORTS[@]}"; do
        curl -s "http://127.0.0.1:${HTTP_PORTS[$i]}/jsz?accounts=true&streams=true&consumers=true&config=true" |
            jq --arg s "s$i" '{server: $s, jsz: .}' >"$dir/jsz.s$i.json" || echo '{}' >"$dir/jsz.s$i.json"
    done
    jq -s -r '
        [ .[] | .server as $s | .jsz.account_details[]?.stream_detail[]? | . + {host: $s} ] as $all
        | ($all | group_by(.name)[] |
            (map(select(.cluster.leader == .host)) | first // null) as $l
            | "    stream \(.[0].name): replicas=\(.[0].config.num_replicas) storage=\(.[0].config.storage) " +
              "hosted on \(map(.host) | join(",")), leader \(.[0].cluster.leader // "-")" +
              (if $l and ($l.cluster.replicas | length) > 0 then ", followers " + ([$l.cluster.replicas[]? | "\(.name)(\(if .current then "current" else "NOT current" end))"] | join(",")) else "" end) +
              ", msgs=\(.[0].state.messages)"),
          ($all | map(.consumer_detail[]? | . + {}) | group_by(.stream_name + "/" + .name)[] | .[0] |
            "    consumer \(.stream_name)/\(.name): replicas=\(.config.num_replicas // 0) (0 = as the stream), leader \(.cluster.leader // "-")")
    ' "$dir"/jsz.s*.json >"$dir/streams.txt" || true
    grep -v "consumer QULOUD_ACKS_V1/owner-\|consumer QULOUD_ROOTS_V1/node-roots" "$dir/streams.txt" >&2 || true
    STORE_STREAM_R=$(jq -s -r '[.[] | .server as $s | .jsz.account_details[]?.stream_detail[]?
        | select(.name == "QULOUD_SLOTS_V1") | "\(.config.num_replicas)@\($s)"] | sort | join(" ")' "$dir"/jsz.s*.json)
    if [[ $cfg == cluster && $STORE_STREAM_R != "3@s0 3@s1 3@s2" ]]; then
        echo "QULOUD_SLOTS_V1 is not R3 on all three servers (replicas@server: '${STORE_STREAM_R}')" >&2
        return 1
    fi
}

# Waits until the nodes' shared store consumer has a leader (in the cluster it is elected after
# the nodes printed "storage node serving"), then SETTLE seconds more. A node's first fetch sent
# before that election gets no answer, and async-nats only gives up on it after its expiry + 5 s
# (5.5 s here): without the settle time the check's first seconds measure that start-up stall.
wait_settled() { # seconds
    local deadline=$((SECONDS + 30)) i leader=""
    while [[ -z $leader ]]; do
        for i in "${!HTTP_PORTS[@]}"; do
            leader=$(curl -s "http://127.0.0.1:${HTTP_PORTS[$i]}/jsz?accounts=true&streams=true&consumers=true" |
                jq -r '[.account_details[]?.stream_detail[]? | select(.name == "QULOUD_SLOTS_V1")
                    | .consumer_detail[]? | select(.name == "quloud-slots-v1") | if .cluster then (.cluster.leader // empty) else "standalone" end] | first // empty' || true)
            [[ -n $leader ]] && break
        done
        if [[ -z $leader ]]; then
            ((SECONDS < deadline)) || { echo "store consumer has no leader after 30 s" >&2; return 1; }
            sleep 0.2
        fi
    done
    sleep "$1"
}

# The longest pause, in seconds, between two consecutive replicas stored (by any node) during
# the store phase, from the nodes' "stored and acked" debug lines. ~10 s means a store waited
# out the owner's retry_after for a slot request no node that lacked the chunk was offered.
store_pause() { # dir
    cat "$1"/node*.log | sed 's/\x1b\[[0-9;]*m//g' | grep 'stored and acked' | awk '{ print $1 }' |
        sed 's/.*T//; s/Z$//' | sort | awk -F: '
            { t = $1 * 3600 + $2 * 60 + $3; if (NR > 1 && t - p > g) { g = t - p; at = prev } p = t; prev = $0 }
            END { if (NR < 2) print "n/a"; else printf "%.1f s (after %s)\n", g, substr(at, 1, 12) }'
}

# Which server each client connection sits on (cluster only, informative).
report_connections() {
    local i
    for i in "${!HTTP_PORTS[@]}"; do
        printf '    s%d: %s client connections\n' "$i" \
            "$(curl -s "http://127.0.0.1:${HTTP_PORTS[$i]}/connz" | jq -r '.num_connections')" >&2
    done
}

# Retries, redeliveries, warnings and errors in the node and check logs.
report_log_oddities() { # dir
    local f n
    for f in "$1"/node*.log "$1"/check.log; do
        n=$(grep -ciE 'warn|error|retr(y|ies|ying)|redeliver' "$f" || true)
        if ((n > 0)); then
            printf '    %s: %d warn/error/retry lines, first:\n' "$(basename "$f")" "$n" >&2
            grep -iE 'warn|error|retr(y|ies|ying)|redeliver' "$f" | head -3 | sed 's/^/      /' >&2
        fi
    done
}

declare -A STORE GET NATS_CPU NODE_CPU CHECK_CPU OTHER_CPU WALL PAUSE

run_config() { # config run
    local cfg=$1 run=$2 dir="$TMP/$1-$2" i node_pids=() t0 t1 json
    mkdir -p "$dir"
    log "run $run/$RUNS: $cfg"
    "start_$cfg" "$dir"
    # Node 1 first, alone: it creates the streams and the shared store consumer. Started together
    # against a fresh cluster, a node's start-up `stream info` request can go unanswered while
    # another node's stream create is being placed, and that node exits after its 10 s request
    # timeout ("reading stream info: timed out"). The others start once the consumer has a leader.
    for i in $(seq 1 "$NODES"); do
        mkdir -p "$dir/node$i"
        QULOUD_LOG=$NODE_LOG "$BIN" node --nats "$URLS" --data "$dir/node$i" --capacity "$CAPACITY" \
            --js-replicas "$JS_REPLICAS" >"$dir/node$i.log" 2>&1 &
        node_pids+=($!)
        PIDS+=($!)
        if ((i == 1)); then
            wait_for_line "$dir/node1.log" "storage node serving" 60 "${node_pids[0]}"
            wait_settled 0
        fi
    done
    for i in $(seq 1 "$NODES"); do
        wait_for_line "$dir/node$i.log" "storage node serving" 60 "${node_pids[$((i - 1))]}"
    done
    wait_settled "$SETTLE"
    log "$cfg: $NODES nodes serving on $URLS (js-replicas $JS_REPLICAS), load avg $(cut -d' ' -f1-3 /proc/loadavg)"

    local nats0 node0 busy0 each0=() each=() p
    for p in "${NATS_PIDS[@]}"; do each0+=("$(cpu_secs "$p")"); done
    nats0=$(cpu_sum "${NATS_PIDS[@]}")
    busy0=$(machine_busy)
    node0=$(cpu_sum "${node_pids[@]}")
    t0=$(now)
    if ! json=$(/usr/bin/time -f '%U %S %M' -o "$dir/check.time" \
        "$BIN" --home "$dir/h1" check --nats "$URLS" --js-replicas "$JS_REPLICAS" \
        --size "$SIZE" --replicas "$REPLICAS" --json 2>"$dir/check.log"); then
        echo "check failed in $cfg run $run; its log:" >&2
        tail -30 "$dir/check.log" >&2
        report_log_oddities "$dir"
        exit 1
    fi
    t1=$(now)
    local key="$cfg.$run" cu cs cmax
    read -r cu cs cmax < <(tail -1 "$dir/check.time")
    echo "$json" >"$dir/check.json"
    echo "$json"
    STORE[$key]=$(jq -r .store_mib_s <<<"$json")
    GET[$key]=$(jq -r .get_mib_s <<<"$json")
    WALL[$key]=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
    NATS_CPU[$key]=$(sub "$(cpu_sum "${NATS_PIDS[@]}")" "$nats0")
    for i in "${!NATS_PIDS[@]}"; do each+=("s$i $(sub "$(cpu_secs "${NATS_PIDS[$i]}")" "${each0[$i]}")"); done
    NODE_CPU[$key]=$(sub "$(cpu_sum "${node_pids[@]}")" "$node0")
    CHECK_CPU[$key]=$(awk -v u="$cu" -v s="$cs" 'BEGIN { printf "%.2f", u + s }')
    PAUSE[$key]=$(store_pause "$dir")
    # Everything else the machine ran meanwhile (other builds/tests on a shared box), kernel threads
    # included: large values mean the figure is contaminated.
    OTHER_CPU[$key]=$(awk -v m="$(sub "$(machine_busy)" "$busy0")" -v a="${NATS_CPU[$key]}" -v b="${NODE_CPU[$key]}" \
        -v c="${CHECK_CPU[$key]}" 'BEGIN { x = m - a - b - c; printf "%.1f", x < 0 ? 0 : x }')
    {
        printf '  %s run %d: store %s MiB/s, get %s MiB/s, wall %ss (incl. data generation, audit, delete)\n' \
            "$cfg" "$run" "${STORE[$key]}" "${GET[$key]}" "${WALL[$key]}"
        printf '    cpu-s (user+sys): nats-server(s) %s (%s), nodes %s, check %s (max rss %d MiB); rest of machine (other processes, kernel threads) %s; %s available on %d cores\n' \
            "${NATS_CPU[$key]}" "$(IFS=,; echo "${each[*]}")" "${NODE_CPU[$key]}" "${CHECK_CPU[$key]}" "$((cmax / 1024))" "${OTHER_CPU[$key]}" \
            "$(awk -v w="${WALL[$key]}" -v c="$(nproc)" 'BEGIN { printf "%.1f", w * c }')" "$(nproc)"
        printf '    longest pause between two stored replicas: %s\n' "${PAUSE[$key]}"
        echo "    streams (from /jsz on each server):"
    } >&2
    report_streams "$dir" "$cfg"
    if [[ $cfg == cluster ]]; then
        echo "    connections:" >&2
        report_connections
    fi
    report_log_oddities "$dir"

    stop_all
    [[ ${KEEP:-0} == 1 ]] || rm -rf "$dir/node"* "$dir"/s*/js "$dir/h1"
}

log "BIN=$BIN SIZE=$SIZE RUNS=$RUNS NODES=$NODES, $(nproc) cores, temp dir $TMP"
for run in $(seq 1 "$RUNS"); do
    if ((run % 2)); then order=(single cluster); else order=(cluster single); fi
    for cfg in "${order[@]}"; do run_config "$cfg" "$run"; done
done

# --- summary --------------------------------------------------------------------------------
summary_row() { # config
    local cfg=$1 run s=() g=() n=() d=() c=() o=() w=() z=()
    for run in $(seq 1 "$RUNS"); do
        s+=("${STORE[$cfg.$run]}") g+=("${GET[$cfg.$run]}") n+=("${NATS_CPU[$cfg.$run]}")
        d+=("${NODE_CPU[$cfg.$run]}") c+=("${CHECK_CPU[$cfg.$run]}") o+=("${OTHER_CPU[$cfg.$run]}") w+=("${WALL[$cfg.$run]}")
        z+=("${PAUSE[$cfg.$run]%% *}")
    done
    printf '| %-7s | %s | %s | %s | %s | %s | %s | %s | %s | %s | %s |\n' "$cfg" \
        "$(median "${s[@]}")" "$(median "${g[@]}")" "$(IFS=/; echo "${s[*]}")" "$(IFS=/; echo "${g[*]}")" \
        "$(median "${n[@]}")" "$(median "${d[@]}")" "$(median "${c[@]}")" "$(median "${o[@]}")" "$(median "${w[@]}")" "$(IFS=/; echo "${z[*]}")"
    MED_STORE[$cfg]=$(median "${s[@]}")
    MED_GET[$cfg]=$(median "${g[@]}")
}
declare -A MED_STORE MED_GET
echo
echo "SIZE=$SIZE RUNS=$RUNS NODES=$NODES replicas=$REPLICAS, $(nproc) cores"
echo "| config  | store MiB/s (median) | get MiB/s (median) | store per run | get per run | nats cpu-s | nodes cpu-s | check cpu-s | rest-of-machine cpu-s | check wall s | longest store pause s, per run |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
summary_row single
summary_row cluster
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }
RS=$(ratio "${MED_STORE[cluster]}" "${MED_STORE[single]}")
RG=$(ratio "${MED_GET[cluster]}" "${MED_GET[single]}")
MET=$(awk -v r="$RS" 'BEGIN { print (r + 0 >= 0.5) ? "met" : "MISSED" }')
echo "cluster/single: store $RS (target >= 0.5: $MET), get $RG"
