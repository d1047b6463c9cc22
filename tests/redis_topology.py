"""Redis Cluster topology for tests: N cluster-enabled redis-server
processes on free loopback ports, joined with `redis-cli --cluster create`
and waited on until every node reports cluster_state:ok. Built once per
test session by the `redis_cluster` fixture (tests/conftest.py imports
nothing from here; test modules use the fixture below).
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
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all(b"cluster_state:ok" in n.command(b"CLUSTER", b"INFO") for n in self.nodes):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("the cluster did not reach cluster_state:ok in time")

    def stop(self) -> None:
        for n in self.nodes:
            n.stop()
            n.cleanup()


@pytest.fixture(scope="session")
def redis_cluster() -> Iterator[RedisCluster]:
    if REDIS_CLI is None:
        pytest.skip("redis-cli is not installed")
    c = RedisCluster(masters=3).start()
    try:
        yield c
    finally:
        c.stop()
