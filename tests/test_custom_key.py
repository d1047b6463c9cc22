"""key=: a caller's key function (cachekit/decorators/custom_key.py)."""

from __future__ import annotations

import asyncio
import threading

import pytest
from hypothesis import given, settings, strategies as st

from cachekit import cache, metrics
from cachekit.backends import RedisBackend
from cachekit.exceptions import ConfigurationError

HEX_KEY = "ab" * 32


def counted(key, **options):
    calls = []

    def decorate(fn):
        def body(*args, **kwargs):
            calls.append((args, kwargs))
            return fn(*args, **kwargs)

        body.__qualname__ = fn.__qualname__
        return cache(key=key, **options)(body)

    return decorate, calls


def test_the_key_function_decides_which_calls_share_an_entry():
    decorate, calls = counted(lambda user_id, verbose=False: f"user:{user_id}", backend=None)
    get = decorate(lambda user_id, verbose=False: {"id": user_id, "verbose": verbose})
    assert get(1) == {"id": 1, "verbose": False}
    # verbose is not part of the key: the stored value comes back
    assert get(1, verbose=True) == {"id": 1, "verbose": False}
    assert get(2) == {"id": 2, "verbose": False}
    assert len(calls) == 2
    info = get.cache_info()
    assert (info.hits, info.misses) == (1, 2)


def test_bytes_keys_and_invalidation():
    decorate, calls = counted(lambda x: x.encode(), backend=None)
    f = decorate(lambda x: x.upper())
    assert f("a") == f("a") == "A"
    assert f.invalidate_cache("a") is True
    assert f.invalidate_cache("a") is False
    assert f("a") == "A"
    assert len(calls) == 2
    f.cache_clear()
    assert f.cache_info().currsize == 0


def test_two_functions_with_the_same_key_never_share_entries():
    def a(x):
        return ("a", x)

    def b(x):
        return ("b", x)

    fa = cache(key=lambda x: "same", backend=None)(a)
    fb = cache(key=lambda x: "same", backend=None)(b)
    assert fa(1) == ("a", 1)
    assert fb(1)[0] == "b"
    assert fa.cache_key(1) != fb.cache_key(1)
    assert "[key]" in fa.cache_key(1)


def test_a_failing_key_function_runs_the_call_uncached(cachekit_log):
    def boom(x):
        raise RuntimeError("secret-argument-text")

    decorate, calls = counted(boom, backend=None)
    f = decorate(lambda x: x * 2)
    assert f(3) == 6 and f(3) == 6
    assert len(calls) == 2
    assert metrics.snapshot()["key_func_error"] == 2
    logged = [r for r in cachekit_log.records if "key= function" in r.getMessage()]
    assert len(logged) == 1
    assert "RuntimeError" in logged[0].getMessage()
    assert "secret-argument-text" not in cachekit_log.text


@pytest.mark.parametrize("bad", [None, 1, 1.5, ("t",), ["x"]])
def test_a_key_that_is_not_str_or_bytes_runs_uncached(bad):
    decorate, calls = counted(lambda x: bad, backend=None)
    f = decorate(lambda x: x)
    assert f(1) == f(1) == 1
    assert len(calls) == 2
    assert metrics.snapshot()["key_func_error"] == 2


@pytest.mark.parametrize("bad", ["user_id", b"k", 3, object()])
def test_a_key_that_is_not_callable_fails_at_decoration(bad):
    with pytest.raises(ConfigurationError, match="key must be a callable"):
        cache(key=bad, backend=None)(lambda x: x)


def test_concurrent_misses_of_one_key_run_the_function_once():
    started = threading.Event()
    release = threading.Event()
    calls = []

    @cache(key=lambda x: "k", backend=None)
    def slow(x):
        calls.append(x)
        started.set()
        assert release.wait(5)
        return x

    results = []
    threads = [threading.Thread(target=lambda: results.append(slow(7))) for _ in range(8)]
    threads[0].start()
    assert started.wait(5)
    for t in threads[1:]:
        t.start()
    release.set()
    for t in threads:
        t.join(5)
    assert results == [7] * 8
    assert len(calls) == 1


