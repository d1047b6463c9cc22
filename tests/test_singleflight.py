"""Concurrent misses of one key in threads run the function once."""

import threading
import time

import pytest

from cachekit import cache


def stampede(f, n=8, arg=1):
    barrier = threading.Barrier(n)
    results = [None] * n

    def worker(i):
        barrier.wait()
        results[i] = f(arg)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results


@pytest.mark.parametrize("secure", [False, True])
def test_threads_missing_one_key_run_the_function_once(secure):
    runs = []
    deco = cache.secure(master_key="ab" * 32) if secure else cache

    @deco
    def slow(x):
        runs.append(x)
        time.sleep(0.2)  # releases the GIL: the other threads arrive meanwhile
        return {"x": x}

    results = stampede(slow)
    assert runs == [1]
    assert all(r == {"x": 1} for r in results)
    assert slow.cache_stats()["misses"] == 1 and slow.cache_stats()["hits"] == 7


def test_a_failing_leader_lets_each_waiter_run_and_raise_its_own():
    runs = []

    @cache
    def boom(x):
        runs.append(x)
        time.sleep(0.1)
        raise ValueError("no")

    errors = []

    def worker():
        try:
            boom(1)
        except ValueError as e:
            errors.append(e)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(errors) == 4
    assert 2 <= len(runs) <= 4  # the leader, then the waiters (not cached)


def test_recursive_call_with_the_same_arguments_does_not_deadlock():
    depth = []

    @cache
    def f(x):
        depth.append(x)
        if len(depth) < 3:
            return f(x) + 1  # same key, same thread, inside its own miss
        return 0

    assert f(5) == 2


def test_different_keys_do_not_wait_for_each_other():
    @cache
    def slow(x):
        time.sleep(0.2)
        return x

    start = time.perf_counter()
    threads = [threading.Thread(target=slow, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert time.perf_counter() - start < 0.6
