#!/usr/bin/env bash
# CapuKV against etcd on this machine, with one load generator (`capukv bench`,
# `--target etcd` through the etcd-client crate): a 3-node etcd cluster and a
# 3-node CapuKV cluster (release build) on loopback, data on the same disk
# (one temp dir). Put, linearizable get and a 50/50 mix at 1, 16 and 64
# clients with 256-byte values. Both clusters stay up and the load goes to one
# at a time, etcd and CapuKV back to back for each combination (which one
# first alternates), so that both meet the same machine: on a virtual machine
# the CPU another tenant steals changes from minute to minute. Each
# combination runs REPEAT times; the table shows the run of median throughput.
# Prints the machine, the disk's fdatasync latency and one table (throughput,
# p50/p99, ratios CapuKV/etcd, fsyncs per acknowledged write, CPU steal).
# Stops everything it started, also on failure or Ctrl-C.
#
# Usage: bench/compare-etcd.sh [SECONDS_PER_RUN]   (default 10)
#   REPEAT=N             runs per combination (default 3)
#   SYSTEMS="capukv"     load only these of "etcd capukv" (CapuKV alone needs no etcd)
#   OPS="get" CLIENTS="1"   only these operations / concurrencies (default: all of put get mixed, 1 16 64)
#   BIN=path/to/capukv   use this binary instead of building the release one
#   ETCD=path/to/etcd    use this etcd instead of Debian's etcd-server
#   BENCH_DIR=DIR        where the data dirs go (default /var/tmp)
#   OUT=FILE             also write the report there (default reports/bench/compare-etcd-TIME.md)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

SECONDS_PER_RUN=${1:-10}
[[ "$SECONDS_PER_RUN" =~ ^[0-9]+$ ]] && [ "$SECONDS_PER_RUN" -ge 1 ] && [ "$SECONDS_PER_RUN" -le 600 ] ||
    { echo "error: SECONDS_PER_RUN must be a whole number of seconds in 1..600, not $SECONDS_PER_RUN" >&2; exit 64; }
REPEAT=${REPEAT:-3}
[[ "$REPEAT" =~ ^[1-9][0-9]?$ ]] || { echo "error: REPEAT must be 1..99, not $REPEAT" >&2; exit 64; }
# Every word of the list NAME must match PATTERN (WHAT says what may be there).
check_words() {
    local name=$1 pattern=$2 what=$3 word
    shift 3
    for word in "$@"; do
        [[ "$word" =~ ^($pattern)$ ]] || { echo "error: $name lists $what, not $word" >&2; exit 64; }
    done
}
read -r -a SYSTEMS <<<"${SYSTEMS:-etcd capukv}"
check_words SYSTEMS 'etcd|capukv' "etcd and/or capukv" "${SYSTEMS[@]}"
has() { [[ " ${SYSTEMS[*]} " == *" $1 "* ]]; }
read -r -a OPS <<<"${OPS:-put get mixed}"
check_words OPS 'put|get|mixed' "put, get and/or mixed" "${OPS[@]}"
read -r -a CLIENTS <<<"${CLIENTS:-1 16 64}"
check_words CLIENTS '[1-9][0-9]{0,3}' "concurrencies 1..9999" "${CLIENTS[@]}"
VALUE_SIZE=256

if has etcd && [ -z "${ETCD:-}" ]; then
    if ! command -v etcd >/dev/null 2>&1; then
        [ "$(id -u)" -eq 0 ] || { echo "error: etcd is not installed; run as root to install etcd-server, or set ETCD" >&2; exit 2; }
        step "installing etcd-server"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends etcd-server
    fi
    ETCD=$(command -v etcd)
fi
if [ -z "${BIN:-}" ]; then
    ensure_build_env
    step "building capukv (release)"
    cargo build --release -p capukv
    BIN=$CARGO_TARGET_DIR/release/capukv
fi
[ -x "$BIN" ] || { echo "error: no capukv binary at $BIN" >&2; exit 2; }

