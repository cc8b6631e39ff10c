#!/usr/bin/env bash
# The main job: a chaos run against a local 5-node CapuKV cluster, one
# network namespace per node, every kind of fault, checked for
# linearizability. Installs what is missing, builds the release binaries.
# Usage: sudo bash scripts/chaos.sh [more capukv-chaos run options]
# Exit status: capukv-chaos's (0 valid, 1 invalid, 2 unknown, 3 harness failed).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

if [ "$(id -u)" -ne 0 ]; then
    echo "error: a chaos run creates network namespaces and needs root: sudo bash scripts/chaos.sh" >&2
    exit 3
fi
ensure_build_env

step "cargo build --release (capukv, capukv-chaos)"
cargo build --release --locked -p capukv -p harness
step "capukv-chaos run"
exec "$CARGO_TARGET_DIR/release/capukv-chaos" run \
    --capukv-bin "$CARGO_TARGET_DIR/release/capukv" \
    --nodes 5 --time-limit 60 --nemesis all --workload cas-register "$@"
