"""Freshness: stale-while-revalidate and early refresh (docs/freshness.md)."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from cachekit import cache
from cachekit._core import RedisClient
from cachekit.backends import RedisBackend
from cachekit.config import L1CacheConfig
from cachekit.exceptions import ConfigurationError

KEY = "ab" * 32
LATE = L1CacheConfig(swr_threshold_ratio=1.0)  # refresh only once stale


def wait_for(cond, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.005)


class Source:
    """A function body that counts calls and can be held inside a call."""

    def __init__(self):
        self.calls = 0
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False
        self.lock = threading.Lock()

    def __call__(self, x):
        with self.lock:
            self.calls += 1
            n = self.calls
        assert self.gate.wait(10)
        if self.fail:
            raise RuntimeError("backend down")
        return (x, n)


def body(src):
    def compute(x):
        return src(x)

    return compute


# ------------------------------------------------------------------ config


@pytest.mark.parametrize(
    "kwargs, words",
    [
        ({"ttl": 10, "stale_ttl": -1}, "stale_ttl must be seconds"),
        ({"ttl": 10, "stale_ttl": float("inf")}, "stale_ttl must be seconds"),
        ({"ttl": 10, "stale_ttl": "5"}, "stale_ttl must be seconds"),
        ({"ttl": 10, "swr_by_default": 1}, "swr_by_default must be True or False"),
        ({"ttl": 10, "l1": L1CacheConfig(swr_threshold_ratio=0)}, "swr_threshold_ratio must be"),
        ({"ttl": 10, "l1": L1CacheConfig(swr_threshold_ratio=1.5)}, "(0, 1]"),
        ({"ttl": 10, "l1": L1CacheConfig(swr_retry_interval=0)}, "swr_retry_interval must be"),
        ({"ttl": 10, "l1": L1CacheConfig(swr_enabled="yes")}, "swr_enabled must be"),
        ({"ttl": 10, "stale_ttl": 5, "l1": L1CacheConfig(swr_enabled=False)}, "swr_enabled=False"),
        ({"stale_ttl": 5}, "needs one: pass ttl="),
        ({"ttl": 10, "stale_ttl": 5, "refresh_ttl_on_get": True}, "use one of them"),
        ({"ttl": 10, "stale_ttl": 5, "interop": "op", "namespace": "ns"}, "interop"),
    ],
)
def test_bad_freshness_options_fail_at_decoration(kwargs, words):
    with pytest.raises(ConfigurationError, match=words.replace("(", r"\(").replace("]", r"\]")):
        cache(backend=None, **kwargs)(lambda x: x)


def test_swr_by_default_without_a_ttl_has_nothing_to_refresh():
    f = cache(swr_by_default=True, backend=None)(body(Source()))
    assert f(1) == f(1) == (1, 1)
    assert "stale_hits" not in f.cache_stats()


def test_without_stale_ttl_nothing_changes():
    src = Source()
    f = cache(ttl=0.05, backend=None)(body(src))
    f(1)
    time.sleep(0.1)
    assert f(1) == (1, 2)  # expired: a plain blocking miss
    assert "stale_hits" not in f.cache_stats()


# --------------------------------------------------------------- sync L1


def test_stale_value_served_while_one_refresh_runs():
    src = Source()
    f = cache(ttl=0.1, stale_ttl=10, backend=None, l1=LATE)(body(src))
    assert f(1) == (1, 1)
    time.sleep(0.15)
    src.gate.clear()  # the refresh will hang inside the function
    for _ in range(20):
        assert f(1) == (1, 1)  # stale, at once
    wait_for(lambda: src.calls == 2)
    assert f(1) == (1, 1)
    stats = f.cache_stats()
    assert stats["stale_hits"] == 21 and stats["refreshes"] == 1
    src.gate.set()
    wait_for(lambda: f(1) == (1, 2))
    assert src.calls == 2


def test_stampede_on_an_expired_key_calls_the_function_once():
    src = Source()
    f = cache(ttl=0.1, stale_ttl=10, backend=None, l1=LATE)(body(src))
    f(7)
    time.sleep(0.15)
    src.gate.clear()
    start = threading.Barrier(16)
    got = []

    def worker():
        start.wait()
        for _ in range(50):
            got.append(f(7))

    threads = [threading.Thread(target=worker) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert set(got) == {(7, 1)} and len(got) == 800
    wait_for(lambda: src.calls == 2)  # the first miss and one refresh
    time.sleep(0.05)
    assert src.calls == 2 and f.cache_stats()["refreshes"] == 1
    src.gate.set()
    wait_for(lambda: f(7) == (7, 2))
    assert src.calls == 2


def test_failing_refresh_keeps_the_stale_value_and_retries_later():
    src = Source()
    f = cache(ttl=0.1, stale_ttl=10, backend=None,
              l1=L1CacheConfig(swr_threshold_ratio=1.0, swr_retry_interval=0.2))(body(src))
    f(1)
    src.fail = True
    time.sleep(0.15)
    assert f(1) == (1, 1)
    wait_for(lambda: f.cache_stats()["refresh_errors"] == 1)
    for _ in range(10):
        assert f(1) == (1, 1)  # within the retry interval: no new attempt
    assert src.calls == 2
    time.sleep(0.25)
    assert f(1) == (1, 1)
    wait_for(lambda: f.cache_stats()["refresh_errors"] == 2)
    assert src.calls == 3
    src.fail = False
    time.sleep(0.25)
    f(1)
    wait_for(lambda: f(1) == (1, 4))


def test_past_the_stale_window_the_call_blocks_on_a_miss():
    src = Source()
    f = cache(ttl=0.05, stale_ttl=0.1, backend=None, l1=LATE)(body(src))
    f(1)
    time.sleep(0.25)
    assert f(1) == (1, 2)  # computed in the call, not served stale
    assert f.cache_stats()["stale_hits"] == 0
    assert f.cache_info().misses == 2


@pytest.mark.parametrize("how", ["invalidate", "clear"])
def test_invalidation_during_a_refresh_is_not_undone_by_it(how):
    src = Source()
    f = cache(ttl=0.1, stale_ttl=10, backend=None, l1=LATE)(body(src))
    f(1)
    time.sleep(0.15)
    src.gate.clear()
    assert f(1) == (1, 1)  # claims the refresh, which hangs
    wait_for(lambda: src.calls == 2)
    if how == "invalidate":
        assert f.invalidate_cache(1)
    else:
        f.cache_clear()
    src.gate.set()
    wait_for(lambda: f.cache_stats()["refresh_dropped"] == 1)
    assert f.cache_info().currsize == 0
    assert f(1) == (1, 3)  # a real miss


def test_early_refresh_starts_before_expiry():
    src = Source()
    f = cache(ttl=1.0, stale_ttl=0, backend=None, l1=L1CacheConfig(swr_threshold_ratio=0.2))(body(src))
    f(1)
    for _ in range(5):
        assert f(1) == (1, 1)
    assert src.calls == 1  # before 20% of the TTL: plain hits
    time.sleep(0.3)
    assert f(1) == (1, 1)  # still fresh: served, and a refresh starts
    wait_for(lambda: f(1) == (1, 2))
    stats = f.cache_stats()
    assert stats["refreshes"] == 1 and stats["stale_hits"] == 0


def test_swr_by_default_uses_the_ttl_as_stale_window():
    src = Source()
    f = cache(ttl=0.1, swr_by_default=True, backend=None, l1=LATE)(body(src))
    f(1)
    time.sleep(0.15)
    assert f(1) == (1, 1)
    wait_for(lambda: f(1) == (1, 2))


def test_local_and_methods_refresh_too():
    src = Source()
    f = cache.local(ttl=0.1, stale_ttl=10, l1=LATE)(body(src))
    obj = f(1)
    time.sleep(0.15)
    assert f(1) is obj
    wait_for(lambda: f(1) == (1, 2))

    class Repo:
        calls = 0

        @cache(ttl=0.1, stale_ttl=10, backend=None, l1=LATE)
        def get(self, x):
            Repo.calls += 1
            return x * 10 + Repo.calls

    r = Repo()
    assert r.get(1) == 11
    time.sleep(0.15)
    assert r.get(1) == 11
    wait_for(lambda: r.get(1) == 12)


def test_custom_key_function_refreshes_with_the_callers_arguments():
    src = Source()

    @cache(ttl=0.1, stale_ttl=10, backend=None, l1=LATE, key=lambda x, y: f"{x}")
    def f(x, y):
        return src(x + y)

    assert f(1, 2) == (3, 1)
    time.sleep(0.15)
    assert f(1, 5) == (3, 1)  # same key, stale; refreshed with (1, 5)
    wait_for(lambda: f(1, 0) == (6, 2))


# ------------------------------------------------------------------- async


def test_async_stale_hit_refreshes_in_a_task():
    calls = 0
    gate = asyncio.Event()

    @cache(ttl=0.1, stale_ttl=10, backend=None, l1=LATE)
    async def f(x):
        nonlocal calls
        calls += 1
        n = calls
        if n > 1:
            await gate.wait()
        return (x, n)

    async def main():
        assert await f(1) == (1, 1)
        await asyncio.sleep(0.15)
        got = await asyncio.gather(*(f(1) for _ in range(20)))
        assert set(got) == {(1, 1)}
        await asyncio.sleep(0.02)
        assert calls == 2
        gate.set()
        for _ in range(200):
            if await f(1) == (1, 2):
                break
            await asyncio.sleep(0.01)
        assert await f(1) == (1, 2)
        assert f.cache_stats()["refreshes"] == 1

    asyncio.run(main())


# ------------------------------------------------------------------ secure


def test_secure_stale_hit_and_refresh():
    src = Source()
    f = cache.secure(master_key=KEY, ttl=0.1, stale_ttl=10, backend=None, l1=LATE)(body(src))
    assert f(1) == (1, 1)
    time.sleep(0.15)
    src.gate.clear()
    assert f(1) == (1, 1)
    wait_for(lambda: src.calls == 2)
    f.invalidate_cache(1)
    src.gate.set()
    wait_for(lambda: f.cache_stats()["refresh_dropped"] == 1)
    assert f(1) == (1, 3)
    time.sleep(0.15)
    assert f(1) == (1, 3)
    wait_for(lambda: f(1) == (1, 4))


# ---------------------------------------------------------------------- L2


@pytest.fixture
def backend(redis_server):
    redis_server.flushall()
    b = RedisBackend(redis_server.url)
    yield b
    b.close()


@pytest.fixture
def raw(redis_server):
    c = RedisClient(redis_server.url)
    yield c
    c.close()


def twins(deco, src):
    """Two decorated functions of one identity: they share L2, not L1."""

    def make():
        def shared(x):
            return src(x)

        return deco(shared)

    return make(), make()


def test_l2_entry_lives_ttl_plus_stale_and_is_served_stale(backend, raw):
    src = Source()
    writer, reader = twins(cache(ttl=0.3, stale_ttl=30, backend=backend, l1=LATE), src)
    assert writer(1) == (1, 1)
    assert 29_000 < raw.pttl(writer.cache_key(1).encode()) <= 30_300
    time.sleep(0.35)
    src.gate.clear()
    assert reader(1) == (1, 1)  # from L2, past its logical expiry
    wait_for(lambda: src.calls == 2)
    stats = reader.cache_stats()
    assert stats["l2_hits"] == 1 and stats["stale_hits"] >= 1 and stats["refreshes"] == 1
    src.gate.set()
    wait_for(lambda: reader(1) == (1, 2))
    # The refresh wrote L2 too: a third process-local L1 reads the new value.
    _, third = twins(cache(ttl=0.3, stale_ttl=30, backend=backend, l1=LATE), src)
    assert third(1) == (1, 2)


def test_l2_fresh_entry_is_not_refreshed(backend):
    src = Source()
    writer, reader = twins(cache(ttl=30, stale_ttl=30, backend=backend, l1=LATE), src)
    writer(1)
    assert reader(1) == (1, 1)
    time.sleep(0.05)
    assert src.calls == 1 and reader.cache_stats()["refreshes"] == 0


def only_key(redis_server):
    reply = redis_server.command(b"KEYS", b"*").split(b"\r\n")
    assert reply[0] == b"*1", reply
    return reply[2]


def test_secure_l2_stale_entry_is_served_and_refreshed(backend, raw, redis_server):
    src = Source()
    deco = cache.secure(master_key=KEY, ttl=0.2, stale_ttl=30, backend=backend, l1=LATE)
    writer, reader = twins(deco, src)
    writer(1)
    assert 29_000 < raw.pttl(only_key(redis_server)) <= 30_300
    time.sleep(0.25)
    assert reader(1) == (1, 1)  # stale from L2 (sealed expiry not yet past)
    wait_for(lambda: src.calls == 2)
    wait_for(lambda: reader(1) == (1, 2))
    assert reader.cache_stats()["stale_hits"] >= 1


def test_secure_replayed_entry_past_its_stale_deadline_is_refused(backend, raw, redis_server):
    src = Source()
    deco = cache.secure(master_key=KEY, ttl=0.1, stale_ttl=0.2, backend=backend, l1=LATE)
    writer, reader = twins(deco, src)
    writer(1)
    name = only_key(redis_server)
    old = raw.get(name)
    time.sleep(0.4)
    raw.set(name, old)  # replayed, without a TTL
    assert reader(1) == (1, 2)  # refused: computed in the call
    assert reader.cache_stats()["stale_entries"] == 1


def test_secure_l2_logical_expiry_follows_the_sealed_one(backend, raw, redis_server):
    """A store that lengthens an entry's TTL cannot make a stale entry fresh."""
    src = Source()
    deco = cache.secure(master_key=KEY, ttl=0.2, stale_ttl=30, backend=backend, l1=LATE)
    writer, reader = twins(deco, src)
    writer(1)
    name = only_key(redis_server)
    time.sleep(0.25)
    raw.pexpire(name, 3_600_000)  # as if fresh for an hour
    assert reader(1) == (1, 1)
    wait_for(lambda: src.calls == 2)  # still treated as stale: refreshed
