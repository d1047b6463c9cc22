"""Interop mode: the cross-SDK cache format of cachekit-io/protocol interop/v1.

Keys are ``{namespace}:{operation}:{args_hash}`` (BLAKE2b-256 over the
canonical MessagePack of the flat argument array); values are one plain
MessagePack document, or, encrypted, ``nonce || AES-256-GCM || tag`` with
the protocol's HKDF key and AAD. The per-call work (encoding, hashing,
checking, sealing) is C: ``cachekit._core.interop_*``. See docs/interop.md.
"""

from __future__ import annotations

import datetime as _dt
import inspect
import re
from typing import Any

from cachekit import _core
from cachekit.exceptions import ConfigurationError, SerializationError

SEGMENT_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{0,63}$")
# Namespaces the protocol's auto-mode keys use as prefixes; an interop key
# starting with them could be mistaken for one.
RESERVED_NAMESPACES = frozenset({"ns", "nsapi"})


class InteropError(ValueError):
    """An argument, value or option outside what interop/v1 can express."""


class InteropDecodeError(SerializationError):
    """A stored value that is not one well-formed plain MessagePack document."""


def validate_segment(name: str, segment: object) -> str:
    """Return segment if it full-string matches SEGMENT_RE, else raise InteropError."""
    if not isinstance(segment, str) or SEGMENT_RE.fullmatch(segment) is None:
        raise InteropError(
            f"invalid interop {name} {segment!r}: must full-string match {SEGMENT_RE.pattern} "
            "(lowercase ASCII letters, digits, '.', '_', '-'; 1-64 chars)"
        )
    return segment


def validate_interop_config(
    operation: object, namespace: object, *, has_custom_key: bool = False
) -> tuple[str, str]:
    """Check the options of an interop function; return (operation, namespace)."""
    if has_custom_key:
        raise InteropError(
            "interop mode builds the cross-SDK key itself: drop key= (a custom key function "
            "would write keys no other SDK computes)"
        )
    if namespace is None:
        raise InteropError(
            f'interop mode requires an explicit namespace: @cache(interop="{operation}", '
            'namespace="users"). The namespace is the first segment of the cross-SDK key.'
        )
    validate_segment("operation", operation)
    validate_segment("namespace", namespace)
    assert isinstance(operation, str) and isinstance(namespace, str)  # noqa: S101
    if namespace in RESERVED_NAMESPACES:
        raise InteropError(
            f"namespace {namespace!r} is reserved (auto-mode key prefix): choose another"
        )
    return operation, namespace


def ensure_interop_backend_compatible(backend: Any) -> None:
    """Interop entries exist to be shared: refuse backend=None (L1 only)."""
    if backend is None:
        raise ConfigurationError(
            "interop mode shares entries with other SDKs through a backend: pass backend= "
            "(e.g. RedisBackend) or set REDIS_URL; backend=None keeps entries in this process"
        )
    for method in ("get", "set"):
        if not callable(getattr(backend, method, None)):
            raise ConfigurationError(
                f"interop mode needs a backend with get() and set(); {type(backend).__name__} "
                f"has no {method}()"
            )


def _raise(exc: Exception) -> InteropError:
    return InteropError(str(exc))


def canonical_args_bytes(args: list[Any] | tuple[Any, ...]) -> bytes:
    """Canonical MessagePack bytes of the flat argument array."""
    try:
        return _core.interop_canonical_args(args)
    except (ValueError, TypeError, OverflowError) as exc:
        raise _raise(exc) from None


def args_hash(args: list[Any] | tuple[Any, ...]) -> str:
    """Lowercase hex BLAKE2b-256 of canonical_args_bytes(args)."""
    return _core.interop_blake2b_256(canonical_args_bytes(args)).hex()


def generate_interop_key(namespace: str, operation: str, args: list[Any] | tuple[Any, ...]) -> str:
    """The interop/v1 key ``{namespace}:{operation}:{args_hash}``."""
    validate_segment("namespace", namespace)
    validate_segment("operation", operation)
    try:
        return _core.interop_key(namespace, operation, args)
    except (ValueError, TypeError, OverflowError) as exc:
        raise _raise(exc) from None


def bind_flat_args(
    sig: inspect.Signature, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> list[Any]:
    """The flat argument list in declaration order, defaults applied,
    ``*args`` as one list and ``**kwargs`` as one dict at their positions."""
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as exc:
        raise InteropError(f"the call does not match the function's signature: {exc}") from None
    bound.apply_defaults()  # gives *args () and **kwargs {} when not passed
    return [
        list(value) if param.kind is inspect.Parameter.VAR_POSITIONAL else value
        for (name, param), value in zip(
            sig.parameters.items(), (bound.arguments[n] for n in sig.parameters)
        )
    ]


def encode_interop_value(value: Any) -> bytes:
    """Plain canonical MessagePack of a value (floats stay float64;
    datetime/date/time become the protocol's sentinel maps)."""
    try:
        return _core.interop_encode_value(value)
    except (ValueError, TypeError, OverflowError, RecursionError) as exc:
        raise InteropError(
            f"{exc}. Interop values are plain MessagePack readable by every SDK: None, bool, "
            "int, float, str, bytes, list, tuple, dict (str keys), datetime/date/time"
        ) from None


_TEMPORAL = {
    "__datetime__": _dt.datetime.fromisoformat,
    "__date__": _dt.date.fromisoformat,
    "__time__": _dt.time.fromisoformat,
}


def _revive(obj: Any) -> Any:
    if isinstance(obj, dict):
        if len(obj) == 2 and "value" in obj and isinstance(obj["value"], str):
            for tag, parse in _TEMPORAL.items():
                if obj.get(tag) is True:
                    try:
                        return parse(obj["value"])
                    except ValueError:
                        return obj  # an ordinary map that looks like one: kept as is
        return {k: _revive(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_revive(v) for v in obj]
    return obj


def decode_interop_value(data: bytes | bytearray | memoryview) -> Any:
    """Decode exactly one plain MessagePack document; temporal sentinel maps
    become datetime/date/time. InteropDecodeError for anything else."""
    if not isinstance(data, (bytes, bytearray)):
        data = bytes(data)
    try:
        value = _core.interop_decode_value(data)
    except (ValueError, TypeError) as exc:
        raise InteropDecodeError(f"stored value is not an interop value: {exc}") from None
    # A sentinel key ("__datetime__", ...) has "__" in its bytes: without
    # one, there is nothing to revive and the walk is skipped.
    if isinstance(value, (dict, list)) and b"__" in data:
        return _revive(value)
    return value


__all__ = [
    "InteropDecodeError",
    "InteropError",
    "RESERVED_NAMESPACES",
    "SEGMENT_RE",
    "args_hash",
    "bind_flat_args",
    "canonical_args_bytes",
    "decode_interop_value",
    "encode_interop_value",
    "ensure_interop_backend_compatible",
    "generate_interop_key",
    "validate_interop_config",
    "validate_segment",
]
