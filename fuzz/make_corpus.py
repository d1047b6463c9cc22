#!/usr/bin/env python3
"""Write the seed corpora of the fuzz targets, and the hostile inputs kept as
regressions, from the real encoders (docs/fuzzing.md).

    PYTHONPATH=. python3 fuzz/make_corpus.py

needs cachekit._core importable (any build). Writes fuzz/corpus/<target>/
and fuzz/regressions/<target>/hostile-*; the output is deterministic except
for sealed entries (random data keys and nonces), so only run it again when
an encoder changes. Crash inputs found by fuzzing live beside the hostile
ones in fuzz/regressions/<target>/ and are never rewritten here.
"""

from __future__ import annotations

import datetime
import decimal
import hashlib
import struct
import sys
import uuid
from pathlib import Path

from cachekit import _core

HERE = Path(__file__).resolve().parent
MERSENNE = (1 << 61) - 1  # CPython hashes ints modulo this

# Values covering every type and extension the codec stores.
VALUES: list[object] = [
    None, True, False, 0, 1, -1, 127, 128, -33, 255, 65536, 2**31, -(2**31) - 1,
    2**63 - 1, 2**64 - 1, -(2**63), 2**64, -(2**64) - 5, 10**40,
    0.0, -0.0, 1.5, float("inf"), float("nan"), 1e308,
    "", "a", "é", "x" * 31, "y" * 32, "z" * 300, "\u2603" * 20,
    b"", b"\x00\xff", b"b" * 300, bytearray(b"ba"),
    [], [1, [2, [3, [4]]]], (), (1, "two", 3.0), {"k": "v", "n": [1, 2]}, {1: 2, "1": 3},
    {1, 2, 3}, frozenset({"a", "b"}), {(): None},
    datetime.datetime(2024, 5, 6, 7, 8, 9, 123456),
    datetime.datetime(2024, 5, 6, 7, 8, 9, tzinfo=datetime.timezone.utc),
    datetime.datetime(2024, 5, 6, tzinfo=datetime.timezone(datetime.timedelta(hours=-5, minutes=-30))),
    datetime.date(1970, 1, 1), datetime.date(9999, 12, 31),
    datetime.time(23, 59, 59, 999999), datetime.time(1, 2, tzinfo=datetime.timezone.utc),
    datetime.timedelta(days=-3, seconds=5, microseconds=7),
    decimal.Decimal("3.14159"), decimal.Decimal("-1E+400"), decimal.Decimal("NaN"),
    decimal.Decimal("-Infinity"),
    uuid.UUID(int=0), uuid.UUID("12345678-1234-5678-1234-567812345678"),
    {"nested": [{"a": (1, {2.5, "s"})}, [b"x", None]], "when": datetime.date(2020, 2, 29)},
    list(range(40)), {i: str(i) for i in range(40)},
]
# Big enough to be LZ4-compressed by encode_entry (compress_min 1024).
COMPRESSIBLE: list[object] = ["a" * 5000, list(range(600)), {str(i): i for i in range(300)},
                              b"\x00" * 4096, [{"k": "v" * 50}] * 40]


def write(target: str, name: str, data: bytes, kind: str = "corpus") -> None:
    d = HERE / kind / target
    d.mkdir(parents=True, exist_ok=True)
    (d / name).write_bytes(data)


def seed(target: str, data: bytes) -> None:
    write(target, hashlib.sha1(data).hexdigest()[:16], data)


# ------------------------------------------------------------------ corpora


def entry_corpus() -> None:
    for v in VALUES + COMPRESSIBLE:
        seed("entry", _core.encode_entry(v))
    for payload in (b"", b"x", b"\x00" * 2000, bytes(range(256)) * 8):
        for ser in (1, 2, 3):
            seed("entry", _core.frame(payload, serializer=ser))
            seed("entry", _core.frame(payload, serializer=ser, compress_min=1))


def seal_corpus() -> None:
    kr = _core.Keyring(bytes(32))  # the harness's master key
    for v in VALUES[:30] + COMPRESSIBLE[:2]:
        seed("seal", kr.seal_value(v))
    for pt in (b"", b"p", b"q" * 100):
        seed("seal", kr.seal(pt))
    # Compressed before encryption (opt-in; the harness seals with
    # compress_min=64 too).
    krz = _core.Keyring(bytes(32), compress_min=64)
    for v in COMPRESSIBLE[:2]:
        seed("seal", krz.seal_value(v))


def py_decode_corpus() -> None:
    for v in VALUES + COMPRESSIBLE:
        seed("py_decode", _core.pack(v))
    for v in VALUES[::4] + COMPRESSIBLE[:2]:
        seed("py_decode", _core.encode_entry(v))


def resp(*replies: bytes) -> bytes:
    return b"".join(replies)


