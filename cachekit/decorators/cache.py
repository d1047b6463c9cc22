"""The ``cache`` decorator and its intent presets.

``@cache``, ``@cache()`` and ``@cache(ttl=60, namespace="users", backend=None)``
all work; options may also come as ``config=DecoratorConfig(...)``, with
keyword options overriding it. Presets are attributes: ``cache.local``
(reference caching in this process), ``cache.secure`` (client-side
AES-256-GCM: the store only ever holds ciphertext; a missing or malformed
key fails here, at decoration), and ``cache.minimal``, ``cache.production``,
``cache.dev``, ``cache.test`` (cachekit/config/presets.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar, cast

from cachekit.config.decorator import UNSET, DecoratorConfig, L1CacheConfig
from cachekit.config.encryption import EncryptionConfig, adapt_tenant_extractor, key_type_error
from cachekit.config.presets import PRESETS
from cachekit.config.secret import SecretStr
from cachekit.decorators.types import Cache, CacheIntent
from cachekit.decorators.wrapper import wrap
from cachekit.exceptions import ConfigurationError

F = TypeVar("F", bound=Callable[..., Any])

_CONFIG_FIELDS = {f.name for f in dataclasses.fields(DecoratorConfig)}
# Accepted as flat keywords, mapped onto the nested L1CacheConfig.
_L1_ALIASES = {"l1_enabled": "enabled", "l1_max_size_mb": "max_size_mb", "l1_max_entries": "max_entries"}
# Accepted as flat keywords, mapped onto the nested EncryptionConfig.
_ENCRYPTION_ALIASES = {
    "master_key", "previous_master_keys", "key_rotation_enabled", "tenant_extractor",
    "dek_max_age", "dek_max_messages", "dek_max_bytes", "key_provider", "fail_closed",
    "compress_min",
}
_INTENTS = ("local", "minimal", "production", "secure", "dev", "test")
# Nested option objects: name, type, what to pass instead.
_NESTED = (
    ("l1", L1CacheConfig, "pass l1=L1CacheConfig(...) or the flat l1_max_entries=/l1_max_size_mb="),
    ("encryption", EncryptionConfig,
     "for encrypted caching use @cache.secure(...) or encryption=EncryptionConfig(enabled=True)"),
)


def _hide_secrets(overrides: dict[str, Any]) -> dict[str, Any]:
    """Wrap key arguments in SecretStr first thing, so no frame of ours holds
    a raw key a traceback (or an error reporter capturing locals) could show.
    Keys of the wrong type (bytes, a bare str of previous keys) are dropped
    from overrides, the caller's dict too, before the error is raised."""
    error = key_type_error(overrides.get("master_key"), overrides.get("previous_master_keys"))
    if error is not None:
        overrides.pop("master_key", None)
        overrides.pop("previous_master_keys", None)
        raise ConfigurationError(error)
    if isinstance(overrides.get("master_key"), str):
        overrides["master_key"] = SecretStr(overrides["master_key"])
    previous = overrides.get("previous_master_keys")
    if previous:
        overrides["previous_master_keys"] = tuple(
            k if isinstance(k, SecretStr) else SecretStr(k) for k in previous
        )
    return overrides


def _build_config(
    config: DecoratorConfig | None, overrides: dict[str, Any], intent: str | None = None
) -> DecoratorConfig:
    if config is not None:
        base = config
    elif intent in PRESETS:
        base = PRESETS[intent]()
    else:
        base = DecoratorConfig()
    if not isinstance(base, DecoratorConfig):
        raise ConfigurationError(f"config must be a DecoratorConfig, not {type(base).__name__}")
    for name, kind, hint in _NESTED:
        value = overrides.get(name, getattr(base, name))
        if not isinstance(value, kind):
            raise ConfigurationError(
                f"{name} must be an {kind.__name__}, not {type(value).__name__}: {hint}"
            )
    l1_changes = {_L1_ALIASES[k]: overrides.pop(k) for k in list(overrides) if k in _L1_ALIASES}
    enc_changes = {k: overrides.pop(k) for k in list(overrides) if k in _ENCRYPTION_ALIASES}
    unknown = sorted(set(overrides) - _CONFIG_FIELDS)
    if unknown:
        known = _CONFIG_FIELDS | set(_L1_ALIASES) | _ENCRYPTION_ALIASES
        raise ConfigurationError(
            f"unknown @cache option(s): {', '.join(unknown)}. Known: {', '.join(sorted(known))}"
        )
    if l1_changes:
        overrides["l1"] = dataclasses.replace(overrides.get("l1", base.l1), **l1_changes)
    if enc_changes:
        overrides["encryption"] = dataclasses.replace(
            overrides.get("encryption", base.encryption), **enc_changes
        )
    return dataclasses.replace(base, **overrides)


