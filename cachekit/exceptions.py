"""Exceptions cachekit raises.

Everything derives from :class:`CachekitError`. The serialization errors and
:class:`BackendError` (a cache backend such as Redis failed) are defined by
the C core (``cachekit._core``) because it raises them; they are re-exported
here so user code has one place to import from.

There is one ``BackendError`` class: the C client raises it, user backends
raise it (``BackendError(message, error_type=BackendErrorType.TRANSIENT)``),
and ``except cachekit.BackendError`` catches both. The C core creates the
class; this module gives it, once at import, the reference API's members:

- ``error_type``: a :class:`BackendErrorType`. The C client sets its own
  cause string on each error it raises; the ``error_type`` field maps it
  (``_C_ERROR_TYPES``) and keeps the string as ``reason``.
- ``reason``: what exactly failed, as the C client says it: ``"timeout"``,
  ``"connection"``, ``"auth"``, ``"protocol"``, ``"reply_too_large"`` or
  ``"server"`` (``None`` for errors raised by Python code).
- ``is_transient``: ``True`` for TRANSIENT and TIMEOUT: retrying (or serving
  from L1 meanwhile) may succeed.

They are attached here rather than in C so that the enum has one home in
Python; moving them into the binding later changes no behaviour.
"""

from __future__ import annotations

import enum
import hashlib
from typing import Any

from cachekit._core import (
    BackendError,
    CachekitError,
    DecryptionError,
    EncryptionError,
    IntegrityError,
    SerializationError,
    UnsupportedTypeError,
)

__all__ = [
    "BackendError",
    "BackendErrorType",
    "CachekitError",
    "ConfigurationError",
    "DecryptionError",
    "EncryptionError",
    "IntegrityError",
    "SerializationError",
    "UnsupportedTypeError",
]


class ConfigurationError(CachekitError, ValueError):
    """Invalid or unavailable configuration, raised when a decorator is applied
    or settings are loaded, never in the middle of a cached call.

    Also a ``ValueError``: code written for other releases catches either.
    """


class BackendErrorType(str, enum.Enum):
    """How a backend failed, for retry and fallback decisions."""

    TRANSIENT = "transient"  # connection refused/reset, server restarting: may pass on retry
    PERMANENT = "permanent"  # protocol violation, oversized reply, command refused
    TIMEOUT = "timeout"  # no answer within socket_timeout / socket_connect_timeout
    AUTHENTICATION = "authentication"  # wrong password or ACL user, TLS identity refused
    UNKNOWN = "unknown"


# The C client's error strings (py_redis.c error_type()) -> BackendErrorType.
# "protocol" (a malformed or hostile reply; the connection is dropped),
# "reply_too_large" (over max_reply_bytes) and "server" (an -ERR reply such
# as WRONGTYPE or OOM) repeat identically on retry, so they are PERMANENT.
_C_ERROR_TYPES: dict[str, BackendErrorType] = {
    "timeout": BackendErrorType.TIMEOUT,
    "connection": BackendErrorType.TRANSIENT,
    "auth": BackendErrorType.AUTHENTICATION,
    "protocol": BackendErrorType.PERMANENT,
    "reply_too_large": BackendErrorType.PERMANENT,
    "server": BackendErrorType.PERMANENT,
}


class _ErrorTypeField:
    """``BackendError.error_type``: ``None`` on the class (as the C core
    defines it), a BackendErrorType on instances."""

    def __get__(self, obj: object, owner: type | None = None) -> BackendErrorType | None:
        if obj is None:
            return None
        value: BackendErrorType = obj.__dict__.get("_error_type", BackendErrorType.UNKNOWN)
        return value

    def __set__(self, obj: object, value: object) -> None:
        if isinstance(value, BackendErrorType):
            kind = value
        elif isinstance(value, str) and value in _C_ERROR_TYPES:
            kind = _C_ERROR_TYPES[value]
            obj.__dict__["reason"] = value
        elif isinstance(value, str):
            try:
                kind = BackendErrorType(value)
            except ValueError:
                kind = BackendErrorType.UNKNOWN
        elif value is None:
            kind = BackendErrorType.UNKNOWN
        else:
            raise TypeError(f"error_type must be a BackendErrorType, not {type(value).__name__}")
        obj.__dict__["_error_type"] = kind


def _backend_error_init(
    self: BackendError,
    message: object = "",
    error_type: BackendErrorType | str | None = None,
    *args: object,
    **context: Any,
) -> None:
    """BackendError(message, error_type=BackendErrorType.UNKNOWN, **context):
    context (operation=, key=, original_exception=...) is kept as attributes;
    a ``key`` is stored redacted (cachekit.backends.errors.redact_cache_key)."""
    CachekitError.__init__(self, message, *args)
    self.__dict__["reason"] = None
    self.error_type = error_type  # type: ignore[assignment]
    for name, value in context.items():
        if name == "key" and value is not None:
            value = _redact(value)
        setattr(self, name, value)


def _is_transient(self: BackendError) -> bool:
    return self.error_type in (BackendErrorType.TRANSIENT, BackendErrorType.TIMEOUT)


def _redact(key: object) -> str:
    """``key#`` and 12 hex digits of the key's SHA-256 (the implementation of
    cachekit.backends.errors.redact_cache_key)."""
    if isinstance(key, (bytes, bytearray, memoryview)):
        data = bytes(key)
    else:
        data = str(key).encode("utf-8", "surrogatepass")
    return "key#" + hashlib.sha256(data).hexdigest()[:12]


BackendError.error_type = _ErrorTypeField()  # type: ignore[assignment]
BackendError.reason = None
BackendError.is_transient = property(_is_transient)  # type: ignore[method-assign, assignment]
BackendError.__init__ = _backend_error_init  # type: ignore[method-assign]
