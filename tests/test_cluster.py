"""@cache and @cache.secure on a real Redis Cluster (3 masters, 3 replicas,
built once per session by tests/redis_topology.py) through the C cluster
client (src/core/ck_redis_cluster*.c): every value type, keys on every
master, multi-key commands split by slot, ASK and MOVED after a manual slot
migration, a resharding under load, a master killed and its replica
promoted, cache_clear on every master, and hostile redirect loops.

The destructive tests leave three masters with a replica each, covering
every slot (which process is master may change).
"""

from __future__ import annotations

import datetime
import decimal
import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from cachekit import cache
from cachekit._core import RedisClusterClient, _cluster_key_slot
from cachekit.backends import RedisBackend
from cachekit.backends.redis import RedisBackendConfig
from cachekit.config.reliability import CircuitBreakerConfig
from cachekit.exceptions import BackendError, ConfigurationError
from redis_server import RedisServer
from redis_topology import REDIS_CLI, RedisCluster, redis_cluster  # noqa: F401 (fixture)

MASTER_KEY = "cd" * 32


def url_of(cluster: RedisCluster) -> str:
    ports = [n.port for n in cluster.live()][:2]
    return "redis+cluster://" + ",".join(f"127.0.0.1:{p}" for p in ports)


@pytest.fixture
def backend(redis_cluster: RedisCluster) -> Iterator[RedisBackend]:  # noqa: F811
    for m in redis_cluster.masters():
        m.flushall()
    b = RedisBackend(url_of(redis_cluster))
    yield b
    b.close()


@pytest.fixture
def client(redis_cluster: RedisCluster) -> Iterator[RedisClusterClient]:  # noqa: F811
    c = RedisClusterClient(url_of(redis_cluster))
    yield c
    c.close()


def dbsize(node: RedisServer) -> int:
    raw = node.command(b"DBSIZE")
    assert raw.startswith(b":"), raw
    return int(raw[1:].split(b"\r\n", 1)[0])


VALUES = [
    None, True, 7, -2**70, 1.5, "text", b"\x00bytes", [1, [2]], (1, (2,)), {"a": {"b": [1]}},
    {1, 2}, frozenset({3}), bytearray(b"ba"), decimal.Decimal("1.25"), uuid.UUID(int=9),
    datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
    datetime.date(2026, 1, 2), datetime.timedelta(seconds=3),
]


@pytest.mark.parametrize("secure", [False, True], ids=["plain", "secure"])
def test_every_value_type_through_the_cluster(backend, redis_cluster, secure):  # noqa: F811
    runs = []
    funcs = []
    for i, value in enumerate(VALUES):
        deco = (cache.secure(master_key=MASTER_KEY, backend=backend, namespace=f"v{i}")
                if secure else cache(backend=backend, namespace=f"v{i}"))

        def f(x, _value=value):
            runs.append(x)
            return _value

        funcs.append(deco(f))
    for f, value in zip(funcs, VALUES):
        assert f(1) == value
        f.store.clear()  # the next call must come from the cluster
        got = f(1)
        assert got == value and type(got) is type(value)
        assert f.cache_stats()["l2_hits"] == 1, value
    assert len(runs) == len(VALUES)
    # The names landed on more than one master (16 namespaces, 3 masters).
    sizes = [dbsize(m) for m in redis_cluster.masters()]
    assert sum(sizes) == len(VALUES) and sum(1 for s in sizes if s) >= 2


def test_keys_spread_over_every_master_and_hits_come_back(backend, redis_cluster):  # noqa: F811
    calls = []

    @cache(backend=backend, namespace="spread", l1_max_entries=1)
    def f(x):
        calls.append(x)
        return {"x": x, "sq": x * x}

    for x in range(300):
        assert f(x) == {"x": x, "sq": x * x}
    for x in range(300):
        assert f(x) == {"x": x, "sq": x * x}
    assert len(calls) == 300
    assert f.cache_stats()["l2_hits"] >= 299  # L1 holds one entry
    sizes = [dbsize(m) for m in redis_cluster.masters()]
    assert len(sizes) == 3 and all(s > 50 for s in sizes), sizes
    assert sum(sizes) == 300


def test_multi_key_commands_are_split_by_slot(client, redis_cluster):  # noqa: F811
    keys = [b"mk:%d" % i for i in range(500)]
    client.set_many([(k, b"v" + k, 60_000) for k in keys])
    assert client.get_many(keys) == [b"v" + k for k in keys]
    assert client.get_many(keys + [b"missing"])[-1] is None
    owners = {client.node_for(k) for k in keys}
    assert len(owners) == 3  # one pipeline per node, three nodes
    assert client.delete(*keys[:100]) == 100
    assert client.get_many(keys[:3]) == [None, None, None]
    assert client.exists(keys[200]) and 0 < client.pttl(keys[200]) <= 60_000
    assert client.pexpire(keys[200], 5_000) and client.pttl(keys[200]) <= 5_000
    assert client.ping() is True
    assert sorted(client.masters()) == sorted(f"127.0.0.1:{m.port}"
                                              for m in redis_cluster.masters())


