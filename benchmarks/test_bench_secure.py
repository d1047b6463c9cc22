"""Plain vs encrypted round trips: serialize + (encrypt + decrypt) +
deserialize for a small dict, 10 KB and 1 MB, in the same run.
Target: encryption adds at most 1 us to the small round trip."""

from __future__ import annotations

import random

import pytest

from cachekit import _core

_rnd = random.Random(7)
VALUES = {
    "small dict": {"id": 42, "name": "Ada Lovelace", "email": "ada@example.com", "ssn": "078-05-1120"},
    "10 KB": {"rows": [{"id": i, "name": f"user-{i}", "v": _rnd.random()} for i in range(200)]},
    "1 MB": {"blob": _rnd.randbytes(1 << 20)},
}
KEYRING = _core.Keyring(bytes.fromhex("ab" * 32))
CACHE_KEY = b"cachekit:bench.f:\x91\x01"


def plain_round_trip(value):
    return _core.decode_entry(_core.encode_entry(value))


def encrypted_round_trip(value):
    return KEYRING.open_value(KEYRING.seal_value(value, cache_key=CACHE_KEY), cache_key=CACHE_KEY)


MODES = {"plain (frame+checksum)": (plain_round_trip, True), "encrypted (AES-256-GCM)": (encrypted_round_trip, False)}


@pytest.mark.parametrize("value_name", list(VALUES))
@pytest.mark.parametrize("mode", list(MODES))
def test_round_trip(benchmark, recorder, value_name, mode):
    fn, is_baseline = MODES[mode]
    value = VALUES[value_name]
    assert fn(value) == value
    benchmark(fn, value)
    recorder(benchmark, f"serialize+protect+open+deserialize, {value_name}", mode, baseline=is_baseline)


# An @cache.secure L1 hit (MAC of the key bytes, L1 probe, AES-256-GCM open,
# decode) against functools.lru_cache and against msgpack + cryptography's
# AESGCM opening the same kind of value, measured in the same run.
import functools  # noqa: E402

from cachekit import cache  # noqa: E402

_SMALL = {"id": 42, "name": "Ada Lovelace", "ssn": "078-05-1120"}


@cache.secure(master_key="ab" * 32, ttl=300, backend=None)
def _secure(x):
    return dict(_SMALL, id=x)


@functools.lru_cache(maxsize=None)
def _lru(x):
    return dict(_SMALL, id=x)


def _msgpack_aesgcm():
    msgpack = pytest.importorskip("msgpack")
    aead = pytest.importorskip("cryptography.hazmat.primitives.ciphers.aead")
    aes = aead.AESGCM(bytes(32))
    nonce, aad = bytes(12), CACHE_KEY
    blob = aes.encrypt(nonce, msgpack.packb(_SMALL), aad)
    return lambda: msgpack.unpackb(aes.decrypt(nonce, blob, aad))


HITS = {"functools.lru_cache": (lambda: _lru(1), True), "cachekit @cache.secure": (lambda: _secure(1), False)}


@pytest.mark.parametrize("name", [*HITS, "msgpack + cryptography AESGCM open"])
def test_secure_l1_hit(benchmark, recorder, name):
    if name in HITS:
        fn, is_baseline = HITS[name]
    else:
        fn, is_baseline = _msgpack_aesgcm(), False
    assert fn()["ssn"] == "078-05-1120"
    benchmark(fn)
    recorder(benchmark, "secure L1 hit, small dict", name, baseline=is_baseline)
