"""GET hit of a 100-byte value through cachekit's RedisClient against
redis-py (with its hiredis parser) on the same local redis-server, in the
same run; and a 100-key multi-get (pipelined GETs vs redis-py MGET).

Both clients speak to a server started for this module (loopback TCP), so
most of each call is the round trip; the difference is client overhead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

redis = pytest.importorskip("redis")

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from redis_server import REDIS_SERVER, RedisServer  # noqa: E402

from cachekit._core import RedisClient  # noqa: E402

GROUP_GET = "Redis GET hit, 100 B value (x100 calls)"
GROUP_MANY = "Redis multi-get, 100 keys of 100 B"
VALUE = b"v" * 100
KEYS = [b"bench:%d" % i for i in range(100)]


@pytest.fixture(scope="module")
def server():
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    s = RedisServer().start()
    yield s
    s.cleanup()


@pytest.fixture(scope="module")
def clients(server):
    ck = RedisClient(server.url)
    rp = redis.Redis(host="127.0.0.1", port=server.port)
    ck.set_many([(k, VALUE, None) for k in KEYS])
    yield {"cachekit RedisClient": ck, "redis-py": rp}
    ck.close()
    rp.close()


@pytest.mark.parametrize("name", ["redis-py", "cachekit RedisClient"])
def test_get_hit(benchmark, recorder, clients, name):
    client = clients[name]
    key = KEYS[0]

    def gets():
        for _ in range(100):
            client.get(key)

    benchmark(gets)
    assert client.get(key) == VALUE
    recorder(benchmark, GROUP_GET, name, baseline=name == "redis-py")


@pytest.mark.parametrize("name", ["redis-py mget", "cachekit get_many"])
def test_get_many(benchmark, recorder, clients, name):
    if name == "redis-py mget":
        client = clients["redis-py"]
        fn = lambda: client.mget(KEYS)  # noqa: E731
    else:
        client = clients["cachekit RedisClient"]
        fn = lambda: client.get_many(KEYS)  # noqa: E731
    benchmark(fn)
    assert fn() == [VALUE] * 100
    recorder(benchmark, GROUP_MANY, name, baseline=name == "redis-py mget")
