#!/usr/bin/env bash
# Builds the image capukv:latest FROM scratch, with no registry: the release
# `capukv` binary built here and exactly the shared libraries it needs (as
# ldd lists them, with the dynamic loader).
# Usage: bash scripts/image.sh [--binary PATH]
#   --binary PATH: package this capukv binary instead of building the release
#   one (the tests use the binary their own build made, which saves a third
#   build of RocksDB).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib.sh

ensure_build_env
if ! docker info >/dev/null 2>&1; then
    echo "error: no Docker engine answers; install docker.io and start dockerd" >&2
    exit 2
fi

BIN=""
if [ "${1:-}" = "--binary" ]; then
    BIN="${2:?--binary needs a path}"
    [ -x "$BIN" ] || { echo "error: $BIN is not an executable" >&2; exit 2; }
else
    step "cargo build --release -p capukv"
    cargo build --release --locked -p capukv
    BIN="$CARGO_TARGET_DIR/release/capukv"
fi

CONTEXT="$(mktemp -d)"
trap 'rm -rf "$CONTEXT"' EXIT
mkdir -p "$CONTEXT/rootfs/data"
cp "$BIN" "$CONTEXT/rootfs/capukv"
# Every library the binary loads, at the path the loader looks for it.
for lib in $(ldd "$BIN" | awk '$2 == "=>" && $3 ~ /^\// {print $3} $1 ~ /^\// {print $1}'); do
    mkdir -p "$CONTEXT/rootfs$(dirname "$lib")"
    cp -L "$lib" "$CONTEXT/rootfs$lib"
done
cat > "$CONTEXT/Dockerfile" <<'DOCKERFILE'
FROM scratch
COPY rootfs/ /
VOLUME ["/data"]
EXPOSE 7001 7002
ENTRYPOINT ["/capukv"]
DOCKERFILE

step "docker build -t capukv:latest"
docker build --tag capukv:latest "$CONTEXT"
docker image inspect capukv:latest --format 'capukv:latest: {{.Size}} bytes'
