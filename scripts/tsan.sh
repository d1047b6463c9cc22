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
# The interpreter carries its own self-test (--tsan-self-test): two pthreads
# write one variable with no synchronisation between them. Both are created
# before either is joined, so the writes are unordered in TSan's
# happens-before sense and the report does not depend on timing.
cat >tsan_python.c <<'C'
#include <Python.h>
#include <pthread.h>
#include <string.h>
static volatile int tsan_self_test_cell;
static void *tsan_self_test_write(void *arg) { tsan_self_test_cell = (int)(long)arg; return NULL; }
int main(int argc, char **argv) {
    if (argc == 2 && strcmp(argv[1], "--tsan-self-test") == 0) {
        pthread_t a, b;
        if (pthread_create(&a, NULL, tsan_self_test_write, (void *)1L) != 0) return 2;
        if (pthread_create(&b, NULL, tsan_self_test_write, (void *)2L) != 0) return 2;
        pthread_join(a, NULL);
        pthread_join(b, NULL);
        return 0;
    }
    return Py_BytesMain(argc, argv);
}
C
# shellcheck disable=SC2046  # python3-config prints several flags
clang -fsanitize=thread -O1 -g $(python3-config --includes) tsan_python.c -o tsan_python \
    $(python3-config --ldflags --embed) -lpthread >>build.log 2>&1 || { cat build.log; exit 1; }
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
"$py" --tsan-self-test
cat "$log".* 2>/dev/null | grep -q '^WARNING: ThreadSanitizer: data race' \
    || { echo "tsan: the self-test race (two unsynchronised pthread writes) was not reported; is TSan active?"; exit 1; }
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
