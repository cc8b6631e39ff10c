#!/usr/bin/env bash
# The test command: installs what the build and the tests need (when missing),
# then checks formatting and lints, runs every test of the workspace and the
# smoke chaos suite.
# Usage: bash scripts/test.sh            (as root on Debian/Ubuntu)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_build_env

step "cargo fmt --check"
cargo fmt --all -- --check
# The test build compiles RocksDB (C++, most of a cold run); the lint build
# below links against that same library instead of compiling it a second
# time (cargo check and cargo build resolve librocksdb-sys's build script
# differently, so they would not share it on their own).
step "cargo test --no-run"
cargo test --workspace --locked --no-run --message-format=json-render-diagnostics > "$CARGO_TARGET_DIR/test-build.json"
ROCKSDB_OUT="$(rocksdb_out_dir "$CARGO_TARGET_DIR/test-build.json")"
step "cargo clippy (RocksDB from $ROCKSDB_OUT)"
ROCKSDB_LIB_DIR="$ROCKSDB_OUT" ROCKSDB_STATIC=1 cargo clippy --workspace --all-targets --locked -- -D warnings
ROCKSDB_LIB_DIR="$ROCKSDB_OUT" ROCKSDB_STATIC=1 \
    cargo clippy -p capukv --all-targets --features planted-bugs,failpoints --locked -- -D warnings
# The server with the planted bugs and the failpoints compiled in, for the
# power and failpoint tests and the smoke suite's power subset (its own
# binary name: the real one is untouched).
# Built for one package, cargo would resolve librocksdb-sys anew and compile
# RocksDB again: it links the test build's library too.
step "cargo build capukv-planted"
ROCKSDB_LIB_DIR="$ROCKSDB_OUT" ROCKSDB_STATIC=1 \
    cargo build -p capukv --features planted-bugs,failpoints --bin capukv-planted --locked

# The Docker tests need the image; build it from the test build's binary
# (scripts/image.sh alone builds the release one).
ensure_docker
step "image capukv:latest"
bash scripts/image.sh --binary "$CARGO_TARGET_DIR/debug/capukv"

step "cargo test"
cargo test --workspace --locked
step "cargo test (planted bugs against the simulation; failpoints armed)"
ROCKSDB_LIB_DIR="$ROCKSDB_OUT" ROCKSDB_STATIC=1 \
    cargo test -p capukv --features planted-bugs,failpoints --locked --test planted_simulation
ROCKSDB_LIB_DIR="$ROCKSDB_OUT" ROCKSDB_STATIC=1 \
    cargo test -p capukv --features planted-bugs,failpoints --locked --lib failpoints

# The smoke suite: real chaos runs (netns runtime, root) that must all pass,
# including one unsafe on purpose that the checker must catch.
step "capukv-chaos suite suites/smoke.toml"
SMOKE_REPORTS="$(mktemp -d)"
trap 'rm -rf "$SMOKE_REPORTS"' EXIT
"$CARGO_TARGET_DIR/debug/capukv-chaos" suite suites/smoke.toml \
    --reports "$SMOKE_REPORTS" --capukv-bin "$CARGO_TARGET_DIR/debug/capukv"
