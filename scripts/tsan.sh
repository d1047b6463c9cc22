#!/usr/bin/env bash
# Build the C core with ThreadSanitizer (clang -fsanitize=thread) in a scratch
# copy, like scripts/sanitize.sh does with ASan, and run the thread stress
# test (tests/test_thread_stress.py) plus the threaded tests of the suite
# against it. CPython itself is not instrumented: TSan sees its locking
# through the pthread calls it intercepts (the GIL is a pthread mutex and
# condition variable), so a report here is about memory our code touches.
# scripts/tsan.supp holds the suppressions (with the reason for each).
# The TSan runtime cannot be LD_PRELOADed here (clang 14's shared
# libclang_rt.tsan crashes at start-up on glibc 2.36, even for /bin/true), so
# the script builds a tiny interpreter, Py_BytesMain linked against
# libpython3.11 with -fsanitize=thread: the runtime is in the executable and
# the instrumented _core resolves its __tsan_* symbols from there.
#   bash scripts/tsan.sh                  # stress test + threaded tests
#   bash scripts/tsan.sh tests/test_l1_store.py
set -euo pipefail
cd "$(dirname "$0")/.."
CACHEKIT_SANITIZE=1 bash scripts/install-deps.sh
supp=$PWD/scripts/tsan.supp
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -a cachekit src tests setup.py pyproject.toml README.md "$work"/
cd "$work"
rm -f cachekit/_core*.so
CC=clang CACHEKIT_STRICT=1 \
CACHEKIT_EXTRA_CFLAGS="-O1 -g -fsanitize=thread -fno-omit-frame-pointer" \
CACHEKIT_EXTRA_LDFLAGS="-fsanitize=thread" \
    python3 setup.py -q build_ext --inplace >build.log 2>&1 || { cat build.log; exit 1; }
so=$(ls cachekit/_core*.so)
nm -D "$so" | grep __tsan_read >/dev/null || { echo "tsan: $so is not instrumented"; exit 1; }
printf '#include <Python.h>\nint main(int argc, char **argv) { return Py_BytesMain(argc, argv); }\n' >tsan_python.c
# shellcheck disable=SC2046  # python3-config prints several flags
clang -fsanitize=thread -O1 -g $(python3-config --includes) tsan_python.c -o tsan_python \
    $(python3-config --ldflags --embed) >>build.log 2>&1 || { cat build.log; exit 1; }
py=$work/tsan_python
if [ $# -eq 0 ]; then
    set -- tests/test_thread_stress.py tests/test_singleflight.py tests/test_l1_store.py \
           tests/test_decorator.py tests/test_secure.py tests/test_two_tier.py tests/test_redis_client.py \
           tests/test_async.py
fi
log=$work/tsan
export PYTHONPATH="$work"
# detect_deadlocks=0: the keyring's pthread_atfork prepare handler
# (src/core/ck_keyring_fork.c) holds the mutex of every live MAC context at
# once across fork(); after the suite has made more than 64 of them, TSan's
# lock-order detector overflows its per-thread table (a CHECK failure inside
# TSan, which then hangs printing it). Races are still reported.
export TSAN_OPTIONS="suppressions=$supp detect_deadlocks=0 report_signal_unsafe=0 history_size=4 log_path=$log exitcode=0"
"$py" -c "import cachekit._core as c; assert c.__file__.startswith('$work'), c.__file__"
# Self-test: two threads memmove into one buffer through ctypes (GIL
# released); TSan must report that race, or a clean run below means nothing.
"$py" -c "
import ctypes, threading
buf, src = ctypes.create_string_buffer(4096), ctypes.create_string_buffer(4096)
def w():
    for _ in range(500): ctypes.memmove(buf, src, 4096)
ts = [threading.Thread(target=w) for _ in range(2)]
[t.start() for t in ts]; [t.join() for t in ts]"
cat "$log".* 2>/dev/null | grep -q '^WARNING: ThreadSanitizer: data race' \
    || { echo "tsan: the self-test race was not reported; is TSan active?"; exit 1; }
rm -f "$log".*
status=0
"$py" -m pytest -q -p no:cacheprovider -o addopts= "$@" || status=$?
reports=$(cat "$log".* 2>/dev/null | grep -c '^WARNING: ThreadSanitizer' || true)
echo "tsan: pytest exited $status; ThreadSanitizer reports: $reports"
if [ "$reports" != 0 ]; then
    cat "$log".*
    exit 1
fi
exit "$status"
