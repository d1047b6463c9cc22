"""@cache.secure: keys validated at decoration, ciphertext-only L1, tenants,
rotation, data-key limits, tamper handling, fork safety, no leaked secrets."""

from __future__ import annotations

import gc
import logging
import os
import pickle
import signal
import threading
import time

import pytest

from cachekit import ConfigurationError, cache, metrics
from cachekit._core import DecryptionError, Keyring
from cachekit.config import reset_settings

KEY = "a1" * 32
KEY2 = "b2" * 32
KEY3 = "c3" * 32


# ------------------------------------------------------------ configuration


def test_missing_key_fails_at_decoration():
    with pytest.raises(ConfigurationError, match="CACHEKIT_MASTER_KEY") as info:
        @cache.secure(ttl=60)
        def f(x):
            return x
    assert isinstance(info.value, ValueError)
    assert "openssl rand -hex 32" in str(info.value)


@pytest.mark.parametrize("bad", ["not_hex", "ab" * 31, "zz" * 32, "a" * 63])
def test_malformed_key_fails_at_decoration(bad):
    with pytest.raises(ConfigurationError, match="must be hex-encoded, minimum 32 bytes") as info:
        cache.secure(master_key=bad)(lambda x: x)
    assert bad not in str(info.value)


def test_key_from_environment(monkeypatch):
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", KEY)
    reset_settings()

    @cache.secure
    def f(x):
        return {"x": x}

    assert f(1) == {"x": 1} and f(1) == {"x": 1}
    assert f.cache_info().hits == 1


def test_bad_environment_key_is_reported_by_name_only(monkeypatch):
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", "secret-but-not-hex")
    reset_settings()
    with pytest.raises(ConfigurationError) as info:
        cache.secure(lambda x: x)
    assert "CACHEKIT_MASTER_KEY" in str(info.value)
    assert "secret-but-not-hex" not in str(info.value)


def test_key_loaded_after_settings_were_read_is_seen(monkeypatch):
    # A module decorates plain functions at import (settings read, no key yet);
    # the application loads its secrets afterwards, then decorates .secure.
    @cache
    def plain(x):
        return x

    assert plain(1) == 1
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", KEY)
    monkeypatch.setenv("CACHEKIT_ENCRYPTION_FAIL_CLOSED", "true")

    @cache.secure
    def f(x):
        return {"x": x}

    assert f(2) == {"x": 2} and f(2) == {"x": 2}
    assert f.cache_info().hits == 1 and f.fail_closed is True
    # The shared settings object, and so the shared L1 store, stay as they were.
    from cachekit.config import get_settings

    assert get_settings().master_key is None
    assert f.store is plain.store


def test_master_key_on_plain_cache_is_refused():
    with pytest.raises(ConfigurationError, match="cache.secure"):
        cache(master_key=KEY)(lambda x: x)


# ------------------------------------------------------------ behaviour


def test_round_trip_keeps_types_and_returns_fresh_copies():
    @cache.secure(master_key=KEY, ttl=60)
    def profile(uid):
        return {"uid": uid, "tags": ["a", "b"], "ids": (1, 2)}

    first = profile(7)
    second = profile(7)
    assert first == second == {"uid": 7, "tags": ["a", "b"], "ids": (1, 2)}
    assert first is not second  # decrypted afresh on every hit
    second["tags"].append("mutated")
    assert profile(7)["tags"] == ["a", "b"]
    assert profile.cache_info().hits == 2


def test_l1_holds_only_ciphertext():
    secret = "078-05-1120"

    @cache.secure(master_key=KEY, l1_max_entries=10)
    def ssn(uid):
        return {"ssn": secret}

    ssn(1)
    blob = ssn._peek(1)  # the raw L1 value for the call ssn(1)
    assert isinstance(blob, bytes)
    assert secret.encode() not in blob and b"ssn" not in blob
    assert blob[:2] == b"CK" and blob[3] == 2  # encrypted flag


