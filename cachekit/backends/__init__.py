"""L2 backends: the protocols, the Redis backend, and which backend a
decorated function uses (resolve_backend, set_default_backend).

``_TWO_TIER_WIRED``: False until the decorator's L1 -> backend -> function
path is built. While False, DecoratorConfig.validate() refuses backend
objects (after checking them) instead of silently ignoring them; the
integrator sets it to True in the commit that wires resolve_backend into
``@cache``.
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

_TWO_TIER_WIRED = False

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
