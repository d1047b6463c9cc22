"""Redis Cluster: an L2 hit of a decorated function through the cluster
client (3 masters, 3 replicas, tests/redis_topology.py) against the same
L2 hit through the single-node client on a plain redis-server, and
multi-get throughput (get_many of 100 keys: one pipeline per node) on the
cluster against the same get_many on the single server, all in one run.

L1 is kept out of the way by a one-entry L1 and two alternating keys, so
every call is an L2 hit (as in test_bench_l2.py).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_server import REDIS_SERVER, RedisServer  # noqa: E402
from redis_topology import REDIS_CLI, RedisCluster  # noqa: E402

from cachekit import cache  # noqa: E402
from cachekit.backends import RedisBackend  # noqa: E402

KEYS = [b"mget:%d" % i for i in range(100)]


@pytest.fixture(scope="module")
def single():
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    s = RedisServer().start()
    b = RedisBackend(s.url)
    yield b
    b.close()
    s.cleanup()


@pytest.fixture(scope="module")
def clustered():
    if REDIS_SERVER is None or REDIS_CLI is None:
        pytest.skip("redis-server / redis-cli are not installed")
    c = RedisCluster(masters=3, replicas=1).start()
    b = RedisBackend("redis+cluster://" + ",".join(f"127.0.0.1:{n.port}" for n in c.nodes[:3]))
    yield b
    b.close()
    c.stop()


def make(backend, kind):
    value = {"payload": "x" * 100}
    deco = (cache.secure(master_key="ab" * 32, backend=backend, l1_max_entries=1,
                         namespace=f"bc-{kind}")
            if kind == "secure" else cache(backend=backend, l1_max_entries=1,
                                           namespace=f"bc-{kind}"))

    @deco
    def f(i):
        return value

    f(0), f(1)
    return f, value


@pytest.mark.parametrize("kind", ["plain", "secure"])
@pytest.mark.parametrize("where", ["single-node L2 hit", "cluster L2 hit"])
def test_l2_hit(benchmark, recorder, single, clustered, kind, where):
    backend = clustered if where.startswith("cluster") else single
    f, value = make(backend, kind)

    def calls():
        for _ in range(50):
            f(0)
            f(1)

    benchmark(calls)
    assert f(0) == value and f.cache_stats()["l2_hits"] > 0
    recorder(benchmark, f"@cache{'.secure' if kind == 'secure' else ''} L2 hit, 100 B "
             "(x100 calls)", where, baseline=where.startswith("single"))


@pytest.mark.parametrize("where", ["single-node get_many", "cluster get_many"])
def test_multi_get(benchmark, recorder, single, clustered, where):
    client = (clustered if where.startswith("cluster") else single)._client
    client.set_many([(k, b"v" * 100, 60_000) for k in KEYS])

    def calls():
        for _ in range(10):
            client.get_many(KEYS)

    benchmark(calls)
    assert client.get_many(KEYS) == [b"v" * 100] * len(KEYS)
    recorder(benchmark, "get_many of 100 keys, 100 B (x10 calls)", where,
             baseline=where.startswith("single"))