def test_l1_keys_hold_no_argument_or_tenant_bytes():
    from contextvars import ContextVar

    tenant = ContextVar("tenant", default="tenant-acme-corp")
    ssns = ["078-05-1120", "219-09-9999"]
    runs = []

    @cache.secure(master_key=KEY, l1_max_entries=100,
                  tenant_extractor=lambda ssn, name: tenant.get())
    def lookup(ssn, name):
        runs.append((tenant.get(), ssn))
        return {"ok": True}

    for t in ("tenant-acme-corp", "tenant-globex-inc"):
        tenant.set(t)
        for ssn in ssns:
            lookup(ssn, name="Alice Liddell")
    assert len(runs) == 4
    keys = lookup.store._keys()
    assert len(keys) == 4 and len(set(keys)) == 4  # two tenants never share a key
    assert all(len(k) == 16 for k in keys)  # the keyring's 128-bit MAC of the key bytes
    leaked = [b"078-05-1120", b"219-09-9999", b"Alice", b"acme", b"globex", b"ssn", b"name"]
    for k in keys:
        assert not any(w in k for w in leaked)
    # Hits still work, per tenant; no call is served another tenant's entry.
    for t in ("tenant-acme-corp", "tenant-globex-inc"):
        tenant.set(t)
        for ssn in ssns:
            assert lookup(ssn, name="Alice Liddell") == {"ok": True}
    assert len(runs) == 4 and lookup.cache_info().hits == 4
    # The helpers that find a call's entry use the same keys.
    assert lookup._peek(ssns[0], name="Alice Liddell") is not None
    assert lookup.invalidate_cache(ssns[0], name="Alice Liddell") is True
    assert len(lookup.store._keys()) == 3
    # A plain function's L1 keys are its key bytes (the contrast this test relies on).
    @cache(l1_max_entries=10)
    def plain(ssn):
        return 1

    plain("078-05-1120")
    assert any(b"078-05-1120" in k for k in plain.store._keys())


def test_l1_mac_key_is_per_keyring():
    kr_a = Keyring(bytes.fromhex(KEY))
    kr_b = Keyring(bytes.fromhex(KEY))
    # Same master key, same arguments: different keyrings key L1 differently,
    # so an L1 key tells nothing across processes or keyrings.
    assert kr_a._l1_key(b"k") != kr_b._l1_key(b"k")
    assert kr_a._l1_key(b"k") == kr_a._l1_key(b"k") and len(kr_a._l1_key(b"k")) == 16


def test_unstorable_result_still_returned():
    @cache.secure(master_key=KEY)
    def f():
        return object()

    assert f() is not None
    assert f.cache_stats()["store_errors"] == 1


def test_tenants_are_isolated():
    from contextvars import ContextVar

    tenant = ContextVar("tenant", default="t1")
    runs = []

    @cache.secure(master_key=KEY, tenant_extractor=lambda uid: tenant.get())
    def data(uid):
        runs.append((tenant.get(), uid))
        return f"{tenant.get()}:{uid}"

    assert data(1) == "t1:1"
    tenant.set("t2")
    assert data(1) == "t2:1"  # same argument, other tenant: not a hit
    tenant.set("t1")
    assert data(1) == "t1:1"
    assert runs == [("t1", 1), ("t2", 1)]
    assert data.cache_key(1) != (tenant.set("t2") and data.cache_key(1))


def test_extract_style_tenant_extractor():
    class ByArg:
        def extract(self, args, kwargs):
            return kwargs.get("org") or args[0]

    @cache.secure(master_key=KEY, tenant_extractor=ByArg())
    def f(org, x=0):
        return (org, x)

    assert f("acme", 1) == ("acme", 1) and f("acme", 1) == ("acme", 1)
    assert f.cache_info().hits == 1


def test_failing_tenant_extractor_runs_uncached(caplog):
    @cache.secure(master_key=KEY, tenant_extractor=lambda x: None)
    def f(x):
        return x

    assert f(1) == 1 and f(1) == 1
    assert f.cache_stats()["key_errors"] == 2


