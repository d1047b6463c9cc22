"""cachekit._core.RedisClient against real redis-server processes (fixtures
in conftest.py / redis_server.py), plus a fake server for hostile replies."""

from __future__ import annotations

import os
import socket
import threading
import time

import pytest
from conftest import REDIS_PASSWORD
from redis_server import RedisServer, encode

from cachekit._core import BackendError, CachekitError, RedisClient
from cachekit.exceptions import BackendError as ExportedBackendError


@pytest.fixture
def client(redis_server):
    redis_server.flushall()
    c = RedisClient(redis_server.url)
    yield c
    c.close()


@pytest.fixture(scope="module")
def counted_server():
    """A server of this module's own, for tests that count the connections
    it received (the session servers may be shared with other files)."""
    server = RedisServer().start()
    yield server
    server.cleanup()


def backend_error(fn, *args, **kwargs) -> BackendError:
    with pytest.raises(BackendError) as info:
        fn(*args, **kwargs)
    return info.value


# ---------------------------------------------------------------- basics


def test_exception_hierarchy():
    assert issubclass(BackendError, CachekitError)
    assert ExportedBackendError is BackendError
    assert BackendError.error_type is None


@pytest.mark.parametrize("value", [b"", b"x", b"\x00\r\n$-1\r\n*3\xff", bytes(range(256)) * 4,
                                   b"v" * (5 << 20)])
def test_round_trip(client, value):
    client.set(b"k", value)
    assert client.get(b"k") == value


def test_buffers_and_types(client):
    client.set(bytearray(b"ba"), memoryview(b"mv"))
    assert client.get(memoryview(b"ba")) == b"mv"
    with pytest.raises(TypeError):
        client.get("str key")
    with pytest.raises(TypeError):
        client.set(b"k", "str value")
    with pytest.raises(TypeError):
        client.set(b"k", b"v", ttl_ms=1.5)
    with pytest.raises(ValueError):
        client.set(b"k", b"v", ttl_ms=0)


def test_command_over_2gib_refused(client):
    # hiredis 0.14 would overflow an int sizing it; refused before formatting.
    # An untouched anonymous mapping costs no memory.
    import mmap

    try:
        huge = mmap.mmap(-1, (2 << 30) + 4096)
    except (OSError, OverflowError, MemoryError):
        pytest.skip("cannot map 2 GiB of address space")
    try:
        with pytest.raises(ValueError, match="larger than 2 GiB"):
            client.set(b"huge", memoryview(huge))
    finally:
        huge.close()
    assert client.get(b"huge") is None


def test_missing_delete_exists(client):
    assert client.get(b"nope") is None
    assert client.exists(b"nope") is False
    client.set(b"a", b"1")
    client.set(b"b", b"2")
    assert client.exists(b"a") is True
    assert client.delete() == 0
    assert client.delete(b"a", b"b", b"c") == 2
    assert client.get(b"a") is None


def test_ttl(client):
    client.set(b"t", b"v", ttl_ms=100_000)
    assert 99_000 < client.pttl(b"t") <= 100_000
    client.set(b"p", b"v")
    assert client.pttl(b"p") == -1
    assert client.pttl(b"missing") == -2
    assert client.pexpire(b"p", 50) is True
    assert client.pexpire(b"missing", 50) is False
    client.set(b"short", b"v", ttl_ms=30)
    time.sleep(0.12)
    assert client.get(b"short") is None
    assert client.get(b"p") is None


def test_get_many_set_many(client):
    assert client.get_many([]) == []
    client.set_many([])
    items = [(b"m%d" % i, b"value %d" % i, None if i % 2 else 60_000) for i in range(300)]
    client.set_many(items)
    keys = [k for k, _, _ in items] + [b"absent"]
    assert client.get_many(keys) == [v for _, v, _ in items] + [None]
    assert client.get_many(tuple(keys[:2])) == [b"value 0", b"value 1"]
    assert client.pttl(b"m0") > 0
    assert client.pttl(b"m1") == -1
    with pytest.raises(TypeError):
        client.set_many([(b"k", b"v")])