def _check_local(config: DecoratorConfig) -> None:
    """Refuse what @cache.local cannot honour: it keeps results as Python
    objects in this process, so there is no backend, serializer or checksum."""
    if config.backend is not UNSET and config.backend is not None:
        raise ConfigurationError(
            "@cache.local keeps entries in this process only: drop backend= (or use @cache)"
        )
    if not (isinstance(config.serializer, str) and config.serializer == "default"):
        raise ConfigurationError(
            "@cache.local keeps results as Python objects and never serializes them: drop "
            "serializer= (for encrypted in-process caching use @cache.secure(backend=None))"
        )
    if config.integrity_checking is not True:
        raise ConfigurationError(
            "@cache.local keeps results as Python objects, so there are no serialized bytes "
            "to check: drop integrity_checking="
        )
    if config.encryption.enabled:
        raise ConfigurationError(
            "@cache.local does not encrypt: use @cache.secure(backend=None) for encrypted "
            "in-process caching"
        )


def _decorate(
    func: Any, config: DecoratorConfig | None, intent: str | None, overrides: dict[str, Any]
) -> Any:
    if intent is not None and intent not in _INTENTS:
        raise ConfigurationError(f"unknown cache intent {intent!r}; available: {', '.join(_INTENTS)}")
    resolved = _build_config(config, dict(overrides), intent)
    if intent == "local":
        _check_local(resolved)
        resolved = dataclasses.replace(resolved, backend=None)
    if intent == "secure":
        resolved = dataclasses.replace(
            resolved, encryption=dataclasses.replace(resolved.encryption, enabled=True)
        )
    elif resolved.encryption.enabled is None and any(
        getattr(resolved.encryption, f) for f in ("master_key", "tenant_extractor", "key_provider")
    ):
        raise ConfigurationError(
            "master_key, key_provider and tenant_extractor only apply to encrypted caching: "
            "use @cache.secure"
        )
    if resolved.encryption.tenant_extractor is not None:
        resolved = dataclasses.replace(
            resolved,
            encryption=dataclasses.replace(
                resolved.encryption,
                tenant_extractor=adapt_tenant_extractor(resolved.encryption.tenant_extractor),
            ),
        )
    resolved.validate()

    def decorator(f: F) -> F:
        return wrap(f, resolved, reference=intent == "local")  # type: ignore[no-any-return]

    return decorator(func) if func is not None else decorator


def _cache(
    func: F | None = None,
    *,
    config: DecoratorConfig | None = None,
    _intent: str | None = None,
    **manual_overrides: Any,
) -> Any:
    """Cache a function's results. See the module docstring for the forms."""
    return _decorate(func, config, _intent, _hide_secrets(manual_overrides))


_cache.__name__ = _cache.__qualname__ = "cache"
# The same function, typed for checkers: the decorated function keeps its
# parameters and return type and gains the cache methods (types.py).
cache = cast(Cache, _cache)


def _intent(name: str) -> Callable[..., Any]:
    def preset(
        func: F | None = None,
        *,
        config: DecoratorConfig | None = None,
        _intent: str | None = name,
        **manual_overrides: Any,
    ) -> Any:
        return _decorate(func, config, _intent, _hide_secrets(manual_overrides))

    preset.__name__ = preset.__qualname__ = f"cache.{name}"
    preset.__doc__ = f"``@cache`` with the {name!r} preset."
    return preset


cache.local = cast(CacheIntent, _intent("local"))
cache.secure = cast(CacheIntent, _intent("secure"))
cache.minimal = cast(CacheIntent, _intent("minimal"))
cache.production = cast(CacheIntent, _intent("production"))
cache.dev = cast(CacheIntent, _intent("dev"))
cache.test = cast(CacheIntent, _intent("test"))

__all__ = ["cache", "DecoratorConfig", "EncryptionConfig", "L1CacheConfig"]
