"""@cache with a Redis L2: L1, then Redis, then the function; failing open."""

from __future__ import annotations

import asyncio
import datetime
import decimal
import subprocess
import sys
import textwrap
import time
import uuid

import pytest

from cachekit import cache
from cachekit._core import RedisClient
from cachekit.backends import RedisBackend, set_default_backend
from cachekit.config import reset_settings
from cachekit.config.reliability import CircuitBreakerConfig


@pytest.fixture
def backend(redis_server):
    redis_server.flushall()
    b = RedisBackend(redis_server.url)
    yield b
    b.close()


@pytest.fixture
def raw(redis_server):
    c = RedisClient(redis_server.url)
    yield c
    c.close()


def l2_only(backend, **kw):
    """A decorator whose L1 cannot hold anything: every hit is an L2 hit."""
    return cache(backend=backend, l1_max_entries=1, **kw)


VALUES = [
    None, True, 7, -2**70, 1.5, "text", b"\x00bytes", [1, [2]], (1, (2,)), {"a": {"b": [1]}},
    {1, 2}, frozenset({3}), bytearray(b"ba"), decimal.Decimal("1.25"), uuid.UUID(int=9),
    datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=datetime.timezone.utc),
    datetime.date(2026, 1, 2), datetime.timedelta(seconds=3),
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_every_value_type_round_trips_through_redis(backend, value):
    runs = []

    @cache(backend=backend)
    def f(x):
        runs.append(x)
        return value

    assert f(1) == value
    f.store.clear()  # drop L1: the next call must come from Redis
    got = f(1)
    assert got == value and type(got) is type(value)
    assert len(runs) == 1
    assert f.cache_stats()["l2_hits"] == 1


def test_l2_hit_fills_l1_and_miss_writes_both(backend, raw):
    runs = []

    @cache(backend=backend, ttl=60)
    def f(x):
        runs.append(x)
        return {"x": x}

    f(1)
    name = f.cache_key(1).encode()
    assert raw.exists(name)
    assert 0 < raw.pttl(name) <= 60_000
    f.store.clear()
    assert f(1) == {"x": 1}  # from Redis
    assert f(1) == {"x": 1}  # from L1
    s = f.cache_stats()
    assert (s["l2_hits"], s["hits"], s["misses"]) == (1, 2, 1)
    assert f.cache_info().l2_hits == 1 and f.cache_info().l1_hits == 1


