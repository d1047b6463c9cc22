"""``@cache(interop="operation", namespace="ns")``: a function whose backend
entries follow cachekit-io/protocol interop/v1 (docs/interop.md).

The wrapper is small Python around C: the key (``_core.interop_key``), the
value codec, the strict reader check and the AES-256-GCM of the protocol
are all in src/core/ck_interop.c. Entries go to the backend only: the
point of the format is to share them, and an in-process copy would serve
values another SDK has since replaced. A backend that fails, and an entry
that is foreign, truncated, tampered or under another key, is a counted
miss; the function runs and its result is returned.
"""

from __future__ import annotations

import functools
import inspect
import logging
import threading
from collections.abc import Callable
from typing import Any

from cachekit import _core
from cachekit.config.decorator import DecoratorConfig
from cachekit.config.encryption import decode_master_key
from cachekit.config.singleton import get_secure_settings
from cachekit.exceptions import ConfigurationError
from cachekit.interop import (
    InteropError,
    bind_flat_args,
    decode_interop_value,
    encode_interop_value,
    ensure_interop_backend_compatible,
    validate_interop_config,
)

log = logging.getLogger("cachekit")

# The tenant of single-tenant interop encryption: a protocol literal, so a
# master key is all SDKs must share.
INTEROP_TENANT = "default"


def _check_options(func: Callable[..., Any], config: DecoratorConfig) -> tuple[str, str]:
    try:
        operation, namespace = validate_interop_config(
            config.interop, config.namespace, has_custom_key=config.key is not None
        )
    except InteropError as exc:
        raise ConfigurationError(str(exc)) from None
    if inspect.iscoroutinefunction(func):
        raise ConfigurationError(
            "interop mode is not available for async functions in this release: "
            "drop interop= or cache a sync function"
        )
    if not (isinstance(config.serializer, str) and config.serializer in ("default", "auto", "std")):
        raise ConfigurationError(
            "interop/v1 values are plain MessagePack by specification: drop serializer= "
            "(interop mode uses its own canonical encoder)"
        )
    if config.encryption.tenant_extractor is not None or config.encryption.key_provider is not None:
        raise ConfigurationError(
            "interop entries carry no metadata, so a reader cannot learn a per-call tenant or "
            "key id: drop tenant_extractor=/key_provider= (interop encryption is single-tenant "
            f"with the protocol tenant {INTEROP_TENANT!r} and a shared master_key)"
        )
    # stampede_lease (set by the production and secure presets) is a
    # cachekit-only speed-up and is simply not taken for interop functions.
    if config.refresh_ttl_on_get or config.sign_entries:
        raise ConfigurationError(
            "refresh_ttl_on_get and sign_entries are not part of interop/v1 (other SDKs neither "
            "renew TTLs on read nor check our signatures): drop them from an interop function"
        )
    return operation, namespace


def _master_keys(config: DecoratorConfig) -> list[bytes]:
    """Current key first, then previous ones (the protocol's sequential
    key attempts on read). Held as bytes for the function's lifetime."""
    enc = config.encryption
    settings = get_secure_settings()
    if enc.master_key is not None:
        current = decode_master_key(enc.master_key, "master_key")
    else:
        current = decode_master_key(settings.master_key, "CACHEKIT_MASTER_KEY")
    previous_src = enc.previous_master_keys or settings.previous_master_keys
    keys = [bytes(current)]
    current[:] = bytes(len(current))
    if enc.key_rotation_enabled:
        for i, secret in enumerate(previous_src):
            raw = decode_master_key(secret, f"previous master key {i}")
            keys.append(bytes(raw))
            raw[:] = bytes(len(raw))
    return keys


class _Stats:
    __slots__ = ("lock", "hits", "misses", "invalid", "errors")

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.hits = self.misses = self.invalid = self.errors = 0


def wrap_interop(func: Callable[..., Any], config: DecoratorConfig, backend: Any, ttl: Any) -> Any:
    operation, namespace = _check_options(func, config)
    ensure_interop_backend_compatible(backend)
    keys = _master_keys(config) if config.encrypted else None
    sig = inspect.signature(func)
    ttl_arg = None if ttl is None else max(1, int(ttl))
    stats = _Stats()

    # Only plain positional-or-keyword parameters: a call passing all of
    # them positionally is already the flat array (no binding, no defaults).
    arity = len(sig.parameters)
    simple = all(p.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD for p in sig.parameters.values())

    def key_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
        try:
            if simple and not kwargs and len(args) == arity:
                return _core.interop_key(namespace, operation, args)
            return _core.interop_key(namespace, operation, bind_flat_args(sig, args, kwargs))
        except (ValueError, TypeError, OverflowError) as exc:
            if isinstance(exc, InteropError):
                raise
            raise InteropError(str(exc)) from None

    def read(key: str) -> tuple[bool, Any]:
        try:
            raw = backend.get(key)
        except Exception as exc:  # a failing backend is a miss, never the caller's error
            with stats.lock:
                stats.errors += 1
            log.debug("cachekit: interop %s: backend get failed: %s", operation, type(exc).__name__)
            return False, None
        if raw is None:
            return False, None
        try:
            data = bytes(raw)
            if keys is not None:
                data = _core.interop_open(keys, INTEROP_TENANT, key, data)
            return True, decode_interop_value(data)
        except Exception:  # foreign, tampered, other key: a counted miss
            with stats.lock:
                stats.invalid += 1
            return False, None

    def write(key: str, result: Any) -> None:
        data = encode_interop_value(result)  # out-of-model results raise InteropError
        try:
            if keys is not None:
                data = _core.interop_seal(keys[0], INTEROP_TENANT, key, data)
            backend.set(key, data, ttl_arg)
        except Exception as exc:
            with stats.lock:
                stats.errors += 1
            log.debug("cachekit: interop %s: backend set failed: %s", operation, type(exc).__name__)

    @functools.wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if kwargs.pop("_bypass_cache", False):
            return func(*args, **kwargs)
        key = key_of(args, kwargs)
        found, value = read(key)
        with stats.lock:
            if found:
                stats.hits += 1
            else:
                stats.misses += 1
        if found:
            return value
        result = func(*args, **kwargs)
        write(key, result)
        return result

    def cache_key(*args: Any, **kwargs: Any) -> str:
        """The interop/v1 key of a call."""
        return key_of(args, kwargs)

    def invalidate_cache(*args: Any, **kwargs: Any) -> None:
        """Delete the backend entry of one call."""
        try:
            backend.delete(key_of(args, kwargs))
        except InteropError:
            raise
        except Exception:
            with stats.lock:
                stats.errors += 1

    def interop_stats() -> dict[str, int]:
        """hits, misses, invalid (entries refused as foreign/tampered), errors."""
        with stats.lock:
            return {"hits": stats.hits, "misses": stats.misses, "invalid": stats.invalid,
                    "errors": stats.errors}

    wrapper_any: Any = wrapper
    wrapper_any.cache_key = cache_key
    wrapper_any.invalidate_cache = invalidate_cache
    wrapper_any.interop_stats = interop_stats
    wrapper_any.interop_operation = operation
    wrapper_any.interop_namespace = namespace
    return wrapper
