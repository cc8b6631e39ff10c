#!/usr/bin/env bash
# The CapuKV checker against Porcupine on the same key-value histories, in
# one run: 30 generated histories (read, write and append over 10 keys, 2,000
# operations, 10% info; 1, 5, 10, 20 and 50 clients; valid, and invalid from
# stale reads; 3 seeds each). Our side (checker/examples/compare_porcupine.rs)
# checks each and writes it as Porcupine's kv log; Porcupine
# (bench/porcupine/main.go, Porcupine's own kv model partitioned by key)
# checks the logs. Each side is timed on the check alone, not on reading.
# Prints a table, both totals and their ratio; exits 1 when a verdict
# differs (neither side unknown).
#
# Usage: bench/compare-porcupine.sh
#   PORCUPINE_SRC=DIR   build against a local Porcupine checkout instead of
#                       the Go module proxy (go.mod names the version)
#   OUT=FILE            also write the report there (default reports/bench/compare-porcupine-TIME.md)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_build_env
command -v go >/dev/null 2>&1 || {
    step "installing golang-go"
    apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends golang-go
}

WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
OUT=${OUT:-reports/bench/compare-porcupine-$(date -u +%Y%m%dT%H%M%SZ).md}
mkdir -p "$(dirname "$OUT")"

step "building the checker's side (release)"
cargo build --release -p checker --example compare_porcupine --locked
step "building the Porcupine side"
cp -r bench/porcupine "$WORK/driver"
if [ -n "${PORCUPINE_SRC:-}" ]; then
    (cd "$WORK/driver" && go mod edit -replace "github.com/anishathalye/porcupine=$(realpath "$PORCUPINE_SRC")")
    (cd "$WORK/driver" && GOPROXY=off GOFLAGS=-mod=mod go build -o "$WORK/porcupine-kv" .)
else
    (cd "$WORK/driver" && GOFLAGS=-mod=mod go build -o "$WORK/porcupine-kv" .)
fi

step "checking with CapuKV's checker"
"$CARGO_TARGET_DIR/release/examples/compare_porcupine" "$WORK/logs" >"$WORK/ours.txt"
step "checking with Porcupine"
"$WORK/porcupine-kv" -timeout 60 "$WORK"/logs/*.txt >"$WORK/theirs.txt"

{
    echo "# The CapuKV checker against Porcupine, $(date -u +'%Y-%m-%d %H:%M UTC')"
    echo
    echo "Machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo). Seconds of checking per history; ours stops at the first invalid key as Porcupine does, \`--all-keys\` searches every key."
    echo
    echo "| history | verdict | ours s | Porcupine s | ours/Porcupine | ours --all-keys s |"
    echo "| --- | --- | ---: | ---: | ---: | ---: |"
    join <(sort "$WORK/ours.txt") <(sort "$WORK/theirs.txt") | awk '
        { ours = tolower($2); theirs = $6
          if (ours != theirs && ours != "unknown" && theirs != "unknown") { bad = bad " " $1 }
          verdict = (ours == theirs) ? ours : ours " / Porcupine " theirs
          printf "| %s | %s | %.4f | %.4f | %.2f | %.4f |\n", $1, verdict, $3, $7, $3 / ($7 > 0 ? $7 : 1e-9), $5
          o += $3; p += $7; a += $5 }
        END { printf "| **total** | | **%.3f** | **%.3f** | **%.2f** | %.3f |\n", o, p, o / (p > 0 ? p : 1e-9), a
              if (bad != "") { printf "\nVerdicts differ:%s\n", bad; exit 1 } }'
} | tee "$OUT"
echo "written to $OUT"