def test_cache_clear_reaches_every_master(backend, redis_cluster):  # noqa: F811
    @cache(backend=backend, namespace="clr")
    def f(x):
        return x

    @cache(backend=backend, namespace="keep")
    def g(x):
        return x

    for x in range(200):
        f(x)
        g(x)
    masters = redis_cluster.masters()
    assert all(dbsize(m) > 40 for m in masters)
    f.cache_clear()
    assert sum(dbsize(m) for m in masters) == 200  # g's entries only
    f.store.clear()
    before = f.cache_stats()["l2_hits"]
    f(5)
    assert f.cache_stats()["l2_hits"] == before  # gone from L2 too
    g.store.clear()
    g(5)
    assert g.cache_stats()["l2_hits"] == 1


def _cmd(node: RedisServer, *parts: bytes) -> bytes:
    raw = node.command(*parts)
    assert not raw.startswith(b"-"), raw
    return raw


def test_ask_then_moved_after_a_manual_slot_migration(client, redis_cluster):  # noqa: F811
    key, fresh = b"{mig}old", b"{mig}new"
    slot = _cluster_key_slot(key)
    assert _cluster_key_slot(fresh) == slot
    client.set(key, b"before")
    src = redis_cluster.owner(slot)
    dst = next(m for m in redis_cluster.masters() if m.port != src.port)
    src_id, dst_id = redis_cluster.node_id(src.port), redis_cluster.node_id(dst.port)
    s = str(slot).encode()
    _cmd(dst, b"CLUSTER", b"SETSLOT", s, b"IMPORTING", src_id.encode())
    _cmd(src, b"CLUSTER", b"SETSLOT", s, b"MIGRATING", dst_id.encode())
    try:
        # The key is still on the source: served there, no redirect.
        assert client.get(key) == b"before"
        # A key the source does not have: ASK, then ASKING + SET on the target.
        client.set(fresh, b"asked")
        assert client.stats()["ask"] >= 1
        assert client.get(fresh) == b"asked"
        assert dbsize(dst) >= 1
        # Move the old key too: reads follow ASK to the target.
        _cmd(src, b"MIGRATE", b"127.0.0.1", str(dst.port).encode(), b"", b"0", b"5000",
             b"KEYS", key)
        asks = client.stats()["ask"]
        assert client.get(key) == b"before"
        assert client.stats()["ask"] > asks
    finally:
        for m in redis_cluster.masters():
            _cmd(m, b"CLUSTER", b"SETSLOT", s, b"NODE", dst_id.encode())
    # The slot is the target's now: the source answers MOVED, the map follows.
    moved = client.stats()["moved"]
    assert client.node_for(key) == f"127.0.0.1:{src.port}"  # the client's map is stale
    assert client.get(key) == b"before"
    assert client.stats()["moved"] == moved + 1
    assert client.node_for(key) == f"127.0.0.1:{dst.port}"
    assert client.get(fresh) == b"asked"
    assert client.stats()["moved"] == moved + 1  # no second redirect
    redis_cluster.wait_ok()


def test_resharding_under_load_no_exception_no_wrong_value(backend, redis_cluster):  # noqa: F811
    if REDIS_CLI is None:
        pytest.skip("redis-cli is not installed")
    calls = []

    @cache(backend=backend, namespace="reshard", l1_max_entries=1,
           circuit_breaker=CircuitBreakerConfig(recovery_timeout=0.2))
    def f(x):
        calls.append(x)
        return {"x": x, "neg": -x}

    for x in range(400):
        f(x)
    stop = threading.Event()
    failures: list[BaseException] = []
    wrong: list[object] = []
    done = [0]

    def load() -> None:
        i = 0
        while not stop.is_set():
            x = i % 400
            try:
                got = f(x)
            except BaseException as exc:  # noqa: BLE001 - the test reports it
                failures.append(exc)
                return
            if got != {"x": x, "neg": -x}:
                wrong.append(got)
            i += 1
            done[0] += 1

    threads = [threading.Thread(target=load) for _ in range(2)]
    for t in threads:
        t.start()
    try:
        masters = redis_cluster.masters()
        src, dst = masters[0], masters[1]
        subprocess.run([REDIS_CLI, "--cluster", "reshard", f"127.0.0.1:{src.port}",
                        "--cluster-from", redis_cluster.node_id(src.port),
                        "--cluster-to", redis_cluster.node_id(dst.port),
                        "--cluster-slots", "600", "--cluster-yes"],
                       check=True, capture_output=True, timeout=120)
        time.sleep(0.2)
    finally:
        stop.set()
        for t in threads:
            t.join(30)
    assert not failures and not wrong
    assert done[0] > 100
    redis_cluster.wait_ok()
    client = backend._client
    assert isinstance(client, RedisClusterClient)
    assert client.stats()["moved"] + client.stats()["ask"] > 0
    # Every entry is still there and right, wherever it lives now.
    before = f.cache_stats()["l2_hits"]
    for x in range(400):
        assert f(x) == {"x": x, "neg": -x}
    assert f.cache_stats()["l2_hits"] - before >= 390


