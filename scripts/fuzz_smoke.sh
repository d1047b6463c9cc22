#!/usr/bin/env bash
# A short run of every libFuzzer harness (fuzz/, docs/fuzzing.md): builds
# them with clang, replays the seed corpora and the kept regressions, then
# fuzzes each for FUZZ_SMOKE_SECONDS (default 6; six targets, well under a
# minute in all). Any crash or sanitizer report fails CI; the input is left
# in fuzz/out/crashes/<target>/ to be kept in fuzz/regressions/<target>/.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHEKIT_SANITIZE=1 bash scripts/install-deps.sh
# install-deps.sh adds libclang-rt-14-dev only along with a missing clang;
# a clang without libFuzzer gets the runtime here.
if [ ! -f "$(clang -print-file-name=libclang_rt.fuzzer-x86_64.a)" ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq libclang-rt-14-dev >/dev/null
fi
bash fuzz/build.sh
secs=${FUZZ_SMOKE_SECONDS:-6}
failed=()
for t in entry seal redis_reply redis_slots hashcount interop file_record py_decode; do
    # The committed corpus is never written to: run.sh grows a scratch one.
    if ! bash fuzz/run.sh "$t" "$secs" >"fuzz/out/smoke-$t.log" 2>&1; then
        tail -n 60 "fuzz/out/smoke-$t.log"
        failed+=("$t")
    fi
    grep -E '^stat::(number_of_executed_units|average_exec_per_sec)' "fuzz/out/smoke-$t.log" |
        sed "s/^/fuzz_smoke: $t /" || true
done
if [ ${#failed[@]} -gt 0 ]; then
    echo "fuzz_smoke: findings in: ${failed[*]} (inputs in fuzz/out/crashes/)" >&2
    exit 1
fi
echo "fuzz_smoke: no findings"
