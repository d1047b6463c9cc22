"""FileBackend on real directories: the methods, TTLs in the record header,
atomic writes, corruption / truncation / foreign files as counted misses,
permissions, eviction bounds, several processes on one directory, and the
decorator (plain and secure: nothing plaintext on disk)."""

from __future__ import annotations

import multiprocessing as mp
import os
import stat
import time
import warnings

import pytest

from cachekit import cache
from cachekit.backends.file import FileBackend, FileBackendConfig
from cachekit.exceptions import ConfigurationError


def entry_files(d) -> list[str]:
    return sorted(n for n in os.listdir(d) if len(n) == 32)


@pytest.fixture
def fb(tmp_path):
    return FileBackend(FileBackendConfig(cache_dir=tmp_path / "c"))


def test_config_defaults_env_and_errors(tmp_path):
    c = FileBackendConfig(cache_dir=tmp_path)
    assert (c.max_size_mb, c.max_value_mb, c.max_entry_count, c.lock_timeout_seconds,
            c.permissions, c.dir_permissions) == (1024, 100, 10000, 5.0, 0o600, 0o700)
    assert FileBackendConfig().cache_dir.name == "cachekit"
    e = FileBackendConfig.from_env({"CACHEKIT_FILE_CACHE_DIR": str(tmp_path),
                                    "CACHEKIT_FILE_MAX_SIZE_MB": "10",
                                    "CACHEKIT_FILE_MAX_VALUE_MB": "5"})
    assert e.cache_dir == tmp_path and e.max_size_mb == 10
    with pytest.raises(ConfigurationError, match="half of max_size_mb"):
        FileBackendConfig(cache_dir=tmp_path, max_size_mb=10, max_value_mb=6)
    with pytest.raises(ConfigurationError, match="max_entry_count"):
        FileBackendConfig(cache_dir=tmp_path, max_entry_count=5)
    with pytest.raises(ConfigurationError, match="CACHEKIT_FILE_MAX_SIZE_MB"):
        FileBackendConfig.from_env({"CACHEKIT_FILE_MAX_SIZE_MB": "lots"})
    with pytest.warns(UserWarning, match="wider"):
        FileBackendConfig(cache_dir=tmp_path, permissions=0o644)
    with pytest.raises(ConfigurationError, match="FileBackendConfig"):
        FileBackend("/tmp/x")  # type: ignore[arg-type]


def test_methods_and_ttl(fb):
    assert fb.get("a") is None
    fb.set("a", b"\x00one", ttl=60)
    assert fb.get("a") == b"\x00one" and fb.exists("a")
    assert 59 <= fb.get_ttl("a") <= 60
    assert fb.refresh_ttl("a", 500) and 499 <= fb.get_ttl("a") <= 500
    assert not fb.refresh_ttl("none", 5)
    fb.set("b", b"")
    assert fb.get("b") == b"" and fb.get_ttl("b") is None
    assert fb.delete("a") and not fb.delete("a") and fb.get("a") is None
    fb.set("short", b"v", ttl=0.2)
    time.sleep(0.3)
    assert fb.get("short") is None
    assert "short" not in [n for n in os.listdir(fb.config.cache_dir)]
    ok, details = fb.health_check()
    assert ok and details["backend"] == "file" and details["error"] is None


def test_names_are_hashed_and_permissions(tmp_path, monkeypatch):
    os.umask(0o022)
    d = tmp_path / "perm"
    fb = FileBackend(FileBackendConfig(cache_dir=d))
    fb.set("user:secret-name", b"v")
    assert stat.S_IMODE(os.stat(d).st_mode) == 0o700
    for name in os.listdir(d):
        assert "secret" not in name
        assert stat.S_IMODE(os.stat(d / name).st_mode) == 0o600
    os.umask(0o077)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wide = FileBackend(FileBackendConfig(cache_dir=tmp_path / "wide", permissions=0o640,
                                             dir_permissions=0o750))
    wide.set("k", b"v")
    assert stat.S_IMODE(os.stat(tmp_path / "wide").st_mode) == 0o750
    assert stat.S_IMODE(os.stat(tmp_path / "wide" / entry_files(tmp_path / "wide")[0]).st_mode) == 0o640
    os.umask(0o022)


@pytest.mark.parametrize("damage", ["flip_value", "flip_header", "truncate", "empty", "foreign",
                                    "extend", "swap"])
