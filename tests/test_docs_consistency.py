"""The docs name what the code reads and accepts (docs/*.md, README.md)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from cachekit._core import Keyring
from cachekit.config.settings import _FIELDS, ENV_PREFIX, CachekitConfig

ROOT = Path(__file__).resolve().parent.parent
DOCS = sorted((ROOT / "docs").glob("*.md")) + [ROOT / "README.md"]
# Read by settings.from_env only when CACHEKIT_PREVIOUS_MASTER_KEYS is unset;
# the docs mention it once each as that fallback.
FALLBACK = "CACHEKIT_MASTER_KEY_ROTATION"


def doc_text() -> str:
    return "\n".join(p.read_text(encoding="utf-8") for p in DOCS)


def test_every_documented_variable_is_one_the_settings_read():
    read = {ENV_PREFIX + name.upper() for name in _FIELDS}
    # The backend configs' own variables (FileBackendConfig.from_env, ...),
    # and their prefixes as the docs write them (CACHEKIT_FILE_<FIELD>).
    from cachekit.backends.file import config as file_config
    from cachekit.backends.memcached import config as mc_config
    for mod in (file_config, mc_config):
        read |= {mod.ENV_PREFIX + name.upper() for name in mod._ENV_FIELDS} | {mod.ENV_PREFIX}
    named = set(re.findall(r"CACHEKIT_[A-Z0-9_]+", doc_text()))
    assert named - read <= {FALLBACK}, sorted(named - read - {FALLBACK})
    assert "CACHEKIT_PREVIOUS_MASTER_KEYS" in read
    for line in doc_text().splitlines():
        if FALLBACK in line:  # only ever as the fallback of the real name
            assert "only when" in line or "fallback" in line, line


def test_previous_keys_variable_and_its_fallback():
    a, b = "aa" * 32, "bb" * 32
    s = CachekitConfig.from_env({"CACHEKIT_PREVIOUS_MASTER_KEYS": a, FALLBACK: b})
    assert [k.get_secret_value() for k in s.previous_master_keys] == [a]
    s = CachekitConfig.from_env({FALLBACK: b})
    assert [k.get_secret_value() for k in s.previous_master_keys] == [b]


class _Provider:
    key_id = "k"

    def __init__(self, provider_id):
        self.provider_id = provider_id

    def generate_data_key(self, context):
        return bytearray(32), b"w"

    def decrypt_data_key(self, wrapped, context):
        return bytearray(32)


def test_documented_provider_id_range_is_what_the_keyring_accepts():
    text = doc_text()
    assert "`provider_id` 2..255" in text
    assert "3..255, `key_id`" not in text  # the old, wrong range
    for ok in (2, 3, 255):
        Keyring(provider=_Provider(ok))
    for bad in (0, 1, 256):
        with pytest.raises(ValueError, match="2..255"):
            Keyring(provider=_Provider(bad))
