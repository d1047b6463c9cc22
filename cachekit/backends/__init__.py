"""L2 backends: the protocols, the Redis backend, and which backend a
decorated function uses (resolve_backend, set_default_backend).

``_TWO_TIER_WIRED``: the decorator's L1 -> backend -> function path is
built (cachekit/decorators/l2.py), so DecoratorConfig.validate() accepts
backend objects.
"""

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
from cachekit.backends.redis import RedisBackend, RedisBackendConfig

_TWO_TIER_WIRED = True

__all__ = [
    "BackendError",
    "BackendErrorType",
    "BackendProvider",
    "BaseBackend",
    "CapabilityNotAvailableError",
    "KeyTrackableBackend",
    "LockableBackend",
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
