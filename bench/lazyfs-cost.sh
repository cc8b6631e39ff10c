#!/usr/bin/env bash
# What the power nemesis's FUSE layer (lazyfs) costs: clean chaos runs (no
# faults) of a 5-node cluster in namespaces, as fast as the clients go, with
# the data directories on a plain directory and on lazyfs, alternating
# (plain first, then lazyfs, REPEAT times) so that both meet the same
# machine. Prints a table of ok operations per second and the ratio of the
# medians. Each run removes what it made; the runs' reports go to a temp dir.
#
# Usage: bench/lazyfs-cost.sh [SECONDS_PER_RUN]   (default 20)
#   REPEAT=N        runs per data fs (default 3)
#   WORKLOAD=NAME   the chaos workload (default append: every operation a
#                   write or a linearizable read)
#   CHAOS=path      capukv-chaos to use (default: the test build's, built if missing)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

SECONDS_PER_RUN=${1:-20}
[[ "$SECONDS_PER_RUN" =~ ^[0-9]+$ ]] && [ "$SECONDS_PER_RUN" -ge 5 ] && [ "$SECONDS_PER_RUN" -le 600 ] ||
    { echo "error: SECONDS_PER_RUN must be a whole number of seconds in 5..600, not $SECONDS_PER_RUN" >&2; exit 64; }
REPEAT=${REPEAT:-3}
[[ "$REPEAT" =~ ^[1-9]$ ]] || { echo "error: REPEAT must be 1..9, not $REPEAT" >&2; exit 64; }
WORKLOAD=${WORKLOAD:-append}
[ "$(id -u)" -eq 0 ] || { echo "error: the runs build network namespaces and mount FUSE: run as root" >&2; exit 2; }
[ -e /dev/fuse ] || { echo "error: no /dev/fuse: lazyfs cannot mount here" >&2; exit 2; }

CHAOS=${CHAOS:-}
if [ -z "$CHAOS" ]; then
    ensure_build_env
    cargo build --workspace --bins --quiet
    CHAOS="$CARGO_TARGET_DIR/debug/capukv-chaos"
fi
OUT=$(mktemp -d)
trap 'rm -rf "$OUT"' EXIT

declare -A RATES
for i in $(seq 1 "$REPEAT"); do
    for fs in plain fuse; do
        json="$OUT/$fs-$i.json"
        "$CHAOS" run --nodes 5 --nemesis none --workload "$WORKLOAD" --rate 0 --time-limit "$SECONDS_PER_RUN" \
            --data-fs "$fs" --seed "$i" --reports "$OUT/reports" --json >"$json" 2>"$OUT/$fs-$i.err" ||
            { echo "error: the $fs run $i failed:" >&2; tail -5 "$OUT/$fs-$i.err" >&2; exit 1; }
        rate=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["verdict"]=="valid", d["verdict"]; print("%.1f" % d["throughput"]["ok_per_s"])' "$json")
        RATES[$fs]+="$rate "
        echo "run $i, $fs: $rate ok/s" >&2
    done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
plain=$(median <<<"${RATES[plain]}")
fuse=$(median <<<"${RATES[fuse]}")
echo
echo "| data fs | ok ops/s per run | median |"
echo "| --- | --- | --- |"
echo "| plain directory | ${RATES[plain]}| $plain |"
echo "| lazyfs (FUSE) | ${RATES[fuse]}| $fuse |"
python3 -c 'import sys; p, f = float(sys.argv[1]), float(sys.argv[2]); print(f"\nlazyfs / plain: {f / p:.2f} ({(1 - f / p) * 100:.0f}% fewer ok operations per second)")' "$plain" "$fuse"
