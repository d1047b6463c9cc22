"""Backend errors: the one BackendError (see cachekit.exceptions for how the
C client's errors carry a BackendErrorType), and its relatives."""

from __future__ import annotations

from cachekit.exceptions import BackendError, BackendErrorType, CachekitError, _redact

__all__ = [
    "BackendError",
    "BackendErrorType",
    "CapabilityNotAvailableError",
    "UnsupportedTenantError",
    "redact_cache_key",
]


class CapabilityNotAvailableError(BackendError):
    """The backend lacks an optional capability (locks, TTL inspection...)."""


class UnsupportedTenantError(CachekitError, TypeError):
    """A tenant id of a type the backend cannot key by."""


def redact_cache_key(cache_key: object) -> str:
    """A stable stand-in for a cache key in logs and errors: ``key#`` and 12
    hex digits of its SHA-256. Keys hold argument values (user ids, emails),
    so they are not logged as they are."""
    return _redact(cache_key)
