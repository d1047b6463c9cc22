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
