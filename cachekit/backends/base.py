"""The backend protocols: what an L2 store must provide, and the optional
capabilities a backend may add.

Backends are structural (``typing.Protocol``): any object with the
:class:`BaseBackend` methods is one, no base class needed. Keys are ``str``,
values ``bytes`` (the entries cachekit has already framed, and encrypted
when ``@cache.secure``), TTLs whole seconds.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from contextlib import AbstractAsyncContextManager
from typing import Any, BinaryIO, Protocol, runtime_checkable

from cachekit.exceptions import BackendError, ConfigurationError

__all__ = [
    "BASE_BACKEND_METHODS",
    "BackendError",
    "BackendProvider",
    "BaseBackend",
    "BufferHandle",
    "BufferReadableBackend",
    "BufferWritableBackend",
    "KeyTrackableBackend",
    "LockableBackend",
    "TTLInspectableBackend",
    "TimeoutConfigurableBackend",
    "check_backend",
    "missing_backend_methods",
]


@runtime_checkable
class BaseBackend(Protocol):
    """The methods every backend has. Failures raise BackendError;
    health_check never raises."""

    def get(self, key: str) -> bytes | None:
        """The stored bytes, or None when the key is absent or expired."""
        ...

    def set(self, key: str, value: bytes, ttl: int | None = None) -> None:
        """Store value; ttl in seconds, None for no expiry."""
        ...

    def delete(self, key: str) -> bool:
        """Remove the key; True if it existed."""
        ...

    def exists(self, key: str) -> bool: ...

    def health_check(self) -> tuple[bool, dict[str, Any]]:
        """(healthy, details), details holding at least "backend"."""
        ...


# The names check_backend requires, in BaseBackend's order.
BASE_BACKEND_METHODS = ("get", "set", "delete", "exists", "health_check")


@runtime_checkable
class TTLInspectableBackend(Protocol):
    def get_ttl(self, key: str) -> int | None:
        """Seconds left, or None when the key is absent or never expires."""
        ...

    def refresh_ttl(self, key: str, ttl: int) -> bool:
        """Set a new TTL (seconds); True if the key exists."""
        ...


@runtime_checkable
class LockableBackend(Protocol):
    def acquire_lock(
        self, key: str, timeout: float, blocking_timeout: float | None = None
    ) -> AbstractAsyncContextManager[bool]: ...


@runtime_checkable
class KeyTrackableBackend(Protocol):
    def track_key(self, registry_id: str, key: str) -> None: ...

    def drain_tracked(self, registry_id: str, local_keys: Iterable[str]) -> set[str]: ...


@runtime_checkable
class TimeoutConfigurableBackend(Protocol):
    def with_timeout(self, operation: str, timeout_ms: int) -> AbstractAsyncContextManager[None]: ...


@runtime_checkable
class BackendProvider(Protocol):
    def get_backend(self) -> BaseBackend: ...


@runtime_checkable
class BufferHandle(Protocol):
    def close(self) -> None: ...


@runtime_checkable
class BufferReadableBackend(Protocol):
    def get_buffer(self, key: str) -> BufferHandle | None: ...


@runtime_checkable
class BufferWritableBackend(Protocol):
    def set_streaming(
        self, key: str, write_payload: Callable[[BinaryIO], None], ttl: int | None = None
    ) -> None: ...


def missing_backend_methods(obj: object) -> list[str]:
    """The BaseBackend methods obj lacks (or has as non-callables)."""
    return [name for name in BASE_BACKEND_METHODS if not callable(getattr(obj, name, None))]


def check_backend(obj: object) -> BaseBackend:
    """obj, if it satisfies BaseBackend; else ConfigurationError naming
    what is missing."""
    missing = missing_backend_methods(obj)
    if missing:
        raise ConfigurationError(
            f"backend {type(obj).__name__} lacks {', '.join(missing)}: a backend needs "
            "get(key), set(key, value, ttl=None), delete(key), exists(key) and health_check() "
            "(cachekit.backends.BaseBackend); pass backend=None for the in-process L1 only"
        )
    return obj  # type: ignore[return-value]
