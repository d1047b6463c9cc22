"""Redis Cluster topology for tests: N cluster-enabled redis-server
processes on free loopback ports, joined with `redis-cli --cluster create`
and waited on until every node reports cluster_state:ok. Built once per
test session by the `redis_cluster` fixture: 3 masters, each with one
replica (tests/conftest.py imports nothing from here; test modules use the
fixture below).

Tests that change the topology (failover, resharding) leave it with three
masters, each with a replica, covering every slot; which process is a
master may change, so ask `masters()` rather than assuming an order.
"""

from __future__ import annotations

import random
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from redis_server import RedisServer

REDIS_CLI = shutil.which("redis-cli")


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def cluster_port() -> int:
    """A free port whose cluster bus port (port + 10000) is free too: the
    bus port must stay <= 65535, which free_port() does not promise."""
    rng = random.SystemRandom()
    while True:
        port = rng.randrange(20000, 45000)
        if _bindable(port) and _bindable(port + 10000):
            return port


class RedisCluster:
    def __init__(self, masters: int = 3, replicas: int = 0):
        self.nodes = [RedisServer(extra=("--cluster-enabled", "yes",
                                         "--cluster-node-timeout", "2000",
                                         "--cluster-config-file", "nodes.conf"))
                      for _ in range(masters * (1 + replicas))]
        for n in self.nodes:
            n.port = cluster_port()
        self.replicas = replicas

    def start(self, timeout: float = 20.0) -> "RedisCluster":
        if REDIS_CLI is None:
            raise RuntimeError("redis-cli is not installed")
        for n in self.nodes:
            n.start()
        subprocess.run([REDIS_CLI, "--cluster", "create",
                        *(f"127.0.0.1:{n.port}" for n in self.nodes),
                        "--cluster-replicas", str(self.replicas), "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        try:
            self.wait_ok(timeout)
        except RuntimeError:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
            n.cleanup()

    # ------------------------------------------------------------ inspection

    def live(self) -> list[RedisServer]:
        return [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]

    def cluster_nodes(self) -> list[dict[str, object]]:
        """CLUSTER NODES as seen by a live node: id, port, role flags,
        master id, slots (a list of (start, end))."""
        last: Exception | None = None
        for n in self.live():
            try:
                raw = n.command(b"CLUSTER", b"NODES")
            except OSError as exc:  # pragma: no cover - a node going down
                last = exc
                continue
            body = raw.split(b"\r\n", 1)[1].decode() if raw.startswith(b"$") else ""
            out = []
            for line in body.strip().splitlines():
                parts = line.split()
                if len(parts) < 8:
                    continue
                slots = []
                for spec in parts[8:]:
                    if spec.startswith("["):
                        continue  # a slot being migrated
                    a, _, b = spec.partition("-")
                    slots.append((int(a), int(b or a)))
                out.append({"id": parts[0], "port": int(parts[1].split(":")[1].split("@")[0]),
                            "flags": parts[2].split(","), "master": parts[3], "slots": slots})
            return out
        raise RuntimeError(f"no live cluster node answered: {last}")

    def node(self, port: int) -> RedisServer:
        return next(n for n in self.nodes if n.port == port)

    def node_id(self, port: int) -> str:
        return next(str(d["id"]) for d in self.cluster_nodes() if d["port"] == port)

    def masters(self) -> list[RedisServer]:
        """The live masters that serve slots."""
        return [self.node(int(d["port"])) for d in self.cluster_nodes()  # type: ignore[call-overload]
                if "master" in d["flags"] and "fail" not in d["flags"] and d["slots"]]

    def owner(self, slot: int) -> RedisServer:
        for d in self.cluster_nodes():
            if "master" in d["flags"] and "fail" not in d["flags"]:
                if any(a <= slot <= b for a, b in d["slots"]):  # type: ignore[attr-defined]
                    return self.node(int(d["port"]))  # type: ignore[call-overload]
        raise LookupError(slot)

    def replica_of(self, master: RedisServer) -> RedisServer:
        mid = self.node_id(master.port)
        for d in self.cluster_nodes():
            if d["master"] == mid and "fail" not in d["flags"]:
                return self.node(int(d["port"]))  # type: ignore[call-overload]
        raise LookupError(master.port)

    def wait_ok(self, timeout: float = 20.0, *, replicas: bool = True) -> None:
        """Every live node says cluster_state:ok, all slots are covered and
        (replicas=True) every master has a replica linked to it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if all(b"cluster_state:ok" in n.command(b"CLUSTER", b"INFO") for n in self.live()):
                    nodes = self.cluster_nodes()
                    masters = [d for d in nodes if "master" in d["flags"] and d["slots"]
                               and "fail" not in d["flags"]]
                    covered = sum(b - a + 1 for d in masters for a, b in d["slots"])  # type: ignore[attr-defined]
                    linked = all(any(r["master"] == m["id"] and "fail" not in r["flags"]
                                     for r in nodes) for m in masters)
                    if covered == 16384 and (linked or not replicas or not self.replicas):
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("the cluster did not settle in time")


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    if REDIS_CLI is None:
        pytest.skip("redis-cli is not installed")
    c = RedisCluster(masters=3, replicas=1).start()
    try:
        yield c
    finally:
        c.stop()
