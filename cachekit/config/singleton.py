"""The process-wide settings object: built on first use, reset on demand."""

from __future__ import annotations

import dataclasses
import threading

from cachekit.config.settings import SECURE_FIELDS, CachekitConfig, read_env

_lock = threading.Lock()
_settings: CachekitConfig | None = None


def get_settings() -> CachekitConfig:
    """Return the settings, reading ``CACHEKIT_*`` variables the first time."""
    global _settings
    with _lock:
        if _settings is None:
            _settings = CachekitConfig.from_env()
        return _settings


def get_secure_settings() -> CachekitConfig:
    """The settings with the encryption fields (``SECURE_FIELDS``: master key,
    previous keys, fail_closed) read from the environment again, for
    ``@cache.secure`` and ``EncryptionWrapper`` at decoration time: a key
    loaded into the environment after the settings were first read is seen.
    A variable no longer set keeps the value read before (applications may
    remove secrets from the environment once read). The shared settings
    object itself is left as it is."""
    settings = get_settings()
    fresh = read_env(SECURE_FIELDS)
    return dataclasses.replace(settings, **fresh) if fresh else settings


def reset_settings() -> None:
    """Forget the settings; the next use reads the environment again.
    Functions decorated before keep the settings they were built with."""
    global _settings
    with _lock:
        _settings = None