def test_entries_under_one_tenant_do_not_open_as_another():
    kr = Keyring(bytes.fromhex(KEY))
    entry = kr.seal(b"payload", tenant="alpha", cache_key=b"k")
    assert kr.open(entry, tenant="alpha", cache_key=b"k") == (1, b"payload")
    with pytest.raises(DecryptionError):
        kr.open(entry, tenant="beta", cache_key=b"k")
    with pytest.raises(DecryptionError):
        kr.open(entry, tenant="alpha", cache_key=b"k2")


# ------------------------------------------------------------ rotation


def test_rotation_reads_old_entries_and_writes_with_the_new_key():
    old = Keyring(bytes.fromhex(KEY))
    old_entry = old.seal(b"v1", cache_key=b"k")
    rotated = Keyring(bytes.fromhex(KEY2), [bytes.fromhex(KEY)])
    assert rotated.open(old_entry, cache_key=b"k") == (1, b"v1")
    new_entry = rotated.seal(b"v2", cache_key=b"k")
    from cachekit import _core

    assert _core.read_sealed_header(new_entry)["key_fp"].hex() == rotated.fingerprint
    assert _core.read_sealed_header(old_entry)["key_fp"].hex() == old.fingerprint
    assert rotated.previous_fingerprints == (old.fingerprint,)
    with pytest.raises(DecryptionError):
        old.open(new_entry, cache_key=b"k")  # the old key cannot read new data
    dropped = Keyring(bytes.fromhex(KEY2))
    with pytest.raises(DecryptionError, match="master key"):
        dropped.open(old_entry, cache_key=b"k")


def test_rotation_from_environment(monkeypatch):
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", KEY2)
    monkeypatch.setenv("CACHEKIT_MASTER_KEY_ROTATION", f"{KEY}, {KEY3}")
    reset_settings()

    @cache.secure
    def f(x):
        return x

    assert f(1) == 1
    assert len(f.keyring.previous_fingerprints) == 2


def test_too_many_previous_keys():
    with pytest.raises(ConfigurationError, match="at most 8"):
        cache.secure(master_key=KEY, previous_master_keys=[KEY2] * 9)(lambda: 1)


# ------------------------------------------------------------ data keys


def nonce_counter(entry: bytes) -> int:
    from cachekit import _core

    nonce = _core.read_sealed_header(entry)["nonce"]
    return int.from_bytes(nonce[4:], "big")


def nonce_prefix(entry: bytes) -> bytes:
    """The nonce's first 4 bytes, parsed by docs/format.md alone: the
    nonce is entry[34:46], a per-DEK-instance random prefix then be64
    counter."""
    assert entry[3] == 0x02  # ENCRYPTED
    return entry[34:38]


def test_nonces_count_up_and_dek_rotates_after_max_messages():
    kr = Keyring(bytes.fromhex(KEY), dek_max_messages=3)
    from cachekit import _core

    entries = [kr.seal(b"x", cache_key=b"k") for _ in range(7)]
    counters = [nonce_counter(e) for e in entries]
    assert counters == [0, 1, 2, 0, 1, 2, 0]
    wrapped = [_core.read_sealed_header(e)["wrapped_dek"] for e in entries]
    assert len(set(wrapped)) == 3
    # One random prefix per DEK instance, kept for all of its messages.
    prefixes = [nonce_prefix(e) for e in entries]
    assert prefixes[0] == prefixes[1] == prefixes[2] and prefixes[3] == prefixes[5]
    pairs = {(w, c) for w, c in zip(wrapped, counters)}
    assert len(pairs) == 7
    assert kr.stats()["deks_created"] == 3
    for e in entries:
        assert kr.open(e, cache_key=b"k") == (1, b"x")


class _SameKeyProvider:
    """Hands every caller the same data key (a provider caching
    GenerateDataKey results): the case the nonce prefix exists for."""

    provider_id = 7
    key_id = "same-key"
    key = bytes(range(32))
    wrapped = b"W" * 40

    def generate_data_key(self, context):
        return bytearray(self.key), self.wrapped

    def decrypt_data_key(self, wrapped, context):
        return bytearray(self.key)


