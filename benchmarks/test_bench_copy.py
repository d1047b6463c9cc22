"""A fresh copy of a cached value: _core.copy_value against copy.deepcopy
(the baseline) and decoding the stored bytes (_core.unpack of pre-packed
bytes, what an L1 store holding bytes pays on each hit), for a small dict
and a ~10 KB nested structure. Target: copy_value at least 3x faster than
deepcopy, which test_copy_value_beats_deepcopy checks in every run."""

from __future__ import annotations

import copy
import random
import timeit

import pytest

from cachekit import _core

_rnd = random.Random(7)
VALUES = {
    "small dict": {"id": 1, "name": "a", "people": ["x", "y"]},
    "10 KB nested": {
        "rows": [
            {"id": i, "name": f"user-{i}", "score": _rnd.random(), "tags": ["a", "b"],
             "pos": (i, i + 1)}
            for i in range(150)
        ],
        "meta": {"total": 150, "pages": [1, 2, 3]},
    },
}
PACKED = {name: _core.pack(value) for name, value in VALUES.items()}

COPIERS = {
    "copy.deepcopy": (copy.deepcopy, True),
    "_core.copy_value": (_core.copy_value, False),
}


def test_sizes():
    assert len(PACKED["small dict"]) < 100
    assert 8_000 < len(PACKED["10 KB nested"]) < 12_000


@pytest.mark.parametrize("value_name", list(VALUES))
@pytest.mark.parametrize("copier", list(COPIERS))
def test_copy(benchmark, recorder, value_name, copier):
    fn, is_baseline = COPIERS[copier]
    value = VALUES[value_name]
    assert fn(value) == value
    benchmark(fn, value)
    recorder(benchmark, f"fresh copy, {value_name}", copier, baseline=is_baseline)


@pytest.mark.parametrize("value_name", list(VALUES))
def test_decode_stored_bytes(benchmark, recorder, value_name):
    data = PACKED[value_name]
    assert _core.unpack(data) == VALUES[value_name]
    benchmark(_core.unpack, data)
    recorder(benchmark, f"fresh copy, {value_name}", "_core.unpack(stored bytes)")


@pytest.mark.parametrize("value_name", list(VALUES))
def test_copy_value_beats_deepcopy(value_name):
    """Runs with --benchmark-disable too: the best of several short timeit
    runs of each, measured alternately in this process."""
    value = VALUES[value_name]
    number = 2000 if value_name == "small dict" else 50
    fast = slow = float("inf")
    for _ in range(5):
        fast = min(fast, timeit.timeit(lambda: _core.copy_value(value), number=number))
        slow = min(slow, timeit.timeit(lambda: copy.deepcopy(value), number=number))
    assert slow / fast >= 3, f"copy_value only {slow / fast:.1f}x faster than deepcopy"
