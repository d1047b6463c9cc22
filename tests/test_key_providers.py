"""Key providers: AWS KMS against a local moto server, and the keyring's
singleflight, error and invalidation behaviour with a slow provider."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time

import pytest

from cachekit import _core, cache
from cachekit._core import DecryptionError, EncryptionError, Keyring
from cachekit.key_providers import AwsKmsKeyProvider, KeyProvider

boto3 = pytest.importorskip("boto3")
pytest.importorskip("moto")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def kms_endpoint():
    """A moto KMS server on loopback, started for these tests and stopped after."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("moto server did not start")
            time.sleep(0.1)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    proc.wait(timeout=10)


@pytest.fixture
def kms(kms_endpoint, monkeypatch):
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    client = boto3.client("kms", region_name="us-east-1", endpoint_url=kms_endpoint)
    key_id = client.create_key()["KeyMetadata"]["KeyId"]
    return client, key_id


def test_kms_round_trip_and_entry_layout(kms):
    client, key_id = kms
    provider = AwsKmsKeyProvider(key_id, client=client)
    assert isinstance(provider, KeyProvider)
    writer = Keyring(provider=provider)
    entry = writer.seal_value({"ssn": "078-05-1120"}, tenant="acme", cache_key=b"k")
    header = _core.read_sealed_header(entry)
    assert header["provider"] == 2 and 0 < len(header["wrapped_dek"]) <= 193
    assert b"078-05-1120" not in entry
    # Another keyring (as in another process) unwraps through KMS.
    reader = Keyring(provider=AwsKmsKeyProvider(key_id, client=client))
    assert reader.open_value(entry, tenant="acme", cache_key=b"k") == {"ssn": "078-05-1120"}
    with pytest.raises(DecryptionError):
        reader.open_value(entry, tenant="other", cache_key=b"k")
    # A keyring on another KMS key, or on the local provider, refuses it.
    other_key = client.create_key()["KeyMetadata"]["KeyId"]
    with pytest.raises(DecryptionError):
        Keyring(provider=AwsKmsKeyProvider(other_key, client=client)).open_value(
            entry, tenant="acme", cache_key=b"k")
    with pytest.raises(DecryptionError):
        Keyring(bytes(32)).open_value(entry, tenant="acme", cache_key=b"k")


def test_kms_with_the_decorator(kms):
    client, key_id = kms
    runs = []

    @cache.secure(key_provider=AwsKmsKeyProvider(key_id, client=client),
                  tenant_extractor=lambda org, uid: org)
    def profile(org, uid):
        runs.append((org, uid))
        return {"org": org, "uid": uid}

    assert profile("a", 1) == profile("a", 1) == {"org": "a", "uid": 1}
    assert profile("b", 1) == {"org": "b", "uid": 1}
    assert runs == [("a", 1), ("b", 1)]
    assert profile.keyring.stats()["deks_created"] == 2  # one per tenant


def test_kms_failure_on_write_is_clear_and_loses_nothing(kms, caplog):
    client, _ = kms
    bad = AwsKmsKeyProvider("alias/does-not-exist", client=client)
    with pytest.raises(EncryptionError, match="generate_data_key failed"):
        Keyring(provider=bad).seal(b"x")

    @cache.secure(key_provider=bad)
    def f(x):
        return x * 2

    assert f(2) == 4 and f(2) == 4
    assert f.cache_stats()["store_errors"] == 2
    assert "generate_data_key failed" in caplog.text


# ------------------------------------------------ a slow, counting provider


class SlowProvider:
    provider_id = 9
    key_id = "slow-test-key"

    def __init__(self, delay=0.2, fail_times=0, gate=None):
        self.delay, self.fail_times, self.gate = delay, fail_times, gate
        self.keys: dict[bytes, bytes] = {}
        self.generated = self.decrypted = 0
        self.lock = threading.Lock()

    def _slow(self):
        if self.gate is not None:
            self.gate.wait(10)
        time.sleep(self.delay)  # releases the GIL, as a network call would
        with self.lock:
            if self.fail_times > 0:
                self.fail_times -= 1
                raise ConnectionError("provider unreachable")

    def generate_data_key(self, context):
        with self.lock:
            self.generated += 1
        self._slow()
        key, wrapped = os.urandom(32), os.urandom(40)
        with self.lock:
            self.keys[wrapped + context["cachekit:tenant"].encode()] = key
        return bytearray(key), wrapped

    def decrypt_data_key(self, wrapped, context):
        with self.lock:
            self.decrypted += 1
        self._slow()
        return bytearray(self.keys[wrapped + context["cachekit:tenant"].encode()])


def run_threads(n, target):
    results, errors = [], []

    def worker():
        try:
            results.append(target())
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return results, errors


def test_singleflight_on_write_and_read_under_64_threads():
    provider = SlowProvider()
    writer = Keyring(provider=provider)
    entries, errors = run_threads(64, lambda: writer.seal(b"v", tenant="t", cache_key=b"k"))
    assert not errors and len(entries) == 64
    assert provider.generated == 1  # one fetch served all 64 writers
    nonces = {_core.read_sealed_header(e)["nonce"] for e in entries}
    assert len(nonces) == 64

    reader = Keyring(provider=provider)
    values, errors = run_threads(64, lambda: reader.open(entries[0], tenant="t", cache_key=b"k"))
    assert not errors and values == [(1, b"v")] * 64
    assert provider.decrypted == 1