def test_two_instances_of_one_data_key_use_different_nonces():
    provider = _SameKeyProvider()
    a, b = Keyring(provider=provider), Keyring(provider=provider)
    ea = [a.seal(b"x", tenant="t", cache_key=b"k") for _ in range(3)]
    eb = [b.seal(b"x", tenant="t", cache_key=b"k") for _ in range(3)]
    a.reset()
    ec = [a.seal(b"x", tenant="t", cache_key=b"k") for _ in range(3)]  # a third instance
    for group in (ea, eb, ec):
        assert [nonce_counter(e) for e in group] == [0, 1, 2]  # same counters ...
        assert group[0][46:46 + group[0][33]] == provider.wrapped  # ... same key
    assert len({nonce_prefix(g[0]) for g in (ea, eb, ec)}) == 3  # ... other nonces
    nonces = [e[34:46] for e in ea + eb + ec]
    assert len(set(nonces)) == 9
    for e in ea + eb + ec:
        assert b.open(e, tenant="t", cache_key=b"k") == (1, b"x")


def test_dek_rotates_after_max_age_and_max_bytes():
    kr = Keyring(bytes.fromhex(KEY), dek_max_age=60, dek_max_bytes=10)
    kr.seal(b"12345", cache_key=b"k")
    kr.seal(b"12345", cache_key=b"k")
    assert kr.stats()["deks_created"] == 1
    kr.seal(b"1", cache_key=b"k")  # would pass 10 bytes
    assert kr.stats()["deks_created"] == 2
    kr._advance_clock(61)
    kr.seal(b"1", cache_key=b"k")
    assert kr.stats()["deks_created"] == 3


def test_read_side_dek_is_unwrapped_once_and_never_used_to_write():
    writer = Keyring(bytes.fromhex(KEY))
    reader = Keyring(bytes.fromhex(KEY))
    entry = writer.seal(b"v", cache_key=b"k")
    for _ in range(5):
        reader.open(entry, cache_key=b"k")
    assert reader.stats()["deks_unwrapped"] == 1
    from cachekit import _core

    mine = reader.seal(b"w", cache_key=b"k")
    assert _core.read_sealed_header(mine)["wrapped_dek"] != _core.read_sealed_header(entry)["wrapped_dek"]
    assert nonce_counter(mine) == 0


def test_keyring_limits_validated():
    with pytest.raises(ValueError):
        Keyring(bytes.fromhex(KEY), dek_max_messages=2**32 + 1)
    with pytest.raises(ValueError):
        Keyring(b"short")
    with pytest.raises(ValueError):
        Keyring(bytes.fromhex(KEY), [b"short"])


# ------------------------------------------------------------ tampering


def test_tampered_l1_entry_is_a_counted_miss(caplog):
    caplog.set_level(logging.WARNING, logger="cachekit")
    runs = []

    @cache.secure(master_key=KEY, l1_max_entries=4)
    def f(x):
        runs.append(x)
        return {"v": x}

    f(1)
    blob = f._peek(1)
    # Flip a bit at every 7th position and write it back under the same key
    # (private test hook); every read is a miss that re-runs f and replaces
    # the entry, never a wrong value or an exception.
    positions = range(0, len(blob), 7)
    for i in positions:
        bad = bytearray(blob)
        bad[i] ^= 0x10
        f._poke(bytes(bad), 1)
        assert f(1) == {"v": 1}
        assert f._peek(1) != bytes(bad)
    assert f.cache_stats()["decrypt_errors"] == len(positions)
    assert len(runs) == 1 + len(positions)
    f._poke(blob[:40], 1)  # truncated
    assert f(1) == {"v": 1}
    assert metrics.snapshot()["decrypt_error"] >= 1
    logged = [r for r in caplog.records if "decrypt" in r.getMessage()]
    assert len(logged) == 1
    assert KEY not in caplog.text