def test_clear_prefix(client):
    # Glob metacharacters in the prefix are escaped: "ns*[x]" matches only itself.
    for i in range(50):
        client.set(b"ns*[x]:%d" % i, b"v")
    client.set(b"ns*[x]", b"exact prefix counts")
    client.set(b"nsX[x]:1", b"other")
    client.set(b"ns", b"other")
    client.set(b"other:1", b"other")
    assert client.clear_prefix(b"ns*[x]", count=7) == 51
    assert client.get_many([b"nsX[x]:1", b"ns", b"other:1"]) == [b"other"] * 3
    assert client.get(b"ns*[x]:3") is None
    assert client.clear_prefix(b"ns*[x]") == 0
    with pytest.raises(ValueError):
        client.clear_prefix(b"")


def test_connection_reused(counted_server):
    client = RedisClient(counted_server.url)
    client.ping()
    before = connections_received(counted_server)
    for _ in range(20):
        client.get(b"reuse")
    assert connections_received(counted_server) == before + 1  # + INFO's own


def test_ping_close_context(redis_server):
    with RedisClient(redis_server.url, pool_size=2) as c:
        assert c.ping() is True
    err = backend_error(c.get, b"k")
    assert err.reason == "connection"
    assert "closed" in str(err)


def test_select_db(redis_server):
    a = RedisClient(redis_server.url + "/3")
    b = RedisClient(redis_server.url, db=4)
    a.set(b"db-key", b"three")
    assert b.get(b"db-key") is None
    assert RedisClient(redis_server.url + "/4", db=3).get(b"db-key") == b"three"
    a.delete(b"db-key")


# ------------------------------------------------------------- URL, repr


@pytest.mark.parametrize("url", ["http://x", "redis://", "redis://h:0", "redis://h:99999",
                                 "redis://h/notanumber", "redis://[::1", "redis://h?bogus=1",
                                 "redis://u:%zz@h", "unix://", "unix://host/path"])
def test_bad_urls(url):
    with pytest.raises(ValueError):
        RedisClient(url)


def test_bad_options(redis_server):
    with pytest.raises(ValueError):
        RedisClient(redis_server.url, ssl_ca_certs="/x")  # not rediss://
    with pytest.raises(ValueError):
        RedisClient(redis_server.url, socket_timeout=0)
    with pytest.raises(ValueError):
        RedisClient(redis_server.url, pool_size=0)
    with pytest.raises(ValueError):
        RedisClient(redis_server.url, db=-1)


def test_repr_masks_password():
    r = repr(RedisClient("redis://alice:hunter%402@[::1]:7000/2", pool_size=3))
    assert "hunter" not in r
    assert r == "<cachekit._core.RedisClient redis://alice:***@[::1]:7000/2 pool_size=3>"
    r = repr(RedisClient("redis://h", password="topsecret"))
    assert "topsecret" not in r and ":***@h:6379/0" in r
    assert "pw" not in repr(RedisClient("unix:///tmp/s.sock?db=1&password=pw"))


# ---------------------------------------------------------- auth, unix


def test_password(redis_auth_server):
    url = redis_auth_server.url
    c = RedisClient(url.replace("redis://", f"redis://:{REDIS_PASSWORD}@"))
    c.set(b"k", b"v")
    assert RedisClient(url, password=REDIS_PASSWORD).get(b"k") == b"v"

    err = backend_error(RedisClient(url, password="wrong-Pa55word").get, b"k")
    assert err.reason == "auth"
    assert "wrong-Pa55word" not in str(err) and REDIS_PASSWORD not in str(err)

    err = backend_error(RedisClient(url).get, b"k")  # no password at all
    assert err.reason == "auth"
    err = backend_error(RedisClient(url + "/2").get, b"k")  # SELECT answers NOAUTH
    assert err.reason == "auth"
    err = backend_error(RedisClient(url + "/99999", password=REDIS_PASSWORD).ping)
    assert err.reason == "server" and str(err) == "cannot select the database (ERR)"


def test_acl_user(redis_auth_server):
    reply = redis_auth_server.command(b"ACL", b"SETUSER", b"alice", b"on", b">al1ce-pw",
                                      b"~app:*", b"+@all")
    assert reply.startswith(b"+OK")
    url = redis_auth_server.url
    c = RedisClient(url.replace("redis://", "redis://alice:al1ce-pw@"))
    c.set(b"app:1", b"v")
    assert c.get(b"app:1") == b"v"
    # Outside her key pattern: NOPERM, an auth-type failure.
    assert backend_error(c.get, b"other").reason == "auth"
    # Explicit username/password override the URL's.
    c2 = RedisClient(url.replace("redis://", "redis://bob:nope@"), username="alice",
                     password="al1ce-pw")
    assert c2.get(b"app:1") == b"v"
    err = backend_error(RedisClient(url, username="alice", password="bad-pw").ping)
    assert err.reason == "auth" and "bad-pw" not in str(err)


