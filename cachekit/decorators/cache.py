"""The ``cache`` decorator and its intent presets.

``@cache``, ``@cache()`` and ``@cache(ttl=60, namespace="users", backend=None)``
all work; options may also come as ``config=DecoratorConfig(...)``, with
keyword options overriding it. Presets are attributes: ``cache.local`` (the
L1 store only, the default today) and ``cache.secure`` (client-side
encryption, not available in this release: it raises ConfigurationError at
decoration time rather than caching plaintext).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

from cachekit.config.decorator import DecoratorConfig, L1CacheConfig
from cachekit.decorators.wrapper import wrap
from cachekit.exceptions import ConfigurationError

F = TypeVar("F", bound=Callable[..., Any])

_CONFIG_FIELDS = {f.name for f in dataclasses.fields(DecoratorConfig)}
# Accepted as flat keywords, mapped onto the nested L1CacheConfig.
_L1_ALIASES = {"l1_enabled": "enabled", "l1_max_size_mb": "max_size_mb", "l1_max_entries": "max_entries"}
_INTENTS = ("local", "secure")


def _build_config(config: DecoratorConfig | None, overrides: dict[str, Any]) -> DecoratorConfig:
    base = config if config is not None else DecoratorConfig()
    if not isinstance(base, DecoratorConfig):
        raise ConfigurationError(f"config must be a DecoratorConfig, not {type(base).__name__}")
    l1_changes = {_L1_ALIASES[k]: overrides.pop(k) for k in list(overrides) if k in _L1_ALIASES}
    unknown = sorted(set(overrides) - _CONFIG_FIELDS)
    if unknown:
        raise ConfigurationError(
            f"unknown @cache option(s): {', '.join(unknown)}. "
            f"Known: {', '.join(sorted(_CONFIG_FIELDS | set(_L1_ALIASES)))}"
        )
    if l1_changes:
        overrides["l1"] = dataclasses.replace(overrides.get("l1", base.l1), **l1_changes)
    return dataclasses.replace(base, **overrides)


def _decorate(
    func: Any, config: DecoratorConfig | None, intent: str | None, overrides: dict[str, Any]
) -> Any:
    if intent is not None and intent not in _INTENTS:
        raise ConfigurationError(f"unknown cache intent {intent!r}; available: {', '.join(_INTENTS)}")
    if intent == "secure":
        raise ConfigurationError(
            "cache.secure (client-side AES-256-GCM encryption) is not available in this "
            "release of cachekit yet. Refusing to cache in plaintext what you asked to encrypt."
        )
    resolved = _build_config(config, dict(overrides))
    if intent == "local":
        resolved = dataclasses.replace(resolved, backend=None)
    resolved.validate()

    def decorator(f: F) -> F:
        return wrap(f, resolved)  # type: ignore[no-any-return]

    return decorator(func) if func is not None else decorator


def cache(
    func: F | None = None,
    *,
    config: DecoratorConfig | None = None,
    _intent: str | None = None,
    **manual_overrides: Any,
) -> Any:
    """Cache a function's results. See the module docstring for the forms."""
    return _decorate(func, config, _intent, manual_overrides)


def _intent(name: str) -> Callable[..., Any]:
    def preset(
        func: F | None = None,
        *,
        config: DecoratorConfig | None = None,
        _intent: str | None = name,
        **manual_overrides: Any,
    ) -> Any:
        return _decorate(func, config, _intent, manual_overrides)

    preset.__name__ = preset.__qualname__ = f"cache.{name}"
    preset.__doc__ = f"``@cache`` with the {name!r} preset."
    return preset


cache.local = _intent("local")  # type: ignore[attr-defined]
cache.secure = _intent("secure")  # type: ignore[attr-defined]

__all__ = ["cache", "L1CacheConfig", "DecoratorConfig"]
