#!/usr/bin/env bash
# The transactional checker on 1,000,000 generated list-append transactions
# (10 clients, 5 keys in use at once, up to 4 micro-operations each): once
# strictly serializable, once from a store that splits every transaction
# (over 100,000 anomalies to find and classify). Each check runs in a
# process of its own, and /usr/bin/time gives its wall time and peak memory.
# Usage: bash bench/txn-checker.sh [N]
set -euo pipefail
cd "$(dirname "$0")/.."
N="${1:-1000000}"
TARGET="${CARGO_TARGET_DIR:-target}"
cargo build --release -p checker --example txn_scale --locked
DIR="$(mktemp -d)"
trap 'rm -rf "$DIR"' EXIT
for mode in atomic split; do
    flag=""
    [ "$mode" = split ] && flag="--split"
    "$TARGET/release/examples/txn_scale" gen "$N" "$DIR/$mode.jsonl" $flag
    /usr/bin/time -f "  $mode: %e s wall, %M KiB peak" "$TARGET/release/examples/txn_scale" check "$DIR/$mode.jsonl"
done
