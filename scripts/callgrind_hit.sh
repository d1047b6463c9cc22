#!/usr/bin/env bash
# Instructions per plain @cache L1 hit under callgrind (stable on a busy
# machine), with the cachekit logger at WARNING (DEBUG off) and at DEBUG:
# a one-argument function returning an int is called N and 3N times after
# its first (missing) call; the difference / 2N is one hit plus the loop.
# The observer (docs/observability.md) is never called on an L1 hit, so
# the two counts match. Usage: bash scripts/callgrind_hit.sh [N] (default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "callgrind_hit.sh: apt-get install valgrind"; exit 1; }
n=${1:-1000}
py=$(python3 -c 'import sys; print(sys.executable)')   # not pyenv's shim
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/hit.py" <<'PY'
import logging, sys
from cachekit import cache

logging.getLogger("cachekit").setLevel(getattr(logging, sys.argv[2]))

@cache(ttl=300, backend=None)
def f(x):
    return x + 41

f(1)
for _ in range(int(sys.argv[1])):
    f(1)
assert f.cache_info().hits == int(sys.argv[1])
PY
count() {
    PYTHONPATH=$PWD valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$work/cg.$1.$2" \
        "$py" "$work/hit.py" "$1" "$2" 2>&1 | awk '/Collected/ {print $4}'
}
for level in WARNING DEBUG; do
    a=$(count "$n" "$level")
    b=$(count $((3 * n)) "$level")
    echo "plain L1 hit, cachekit logger at $level: $(( (b - a) / (2 * n) )) instructions per call"
done
