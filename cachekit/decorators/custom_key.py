"""``key=``: a caller-supplied key function in front of the C CachedFunction.

``@cache(key=fn)`` calls ``fn(*args, **kwargs)`` with the call's arguments;
it must return a ``str`` or ``bytes``. The C CachedFunction is built over a
one-parameter stand-in whose only argument is that key, so the C core keys,
stores, singleflights and invalidates by it exactly as it does any call. The
stand-in runs the real function with the real arguments, which the wrapper
hands it through a context variable (each thread and each asyncio task sees
its own). The key prefix names the function and a ``[key]`` marker, so two
functions, or one function's default and custom keys, never share entries.

A key function that raises or returns something other than str/bytes makes
the call run uncached: counted as ``key_func_error`` (cachekit.metrics) and
logged once per function, by exception class only. Never a wrong value.
"""

from __future__ import annotations

import contextvars
import functools
import inspect
from collections.abc import Callable
from typing import Any

from cachekit.exceptions import ConfigurationError

_CALL: contextvars.ContextVar[tuple[tuple[Any, ...], dict[str, Any]]] = contextvars.ContextVar(
    "cachekit_key_call"
)

_MISSING = object()


class KeyFunctionError(Exception):
    """The key function returned something other than str or bytes."""


def check_key_function(key: Any) -> None:
    """Raise ConfigurationError unless key is None or a callable."""
    if key is None:
        return
    if isinstance(key, (str, bytes)) or not callable(key):
        raise ConfigurationError(
            f"key must be a callable taking the function's arguments and returning a str or "
            f"bytes key (e.g. key=lambda user_id: str(user_id)), not {type(key).__name__}"
        )


def stand_in(func: Callable[..., Any]) -> Callable[..., Any]:
    """The one-argument function the C CachedFunction wraps: it ignores the
    key and runs func with the arguments of the call being computed."""
    if inspect.iscoroutinefunction(func):

        async def keyed_async(key: Any) -> Any:
            args, kwargs = _CALL.get()
            return await func(*args, **kwargs)

        return keyed_async

    def keyed(key: Any) -> Any:
        args, kwargs = _CALL.get()
        return func(*args, **kwargs)

    return keyed


def _key_of(key_fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any],
            on_event: Callable[[str, BaseException], None]) -> Any:
    """key_fn's key for this call, or _MISSING after reporting why not."""
    try:
        key = key_fn(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - any failure means: run uncached
        on_event("key_func_error", exc)
        return _MISSING
    if not isinstance(key, (str, bytes)):
        on_event("key_func_error", KeyFunctionError(
            f"the key function returned {type(key).__name__}, not str or bytes"))
        return _MISSING
    return key


_FORWARDED = (
    "cache_clear", "acache_clear", "cache_info", "cache_stats", "check_health",
    "get_health_status", "store", "keyring", "fail_closed",
)


def keyed_wrapper(func: Callable[..., Any], cached: Any, key_fn: Callable[..., Any],
                  on_event: Callable[[str, BaseException], None]) -> Any:
    """The decorated function: key_fn's key, then cached(key) with the call's
    arguments in the context; func itself when no key can be made."""
    if inspect.iscoroutinefunction(func):

        async def call_async(*args: Any, **kwargs: Any) -> Any:
            key = _key_of(key_fn, args, kwargs, on_event)
            if key is _MISSING:
                return await func(*args, **kwargs)
            token = _CALL.set((args, kwargs))
            try:
                return await cached(key)
            finally:
                _CALL.reset(token)

        wrapper: Any = call_async
    else:

        def call(*args: Any, **kwargs: Any) -> Any:
            key = _key_of(key_fn, args, kwargs, on_event)
            if key is _MISSING:
                return func(*args, **kwargs)
            token = _CALL.set((args, kwargs))
            try:
                return cached(key)
            finally:
                _CALL.reset(token)

        wrapper = call

    # Each sets the call's arguments in the context too: a secure
    # function's tenant extractor reads them (call_tenant).
    def invalidate_cache(*args: Any, **kwargs: Any) -> bool:
        key = _key_of(key_fn, args, kwargs, on_event)
        if key is _MISSING:
            return False
        token = _CALL.set((args, kwargs))
        try:
            return bool(cached.invalidate_cache(key))
        finally:
            _CALL.reset(token)

    async def ainvalidate_cache(*args: Any, **kwargs: Any) -> bool:
        key = _key_of(key_fn, args, kwargs, on_event)
        if key is _MISSING:
            return False
        token = _CALL.set((args, kwargs))
        try:
            return bool(await cached.ainvalidate_cache(key))
        finally:
            _CALL.reset(token)

    def cache_key(*args: Any, **kwargs: Any) -> str:
        key = key_fn(*args, **kwargs)
        if not isinstance(key, (str, bytes)):
            raise KeyFunctionError(
                f"the key function returned {type(key).__name__}, not str or bytes")
        token = _CALL.set((args, kwargs))
        try:
            return str(cached.cache_key(key))
        finally:
            _CALL.reset(token)

    functools.update_wrapper(wrapper, func)
    wrapper.invalidate_cache = invalidate_cache
    wrapper.ainvalidate_cache = ainvalidate_cache
    wrapper.cache_key = cache_key
    wrapper.cached_function = cached
    for name in _FORWARDED:
        value = getattr(cached, name, _MISSING)
        if value is not _MISSING:
            setattr(wrapper, name, value)
    return wrapper


def call_tenant(extractor: Callable[..., str]) -> Callable[..., str]:
    """A tenant extractor the C side calls with the key: it hands the real
    extractor the arguments of the call being made."""

    def tenant_of(key: Any) -> str:
        args, kwargs = _CALL.get()
        return extractor(*args, **kwargs)

    return tenant_of
