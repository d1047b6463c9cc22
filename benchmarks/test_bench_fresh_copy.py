"""What a hit of a function returning a mutable value costs, in the same run:
cachekit's fresh copy per hit against functools.lru_cache (which shares one
object between callers) and against lru_cache followed by copy.deepcopy (what
a careful user of lru_cache does to get the same guarantee)."""

from __future__ import annotations

import copy
import functools

import pytest

from cachekit import cache

SMALL = {"id": 7, "name": "alice", "people": ["bob", "carol"]}
# About 10 KB of msgpack: 100 records of a few fields each.
LARGE = {
    "rows": [
        {"id": i, "name": f"user-{i}", "tags": ["a", "b", "c"], "score": i * 1.5, "active": i % 2 == 0}
        for i in range(100)
    ],
    "total": 100,
}

VALUES = {"small dict": SMALL, "10 KB structure": LARGE}


def _make_cases(value):
    @functools.lru_cache(maxsize=None)
    def lru(n):
        return copy.deepcopy(value)

    def lru_then_deepcopy(n):
        return copy.deepcopy(lru(n))

    @cache(backend=None)
    def fresh(n):
        return copy.deepcopy(value)

    @cache(backend=None, copy=False)
    def shared(n):
        return copy.deepcopy(value)

    return {
        "functools.lru_cache (shared)": (lru, True),
        "lru_cache + copy.deepcopy": (lru_then_deepcopy, False),
        "cachekit @cache (fresh copy)": (fresh, False),
        "cachekit @cache(copy=False)": (shared, False),
    }


CASES = {(v, name): case for v, value in VALUES.items() for name, case in _make_cases(value).items()}


@pytest.mark.parametrize("value_name,name", list(CASES))
def test_mutable_hit(benchmark, recorder, value_name, name):
    fn, is_baseline = CASES[(value_name, name)]
    expected = VALUES[value_name]
    fn(1)  # warm: the timed calls are all hits

    def hits():
        for _ in range(10):
            fn(1)

    benchmark(hits)
    assert fn(1) == expected
    recorder(benchmark, f"hit returning a {value_name} (x10 calls)", name, baseline=is_baseline)
