"""Round trips by value size (100 B to 10 MB), plain and encrypted, against
msgpack and msgpack + cryptography's AESGCM in the same run. The value is
{"payload": random bytes}: incompressible, so our entry pays its LZ4 attempt
and gains nothing from it (the worst case for us). PyPI's cachekit 0.24.1
serializers are timed by scripts/bench_report.py through a subprocess
(scripts/bench_ref_timer.py sizes), with our StandardSerializer and
EncryptionWrapper timed by the same loop.
"""

from __future__ import annotations

import os

import msgpack
import pytest

from cachekit import _core

aead = pytest.importorskip("cryptography.hazmat.primitives.ciphers.aead")

SIZES = {"100 B": 100, "1 KB": 1_000, "10 KB": 10_000, "100 KB": 100_000, "1 MB": 1_000_000,
         "10 MB": 10_000_000}
VALUES = {label: {"payload": os.urandom(n)} for label, n in SIZES.items()}
KEYRING = _core.Keyring(bytes.fromhex("ab" * 32))
CACHE_KEY = b"cachekit:bench.sizes:\x91\x01"
AES = aead.AESGCM(bytes(32))
NONCE = bytes(12)


def msgpack_rt(v):
    return msgpack.unpackb(msgpack.packb(v))


def msgpack_aes_rt(v):
    return msgpack.unpackb(AES.decrypt(NONCE, AES.encrypt(NONCE, msgpack.packb(v), CACHE_KEY), CACHE_KEY))


def entry_rt(v):
    return _core.decode_entry(_core.encode_entry(v))


def sealed_rt(v):
    return KEYRING.open_value(KEYRING.seal_value(v, cache_key=CACHE_KEY), cache_key=CACHE_KEY)


IMPLS = {"plain": {"msgpack pack+unpack": msgpack_rt, "cachekit entry (encode+decode)": entry_rt},
         "encrypted": {"msgpack + AESGCM": msgpack_aes_rt, "cachekit Keyring seal+open": sealed_rt}}
PARAMS = [(kind, size, impl) for kind in IMPLS for size in SIZES for impl in IMPLS[kind]]


@pytest.mark.parametrize(("kind", "size", "impl"), PARAMS)
def test_round_trip_by_size(benchmark, recorder, kind, size, impl):
    fn, value = IMPLS[kind][impl], VALUES[size]
    assert fn(value) == value
    benchmark(fn, value)
    recorder(benchmark, f"round trip by size, {kind}, {size}", impl, baseline=impl.startswith("msgpack"))
