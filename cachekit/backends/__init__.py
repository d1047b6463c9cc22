"""L2 backends: the protocols, the Redis backend, and which backend a
decorated function uses (resolve_backend, set_default_backend). The
decorator drives a resolved backend through cachekit/decorators/l2.py."""

from cachekit.backends.base import (
    BackendProvider,
    BaseBackend,
    KeyTrackableBackend,
    LockableBackend,
    TimeoutConfigurableBackend,
    TTLInspectableBackend,
    check_backend,
    missing_backend_methods,
)
from cachekit.backends.default import get_default_backend, resolve_backend, set_default_backend
from cachekit.backends.errors import BackendError, BackendErrorType, CapabilityNotAvailableError
from cachekit.backends.memcached import MemcachedBackend, MemcachedBackendConfig
from cachekit.backends.redis import RedisBackend, RedisBackendConfig

__all__ = [
    "BackendError",
    "BackendErrorType",
    "BackendProvider",
    "BaseBackend",
    "CapabilityNotAvailableError",
    "KeyTrackableBackend",
    "LockableBackend",
    "MemcachedBackend",
    "MemcachedBackendConfig",
    "RedisBackend",
    "RedisBackendConfig",
    "TTLInspectableBackend",
    "TimeoutConfigurableBackend",
    "check_backend",
    "get_default_backend",
    "missing_backend_methods",
    "resolve_backend",
    "set_default_backend",
]
