#!/usr/bin/env bash
# Build the C core with AddressSanitizer + UndefinedBehaviorSanitizer (clang)
# into a scratch copy and run the test suite against it.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHEKIT_SANITIZE=1 bash scripts/install-deps.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -a cachekit src tests setup.py pyproject.toml README.md "$work"/
cd "$work"
CC=clang CACHEKIT_STRICT=1 \
CACHEKIT_EXTRA_CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
CACHEKIT_EXTRA_LDFLAGS="-fsanitize=address,undefined -shared-libasan" \
    python3 setup.py -q build_ext --inplace 2>&1 | grep -v -i -E "warn|^ *$" || true
ls cachekit/_core*.so >/dev/null
asan=$(clang -print-file-name=libclang_rt.asan-x86_64.so)
# Leak checking is off: CPython's own allocations at exit drown real reports.
LD_PRELOAD="$asan" ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1 \
    PYTHONPATH="$work" python3 -m pytest -q -p no:cacheprovider tests "$@"
