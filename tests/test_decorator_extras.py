"""invalidate_cache() with no arguments, _bypass_cache=, health checks."""

import asyncio

import pytest

from cachekit import cache
from cachekit.backends import RedisBackend


def test_invalidate_cache_without_arguments_drops_every_entry():
    runs = []

    @cache
    def f(x):
        runs.append(x)
        return x

    f(1), f(2)
    assert f.invalidate_cache() is True
    f(1), f(2)
    assert runs == [1, 2, 1, 2]

    @cache
    def constant():
        runs.append("c")
        return 1

    constant()
    assert constant.invalidate_cache() is True  # its one entry
    assert constant.invalidate_cache() is False


def test_invalidate_all_reaches_the_backend(redis_server):
    redis_server.flushall()
    b = RedisBackend(redis_server.url)

    @cache(backend=b, namespace="invall")
    def f(x):
        return x

    f(1), f(2)
    f.invalidate_cache()
    assert not b._client.exists(f.cache_key(1).encode())
    b.close()


def test_bypass_cache_runs_the_function_and_leaves_the_cache_alone():
    runs = []

    @cache
    def f(x):
        runs.append(x)
        return [x, len(runs)]

    first = f(1)
    assert f(1, _bypass_cache=True) == [1, 2]
    assert f(1) == first  # the cached entry was neither read nor replaced
    assert f(x=1, _bypass_cache=False) == first
    assert runs == [1, 1]


def test_bypass_cache_works_for_secure_async_and_bound_methods():
    runs = []

    @cache.secure(master_key="ab" * 32)
    def s(x):
        runs.append(x)
        return x

    s(1), s(1, _bypass_cache=True)
    assert runs == [1, 1]

    @cache
    async def a(x):
        runs.append(x)
        return x

    async def main():
        await a(2)
        await a(2, _bypass_cache=True)

    asyncio.run(main())
    assert runs == [1, 1, 2, 2]

    class C:
        @cache
        def m(self, x):
            runs.append(x)
            return x

    c = C()
    c.m(3), c.m(3, _bypass_cache=True), c.m(3)
    assert runs[-2:] == [3, 3]


def test_a_parameter_named_bypass_cache_is_the_functions_own():
    @cache
    def f(x, _bypass_cache=False):
        return (x, _bypass_cache)

    assert f(1, _bypass_cache=True) == (1, True)
    assert f(1, _bypass_cache=True) == (1, True)
    assert f.cache_info().hits == 1


def test_health_checks(redis_server):
    @cache(backend=None)
    def local(x):
        return x

    local(1)
    h = local.check_health()
    assert h["status"] == "healthy" and h["components"]["l1"]["entries"] == 1
    assert local.get_health_status() == "healthy"

    b = RedisBackend(redis_server.url)

    @cache(backend=b)
    def remote(x):
        return x

    assert remote.check_health()["components"]["l2"]["status"] == "healthy"
    assert remote.check_health()["components"]["l2"]["breaker"] == "closed"
    b.close()


class DownBackend:
    def get(self, key):
        raise ConnectionError

    def set(self, key, value, ttl=None):
        raise ConnectionError

    def delete(self, key):
        return False

    def exists(self, key):
        return False

    def health_check(self):
        return False, {"error": "down"}


def test_a_down_backend_makes_the_function_degraded_not_unhealthy():
    @cache(backend=DownBackend())
    def f(x):
        return x

    assert f(1) == 1
    assert f.get_health_status() == "degraded"
    assert f.check_health()["components"]["l2"]["error"] == "down"