def test_failed_fetch_is_shared_by_its_waiters_then_forgotten():
    provider = SlowProvider(fail_times=1)
    kr = Keyring(provider=provider)
    results, errors = run_threads(16, lambda: kr.seal(b"v", tenant="t"))
    assert len(errors) == 16 and not results  # all waited for the one failed fetch
    assert all("provider unreachable" in str(e) for e in errors)
    assert provider.generated == 1
    kr.seal(b"v", tenant="t")  # the error was not cached: this one fetches again
    assert provider.generated == 2


def test_reset_is_not_undone_by_a_fetch_in_flight():
    gate = threading.Event()
    provider = SlowProvider(delay=0, gate=gate)
    kr = Keyring(provider=provider)
    t = threading.Thread(target=lambda: kr.seal(b"v", tenant="t"))
    t.start()
    time.sleep(0.2)  # the writer is now inside generate_data_key
    kr.reset()
    gate.set()
    t.join()
    kr.seal(b"v", tenant="t")
    assert provider.generated == 2  # the in-flight key did not survive the reset

    entry = kr.seal(b"w", tenant="t")
    gate.clear()
    reader = Keyring(provider=provider)
    t = threading.Thread(target=lambda: reader.open(entry, tenant="t"))
    t.start()
    time.sleep(0.2)
    reader.reset()
    gate.set()
    t.join()
    reader.open(entry, tenant="t")
    assert provider.decrypted == 2
    assert reader.stats()["read_keys"] == 1


def test_read_key_cache_capacity_is_lru():
    writers = [Keyring(bytes(range(32))) for _ in range(3)]
    entries = [w.seal(b"x", cache_key=b"k") for w in writers]  # three different DEKs
    reader = Keyring(bytes(range(32)), read_capacity=2)
    for e in entries + [entries[2], entries[0]]:
        assert reader.open(e, cache_key=b"k") == (1, b"x")
    # e0, e1, e2 unwrap; e2 is cached; e0 was evicted by e2 and unwraps again.
    assert reader.stats()["deks_unwrapped"] == 4
    assert reader.stats()["read_keys"] == 2


def test_bad_providers_are_refused():
    class NoId:
        provider_id = 1  # reserved for the local provider
        key_id = "x"

        def generate_data_key(self, c):
            return b"", b""

        def decrypt_data_key(self, w, c):
            return b""

    with pytest.raises(ValueError):
        Keyring(provider=NoId())
    with pytest.raises(TypeError):
        Keyring(bytes(32), provider=SlowProvider())

    class ShortKey(SlowProvider):
        def generate_data_key(self, context):
            return b"short", b"w"

    with pytest.raises(EncryptionError, match="32"):
        Keyring(provider=ShortKey()).seal(b"x")


def test_read_keys_age_out_on_the_keyring_clock():
    writer = Keyring(bytes(range(32)))
    entry = writer.seal(b"x", cache_key=b"k")
    reader = Keyring(bytes(range(32)), read_max_age=60)
    reader.open(entry, cache_key=b"k")
    reader.open(entry, cache_key=b"k")
    assert reader.stats()["deks_unwrapped"] == 1
    reader._advance_clock(61)
    reader.open(entry, cache_key=b"k")
    assert reader.stats()["deks_unwrapped"] == 2
    assert reader.stats()["read_keys"] == 1


# ------------------------------------------------ fail_closed


def test_fail_closed_raises_on_write_and_stores_nothing(kms):
    client, _ = kms
    bad = AwsKmsKeyProvider("alias/does-not-exist", client=client)
    runs = []

    @cache.secure(key_provider=bad, fail_closed=True)
    def f(x):
        runs.append(x)
        return x * 2

    assert f.fail_closed is True
    for _ in range(2):
        with pytest.raises(EncryptionError, match="generate_data_key failed"):
            f(2)
    assert runs == [2, 2]  # nothing was cached
    assert f.cache_stats()["store_errors"] == 2
    assert f.cache_info().currsize == 0


def test_fail_closed_from_the_environment(monkeypatch):
    from cachekit.config import reset_settings

    provider = SlowProvider(delay=0, fail_times=1)
    monkeypatch.setenv("CACHEKIT_ENCRYPTION_FAIL_CLOSED", "true")
    reset_settings()
    try:
        @cache.secure(key_provider=provider)
        def f(x):
            return x + 1

        @cache.secure(key_provider=provider, fail_closed=False)  # the argument wins
        def g(x):
            return x + 1
    finally:
        monkeypatch.delenv("CACHEKIT_ENCRYPTION_FAIL_CLOSED")
        reset_settings()
    assert f.fail_closed is True and g.fail_closed is False
    with pytest.raises(EncryptionError, match="provider unreachable"):
        f(1)
    assert f(1) == 2 and f(1) == 2  # the provider is back: cached from now on
    assert f.cache_stats()["hits"] == 1


def test_fail_closed_still_treats_a_bad_entry_as_a_miss():
    provider = SlowProvider(delay=0)

    @cache.secure(key_provider=provider, fail_closed=True)
    def f(x):
        return [x]

    assert f(1) == [1]
    blob = bytearray(f._peek(1))
    blob[-1] ^= 1
    f._poke(bytes(blob), 1)
    assert f(1) == [1]
    assert f.cache_stats()["decrypt_errors"] == 1


def test_fail_closed_must_be_a_bool():
    from cachekit.exceptions import ConfigurationError

    with pytest.raises(ConfigurationError, match="fail_closed"):
        cache.secure(key_provider=SlowProvider(delay=0), fail_closed="yes")(lambda: 1)
