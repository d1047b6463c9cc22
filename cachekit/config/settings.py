"""CachekitConfig: process-wide settings from ``CACHEKIT_*`` environment variables.

One frozen object holds every setting. Each field reads the environment
variable ``CACHEKIT_<FIELD NAME IN CAPITALS>``; keyword arguments to
:meth:`CachekitConfig.from_env` override the environment. Secret fields are
:class:`~cachekit.config.secret.SecretStr`, so ``repr``/``str`` of the
settings, and any error about a secret field, show ``**********``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cachekit.config.secret import MASK, SecretStr
from cachekit.exceptions import ConfigurationError

ENV_PREFIX = "CACHEKIT_"
# Read for redis_url when CACHEKIT_REDIS_URL is not set.
REDIS_URL_FALLBACK = "REDIS_URL"
REDIS_URL_SCHEMES = (
    "redis://",
    "rediss://",
    "unix://",
    "redis+cluster://",
    "rediss+cluster://",
    "redis+sentinel://",
)


def _parse_bool(raw: str) -> bool:
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off", ""):
        return False
    raise ValueError("expected true/false, yes/no, on/off or 1/0")


def _parse_non_negative_int(raw: str) -> int:
    value = int(raw.strip())
    if value < 0:
        raise ValueError("must be >= 0")
    return value


def _parse_positive_int(raw: str) -> int:
    value = int(raw.strip())
    if value <= 0:
        raise ValueError("must be > 0")
    return value


def _parse_ttl(raw: str) -> float | None:
    text = raw.strip().lower()
    if text in ("", "none"):
        return None
    value = float(text)
    if not (value > 0 and math.isfinite(value)):
        raise ValueError("must be a positive number of seconds")
    return value


def _parse_namespace(raw: str) -> str:
    value = raw.strip()
    if not value or any(c.isspace() for c in value):
        raise ValueError("must be non-empty and contain no whitespace")
    return value


def _parse_secret(raw: str) -> SecretStr | None:
    value = raw.strip()
    return SecretStr(value) if value else None


def _parse_positive_seconds(raw: str) -> float:
    value = float(raw.strip())
    if not (value > 0 and math.isfinite(value)):
        raise ValueError("must be a positive number of seconds")
    return value


def _parse_redis_url(raw: str) -> SecretStr | None:
    value = raw.strip()
    if not value:
        return None
    if not value.startswith(REDIS_URL_SCHEMES):
        raise ValueError(
            "must be a redis://, rediss://, unix://, redis+cluster:// or redis+sentinel:// URL"
        )
    return SecretStr(value)


def _parse_secret_list(raw: str) -> tuple[SecretStr, ...]:
    return tuple(SecretStr(part.strip()) for part in raw.split(",") if part.strip())


@dataclasses.dataclass(frozen=True)
class CachekitConfig:
    """Process-wide settings. Build with :meth:`from_env`; read with
    :func:`cachekit.config.get_settings`."""

    namespace: str = "cachekit"
    default_ttl: float | None = None
    max_value_size: int = 100 * 1024 * 1024
    l1_enabled: bool = True
    l1_max_size_mb: int = 100
    l1_max_entries: int = 0
    master_key: SecretStr | None = None
    previous_master_keys: tuple[SecretStr, ...] = ()
    encryption_fail_closed: bool = False
    # Plain @cache entries in a backend carry an HMAC under a key derived
    # from CACHEKIT_MASTER_KEY (docs/security.md, "Signed plain entries").
    sign_entries: bool = False
    # Redis (cachekit.backends.redis.RedisBackendConfig reads the same
    # variables). redis_url None: no Redis configured, L1 only.
    redis_url: SecretStr | None = None
    connection_pool_size: int = 50
    socket_timeout: float = 5.0
    socket_connect_timeout: float = 5.0

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> CachekitConfig:
        """Read ``CACHEKIT_*`` variables from environ (default ``os.environ``),
        then apply overrides. Raises ConfigurationError naming the variable."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ConfigurationError(
                f"unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(fields))}"
            )
        values = read_env(_FIELDS, environ)
        for name, value in overrides.items():
            values[name] = _coerce_override(name, value)
        return cls(**values)

    def get_safe_repr(self) -> dict[str, Any]:
        """The settings as a dict with secrets masked, for logs and health output."""
        return {
            f.name: _mask_value(getattr(self, f.name)) for f in dataclasses.fields(self)
        }


