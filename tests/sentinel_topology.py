"""Redis Sentinel topology for tests: one master, one replica, three
sentinels (``redis-server --sentinel``), all on free loopback ports, built
once per test session by the ``sentinel_topology`` fixture.

Passwords everywhere, so the credentials paths are exercised too: the data
nodes run with ``requirepass``/``masterauth`` MASTER_PASSWORD, the
sentinels with ``requirepass`` SENTINEL_PASSWORD (and ``sentinel
sentinel-pass`` to talk to each other, ``sentinel auth-pass`` to the data
nodes). Quorum 2, down-after-milliseconds 1000 and failover-timeout 3000, so
a failover finishes in a few seconds. Tests that fail over call
``wait_stable()`` afterwards: every sentinel agrees on the new master and
lists the old one as a healthy replica again.
"""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from redis_server import REDIS_SERVER, RedisServer, encode, free_port

SERVICE = "mymaster"
MASTER_PASSWORD = "master-pw-5c1d"
SENTINEL_PASSWORD = "sentinel-pw-77ab"


class Sentinel:
    def __init__(self, directory: Path, master_port: int):
        self.port = free_port()
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.conf = directory / "sentinel.conf"
        self.conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\ndir {directory}\n"
            f"requirepass {SENTINEL_PASSWORD}\nsentinel sentinel-pass {SENTINEL_PASSWORD}\n"
            f"sentinel monitor {SERVICE} 127.0.0.1 {master_port} 2\n"
            f"sentinel auth-pass {SERVICE} {MASTER_PASSWORD}\n"
            f"sentinel down-after-milliseconds {SERVICE} 1000\n"
            f"sentinel failover-timeout {SERVICE} 3000\n"
            f"sentinel parallel-syncs {SERVICE} 1\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        assert REDIS_SERVER is not None
        self.proc = subprocess.Popen([REDIS_SERVER, str(self.conf), "--sentinel"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def command(self, *parts: bytes, timeout: float = 5.0) -> bytes:
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(encode(b"AUTH", SENTINEL_PASSWORD.encode()))
            s.recv(1024)
            s.sendall(encode(*parts))
            time.sleep(0.01)
            return s.recv(1 << 16)

    def master_addr(self) -> tuple[str, int] | None:
        try:
            raw = self.command(b"SENTINEL", b"GET-MASTER-ADDR-BY-NAME", SERVICE.encode())
        except OSError:
            return None
        parts = raw.split(b"\r\n")
        if not raw.startswith(b"*2"):
            return None
        return parts[2].decode(), int(parts[4])

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        self.proc = None


class SentinelTopology:
    def __init__(self) -> None:
        args = ("--requirepass", MASTER_PASSWORD, "--masterauth", MASTER_PASSWORD)
        self.a = RedisServer(password=MASTER_PASSWORD, extra=args)
        self.b = RedisServer(password=MASTER_PASSWORD,
                             extra=(*args, "--replicaof", "127.0.0.1", str(self.a.port)))
        self.sentinels = [Sentinel(self.a.dir / f"s{i}", self.a.port) for i in range(3)]

    def url(self, *, master_password: str = MASTER_PASSWORD,
            sentinel_password: str | None = SENTINEL_PASSWORD, db: int = 0) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        query = f"?sentinel_password={sentinel_password}" if sentinel_password else ""
        return f"redis+sentinel://:{master_password}@{hosts}/{SERVICE}/{db}{query}"

    def nodes(self) -> list[RedisServer]:
        return [self.a, self.b]

    def master(self) -> RedisServer:
        port = self.sentinels[0].master_addr()
        assert port is not None
        return next(n for n in self.nodes() if n.port == port[1])

    def replica(self) -> RedisServer:
        m = self.master()
        return next(n for n in self.nodes() if n is not m)

    def start(self) -> "SentinelTopology":
        self.a.start()
        self.b.start()
        for s in self.sentinels:
            s.start()
        self.wait_stable(timeout=30.0)
        return self

    def _healthy(self) -> bool:
        addrs = {s.master_addr() for s in self.sentinels}
        if len(addrs) != 1 or None in addrs:
            return False
        (addr,) = addrs
        assert addr is not None
        master = next((n for n in self.nodes() if n.port == addr[1]), None)
        if master is None or b"role:master" not in master.command(b"INFO", b"replication"):
            return False
        replica = next(n for n in self.nodes() if n is not master)
        info = replica.command(b"INFO", b"replication")
        if b"role:slave" not in info or b"master_link_status:up" not in info or \
                f"master_port:{addr[1]}".encode() not in info:
            return False
        for s in self.sentinels:
            reps = s.command(b"SENTINEL", b"REPLICAS", SERVICE.encode())
            if f"{replica.port}".encode() not in reps or b"s_down" in reps \
                    or b"disconnected" in reps:
                return False
            others = s.command(b"SENTINEL", b"SENTINELS", SERVICE.encode())
            if not others.startswith(b"*2"):
                return False
        return True

    def wait_stable(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self._healthy():
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise RuntimeError("the Sentinel topology did not settle in time")

    def failover(self) -> None:
        """SENTINEL FAILOVER on the first sentinel: promotes the replica."""
        reply = self.sentinels[0].command(b"SENTINEL", b"FAILOVER", SERVICE.encode())
        if not reply.startswith(b"+OK"):
            raise RuntimeError(f"SENTINEL FAILOVER failed: {reply[:80]!r}")

    def stop(self) -> None:
        for s in self.sentinels:
            s.stop()
        for n in self.nodes():
            n.stop()
        self.b.cleanup()
        self.a.cleanup()


@pytest.fixture(scope="session")
def sentinel_topology() -> Iterator[SentinelTopology]:
    if REDIS_SERVER is None:
        pytest.skip("redis-server is not installed")
    t = SentinelTopology().start()
    try:
        yield t
    finally:
        t.stop()