# ------------------------------------------------------------ fork


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_children_never_reuse_a_nonce_with_the_parents_dek():
    from cachekit import _core

    kr = Keyring(bytes.fromhex(KEY))
    parent_first = kr.seal(b"p", cache_key=b"k")  # the parent's DEK now exists
    children = []
    for _ in range(3):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # child
            os.close(r)
            try:
                out = b"".join(kr.seal(b"c", cache_key=b"k") for _ in range(3))
                entries = [kr.seal(b"c", cache_key=b"k") for _ in range(3)]
                data = pickle.dumps([(_core.read_sealed_header(e)["wrapped_dek"],
                                      _core.read_sealed_header(e)["nonce"]) for e in entries])
                os.write(w, data)
            finally:
                os._exit(0)
        os.close(w)
        chunks = []
        while chunk := os.read(r, 65536):
            chunks.append(chunk)
        os.close(r)
        os.waitpid(pid, 0)
        children.append(pickle.loads(b"".join(chunks)))
    parent_more = [kr.seal(b"p", cache_key=b"k") for _ in range(3)]
    parent_pairs = [(_core.read_sealed_header(e)["wrapped_dek"], _core.read_sealed_header(e)["nonce"])
                    for e in [parent_first, *parent_more]]
    all_pairs = parent_pairs + [p for child in children for p in child]
    assert len(all_pairs) == len(set(all_pairs))  # no (DEK, nonce) pair repeats
    parent_dek = parent_pairs[0][0]
    for child in children:
        assert all(dek != parent_dek for dek, _ in child)  # each child re-keyed


class _UnwrapInFlightProvider:
    """Unwraps (and, when asked, generates) slowly, and says when it has
    started."""

    provider_id = 9
    key_id = "fork-test-key"

    def __init__(self):
        self.keys: dict[bytes, bytes] = {}
        self.unwrapping = threading.Event()
        self.generating = threading.Event()
        self.delay = 0.0
        self.generate_delay = 0.0

    def generate_data_key(self, context):
        self.generating.set()
        time.sleep(self.generate_delay)
        key, wrapped = os.urandom(32), os.urandom(40)
        self.keys[wrapped] = key
        return bytearray(key), wrapped

    def decrypt_data_key(self, wrapped, context):
        self.unwrapping.set()
        time.sleep(self.delay)  # releases the GIL, as a KMS call would
        return bytearray(self.keys[wrapped])


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_child_forked_during_an_unwrap_does_not_wait_for_it():
    provider = _UnwrapInFlightProvider()
    entry = Keyring(provider=provider).seal(b"v", tenant="t", cache_key=b"k")
    reader = Keyring(provider=provider)
    provider.delay = 3.0
    t = threading.Thread(target=lambda: reader.open(entry, tenant="t", cache_key=b"k"))
    t.start()
    assert provider.unwrapping.wait(10)  # the parent's unwrap is in flight now
    pid = os.fork()
    if pid == 0:  # child: the unwrapping thread does not exist here
        status = 1
        try:
            signal.alarm(10)  # a hang ends the child by SIGALRM
            provider.delay = 0.0
            if reader.open(entry, tenant="t", cache_key=b"k") == (1, b"v"):
                status = 0
        finally:
            os._exit(status)
    deadline = time.monotonic() + 20
    while True:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    if not done:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    t.join()
    assert done, "the child hung"
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status
    assert reader.open(entry, tenant="t", cache_key=b"k") == (1, b"v")  # the parent is fine