def test_two_processes_share_entries(backend, redis_server, tmp_path):
    script = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).resolve().parent.parent)!r})
        from cachekit import cache
        from cachekit.backends import RedisBackend
        runs = []
        @cache(backend=RedisBackend({redis_server.url!r}), namespace="shared")
        def compute(x):
            runs.append(x)
            return x * 10
        assert compute(4) == 40
        print(len(runs))
    """)
    path = tmp_path / "child.py"
    path.write_text(script)
    first = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, check=True)
    second = subprocess.run([sys.executable, str(path)], capture_output=True, text=True, check=True)
    assert first.stdout.strip() == "1" and second.stdout.strip() == "0"


def test_invalidate_and_cache_clear_reach_redis(backend, raw):
    @cache(backend=backend, namespace="inv")
    def f(x):
        return x

    @cache(backend=backend, namespace="inv")
    def other(x):
        return x

    f(1), f(2), other(1)
    assert f.invalidate_cache(1) is True
    assert not raw.exists(f.cache_key(1).encode())
    assert raw.exists(f.cache_key(2).encode())
    f.cache_clear()
    assert not raw.exists(f.cache_key(2).encode())
    assert raw.exists(other.cache_key(1).encode())  # another function's entries stay


def test_corrupted_truncated_and_foreign_entries_are_counted_misses(backend, raw, cachekit_log):
    runs = []

    @l2_only(backend)
    def f(x):
        runs.append(x)
        return {"x": x}

    f(1)
    name = f.cache_key(1).encode()
    good = raw.get(name)
    for bad in (b"garbage", good[:-3], good[:20], good[:-1] + bytes([good[-1] ^ 1])):
        raw.set(name, bad)
        f.store.clear()
        assert f(1) == {"x": 1}
        assert raw.get(name) == good  # replaced by the fresh result
    assert len(runs) == 5
    assert f.cache_stats()["integrity_errors"] == 4
    assert "integrity_error" in cachekit_log.text or "L2 entry refused" in cachekit_log.text


def test_mutable_l2_hits_are_fresh_copies(backend):
    @cache(backend=backend)
    def f():
        return {"a": [1]}

    f()
    f.store.clear()
    a = f()
    a["a"].append(2)
    assert f() == {"a": [1]}


def test_identity_keyed_methods_stay_in_l1(backend, raw, redis_server):
    class Svc:
        @cache(backend=backend, namespace="idm")
        def get(self, x):
            return x

    s = Svc()
    s.get(1)
    assert s.get(1) == 1
    assert raw.clear_prefix(b"idm:") == 0  # nothing was written to Redis


def test_backend_none_is_l1_only(redis_server, monkeypatch, raw):
    redis_server.flushall()
    monkeypatch.setenv("CACHEKIT_REDIS_URL", redis_server.url)
    reset_settings()

    @cache(backend=None, namespace="none")
    def f(x):
        return x

    f(1)
    assert raw.clear_prefix(b"none:") == 0


def test_redis_url_in_the_environment_makes_cache_two_tier(redis_server, monkeypatch, raw):
    redis_server.flushall()
    monkeypatch.setenv("CACHEKIT_REDIS_URL", redis_server.url)
    reset_settings()

    @cache(namespace="envns")
    def f(x):
        return x + 1

    f(1)
    assert raw.exists(f.cache_key(1).encode())


def test_set_default_backend(backend, raw):
    set_default_backend(backend)
    try:
        @cache(namespace="dflt")
        def f(x):
            return x

        f(3)
        assert raw.exists(f.cache_key(3).encode())
    finally:
        set_default_backend(None)


class DictBackend:
    """A user backend in Python: the BaseBackend protocol."""

    def __init__(self):
        self.data = {}
        self.calls = []

    def get(self, key):
        self.calls.append(("get", key))
        return self.data.get(key)

    def set(self, key, value, ttl=None):
        self.calls.append(("set", key, ttl))
        self.data[key] = value

    def delete(self, key):
        return self.data.pop(key, None) is not None

    def exists(self, key):
        return key in self.data

    def health_check(self):
        return True, {}


def test_a_python_backend_is_driven_by_the_same_decorator():
    b = DictBackend()

    @cache(backend=b, ttl=30, l1_max_entries=1)
    def f(x):
        return [x]

    assert f(1) == [1]
    assert ("set", f.cache_key(1), 30) in b.calls
    assert f(2) == [2]  # evicts f(1) from the one-entry L1
    assert f(1) == [1]
    assert f.cache_stats()["l2_hits"] == 1
    assert f.invalidate_cache(1) is True and f.cache_key(1) not in b.data


class FailingBackend(DictBackend):
    def get(self, key):
        raise ConnectionError("down")

    def set(self, key, value, ttl=None):
        raise ConnectionError("down")


def test_a_failing_backend_never_reaches_the_caller_and_opens_the_breaker(cachekit_log):
    b = FailingBackend()
    runs = []

    @cache(backend=b, l1_max_entries=1,
           circuit_breaker=CircuitBreakerConfig(failure_threshold=2, recovery_timeout=60))
    def f(x):
        runs.append(x)
        return x

    for i in range(10):
        assert f(i) == i
    assert len(runs) == 10
    s = f.cache_stats()
    assert s["l2_errors"] == 2  # then the breaker opened: later calls skip L2
    assert cachekit_log.text.count("backend_error") + cachekit_log.text.count("ConnectionError") >= 1


def test_redis_down_then_up_no_call_raises_and_hits_resume(redis_server):
    from redis_server import RedisServer

    server = RedisServer().start()
    try:
        b = RedisBackend(server.url)
        runs = []

        @cache(backend=b, l1_max_entries=1, namespace="flap",
               circuit_breaker=CircuitBreakerConfig(failure_threshold=3, recovery_timeout=0.2,
                                                    success_threshold=1, half_open_requests=1))
        def f(x):
            runs.append(x)
            return x * 2

        assert f(1) == 2
        server.kill()
        for i in range(20):
            assert f(i % 3) == (i % 3) * 2
        assert f.cache_stats()["l2_errors"] >= 3
        server.start()
        time.sleep(0.3)  # past the breaker's recovery time
        f(5)  # half-open probe succeeds, writes 5
        f(7)
        before = len(runs)
        assert f(5) == 10  # from Redis again
        assert len(runs) == before
        b.close()
    finally:
        server.stop()


def test_async_function_uses_l2_off_the_loop(backend, raw):
    runs = []

    @cache(backend=backend, namespace="aio")
    async def f(x):
        runs.append(x)
        await asyncio.sleep(0)
        return {"x": x}

    async def main():
        assert await f(1) == {"x": 1}
        f.store.clear()
        assert await f(1) == {"x": 1}  # from Redis, in a thread
        assert await f.ainvalidate_cache(1) is True
        await f.acache_clear()

    asyncio.run(main())
    assert runs == [1]
    assert f.cache_stats()["l2_hits"] == 1


SECRET = "078-05-1120"


def test_secure_redis_holds_only_ciphertext_under_names_that_reveal_nothing(backend, raw):
    import hashlib

    runs = []

    @cache.secure(master_key="ab" * 32, backend=backend, namespace="sec", ttl=60)
    def ssn(user):
        runs.append(user)
        return {"ssn": SECRET}

    assert ssn("alice@example.com") == {"ssn": SECRET}
    name = ssn.cache_key("alice@example.com").encode()
    stored = raw.get(name)
    assert stored is not None and stored[:2] == b"CK" and stored[3] & 2  # encrypted
    assert SECRET.encode() not in stored and b"ssn" not in stored
    assert b"alice" not in name
    # The name is keyed: hashing guesses of the argument does not find it.
    digest = name.rsplit(b":", 1)[1].decode()
    for guess in (b"alice@example.com", b"\x91\xb1alice@example.com"):
        assert hashlib.sha256(guess).hexdigest()[:32] != digest
    assert 0 < raw.pttl(name) <= 60_000
    ssn.store.clear()
    assert ssn("alice@example.com") == {"ssn": SECRET}  # opened from Redis
    assert runs == ["alice@example.com"]
    assert ssn.cache_stats()["l2_hits"] == 1


def test_secure_names_are_the_same_in_every_process_with_the_key(backend, redis_server):
    code = textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(__import__('pathlib').Path(__file__).resolve().parent.parent)!r})
        from cachekit import cache
        from cachekit.backends import RedisBackend
        def f(x):
            return x
        f.__qualname__ = "f"
        g = cache.secure(master_key=sys.argv[1], backend=RedisBackend({redis_server.url!r}),
                         namespace="n")(f)
        print(g.cache_key(1))
    """)
    def name(key):
        out = subprocess.run([sys.executable, "-c", code, key], capture_output=True, text=True,
                             check=True)
        return out.stdout.strip()

    assert name("ab" * 32) == name("ab" * 32) != name("cd" * 32)


