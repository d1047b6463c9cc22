#!/usr/bin/env bash
# Instructions per @cache.secure L1 hit under callgrind (stable on a busy
# machine): a one-argument function returning an int is called N and 3N
# times after its first (missing) call; the difference / 2N is one hit plus
# the loop. Usage: bash scripts/callgrind_secure.sh [N]   (default 1000)
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "callgrind_secure.sh: apt-get install valgrind"; exit 1; }
n=${1:-1000}
py=$(python3 -c 'import sys; print(sys.executable)')   # not pyenv's shim
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/hit.py" <<'PY'
import sys
from cachekit import cache

@cache.secure(master_key="ab" * 32, ttl=300, backend=None)
def f(x):
    return x + 41

f(1)
for _ in range(int(sys.argv[1])):
    f(1)
assert f.cache_info().hits == int(sys.argv[1])
PY
count() {
    PYTHONPATH=$PWD valgrind --tool=callgrind --dump-instr=no --callgrind-out-file="$work/cg.$1" \
        "$py" "$work/hit.py" "$1" 2>&1 | awk '/Collected/ {print $4}'
}
a=$(count "$n")
b=$(count $((3 * n)))
echo "secure L1 hit (one int argument, int result): $(( (b - a) / (2 * n) )) instructions per call"
