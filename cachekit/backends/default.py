"""Which backend a decorated function uses: resolve_backend and the
process-wide default.

Rules (applied once, at decoration):

- ``backend=None``: no L2; the in-process L1 only.
- a backend object: that object (it must have the BaseBackend methods).
- not given (``UNSET``): the backend set with :func:`set_default_backend`;
  else, when the settings hold a Redis URL (``CACHEKIT_REDIS_URL`` or
  ``REDIS_URL``), a RedisBackend for it, one per URL and pool options,
  shared by every function in the process; else None (L1 only), said once
  per process in an INFO line on the ``cachekit`` logger.
"""

from __future__ import annotations

import logging
import os
import threading
from typing import Any

from cachekit.backends.base import BaseBackend, check_backend
from cachekit.backends.redis import RedisBackend, RedisBackendConfig
from cachekit.config.decorator import UNSET
from cachekit.config.settings import CachekitConfig

log = logging.getLogger("cachekit")

NO_REDIS_MESSAGE = (
    "no Redis configured (REDIS_URL / CACHEKIT_REDIS_URL unset): "
    "caching in the in-process L1 only"
)

_lock = threading.Lock()
_default: BaseBackend | None = None
# (url, pool size, timeouts) -> the shared RedisBackend built from settings.
_from_settings: dict[tuple[Any, ...], RedisBackend] = {}
_told_no_redis = False


def set_default_backend(backend: BaseBackend | None) -> None:
    """Use backend for functions decorated from now on without backend=;
    None forgets it (back to the environment's Redis, or L1 only)."""
    global _default
    if backend is not None:
        check_backend(backend)
    with _lock:
        _default = backend


def get_default_backend() -> BaseBackend | None:
    """The backend set with set_default_backend, or None."""
    return _default


def resolve_backend(config_backend: Any, settings: CachekitConfig) -> BaseBackend | None:
    """The backend of one decorated function (see the module docstring).
    Raises ConfigurationError for an object that is not a backend."""
    global _told_no_redis
    if config_backend is None:
        return None
    if config_backend is not UNSET:
        return check_backend(config_backend)
    default = _default
    if default is not None:
        return default
    if settings.redis_url is None:
        with _lock:
            tell, _told_no_redis = not _told_no_redis, True
        if tell:
            log.info(NO_REDIS_MESSAGE)
        return None
    ident = (
        settings.redis_url.get_secret_value(), settings.connection_pool_size,
        settings.socket_timeout, settings.socket_connect_timeout,
    )
    with _lock:
        backend = _from_settings.get(ident)
        if backend is None:
            backend = RedisBackend(RedisBackendConfig(
                redis_url=settings.redis_url,
                connection_pool_size=settings.connection_pool_size,
                socket_timeout=settings.socket_timeout,
                socket_connect_timeout=settings.socket_connect_timeout,
            ))
            _from_settings[ident] = backend
        return backend


def _reset_for_tests() -> None:
    """Forget the default, close the shared backends, say the INFO line again."""
    global _default, _told_no_redis
    with _lock:
        _default = None
        _told_no_redis = False
        backends = list(_from_settings.values())
        _from_settings.clear()
    for backend in backends:
        backend.close()


def _after_fork_in_child() -> None:
    # The lock may have been held by another parent thread at the fork.
    global _lock
    _lock = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