def bulk(b: bytes) -> bytes:
    return b"$%d\r\n%s\r\n" % (len(b), b)


def array(*items: bytes) -> bytes:
    return b"*%d\r\n" % len(items) + b"".join(items)


def redis_corpus() -> None:
    simple = [b"+PONG\r\n", b"+OK\r\n", b":0\r\n", b":-9223372036854775808\r\n",
              b":9223372036854775807\r\n", b"$-1\r\n", b"*-1\r\n", b"*0\r\n", bulk(b""),
              bulk(b"hello"), bulk(b"\r\n\x00binary\xff"), bulk(b"v" * 1000),
              b"-ERR unknown command 'X'\r\n", b"-WRONGTYPE Operation against a key\r\n",
              b"-NOAUTH Authentication required.\r\n", b"-WRONGPASS invalid\r\n",
              array(bulk(b"a"), b":1\r\n", b"$-1\r\n"),
              array(array(bulk(b"0"), array(bulk(b"k1"), bulk(b"k2")))),  # SCAN
              array(array(array(b":1\r\n"))), array(*[b":%d\r\n" % i for i in range(20)])]
    for r in simple:
        seed("redis_reply", r * 3)  # three PINGs, three replies
        seed("redis_reply", r)
    seed("redis_reply", b"+PONG\r\n" + bulk(b"x") + array(b":1\r\n", bulk(b"y")))
    # Hostile headers: huge, negative, wrapping, unterminated.
    for h in (b"$9223372036854775807\r\n", b"$9223372036854775806\r\nab\r\n", b"$4294967296\r\n",
              b"$2147483647\r\n", b"$-2\r\n", b"*2147483648\r\n", b"*4294967295\r\n",
              b"*1048576\r\n", b"*-2\r\n", b"$1" + b"0" * 40 + b"\r\n", b"+" + b"s" * 2000,
              b":12a\r\n", b"*1\r\n" * 10 + b":1\r\n", b"?\r\n", b"$3\r\nabc", b"$3\r\nabcXY"):
        seed("redis_reply", h)


def hashcount_corpus() -> None:
    # max_share byte, 8 seed bytes, then hashes (0x80|b: one byte, else 8).
    seed("hashcount", b"\x1f" + bytes(8) + b"\x81" * 40)
    seed("hashcount", b"\x00" + b"\x01" * 8 + b"\x81\x82" * 10)
    seed("hashcount", b"\x05" + bytes(8) + b"".join(struct.pack("<Q", i << 40) for i in range(50)))
    seed("hashcount", b"\x1f" + b"\xff" * 8 + bytes(range(0x80, 0x100)))


def interop_corpus() -> None:
    # The published interop/v1 vectors (tests/vectors/protocol/) and a few
    # shapes a reader must refuse: a CK frame prefix, 0xc1, an extension.
    import json

    path = HERE.parent / "tests" / "vectors" / "protocol" / "interop-mode.json"
    vectors = json.loads(path.read_text("utf-8"))
    for v in vectors["key_vectors"][:12]:
        seed("interop", bytes.fromhex(v["canonical_args_hex"]))
    for v in vectors["value_vectors"]:
        seed("interop", bytes.fromhex(v["canonical_msgpack_hex"]))
    seed("interop", bytes.fromhex(vectors["encryption_vectors"][0]["ciphertext_hex"]))
    for h in (b"CK\x01\x00", b"\xc1", b"\xc7\x01\x01\xff"):
        seed("interop", h)


# ------------------------------------------------------------- regressions


def file_record_corpus() -> None:
    """Records as the file store writes them (read back from a scratch
    directory), and damaged ones kept as regressions."""
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        store = _core.FileStore(tmp + "/c", 1 << 30, 1 << 20, 1 << 20)
        samples = [("k", b""), ("cachekit:mod.f:" + "ab" * 16, b"\x00\x01value"),
                   ("", b"empty name"), ("n" * 300, bytes(range(256)) * 4)]
        for i, (name, value) in enumerate(samples):
            store.set(name, value, 60_000 if i % 2 else 0)
        records = [p.read_bytes() for p in sorted(Path(tmp, "c").iterdir()) if len(p.name) == 32]
    for rec in records:
        seed("file_record", rec)
    rec = bytearray(records[0])
    def reg(name: str, data: bytes) -> None:
        write("file_record", name, data, kind="regressions")
    reg("truncated-header", bytes(rec[:40]))
    reg("truncated-body", bytes(rec[:-1]))
    huge = bytearray(rec)
    set_le32(huge, 24, 0xFFFFFFFF)  # name_len past the end
    reg("huge-name-len", bytes(huge))
    wrap = bytearray(rec)
    wrap[32:40] = b"\xff" * 8  # value_len that wraps a size_t sum
    reg("wrapping-value-len", bytes(wrap))
    flip = bytearray(rec)
    flip[-1] ^= 0xFF
    reg("bad-checksum", bytes(flip))
    reg("foreign-magic", b"CKF2" + bytes(rec[4:]))


