"""Redis Sentinel: redis+sentinel:// URLs, discovery, the ROLE check,
credentials, failing open, and a failover under load (docs/sentinel.md).

One topology for the session (tests/sentinel_topology.py). The failover
test is last in this file: after it the old master keeps saying "master"
for about 10 s until Sentinel reconfigures it, so tests that need "the
replica" run before it.
"""

from __future__ import annotations

import datetime
import decimal
import socket
import threading
import time
import uuid

import pytest

from cachekit import cache
from cachekit._core import BackendError, RedisClient
from cachekit.backends import RedisBackend
from cachekit.backends.redis.config import RedisBackendConfig
from cachekit.config import CircuitBreakerConfig, reset_settings
from redis_server import encode, free_port
from sentinel_topology import (  # noqa: F401 (session fixture)
    MASTER_PASSWORD,
    SENTINEL_PASSWORD,
    SERVICE,
    sentinel_topology,
)


# ------------------------------------------------------------------- URLs


def test_url_forms_and_repr_masks_passwords():
    c = RedisClient(f"redis+sentinel://u:{MASTER_PASSWORD}@h1:1,[::1]:2,h3/svc/3"
                    f"?sentinel_password={SENTINEL_PASSWORD}&sentinel_username=su")
    r = repr(c)
    assert r == "<cachekit._core.RedisClient redis+sentinel://u:***@h1:1,[::1]:2,h3:26379/svc/3 " \
                "pool_size=10>"
    assert MASTER_PASSWORD not in r and SENTINEL_PASSWORD not in r
    c.close()
    # db as a query parameter, default port, one sentinel.
    c = RedisClient("redis+sentinel://localhost/mymaster?db=2")
    assert repr(c).endswith("redis+sentinel://localhost:26379/mymaster/2 pool_size=10>")
    c.close()


@pytest.mark.parametrize("url, message", [
    ("redis+sentinel://h1:26379", "no service name"),
    ("redis+sentinel://h1:26379/", "service name is empty"),
    ("redis+sentinel://h1:0/m", "port must be 1-65535"),
    ("redis+sentinel://h1:99999/m", "port must be 1-65535"),
    ("redis+sentinel://h1,,h2/m", "no host"),
    ("redis+sentinel://[::1/m", "unterminated"),
    ("redis+sentinel://h1/m/x", "database must be a number"),
    ("redis+sentinel://h1/m?passwd=secret", "unknown URL query parameter"),
    ("redis+sentinel://h1/m?sentinel_password=%zz", "percent escape"),
    ("redis+sentinel://" + ",".join(f"h{i}" for i in range(17)) + "/m", "more than 16"),
])
def test_bad_urls_fail_with_value_error_naming_the_part(url, message):
    with pytest.raises(ValueError, match=message) as info:
        RedisClient(url)
    assert "secret" not in str(info.value)


def test_config_accepts_sentinel_urls_and_rejects_other_schemes():
    cfg = RedisBackendConfig(redis_url="redis+sentinel://h:26379/m")
    assert cfg.redis_url.get_secret_value().startswith("redis+sentinel://")
    with pytest.raises(ValueError, match="redis\\+sentinel://"):
        RedisBackendConfig(redis_url="sentinel://h:26379/m")


# -------------------------------------------------------------- discovery


def test_discovery_connects_to_the_master(sentinel_topology):
    t = sentinel_topology
    c = RedisClient(t.url())
    try:
        c.set(b"sentinel:k", b"v1")
        assert c.get(b"sentinel:k") == b"v1"
        assert b"v1" in t.master().command(b"GET", b"sentinel:k")
    finally:
        c.close()


def test_the_sentinel_order_does_not_matter_when_the_first_is_down(sentinel_topology):
    t = sentinel_topology
    hosts = ",".join([f"127.0.0.1:{free_port()}"] + [f"127.0.0.1:{s.port}" for s in t.sentinels])
    c = RedisClient(f"redis+sentinel://:{MASTER_PASSWORD}@{hosts}/{SERVICE}"
                    f"?sentinel_password={SENTINEL_PASSWORD}")
    try:
        c.set(b"sentinel:order", b"x")
        assert c.get(b"sentinel:order") == b"x"
    finally:
        c.close()


def test_wrong_credentials_are_auth_errors(sentinel_topology):
    t = sentinel_topology
    for url in (t.url(sentinel_password="wrong-one"), t.url(sentinel_password=None),
                t.url(master_password="wrong-two")):
        c = RedisClient(url, socket_timeout=1.0, socket_connect_timeout=1.0)
        try:
            with pytest.raises(BackendError) as info:
                c.get(b"k")
            assert info.value.reason == "auth", str(info.value)
            assert "wrong-" not in str(info.value)
        finally:
            c.close()


