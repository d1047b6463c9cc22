"""StandardSerializer and EncryptionWrapper, on their own and under @cache."""

from __future__ import annotations

import pickle

import pytest

from cachekit import ConfigurationError, cache
from cachekit.serializers import (
    DecryptionAuthenticationError,
    EncryptionWrapper,
    SerializationFormat,
    StandardSerializer,
)

KEY = "5e" * 32
VALUE = {"patient": "Ada", "risk": 0.7, "codes": {"A10", "B20"}}


@pytest.mark.parametrize("integrity", [True, False])
def test_standard_serializer_round_trip(integrity):
    s = StandardSerializer(enable_integrity_checking=integrity)
    data, meta = s.serialize(VALUE)
    assert meta.serialization_format is SerializationFormat.MSGPACK and not meta.encrypted
    assert s.deserialize(data, meta) == VALUE
    assert data[:2] == b"CK" if integrity else data[:2] != b"CK"


def test_encryption_wrapper_round_trip_and_metadata():
    w = EncryptionWrapper(master_key=KEY, tenant_id="hospital-1")
    data, meta = w.serialize(VALUE, cache_key="ns:f:1")
    assert b"Ada" not in data and b"A10" not in data
    assert meta.encrypted and meta.tenant_id == "hospital-1"
    assert meta.encryption_algorithm == "AES-256-GCM"
    assert meta.key_fingerprint == w.keyring.fingerprint
    assert w.deserialize(data, meta, cache_key="ns:f:1") == VALUE


def test_encryption_wrapper_binds_key_and_tenant():
    w = EncryptionWrapper(master_key=KEY, tenant_id="a")
    other_tenant = EncryptionWrapper(master_key=KEY, tenant_id="b")
    data, meta = w.serialize(VALUE, cache_key="k1")
    with pytest.raises(DecryptionAuthenticationError):
        w.deserialize(data, meta, cache_key="k2")
    with pytest.raises(DecryptionAuthenticationError):
        other_tenant.deserialize(data, meta, cache_key="k1")


def test_encryption_wrapper_over_integrity_checked_serializer():
    w = EncryptionWrapper(serializer=StandardSerializer(), master_key=bytes(range(32)))
    data, meta = w.serialize([1, 2, 3], cache_key="k")
    assert w.deserialize(data, meta, cache_key="k") == [1, 2, 3]


def test_encryption_wrapper_rotation():
    old = EncryptionWrapper(master_key=KEY)
    data, meta = old.serialize(VALUE, cache_key="k")
    new = EncryptionWrapper(master_key="7f" * 32, previous_master_keys=[KEY])
    assert new.deserialize(data, meta, cache_key="k") == VALUE
    with pytest.raises(DecryptionAuthenticationError):
        EncryptionWrapper(master_key="7f" * 32).deserialize(data, meta, cache_key="k")


def test_encryption_wrapper_key_errors_and_secrecy(monkeypatch):
    with pytest.raises(ConfigurationError, match="CACHEKIT_MASTER_KEY"):
        EncryptionWrapper()
    with pytest.raises(ConfigurationError, match="hex-encoded"):
        EncryptionWrapper(master_key="nothex")
    with pytest.raises(ConfigurationError, match="32 bytes"):
        EncryptionWrapper(master_key=b"short")
    w = EncryptionWrapper(master_key=KEY)
    for text in (repr(w), str(w.get_encryption_info())):
        assert KEY not in text
    with pytest.raises(TypeError):
        pickle.dumps(w)


def test_encryption_wrapper_sees_a_key_loaded_after_settings_were_read(monkeypatch):
    from cachekit.config import get_settings

    get_settings()
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", KEY)
    w = EncryptionWrapper()
    assert w.deserialize(*w.serialize(VALUE, cache_key="k"), cache_key="k") == VALUE


def test_encryption_wrapper_from_environment(monkeypatch):
    from cachekit.config import reset_settings

    monkeypatch.setenv("CACHEKIT_MASTER_KEY", KEY)
    reset_settings()
    w = EncryptionWrapper()
    assert w.deserialize(*w.serialize(VALUE, cache_key=b"k"), cache_key=b"k") == VALUE


def test_cache_with_encryption_wrapper_stores_ciphertext():
    @cache(serializer=EncryptionWrapper(master_key=KEY, tenant_id="acme"), backend=None)
    def records(hospital_id):
        return {"hospital": hospital_id, "patients": ["Ada"]}

    assert records(42) == records(42) == {"hospital": 42, "patients": ["Ada"]}
    assert records.cache_info().hits == 1
    blob = records._peek(42)
    assert isinstance(blob, bytes) and b"Ada" not in blob


def test_encryption_wrapper_fail_closed_reaches_the_decorator():
    for fail_closed in (False, True):
        wrapper = EncryptionWrapper(master_key=bytes.fromhex(KEY), fail_closed=fail_closed)

        @cache(serializer=wrapper)
        def f(x):
            return x

        assert f.fail_closed is fail_closed
    with pytest.raises(ConfigurationError, match="fail_closed"):
        EncryptionWrapper(master_key=bytes.fromhex(KEY), fail_closed="no")


def test_cache_with_standard_serializer_object():
    @cache(serializer=StandardSerializer())
    def f(x):
        return x

    assert f(1) == 1 and f(1) == 1


