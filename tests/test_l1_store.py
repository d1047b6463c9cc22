"""L1Store: LRU eviction by count and bytes, TTL, release outside the lock,
thread safety, garbage collection of cycles through stored values."""

from __future__ import annotations

import gc
import random
import threading
import time
import weakref

import pytest

from cachekit._core import L1Store

OVERHEAD = 96  # CK_L1_ENTRY_OVERHEAD: fixed charge per entry


def key(i: int) -> bytes:
    return f"k{i}".encode()


def test_get_put_remove_roundtrip():
    s = L1Store()
    assert s.get(b"a") is None
    assert s.get(b"a", "dflt") == "dflt"
    value = ["x"]
    assert s.put(b"a", value) is True
    assert s.get(b"a") is value
    assert len(s) == 1
    assert s.remove(b"a") is True
    assert s.remove(b"a") is False
    assert s.get(b"a") is None


def test_put_replaces_value_and_charge():
    s = L1Store()
    s.put(b"a", 1, charge=100)
    s.put(b"a", 2, charge=10)
    assert s.get(b"a") == 2
    assert s.stats()["count"] == 1
    assert s.stats()["bytes"] == 10 + len(b"a") + OVERHEAD


def test_keys_must_be_bytes():
    s = L1Store()
    with pytest.raises(TypeError, match="bytes"):
        s.put("a", 1)
    with pytest.raises(TypeError):
        s.get(bytearray(b"a"))


def test_bad_bounds_rejected():
    with pytest.raises(ValueError):
        L1Store(max_entries=-1)
    with pytest.raises(ValueError):
        L1Store().put(b"a", 1, charge=-5)
    for bad in (0, -1, float("nan"), float("-inf")):
        with pytest.raises(ValueError):
            L1Store().put(b"a", 1, ttl=bad)
    with pytest.raises(TypeError):
        L1Store().put(b"a", 1, ttl="10")


def test_eviction_by_count_is_lru():
    s = L1Store(max_entries=3)
    for i in range(3):
        s.put(key(i), i)
    assert s.get(key(0)) == 0  # 0 becomes most recent; 1 is now the LRU
    s.put(key(3), 3)
    assert s.get(key(1)) is None
    assert [s.get(key(i)) for i in (0, 2, 3)] == [0, 2, 3]
    assert s.stats()["evictions"] == 1
    assert len(s) == 3


def test_eviction_by_bytes():
    per_entry = 100 + len(key(0)) + OVERHEAD
    s = L1Store(max_bytes=per_entry * 4)
    for i in range(10):
        assert s.put(key(i), i, charge=100)
        assert s.stats()["bytes"] <= per_entry * 4
    assert len(s) == 4
    assert [s.get(key(i)) for i in range(6, 10)] == [6, 7, 8, 9]
    assert s.get(key(5)) is None


def test_entry_larger_than_max_bytes_is_not_stored():
    s = L1Store(max_bytes=1000)
    s.put(b"small", 1, charge=10)
    assert s.put(b"big", 2, charge=5000) is False
    assert s.get(b"big") is None
    assert s.get(b"small") == 1  # nothing was evicted for it


def test_over_bound_replacement_removes_the_old_value():
    # The new value cannot be stored; the old one must not keep answering.
    s = L1Store(max_bytes=1000)
    s.put(b"k", "old", charge=10)
    assert s.put(b"k", "new", charge=5000) is False
    assert s.get(b"k") is None
    assert s.stats()["count"] == 0 and s.stats()["bytes"] == 0


def test_ttl_expiry_is_never_served():
    s = L1Store()
    s.put(b"short", "v", ttl=0.05)
    s.put(b"long", "w", ttl=60)
    s.put(b"forever", "x")
    assert s.get(b"short") == "v"
    time.sleep(0.08)
    assert s.get(b"short") is None
    assert s.get(b"long") == "w"
    assert s.get(b"forever") == "x"
    assert s.stats()["expirations"] == 1


def test_purge_expired():
    s = L1Store()
    for i in range(20):
        s.put(key(i), i, ttl=0.02 if i % 2 else None)
    time.sleep(0.05)
    assert s.purge_expired() == 10
    assert len(s) == 10


def test_expired_entries_go_before_live_ones():
    s = L1Store(max_entries=3)
    s.put(b"dead", 0, ttl=0.01)
    s.put(b"a", 1)
    s.put(b"b", 2)
    time.sleep(0.03)
    s.put(key(99), 99)  # the expired entry makes room, not "a"
    assert s.get(b"a") == 1
    assert s.stats()["evictions"] == 0


def test_clear():
    s = L1Store()
    for i in range(100):
        s.put(key(i), i)
    s.clear()
    assert len(s) == 0
    assert s.stats()["bytes"] == 0


def test_values_released_on_eviction_and_clear():
    class Box:
        pass

    s = L1Store(max_entries=1)
    a, b = Box(), Box()
    ra, rb = weakref.ref(a), weakref.ref(b)
    s.put(b"a", a)
    s.put(b"b", b)
    del a, b
    assert ra() is None  # evicted and released
    assert rb() is not None
    s.clear()
    assert rb() is None


def test_del_reentering_store_during_eviction():
    """A value's __del__ runs after the store lock is dropped, so it may use
    the same store without deadlocking."""
    s = L1Store(max_entries=1)
    seen = []

    class Reenter:
        def __del__(self):
            s.put(b"from-del", 1)
            seen.append(s.get(b"from-del"))

    s.put(b"a", Reenter())
    s.put(b"b", 2)  # evicts a -> __del__ -> re-enters s
    assert seen == [1]


def test_cycle_through_store_is_collected():
    class Holder:
        pass

    s = L1Store()
    h = Holder()
    h.store = s
    s.put(b"h", h)
    r = weakref.ref(h)
    del h, s
    gc.collect()
    assert r() is None


def test_threads_hammering_one_store():
    s = L1Store(max_entries=200, max_bytes=200 * 200)
    errors = []

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        try:
            for _ in range(20000):
                k = key(rnd.randrange(400))
                op = rnd.random()
                if op < 0.5:
                    v = s.get(k)
                    assert v is None or v == k
                elif op < 0.9:
                    s.put(k, k, charge=rnd.randrange(100), ttl=rnd.choice([None, 0.001, 1]))
                elif op < 0.99:
                    s.remove(k)
                else:
                    s.purge_expired()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    st = s.stats()
    assert st["count"] <= 200 and st["bytes"] <= 200 * 200
    assert st["count"] == len(s)