# What @cache.secure and EncryptionWrapper read from the environment each time
# they are applied, not once with the other settings: an application often
# loads its secrets after modules have decorated their plain functions.
SECURE_FIELDS = ("master_key", "previous_master_keys", "encryption_fail_closed")


def read_env(names: Iterable[str], environ: Mapping[str, str] | None = None) -> dict[str, Any]:
    """The parsed values of the ``CACHEKIT_*`` variables of the named fields
    that are set. Raises ConfigurationError naming the variable."""
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    for name in names:
        parse, secret = _FIELDS[name]
        var = ENV_PREFIX + name.upper()
        raw = env.get(var)
        if name == "previous_master_keys" and raw is None:
            # The user guide's spelling; 0.24.1 read CACHEKIT_PREVIOUS_MASTER_KEYS.
            raw = env.get(ENV_PREFIX + "MASTER_KEY_ROTATION")
        if name == "redis_url" and raw is None:
            # The conventional name; CACHEKIT_REDIS_URL wins when both are set.
            var = REDIS_URL_FALLBACK
            raw = env.get(var)
        if raw is None:
            continue
        try:
            values[name] = parse(raw)
        except ValueError as exc:
            shown = MASK if secret else repr(raw)
            raise ConfigurationError(f"{var}={shown} is invalid: {exc}") from None
    return values


def _mask_value(value: object) -> object:
    if isinstance(value, SecretStr):
        return MASK
    if isinstance(value, tuple):
        return tuple(_mask_value(v) for v in value)
    return value


def _coerce_override(name: str, value: Any) -> Any:
    parse, secret = _FIELDS[name]
    if name == "redis_url" and isinstance(value, (str, SecretStr)):
        text = value.get_secret_value() if isinstance(value, SecretStr) else value
        try:
            return parse(text)
        except ValueError as exc:
            raise ConfigurationError(f"setting redis_url={MASK} is invalid: {exc}") from None
    if secret:
        if value is None or isinstance(value, SecretStr):
            return value
        if name == "previous_master_keys":
            if not isinstance(value, (list, tuple)) or not all(
                isinstance(v, (str, SecretStr)) for v in value
            ):
                raise ConfigurationError(
                    "setting previous_master_keys must be a list or tuple of hex strings"
                )
            return tuple(v if isinstance(v, SecretStr) else SecretStr(v) for v in value)
        if isinstance(value, str):
            return SecretStr(value)
        raise ConfigurationError(f"setting {name} must be a str, not {type(value).__name__}")
    if isinstance(value, str):
        try:
            return parse(value)
        except ValueError as exc:
            raise ConfigurationError(f"setting {name}={value!r} is invalid: {exc}") from None
    try:
        return parse(str(value)) if value is not None else None
    except ValueError as exc:
        raise ConfigurationError(f"setting {name}={value!r} is invalid: {exc}") from None


# field name -> (parser of the environment text, is it secret)
_FIELDS: dict[str, tuple[Callable[[str], Any], bool]] = {
    "namespace": (_parse_namespace, False),
    "default_ttl": (_parse_ttl, False),
    "max_value_size": (_parse_positive_int, False),
    "l1_enabled": (_parse_bool, False),
    "l1_max_size_mb": (_parse_non_negative_int, False),
    "l1_max_entries": (_parse_non_negative_int, False),
    "master_key": (_parse_secret, True),
    "previous_master_keys": (_parse_secret_list, True),
    "encryption_fail_closed": (_parse_bool, False),
    "sign_entries": (_parse_bool, False),
    "redis_url": (_parse_redis_url, True),
    "connection_pool_size": (_parse_positive_int, False),
    "socket_timeout": (_parse_positive_seconds, False),
    "socket_connect_timeout": (_parse_positive_seconds, False),
}