def test_unsupported_serializer_objects_refused():
    class Custom:
        def serialize(self, obj):
            return b"", None

        def deserialize(self, data, metadata=None):
            return None

    with pytest.raises(ConfigurationError, match="not available"):
        cache(serializer=Custom())(lambda: 1)
    with pytest.raises(ConfigurationError, match="not both"):
        cache.secure(master_key=KEY, serializer=EncryptionWrapper(master_key=KEY))(lambda: 1)


def test_encryption_wrapper_cache_key_is_required():
    from cachekit.serializers.encryption_wrapper import CacheKeyError

    w = EncryptionWrapper(master_key=KEY)
    data, meta = w.serialize(VALUE, cache_key="k")
    for call in (lambda: w.serialize(VALUE), lambda: w.deserialize(data, meta)):
        with pytest.raises(TypeError, match="needs cache_key=") as info:
            call()
        assert isinstance(info.value, ConfigurationError)
    for bad in (123, None, 1.5, ["k"], bytearray(b"k")):
        with pytest.raises(CacheKeyError, match="cache_key must be a non-empty str or bytes"):
            w.serialize(VALUE, cache_key=bad)
        with pytest.raises(ConfigurationError, match="cache_key must be a non-empty str or bytes"):
            w.deserialize(data, meta, cache_key=bad)
    for empty in ("", b""):
        with pytest.raises(ConfigurationError, match="must not be empty"):
            w.serialize(VALUE, cache_key=empty)
        with pytest.raises(ValueError, match="must not be empty"):
            w.deserialize(data, meta, cache_key=empty)
    # str keys are bound as their UTF-8 bytes.
    assert w.deserialize(data, meta, cache_key=b"k") == VALUE
    data, meta = w.serialize(VALUE, cache_key="ключ".encode())
    assert w.deserialize(data, meta, cache_key="ключ") == VALUE


def test_encryption_wrapper_key_types():
    for bad, match in [
        (123, "master_key must be raw key bytes or a hex str, not int"),
        (["ab" * 32], "master_key must be raw key bytes or a hex str, not list"),
    ]:
        with pytest.raises(ConfigurationError, match=match):
            EncryptionWrapper(master_key=bad)
    with pytest.raises(ConfigurationError, match="list or tuple of keys") as info:
        EncryptionWrapper(master_key=KEY, previous_master_keys="7f" * 32)
    assert "7f" * 32 not in str(info.value)
    with pytest.raises(ConfigurationError, match=r"previous_master_keys\[0\]"):
        EncryptionWrapper(master_key=KEY, previous_master_keys=[42])


def test_encryption_wrapper_wipes_decoded_keys_when_a_later_key_is_bad(monkeypatch):
    from cachekit.serializers import encryption_wrapper

    decoded: list[bytearray] = []
    real = encryption_wrapper._raw_key

    def recording(key, what):
        raw = real(key, what)
        decoded.append(raw)
        return raw

    monkeypatch.setattr(encryption_wrapper, "_raw_key", recording)
    with pytest.raises(ConfigurationError, match=r"previous_master_keys\[1\]") as info:
        EncryptionWrapper(master_key=KEY, previous_master_keys=["7f" * 32, "zz"])
    assert len(decoded) == 2
    assert all(not any(raw) for raw in decoded)  # master and first previous key wiped
    tb = info.value.__traceback__
    while tb is not None:
        for value in tb.tb_frame.f_locals.values():
            if isinstance(value, bytearray):
                assert not any(value)
            if isinstance(value, list):
                assert not any(isinstance(v, bytearray) and any(v) for v in value)
        tb = tb.tb_next


def test_encryption_wrapper_names_the_variable_a_bad_key_came_from(monkeypatch):
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", "not-hex-at-all")
    with pytest.raises(ConfigurationError, match="^CACHEKIT_MASTER_KEY must be hex") as info:
        EncryptionWrapper()
    assert "not-hex-at-all" not in str(info.value)
    monkeypatch.setenv("CACHEKIT_MASTER_KEY", KEY)
    monkeypatch.setenv("CACHEKIT_MASTER_KEY_ROTATION", "zz")
    with pytest.raises(ConfigurationError, match="^CACHEKIT_MASTER_KEY_ROTATION key 1"):
        EncryptionWrapper()
    with pytest.raises(ConfigurationError, match="^master_key must be hex"):
        EncryptionWrapper(master_key="nothex")


@pytest.mark.parametrize(
    "master, previous",
    [
        (bytes.fromhex(KEY), [b"short"]),
        (KEY, ["zz"]),
        (bytes.fromhex(KEY), [bytes.fromhex("7f" * 32), 42]),
        (KEY, "7f" * 32),
        (b"too short but secret", None),
    ],
)
def test_encryption_wrapper_keeps_no_key_in_traceback_locals(master, previous):
    with pytest.raises(ConfigurationError) as info:
        EncryptionWrapper(master_key=master, previous_master_keys=previous)
    secrets = [KEY, "7f" * 32, bytes.fromhex(KEY), bytes.fromhex("7f" * 32), b"too short but secret"]
    tb = info.value.__traceback__
    frames = 0
    while tb is not None:
        if "cachekit" in tb.tb_frame.f_code.co_filename:
            frames += 1
            for name, value in tb.tb_frame.f_locals.items():
                text = repr(value)
                for secret in secrets:
                    shown = secret if isinstance(secret, str) else repr(secret)[2:-1]
                    assert shown not in text, (tb.tb_frame.f_code.co_name, name)
                    assert value is not secret and value != secret, (tb.tb_frame.f_code.co_name, name)
        tb = tb.tb_next
    assert frames >= 1