def test_secure_tenants_get_separate_names_and_entries(backend, raw):
    import contextvars

    tenant = contextvars.ContextVar("tenant", default="t1")

    @cache.secure(master_key="ab" * 32, backend=backend, namespace="ten",
                  tenant_extractor=lambda x: tenant.get())
    def f(x):
        return (tenant.get(), x)

    assert f(1) == ("t1", 1)
    n1 = f.cache_key(1)
    tenant.set("t2")
    assert f(1) == ("t2", 1)
    assert f.cache_key(1) != n1
    # An entry copied under another tenant's name does not open as theirs.
    raw.set(f.cache_key(1).encode(), raw.get(n1.encode()))
    f.store.clear()
    assert f(1) == ("t2", 1)
    assert f.cache_stats()["decrypt_errors"] == 1


def test_secure_tampered_l2_entry_is_a_counted_miss(backend, raw):
    runs = []

    @cache.secure(master_key="ab" * 32, backend=backend, namespace="tamper", l1_max_entries=1)
    def f(x):
        runs.append(x)
        return [x]

    f(1)
    name = f.cache_key(1).encode()
    good = bytearray(raw.get(name))
    good[-1] ^= 1
    raw.set(name, bytes(good))
    f.store.clear()
    assert f(1) == [1]
    assert len(runs) == 2 and f.cache_stats()["decrypt_errors"] == 1


def test_secure_invalidate_reaches_redis(backend, raw):
    @cache.secure(master_key="ab" * 32, backend=backend, namespace="sinv")
    def f(x):
        return x

    f(1)
    name = f.cache_key(1).encode()
    assert raw.exists(name)
    assert f.invalidate_cache(1) is True
    assert not raw.exists(name)


def test_secure_async_uses_l2(backend):
    @cache.secure(master_key="ab" * 32, backend=backend, namespace="saio")
    async def f(x):
        return {"v": SECRET}

    async def main():
        await f(1)
        f.store.clear()
        assert await f(1) == {"v": SECRET}

    asyncio.run(main())
    assert f.cache_stats()["l2_hits"] == 1


def test_secure_with_a_key_provider_stays_in_l1_and_says_so(backend, raw, caplog):
    import logging

    caplog.set_level(logging.INFO, logger="cachekit")

    class Provider:
        key_id = "k"
        provider_id = 7

        def generate_data_key(self, context):
            return bytearray(b"k" * 32), b"wrapped"

        def decrypt_data_key(self, wrapped, context):
            return bytearray(b"k" * 32)

    @cache.secure(key_provider=Provider(), backend=backend, namespace="prov")
    def f(x):
        return x

    f(1)
    assert raw.clear_prefix(b"prov:") == 0
    assert "key provider keeps its entries in the in-process L1 only" in caplog.text


