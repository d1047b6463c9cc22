"""Per-decorator configuration: DecoratorConfig and its nested L1CacheConfig.

``@cache(**options)`` and ``@cache(config=DecoratorConfig(...))`` both end up
here. Options of the reference API that this release does not implement yet
are accepted at their default values and refused with a ConfigurationError
otherwise, so nothing is silently ignored.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from cachekit.config.encryption import EncryptionConfig
from cachekit.config.reliability import BackpressureConfig, CircuitBreakerConfig
from cachekit.config.monitoring import MonitoringConfig
from cachekit.exceptions import ConfigurationError


class _Unset:
    """Marker for "not given": lets None mean "no backend"."""

    _instance: _Unset | None = None

    def __new__(cls) -> _Unset:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()


# Serializer names @cache accepts: the C codec (msgpack with typed
# extensions, numpy arrays and pandas / polars frames included) under four
# names, JSON through orjson, Arrow IPC (cachekit/serializers/cache_codec.py).
_CODEC_NAMES = ("default", "std", "msgpack", "auto", "orjson", "arrow")


@dataclasses.dataclass(frozen=True)
class L1CacheConfig:
    """The in-process L1 store of one decorated function.

    With neither bound set, the function shares the process-wide store sized
    by the settings ``l1_max_size_mb`` / ``l1_max_entries``. Setting a bound
    gives the function a store of its own.
    """

    enabled: bool = True
    max_size_mb: float | None = None
    max_entries: int | None = None
    # Freshness (docs/freshness.md): in effect once the function sets
    # stale_ttl (or swr_by_default); swr_enabled=False turns it off.
    swr_enabled: bool = True
    swr_threshold_ratio: float = 0.5
    swr_retry_interval: float = 10.0

    def validate(self) -> None:
        if self.max_size_mb is not None and not (
            self.max_size_mb > 0 and math.isfinite(self.max_size_mb)
        ):
            raise ConfigurationError("l1.max_size_mb must be a positive number of MiB or None")
        if self.max_entries is not None and (
            isinstance(self.max_entries, bool)
            or not isinstance(self.max_entries, int)
            or self.max_entries <= 0
        ):
            raise ConfigurationError("l1.max_entries must be a positive int or None")
        from cachekit.config.freshness import validate_l1_freshness

        validate_l1_freshness(self)

    @property
    def dedicated(self) -> bool:
        return self.max_size_mb is not None or self.max_entries is not None


# Options of the reference API not built yet: name -> the default we accept.
_ENCRYPTION_FIELDS = frozenset({"master_key", "tenant_extractor", "key_provider", "fail_closed"})

NOT_YET_AVAILABLE: dict[str, Any] = {}


@dataclasses.dataclass(frozen=True)
class DecoratorConfig:
    """Everything one ``@cache`` needs. Unset fields fall back to settings.

    Fields follow the reference API's order.
    """

    ttl: float | None = None
    stale_ttl: float | None = None
    swr_by_default: bool = False
    namespace: str | None = None
    serializer: Any = "default"
    integrity_checking: bool = True
    key: Any = None
    interop: Any = None
    refresh_ttl_on_get: bool = False
    ttl_refresh_threshold: float = 0.5
    # UNSET: resolved at decoration (cachekit.backends.resolve_backend);
    # None: L1 only; or an object satisfying cachekit.backends.BaseBackend.
    backend: Any = UNSET
    l1: L1CacheConfig = dataclasses.field(default_factory=L1CacheConfig)
    circuit_breaker: CircuitBreakerConfig = dataclasses.field(default_factory=CircuitBreakerConfig)
    backpressure: BackpressureConfig = dataclasses.field(default_factory=BackpressureConfig)
    monitoring: MonitoringConfig = dataclasses.field(default_factory=MonitoringConfig)
    encryption: EncryptionConfig = dataclasses.field(default_factory=EncryptionConfig)
    # cachekit's own: False shares one stored object between callers, as
    # functools.lru_cache does (see docs/usage.md, "What a hit returns").
    copy: bool = True
    # cachekit's own: sign plain entries written to a backend (None: the
    # CACHEKIT_SIGN_ENTRIES setting). See docs/security.md.
    sign_entries: bool | None = None
    # cachekit's own: seconds of a cross-process stampede lease in Redis
    # (None: off). See docs/usage.md, "Two tiers".
    stampede_lease: float | None = None

    def validate(self) -> None:
        """Raise ConfigurationError for anything wrong or not available yet."""
        if self.ttl is not None and (
            isinstance(self.ttl, bool)
            or not isinstance(self.ttl, (int, float))
            or not (self.ttl > 0 and math.isfinite(self.ttl))
        ):
            raise ConfigurationError(f"ttl must be a positive number of seconds or None, not {self.ttl!r}")
        if self.namespace is not None and (
            not isinstance(self.namespace, str)
            or not self.namespace
            or any(c.isspace() for c in self.namespace)
        ):
            raise ConfigurationError("namespace must be a non-empty str without whitespace")
        if not isinstance(self.integrity_checking, bool):
            kind = type(self.integrity_checking).__name__
            raise ConfigurationError(f"integrity_checking must be True or False, not {kind}")
        if not isinstance(self.l1, L1CacheConfig):
            raise ConfigurationError("l1 must be an L1CacheConfig")
        self.l1.validate()
        if not isinstance(self.encryption, EncryptionConfig):
            raise ConfigurationError("encryption must be an EncryptionConfig")
        self.encryption.validate()
        # Serializer objects (StandardSerializer, EncryptionWrapper) are
        # resolved by the decorator, which knows the serializers package.
        if isinstance(self.serializer, str) and self.serializer not in _CODEC_NAMES:
            raise ConfigurationError(
                f"serializer {self.serializer!r} is not available in this release of cachekit; "
                f"pass one of {', '.join(repr(n) for n in _CODEC_NAMES)} or a serializer instance"
            )
        self._validate_backend()
        from cachekit.config.freshness import validate_freshness

        validate_freshness(self)
        if not isinstance(self.circuit_breaker, CircuitBreakerConfig):
            raise ConfigurationError("circuit_breaker must be a CircuitBreakerConfig")
        self.circuit_breaker.validate()
        if not isinstance(self.backpressure, BackpressureConfig):
            raise ConfigurationError("backpressure must be a BackpressureConfig")
        self.backpressure.validate()
        if not isinstance(self.monitoring, MonitoringConfig):
            raise ConfigurationError("monitoring must be a MonitoringConfig")
        self.monitoring.validate()
        if not self.l1.enabled:
            raise ConfigurationError(
                "l1.enabled=False leaves no store: with no backend nothing would be cached"
            )
        if not isinstance(self.refresh_ttl_on_get, bool):
            raise ConfigurationError(
                f"refresh_ttl_on_get must be True or False, not {self.refresh_ttl_on_get!r}"
            )
        threshold = self.ttl_refresh_threshold
        if (
            isinstance(threshold, bool)
            or not isinstance(threshold, (int, float))
            or not 0 < threshold <= 1
        ):
            raise ConfigurationError(
                f"ttl_refresh_threshold must be a number in (0, 1], not {threshold!r}"
            )
        lease = self.stampede_lease
        if lease is not None and (
            isinstance(lease, bool) or not isinstance(lease, (int, float)) or not 0 < lease <= 3600
        ):
            raise ConfigurationError(
                f"stampede_lease must be seconds in (0, 3600] or None, not {lease!r}"
            )
        if self.sign_entries is not None and not isinstance(self.sign_entries, bool):
            raise ConfigurationError(
                f"sign_entries must be True, False or None, not {self.sign_entries!r}"
            )
        from cachekit.decorators.custom_key import check_key_function

        check_key_function(self.key)
        if not isinstance(self.copy, bool):
            raise ConfigurationError(f"copy must be True or False, not {self.copy!r}")
        if self.interop is not None and not isinstance(self.interop, str):
            raise ConfigurationError(
                f"interop names the cross-SDK operation: pass interop=\"get_user\" (a lowercase "
                f"segment) together with namespace=, not {self.interop!r}"
            )
        for name, default in NOT_YET_AVAILABLE.items():
            if getattr(self, name) != default:
                raise ConfigurationError(
                    f"{name} is not available in this release of cachekit yet; "
                    f"leave it at {default!r}"
                )

    def _validate_backend(self) -> None:
        """backend: UNSET, None, or an object with the BaseBackend methods.

        The one place config looks at cachekit.backends, imported here at
        call time (not at module level) so the import order stays one-way:
        backends import config, never the reverse."""
        if self.backend is UNSET or self.backend is None:
            return
        from cachekit import backends

        backends.check_backend(self.backend)

    @classmethod
    def minimal(cls, **overrides: Any) -> "DecoratorConfig":
        """The ``cache.minimal`` preset, with overrides (cachekit/config/presets.py)."""
        return cls._preset("minimal", overrides)

    @classmethod
    def production(cls, **overrides: Any) -> "DecoratorConfig":
        """The ``cache.production`` preset, with overrides."""
        return cls._preset("production", overrides)

    @classmethod
    def secure(cls, **overrides: Any) -> "DecoratorConfig":
        """The ``cache.secure`` preset, with overrides (``master_key=`` goes to
        the encryption config)."""
        return cls._preset("secure", overrides)

    @classmethod
    def dev(cls, **overrides: Any) -> "DecoratorConfig":
        """The ``cache.dev`` preset, with overrides."""
        return cls._preset("dev", overrides)

    @classmethod
    def test(cls, **overrides: Any) -> "DecoratorConfig":
        """The ``cache.test`` preset, with overrides."""
        return cls._preset("test", overrides)

    @classmethod
    def _preset(cls, name: str, overrides: dict[str, Any]) -> "DecoratorConfig":
        from cachekit.config.presets import PRESETS

        base = PRESETS[name]()
        enc = {k: overrides.pop(k) for k in list(overrides) if k in _ENCRYPTION_FIELDS}
        if enc:
            from cachekit.config.secret import SecretStr

            if isinstance(enc.get("master_key"), str):
                enc["master_key"] = SecretStr(enc["master_key"])
            overrides["encryption"] = dataclasses.replace(
                overrides.get("encryption", base.encryption), **enc
            )
        return dataclasses.replace(base, **overrides)

    @property
    def encrypted(self) -> bool:
        return bool(self.encryption.enabled)

    def to_dict(self) -> dict[str, object]:
        return dataclasses.asdict(self)
