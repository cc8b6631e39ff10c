# Shared by scripts/*.sh: installing what CapuKV needs on a fresh
# Debian/Ubuntu machine. Idempotent: installs only what is missing.

# System packages the build and the tests need. clang/libclang: RocksDB's
# bindings. nftables, iptables: the netem crate's firewall rules (its
# namespaces, links and qdiscs go over rtnetlink); iproute2: tests check
# with `ip` what it made. chromium:
# the report tests load reports in a headless browser. etcd-server: the
# benchmark's etcd target is tested against a real etcd.
# fuse3 (fusermount3): lazyfs, the power nemesis's data directories. libfaketime:
# the clock nemesis. dnsmasq-base (the binary, without a system service): the
# DNS server the `--dns` discovery tests start.
CAPUKV_PACKAGES=(build-essential pkg-config clang libclang-dev iproute2 nftables iptables chromium etcd-server fuse3 libfaketime faketime dnsmasq-base)

step() { printf '\n==> %s\n' "$*"; }

ensure_packages() {
    local missing=()
    for p in "${CAPUKV_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [ "${#missing[@]}" -gt 0 ]; then
        if [ "$(id -u)" -ne 0 ]; then
            echo "error: missing packages ${missing[*]}; run as root or install them" >&2
            exit 2
        fi
        step "installing ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    fi
}

ensure_rust() {
    if ! command -v cargo >/dev/null 2>&1; then
        [ -f "$HOME/.cargo/env" ] && source "$HOME/.cargo/env"
    fi
    if ! command -v cargo >/dev/null 2>&1; then
        echo "error: no Rust toolchain (cargo) found; install one with rustup (https://rustup.rs)" >&2
        exit 2
    fi
    for component in rustfmt clippy; do
        if ! cargo "${component/rustfmt/fmt}" --version >/dev/null 2>&1; then
            if command -v rustup >/dev/null 2>&1; then
                rustup component add "$component"
            else
                echo "error: cargo $component is missing and rustup is not there to add it" >&2
                exit 2
            fi
        fi
    done
}

# Everything a cargo build of CapuKV needs: the system packages, a Rust
# toolchain with rustfmt and clippy, and the target directory outside the
# clone (so a fresh clone reuses earlier builds).
ensure_build_env() {
    ensure_packages
    ensure_rust
    export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/capukv/target}"
    # On a fresh machine it does not exist yet, and test.sh writes the test
    # build's messages into it before cargo would make it.
    mkdir -p "$CARGO_TARGET_DIR"
}

# The directory holding the librocksdb.a that a cargo build made, from the
# JSON messages (--message-format=json...) of that build in file $1.
rocksdb_out_dir() {
    local dir
    dir="$(grep -o '"reason":"build-script-executed","package_id":"[^"]*librocksdb-sys[^"]*"[^}]*"out_dir":"[^"]*"' "$1" \
        | sed 's/.*"out_dir":"\([^"]*\)"/\1/' | tail -n 1)"
    if [ -z "$dir" ] || [ ! -f "$dir/librocksdb.a" ]; then
        echo "error: the build in $1 made no librocksdb.a" >&2
        exit 2
    fi
    echo "$dir"
}

# A Docker engine and docker-compose, for the image and the Docker tests:
# Debian's docker.io and docker-compose when missing; dockerd started here
# when nothing answers (CI machines start with no daemon running).
ensure_docker() {
    local missing=()
    command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
    command -v docker-compose >/dev/null 2>&1 || missing+=(docker-compose)
    if [ "${#missing[@]}" -gt 0 ]; then
        step "installing ${missing[*]}"
        apt-get update
        DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
    fi
    if ! docker info >/dev/null 2>&1; then
        step "starting dockerd"
        nohup dockerd >/var/log/capukv-dockerd.log 2>&1 &
        for _ in $(seq 1 60); do
            docker info >/dev/null 2>&1 && break
            sleep 1
        done
        if ! docker info >/dev/null 2>&1; then
            echo "error: dockerd did not start; see /var/log/capukv-dockerd.log" >&2
            exit 2
        fi
    fi
}
