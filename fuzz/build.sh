#!/usr/bin/env bash
# Build every libFuzzer harness of fuzz/ into fuzz/out/ (docs/fuzzing.md).
#
#   fuzz/build.sh            all targets
#   fuzz/build.sh entry seal only these
#
# Pure-C targets link the src/core files they need and the system libraries
# (pkg-config). py_decode also builds cachekit._core with the fuzzer and
# sanitizers into fuzz/out/py/cachekit/ and links libpython to embed it.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/fuzz/out
CC=${CC:-clang}

die() { echo "fuzz/build.sh: $*" >&2; exit 1; }

command -v "$CC" >/dev/null 2>&1 ||
    die "$CC not found. Install clang and libFuzzer: apt-get install clang libclang-rt-14-dev (or CACHEKIT_SANITIZE=1 scripts/install-deps.sh)"
probe=$(mktemp -d)
trap 'rm -rf "$probe"' EXIT
printf 'int LLVMFuzzerTestOneInput(const unsigned char *d, unsigned long n) { (void)d; (void)n; return 0; }\n' >"$probe/p.c"
"$CC" -fsanitize=fuzzer,address,undefined "$probe/p.c" -o "$probe/p" >"$probe/log" 2>&1 || {
    cat "$probe/log" >&2
    die "$CC cannot link -fsanitize=fuzzer,address,undefined: libFuzzer or the sanitizer runtimes are missing (apt-get install libclang-rt-14-dev)"
}

SAN="-fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined"
CFLAGS="-std=gnu11 -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Werror -Isrc/core"
PKGS="libcrypto libssl liblz4 libxxhash hiredis msgpack"
pkg-config --exists $PKGS || die "missing native libraries: run scripts/install-deps.sh"
PKG_CFLAGS=$(pkg-config --cflags $PKGS)
PKG_LIBS=$(pkg-config --libs $PKGS)

# target -> the src/core files it links
declare -A SOURCES=(
    [entry]="ck_format.c ck_buf.c ck_crypto.c"
    [hashcount]="ck_hashcount.c"
    [file_record]="ck_file_record.c"
    [seal]="ck_seal.c ck_format.c ck_buf.c ck_keyring.c ck_keyring_dek.c ck_keyring_fork.c ck_aead.c ck_crypto.c ck_mac.c ck_siphash.c ck_l1.c ck_l1_walk.c"
    [interop]="ck_interop.c ck_blake2b.c ck_buf.c ck_aead.c ck_crypto.c"
    [redis_reply]="ck_redis_conn.c ck_redis_url.c ck_redis_sentinel.c ck_sock.c ck_buf.c ck_crypto.c"
    [redis_slots]="ck_redis_slots.c"
)
ALL="entry seal redis_reply redis_slots hashcount interop file_record py_decode"
targets=${*:-$ALL}
mkdir -p "$out"

build_c() {
    local t=$1 srcs=() f
    for f in ${SOURCES[$t]}; do srcs+=("src/core/$f"); done
    # shellcheck disable=SC2086
    "$CC" $CFLAGS $PKG_CFLAGS $SAN "fuzz/fuzz_$t.c" "${srcs[@]}" $PKG_LIBS -lpthread \
        -o "$out/fuzz_$t"
}

build_py() {
    local py=python3 work=$out/py.build
    rm -rf "$work" "$out/py"
    mkdir -p "$work" "$out/py"
    cp -a setup.py pyproject.toml README.md src cachekit "$work"/
    rm -f "$work"/cachekit/_core*.so
    # As scripts/sanitize.sh, plus coverage for libFuzzer (fuzzer-no-link:
    # the runtime comes with the harness binary, which also carries ASan).
    (cd "$work" && CC=$CC CACHEKIT_STRICT=1 \
        CACHEKIT_EXTRA_CFLAGS="-O1 -g -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer" \
        CACHEKIT_EXTRA_LDFLAGS="-fsanitize=address,undefined" \
        $py setup.py -q build_ext --inplace >build.log 2>&1) || { cat "$work/build.log"; die "building the instrumented cachekit._core failed"; }
    cp -a "$work/cachekit" "$out/py/"
    rm -rf "$work"
    nm -D "$out"/py/cachekit/_core*.so | grep __sanitizer_cov >/dev/null ||
        die "fuzz/out/py/cachekit/_core is not instrumented for libFuzzer"
    # shellcheck disable=SC2046
    "$CC" -g -O1 -fno-omit-frame-pointer -Wall -Wextra -Werror $SAN \
        $($py-config --includes) fuzz/fuzz_py_decode.c \
        $($py-config --embed --ldflags) -o "$out/fuzz_py_decode"
}

for t in $targets; do
    echo "fuzz/build.sh: fuzz_$t"
    case $t in
    py_decode) build_py ;;
    entry|seal|redis_reply|redis_slots|hashcount|interop|file_record) build_c "$t" ;;
    *) die "unknown target $t (targets: $ALL)" ;;
    esac
done
