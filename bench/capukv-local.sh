#!/usr/bin/env bash
# Starts a 3-node CapuKV cluster on loopback (data under one temp dir), runs
# `capukv bench` for put and get at 1 and 64 clients, and stops everything
# it started, also on failure or Ctrl-C.
# Usage: bench/capukv-local.sh [SECONDS]    (BIN=path/to/capukv to choose the binary)
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS_PER_RUN=${1:-10}
BIN=${BIN:-${CARGO_TARGET_DIR:-$HOME/.cache/capukv/target}/release/capukv}
[ -x "$BIN" ] || { echo "error: no capukv binary at $BIN (cargo build --release -p capukv, or set BIN)" >&2; exit 2; }
DATA=$(mktemp -d /tmp/capukv-bench.XXXXXX)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; wait 2>/dev/null || true; rm -rf "$DATA"; }
trap cleanup EXIT INT TERM
PEERS=1=127.0.0.1:15801,2=127.0.0.1:15802,3=127.0.0.1:15803
for i in 1 2 3; do
  "$BIN" server --id $i --dir "$DATA/n$i" --api-addr 127.0.0.1:1570$i --raft-addr 127.0.0.1:1580$i \
    --peers $PEERS 2>"$DATA/n$i.log" &
  PIDS+=($!)
done
export CAPUKV_ENDPOINTS=127.0.0.1:15701,127.0.0.1:15702,127.0.0.1:15703
for _ in $(seq 1 100); do "$BIN" status >/dev/null 2>&1 && "$BIN" put warmup x >/dev/null 2>&1 && break; sleep 0.2; done
for op in put get; do
  for clients in 1 64; do
    "$BIN" bench --op $op --clients $clients --duration "${SECONDS_PER_RUN}s" --value-size 256
  done
done
