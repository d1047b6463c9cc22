"""Settings from CACHEKIT_* variables, and secrets that never show."""

from __future__ import annotations

import logging
import pickle

import pytest

from cachekit.config import CachekitConfig, ConfigurationError, SecretStr, get_settings, reset_settings

KEY = "ab" * 32


def test_defaults():
    s = CachekitConfig.from_env({})
    assert s.namespace == "cachekit"
    assert s.default_ttl is None
    assert s.l1_max_size_mb == 100
    assert s.master_key is None


def test_environment_parsing():
    s = CachekitConfig.from_env(
        {
            "CACHEKIT_NAMESPACE": "svc",
            "CACHEKIT_DEFAULT_TTL": "30",
            "CACHEKIT_L1_ENABLED": "off",
            "CACHEKIT_L1_MAX_SIZE_MB": "8",
            "CACHEKIT_MASTER_KEY": KEY,
            "CACHEKIT_MASTER_KEY_ROTATION": "aa" * 32 + ", " + "bb" * 32,
            "CACHEKIT_ENCRYPTION_FAIL_CLOSED": "1",
        }
    )
    assert (s.namespace, s.default_ttl, s.l1_enabled, s.l1_max_size_mb) == ("svc", 30.0, False, 8)
    assert s.encryption_fail_closed is True
    assert s.master_key.get_secret_value() == KEY
    assert [k.get_secret_value() for k in s.previous_master_keys] == ["aa" * 32, "bb" * 32]


def test_keyword_overrides_win():
    s = CachekitConfig.from_env({"CACHEKIT_NAMESPACE": "env"}, namespace="kw", master_key=KEY)
    assert s.namespace == "kw"
    assert isinstance(s.master_key, SecretStr)


@pytest.mark.parametrize(
    "var, value",
    [
        ("CACHEKIT_DEFAULT_TTL", "-3"),
        ("CACHEKIT_L1_ENABLED", "maybe"),
        ("CACHEKIT_L1_MAX_SIZE_MB", "x"),
        ("CACHEKIT_ENCRYPTION_FAIL_CLOSED", "sometimes"),
    ],
)
def test_invalid_values_name_the_variable(var, value):
    with pytest.raises(ConfigurationError, match=var):
        CachekitConfig.from_env({var: value})


def test_unknown_override_rejected():
    with pytest.raises(ConfigurationError, match="unknown setting"):
        CachekitConfig.from_env({}, nope=1)


def test_secrets_never_show(caplog):
    s = CachekitConfig.from_env({"CACHEKIT_MASTER_KEY": KEY, "CACHEKIT_MASTER_KEY_ROTATION": "cd" * 32})
    caplog.set_level(logging.INFO)
    logging.getLogger("t").info("settings %s %r", s, s)
    texts = [repr(s), str(s), f"{s.master_key}", format(s.master_key, ">20"), str(s.get_safe_repr()),
             caplog.text]
    for text in texts:
        assert KEY not in text and "cd" * 32 not in text
    assert "**********" in repr(s)
    assert s.get_safe_repr()["master_key"] == "**********"


def test_secret_not_in_error_messages():
    # A secret-valued variable that fails to parse never echoes its value.
    s = SecretStr("hunter2")
    assert "hunter2" not in repr(s) and "hunter2" not in str(s)
    with pytest.raises(TypeError):
        pickle.dumps(s)
    with pytest.raises(TypeError):
        hash(s)
    assert s == SecretStr("hunter2") and s != SecretStr("other")


def test_get_settings_is_cached_until_reset(monkeypatch):
    monkeypatch.setenv("CACHEKIT_NAMESPACE", "one")
    reset_settings()
    first = get_settings()
    monkeypatch.setenv("CACHEKIT_NAMESPACE", "two")
    assert get_settings() is first
    reset_settings()
    assert get_settings().namespace == "two"


def test_configuration_error_hierarchy():
    from cachekit import CachekitError
    from cachekit.config.validation import ConfigurationError as FromValidation

    assert FromValidation is ConfigurationError
    assert issubclass(ConfigurationError, CachekitError)
    assert issubclass(ConfigurationError, ValueError)


def test_previous_keys_override_must_be_a_list():
    with pytest.raises(ConfigurationError, match="list or tuple of hex strings") as info:
        CachekitConfig.from_env({}, previous_master_keys="ab" * 32)
    assert "ab" * 32 not in str(info.value)
    assert len(CachekitConfig.from_env({}, previous_master_keys=["ab" * 32]).previous_master_keys) == 1