def _synced(master: RedisServer, replica: RedisServer) -> bool:
    return dbsize(master) == dbsize(replica)


def test_master_killed_replica_promoted_values_right_hits_resume(backend, redis_cluster,  # noqa: F811
                                                                 capsys):
    calls = []

    @cache(backend=backend, namespace="failover", l1_max_entries=1,
           circuit_breaker=CircuitBreakerConfig(failure_threshold=5, recovery_timeout=0.3))
    def f(x):
        calls.append(x)
        return [x, str(x)]

    xs = range(150)
    for x in xs:
        f(x)
    client = backend._client
    assert isinstance(client, RedisClusterClient)
    victim = redis_cluster.masters()[0]
    replica = redis_cluster.replica_of(victim)
    deadline = time.monotonic() + 10
    while not _synced(victim, replica) and time.monotonic() < deadline:
        time.sleep(0.02)
    mine = [x for x in xs if client.node_for(f.cache_key(x).encode()) == f"127.0.0.1:{victim.port}"]
    assert len(mine) > 20
    victim.kill()
    t0 = time.monotonic()
    first_hit = None
    streak = 0
    try:
        while time.monotonic() - t0 < 40 and streak < 30:
            for x in mine:
                hits = f.cache_stats()["l2_hits"]
                assert f(x) == [x, str(x)]  # never an exception, never a wrong value
                if f.cache_stats()["l2_hits"] > hits:
                    first_hit = first_hit or time.monotonic() - t0
                    streak += 1
                else:
                    streak = 0
            time.sleep(0.01)
        assert first_hit is not None and streak >= 30, "hits did not resume"
        with capsys.disabled():
            print(f"\n[cluster failover] hits resumed {first_hit:.2f} s after the master was "
                  f"killed (cluster-node-timeout 2 s)")
        assert first_hit < 30
    finally:
        victim.start()  # nodes.conf: it rejoins as the new master's replica
        redis_cluster.wait_ok(30)
    assert len(redis_cluster.masters()) == 3


# ------------------------------------------------------------ hostile nodes


class FakeNode:
    """A TCP server speaking just enough RESP: CLUSTER SLOTS maps every slot
    to `slots_to`, every other command answers `reply(port)`."""

    def __init__(self, reply) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.slots_to = self.port
        self.reply = reply
        self.commands = 0
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._conn, args=(conn,), daemon=True).start()

    def _conn(self, conn: socket.socket) -> None:
        buf = b""
        with conn:
            while True:
                try:
                    data = conn.recv(65536)
                except OSError:
                    return
                if not data:
                    return
                buf += data
                while True:
                    cmd, buf = _parse(buf)
                    if cmd is None:
                        break
                    self.commands += 1
                    if cmd[:2] == [b"CLUSTER", b"SLOTS"]:
                        out = (b"*1\r\n*3\r\n:0\r\n:16383\r\n*2\r\n$9\r\n127.0.0.1\r\n:%d\r\n"
                               % self.slots_to)
                    else:
                        out = self.reply(self.port, cmd)
                    try:
                        conn.sendall(out)
                    except OSError:
                        return

    def close(self) -> None:
        self.sock.close()


def _parse(buf: bytes) -> tuple[list[bytes] | None, bytes]:
    if not buf.startswith(b"*") or b"\r\n" not in buf:
        return None, buf
    head, rest = buf.split(b"\r\n", 1)
    parts = []
    for _ in range(int(head[1:])):
        if b"\r\n" not in rest:
            return None, buf
        ln, rest2 = rest.split(b"\r\n", 1)
        n = int(ln[1:])
        if len(rest2) < n + 2:
            return None, buf
        parts.append(rest2[:n])
        rest = rest2[n + 2:]
    return parts, rest


