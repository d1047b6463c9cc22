"""L2 hit through a Sentinel-discovered master vs the same master by its
direct redis:// URL, in the same run; and the time a pool takes to move to
the new master after SENTINEL FAILOVER (printed).

The topology is tests/sentinel_topology.py's (one master, one replica,
three sentinels). L1 is kept out of the way with a one-entry L1 and two
alternating keys, as in test_bench_l2.py. The Sentinel pool re-asks a
sentinel once a second (docs/sentinel.md): that round trip is part of what
is measured.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_server import REDIS_SERVER  # noqa: E402
from sentinel_topology import MASTER_PASSWORD, SentinelTopology  # noqa: E402

from cachekit import cache  # noqa: E402
from cachekit.backends import RedisBackend  # noqa: E402


@pytest.fixture(scope="module")
def topology():
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    t = SentinelTopology().start()
    yield t
    t.stop()


def make(backend, name):
    value = {"payload": "x" * 100}

    @cache(backend=backend, l1_max_entries=1, namespace=f"bench-snt-{name}")
    def f(i):
        return value

    f(0), f(1)
    return f, value


@pytest.mark.parametrize("name", ["direct redis:// URL", "redis+sentinel:// URL"])
def test_l2_hit_sentinel_vs_direct(benchmark, recorder, topology, name):
    if name.startswith("direct"):
        m = topology.master()
        url = f"redis://:{MASTER_PASSWORD}@127.0.0.1:{m.port}/0"
    else:
        url = topology.url()
    backend = RedisBackend(url)
    f, value = make(backend, name[:6])

    def calls():
        for _ in range(50):
            f(0)
            f(1)

    benchmark(calls)
    assert f(0) == value and f.cache_stats()["l2_hits"] > 0
    backend.close()
    recorder(benchmark, "L2 hit, 100 B (x100 calls)", name, baseline=name.startswith("direct"))


def test_failover_recovery_time(topology):
    """Seconds from SENTINEL FAILOVER until writes through the decorator
    land on the new master only (printed; not a pass/fail target)."""
    backend = RedisBackend(topology.url())
    old, new = topology.master(), topology.replica()

    @cache(backend=backend, namespace="bench-snt-fo")
    def f(i):
        return i

    f(0)
    t0 = time.monotonic()
    topology.failover()
    moved = None
    i = 0
    while time.monotonic() - t0 < 20:
        i += 1
        f(i)
        key = f.cache_key(i).encode()
        if new.command(b"EXISTS", key) == b":1\r\n" and old.command(b"EXISTS", key) == b":0\r\n":
            moved = time.monotonic() - t0
            break
        time.sleep(0.01)
    backend.close()
    assert moved is not None
    print(f"\nSentinel failover: pool on the new master {moved:.2f} s after SENTINEL FAILOVER "
          f"({i} calls, {f.cache_stats()['l2_errors']} L2 errors)")