def test_damaged_records_are_counted_misses_and_deleted(fb, damage):
    d = fb.config.cache_dir
    fb.set("victim", b"the value" * 10, ttl=60)
    fb.set("other", b"another value", ttl=60)
    [path] = [d / n for n in entry_files(d) if fb.get("other") and n not in _names_of(fb, "other")]
    data = bytearray(path.read_bytes())
    if damage == "flip_value":
        data[-3] ^= 0x01
    elif damage == "flip_header":
        data[17] ^= 0x40  # inside expires_ms: a longer life is tampering too
    elif damage == "truncate":
        data = data[: len(data) - 5]
    elif damage == "empty":
        data = bytearray()
    elif damage == "foreign":
        data = bytearray(b"PNG\x89 not a cachekit record at all" * 3)
    elif damage == "extend":
        data += b"trailing"
    elif damage == "swap":  # another key's valid record under this name
        data = bytearray((d / _names_of(fb, "other")[0]).read_bytes())
    path.write_bytes(bytes(data))
    before = fb.stats()["corrupt"]
    assert fb.get("victim") is None
    assert fb.stats()["corrupt"] == before + 1
    assert not path.exists()
    assert fb.get("other") == b"another value"


def _names_of(fb, key: str) -> list[str]:
    """The entry file of key: the one that disappears when key is deleted."""
    d = fb.config.cache_dir
    before = set(entry_files(d))
    value = fb.get(key)
    fb.delete(key)
    name = before - set(entry_files(d))
    fb.set(key, value)
    return sorted(name)


def test_too_large_values_are_counted_and_skipped(tmp_path):
    fb = FileBackend(FileBackendConfig(cache_dir=tmp_path / "c", max_size_mb=2, max_value_mb=1))
    fb.set("big", b"x" * (1024 * 1024 + 1))
    assert fb.get("big") is None and fb.stats()["too_large"] == 1
    fb.set("fits", b"x" * (1024 * 1024))
    assert fb.get("fits") == b"x" * (1024 * 1024)


def test_eviction_keeps_entry_bound_and_lru_order(tmp_path):
    fb = FileBackend(FileBackendConfig(cache_dir=tmp_path / "c", max_entry_count=100))
    fb.set("hot", b"h")
    for i in range(300):
        fb.set(f"k{i}", b"v" * 10)
        if i % 50 == 0:
            assert fb.get("hot") == b"h"  # bumps its mtime (at most once a second)
            os.utime(tmp_path / "c" / _hot_name(fb), None)
    stats = fb.stats()
    assert stats["entries"] <= 100 and stats["evicted"] >= 200
    assert fb.get("k299") == b"v" * 10  # newest kept
    assert fb.get("k0") is None  # oldest gone
    assert fb.get("hot") == b"h"  # recently used survives


def _hot_name(fb) -> str:
    d = fb.config.cache_dir
    for n in entry_files(d):
        data = (d / n).read_bytes()
        if data[64:67] == b"hot":
            return n
    raise AssertionError("no entry for 'hot'")


def test_eviction_keeps_size_bound(tmp_path):
    fb = FileBackend(FileBackendConfig(cache_dir=tmp_path / "c", max_size_mb=2, max_value_mb=1))
    for i in range(40):
        fb.set(f"k{i}", os.urandom(200_000))
    assert fb.stats()["bytes"] <= 2 * 1024 * 1024
    assert fb.get("k39") is not None


def test_stale_temp_files_are_removed(fb):
    d = fb.config.cache_dir
    fb.set("a", b"v")
    tmp = d / ".tmp-1-1-deadbeef"
    tmp.write_bytes(b"half a record")
    old = time.time() - 3600
    os.utime(tmp, (old, old))
    fb.evict()
    assert not tmp.exists() and fb.get("a") == b"v"


def test_clear_prefix(fb):
    for i in range(5):
        fb.set(f"ns1:{i}", b"a")
        fb.set(f"ns2:{i}", b"b")
    assert fb.clear_prefix("ns1:") == 5
    assert fb.get("ns1:0") is None and fb.get("ns2:0") == b"b"
    assert fb.clear() == 5 and entry_files(fb.config.cache_dir) == []


def _worker(d: str, wid: int, rounds: int, q) -> None:
    fb = FileBackend(FileBackendConfig(cache_dir=d, max_entry_count=100))
    bad = 0
    for r in range(rounds):
        key = f"shared{r % 40}"
        # Every writer writes a self-describing value: the key and a
        # checksum-like repetition, so a torn or mixed read is detectable.
        fb.set(key, (key.encode() + b"|" + str(wid).encode() + b"|") * 50, ttl=60)
        got = fb.get(f"shared{(r * 7) % 40}")
        if got is not None:
            k = f"shared{(r * 7) % 40}".encode()
            unit = got[: got.index(b"|", len(k) + 1) + 1]
            if not got.startswith(k + b"|") or got != unit * 50:
                bad += 1
        fb.set(f"w{wid}-{r}", b"x" * 100)
    q.put((bad, fb.stats()["corrupt"]))