def test_refresh_ttl_on_get_renews_the_redis_ttl(backend, raw):
    @cache(backend=backend, ttl=10, refresh_ttl_on_get=True, ttl_refresh_threshold=0.9,
           namespace="refresh", l1_max_entries=1)
    def f(x):
        return x

    f(1)
    name = f.cache_key(1).encode()
    raw.pexpire(name, 5000)  # half the TTL left: under the 0.9 threshold
    f.store.clear()
    assert f(1) == 1  # an L2 hit
    assert raw.pttl(name) > 9000


def test_refresh_ttl_on_get_needs_a_ttl_and_a_sane_threshold(backend):
    from cachekit import ConfigurationError

    with pytest.raises(ConfigurationError, match="needs one: pass ttl="):
        cache(backend=backend, refresh_ttl_on_get=True)(lambda: 1)
    with pytest.raises(ConfigurationError, match="ttl_refresh_threshold"):
        cache(backend=backend, ttl=5, refresh_ttl_on_get=True, ttl_refresh_threshold=0)(lambda: 1)


def test_secure_entries_carry_their_expiry_and_replays_after_it_are_refused(backend, raw):
    from cachekit._core import read_header

    runs = []

    @cache.secure(master_key="ab" * 32, backend=backend, namespace="replay", ttl=1,
                  l1_max_entries=1)
    def f(x):
        runs.append(x)
        return {"v": len(runs)}

    assert f(1) == {"v": 1}
    name = f.cache_key(1).encode()
    old = raw.get(name)
    assert read_header(old)["flags"] == 0x06  # ENCRYPTED | EXPIRES
    raw.set(name, old)  # the same entry with its TTL stripped: it would live forever
    assert raw.pttl(name) == -1
    time.sleep(1.1)  # past the expiry the entry itself carries
    f.store.clear()
    assert f(1) == {"v": 2}  # refused whatever Redis says; the function ran
    s = f.cache_stats()
    assert s["stale_entries"] == 1 and s["decrypt_errors"] == 0
    raw.set(name, old)  # replaying the old entry again changes nothing
    f.store.clear()
    assert f(1) == {"v": 3}


def test_a_forged_expiry_fails_authentication(backend, raw):
    @cache.secure(master_key="ab" * 32, backend=backend, namespace="forge", ttl=1,
                  l1_max_entries=1)
    def f(x):
        return x

    f(1)
    name = f.cache_key(1).encode()
    e = bytearray(raw.get(name))
    w = e[33]
    e[46 + w: 46 + w + 8] = (2**62).to_bytes(8, "big")  # push the expiry far away
    raw.set(name, bytes(e))
    f.store.clear()
    f(1)
    assert f.cache_stats()["decrypt_errors"] == 1


def test_signed_plain_entries_refuse_what_was_planted(backend, raw, monkeypatch):
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", "ab" * 32)
    runs = []

    @cache(backend=backend, namespace="signed", sign_entries=True, l1_max_entries=1)
    def price(item):
        runs.append(item)
        return {"item": item, "price": 10}

    @cache(backend=backend, namespace="signed-plain", l1_max_entries=1)
    def unsigned(item):
        return {"item": item, "price": 10}

    assert price("a") == {"item": "a", "price": 10}
    name = price.cache_key("a").encode()
    good = raw.get(name)
    assert good[3] & 0x08 and good[5] == 56  # SIGNED, 56-byte header
    price.store.clear()
    assert price("a") == {"item": "a", "price": 10} and len(runs) == 1  # verified L2 hit

    # An attacker with write access plants a well-formed unsigned entry...
    unsigned("a")
    planted = raw.get(unsigned.cache_key("a").encode())
    raw.set(name, planted)
    price.store.clear()
    assert price("a") == {"item": "a", "price": 10} and len(runs) == 2
    # ... or alters the signed one, or moves it to another call's name.
    altered = bytearray(raw.get(name))
    altered[-1] ^= 1
    raw.set(name, bytes(altered))
    price.store.clear()
    price("a")
    raw.set(price.cache_key("b").encode(), raw.get(name))
    price.store.clear()
    assert price("b") == {"item": "b", "price": 10}
    assert price.cache_stats()["integrity_errors"] == 3
    assert len(runs) == 4


