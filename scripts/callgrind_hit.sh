#!/usr/bin/env bash
# Instructions per L1 hit under callgrind (stable on a busy machine), for
# the hit kinds freshness could slow down: plain @cache without and with a
# TTL, with a stale window (stale_ttl), and @cache.secure. Two numbers per
# kind: "call", instructions inside the C vectorcall of the decorated
# function only (callgrind --toggle-collect), exact to the instruction; and
# "loop", the whole Python loop iteration (N and 3N calls after the first
# missing one, the difference / 2N), which is noisier.
# Usage: bash scripts/callgrind_hit.sh [N] [KINDS]
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
    PYTHONHASHSEED=0 PYTHONPATH=$PWD valgrind --tool=callgrind --dump-instr=no \
        --callgrind-out-file="$work/cg" ${3:+--toggle-collect=$3} \
        "$py" "$work/hit.py" "$1" "$2" 2>&1 | awk '/Collected/ {print $4}'
}
for k in $kinds; do
    entry=cached_vectorcall
    [ "$k" = secure ] && entry=ck_cached_secure_vectorcall
    a=$(count "$k" "$n")
    b=$(count "$k" $((3 * n)))
    c=$(count "$k" "$n" "$entry")
    echo "$k L1 hit (one int argument, int result): call $(( c / (n + 1) )), loop $(( (b - a) / (2 * n) )) instructions"
done
