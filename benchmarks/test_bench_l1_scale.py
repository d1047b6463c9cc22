"""L1 hit, miss and eviction at 10k, 100k and 1M entries against
functools.lru_cache(maxsize=N), in the same run.

- hit: the store holds N entries; 100 calls per round over keys spread
  across all of them (so the lookups leave the CPU caches, as at scale).
- miss + eviction: the store is full at N; every call is a new key, so it
  runs the function (returning a small int), stores the result and evicts
  the least recently used entry.

Keys are scattered ints (i * an odd 61-bit constant mod 2**61): an int
hashes to itself, so consecutive ints would sit in consecutive dict slots
and give lru_cache a cache-friendly walk no real key set has (at 1M entries
that made its misses 5x cheaper); cachekit's XXH3 key hash scatters either
way.

With --benchmark-disable (the smoke run) the sizes shrink to 100 / 1,000 /
2,000 so the run stays fast. Bytes per entry are not timed here: see the
"Memory per entry" table in benchmarks/README.md.
"""

from __future__ import annotations

import functools
import itertools

import pytest

from cachekit import cache

SIZES = {"10k": 10_000, "100k": 100_000, "1M": 1_000_000}
SMOKE_SIZES = {"10k": 100, "100k": 1_000, "1M": 2_000}
IMPLS = {"functools.lru_cache": True, "cachekit @cache": False}


def _size(request, label: str) -> int:
    disabled = request.config.getoption("benchmark_disable", default=False)
    return (SMOKE_SIZES if disabled else SIZES)[label]


def _key(i: int) -> int:
    return i * 0x9E3779B97F4A7C15 % (1 << 61)


def _make(name: str, n: int):
    def f(x):
        return 1

    if name == "functools.lru_cache":
        return functools.lru_cache(maxsize=n)(f)
    return cache(l1_max_entries=n)(f)


@pytest.mark.parametrize("label", list(SIZES))
@pytest.mark.parametrize("name", list(IMPLS))
def test_l1_scale_hit(benchmark, recorder, request, name, label):
    n = _size(request, label)
    fn = _make(name, n)
    for i in range(n):
        fn(_key(i))
    step = max(1, n // 100)
    keys = [_key((i * step) % n) for i in range(100)]

    def hits():
        for k in keys:
            fn(k)

    benchmark(hits)
    if name == "cachekit @cache":
        assert fn.cache_info().misses == n  # every timed call was a hit
    recorder(benchmark, f"L1 hit at {label} entries (x100 calls)", name, baseline=IMPLS[name])


@pytest.mark.parametrize("label", list(SIZES))
@pytest.mark.parametrize("name", list(IMPLS))
def test_l1_scale_miss_evict(benchmark, recorder, request, name, label):
    n = _size(request, label)
    fn = _make(name, n)
    for i in range(n):
        fn(_key(i))  # full: each new key below evicts one
    fresh = itertools.count(n)

    def misses():
        for _ in range(100):
            fn(_key(next(fresh)))

    benchmark(misses)
    if name == "cachekit @cache":
        assert fn.store.stats()["count"] == n
        assert fn.cache_info().hits == 0
    recorder(benchmark, f"L1 miss + eviction at {label} entries (x100 calls)", name,
             baseline=IMPLS[name])
