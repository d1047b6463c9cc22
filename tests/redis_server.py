"""Real redis-server processes for tests: plain TCP, unix socket, password,
TLS. Reusable: the fixtures in conftest.py build on these helpers, and other
test files (the two-tier decorator, benchmarks) can import them.

Each server runs without persistence (--save '' --appendonly no) in its own
temporary directory on a free loopback port, and is ready when a PING gets
any answer (+PONG, or -NOAUTH from a password-protected one).
"""

from __future__ import annotations

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import time
from pathlib import Path

REDIS_SERVER = shutil.which("redis-server")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tls_supported() -> bool:
    """Whether this redis-server was built with TLS (Debian's is)."""
    if REDIS_SERVER is None:
        return False
    out = subprocess.run([REDIS_SERVER, "--port", "0", "--tls-port", str(free_port())],
                         capture_output=True, text=True, timeout=10)
    # Built without TLS it rejects the option; with TLS it complains about
    # the missing certificate instead.
    return "tls-cert-file" in (out.stdout + out.stderr)


class RedisServer:
    """One redis-server process. `extra` are more command-line arguments."""

    def __init__(self, *, unix: bool = False, password: str | None = None,
                 tls: dict[str, str] | None = None, extra: tuple[str, ...] = (),
                 bind: tuple[str, ...] = ("127.0.0.1",)):
        if REDIS_SERVER is None:
            raise RuntimeError("redis-server is not installed")
        self.dir = Path(tempfile.mkdtemp(prefix="cachekit-redis-"))
        self.port = free_port()
        self.unix_path = str(self.dir / "redis.sock") if unix else None
        self.password = password
        self.tls = tls
        self.extra = extra
        self.bind = bind
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        if self.unix_path:
            return f"unix://{self.unix_path}"
        return f"{'rediss' if self.tls else 'redis'}://127.0.0.1:{self.port}"

    def _args(self) -> list[str]:
        args = [REDIS_SERVER, "--save", "", "--appendonly", "no", "--dir", str(self.dir),
                "--bind", *self.bind, "--enable-debug-command", "yes"]
        if self.tls:
            args += ["--port", "0", "--tls-port", str(self.port),
                     "--tls-cert-file", self.tls["cert"], "--tls-key-file", self.tls["key"],
                     "--tls-ca-cert-file", self.tls["ca"],
                     "--tls-auth-clients", self.tls.get("auth_clients", "no")]
        else:
            args += ["--port", str(self.port)]
        if self.unix_path:
            args += ["--unixsocket", self.unix_path, "--unixsocketperm", "700"]
        if self.password is not None:
            args += ["--requirepass", self.password]
        return args + list(self.extra)

    def start(self, timeout: float = 10.0) -> "RedisServer":
        self.proc = subprocess.Popen(self._args(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.proc.returncode}")
            try:
                if self.command(b"PING").startswith((b"+", b"-")):
                    return self
            except OSError:
                pass
            time.sleep(0.02)
        self.stop()
        raise RuntimeError("redis-server did not answer PING in time")

    def _connect(self, timeout: float) -> socket.socket:
        if self.unix_path:
            s = socket.socket(socket.AF_UNIX)
            s.settimeout(timeout)
            s.connect(self.unix_path)
            return s
        s = socket.create_connection(("127.0.0.1", self.port), timeout=timeout)
        if self.tls:
            ctx = ssl.create_default_context(cafile=self.tls["ca"])
            if "client_cert" in self.tls:  # needed when it checks client certificates
                ctx.load_cert_chain(self.tls["client_cert"], self.tls["client_key"])
            s = ctx.wrap_socket(s, server_hostname="localhost")
        return s

    def command(self, *parts: bytes, timeout: float = 5.0) -> bytes:
        """Send one command on a fresh connection (AUTH first if needed) and
        return the first chunk of the raw reply."""
        with self._connect(timeout) as s:
            if self.password is not None:
                s.sendall(encode(b"AUTH", self.password.encode()))
                s.recv(1024)
            s.sendall(encode(*parts))
            return s.recv(1 << 16)

    def send_nowait(self, *parts: bytes) -> socket.socket:
        """Send a command and return the open socket without reading (for
        DEBUG SLEEP: the caller closes it when done)."""
        s = self._connect(5.0)
        if self.password is not None:
            s.sendall(encode(b"AUTH", self.password.encode()))
            s.recv(1024)
        s.sendall(encode(*parts))
        return s

    def flushall(self) -> None:
        self.command(b"FLUSHALL")

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def stop(self) -> None:
        self.kill()
        self.proc = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def encode(*parts: bytes) -> bytes:
    out = [b"*%d\r\n" % len(parts)]
    for p in parts:
        out.append(b"$%d\r\n%s\r\n" % (len(p), p))
    return b"".join(out)


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(directory: Path, name: str) -> dict[str, str]:
    """A self-signed CA: {'ca': cert path, 'ca_key': key path}."""
    directory.mkdir(parents=True, exist_ok=True)
    key, cert = directory / f"{name}.key", directory / f"{name}.crt"
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
             str(cert), "-days", "2", "-subj", f"/CN={name}", cwd=directory)
    return {"ca": str(cert), "ca_key": str(key)}


def make_server_cert(directory: Path, ca: dict[str, str],
                     san: str = "DNS:localhost,IP:127.0.0.1") -> dict[str, str]:
    """A server certificate signed by ca for the given subjectAltName."""
    key, csr, cert = directory / "server.key", directory / "server.csr", directory / "server.crt"
    ext = directory / "server.ext"
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                   "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", "/CN=localhost", cwd=directory)
    _openssl("x509", "-req", "-in", str(csr), "-CA", ca["ca"], "-CAkey", ca["ca_key"],
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext),
             cwd=directory)
    os.chmod(key, 0o600)
    return {"cert": str(cert), "key": str(key), "ca": ca["ca"]}


def make_client_cert(directory: Path, ca: dict[str, str], name: str = "client") -> dict[str, str]:
    """A client certificate (extendedKeyUsage clientAuth) signed by ca."""
    key, csr, cert = directory / f"{name}.key", directory / f"{name}.csr", directory / f"{name}.crt"
    ext = directory / f"{name}.ext"
    ext.write_text("basicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\n"
                   "extendedKeyUsage=clientAuth\n")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out", str(csr),
             "-subj", f"/CN={name}", cwd=directory)
    _openssl("x509", "-req", "-in", str(csr), "-CA", ca["ca"], "-CAkey", ca["ca_key"],
             "-CAcreateserial", "-out", str(cert), "-days", "2", "-extfile", str(ext),
             cwd=directory)
    os.chmod(key, 0o600)
    return {"cert": str(cert), "key": str(key)}
