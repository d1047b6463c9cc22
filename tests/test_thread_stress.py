"""Several threads hammer one L1Store, decorated functions (plain, secure,
and two-tier over Redis: hits, misses, invalidations, clears) and one shared
RedisClient at once. Under the normal build this checks that results stay
right and nothing raises; under scripts/tsan.sh (ThreadSanitizer) it is the
workload whose races TSan reports. THREADS x ROUNDS is kept small enough for
the TSan build (about 10x slower)."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from cachekit import cache
from cachekit._core import L1Store, RedisClient
from cachekit.backends import RedisBackend

THREADS = 6
ROUNDS = int(os.environ.get("STRESS_ROUNDS", "400"))


def run_threads(target, n=THREADS):
    errors: list[BaseException] = []
    start = threading.Barrier(n)
    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)   # switch the GIL as often as possible

    def body(i):
        try:
            start.wait()
            target(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    assert not errors, errors


def test_one_l1_store():
    store = L1Store(max_entries=64, max_bytes=1 << 20)

    def work(i):
        for r in range(ROUNDS):
            key = f"k{(r * 7 + i) % 100}".encode()
            store.put(key, {"r": r, "i": i}, ttl=60 if r % 2 else None)
            got = store.get(key)
            assert got is None or set(got) == {"r", "i"}
            if r % 5 == 0:
                store.remove(f"k{r % 100}".encode())
            if r % 97 == 0:
                store.purge_expired()
                len(store), store.stats()
            if i == 0 and r % 150 == 0:
                store.clear()

    run_threads(work)
    assert len(store) <= 64


@pytest.mark.parametrize("kind", ["plain", "secure"])
def test_decorated_functions(kind):
    calls = []
    deco = cache.secure(master_key="cd" * 32, l1_max_entries=32) if kind == "secure" else cache(l1_max_entries=32)

    @deco
    def f(n, *, scale=1):
        calls.append(n)
        return {"n": n * scale, "list": [n] * 3}

    def work(i):
        for r in range(ROUNDS):
            n = (r + i) % 50                      # more keys than entries: evictions too
            assert f(n) == {"n": n, "list": [n] * 3}
            assert f(n, scale=2)["n"] == 2 * n
            if r % 7 == i:
                f.invalidate_cache(n)
            if r % 31 == 0:
                f.cache_key(n, scale=3)
                f.cache_stats()
            if i == 0 and r % 199 == 0:
                f.cache_clear()

    run_threads(work)
    assert calls  # misses happened


def test_two_tier_over_redis(redis_server):
    redis_server.flushall()
    backend = RedisBackend(redis_server.url)

    @cache.secure(master_key="ef" * 32, backend=backend, l1_max_entries=8, namespace="stress")
    def g(n):
        return "v" * (n % 7 + 1)

    def work(i):
        for r in range(ROUNDS // 4):
            n = (r + i) % 20
            assert g(n) == "v" * (n % 7 + 1)
            if r % 5 == 0:
                g.invalidate_cache(n)

    try:
        run_threads(work)
    finally:
        backend.close()


def test_one_redis_client(redis_server):
    redis_server.flushall()
    client = RedisClient(redis_server.url, pool_size=3)   # fewer connections than threads

    def work(i):
        for r in range(ROUNDS // 4):
            key = f"s{i}:{r % 10}".encode()
            client.set(key, b"x" * (r % 50), ttl_ms=60_000)
            assert client.get(key) == b"x" * (r % 50)
            if r % 10 == 0:
                client.get_many([key, b"absent"])
                client.delete(key)

    try:
        run_threads(work)
        assert client.ping()
    finally:
        client.close()
