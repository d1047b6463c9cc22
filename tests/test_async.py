"""Cached async def functions: hits without suspending, one run per key."""

import asyncio
import inspect

import pytest

from cachekit import cache
from cachekit._core import Ready


def run(coro):
    return asyncio.run(coro)


def test_async_function_is_cached_and_stays_a_coroutine_function():
    runs = []

    @cache(backend=None)
    async def fetch(x):
        runs.append(x)
        return {"x": x}

    assert inspect.iscoroutinefunction(fetch)
    assert asyncio.iscoroutinefunction(fetch)

    async def main():
        assert await fetch(1) == {"x": 1}
        assert await fetch(1) == {"x": 1}
        assert await fetch(2) == {"x": 2}

    run(main())
    assert runs == [1, 2]
    info = fetch.cache_info()
    assert info.hits == 1 and info.misses == 2


def test_a_hit_completes_without_suspending():
    @cache(backend=None)
    async def f(x):
        return x * 2

    run(f(3))
    hit = f(3)
    assert isinstance(hit, Ready)
    with pytest.raises(StopIteration) as stop:
        hit.send(None)  # one step, no event loop involved
    assert stop.value.value == 6
    with pytest.raises(RuntimeError, match="already awaited"):
        hit.send(None)


def test_hits_work_with_create_task_gather_and_tuple_results():
    @cache(backend=None)
    async def pair(x):
        return (x, x)

    async def main():
        await pair(1)
        task = asyncio.create_task(pair(1))
        assert await task == (1, 1)
        assert await asyncio.gather(pair(1), pair(1)) == [(1, 1), (1, 1)]
        assert await asyncio.wait_for(pair(1), timeout=1) == (1, 1)

    run(main())


def test_concurrent_misses_run_the_function_once():
    runs = 0

    @cache(backend=None)
    async def slow(x):
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)
        return [x]

    async def main():
        results = await asyncio.gather(*(slow(7) for _ in range(20)))
        assert all(r == [7] for r in results)

    run(main())
    assert runs == 1


def test_concurrent_misses_share_the_exception_and_it_is_not_cached():
    runs = 0

    @cache(backend=None)
    async def boom(x):
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.02)
        raise ValueError("no")

    async def main():
        results = await asyncio.gather(*(boom(1) for _ in range(5)), return_exceptions=True)
        assert all(isinstance(r, ValueError) for r in results)
        with pytest.raises(ValueError):
            await boom(1)

    run(main())
    assert runs == 2


def test_cancelling_one_waiter_does_not_cancel_the_others():
    runs = 0

    @cache(backend=None)
    async def slow(x):
        nonlocal runs
        runs += 1
        await asyncio.sleep(0.05)
        return x + 1

    async def main():
        a = asyncio.ensure_future(slow(1))
        b = asyncio.ensure_future(slow(1))
        await asyncio.sleep(0.01)
        a.cancel()
        assert await b == 2
        with pytest.raises(asyncio.CancelledError):
            await a
        assert await slow(1) == 2  # stored by the shared computation

    run(main())
    assert runs == 1


def test_ainvalidate_and_acache_clear():
    runs = 0

    @cache(backend=None)
    async def f(x):
        nonlocal runs
        runs += 1
        return x

    async def main():
        await f(1)
        assert await f.ainvalidate_cache(1) is True
        assert await f.ainvalidate_cache(1) is False
        await f(1)
        await f(2)
        assert await f.acache_clear() is None
        await f(1)

    run(main())
    assert runs == 3 + 1


def test_async_methods_are_per_instance():
    class Client:
        def __init__(self, base):
            self.base = base

        @cache(backend=None)
        async def get(self, path):
            return self.base + path

    async def main():
        a, b = Client("a:"), Client("b:")
        assert await a.get("/x") == "a:/x"
        assert await b.get("/x") == "b:/x"
        assert await a.get("/x") == "a:/x"
        assert await a.get.ainvalidate_cache("/x") is True

    run(main())


def test_async_arguments_that_cannot_be_keyed_still_run(cachekit_log):
    @cache(backend=None)
    async def f(x):
        return 1

    async def main():
        assert await f(object()) == 1

    run(main())
    assert f.cache_stats()["key_errors"] == 1


def test_secure_async_is_cached_encrypted():
    runs = 0

    @cache.secure(master_key="a1" * 32)
    async def ssn(user):
        nonlocal runs
        runs += 1
        return {"ssn": "123-45-6789", "user": user}

    async def main():
        assert await ssn("u1") == {"ssn": "123-45-6789", "user": "u1"}
        assert await ssn("u1") == {"ssn": "123-45-6789", "user": "u1"}

    run(main())
    assert runs == 1
    assert isinstance(ssn._peek("u1"), bytes)
    assert b"123-45-6789" not in ssn._peek("u1")


def test_two_event_loops_do_not_share_flights():
    @cache(backend=None)
    async def f(x):
        await asyncio.sleep(0)
        return x

    assert run(f(1)) == 1
    f.cache_clear()
    assert run(f(1)) == 1
