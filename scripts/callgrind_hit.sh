#!/usr/bin/env bash
# Instructions per L1 hit under callgrind (stable on a busy machine), for
# the hit kinds freshness could slow down: plain @cache without and with a
# TTL, with a stale window (stale_ttl), and @cache.secure. Each function is
# called N and 3N times after its first (missing) call; the difference / 2N
# is one hit plus the loop. Usage: bash scripts/callgrind_hit.sh [N] [KINDS]
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "callgrind_hit.sh: apt-get install valgrind"; exit 1; }
n=${1:-2000}
kinds=${2:-"plain ttl stale secure"}
py=$(python3 -c 'import sys; print(sys.executable)')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/hit.py" <<'PY'
import sys
from cachekit import cache

kind, n = sys.argv[1], int(sys.argv[2])
if kind == "plain":
    deco = cache(backend=None)
elif kind == "ttl":
    deco = cache(ttl=300, backend=None)
elif kind == "stale":
    deco = cache(ttl=300, stale_ttl=300, backend=None)
else:
    deco = cache.secure(master_key="ab" * 32, ttl=300, backend=None)

@deco
def f(x):
    return x + 41

f(1)
for _ in range(n):
    f(1)
assert f.cache_info().hits == n
PY
count() {
    PYTHONPATH=$PWD valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$work/cg" \
        "$py" "$work/hit.py" "$1" "$2" 2>&1 | awk '/Collected/ {print $4}'
}
for k in $kinds; do
    a=$(count "$k" "$n")
    b=$(count "$k" $((3 * n)))
    echo "$k L1 hit (one int argument, int result): $(( (b - a) / (2 * n) )) instructions per call"
done
