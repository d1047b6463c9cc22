#!/usr/bin/env bash
# Build the C core with AddressSanitizer + UndefinedBehaviorSanitizer (clang,
# -Werror) in a scratch copy and run the test suite against that build.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHEKIT_SANITIZE=1 bash scripts/install-deps.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -a cachekit src tests docs setup.py pyproject.toml README.md "$work"/
# tests/test_fuzz_regressions.py reads the kept fuzz inputs (not fuzz/out).
mkdir -p "$work/fuzz" && cp -a fuzz/regressions "$work/fuzz/"
cd "$work"
rm -f cachekit/_core*.so   # never test a copied, uninstrumented build
CC=clang CACHEKIT_STRICT=1 \
CACHEKIT_EXTRA_CFLAGS="-O1 -g -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
CACHEKIT_EXTRA_LDFLAGS="-fsanitize=address,undefined -shared-libasan" \
    python3 setup.py -q build_ext --inplace >build.log 2>&1 || { cat build.log; exit 1; }
so=$(ls cachekit/_core*.so)
# grep without -q reads all of nm's output, so pipefail never sees a SIGPIPE.
nm -D "$so" | grep __asan_report >/dev/null || { echo "sanitize: $so is not instrumented"; exit 1; }
asan=$(clang -print-file-name=libclang_rt.asan-x86_64.so)
# Leak checking is off: CPython's own allocations at exit drown real reports.
export LD_PRELOAD="$asan" ASAN_OPTIONS=detect_leaks=0 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
export PYTHONPATH="$work"
python3 -c "import cachekit._core as c; assert c.__file__.startswith('$work'), c.__file__"
python3 -m pytest -q -p no:cacheprovider tests "$@"
