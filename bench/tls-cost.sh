#!/usr/bin/env bash
# What mutual TLS costs CapuKV: two 3-node clusters (release build) on
# loopback, one plain and one with TLS on both ports (certificates from
# `capukv certs`), loaded by one `capukv bench` in turn, plain and TLS back to
# back for each combination (which one first alternates), so that both meet
# the same machine. Put and linearizable get at 16 and 64 clients, 256-byte
# values; each combination REPEAT times; the table shows medians and the
# TLS/plain ratio. Stops everything it started, also on failure or Ctrl-C.
#
# Usage: bench/tls-cost.sh [SECONDS_PER_RUN]   (default 10)
#   REPEAT=N              runs per combination (default 3)
#   OPS="put" CLIENTS="16"   only these (default: put get, 16 64)
#   BIN=path/to/capukv    use this binary instead of building the release one
#   BENCH_DIR=DIR         where the data dirs go (default /var/tmp)
#   OUT=FILE              also write the table there (default reports/bench/tls-cost-TIME.md)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

SECONDS_PER_RUN=${1:-10}
[[ "$SECONDS_PER_RUN" =~ ^[0-9]+$ ]] && [ "$SECONDS_PER_RUN" -ge 1 ] && [ "$SECONDS_PER_RUN" -le 600 ] ||
    { echo "error: SECONDS_PER_RUN must be a whole number of seconds in 1..600, not $SECONDS_PER_RUN" >&2; exit 64; }
REPEAT=${REPEAT:-3}
[[ "$REPEAT" =~ ^[1-9][0-9]?$ ]] || { echo "error: REPEAT must be 1..99, not $REPEAT" >&2; exit 64; }
read -r -a OPS <<<"${OPS:-put get}"
read -r -a CLIENTS <<<"${CLIENTS:-16 64}"
for op in "${OPS[@]}"; do [[ "$op" =~ ^(put|get|mixed)$ ]] || { echo "error: OPS lists put, get, mixed, not $op" >&2; exit 64; }; done
for c in "${CLIENTS[@]}"; do [[ "$c" =~ ^[1-9][0-9]{0,3}$ ]] || { echo "error: CLIENTS lists 1..9999, not $c" >&2; exit 64; }; done

if [ -z "${BIN:-}" ]; then
    ensure_build_env
    step "building capukv (release)"
    cargo build --release -p capukv
    BIN=$CARGO_TARGET_DIR/release/capukv
fi
[ -x "$BIN" ] || { echo "error: no capukv binary at $BIN" >&2; exit 2; }

DATA=$(mktemp -d "${BENCH_DIR:-/var/tmp}/capukv-tls-cost.XXXXXX")
RESULTS=$DATA/results.tsv
OUT=${OUT:-reports/bench/tls-cost-$(date -u +%Y%m%dT%H%M%SZ).md}
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
    for p in "${PIDS[@]}"; do wait "$p" 2>/dev/null || true; done
    [ -n "${KEEP:-}" ] && { echo "kept $DATA"; return; }
    rm -rf "$DATA"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_for() {
    for _ in $(seq 1 150); do "$@" >/dev/null 2>&1 && return 0; sleep 0.2; done
    echo "error: the cluster did not come up: $*" >&2
    return 1
}

"$BIN" certs --out "$DATA/tls" --hosts 127.0.0.1,127.0.0.1,127.0.0.1 >&2
# MODE -> the base port digit and the flags of its servers and client.
ENDPOINTS_plain=127.0.0.1:16701,127.0.0.1:16702,127.0.0.1:16703
ENDPOINTS_tls=127.0.0.1:17701,127.0.0.1:17702,127.0.0.1:17703
CLIENT_FLAGS_plain=()
CLIENT_FLAGS_tls=(--tls-ca "$DATA/tls/ca.pem")
for mode in plain tls; do
    base=16; [ $mode = tls ] && base=17
    peers=1=127.0.0.1:${base}801,2=127.0.0.1:${base}802,3=127.0.0.1:${base}803
    for i in 1 2 3; do
        flags=()
        [ $mode = tls ] && flags=(--tls-cert "$DATA/tls/n$i.pem" --tls-key "$DATA/tls/n$i-key.pem" --tls-ca "$DATA/tls/ca.pem")
        "$BIN" server --id $i --dir "$DATA/$mode$i" --api-addr 127.0.0.1:${base}70$i --raft-addr 127.0.0.1:${base}80$i \
            --peers "$peers" "${flags[@]}" 2>"$DATA/$mode$i.log" &
        PIDS+=($!)
    done