def set_le32(b: bytearray, off: int, v: int) -> None:
    b[off:off + 4] = struct.pack("<I", v)


def hostile() -> None:
    def reg(target: str, name: str, data: bytes) -> None:
        write(target, "hostile-" + name, data, kind="regressions")

    # One hash for every key: 100 ints c + k * (2**61 - 1) (bigint ext).
    flood = [5 + k * MERSENNE for k in range(100)]
    reg("py_decode", "hash-flood-map", _core.pack({k: None for k in flood}))
    reg("py_decode", "hash-flood-set", _core.pack(set(flood)))
    reg("py_decode", "hash-flood-frozenset", _core.pack(frozenset(flood)))
    reg("entry", "hash-flood-map-entry", _core.encode_entry({k: 0 for k in flood}))
    # Deep nesting: arrays, maps, tuple extensions.
    reg("py_decode", "deep-array", b"\x91" * 10000 + b"\xc0")
    reg("py_decode", "deep-map", b"\x81\xc0" * 5000 + b"\xc0")
    deep = b"\xc0"
    for _ in range(80):
        deep = b"\xc7" + bytes([len(deep) + 1]) + b"\x02" + b"\x91" + deep if len(deep) < 250 else deep
    reg("py_decode", "deep-tuple-ext", deep)
    reg("py_decode", "nested-array-claims", b"\xdd\x00\x00\xff\xff" * 64)
    # Huge length claims.
    for name, data in (("array32", b"\xdd\xff\xff\xff\xff"), ("map32", b"\xdf\xff\xff\xff\xff"),
                       ("str32", b"\xdb\xff\xff\xff\xff"), ("bin32", b"\xc6\xff\xff\xff\xff"),
                       ("ext32", b"\xc9\xff\xff\xff\xff\x02"), ("array16", b"\xdc\xff\xff\xc0")):
        reg("py_decode", "huge-" + name, data)
    e = bytearray(_core.encode_entry(b"v"))
    set_le32(e, 8, 0xFFFFFFFF)  # original_len far past max_size
    reg("entry", "huge-original-len", bytes(e))
    # Truncated LZ4: keep the header's lengths consistent with the cut.
    c = bytearray(_core.encode_entry("a" * 5000))
    assert c[3] & 1, "expected a compressed entry"
    for cut in (1, 4, len(c) - 24 - 2):
        t = bytearray(c[:len(c) - cut])
        set_le32(t, 12, len(t) - 24)
        reg("entry", f"truncated-lz4-{cut}", bytes(t))
    # A compressed entry claiming the maximal ratio over junk.
    j = bytearray(c[:24]) + b"\xff" * 16
    set_le32(j, 8, 16 * 255)
    set_le32(j, 12, 16)
    reg("entry", "lz4-junk-max-ratio", bytes(j))
    # Sealed entries: truncated, wrapped-key length pointing past the header.
    kr = _core.Keyring(bytes(32))
    s = bytearray(kr.seal_value({"secret": 1}))
    reg("seal", "truncated", bytes(s[:40]))
    w = bytearray(s)
    w[33] = 255
    reg("seal", "wrapped-len-255", bytes(w))
    x = bytearray(s)
    set_le32(x, 8, 0xFFFFFFF0)
    set_le32(x, 12, 0xFFFFFFF0)
    reg("seal", "huge-lengths", bytes(x))
    # Compressed sealed entry whose original_len claims more than max_ratio.
    z = bytearray(_core.Keyring(bytes(32), compress_min=64).seal_value("a" * 5000))
    set_le32(z, 8, int.from_bytes(z[12:16], "little") * 256)
    reg("seal", "compressed-over-ratio", bytes(z))
    # RESP: huge bulk and array headers, deep arrays (RedisClient cannot take
    # raw bytes; the Python test feeds these to the other decoders only).
    reg("redis_reply", "huge-bulk", b"$9223372036854775807\r\n")
    reg("redis_reply", "wrapping-bulk", b"$9223372036854775806\r\nab\r\n")
    reg("redis_reply", "huge-array", b"*4294967295\r\n")
    reg("redis_reply", "deep-array", b"*1\r\n" * 100 + b":1\r\n")


def main() -> int:
    entry_corpus()
    seal_corpus()
    py_decode_corpus()
    redis_corpus()
    hashcount_corpus()
    interop_corpus()
    file_record_corpus()
    hostile()
    for kind in ("corpus", "regressions"):
        for d in sorted((HERE / kind).iterdir()):
            print(f"fuzz/{kind}/{d.name}: {len(list(d.iterdir()))} files")
    return 0


if __name__ == "__main__":
    sys.exit(main())
