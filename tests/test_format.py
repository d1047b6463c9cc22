"""Tests of the entry frame (src/core/ck_format.c, src/binding/py_format.c, docs/format.md).

The frame is read back from a shared backend, so most tests here are about
hostile input: every truncation, every single-bit flip and forged lengths
must raise IntegrityError and nothing else.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import datetime
import os
import struct
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from cachekit import _core

IntegrityError = _core.IntegrityError

HEADER = struct.Struct("<2sBBBBHIIQ")  # docs/format.md, "Header"
H = HEADER.size
assert H == 24

COMPRESSED = 0x01
ENCRYPTED = 0x02
MSGPACK, JSON, ARROW = 1, 2, 3


def compressible(n: int) -> bytes:
    """n bytes of repetitive text that LZ4 shrinks."""
    text = b"the quick brown fox jumps over the lazy dog; "
    return (text * (n // len(text) + 1))[:n]


def incompressible(n: int) -> bytes:
    return os.urandom(n)


def fields(entry: bytes) -> list:
    return list(HEADER.unpack_from(entry))


def repack(entry: bytes, **changes: int) -> bytes:
    """Rewrite header fields by name, leaving the checksum as it was."""
    names = [
        "magic", "version", "flags", "serializer", "header_len", "reserved",
        "original_len", "stored_len", "checksum",
    ]
    values = fields(entry)
    for name, value in changes.items():
        values[names.index(name)] = value
    return HEADER.pack(*values) + entry[H:]


# An independent XXH3 so the checksum rule in docs/format.md is checked
# against something other than our own C code.
def _xxh3_impl():
    try:
        import xxhash
    except ImportError:
        pass
    else:
        return lambda data, seed=0: xxhash.xxh3_64_intdigest(data, seed=seed)
    name = ctypes.util.find_library("xxhash")
    if name is None:
        return None
    lib = ctypes.CDLL(name)
    fn = lib.XXH3_64bits_withSeed
    fn.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]
    fn.restype = ctypes.c_uint64
    return lambda data, seed=0: fn(bytes(data), len(data), seed)


xxh3 = _xxh3_impl()
needs_xxh3 = pytest.mark.skipif(xxh3 is None, reason="no xxhash package or libxxhash")


def reseal(entry: bytes) -> bytes:
    """Recompute the checksum of a plain entry after editing its header."""
    plaintext = entry[H:]
    checksum = xxh3(plaintext, xxh3(entry[:16]))
    return entry[:16] + struct.pack("<Q", checksum) + entry[24:]


@pytest.fixture(scope="module")
def plain_entry() -> bytes:
    entry = _core.frame(compressible(300), compress_min=1024)
    assert not _core.read_header(entry)["compressed"]
    return entry


@pytest.fixture(scope="module")
def compressed_entry() -> bytes:
    # A repetitive run plus varied text: a few hundred bytes once compressed,
    # with both long matches and literals for the bit flips to hit.
    data = compressible(900) + b" ".join(b"key%d=%d" % (i % 7, i * 7919 % 1000) for i in range(40))
    entry = _core.frame(data)
    assert _core.read_header(entry)["compressed"]
    assert 200 < len(entry) < 600
    return entry


# ---------------------------------------------------------------------------
# Round trips and compression choice
# ---------------------------------------------------------------------------

SIZES = [0, 1, 1023, 1024, 1025, 1 << 20]


@pytest.mark.parametrize("n", SIZES)
@pytest.mark.parametrize("make", [compressible, incompressible])
def test_round_trip(n, make):
    data = make(n)
    entry = _core.frame(data)
    assert _core.unframe(entry) == (MSGPACK, data)


@pytest.mark.parametrize("n", [1024, 1025, 1 << 20])
def test_compressible_data_is_compressed(n):
    data = compressible(n)
    entry = _core.frame(data)
    header = _core.read_header(entry)
    assert header["compressed"] and header["flags"] == COMPRESSED
    assert header["original_len"] == n
    assert header["stored_len"] == len(entry) - H < n


@pytest.mark.parametrize("n", [0, 1, 1023])
def test_below_compress_min_is_stored_plain(n):
    entry = _core.frame(compressible(n))
    assert not _core.read_header(entry)["compressed"]
    assert entry[H:] == compressible(n)


@pytest.mark.parametrize("n", [1024, 1 << 20])
def test_incompressible_data_is_stored_plain(n):
    data = incompressible(n)
    entry = _core.frame(data)
    header = _core.read_header(entry)
    assert not header["compressed"]
    assert header["stored_len"] == header["original_len"] == n
    assert entry[H:] == data


def test_compress_min_is_respected():
    data = compressible(100)
    assert not _core.read_header(_core.frame(data))["compressed"]
    assert _core.read_header(_core.frame(data, compress_min=100))["compressed"]
    assert not _core.read_header(_core.frame(data, compress_min=101))["compressed"]
    assert _core.unframe(_core.frame(data, compress_min=0)) == (MSGPACK, data)


def test_empty_and_one_byte_with_compress_min_zero():
    for data in (b"", b"x"):
        entry = _core.frame(data, compress_min=0)
        assert not _core.read_header(entry)["compressed"]
        assert _core.unframe(entry) == (MSGPACK, data)


def test_highly_compressible_data_stays_within_default_ratio():
    # LZ4 tops out just under 255:1 on long runs, the default max_ratio.
    data = bytes(8 << 20)
    entry = _core.frame(data)
    header = _core.read_header(entry)
    assert header["original_len"] <= header["stored_len"] * 255
    assert _core.unframe(entry)[1] == data


@pytest.mark.parametrize("kind", [bytes, bytearray, memoryview])
@pytest.mark.parametrize("n", [10, 1 << 17])  # below and above the GIL-release threshold
def test_accepts_any_buffer(kind, n):
    data = compressible(n)
    entry = _core.frame(kind(data))
    assert _core.unframe(kind(entry)) == (MSGPACK, data)
    assert _core.read_header(kind(entry))["original_len"] == n


def test_concurrent_large_inputs():
    # Above 64 KiB the GIL is released around LZ4/XXH3; threads must not
    # see each other's buffers.
    from concurrent.futures import ThreadPoolExecutor

    inputs = [compressible(200_000 + i) for i in range(8)]

    def work(data):
        for _ in range(5):
            assert _core.unframe(_core.frame(data)) == (MSGPACK, data)
        return True

    with ThreadPoolExecutor(max_workers=4) as pool:
        assert all(pool.map(work, inputs))


@given(data=st.binary(max_size=4096), compress_min=st.integers(0, 5000),
       serializer=st.sampled_from([MSGPACK, JSON, ARROW]))
@settings(max_examples=300, deadline=None)
def test_round_trip_property(data, compress_min, serializer):
    entry = _core.frame(data, serializer=serializer, compress_min=compress_min)
    header = _core.read_header(entry)
    assert header["original_len"] == len(data)
    if header["compressed"]:
        assert len(data) >= compress_min and header["stored_len"] < len(data)
    assert _core.unframe(entry) == (serializer, data)


# ---------------------------------------------------------------------------
# Header fields
# ---------------------------------------------------------------------------


def test_read_header_fields(plain_entry):
    header = _core.read_header(plain_entry)
    magic, version, flags, ser, hlen, reserved, orig, stored, checksum = fields(plain_entry)
    assert magic == b"CK"
    assert header == {
        "version": 1,
        "flags": 0,
        "compressed": False,
        "encrypted": False,
        "serializer": MSGPACK,
        "header_len": 24,
        "original_len": 300,
        "stored_len": 300,
        "checksum": checksum,
    }
    assert (version, flags, ser, hlen, reserved, orig, stored) == (1, 0, 1, 24, 0, 300, 300)


@pytest.mark.parametrize("serializer", [MSGPACK, JSON, ARROW])
def test_serializer_id_is_preserved(serializer):
    entry = _core.frame(b"payload", serializer=serializer)
    assert _core.read_header(entry)["serializer"] == serializer
    assert _core.unframe(entry) == (serializer, b"payload")


@needs_xxh3
@pytest.mark.parametrize("data", [b"", b"abc", compressible(5000), incompressible(3000)])
def test_checksum_matches_documented_rule(data):
    entry = _core.frame(data)
    expected = xxh3(data, xxh3(entry[:16]))
    assert _core.read_header(entry)["checksum"] == expected


def test_positional_and_keyword_arguments():
    data = compressible(2000)
    assert _core.frame(data, 2, 0) == _core.frame(data, serializer=2, compress_min=0)
    entry = _core.frame(data)
    assert _core.unframe(entry, 1 << 20, 255) == _core.unframe(entry, max_ratio=255)


@pytest.mark.parametrize(
    "call, exc",
    [
        (lambda: _core.frame(b"x", serializer=0), ValueError),
        (lambda: _core.frame(b"x", serializer=4), ValueError),
        (lambda: _core.frame(b"x", compress_min=-1), ValueError),
        (lambda: _core.frame(b"x", compress_min=1.5), TypeError),
        (lambda: _core.frame("text"), TypeError),
        (lambda: _core.frame(), TypeError),
        (lambda: _core.frame(b"x", 1, 2, 3), TypeError),
        (lambda: _core.frame(b"x", bogus=1), TypeError),
        (lambda: _core.frame(payload=b"x"), TypeError),
        (lambda: _core.frame(b"x", 1, serializer=1), TypeError),
        (lambda: _core.unframe(b"x", max_size=-1), ValueError),
        (lambda: _core.unframe(b"x", max_ratio=0), ValueError),
        (lambda: _core.unframe(b"x", max_ratio=1 << 32), ValueError),
        (lambda: _core.unframe(b"x", max_size=1 << 70), OverflowError),
        (lambda: _core.read_header(42), TypeError),
    ],
)
def test_bad_arguments(call, exc):
    with pytest.raises(exc):
        call()


# ---------------------------------------------------------------------------
# Hostile input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["plain_entry", "compressed_entry"])
def test_every_truncation_is_refused(which, request):
    entry = request.getfixturevalue(which)
    for cut in range(len(entry)):
        with pytest.raises(IntegrityError):
            _core.unframe(entry[:cut])
    with pytest.raises(IntegrityError, match="stored_len"):
        _core.unframe(entry + b"\0")


@pytest.mark.parametrize("which", ["plain_entry", "compressed_entry"])
def test_every_bit_flip_is_refused(which, request):
    entry = request.getfixturevalue(which)
    original = _core.unframe(entry)
    harmless = 0
    for i in range(len(entry)):
        for bit in range(8):
            damaged = bytearray(entry)
            damaged[i] ^= 1 << bit
            # IntegrityError and nothing else: never another exception, never
            # a different value.
            try:
                result = _core.unframe(bytes(damaged))
            except IntegrityError:
                continue
            # The checksum covers the plaintext, not its LZ4 encoding, and a
            # few LZ4 flips decode to the very same bytes (an offset that
            # points at an equal earlier run, the unused match nibble of the
            # last token). Those are harmless; anything else is a failure.
            assert which == "compressed_entry" and i >= H, (i, bit)
            assert result == original, (i, bit)
            harmless += 1
    assert harmless < 16


@given(data=st.binary(max_size=200))
@settings(max_examples=500, deadline=None)
def test_arbitrary_bytes_only_raise_integrity_error(data):
    for entry in (data, b"CK\x01" + data, b"CK\x01\x01\x01\x18\x00\x00" + data):
        try:
            _core.unframe(entry)
        except IntegrityError:
            pass


def test_bad_magic_and_version(plain_entry):
    with pytest.raises(IntegrityError, match="magic"):
        _core.unframe(b"XY" + plain_entry[2:])
    for version in (0, 2, 255):
        with pytest.raises(IntegrityError, match="version"):
            _core.unframe(repack(plain_entry, version=version))


@pytest.mark.parametrize("flag", [0x04, 0x10, 0x20, 0x40, 0x80, 0x0A])
def test_unknown_flag_is_refused(plain_entry, flag):
    # 0x04 EXPIRES is valid only with ENCRYPTED, 0x0A is SIGNED | ENCRYPTED.
    with pytest.raises(IntegrityError, match="flags"):
        _core.unframe(repack(plain_entry, flags=flag))
    with pytest.raises(IntegrityError, match="flags"):
        _core.read_header(repack(plain_entry, flags=flag))


def test_signed_flag_needs_the_signature_slot(plain_entry):
    # SIGNED (0x08) plain entries have a 56-byte header; 24 is malformed.
    with pytest.raises(IntegrityError, match="header_len"):
        _core.unframe(repack(plain_entry, flags=0x08))


@pytest.mark.parametrize("reserved", [0x0001, 0x0100, 0xFFFF])
def test_reserved_bytes_must_be_zero(plain_entry, reserved):
    with pytest.raises(IntegrityError, match="reserved"):
        _core.unframe(repack(plain_entry, reserved=reserved))


@pytest.mark.parametrize("serializer", [0, 4, 255])
def test_unknown_serializer_is_refused(plain_entry, serializer):
    with pytest.raises(IntegrityError, match="serializer"):
        _core.unframe(repack(plain_entry, serializer=serializer))


@pytest.mark.parametrize("header_len", [0, 23, 25, 255])
def test_plain_header_len_must_be_24(plain_entry, header_len):
    with pytest.raises(IntegrityError, match="header_len"):
        _core.unframe(repack(plain_entry, header_len=header_len))


@needs_xxh3
def test_header_fields_are_covered_by_checksum(plain_entry):
    # Serializer 1 -> 2 leaves a valid-looking header: only the checksum,
    # seeded by the header hash, notices.
    forged = repack(plain_entry, serializer=JSON)
    with pytest.raises(IntegrityError, match="checksum"):
        _core.unframe(forged)
    assert _core.unframe(reseal(forged)) == (JSON, plain_entry[H:])


def test_payload_flip_is_a_checksum_error(plain_entry):
    damaged = bytearray(plain_entry)
    damaged[-1] ^= 0x01
    with pytest.raises(IntegrityError, match="checksum mismatch"):
        _core.unframe(bytes(damaged))


FORGED = 0xFFFFFFFF


def _assert_refused_quickly(entry, match, **limits):
    start = time.perf_counter()
    # MemoryError would mean we tried to allocate the forged size.
    with pytest.raises(IntegrityError, match=match):
        _core.unframe(entry, **limits)
    assert time.perf_counter() - start < 0.1


def test_forged_original_len_beyond_max_size(compressed_entry):
    forged = repack(compressed_entry, original_len=FORGED)
    _assert_refused_quickly(forged, "max_size")
    with pytest.raises(IntegrityError, match="max_size"):
        _core.decode_entry(forged)


def test_forged_original_len_beyond_ratio(compressed_entry):
    stored = _core.read_header(compressed_entry)["stored_len"]
    # With max_size out of the way, the ratio bound must still refuse it.
    _assert_refused_quickly(repack(compressed_entry, original_len=FORGED),
                            "max_ratio|implausible", max_size=1 << 40)
    _assert_refused_quickly(repack(compressed_entry, original_len=stored * 1000),
                            "max_ratio", max_size=1 << 40)
    _assert_refused_quickly(repack(compressed_entry, original_len=stored * 255 + 1),
                            "max_ratio")
    # At the bound the header passes, and LZ4 itself finds the lie.
    with pytest.raises(IntegrityError, match="decompressed|LZ4"):
        _core.unframe(repack(compressed_entry, original_len=stored * 255))


def test_forged_original_len_in_plain_entry(plain_entry):
    _assert_refused_quickly(repack(plain_entry, original_len=FORGED), "original_len",
                            max_size=1 << 40)
    _assert_refused_quickly(repack(plain_entry, original_len=299), "original_len")


def test_compressed_flag_on_plain_payload(plain_entry):
    # Claims compression but stored_len == original_len: writers never do that.
    with pytest.raises(IntegrityError, match="implausible"):
        _core.unframe(repack(plain_entry, flags=COMPRESSED))


def test_limits_are_applied():
    data = compressible(5000)
    entry = _core.frame(data)
    stored = _core.read_header(entry)["stored_len"]
    assert _core.unframe(entry, max_size=5000)[1] == data
    with pytest.raises(IntegrityError, match="max_size"):
        _core.unframe(entry, max_size=4999)
    ratio = -(-5000 // stored)  # ceil
    assert _core.unframe(entry, max_ratio=ratio)[1] == data
    with pytest.raises(IntegrityError, match="max_ratio"):
        _core.unframe(entry, max_ratio=ratio - 1)
    plain = _core.frame(b"x" * 10, compress_min=1 << 20)
    with pytest.raises(IntegrityError, match="max_size"):
        _core.unframe(plain, max_size=9)


def _encrypted_entry(payload: bytes, crypto: bytes = bytes(28), checksum: int = 0) -> bytes:
    """A header the way the crypto layer will write one: H > 24, checksum 0."""
    header = HEADER.pack(b"CK", 1, ENCRYPTED, MSGPACK, H + len(crypto), 0,
                         len(payload), len(payload), checksum)
    return header + crypto + payload


def test_encrypted_entry_is_refused_by_unframe():
    entry = _encrypted_entry(b"ciphertext")
    with pytest.raises(IntegrityError, match="encrypted"):
        _core.unframe(entry)
    with pytest.raises(IntegrityError, match="encrypted"):
        _core.decode_entry(entry)


def test_encrypted_header_is_parsed():
    entry = _encrypted_entry(b"ciphertext", crypto=bytes(231))
    header = _core.read_header(entry)
    assert header["encrypted"] and not header["compressed"]
    assert header["header_len"] == 255
    assert header["stored_len"] == header["original_len"] == len(b"ciphertext")
    assert header["checksum"] == 0
    # H counts the crypto block, so cutting into it is a truncation.
    with pytest.raises(IntegrityError, match="truncated"):
        _core.read_header(entry[:100])


def test_encrypted_header_needs_zero_checksum():
    with pytest.raises(IntegrityError, match="checksum must be 0"):
        _core.read_header(_encrypted_entry(b"ciphertext", checksum=1))


def test_encrypted_header_len_at_least_24():
    entry = bytearray(_encrypted_entry(b"abc", crypto=b""))
    assert _core.read_header(bytes(entry))["header_len"] == 24
    entry[5] = 23
    with pytest.raises(IntegrityError, match="header_len"):
        _core.read_header(bytes(entry))


def test_read_header_does_not_read_the_payload(compressed_entry):
    damaged = bytearray(compressed_entry)
    damaged[-1] ^= 0xFF
    assert _core.read_header(bytes(damaged)) == _core.read_header(compressed_entry)


# ---------------------------------------------------------------------------
# encode_entry / decode_entry (need the msgpack codec, src/binding/py_codec_*.c)
# ---------------------------------------------------------------------------

needs_codec = pytest.mark.skipif(not hasattr(_core, "pack"), reason="codec not built yet")

VALUES = [
    None,
    True,
    0,
    -1,
    2**63 - 1,
    1.5,
    "",
    "héllo",
    b"\x00\xff",
    [1, [2, [3]]],
    {"a": 1},
    {"nested": {"list": [1, 2.5, "x", None], "bytes": b"raw"}},
]


@needs_codec
@pytest.mark.parametrize("value", VALUES, ids=repr)
def test_encode_decode_round_trip(value):
    entry = _core.encode_entry(value)
    assert _core.read_header(entry)["serializer"] == MSGPACK
    result = _core.decode_entry(entry)
    assert result == value and type(result) is type(value)


@needs_codec
def test_encode_decode_large_value():
    value = {"blob": compressible(1_000_000), "items": list(range(1000))}
    entry = _core.encode_entry(value)
    header = _core.read_header(entry)
    assert header["compressed"] and header["original_len"] > 1_000_000
    assert _core.decode_entry(entry) == value
    assert _core.decode_entry(bytearray(entry)) == value


@needs_codec
def test_encode_entry_compress_min():
    value = "x" * 2000
    assert _core.read_header(_core.encode_entry(value))["compressed"]
    assert not _core.read_header(_core.encode_entry(value, compress_min=1 << 20))["compressed"]
    with pytest.raises(ValueError):
        _core.encode_entry(value, compress_min=-1)


@needs_codec
def test_encode_entry_plaintext_is_the_codec_output():
    value = {"k": [1, 2, 3]}
    serializer, plaintext = _core.unframe(_core.encode_entry(value))
    assert serializer == MSGPACK
    assert plaintext == _core.pack(value)


@needs_codec
def test_encode_entry_unsupported_type():
    with pytest.raises(TypeError):
        _core.encode_entry(object())


@needs_codec
def test_extension_types_round_trip():
    value = [(1, 2), {3}, frozenset({4}), bytearray(b"ba"), 2**100,
             datetime.date(2024, 2, 29), datetime.timedelta(days=1, microseconds=5)]
    assert _core.decode_entry(_core.encode_entry(value)) == value


@pytest.mark.parametrize("serializer", [JSON, ARROW])
def test_decode_entry_refuses_other_serializers(serializer):
    # Documented choice: IntegrityError, like any entry this reader cannot use,
    # so the cache treats it as a miss. Needs no codec: it fails before unpacking.
    entry = _core.frame(b'{"a": 1}', serializer=serializer)
    with pytest.raises(IntegrityError, match="serializer"):
        _core.decode_entry(entry)


def test_decode_entry_refuses_damaged_entry(plain_entry):
    with pytest.raises(IntegrityError):
        _core.decode_entry(plain_entry[:-1])
