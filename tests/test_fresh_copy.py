"""What a hit returns, what an entry is charged, and results too large to keep."""

import asyncio
import datetime
import decimal
import gc
import tracemalloc
import uuid

import pytest

from cachekit import cache


def test_callers_cannot_change_what_the_next_caller_gets():
    @cache
    def members(group):
        return {"group": group, "people": ["ann"]}

    first = members("a")
    first["people"].append("x")
    first["new"] = 1
    assert members("a") == {"group": "a", "people": ["ann"]}
    again = members("a")
    again["people"].clear()
    assert members("a")["people"] == ["ann"]
    assert members("a") is not members("a")


@pytest.mark.parametrize(
    "value",
    [
        7,
        "text",
        b"bytes",
        None,
        (1, ("nested", frozenset({1, 2}))),
        decimal.Decimal("1.5"),
        uuid.UUID(int=5),
        datetime.datetime(2026, 1, 1),
    ],
)
def test_immutable_results_are_shared(value):
    @cache
    def f():
        return value

    assert f() is f()


def test_tuple_holding_a_list_is_copied():
    @cache
    def f():
        return (1, [2])

    a = f()
    a[1].append(3)
    assert f() == (1, [2])


def test_copy_false_shares():
    @cache(copy=False)
    def f():
        return {"a": [1]}

    assert f() is f()


def test_async_waiters_that_share_a_miss_get_their_own_copies():
    @cache
    async def f():
        await asyncio.sleep(0.01)
        return {"a": [1]}

    async def main():
        a, b = await asyncio.gather(f(), f())
        a["a"].append(2)
        assert b == {"a": [1]}
        c = await f()
        c["a"].append(3)
        assert await f() == {"a": [1]}

    asyncio.run(main())


def test_entries_are_charged_what_they_hold_in_memory():
    # 200 results of ~50 KB of Python objects each (10 MB) into a 2 MiB store:
    # what the store keeps must stay near 2 MiB, not 5x it.
    @cache(l1_max_size_mb=2)
    def rows(i):
        return [f"row-{i}-{j:05d}" + "x" * 20 for j in range(1000)]

    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        for i in range(200):
            rows(i)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - base
    finally:
        tracemalloc.stop()
    stats = rows.cache_stats()
    assert stats["bytes"] <= 2 * 1024 * 1024
    assert 0 < stats["entries"] < 200
    assert held < 3.5 * 1024 * 1024, f"the 2 MiB store holds {held} bytes of objects"


def test_result_over_max_value_size_stops_encoding_early_and_is_logged_once(cachekit_log, monkeypatch):
    monkeypatch.setenv("CACHEKIT_MAX_VALUE_SIZE", "10000")
    from cachekit.config import reset_settings

    reset_settings()
    big = ["y" * 100] * 200_000  # 20 MB encoded

    @cache
    def f(i):
        return big

    tracemalloc.start()
    try:
        assert f(1) is big and f(2) is big
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2 * 1024 * 1024, f"encoding went on to {peak} bytes before the size check"
    assert f.cache_stats()["store_errors"] == 2
    assert f.cache_stats()["entries"] == 0
    assert cachekit_log.text.count("over max_value_size") == 1


def test_result_over_the_l1_bound_is_counted_and_logged(cachekit_log):
    @cache(l1_max_size_mb=0.01)
    def f(n):
        return ["z" * 50 for _ in range(n)]

    f(1)
    assert f.cache_stats()["entries"] == 1
    f(1000)
    assert f.cache_stats()["entries"] == 1 and f.cache_stats()["store_errors"] == 1
    assert "L1 store" in cachekit_log.text
