"""Exceptions cachekit raises.

Everything derives from :class:`CachekitError`. The serialization errors and
:class:`BackendError` (a cache backend such as Redis failed; its
``error_type`` attribute says how) are defined by the C core (``cachekit._core``) because it raises them; they are
re-exported here so user code has one place to import from.
"""

from __future__ import annotations

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
