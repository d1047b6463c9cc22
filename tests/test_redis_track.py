"""The Redis invalidation listener (cachekit._core.RedisTracker, src/core/
ck_redis_track.c): CLIENT TRACKING BCAST in RESP2 redirect mode on its own C
thread. Writers are other processes; the delay from a write to its
invalidation being queued here is measured and bounded."""
import subprocess
import sys
import time

import pytest

from cachekit import _core
from redis_server import RedisServer

WRITER = r"""
import socket, sys, time
port, n, prefix = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
s = socket.create_connection(("127.0.0.1", port))
for i in range(n):
    k = f"{prefix}k{i}".encode()
    t = repr(time.time()).encode()
    s.sendall(b"*3\r\n$3\r\nSET\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (len(k), k, len(t), t))
    assert s.recv(64).startswith(b"+OK")
    time.sleep(0.002)
"""


def wait_for(pred, timeout=5.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.002)
    return False


def connected(tr, connects=1):
    st = tr.status()
    return st["client_id"] != 0 and st["connects"] >= connects


@pytest.fixture
def server():
    srv = RedisServer().start()
    yield srv
    srv.cleanup()


def test_invalidations_from_other_processes_with_delay(server):
    tr = _core.RedisTracker(server.url, ["ns1:"])
    assert wait_for(lambda: connected(tr))
    assert tr.drain() == [None]  # the flush on connect
    n = 200
    got: dict[bytes, float] = {}
    procs = [subprocess.Popen([sys.executable, "-c", WRITER, str(server.port), str(n),
                               f"ns1:w{w}:"]) for w in range(2)]
    # A key outside the prefix is not reported.
    server.command(b"SET", b"other:x", b"1")
    deadline = time.monotonic() + 20
    while len(got) < 2 * n and time.monotonic() < deadline:
        now = time.time()
        for k in tr.drain():
            assert k is not None and k.startswith(b"ns1:w")
            got.setdefault(k, now)
        time.sleep(0.0005)
    for p in procs:
        assert p.wait(20) == 0
    assert len(got) == 2 * n
    # Delay: the writer stored its send time as the value; read it back.
    delays = []
    for k, seen in got.items():
        raw = server.command(b"GET", k)
        sent = float(raw.split(b"\r\n")[1])
        delays.append(seen - sent)
    delays.sort()
    p50, p99 = delays[len(delays) // 2], delays[int(len(delays) * 0.99)]
    print(f"invalidation delay p50={p50 * 1e3:.2f} ms p99={p99 * 1e3:.2f} ms")
    assert p99 < 1.0
    tr.close()


def test_flushall_is_a_flush(server):
    tr = _core.RedisTracker(server.url, ["a:"])
    assert wait_for(lambda: connected(tr))
    tr.drain()
    server.command(b"FLUSHALL")
    assert wait_for(lambda: tr.status()["flushes"] >= 2)
    assert None in tr.drain()
    tr.close()


def test_killed_connection_flushes_and_recovers(server):
    tr = _core.RedisTracker(server.url, ["a:"])
    assert wait_for(lambda: connected(tr))
    old = tr.status()["client_id"]
    tr.drain()
    assert server.command(b"CLIENT", b"KILL", b"TYPE", b"pubsub").startswith(b":1")
    assert wait_for(lambda: connected(tr, 2))
    assert tr.status()["client_id"] != old
    drained = tr.drain()
    assert drained and all(k is None for k in drained)
    server.command(b"SET", b"a:after", b"1")
    assert wait_for(lambda: b"a:after" in tr.drain())
    tr.close()


def test_server_down_then_back(server):
    tr = _core.RedisTracker(server.url, ["a:"], socket_timeout=1.0)
    assert wait_for(lambda: connected(tr))
    server.kill()
    assert wait_for(lambda: tr.status()["client_id"] == 0)
    assert None in tr.drain()
    server.start()
    assert wait_for(lambda: connected(tr, 2), timeout=10)
    server.command(b"SET", b"a:x", b"1")
    assert wait_for(lambda: b"a:x" in tr.drain())
    t0 = time.monotonic()
    tr.close()
    assert time.monotonic() - t0 < 1.0


def test_no_server_never_hangs():
    srv = RedisServer()  # never started: nothing listens on its port
    tr = _core.RedisTracker(srv.url, [], socket_timeout=0.5)
    time.sleep(0.3)
    assert tr.status()["client_id"] == 0
    t0 = time.monotonic()
    del tr
    assert time.monotonic() - t0 < 1.0
    srv.cleanup()