def test_unix_socket(redis_unix_server):
    c = RedisClient(redis_unix_server.url + "?db=2")
    c.set(b"u", b"unix value")
    assert c.get(b"u") == b"unix value"
    assert RedisClient(redis_unix_server.url).get(b"u") is None
    assert c.delete(b"u") == 1


# ------------------------------------------------------------------ TLS


def test_tls(redis_tls_server, tls_certs):
    port = redis_tls_server.port
    c = RedisClient(f"rediss://127.0.0.1:{port}", ssl_ca_certs=tls_certs["ca"])
    c.set(b"tls", b"v" * 100_000)
    assert c.get(b"tls") == b"v" * 100_000
    assert RedisClient(f"rediss://localhost:{port}", ssl_ca_certs=tls_certs["ca"]).ping()


def connections_received(server: RedisServer) -> int:
    info = server.command(b"INFO", b"stats").decode()
    return int(info.split("total_connections_received:")[1].split()[0])


def test_tls_connection_reused(redis_tls_server, tls_certs):
    # Post-handshake TLS 1.3 session tickets must not make the idle
    # connection look stale to the pool.
    c = RedisClient(f"rediss://127.0.0.1:{redis_tls_server.port}", ssl_ca_certs=tls_certs["ca"])
    c.ping()
    before = connections_received(redis_tls_server)
    for _ in range(20):
        c.get(b"reuse")
    assert connections_received(redis_tls_server) == before + 1  # + INFO's own


def test_tls_wrong_ca(redis_tls_server, tls_certs):
    port = redis_tls_server.port
    for kwargs in ({"ssl_ca_certs": tls_certs["wrong_ca"]}, {}):  # {}: system CAs
        err = backend_error(RedisClient(f"rediss://127.0.0.1:{port}", **kwargs).ping)
        assert err.reason == "connection"
        assert "certificate verify failed" in str(err)


def test_tls_wrong_host(redis_tls_server, tls_certs):
    url = f"rediss://127.0.0.2:{redis_tls_server.port}"
    err = backend_error(RedisClient(url, ssl_ca_certs=tls_certs["ca"]).ping)
    assert "certificate verify failed" in str(err) and "mismatch" in str(err)
    # Chain still verified, name not checked.
    assert RedisClient(url, ssl_ca_certs=tls_certs["ca"], ssl_check_hostname=False).ping()


def test_tls_client_certificate(tls_certs):
    server = RedisServer(tls={**tls_certs, "auth_clients": "yes"}).start()
    try:
        url = f"rediss://127.0.0.1:{server.port}"
        c = RedisClient(url, ssl_ca_certs=tls_certs["ca"], ssl_certfile=tls_certs["client_cert"],
                        ssl_keyfile=tls_certs["client_key"])
        assert c.ping()
        # Without one the server ends the handshake.
        err = backend_error(RedisClient(url, ssl_ca_certs=tls_certs["ca"]).ping)
        assert err.reason == "connection"
        # Certificate and key must come together, and must match.
        with pytest.raises(ValueError):
            RedisClient(url, ssl_ca_certs=tls_certs["ca"], ssl_certfile=tls_certs["client_cert"])
        err = backend_error(RedisClient, url, ssl_ca_certs=tls_certs["ca"],
                            ssl_certfile=tls_certs["client_cert"], ssl_keyfile=tls_certs["key"])
        assert "client key" in str(err) and "mismatch" in str(err)
    finally:
        server.cleanup()


def test_tls_plain_server(redis_server, tls_certs):
    err = backend_error(RedisClient(f"rediss://127.0.0.1:{redis_server.port}",
                                    ssl_ca_certs=tls_certs["ca"], socket_connect_timeout=1).ping)
    assert err.reason in ("connection", "timeout")


# ------------------------------------------------------------- timeouts


def test_socket_timeout(redis_server):
    c = RedisClient(redis_server.url, socket_timeout=0.2)
    c.ping()  # connect before the server stalls
    sleeper = redis_server.send_nowait(b"DEBUG", b"SLEEP", b"1")
    try:
        time.sleep(0.05)
        t0 = time.monotonic()
        err = backend_error(c.get, b"k")
        elapsed = time.monotonic() - t0
        assert err.reason == "timeout"
        assert 0.15 < elapsed < 1.0
    finally:
        sleeper.recv(100)  # +OK after the sleep
        sleeper.close()
    assert c.get(b"k") is None  # the timed-out connection was replaced