def test_several_processes_share_one_directory(tmp_path):
    d = str(tmp_path / "shared")
    FileBackend(FileBackendConfig(cache_dir=d, max_entry_count=100))
    ctx = mp.get_context("fork")
    q = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(d, w, 300, q)) for w in range(4)]
    for p in procs:
        p.start()
    results = [q.get(timeout=60) for _ in procs]
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert all(bad == 0 for bad, _ in results)  # no torn or foreign reads
    assert all(corrupt == 0 for _, corrupt in results)  # atomic renames: nothing half-written
    fb = FileBackend(FileBackendConfig(cache_dir=d, max_entry_count=100))
    fb.evict()
    assert fb.stats()["entries"] <= 100
    assert not [n for n in os.listdir(d) if n.startswith(".tmp-")]


def test_decorator_plain_and_l2_hit(fb):
    calls = []

    @cache(backend=fb, ttl=60, namespace="fplain")
    def f(x):
        calls.append(x)
        return {"x": x}

    assert f(1) == {"x": 1}
    f.cache_clear()  # clears L1 and the function's files
    assert entry_files(fb.config.cache_dir) == []
    assert f(1) == {"x": 1}
    assert calls == [1, 1]

    @cache(backend=fb, ttl=60, namespace="fplain2")
    def g(x):
        calls.append(x)
        return x + 1

    assert g(1) == 2 and calls == [1, 1, 1]


XPROC_CALLS: list[int] = []


def _xproc(d):
    @cache(backend=FileBackend(FileBackendConfig(cache_dir=d)), ttl=60, namespace="xp")
    def triple(x):
        XPROC_CALLS.append(x)
        return x * 3
    return triple


def _xproc_child(d):
    _xproc(d)(7)


def test_decorator_l2_hit_across_processes(tmp_path):
    d = tmp_path / "xproc"
    p = mp.get_context("fork").Process(target=_xproc_child, args=(d,))
    p.start()
    p.join(30)
    assert p.exitcode == 0
    triple = _xproc(d)
    XPROC_CALLS.clear()
    assert triple(7) == 21 and XPROC_CALLS == []  # written by the other process
    assert triple.cache_info().l2_hits == 1


def test_decorator_secure_writes_no_plaintext(fb, monkeypatch):
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", "ef" * 32)
    calls = []

    @cache.secure(backend=fb, ttl=60, namespace="fsecure")
    def ssn(user):
        calls.append(user)
        return "SSN-PLAINTEXT-" + user

    assert ssn("bob-argument") == "SSN-PLAINTEXT-bob-argument"
    ssn.cache_clear()
    assert entry_files(fb.config.cache_dir) == []
    assert ssn("bob-argument") == "SSN-PLAINTEXT-bob-argument"
    assert len(calls) == 2
    files = entry_files(fb.config.cache_dir)
    assert len(files) == 1
    blob = b"".join((fb.config.cache_dir / n).read_bytes() for n in os.listdir(fb.config.cache_dir))
    assert b"SSN-PLAINTEXT" not in blob and b"bob-argument" not in blob


def test_unwritable_directory_fails_open(tmp_path):
    d = tmp_path / "ro"
    fb = FileBackend(FileBackendConfig(cache_dir=d))
    calls = []

    @cache(backend=fb, ttl=60, namespace="ro")
    def f(x):
        calls.append(x)
        return x

    os.chmod(d, 0o500)
    try:
        if os.geteuid() == 0:
            # root ignores permission bits: remove the directory instead
            os.chmod(d, 0o700)
            for n in os.listdir(d):
                os.unlink(d / n)
            os.rmdir(d)
        assert f(1) == 1 and f(2) == 2
        assert f.cache_stats()["l2_errors"] >= 1
        assert not fb.health_check()[0]
    finally:
        if d.exists():
            os.chmod(d, 0o700)


REGRESSIONS = sorted((__import__("pathlib").Path(__file__).resolve().parent.parent / "fuzz" /
                      "regressions" / "file_record").iterdir())


@pytest.mark.parametrize("path", REGRESSIONS, ids=lambda p: p.name)
def test_fuzz_regressions_are_counted_misses(fb, path):
    fb.set("target", b"good")
    [name] = entry_files(fb.config.cache_dir)
    (fb.config.cache_dir / name).write_bytes(path.read_bytes())
    assert fb.get("target") is None
    assert fb.stats()["corrupt"] == 1
    assert entry_files(fb.config.cache_dir) == []


def _fill(fb, n):
    for i in range(n):
        fb.set(f"child{i}", b"c" * 10)
    os._exit(0 if fb.stats()["entries"] <= 100 else 3)


def test_backend_inherited_through_fork_still_evicts(tmp_path):
    fb = FileBackend(FileBackendConfig(cache_dir=tmp_path / "fork", max_entry_count=100))
    fb.set("parent", b"p")
    p = mp.get_context("fork").Process(target=_fill, args=(fb, 400))
    p.start()
    p.join(60)
    assert p.exitcode == 0
    assert fb.stats()["entries"] <= 100
