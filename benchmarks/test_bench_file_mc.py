"""L2 hits of a decorated function on FileBackend and MemcachedBackend, in
the same run as a Redis L2 hit and as a plain open()+read() of a file of
the same size (the floor for any file-backed cache), 100 B and 10 KB
results. pymemcache and diskcache are compared only if installed (they are
not dependencies). Every call is an L2 hit: a one-entry L1 and two
alternating keys.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from memcached_server import MEMCACHED, MemcachedServer  # noqa: E402
from redis_server import REDIS_SERVER, RedisServer  # noqa: E402

from cachekit import cache  # noqa: E402
from cachekit.backends import MemcachedBackend, MemcachedBackendConfig, RedisBackend  # noqa: E402
from cachekit.backends.file import FileBackend, FileBackendConfig  # noqa: E402

SIZES = {"100 B": 100, "10 KB": 10_000}
NAMES = ["open+read of a file", "cachekit FileBackend L2 hit", "cachekit Redis L2 hit",
         "cachekit Memcached L2 hit", "cachekit FileBackend @cache.secure L2 hit",
         "pymemcache get"]


@pytest.fixture(scope="module")
def servers():
    redis = RedisServer().start() if REDIS_SERVER else None
    mc = MemcachedServer().start() if MEMCACHED else None
    yield redis, mc
    if redis is not None:
        redis.cleanup()
    if mc is not None:
        mc.stop()


def make(backend, size, tag, secure=False):
    value = {"payload": "x" * size}
    opts = dict(backend=backend, l1_max_entries=1, namespace=f"bench-{tag}-{size}")
    deco = cache.secure(master_key="ab" * 32, **opts) if secure else cache(**opts)

    @deco
    def f(i):
        return value

    f(0), f(1)
    return f, value


@pytest.mark.parametrize("size_name", list(SIZES))
@pytest.mark.parametrize("name", NAMES)
def test_l2_hit(benchmark, recorder, servers, tmp_path, size_name, name):
    size = SIZES[size_name]
    redis, mc = servers
    if name == "open+read of a file":
        path = tmp_path / "plain"
        path.write_bytes(b"x" * (size + 100))

        def read():
            with open(path, "rb") as fh:
                return fh.read()

        def calls():
            for _ in range(50):
                read()
                read()

        benchmark(calls)
    elif name == "pymemcache get":
        pymemcache = pytest.importorskip("pymemcache.client.base")
        if mc is None:
            pytest.skip("memcached is not installed")
        client = pymemcache.Client(("127.0.0.1", mc.port))
        client.set("pm", b"x" * size)
        benchmark(lambda: [client.get("pm") for _ in range(100)])
    else:
        if "Redis" in name:
            if redis is None:
                pytest.skip("redis-server is not installed")
            backend = RedisBackend(redis.url)
        elif "Memcached" in name:
            if mc is None:
                pytest.skip("memcached is not installed")
            backend = MemcachedBackend(MemcachedBackendConfig(servers=[mc.address]))
        else:
            backend = FileBackend(FileBackendConfig(cache_dir=tmp_path / "fb"))
        f, value = make(backend, size, name.split()[1], secure="secure" in name)

        def calls():
            for _ in range(50):
                f(0)
                f(1)

        benchmark(calls)
        assert f(0) == value and f.cache_stats()["l2_hits"] > 0
    recorder(benchmark, f"file/memcached L2 hit, {size_name} (x100 calls)", name,
             baseline=name == "open+read of a file")