def test_connect_timeout():
    # A listener whose backlog is full and never accepted: Linux drops
    # further SYNs, so the connect hangs until our deadline.
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    fillers = []
    try:
        for _ in range(4):
            f = socket.socket()
            f.setblocking(False)
            f.connect_ex(listener.getsockname())
            fillers.append(f)
        time.sleep(0.05)
        port = listener.getsockname()[1]
        t0 = time.monotonic()
        err = backend_error(RedisClient(f"redis://127.0.0.1:{port}",
                                        socket_connect_timeout=0.2).ping)
        elapsed = time.monotonic() - t0
        assert err.reason == "timeout", str(err)
        assert 0.15 < elapsed < 1.0
    finally:
        for f in fillers:
            f.close()
        listener.close()


# ---------------------------------------------------------- reply bound


def test_reply_too_large(client, redis_server):
    client.set(b"big", b"b" * (2 << 20))
    client.set(b"small", b"s")
    bounded = RedisClient(redis_server.url, max_reply_bytes=1 << 20, pool_size=1)
    err = backend_error(bounded.get, b"big")
    assert err.reason == "reply_too_large"
    assert "max_reply_bytes" in str(err)
    assert bounded.get(b"small") == b"s"  # a new connection
    assert bounded.get_many([b"small", b"small"]) == [b"s", b"s"]


class FakeServer:
    """Answers every connection's first bytes with a canned reply."""

    def __init__(self, reply: bytes):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.reply = reply
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                try:
                    conn.recv(4096)
                    conn.sendall(self.reply)
                    time.sleep(0.3)
                except OSError:
                    pass

    def close(self):
        self.sock.close()


