#!/usr/bin/env bash
# Run a representative subset of the tests under valgrind memcheck against a
# -O1 -g build of the C core (in a scratch copy, like scripts/sanitize.sh),
# with PYTHONMALLOC=malloc so every object allocation is visible and
# CPython's suppressions (Misc/valgrind-python.supp; Debian ships it as
# /usr/lib/valgrind/python3.supp). Reports the "definitely lost" records whose
# stack has a frame in cachekit/_core and exits 1 if there are any; leaks of
# the interpreter itself are counted but not judged here.
#   bash scripts/valgrind.sh                 # the default subset
#   bash scripts/valgrind.sh tests/test_codec.py -k roundtrip
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "valgrind.sh: apt-get install valgrind"; exit 1; }
bash scripts/install-deps.sh
supp=/usr/lib/valgrind/python3.supp
[ -f "$supp" ] || { echo "valgrind.sh: $supp missing (Debian's valgrind package ships it)"; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cp -a cachekit src tests setup.py pyproject.toml README.md "$work"/
cd "$work"
rm -f cachekit/_core*.so
CACHEKIT_STRICT=1 CACHEKIT_EXTRA_CFLAGS="-g -fno-omit-frame-pointer" \
    python3 setup.py -q build_ext --inplace >build.log 2>&1 || { cat build.log; exit 1; }
if [ $# -eq 0 ]; then
    # The refcount checks (every entry point and error path, 1,000 calls
    # each here), the L1 store, sealed entries, decorated secure calls and the
    # Redis client: every C file of the core is on some path here. The whole
    # suite takes about 40 minutes under memcheck on two cores.
    set -- tests/test_refcounts.py tests/test_l1_store.py tests/test_seal.py tests/test_secure.py \
           tests/test_redis_client.py -p no:cacheprovider -q -o addopts=
fi
export PYTHONMALLOC=malloc PYTHONPATH="$work" REFCOUNT_CALLS=${REFCOUNT_CALLS:-1000}
# The interpreter itself, not a wrapper script (pyenv's python3 is a shim).
py=$(python3 -c 'import sys; print(sys.executable)')
logs=${VALGRIND_LOGS:-$OLDPWD/build/valgrind}   # build/ is not committed
rm -rf "$logs" && mkdir -p "$logs"
start=$(date +%s)
status=0
# One log per process: some tests fork, and a child reports its own exit.
valgrind --tool=memcheck --leak-check=full --show-leak-kinds=definite --errors-for-leak-kinds=definite \
    --num-callers=40 --suppressions="$supp" --log-file="$logs/vg.%p.log" \
    "$py" -m pytest "$@" || status=$?
echo "valgrind.sh: pytest exited $status after $(( $(date +%s) - start )) s; logs in $logs"
python3 - "$logs" <<'PY'
import pathlib, re, sys
# A frame in our code: a source file of src/core (ck_*) or src/binding
# (py_*, module.c), or the _core shared object itself.
OURS = re.compile(r"\((?:ck_\w+|py_\w+|module)\.[ch]:\d+\)|_core\.cpython")
leaks = {"ours": [], "others": [], "children": [], "tracemalloc": []}
errors = {"ours": [], "others": []}
logs = sorted(pathlib.Path(sys.argv[1]).glob("vg.*.log"), key=lambda p: int(p.name.split(".")[1]))
for index, log in enumerate(logs):
    main = index == 0   # the pytest process; later pids are forked or spawned children
    for record in re.split(r"\n==\d+== \n", log.read_text(errors="replace")):
        side = "ours" if OURS.search(record) else "others"
        m = re.search(r"([\d,]+) bytes in ([\d,]+) blocks are definitely lost", record)
        if m:
            # Blocks of tracemalloc's own traces (tests/test_refcounts.py turns
            # it on) carry our frame only because we allocated while it ran.
            # A child forked while other threads held memory loses what only
            # their stacks pointed to, since those threads do not exist there.
            kind = ("tracemalloc" if "_tracemalloc.c" in record
                    else side if main else "children" if side == "ours" else "others")
            leaks[kind].append((int(m.group(1).replace(",", "")), record))
        elif re.search(r"== (Invalid (read|write|free)|Conditional jump|Use of uninitialised|Mismatched free|"
                       r"Source and destination overlap|Syscall param)", record):
            errors[side].append(record)
print(f"valgrind.sh: {len(logs)} processes")
for kind, label in (("others", "outside _core (interpreter, libc; not judged)"),
                    ("tracemalloc", "tracemalloc's own trace blocks (not judged)"),
                    ("children", "in _core, in forked children (threads absent after fork; not judged)"),
                    ("ours", "in _core, pytest process")):
    print(f"valgrind.sh: {label}: {len(leaks[kind])} definitely-lost records, "
          f"{sum(n for n, _ in leaks[kind])} bytes")
print(f"valgrind.sh: memory errors: {len(errors['ours'])} with a _core frame, {len(errors['others'])} without")
for _, record in leaks["ours"]:
    print(record)
for record in errors["ours"]:
    print(record)
sys.exit(1 if leaks["ours"] or errors["ours"] else 0)
PY
[ "$status" = 0 ] || exit "$status"