def test_an_unknown_service_is_a_connection_error(sentinel_topology):
    t = sentinel_topology
    c = RedisClient(t.url().replace(f"/{SERVICE}/", "/nosuchservice/"))
    try:
        with pytest.raises(BackendError, match="no sentinel knows the service") as info:
            c.get(b"k")
        assert info.value.reason == "connection"
    finally:
        c.close()


class FakeSentinel:
    """A RESP server that answers AUTH with +OK and anything else with
    `answer` (raw bytes): a sentinel that lies or misbehaves."""

    def __init__(self, answer: bytes):
        self.answer = answer
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.asked = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    while True:
                        data = conn.recv(4096)
                        if not data:
                            break
                        if b"AUTH" in data:
                            conn.sendall(b"+OK\r\n")
                        else:
                            self.asked += 1
                            conn.sendall(self.answer)
                except OSError:
                    pass

    def close(self) -> None:
        self.sock.close()


def _addr(host: str, port: int) -> bytes:
    return encode(host.encode(), str(port).encode())


def test_role_check_refuses_a_replica(sentinel_topology):
    t = sentinel_topology
    replica = t.replica()
    fake = FakeSentinel(_addr("127.0.0.1", replica.port))
    c = RedisClient(f"redis+sentinel://:{MASTER_PASSWORD}@127.0.0.1:{fake.port}/{SERVICE}")
    try:
        with pytest.raises(BackendError, match="not a master \\(ROLE: slave\\)"):
            c.set(b"sentinel:role", b"no")
        assert fake.asked >= 1
        assert replica.command(b"EXISTS", b"sentinel:role") == b":0\r\n"
    finally:
        c.close()
        fake.close()


@pytest.mark.parametrize("answer", [
    b"$100000\r\n" + b"x" * 100000 + b"\r\n",           # over the sentinel reply budget
    b"*" + str(10**9).encode() + b"\r\n",                # a huge array header
    encode(b"127.0.0.1", b"70000"),                      # a port out of range
    encode(b"127.0.0.1\x00evil", b"6379"),               # an embedded NUL
    b"*3\r\n$1\r\na\r\n$1\r\nb\r\n$1\r\nc\r\n",         # not [host, port]
    b"-ERR no\r\n",
])
def test_a_misbehaving_sentinel_is_skipped_for_the_next(sentinel_topology, answer):
    t = sentinel_topology
    fake = FakeSentinel(answer)
    hosts = f"127.0.0.1:{fake.port}," + ",".join(f"127.0.0.1:{s.port}" for s in t.sentinels)
    c = RedisClient(f"redis+sentinel://:{MASTER_PASSWORD}@{hosts}/{SERVICE}"
                    f"?sentinel_password={SENTINEL_PASSWORD}")
    try:
        c.set(b"sentinel:skip", b"ok")
        assert c.get(b"sentinel:skip") == b"ok"
        assert fake.asked >= 1
    finally:
        c.close()
        fake.close()


def test_unreachable_sentinels_fail_open_within_the_timeout():
    silent = socket.socket()  # accepts (backlog) but never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen(8)
    hosts = f"127.0.0.1:{free_port()},127.0.0.1:{silent.getsockname()[1]}"
    timeout = 0.3
    backend = RedisBackend(RedisBackendConfig(
        redis_url=f"redis+sentinel://{hosts}/{SERVICE}", socket_timeout=timeout,
        socket_connect_timeout=timeout))
    runs = []

    @cache(backend=backend, namespace="snt-down")
    def f(x):
        runs.append(x)
        return x * 2

    try:
        for i in range(3):
            t0 = time.monotonic()
            assert f(i) == i * 2
            # One discovery: at most connect + socket timeout, however many
            # sentinels; generous for a loaded machine.
            assert time.monotonic() - t0 < 4 * 2 * timeout
        assert runs == [0, 1, 2]
        assert f.cache_stats()["l2_hits"] == 0
    finally:
        backend.close()
        silent.close()


# ---------------------------------------------------------- the decorator


VALUES = [
    None, True, 7, -2**70, 1.5, "text", b"\x00bytes", [1, [2]], (1, (2,)), {"a": {"b": [1]}},
    {1, 2}, frozenset({3}), bytearray(b"ba"), decimal.Decimal("1.25"), uuid.UUID(int=9),
    datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
    datetime.date(2026, 1, 2), datetime.timedelta(seconds=3),
]


@pytest.fixture
def backend(sentinel_topology):
    b = RedisBackend(sentinel_topology.url())
    yield b
    b.close()