@pytest.mark.parametrize("kind", ["moved_self", "ask_self", "tryagain", "clusterdown"])
def test_a_hostile_redirect_loop_ends_as_a_miss_within_the_timeout(kind):
    replies = {
        "moved_self": lambda port, cmd: b"-MOVED 1 127.0.0.1:%d\r\n" % port,
        "ask_self": lambda port, cmd: (b"+OK\r\n" if cmd[0] == b"ASKING"
                                       else b"-ASK 1 127.0.0.1:%d\r\n" % port),
        "tryagain": lambda port, cmd: b"-TRYAGAIN Multiple keys request during rehashing\r\n",
        "clusterdown": lambda port, cmd: b"-CLUSTERDOWN The cluster is down\r\n",
    }
    node = FakeNode(replies[kind])
    try:
        backend = RedisBackend(RedisBackendConfig(
            redis_url=f"redis+cluster://127.0.0.1:{node.port}", socket_timeout=2.0))
        calls = []

        @cache(backend=backend, namespace="hostile")
        def f(x):
            calls.append(x)
            return x * 2

        t0 = time.monotonic()
        assert f(21) == 42
        assert time.monotonic() - t0 < 2.0
        assert calls == [21] and f.cache_stats()["l2_errors"] >= 1
        with pytest.raises(BackendError):
            backend._client.get(b"k")
        # Bounded: 1 + max_redirects rounds of at most 4 commands (ASKING
        # doubles them) for the GET+PTTL, the SET and the get: not a loop.
        assert node.commands < 80
        backend.close()
    finally:
        node.close()


def test_a_ping_pong_between_two_nodes_is_bounded():
    a = FakeNode(lambda port, cmd: b"-MOVED 7 127.0.0.1:%d\r\n" % b.port)
    b = FakeNode(lambda port, cmd: b"-MOVED 7 127.0.0.1:%d\r\n" % a.port)
    try:
        c = RedisClusterClient(f"redis+cluster://127.0.0.1:{a.port}", max_redirects=3)
        with pytest.raises(BackendError) as info:
            c.get(b"x")
        assert "redirects" in str(info.value)
        assert a.commands + b.commands <= 3 + 2 + 1  # CLUSTER SLOTS + one GET per round
        c.close()
    finally:
        a.close()
        b.close()


# ------------------------------------------------------------ configuration


def test_a_single_server_behind_a_cluster_url_is_used_as_one_node(redis_server):
    port = redis_server.url.rsplit(":", 1)[1]
    c = RedisClusterClient(f"redis+cluster://127.0.0.1:{port}")
    c.set(b"one", b"node")
    assert c.get(b"one") == b"node" and c.stats()["standalone"] is True
    assert c.clear_prefix(b"one") == 1
    c.close()


def test_seeds_a_dead_first_seed_and_extra_nodes(redis_cluster):  # noqa: F811
    dead = socket.socket()
    dead.bind(("127.0.0.1", 0))
    port = dead.getsockname()[1]
    dead.close()
    live = redis_cluster.live()[0].port
    c = RedisClusterClient(f"redis+cluster://127.0.0.1:{port},127.0.0.1:{live}")
    c.set(b"seeded", b"1")
    assert c.get(b"seeded") == b"1"
    c.close()
    b = RedisBackend(RedisBackendConfig(redis_url=f"redis://127.0.0.1:{port}",
                                        cluster_nodes=(f"127.0.0.1:{live}",)))
    assert isinstance(b._client, RedisClusterClient)
    b.set("k", b"v")
    assert b.get("k") == b"v"
    assert b.health_check()[1]["backend"] == "redis_cluster"
    b.close()


def test_cluster_configuration_is_checked_at_construction():
    c = RedisClusterClient("redis+cluster://user:s3cret@10.0.0.1:7000,[::1]:7001,host-b")
    assert "s3cret" not in repr(c)
    assert repr(c) == ("<cachekit._core.RedisClusterClient redis+cluster://user:***@"
                       "10.0.0.1:7000,[::1]:7001,host-b:6379 pool_size=10>")
    c.close()
    for bad in ("redis+cluster://h:1/3", "redis+cluster://h:1?db=2", "redis+cluster://h:0",
                "redis+cluster://h:1,", "unix:///tmp/x.sock", "memcached://h"):
        with pytest.raises(ValueError):
            RedisClusterClient(bad)
    with pytest.raises(ValueError):
        RedisClusterClient("redis+cluster://h:1", nodes=["a@b:1"])
    with pytest.raises(ConfigurationError, match="unix"):
        RedisBackendConfig(redis_url="unix:///tmp/r.sock", cluster=True)
    with pytest.raises(ConfigurationError, match="cluster_nodes"):
        RedisBackendConfig(cluster_nodes=("",))
    with pytest.raises(ConfigurationError, match="refused"):
        RedisBackend("redis+cluster://h:1/2")
    cfg = RedisBackendConfig(redis_url="redis+cluster://a:1,b:2")
    assert cfg.is_cluster and not RedisBackendConfig().is_cluster
    assert RedisBackendConfig(cluster_nodes=["a:1"]).cluster_nodes == ("a:1",)
