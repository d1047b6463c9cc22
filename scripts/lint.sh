#!/usr/bin/env bash
# Static analysis of the C tree: cppcheck and clang-tidy (.clang-tidy), both
# must be clean. Installs them when missing (Debian's packages).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v cppcheck >/dev/null 2>&1 || need+=(cppcheck)
command -v clang-tidy >/dev/null 2>&1 || need+=(clang-tidy)
if [ ${#need[@]} -gt 0 ]; then
    sudo=""
    [ "$(id -u)" -eq 0 ] || sudo="sudo"
    $sudo apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
fi
libs="libcrypto msgpack liblz4 libxxhash hiredis"
echo "lint: cppcheck"
cppcheck --quiet --error-exitcode=1 --enable=warning,performance,portability --inline-suppr \
    --std=c11 -I src/core $(pkg-config --cflags-only-I $libs) \
    --suppress=missingIncludeSystem --suppress=missingInclude src/core
cppcheck --quiet --error-exitcode=1 --enable=warning,portability --inline-suppr --std=c11 \
    -I src/core -I src/binding --library=python \
    --suppress=missingIncludeSystem --suppress=missingInclude src/binding
echo "lint: clang-tidy"
pyinc=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['include'])")
flags="$(pkg-config --cflags $libs) -I$pyinc -Isrc/core -Isrc/binding -std=gnu11"
# shellcheck disable=SC2086
ls src/core/*.c src/binding/*.c | xargs -P "$(nproc)" -I{} \
    clang-tidy -quiet {} -- $flags
echo "lint: clean"
