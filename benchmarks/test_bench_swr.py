"""Freshness (docs/freshness.md): a fresh L1 hit of a function with
stale_ttl costs what a hit without it costs, measured against
functools.lru_cache in the same run; and a stampede of threads on an
expired key: plain @cache (every caller waits for one computation) against
stale-while-revalidate (every caller served stale, one background call)."""

from __future__ import annotations

import functools
import threading
import time

import pytest

from cachekit import L1CacheConfig, cache

GROUP = "L1 hit with freshness, one int argument"


@functools.lru_cache(maxsize=None)
def lru_fn(n):
    return n * 2


@cache(ttl=300, backend=None)
def ttl_fn(n):
    return n * 2


@cache(ttl=300, stale_ttl=300, backend=None)
def stale_fn(n):
    return n * 2


@cache.secure(master_key="ab" * 32, ttl=300, stale_ttl=300, backend=None)
def secure_stale_fn(n):
    return n * 2


CASES = {
    "functools.lru_cache": (lru_fn, True),
    "cachekit @cache(ttl=300)": (ttl_fn, False),
    "cachekit @cache(ttl=300, stale_ttl=300)": (stale_fn, False),
    "cachekit @cache.secure(ttl=300, stale_ttl=300)": (secure_stale_fn, False),
}


@pytest.mark.parametrize("name", list(CASES))
def test_fresh_hit(benchmark, recorder, name):
    fn, is_baseline = CASES[name]
    fn(7)

    def hits():
        for _ in range(100):
            fn(7)

    benchmark(hits)
    assert fn(7) == 14
    recorder(benchmark, GROUP + " (x100 calls)", name, baseline=is_baseline)


SLOW = 0.02  # seconds one computation takes
THREADS = 16


def _prepare(stale: bool, counts: list[int]):
    """An expired key and THREADS threads waiting to call it at once."""
    calls = [0]
    lock = threading.Lock()
    opts = {"stale_ttl": 60, "l1": L1CacheConfig(swr_threshold_ratio=1.0)} if stale else {}

    @cache(ttl=0.05, backend=None, **opts)
    def slow(n):
        with lock:
            calls[0] += 1
        time.sleep(SLOW)
        return n

    slow(1)
    time.sleep(0.08)
    barrier = threading.Barrier(THREADS + 1)

    def worker():
        barrier.wait()
        slow(1)

    threads = [threading.Thread(target=worker) for _ in range(THREADS)]
    for t in threads:
        t.start()
    slot = len(counts)
    counts.append(0)

    def settle():
        deadline = time.monotonic() + 2
        while calls[0] < 2 and time.monotonic() < deadline:
            time.sleep(0.005)
        counts[slot] = calls[0] - 1

    return (barrier, threads, settle), {}


def _release(barrier, threads, settle):
    """Timed: from the threads' release until every caller has its value."""
    barrier.wait()
    for t in threads:
        t.join()


@pytest.mark.parametrize("stale", [False, True], ids=["expired miss", "stale-while-revalidate"])
def test_stampede_on_expired_key(benchmark, recorder, stale):
    counts: list[int] = []
    settles = []

    def setup():
        args, kw = _prepare(stale, counts)
        settles.append(args[2])
        return args, kw

    benchmark.pedantic(_release, setup=setup, rounds=5, iterations=1)
    for settle in settles:
        settle()
    # One computation per stampede either way (one round under
    # --benchmark-disable, five when timed).
    assert counts and all(c == 1 for c in counts), counts
    recorder(benchmark, f"stampede of {THREADS} threads on an expired key ({SLOW * 1000:.0f} ms function)",
             "stale-while-revalidate" if stale else "expired miss (@cache ttl)",
             baseline=not stale)
