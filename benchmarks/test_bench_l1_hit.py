"""L1 hit of a decorated one-argument function against functools.lru_cache
and cachetools.cached, in the same run. Target: at most 3x lru_cache."""

from __future__ import annotations

import functools

import cachetools
import pytest

from cachekit import cache

GROUP = "L1 hit, one int argument"


@functools.lru_cache(maxsize=None)
def lru_fn(n):
    return n * 2


@cachetools.cached(cachetools.LRUCache(maxsize=1024))
def cachetools_fn(n):
    return n * 2


@cache
def cachekit_fn(n):
    return n * 2


@cache(ttl=300)
def cachekit_ttl_fn(n):
    return n * 2


@cache.secure(master_key="ab" * 32)
def cachekit_secure_fn(n):
    return n * 2


class Service:
    @cache
    def method(self, n):
        return n * 2


_service = Service()
CASES = {
    "functools.lru_cache": (lru_fn, True),
    "cachetools.cached": (cachetools_fn, False),
    "cachekit @cache": (cachekit_fn, False),
    "cachekit @cache(ttl=300)": (cachekit_ttl_fn, False),
    "cachekit @cache method": (_service.method, False),
    "cachekit @cache.secure": (cachekit_secure_fn, False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_l1_hit(benchmark, recorder, name):
    fn, is_baseline = CASES[name]
    fn(7)  # warm: the timed calls are all hits

    def hits():
        # 100 calls per round so timer overhead does not dominate a ~50 ns call.
        for _ in range(100):
            fn(7)

    benchmark(hits)
    assert fn(7) == 14
    recorder(benchmark, GROUP + " (x100 calls)", name, baseline=is_baseline)
