#!/usr/bin/env bash
# The test command: installs what the build and the tests need (when missing),
# then checks formatting and lints and runs every test of the workspace.
# Usage: bash scripts/test.sh            (as root on Debian/Ubuntu)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_packages
ensure_rust
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/capukv/target}"

step "cargo fmt --check"
cargo fmt --all -- --check
step "cargo clippy"
cargo clippy --workspace --all-targets --locked -- -D warnings
step "cargo test"
cargo test --workspace --locked