def test_sign_entries_needs_a_master_key(backend, monkeypatch):
    from cachekit import ConfigurationError

    monkeypatch.delenv("CACHEKIT_MASTER_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="CACHEKIT_MASTER_KEY"):
        cache(backend=backend, sign_entries=True)(lambda: 1)


def test_a_slow_redis_trips_the_timeout_and_the_call_still_returns(redis_server):
    from cachekit.backends import RedisBackendConfig

    redis_server.flushall()
    b = RedisBackend(RedisBackendConfig(redis_url=redis_server.url, socket_timeout=0.2,
                                        socket_connect_timeout=0.2))
    try:
        @cache(backend=b, namespace="slow", l1_max_entries=1)
        def f(x):
            return x + 1

        blocker = redis_server.send_nowait(b"DEBUG", b"SLEEP", b"1")  # the server stalls 1 s
        try:
            time.sleep(0.05)
            start = time.perf_counter()
            assert f(1) == 2
            elapsed = time.perf_counter() - start
        finally:
            blocker.close()
        assert elapsed < 0.8, f"the call waited {elapsed:.2f} s on a stalled Redis"
        assert f.cache_stats()["l2_errors"] >= 1
    finally:
        b.close()


@pytest.mark.parametrize("secure", [False, True])
def test_a_stampede_across_processes_computes_once_with_a_lease(redis_server, tmp_path, secure):
    redis_server.flushall()
    root = str(__import__("pathlib").Path(__file__).resolve().parent.parent)
    log = tmp_path / "runs.log"
    deco = 'cache.secure(master_key="ab" * 32, ' if secure else "cache("
    script = textwrap.dedent(f"""
        import sys, time
        sys.path.insert(0, {root!r})
        from cachekit import cache
        from cachekit.backends import RedisBackend
        @{deco}backend=RedisBackend({redis_server.url!r}), namespace="lease", stampede_lease=5)
        def report(x):
            with open({str(log)!r}, "a") as f:
                f.write("run\\n")
            time.sleep(0.5)
            return {{"x": x}}
        start = float(sys.argv[1])
        time.sleep(max(0.0, start - time.time()))
        assert report(1) == {{"x": 1}}
        print(report.cache_stats()["lease_waits"])
    """)
    path = tmp_path / "worker.py"
    path.write_text(script)
    start = time.time() + 1.0
    procs = [subprocess.Popen([sys.executable, str(path), str(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(4)]
    outs = [p.communicate(timeout=30) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert log.read_text().count("run") == 1
    assert sum(int(o[0].strip()) for o in outs) == 3


def test_a_dead_lease_holder_does_not_wedge_the_key(backend, raw):
    @cache(backend=backend, namespace="deadlease", stampede_lease=0.3, l1_max_entries=1)
    def f(x):
        return x

    name = f.cache_key(1).encode()
    raw.set(name + b":lease", b"someone-who-died", ttl_ms=300_000)  # never released
    start = time.perf_counter()
    assert f(1) == 1  # waited the lease's own 0.3 s, then computed anyway
    assert time.perf_counter() - start < 2
    assert raw.get(name + b":lease") == b"someone-who-died"  # not ours to delete


def test_async_functions_take_the_stampede_lease_too(redis_server, tmp_path):
    redis_server.flushall()
    root = str(__import__("pathlib").Path(__file__).resolve().parent.parent)
    log = tmp_path / "aruns.log"
    script = textwrap.dedent(f"""
        import asyncio, sys, time
        sys.path.insert(0, {root!r})
        from cachekit import cache
        from cachekit.backends import RedisBackend
        @cache(backend=RedisBackend({redis_server.url!r}), namespace="alease", stampede_lease=5)
        async def report(x):
            with open({str(log)!r}, "a") as f:
                f.write("run\\n")
            await asyncio.sleep(0.5)
            return {{"x": x}}
        start = float(sys.argv[1])
        time.sleep(max(0.0, start - time.time()))
        assert asyncio.run(report(1)) == {{"x": 1}}
    """)
    path = tmp_path / "aworker.py"
    path.write_text(script)
    start = time.time() + 1.0
    procs = [subprocess.Popen([sys.executable, str(path), str(start)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=30) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    assert log.read_text().count("run") == 1
    assert RedisClient(redis_server.url).get(b"alease:") is None  # sanity: a real client works


def test_a_stampede_lease_never_waits_where_no_lease_can_be_taken():
    # A Python backend has no leases (and an open breaker skips them): the
    # call computes at once instead of waiting for a holder that is not there.
    b = DictBackend()

    @cache.production(backend=b, stampede_lease=30)
    def f(x):
        return x

    start = time.perf_counter()
    assert f(1) == 1
    assert time.perf_counter() - start < 5
