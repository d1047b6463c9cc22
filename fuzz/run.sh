#!/usr/bin/env bash
# Run a libFuzzer harness built by fuzz/build.sh (docs/fuzzing.md).
#
#   fuzz/run.sh TARGET SECONDS   one target (entry, seal, redis_reply, redis_slots,
#                                hashcount, interop, file_record, py_decode)
#   fuzz/run.sh all SECONDS      every target in turn, SECONDS each
#                                (the long run: fuzz/run.sh all 600)
#
# Starts from fuzz/corpus/TARGET (seeds from fuzz/make_corpus.py) and
# fuzz/regressions/TARGET; new coverage goes to a scratch corpus under
# fuzz/out/ so the committed seeds stay small. A crash, leak, timeout or
# sanitizer report stops the run with a non-zero status and leaves the
# input in fuzz/out/crashes/TARGET/: copy it to fuzz/regressions/TARGET/.
# FUZZ_JOBS=N runs N workers in parallel; FUZZ_ARGS adds libFuzzer flags.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
ALL="entry seal redis_reply redis_slots hashcount interop file_record py_decode"

[ $# -eq 2 ] || { echo "usage: fuzz/run.sh TARGET|all SECONDS" >&2; exit 2; }
target=$1 secs=$2

run_one() {
    local t=$1 bin=$root/fuzz/out/fuzz_$1 work=$root/fuzz/out/corpus/$1
    local crashes=$root/fuzz/out/crashes/$1 opts=() env=()
    [ -x "$bin" ] || { echo "fuzz/run.sh: $bin missing: run fuzz/build.sh $t" >&2; return 1; }
    mkdir -p "$work" "$crashes" "$root/fuzz/corpus/$t" "$root/fuzz/regressions/$t"
    opts=(-max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 -max_len=65536
          -print_final_stats=1 -artifact_prefix="$crashes/")
    if [ "$t" = py_decode ]; then
        # CPython keeps allocations until exit (interned strings, caches):
        # leak reports would be noise, at exit too (and the Keyring lives in
        # the secure heap, which LeakSanitizer does not scan). pymalloc off
        # so ASan sees each object.
        opts+=(-detect_leaks=0)
        env=(ASAN_OPTIONS=detect_leaks=0 PYTHONPATH="$root/fuzz/out/py" CK_FUZZ_PYPATH="$root/fuzz/out/py"
             PYTHONMALLOC=malloc PYTHONDONTWRITEBYTECODE=1)
    fi
    if [ "${FUZZ_JOBS:-1}" -gt 1 ]; then
        opts+=(-fork="$FUZZ_JOBS")
    fi
    echo "fuzz/run.sh: fuzz_$t for ${secs}s"
    # shellcheck disable=SC2086
    env "${env[@]}" UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
        "$bin" "${opts[@]}" ${FUZZ_ARGS:-} "$work" "$root/fuzz/corpus/$t" "$root/fuzz/regressions/$t"
}

if [ "$target" = all ]; then
    for t in $ALL; do run_one "$t"; done
else
    run_one "$target"
fi