def test_every_value_type_through_sentinel(backend):
    for i, value in enumerate(VALUES):
        runs = []

        @cache(backend=backend, namespace=f"snt-v{i}")
        def f(x, _value=value):
            runs.append(x)
            return _value

        assert f(1) == value
        f.store.clear()  # the next call must come from Redis
        got = f(1)
        assert got == value and type(got) is type(value)
        assert runs == [1]
        assert f.cache_stats()["l2_hits"] == 1


def test_cache_secure_through_sentinel(sentinel_topology, monkeypatch):
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", "a1" * 32)
    monkeypatch.setenv("CACHEKIT_REDIS_URL", sentinel_topology.url())
    reset_settings()
    runs = []

    @cache.secure(namespace="snt-sec", ttl=60)
    def f(x):
        runs.append(x)
        return {"secret": x}

    assert f(5) == {"secret": 5}
    f.store.clear()
    assert f(5) == {"secret": 5}
    assert runs == [5]
    assert f.cache_stats()["l2_hits"] == 1
    # Stored on the master, as ciphertext.
    raw = sentinel_topology.master().command(b"GET", f.cache_key(5).encode())
    assert raw.startswith(b"$") and b"secret" not in raw


def test_redis_url_env_fallback_is_two_tier(sentinel_topology, monkeypatch):
    monkeypatch.setenv("REDIS_URL", sentinel_topology.url())
    reset_settings()

    @cache(namespace="snt-env")
    def f(x):
        return x + 1

    assert f(1) == 2
    assert sentinel_topology.master().command(b"EXISTS", f.cache_key(1).encode()) == b":1\r\n"


# ------------------------------------------------------------- failover


def test_failover_under_load_no_exception_no_wrong_value(sentinel_topology, backend):
    """SENTINEL FAILOVER while 4 threads call an L2-only function: every
    call returns the right value, none raises, and the pool moves to the new
    master within a bound (printed; docs/sentinel.md quotes it)."""
    t = sentinel_topology
    old, new = t.master(), t.replica()

    # The failover's few failed commands may open the breaker: let it
    # recover in a fraction of the 0.5 s window the test reads hits in.
    @cache(backend=backend, namespace="snt-fo", l1_max_entries=1, ttl=300,
           circuit_breaker=CircuitBreakerConfig(recovery_timeout=0.1))
    def f(x):
        return ("value", x, x * 7)

    for x in range(64):
        f(x)
    stop = threading.Event()
    errors: list[BaseException] = []
    wrong: list[object] = []
    calls = [0]

    def load() -> None:
        i = 0
        while not stop.is_set():
            x = i % 64
            try:
                got = f(x)
                if got != ("value", x, x * 7):
                    wrong.append(got)
            except BaseException as e:  # noqa: BLE001 - any exception is a failure
                errors.append(e)
            calls[0] += 1
            i += 1

    threads = [threading.Thread(target=load) for _ in range(4)]
    for th in threads:
        th.start()
    try:
        time.sleep(0.3)
        before = f.cache_stats()["l2_hits"]
        t0 = time.monotonic()
        t.failover()
        # Moved: a fresh key written through the decorator lands on the new
        # master only. Before the promotion the old master replicates it
        # to both; after, until Sentinel reconfigures the old master (about
        # 10 s), its writes stay on it.
        moved_after = None
        probe = 1000
        while time.monotonic() - t0 < 15:
            probe += 1
            f(probe)
            key = f.cache_key(probe).encode()
            # Only on the new master: written there, not replicated from
            # the old one (which does not replicate to it any more).
            if new.command(b"EXISTS", key) == b":1\r\n" and \
                    old.command(b"EXISTS", key) == b":0\r\n":
                moved_after = time.monotonic() - t0
                break
            time.sleep(0.02)
        assert moved_after is not None, "the pool never moved to the new master"
        hits_at_move = f.cache_stats()["l2_hits"]
        time.sleep(0.5)
        hits_resumed = f.cache_stats()["l2_hits"] - hits_at_move
    finally:
        stop.set()
        for th in threads:
            th.join(10)
    print(f"\nfailover: pool on the new master {moved_after:.2f} s after SENTINEL FAILOVER; "
          f"{calls[0]} calls, {f.cache_stats()['l2_errors']} L2 errors (misses), "
          f"{hits_resumed} L2 hits in the 0.5 s after the move")
    assert not errors, errors[:3]
    assert not wrong, wrong[:3]
    assert f.cache_stats()["l2_hits"] > before
    assert hits_resumed > 0
    # Sentinel's switch takes about 1 s, the pool's check runs every 1 s.
    assert moved_after < 8.0
    assert t.master() is new and old is not new
