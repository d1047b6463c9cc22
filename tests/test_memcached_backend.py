"""MemcachedBackend against real memcached processes: the backend methods,
key names memcached cannot hold, TTLs (including over 30 days), values too
large, the decorator (plain and secure: no plaintext reaches the server),
a server that is down, and recovery after a restart."""

from __future__ import annotations

import time

import pytest

from cachekit import cache
from cachekit.backends import BackendError, MemcachedBackend, MemcachedBackendConfig
from cachekit.config.reliability import CircuitBreakerConfig
from cachekit.exceptions import ConfigurationError
from tests.memcached_server import MEMCACHED, MemcachedServer
from tests.redis_server import free_port

pytestmark = pytest.mark.skipif(MEMCACHED is None, reason="memcached is not installed")


@pytest.fixture
def mc(memcached_server):
    return memcached_server


@pytest.fixture
def backend(mc):
    b = MemcachedBackend(MemcachedBackendConfig(servers=[mc.address], timeout=1.0))
    yield b
    b.close()


def test_config_defaults_env_and_errors():
    c = MemcachedBackendConfig()
    assert c.servers == ("127.0.0.1:11211",)
    assert (c.connect_timeout, c.timeout, c.max_pool_size, c.retry_attempts, c.key_prefix) == (
        2.0, 1.0, 10, 2, "")
    env = {"CACHEKIT_MEMCACHED_SERVERS": "a:1,b:2", "CACHEKIT_MEMCACHED_TIMEOUT": "0.5"}
    e = MemcachedBackendConfig.from_env(env)
    assert e.servers == ("a:1", "b:2") and e.timeout == 0.5
    with pytest.raises(ConfigurationError, match="host:port"):
        MemcachedBackendConfig(servers=["nohost"])
    with pytest.raises(ConfigurationError, match="timeout"):
        MemcachedBackendConfig(timeout=0)
    with pytest.raises(ConfigurationError, match="CACHEKIT_MEMCACHED_MAX_POOL_SIZE"):
        MemcachedBackendConfig.from_env({"CACHEKIT_MEMCACHED_MAX_POOL_SIZE": "x"})
    with pytest.raises(ConfigurationError, match="key_prefix"):
        MemcachedBackendConfig(key_prefix="has space")


def test_methods(backend):
    assert backend.get("m:a") is None
    backend.set("m:a", b"\x00value\r\n", ttl=60)
    assert backend.get("m:a") == b"\x00value\r\n"
    assert backend.exists("m:a")
    assert 55 <= backend.get_ttl("m:a") <= 62
    assert backend.refresh_ttl("m:a", 500)
    assert 495 <= backend.get_ttl("m:a") <= 502
    assert not backend.refresh_ttl("m:none", 5)
    assert backend.delete("m:a") and not backend.delete("m:a")
    assert backend.get("m:a") is None
    backend.set("m:forever", b"x")
    assert backend.get_ttl("m:forever") is None
    ok, details = backend.health_check()
    assert ok and details["backend"] == "memcached" and details["error"] is None


def test_unholdable_names_are_hashed_and_checked(backend, mc):
    names = ["with space", "ctl\x01char", "x" * 400, "ünïcode", "#starts-with-hash"]
    for i, name in enumerate(names):
        backend.set(name, b"v%d" % i, ttl=60)
    for i, name in enumerate(names):
        assert backend.get(name) == b"v%d" % i
    # Stored under "#<hex>" keys, never the raw name.
    for name in names:
        assert backend.get(name + "-other") is None
    keys = mc.keys()
    assert keys and not any(b"with" in k or b"xxxxxxxxxx" in k for k in keys)


def test_ttl_over_thirty_days_is_relative(backend):
    forty_days = 40 * 24 * 3600
    backend.set("m:long", b"v", ttl=forty_days)
    assert backend.get("m:long") == b"v"  # sent as an absolute time, so not already expired
    assert forty_days - 5 <= backend.get_ttl("m:long") <= forty_days + 2  # server clock: 1 s steps


def test_short_ttl_expires(backend):
    backend.set("m:short", b"v", ttl=1)
    assert backend.get("m:short") == b"v"
    time.sleep(2.1)
    assert backend.get("m:short") is None


def test_too_large_is_counted_not_raised(mc):
    b = MemcachedBackend(MemcachedBackendConfig(servers=[mc.address], max_value_bytes=1000))
    b.set("m:big", b"x" * 1001)
    assert b.get("m:big") is None and b.stats()["too_large"] == 1
    # And over the server's own item limit (1 MB) with a larger client bound.
    b2 = MemcachedBackend(MemcachedBackendConfig(servers=[mc.address], max_value_bytes=4 << 20))
    b2.set("m:big2", b"y" * (2 << 20))
    assert b2.get("m:big2") is None and b2.stats()["too_large"] == 1
    b2.set("m:ok", b"z")  # the connection is still in step
    assert b2.get("m:ok") == b"z"


