#!/usr/bin/env bash
# The whole test suite, from a fresh machine: installs what is missing,
# builds the C core with -Werror, runs the tests, then runs every benchmark
# once as a smoke test (timings are for `scripts/bench.sh`).
set -euo pipefail
cd "$(dirname "$0")/.."
export CACHEKIT_STRICT=1
bash scripts/install-deps.sh -e '.[test]'
python3 -m pytest -q tests "$@"
python3 -m pytest -q benchmarks --benchmark-disable
