#!/usr/bin/env bash
# Install what building and testing cachekit needs, only when missing:
# the native libraries (found through pkg-config), redis-server, memcached, and the
# Python packages given as arguments (e.g. -e '.[test]').
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v pkg-config >/dev/null 2>&1 || need_apt+=(pkg-config)
command -v gcc >/dev/null 2>&1 || need_apt+=(gcc)
for pair in libcrypto:libssl-dev msgpack:libmsgpack-dev liblz4:liblz4-dev \
            libxxhash:libxxhash-dev hiredis:libhiredis-dev; do
    if ! pkg-config --exists "${pair%%:*}" 2>/dev/null; then
        need_apt+=("${pair##*:}")
    fi
done
command -v redis-server >/dev/null 2>&1 || need_apt+=(redis-server)
command -v memcached >/dev/null 2>&1 || need_apt+=(memcached)  # MemcachedBackend tests
if [ "${CACHEKIT_SANITIZE:-0}" = 1 ] && ! command -v clang >/dev/null 2>&1; then
    need_apt+=(clang libclang-rt-14-dev)
fi

if [ ${#need_apt[@]} -gt 0 ]; then
    echo "cachekit: installing system packages: ${need_apt[*]}"
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need_apt[@]}" >/dev/null
fi

if [ $# -gt 0 ]; then
    python3 -m pip install -q --disable-pip-version-check "$@"
fi