def test_down_server_raises_backend_error_and_health_reports():
    b = MemcachedBackend(MemcachedBackendConfig(servers=[f"127.0.0.1:{free_port()}"]))
    with pytest.raises(BackendError) as info:
        b.get("k")
    assert info.value.is_transient
    ok, details = b.health_check()
    assert not ok and "refused" in details["error"]


def test_decorator_plain(backend, mc):
    calls = []

    @cache(backend=backend, ttl=60, namespace="mcplain")
    def f(x):
        calls.append(x)
        return {"x": x, "who": "plain-visible"}

    assert f(1) == {"x": 1, "who": "plain-visible"}
    f.cache_clear()  # L1 only for memcached: the L2 entry stays
    assert f(1) == {"x": 1, "who": "plain-visible"}
    assert calls == [1]
    assert f.cache_info().l2_hits == 1


def test_decorator_secure_no_plaintext(mc, monkeypatch):
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", "cd" * 32)
    b = MemcachedBackend(MemcachedBackendConfig(servers=[mc.address]))
    calls = []

    @cache.secure(backend=b, ttl=60, namespace="mcsecure")
    def ssn(user):
        calls.append(user)
        return "SSN-PLAINTEXT-" + user

    assert ssn("alice-arg") == "SSN-PLAINTEXT-alice-arg"
    ssn.cache_clear()
    assert ssn("alice-arg") == "SSN-PLAINTEXT-alice-arg"
    assert calls == ["alice-arg"]
    dump = mc.dump_all(expect=b"mcsecure")
    assert b"mcsecure" in dump  # the entry is there ...
    assert b"SSN-PLAINTEXT" not in dump and b"alice-arg" not in dump  # ... as ciphertext


def test_decorator_survives_down_server_and_recovers():
    server = MemcachedServer().start()
    b = MemcachedBackend(MemcachedBackendConfig(servers=[server.address], timeout=0.5,
                                                connect_timeout=0.5))
    calls = []

    @cache(backend=b, ttl=60, namespace="mcrestart",
           circuit_breaker=CircuitBreakerConfig(failure_threshold=3, recovery_timeout=0.2,
                                                success_threshold=1, half_open_requests=1))
    def f(x):
        calls.append(x)
        return x * 2

    try:
        assert f(1) == 2
        server.stop()
        start = time.monotonic()
        for i in range(10):
            f.cache_clear()
            assert f(i % 3) == (i % 3) * 2  # memcached down: the function runs
        assert time.monotonic() - start < 5
        assert f.cache_stats()["l2_errors"] >= 3
        assert not b.health_check()[0]
        server.start()  # same port, empty; the pooled sockets are dead
        time.sleep(0.3)  # past the breaker's recovery time
        f.cache_clear()
        f(5)  # the half-open probe goes through and stores 5
        f(5)
        calls.clear()
        f.cache_clear()
        assert f(5) == 10 and calls == []  # served from memcached again
        assert b.health_check()[0]
    finally:
        server.stop()


class _Hostile:
    """A fake memcached on loopback that answers every request with `reply`
    (None: reads and never answers)."""

    def __init__(self, reply):
        import socket
        import threading

        self.reply = reply
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.conns = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            try:
                conn.recv(65536)
                if self.reply is not None:
                    conn.sendall(self.reply)
            except OSError:
                pass

    def close(self):
        self.sock.close()
        for c in self.conns:
            c.close()


@pytest.mark.parametrize("reply", [
    b"GARBAGE\r\n", b"VA 99999999999999999999\r\n", b"VA 5 t10\r\nab", b"VA 3\r\nabcXY",
    b"x" * 4000, b"VA 2\r\nab\r\nEXTRA\r\n", b"SERVER_ERROR out of memory\r\n", None,
])
def test_hostile_server_is_an_error_never_a_hang_or_value(reply):
    server = _Hostile(reply)
    try:
        b = MemcachedBackend(MemcachedBackendConfig(servers=[f"127.0.0.1:{server.port}"],
                                                    timeout=0.3, retry_attempts=0))
        start = time.monotonic()
        with pytest.raises(BackendError):
            b.get("k")
        assert time.monotonic() - start < 2.5

        @cache(backend=b, ttl=60, namespace=f"hostile{abs(hash(reply))}")
        def f(x):
            return x + 1

        assert f(1) == 2  # the function still runs and returns
    finally:
        server.close()
