"""The process-wide settings object: built on first use, reset on demand."""

from __future__ import annotations

import threading

from cachekit.config.settings import CachekitConfig

_lock = threading.Lock()
_settings: CachekitConfig | None = None


def get_settings() -> CachekitConfig:
    """Return the settings, reading ``CACHEKIT_*`` variables the first time."""
    global _settings
    with _lock:
        if _settings is None:
            _settings = CachekitConfig.from_env()
        return _settings


def reset_settings() -> None:
    """Forget the settings; the next use reads the environment again.
    Functions decorated before keep the settings they were built with."""
    global _settings
    with _lock:
        _settings = None
