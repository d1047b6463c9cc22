#!/usr/bin/env bash
# Run the benchmarks and print ratios against the baselines of the same run.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh -e '.[test]'
python3 -m pytest -q benchmarks --benchmark-only --benchmark-columns=median,iqr,rounds "$@"