def test_each_thread_computes_with_its_own_arguments():
    # different keys in flight at once: each miss runs with its caller's arguments
    barrier = threading.Barrier(4)

    @cache(key=lambda x: str(x), backend=None)
    def f(x):
        barrier.wait(5)
        return x * 10

    out = {}
    threads = [threading.Thread(target=lambda i=i: out.__setitem__(i, f(i))) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert out == {i: i * 10 for i in range(4)}


def test_async_functions():
    calls = []

    @cache(key=lambda x, y=0: str(x), backend=None)
    async def f(x, y=0):
        calls.append(x)
        await asyncio.sleep(0)
        return x + y

    async def main():
        first = await asyncio.gather(*(f(1, y=i) for i in range(5)))
        assert await f(2) == 2
        assert await f.ainvalidate_cache(2) is True
        assert await f(2) == 2
        return first

    first = asyncio.run(main())
    assert len(set(first)) == 1  # one computation served everyone
    assert calls.count(1) == 1 and calls.count(2) == 2


def test_methods_get_self_in_the_key_function():
    class Repo:
        def __init__(self, name):
            self.name = name
            self.calls = 0

        @cache(key=lambda self, x: f"{self.name}:{x}", backend=None)
        def get(self, x):
            self.calls += 1
            return f"{self.name}-{x}"

    a, b = Repo("a"), Repo("b")
    assert a.get(1) == "a-1" and a.get(1) == "a-1"
    assert b.get(1) == "b-1"
    assert (a.calls, b.calls) == (1, 1)
    assert Repo.get.invalidate_cache(a, 1) is True
    assert a.get(1) == "a-1" and a.calls == 2


def test_secure_with_a_key_function_and_a_tenant(monkeypatch):
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", HEX_KEY)
    calls = []

    @cache.secure(key=lambda user_id, tenant: f"u{user_id}", backend=None,
                  tenant_extractor=lambda user_id, tenant: tenant)
    def ssn(user_id, tenant):
        calls.append((user_id, tenant))
        return f"{tenant}-{user_id}"

    assert ssn(1, "acme") == ssn(1, "acme") == "acme-1"
    assert ssn(1, "other") == "other-1"  # the tenant is still part of the key
    assert len(calls) == 2
    assert ssn.invalidate_cache(1, "acme") is True
    assert ssn(1, "acme") == "acme-1"
    assert len(calls) == 3


def test_with_redis_l2(redis_server):
    backend = RedisBackend(redis_url=redis_server.url)
    calls = []

    def make():
        # its own L1 store each time: a second process's view of Redis
        @cache(key=lambda x, noise=0: f"x={x}", backend=backend, namespace="ckey",
               l1_max_entries=100)
        def f(x, noise=0):
            calls.append(x)
            return {"x": x}

        return f

    f = make()
    assert f(5, noise=1) == {"x": 5}
    g = make()
    assert g(5, noise=2) == {"x": 5}  # an L1 miss, a Redis hit
    assert g.cache_info().l2_hits == 1
    assert calls == [5]
    assert g.invalidate_cache(5) is True
    assert make()(5) == {"x": 5}
    assert calls == [5, 5]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(-5, 5), min_size=1, max_size=20))
def test_property_each_call_returns_the_value_of_its_key(xs):
    # key: x mod 3; the function's value depends only on the key, so
    # every call must return exactly that value, cached or not
    @cache(key=lambda x: str(x % 3), backend=None)
    def f(x):
        return x % 3

    for x in xs:
        assert f(x) == x % 3


def test_async_with_redis_l2(redis_server):
    backend = RedisBackend(redis_url=redis_server.url)
    calls = []

    def make():
        @cache(key=lambda x: f"ax={x}", backend=backend, namespace="ckey-async",
               l1_max_entries=100)
        async def f(x):
            calls.append(x)
            return [x]

        return f

    async def main():
        assert await make()(3) == [3]
        g = make()
        assert await g(3) == [3]  # from Redis, in a new L1
        assert g.cache_info().l2_hits == 1

    asyncio.run(main())
    assert calls == [3]


def test_local_reference_caching_with_a_key_function():
    @cache.local(key=lambda items: str(len(items)))
    def first(items):
        return {"first": items[0]}

    a = first([1, 2])
    assert first([9, 9]) is a  # same key, the same object
    assert first([1]) == {"first": 1}


def test_key_in_a_decorator_config():
    from cachekit import DecoratorConfig

    with pytest.raises(ConfigurationError, match="key must be a callable"):
        cache(config=DecoratorConfig(key="user_id"))(lambda x: x)
    f = cache(config=DecoratorConfig(key=lambda x: "one", backend=None))(lambda x: x)
    assert f(1) == f(2) == 1