done
wait_for "$BIN" --endpoints "$ENDPOINTS_plain" --timeout 1 put warmup x
wait_for "$BIN" --endpoints "$ENDPOINTS_tls" "${CLIENT_FLAGS_tls[@]}" --timeout 1 put warmup x

bench_one() {
    local mode=$1 op=$2 clients=$3 endpoints flags
    endpoints=ENDPOINTS_$mode; flags=CLIENT_FLAGS_$mode[@]
    printf '%-5s %-4s x%-3s ' "$mode" "$op" "$clients" >&2
    "$BIN" bench --json --endpoints "${!endpoints}" "${!flags}" --op "$op" --clients "$clients" \
        --duration "${SECONDS_PER_RUN}s" --value-size 256 |
        sed -E 's/.*"throughput":([0-9.]+).*"p50_ms":([0-9.]+),"p99_ms":([0-9.]+).*/\1 \2 \3/' |
        tee >(awk -v m="$mode" -v o="$op" -v c="$clients" '{ print m "\t" o "\t" c "\t" $1 "\t" $2 "\t" $3 }' >>"$RESULTS") |
        awk '{ printf "%s ops/s, p50 %s ms, p99 %s ms\n", $1, $2, $3 }' >&2
}

step "load: ${#OPS[@]} ops x ${#CLIENTS[@]} concurrencies x plain/TLS x $REPEAT, ${SECONDS_PER_RUN} s each"
for mode in plain tls; do bench_one "$mode" put 16 >/dev/null 2>&1; done # warm-up
: >"$RESULTS"
turn=0
for _ in $(seq 1 "$REPEAT"); do
    for op in "${OPS[@]}"; do
        for clients in "${CLIENTS[@]}"; do
            if [ $((turn % 2)) -eq 0 ]; then order=(plain tls); else order=(tls plain); fi
            turn=$((turn + 1))
            for mode in "${order[@]}"; do bench_one "$mode" "$op" "$clients"; done
        done
    done
done
sleep 1 # the tee's awk writes last

mkdir -p "$(dirname "$OUT")"
{
    echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | sed 's/.*: //')), Linux $(uname -r)."
    echo "Load: capukv bench against 3 nodes on loopback, ${SECONDS_PER_RUN} s per run, median of $REPEAT runs, 256-byte values."
    echo
    echo "| op | clients | plain ops/s | TLS ops/s | TLS/plain | plain p50 / p99 ms | TLS p50 / p99 ms |"
    echo "| --- | --- | --- | --- | --- | --- | --- |"
    # Sorted by op, clients, mode, then throughput: each group's middle row
    # is its run of median throughput (the lower middle for an even count).
    sort -t$'\t' -k2,2 -k3,3n -k1,1 -k4,4n "$RESULTS" | awk -F'\t' '
        { key = $2 "\t" $3; if (!(key in seen)) { seen[key] = 1; keys[++k] = key }
          i = ++n[$1, key]; t[$1, key, i] = $4; lat[$1, key, i] = $5 " / " $6 }
        END {
            for (j = 1; j <= k; j++) {
                key = keys[j]; split(key, parts, "\t")
                mp = int((n["plain", key] + 1) / 2); mt = int((n["tls", key] + 1) / 2)
                plain = t["plain", key, mp]; tls = t["tls", key, mt]
                printf "| %s | %s | %.0f | %.0f | %.2f | %s | %s |\n", parts[1], parts[2], plain, tls, (plain > 0 ? tls / plain : 0), lat["plain", key, mp], lat["tls", key, mt]
            }
        }'
} | tee "$OUT"
echo "written to $OUT" >&2