def _wait_child(pid: int, seconds: float) -> int | None:
    """The child's wait status, or None (after killing it) if it hung."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        done, status = os.waitpid(pid, os.WNOHANG)
        if done:
            return status
        time.sleep(0.05)
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    return None


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_child_forked_during_a_data_key_fetch_does_not_wait_for_it():
    provider = _UnwrapInFlightProvider()
    writer = Keyring(provider=provider)
    provider.generate_delay = 3.0
    t = threading.Thread(target=lambda: writer.seal(b"v", tenant="t", cache_key=b"k"))
    t.start()
    assert provider.generating.wait(10)  # the parent's generate is in flight now
    pid = os.fork()
    if pid == 0:
        status = 1
        try:
            signal.alarm(10)
            provider.generate_delay = 0.0
            entry = writer.seal(b"c", tenant="t", cache_key=b"k")
            if writer.open(entry, tenant="t", cache_key=b"k") == (1, b"c"):
                status = 0
        finally:
            os._exit(status)
    status = _wait_child(pid, 20)
    t.join()
    assert status is not None, "the child hung"
    assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0, status



# ------------------------------------------------------------ secret buffers


def test_secret_buffer_growth_wipes_the_block_it_leaves():
    from cachekit import _core

    # Control: a plain buffer grown by realloc leaves its bytes behind, so
    # the probe can see a leak when there is one.
    reused, left = _core._secret_buf_probe(False)
    if not reused:
        pytest.skip("malloc did not hand the freed block back; nothing to inspect")
    assert left > 0
    reused, left = _core._secret_buf_probe(True)
    if not reused:
        pytest.skip("malloc did not hand the freed block back; nothing to inspect")
    assert left == 0


def test_secure_path_with_buffers_that_grow():
    # Arguments past the 256-byte inline key buffer, a dict argument (sorted
    # through a scratch buffer), and a result that grows the plaintext buffer
    # many times over.
    big_arg = "x" * 5000
    opts = {f"k{i}": "v" * 50 for i in range(100)}
    calls = []

    @cache.secure(master_key=KEY, l1_max_entries=10)
    def f(a, o):
        calls.append(1)
        return {"rows": ["078-05-1120" * 10] * 2000, "a": a, "o": o}

    first = f(big_arg, opts)
    assert f(big_arg, opts) == first and len(calls) == 1
    blob = f._peek(big_arg, opts)
    assert b"078-05-1120" not in blob and len(blob) > 200_000


# ------------------------------------------------------------ secrets


def test_no_secret_in_reprs_logs_or_errors(caplog):
    caplog.set_level(logging.DEBUG)

    @cache.secure(master_key=KEY)
    def f(x):
        return x

    f(1)
    kr = Keyring(bytes.fromhex(KEY))
    texts = [repr(kr), repr(f), str(f.__dict__), caplog.text]
    from cachekit.config import DecoratorConfig, EncryptionConfig

    texts.append(repr(DecoratorConfig(encryption=EncryptionConfig(master_key=KEY))))
    for text in texts:
        assert KEY not in text and bytes.fromhex(KEY).hex() not in text
    with pytest.raises(TypeError):
        pickle.dumps(kr)


def test_concurrent_sealing_gives_unique_nonces():
    from cachekit import _core

    kr = Keyring(bytes.fromhex(KEY))
    results: list[bytes] = []
    lock = threading.Lock()

    def worker():
        mine = [kr.seal(b"x" * 70000 if i % 5 == 0 else b"x", cache_key=b"k") for i in range(200)]
        with lock:
            results.extend(mine)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    pairs = {(_core.read_sealed_header(e)["wrapped_dek"], _core.read_sealed_header(e)["nonce"])
             for e in results}
    assert len(pairs) == len(results) == 1600
    gc.collect()


@pytest.mark.skipif(not os.path.exists("/proc/self/smaps"), reason="Linux only")
def test_key_material_lives_outside_core_dumps():
    from cachekit import _core

    before = max(_core.secure_heap_used(), 0)
    kr = Keyring(bytes.fromhex(KEY))
    kr.seal(b"x")
    assert _core.secure_heap_used() > before  # master key and AES key copies
    flagged = []
    region = None
    with open("/proc/self/smaps") as smaps:
        for line in smaps:
            head = line.split()
            if head and "-" in head[0] and len(head) >= 5 and all(c in "0123456789abcdef-" for c in head[0]):
                region = head[0]
            elif line.startswith("VmFlags") and " dd" in line and region is not None:
                lo, hi = (int(x, 16) for x in region.split("-"))
                flagged.append(hi - lo)
    assert any(size >= 1 << 20 for size in flagged)  # the secure heap
    del kr


def test_no_raw_key_in_traceback_locals():
    """A malformed key fails at decoration; none of cachekit's frames in the
    traceback holds the key text (error reporters capture locals)."""
    bad = "ab" * 31  # hex, but one byte short
    with pytest.raises(ConfigurationError) as info:
        cache.secure(master_key=bad, previous_master_keys=["cd" * 32])(lambda: 1)
    tb = info.value.__traceback__
    frames = 0
    while tb is not None:
        frame = tb.tb_frame
        if "cachekit" in frame.f_code.co_filename:
            frames += 1
            for name, value in frame.f_locals.items():
                text = repr(value)
                assert bad not in text and "cd" * 32 not in text, (frame.f_code.co_name, name)
        tb = tb.tb_next
    assert frames >= 2


def test_entries_moved_between_functions_calls_or_tenants_are_misses():
    from contextvars import ContextVar

    tenant = ContextVar("tenant", default="t1")

    @cache.secure(master_key=KEY, tenant_extractor=lambda x: tenant.get())
    def f(x):
        return {"f": x, "tenant": tenant.get()}

    @cache.secure(master_key=KEY, tenant_extractor=lambda x: tenant.get())
    def g(x):
        return {"g": x, "tenant": tenant.get()}

    f(1), f(2), g(1)
    f._poke(g._peek(1), 1)          # another function's entry, same arguments
    assert f(1) == {"f": 1, "tenant": "t1"}
    f._poke(f._peek(2), 1)          # same function, another call
    assert f(1) == {"f": 1, "tenant": "t1"}
    moved = f._peek(1)
    tenant.set("t2")
    f._poke(moved, 1)               # same call, another tenant
    assert f(1) == {"f": 1, "tenant": "t2"}
    assert f.cache_stats()["decrypt_errors"] == 3


# ------------------------------------------------------------ wrong types


def cachekit_locals(exc: BaseException) -> list[str]:
    """repr of every local of cachekit's frames in exc's traceback."""
    texts = []
    tb = exc.__traceback__
    while tb is not None:
        if "cachekit" in tb.tb_frame.f_code.co_filename:
            texts += [repr(v) for v in tb.tb_frame.f_locals.values()]
        tb = tb.tb_next
    return texts


@pytest.mark.parametrize("raw", [bytes.fromhex(KEY), KEY.encode(), bytearray.fromhex(KEY)])
def test_bytes_master_key_refused_without_echo(raw):
    with pytest.raises(ConfigurationError, match="master_key must be a hex str") as info:
        cache.secure(master_key=raw)(lambda: 1)
    assert "openssl rand -hex 32" in str(info.value) and "key.hex()" in str(info.value)
    shown = [str(info.value), *cachekit_locals(info.value)]
    assert not any(repr(bytes(raw))[2:-1] in t or KEY in t for t in shown)


def test_bytes_key_refused_by_encryption_config():
    from cachekit.config import EncryptionConfig

    with pytest.raises(ConfigurationError, match="master_key must be a hex str") as info:
        EncryptionConfig(master_key=bytes.fromhex(KEY))
    assert "\\xa1" not in str(info.value)
    with pytest.raises(ConfigurationError, match="list or tuple of hex strings"):
        EncryptionConfig(previous_master_keys=KEY)


def test_previous_keys_as_one_str_says_pass_a_list():
    with pytest.raises(ConfigurationError, match="list or tuple of hex strings") as info:
        cache.secure(master_key=KEY, previous_master_keys=KEY2)(lambda: 1)
    assert "at most 8" not in str(info.value)
    assert not any(KEY2 in t for t in [str(info.value), *cachekit_locals(info.value)])
    with pytest.raises(ConfigurationError, match=r"previous_master_keys\[1\] must be a hex str"):
        cache.secure(master_key=KEY, previous_master_keys=[KEY2, bytes.fromhex(KEY3)])(lambda: 1)


def test_malformed_key_argument_is_named_as_the_argument(monkeypatch):
    with pytest.raises(ConfigurationError, match="^master_key must be hex-encoded"):
        cache.secure(master_key="ab" * 31)(lambda: 1)
    with pytest.raises(ConfigurationError, match="master_key is empty"):
        cache.secure(master_key="")(lambda: 1)
    with pytest.raises(ConfigurationError, match=r"^previous_master_keys\[0\] must be hex"):
        cache.secure(master_key=KEY, previous_master_keys=["zz"])(lambda: 1)
    monkeypatch.setenv("CACHEKIT_MASTER_KEY_ROTATION", "zz")
    with pytest.raises(ConfigurationError, match="^CACHEKIT_PREVIOUS_MASTER_KEYS key 1"):
        cache.secure(master_key=KEY)(lambda: 1)


def test_tenant_extractor_must_be_callable():
    with pytest.raises(ConfigurationError, match="tenant_extractor must be a callable"):
        cache.secure(master_key=KEY, tenant_extractor="acme")(lambda: 1)


@pytest.mark.parametrize(
    "option, value",
    [
        ("dek_max_age", "5"), ("dek_max_age", 0), ("dek_max_age", -1), ("dek_max_age", True),
        ("dek_max_age", float("nan")), ("dek_max_age", float("inf")), ("dek_max_age", 1e11),
        ("dek_max_messages", "5"), ("dek_max_messages", 0), ("dek_max_messages", -1),
        ("dek_max_messages", True), ("dek_max_messages", 2**32 + 1), ("dek_max_messages", 2**64 + 1),
        ("dek_max_messages", 10.0),
        ("dek_max_bytes", "5"), ("dek_max_bytes", 0), ("dek_max_bytes", -1), ("dek_max_bytes", True),
        ("dek_max_bytes", 2**63), ("dek_max_bytes", 2**64 + 1), ("dek_max_bytes", 1.5),
        ("key_rotation_enabled", "no"), ("fail_closed", 1),
    ],
)
def test_out_of_range_or_mistyped_encryption_options(option, value):
    with pytest.raises(ConfigurationError, match=option):
        cache.secure(master_key=KEY, **{option: value})(lambda: 1)


def test_largest_limits_accepted():
    @cache.secure(master_key=KEY, dek_max_bytes=2**63 - 1, dek_max_messages=2**32, dek_max_age=1)
    def f(x):
        return x

    assert f(1) == 1 and f(1) == 1


@pytest.mark.parametrize("intent", [cache, cache.local, cache.secure])
def test_nested_options_of_the_wrong_type(intent):
    with pytest.raises(ConfigurationError, match="encryption must be an EncryptionConfig"):
        intent(master_key=KEY, encryption=True)(lambda: 1) if intent is cache.secure else intent(
            encryption=True)(lambda: 1)
    with pytest.raises(ConfigurationError, match="l1 must be an L1CacheConfig"):
        intent(l1={"max_entries": 3})(lambda: 1)


def test_key_removed_from_environment_after_it_was_read_is_kept(monkeypatch):
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", KEY)
    reset_settings()
    from cachekit.config import get_settings

    assert get_settings().master_key is not None
    monkeypatch.delenv("CACHEKIT_MASTER_KEY")  # an app scrubbing its environment

    @cache.secure
    def f(x):
        return x

    assert f(1) == 1


@pytest.mark.parametrize(
    "limits",
    [
        {"dek_max_bytes": -1},
        {"dek_max_bytes": 2**64 + 1},
        {"dek_max_bytes": 2**63},
        {"dek_max_bytes": 0},
        {"dek_max_messages": 2**32 + 1},
        {"dek_max_messages": -5},
    ],
)
def test_keyring_refuses_out_of_range_dek_limits_instead_of_wrapping(limits):
    with pytest.raises(ValueError, match="must be between 1 and"):
        Keyring(bytes(32), **limits)


def test_keyring_refuses_non_int_dek_limits():
    with pytest.raises(TypeError, match="dek_max_bytes must be an int"):
        Keyring(bytes(32), dek_max_bytes=1.5)
    with pytest.raises(TypeError):
        Keyring(bytes(32), dek_max_messages=True)
    assert Keyring(bytes(32), dek_max_bytes=2**63 - 1, dek_max_messages=2**32) is not None