DATA=$(mktemp -d "${BENCH_DIR:-/var/tmp}/capukv-vs-etcd.XXXXXX")
RESULTS=$DATA/results.jsonl
OUT=${OUT:-reports/bench/compare-etcd-$(date -u +%Y%m%dT%H%M%SZ).md}
PIDS=()
stop_all() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    PIDS=()
}
cleanup() {
    stop_all
    [ -n "${KEEP:-}" ] && { echo "kept $DATA"; return; }
    rm -rf "$DATA"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Polls COMMAND (bounded: 150 tries, 30 s) until it succeeds.
wait_for() {
    for _ in $(seq 1 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "error: the cluster did not come up: $*" >&2
    return 1
}

ETCD_ENDPOINTS=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793
CAPUKV_ENDPOINTS=127.0.0.1:15701,127.0.0.1:15702,127.0.0.1:15703

# One timed run of `capukv bench` against TARGET, appended to the results.
bench_one() {
    local target=$1 op=$2 clients=$3 endpoints=$ETCD_ENDPOINTS
    [ "$target" = capukv ] && endpoints=$CAPUKV_ENDPOINTS
    printf '%-6s %-5s x%-3s ' "$target" "$op" "$clients" >&2
    "$BIN" bench --json --endpoints "$endpoints" --target "$target" --op "$op" --clients "$clients" \
        --duration "${SECONDS_PER_RUN}s" --value-size $VALUE_SIZE | tee -a "$RESULTS" |
        sed -E 's/.*"throughput":([0-9.]+).*"p50_ms":([0-9.]+),"p99_ms":([0-9.]+).*"steal_pct":([0-9.]+).*/\1 ops\/s, p50 \2 ms, p99 \3 ms, steal \4 %/' >&2
}

step "fdatasync latency of the disk under $DATA"
FSYNC=$("$BIN" bench-fsync --dir "$DATA" --count 500)
echo "$FSYNC"

if has etcd; then
step "etcd $("$ETCD" --version | head -n 1 | sed 's/etcd Version: //'): 3 members on 127.0.0.1"
CLUSTER=e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803
for i in 1 2 3; do
    "$ETCD" --name e$i --data-dir "$DATA/etcd$i" \
        --listen-client-urls http://127.0.0.1:2379$i --advertise-client-urls http://127.0.0.1:2379$i \
        --listen-peer-urls http://127.0.0.1:2380$i --initial-advertise-peer-urls http://127.0.0.1:2380$i \
        --initial-cluster $CLUSTER --initial-cluster-token capukv-bench --initial-cluster-state new \
        2>"$DATA/etcd$i.log" &
    PIDS+=($!)
done
wait_for "$BIN" bench --endpoints "$ETCD_ENDPOINTS" --target etcd --op put --clients 1 --duration 100ms
fi

if has capukv; then
step "CapuKV $("$BIN" --version | sed 's/capukv //'): 3 nodes on 127.0.0.1"
PEERS=1=127.0.0.1:15801,2=127.0.0.1:15802,3=127.0.0.1:15803
for i in 1 2 3; do
    "$BIN" server --id $i --dir "$DATA/capukv$i" --api-addr 127.0.0.1:1570$i --raft-addr 127.0.0.1:1580$i \
        --peers $PEERS 2>"$DATA/capukv$i.log" &
    PIDS+=($!)
done
wait_for "$BIN" --endpoints "$CAPUKV_ENDPOINTS" --timeout 1 put warmup x
fi

step "load: ${#OPS[@]} ops x ${#CLIENTS[@]} concurrencies x ${#SYSTEMS[@]} systems x $REPEAT, ${SECONDS_PER_RUN} s each"
for target in "${SYSTEMS[@]}"; do # warm-up, not recorded
    "$BIN" bench --endpoints "$([ $target = etcd ] && echo "$ETCD_ENDPOINTS" || echo "$CAPUKV_ENDPOINTS")" \
        --target $target --op put --clients 16 --duration 2s --value-size $VALUE_SIZE >/dev/null
done
turn=0
for round in $(seq 1 "$REPEAT"); do
    for op in "${OPS[@]}"; do
        for clients in "${CLIENTS[@]}"; do
            # Who goes first alternates.
            order=("${SYSTEMS[@]}")
            if [ $((turn % 2)) -eq 1 ]; then
                order=()
                for ((i = ${#SYSTEMS[@]} - 1; i >= 0; i--)); do order+=("${SYSTEMS[$i]}"); done
            fi
            turn=$((turn + 1))
            for target in "${order[@]}"; do bench_one "$target" "$op" "$clients"; done
        done
    done
done
stop_all

mkdir -p "$(dirname "$OUT")"
{
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), $(free -g | awk '/Mem:/ {print $2}') GiB," \
        "Linux $(uname -r), data on $(df --output=source,fstype "$DATA" | tail -n 1 | tr -s ' ')."
    echo "Disk: $FSYNC"
    echo "Load: capukv bench, ${SECONDS_PER_RUN} s per run, median of $REPEAT runs, ${VALUE_SIZE}-byte values, 1,000 keys;" \
        "both clients talk to the leader; gets are linearizable (CapuKV ReadIndex, etcd's default range)."
    echo
    "$BIN" bench-table "$RESULTS"
} | tee "$OUT"
echo "written to $OUT" >&2
