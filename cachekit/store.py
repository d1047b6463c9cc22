"""Which L1 store a decorated function uses.

By default every function shares one process-wide store sized by the
settings (``l1_max_size_mb``, ``l1_max_entries``), so the memory bound holds
however many functions are decorated. A function given its own bounds
(``l1=L1CacheConfig(max_entries=...)``) gets a store of its own. With
``CACHEKIT_L1_ENABLED=false`` nothing is stored.
"""

from __future__ import annotations

import threading

from cachekit._core import L1Store
from cachekit.config.decorator import L1CacheConfig
from cachekit.config.settings import CachekitConfig

_MIB = 1024 * 1024
_lock = threading.Lock()
_default: tuple[CachekitConfig, L1Store] | None = None


def default_store(settings: CachekitConfig) -> L1Store:
    """The shared store for these settings (rebuilt when settings change)."""
    global _default
    with _lock:
        if _default is None or _default[0] is not settings:
            store = L1Store(
                max_entries=settings.l1_max_entries,
                max_bytes=settings.l1_max_size_mb * _MIB,
            )
            _default = (settings, store)
        return _default[1]


def store_for(l1: L1CacheConfig, settings: CachekitConfig) -> L1Store:
    if not settings.l1_enabled:
        # CACHEKIT_L1_ENABLED=false: a store too small for any entry (each
        # is charged its key and overhead), so every call runs the function.
        # There is no other tier yet to fall back on.
        return L1Store(max_entries=1, max_bytes=1)
    if not l1.dedicated:
        return default_store(settings)
    max_bytes = int(l1.max_size_mb * _MIB) if l1.max_size_mb is not None else 0
    return L1Store(max_entries=l1.max_entries or 0, max_bytes=max_bytes)
