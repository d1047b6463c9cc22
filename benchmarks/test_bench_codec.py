"""Codec round trip (encode + decode) against the msgpack package, and the
full entry (codec + frame + checksum + LZ4) for small, 10 KB and 1 MB values."""

from __future__ import annotations

import random

import msgpack
import pytest

from cachekit import _core

_rnd = random.Random(42)
VALUES = {
    "small dict": {"id": 42, "name": "Ada Lovelace", "email": "ada@example.com", "active": True,
                   "score": 98.5, "tags": ["admin", "math"]},
    "10 KB": {"rows": [{"id": i, "name": f"user-{i}", "v": _rnd.random()} for i in range(200)]},
    "1 MB": {"blob": _rnd.randbytes(512 * 1024), "text": "lorem ipsum " * 40000},
}


def _msgpack_roundtrip(value):
    return msgpack.unpackb(msgpack.packb(value), strict_map_key=False)


def _core_roundtrip(value):
    return _core.unpack(_core.pack(value))


def _entry_roundtrip(value):
    return _core.decode_entry(_core.encode_entry(value))


CODECS = {
    "msgpack (PyPI)": (_msgpack_roundtrip, True),
    "cachekit codec": (_core_roundtrip, False),
    "cachekit entry (codec+frame)": (_entry_roundtrip, False),
}


@pytest.mark.parametrize("value_name", list(VALUES))
@pytest.mark.parametrize("codec", list(CODECS))
def test_roundtrip(benchmark, recorder, value_name, codec):
    fn, is_baseline = CODECS[codec]
    value = VALUES[value_name]
    assert fn(value) == value
    benchmark(fn, value)
    recorder(benchmark, f"round trip, {value_name}", codec, baseline=is_baseline)
