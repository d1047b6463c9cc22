"""Turn a function and its DecoratorConfig into the C CachedFunction."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from cachekit._core import CachedFunction
from cachekit.config.decorator import DecoratorConfig
from cachekit.config.encryption import EncryptionConfig
from cachekit.config.singleton import get_secure_settings, get_settings
from cachekit import observe
from cachekit.decorators import custom_key
from cachekit.decorators.async_path import make_async_miss, mark_coroutine_function
from cachekit.backends import resolve_backend
from cachekit.config.freshness import stale_seconds
from cachekit.decorators.events import event_reporter
from cachekit.decorators.freshness import make_refresher
from cachekit.decorators.health import attach_health
from cachekit.decorators.l2 import l2_for, secure_stays_local
from cachekit.decorators.signature import key_spec
from cachekit.decorators.types_registry import value_types_for
from cachekit.exceptions import ConfigurationError
from cachekit.info import CacheInfo
from cachekit.keyring import keyring_for
from cachekit.serializers import EncryptionWrapper
from cachekit.serializers.cache_codec import codec_for
from cachekit.store import store_for


def function_identity(func: Callable[..., Any]) -> str:
    module = getattr(func, "__module__", None) or "<unknown>"
    qualname = getattr(func, "__qualname__", None) or getattr(func, "__name__", None)
    if qualname is None:
        raise ConfigurationError(f"cannot cache {func!r}: it has no __qualname__ or __name__")
    return f"{module}.{qualname}"


def _constant_tenant(tenant: str) -> Callable[..., str]:
    def tenant_of(*args: Any, **kwargs: Any) -> str:
        return tenant

    return tenant_of


def _secure_options(config: DecoratorConfig, settings: Any) -> dict[str, Any]:
    """Keyring and tenant extractor for an encrypted function, or {}.
    Whatever serializer writes the plaintext (cache_codec.codec_for), the
    entry is sealed the same way."""
    serializer = config.serializer
    if isinstance(serializer, EncryptionWrapper):
        if config.encrypted:
            raise ConfigurationError("use either @cache.secure or serializer=EncryptionWrapper(...), not both")
        tenant = serializer.tenant_id
        return {
            "keyring": serializer.keyring,
            "tenant_extractor": None if tenant == "default" else _constant_tenant(tenant),
            "fail_closed": bool(serializer.fail_closed),
        }
    if not config.encrypted:
        return {}
    fail_closed = config.encryption.fail_closed
    # The key settings are read now, not with the others: the application
    # may load its secrets after modules decorated their plain functions.
    settings = get_secure_settings()
    # Builds (and validates) the keys now, at decoration time.
    return {
        "keyring": keyring_for(config.encryption, settings),
        "tenant_extractor": config.encryption.tenant_extractor,
        "fail_closed": settings.encryption_fail_closed if fail_closed is None else fail_closed,
    }


def _signer(config: DecoratorConfig, settings: Any) -> Any:
    """The keyring whose master key signs this function's plain backend
    entries, or None when signing is off."""
    sign = settings.sign_entries if config.sign_entries is None else config.sign_entries
    if not sign:
        return None
    secure_settings = get_secure_settings()
    if secure_settings.master_key is None:
        raise ConfigurationError(
            "sign_entries signs backend entries with a key derived from the master key: set "
            "CACHEKIT_MASTER_KEY (openssl rand -hex 32), or pass sign_entries=False"
        )
    return keyring_for(EncryptionConfig(), secure_settings)


def wrap(func: Callable[..., Any], config: DecoratorConfig, *, reference: bool = False) -> Any:
    """Build the cached callable for func, or return a classmethod/staticmethod
    around it when func is one. reference: @cache.local, which keeps and
    returns the result objects themselves."""
    if isinstance(func, (classmethod, staticmethod)):
        return type(func)(wrap(func.__func__, config, reference=reference))
    if not callable(func):
        raise ConfigurationError(f"@cache needs a callable, not {type(func).__name__}")
    config.validate()
    settings = get_settings()
    identity = function_identity(func)
    namespace = config.namespace or settings.namespace
    ttl = config.ttl if config.ttl is not None else settings.default_ttl
    if config.refresh_ttl_on_get and ttl is None:
        raise ConfigurationError(
            "refresh_ttl_on_get renews an entry's TTL, so it needs one: pass ttl= "
            "(or set CACHEKIT_DEFAULT_TTL)"
        )
    if config.interop is not None:
        if reference:
            raise ConfigurationError(
                "@cache.local keeps entries in this process; interop entries are shared through "
                "a backend: use @cache(interop=..., namespace=..., backend=...)"
            )
        from cachekit.decorators.interop_wrapper import wrap_interop

        return wrap_interop(func, config, resolve_backend(config.backend, settings), ttl)
    # Refuses a serializer @cache cannot drive (or a missing extra) first.
    codec = codec_for(config.serializer)
    secure = _secure_options(config, settings)
    target, prefix_name = func, identity
    if config.key is not None:
        # key=: the C object wraps a one-argument stand-in keyed by
        # config.key's result, under its own prefix (custom_key.py).
        target = custom_key.stand_in(func)
        prefix_name = identity + "[key]"
        if secure.get("tenant_extractor") is not None:
            secure["tenant_extractor"] = custom_key.call_tenant(secure["tenant_extractor"])
    # @cache.local is in-process reference caching: never a backend.
    backend = None if reference else resolve_backend(config.backend, settings)
    l2 = None
    if backend is not None:
        if secure and not secure["keyring"].has_master_key:
            secure_stays_local(identity)
        else:
            l2 = l2_for(backend, config)
    signer = _signer(config, settings) if l2 is not None and not secure else None
    is_async = inspect.iscoroutinefunction(func)
    value_types, on_event = value_types_for(func, event_reporter(identity))
    stale = stale_seconds(config, ttl, reference)
    fresh: dict[str, Any] = {}
    if stale is not None:
        l1 = config.l1
        fresh = {
            "refresher": make_refresher(target, is_async, l2 is not None, on_event),
            "stale_ttl": stale,
            "swr_ratio": float(l1.swr_threshold_ratio),
            "swr_retry": float(l1.swr_retry_interval),
        }
    cached = CachedFunction(
        target,
        store_for(config.l1, settings),
        key_prefix=f"{namespace}:{prefix_name}:",
        ttl=ttl,
        on_event=on_event,
        info_type=CacheInfo,
        max_value_size=settings.max_value_size,
        async_miss=make_async_miss(target) if is_async else None,
        reference=reference,
        copy=config.copy,
        l2=l2,
        signer=signer,
        lease=float(config.stampede_lease or 0.0),
        refresh_threshold=float(config.ttl_refresh_threshold) if config.refresh_ttl_on_get else 0.0,
        value_types=value_types,
        **fresh,
        serializer=codec,
        **secure,
        **key_spec(target),
    )
    functools.update_wrapper(cached, func)
    attach_health(cached, backend, l2, identity)
    observe.attach(cached, identity, config.monitoring, has_l2=l2 is not None)
    if config.key is not None:
        return custom_key.keyed_wrapper(func, cached, config.key, on_event)
    if is_async:
        mark_coroutine_function(cached, func)
    return cached
