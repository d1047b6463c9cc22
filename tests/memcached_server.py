"""Real memcached processes for tests: one per MemcachedServer, on a free
loopback port (TCP only, UDP off), ready when a meta no-op (mn) answers.
Restartable on the same port, to test recovery."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from urllib.parse import unquote_to_bytes

from tests.redis_server import free_port

MEMCACHED = shutil.which("memcached")


class MemcachedServer:
    def __init__(self, *, item_size: str | None = None) -> None:
        if MEMCACHED is None:
            raise RuntimeError("memcached is not installed")
        self.port = free_port()
        self.item_size = item_size
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> MemcachedServer:
        cmd = [MEMCACHED, "-l", "127.0.0.1", "-p", str(self.port), "-U", "0", "-m", "64"]
        if os.geteuid() == 0:
            cmd += ["-u", "root"]  # memcached refuses to run as root without -u
        if self.item_size:
            cmd += ["-I", self.item_size]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    s.sendall(b"mn\r\n")
                    if s.recv(16).startswith(b"MN"):
                        return self
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise RuntimeError("memcached did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
            self.proc = None

    def _until(self, s: socket.socket, end: bytes) -> bytes:
        out = b""
        while not out.endswith(end):
            chunk = s.recv(65536)
            if not chunk:
                break
            out += chunk
        return out

    def _crawl(self) -> set[bytes]:
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"lru_crawler metadump all\r\n")
            meta = self._until(s, b"END\r\n")
        return {unquote_to_bytes(line.split(b" ")[0][4:])
                for line in meta.split(b"\n") if line.startswith(b"key=")}

    def keys(self, expect: bytes | None = None) -> list[bytes]:
        """Every key the server holds (lru_crawler metadump). One crawl can
        miss an item that memcached's LRU maintainer moves between its
        HOT/WARM/COLD lists meanwhile, so the crawls of a few rounds are
        united; with expect, rounds go on (up to 2 s) until a key contains it."""
        found: set[bytes] = set()
        deadline = time.monotonic() + 2.0
        for _ in range(3):
            found |= self._crawl()
        while expect is not None and not any(expect in k for k in found):
            if time.monotonic() > deadline:
                break
            time.sleep(0.02)
            found |= self._crawl()
        return sorted(found)

    def dump_all(self, expect: bytes | None = None) -> bytes:
        """Every key and value the server holds, one connection, mn-terminated;
        with expect, the crawl is repeated until some key contains it."""
        keys = self.keys(expect)
        with socket.create_connection(("127.0.0.1", self.port), timeout=5) as s:
            s.sendall(b"".join(b"mg " + k + b" k v\r\n" for k in keys) + b"mn\r\n")
            return self._until(s, b"MN\r\n")