@pytest.mark.parametrize("reply, kind", [
    (b"*2147483647\r\n", "reply_too_large"),           # element count
    (b"*4294967295\r\n", "protocol"),                  # count past int, truncated negative
    (b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n", "protocol"),  # nesting
    (b"$9223372036854775806\r\nxx\r\n", "timeout"),    # length that wraps in hiredis 0.14
    (b"$5000\r\n" + b"x" * 3000, "timeout"),            # truncated bulk
    (b"!garbage\r\n", "protocol"),
    (b"+" + b"a" * 300_000, "protocol"),                # endless status line
    (b"*1\r\n-" + b"e" * 300_000, "protocol"),         # endless error line
    (b"$" + b"9" * 100, "protocol"),                    # endless bulk header
    (b"$3\r\nabc\r\n", None),                         # control: a valid reply
])
def test_hostile_replies(reply, kind):
    server = FakeServer(reply)
    try:
        c = RedisClient(f"redis://127.0.0.1:{server.port}", socket_timeout=0.2)
        if kind is None:
            assert c.get(b"k") == b"abc"
            return
        err = backend_error(c.get, b"k")
        assert err.reason == kind, str(err)
    finally:
        server.close()


def test_server_error_reply_hides_arguments(client, redis_server):
    redis_server.command(b"RPUSH", b"a-list", b"secret-value")
    err = backend_error(client.get, b"a-list")
    assert err.reason == "server"
    assert str(err) == "server replied with an error: WRONGTYPE"
    err = backend_error(client.pexpire, b"a-list", 2**63 - 1)
    assert str(err) == "server replied with an error: ERR"
    assert client.delete(b"a-list") == 1  # the connection is still in step


# ----------------------------------------------------- outage, recovery


def test_server_restart():
    server = RedisServer().start()
    try:
        c = RedisClient(server.url, socket_timeout=1.0, socket_connect_timeout=1.0)
        c.set(b"k", b"v")
        server.kill()
        t0 = time.monotonic()
        errors = [backend_error(c.get, b"k") for _ in range(20)]
        assert time.monotonic() - t0 < 1.0  # fails fast, no connect timeouts
        assert {e.reason for e in errors} == {"connection"}
        # After the first refused connect, calls fail at once during the backoff.
        assert sum("next attempt in" in str(e) for e in errors) >= 15
        server.start()
        deadline = time.monotonic() + 5
        while True:
            try:
                assert c.get(b"k") is None  # fresh server, no persistence
                break
            except BackendError:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        c.set(b"k", b"back")
        assert c.get(b"k") == b"back"
    finally:
        server.cleanup()


# ------------------------------------------------------------------- fork


def test_fork_child_opens_its_own_connections(counted_server):
    client = RedisClient(counted_server.url)
    client.set(b"fork", b"parent")
    before = connections_received(counted_server)
    pid = os.fork()
    if pid == 0:  # child: must not speak on the parent's socket
        code = 1
        try:
            if client.get(b"fork") == b"parent":
                client.set(b"fork-child", b"ok")
                code = 0
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The parent's connection is intact and in step.
    assert client.get_many([b"fork", b"fork-child"]) == [b"parent", b"ok"]
    assert connections_received(counted_server) == before + 2  # child's + INFO's


def test_fork_while_threads_wait_on_the_pool(redis_server):
    c = RedisClient(redis_server.url, pool_size=1, socket_timeout=3.0, pool_timeout=2.0)
    c.ping()
    sleeper = redis_server.send_nowait(b"DEBUG", b"SLEEP", b"0.5")
    try:
        time.sleep(0.05)
        # One thread holds the only connection, blocked; one waits for it.
        threads = [threading.Thread(target=c.get, args=(b"fork:absent",)) for _ in range(2)]
        for t in threads:
            t.start()
        time.sleep(0.1)
        pid = os.fork()
        if pid == 0:
            code = 1
            try:
                code = 0 if c.get(b"fork:absent") is None else 1
            finally:
                os._exit(code)
        deadline = time.monotonic() + 5
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                break
            if time.monotonic() > deadline:
                os.kill(pid, 9)
                os.waitpid(pid, 0)
                pytest.fail("the forked child hung")
            time.sleep(0.02)
        assert os.waitstatus_to_exitcode(status) == 0
        for t in threads:
            t.join()
    finally:
        sleeper.recv(100)
        sleeper.close()


# ---------------------------------------------------------------- threads


def test_gil_released_while_waiting(redis_server):
    c = RedisClient(redis_server.url, socket_timeout=5.0)
    c.ping()
    sleeper = redis_server.send_nowait(b"DEBUG", b"SLEEP", b"0.5")
    try:
        time.sleep(0.05)
        done = threading.Event()
        result = []
        t = threading.Thread(target=lambda: (result.append(c.get(b"gil:absent")), done.set()))
        t.start()
        time.sleep(0.02)  # let the thread enter the blocking call
        spins = 0
        while not done.is_set():
            spins += 1  # pure Python: only runs while the client holds no GIL
        t.join()
        assert result == [None]
        assert spins > 10_000
    finally:
        sleeper.recv(100)
        sleeper.close()


def test_four_threads_in_flight_at_once(counted_server):
    # Four threads call get while the server sleeps. If a blocked call held
    # the GIL, the others would start only after it returned and would all
    # reuse its idle connection; released, they are in flight together and
    # the pool opens a connection for each.
    c = RedisClient(counted_server.url, pool_size=4, socket_timeout=3.0)
    c.ping()
    before = connections_received(counted_server)
    sleeper = counted_server.send_nowait(b"DEBUG", b"SLEEP", b"0.4")
    try:
        time.sleep(0.05)
        results = []
        threads = [threading.Thread(target=lambda: results.append(c.get(b"flight:absent")))
                   for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sleeper.recv(100)
        sleeper.close()
    assert results == [None] * 4
    # sleeper's + three new pool connections + INFO's own
    assert connections_received(counted_server) == before + 5


def test_threads_share_a_client(client):
    client.set_many([(b"t%d" % i, b"%d" % i, None) for i in range(50)])
    errors = []

    def worker(n):
        try:
            for i in range(300):
                k = (i * 7 + n) % 50
                assert client.get(b"t%d" % k) == b"%d" % k
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


def test_pool_wait_timeout(redis_server):
    c = RedisClient(redis_server.url, pool_size=1, socket_timeout=3.0, pool_timeout=0.2)
    c.ping()
    sleeper = redis_server.send_nowait(b"DEBUG", b"SLEEP", b"0.6")
    try:
        time.sleep(0.05)
        result = []
        holder = threading.Thread(target=lambda: result.append(c.get(b"pool:absent")))
        holder.start()
        time.sleep(0.05)  # the holder has the only connection, blocked on the server
        t0 = time.monotonic()
        err = backend_error(c.get, b"k")
        assert err.reason == "timeout" and "free connection" in str(err)
        assert time.monotonic() - t0 < 0.5
        holder.join()
        assert result == [None]
    finally:
        sleeper.recv(100)
        sleeper.close()
