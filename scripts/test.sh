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
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo test --no-run"
cargo test --workspace --locked --no-run

# The Docker tests need the image; build it from the test build's binary
# (scripts/image.sh alone builds the release one).
ensure_docker
step "image capukv:latest"
bash scripts/image.sh --binary "$CARGO_TARGET_DIR/debug/capukv"

step "cargo test"
cargo test --workspace --locked

# The smoke suite: real chaos runs (netns runtime, root) that must all pass,
# including one unsafe on purpose that the checker must catch.
step "capukv-chaos suite suites/smoke.toml"
SMOKE_REPORTS="$(mktemp -d)"
trap 'rm -rf "$SMOKE_REPORTS"' EXIT
"$CARGO_TARGET_DIR/debug/capukv-chaos" suite suites/smoke.toml \
    --reports "$SMOKE_REPORTS" --capukv-bin "$CARGO_TARGET_DIR/debug/capukv"
