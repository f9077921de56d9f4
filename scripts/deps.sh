#!/bin/sh
# Install every Debian package that mxu's build, node, tests and benchmarks need.
# Idempotent: asks dpkg what is already there and installs only what is missing,
# so a second run costs a fraction of a second and needs no network.
#
#   scripts/deps.sh            build + run + test dependencies
#   scripts/deps.sh --bench    also the benchmark tools (wrk, nginx, fcgiwrap, hyperfine)
set -eu

pkgs="build-essential pkg-config meson ninja-build clang clang-format libclang-rt-14-dev
      libuv1-dev libhttp-parser-dev libjansson-dev libyaml-dev libsqlite3-dev
      libsodium-dev zlib1g-dev libxxhash-dev libcurl4-openssl-dev uthash-dev libhiredis-dev redis-server
      python3 curl procps
      qemu-system-x86 busybox-static cpio"
if [ "${1:-}" = "--bench" ]; then
    pkgs="$pkgs wrk nginx fcgiwrap hyperfine musl-tools bubblewrap crun runc"
fi

missing=""
for p in $pkgs; do
    if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
        missing="$missing $p"
    fi
done
[ -z "$missing" ] && exit 0

echo "mxu: installing Debian packages:$missing" >&2
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    SUDO="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
# Update the package index only if an install fails for lack of it (fresh machines).
# shellcheck disable=SC2086
$SUDO apt-get install -y -q --no-install-recommends $missing >/dev/null 2>&1 || {
    $SUDO apt-get update -q >/dev/null
    $SUDO apt-get install -y -q --no-install-recommends $missing
}
