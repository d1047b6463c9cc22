"""CircuitBreakerConfig and BackpressureConfig: how a decorated function
protects itself from a failing or slow L2 backend.

Both are plain frozen dataclasses validated by ``validate()`` (called by
``DecoratorConfig.validate()``), raising ConfigurationError that says what
to pass. They only concern the L2 tier: with no backend they have nothing
to guard.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

from cachekit.exceptions import ConfigurationError


def _check_int(owner: str, name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigurationError(f"{owner}.{name} must be an int >= {minimum}, not {value!r}")


def _check_seconds(owner: str, name: str, value: object) -> None:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not (value > 0 and math.isfinite(value))
    ):
        raise ConfigurationError(f"{owner}.{name} must be a positive number of seconds, not {value!r}")


_RECOVERY_DEFAULT = 30.0


@dataclasses.dataclass(frozen=True)
class CircuitBreakerConfig:
    """After ``failure_threshold`` consecutive backend failures the breaker
    opens: calls skip the backend (L1 and the function still serve) for
    ``recovery_timeout`` seconds, then up to ``half_open_requests`` trial
    calls go through; ``success_threshold`` successes close it again.

    The reference API spells the open time two ways: ``recovery_timeout``
    (``cachekit.config``) and ``timeout_seconds`` (``cachekit.reliability``).
    Both are accepted and read the same value; giving both with different
    values is an error. ``excluded_error_types``: exception classes that do
    not count as failures.
    """

    enabled: bool = True
    failure_threshold: int = 5
    success_threshold: int = 3
    recovery_timeout: float = _RECOVERY_DEFAULT
    half_open_requests: int = 3
    excluded_error_types: tuple[type[BaseException], ...] = ()
    timeout_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.timeout_seconds is None:
            object.__setattr__(self, "timeout_seconds", self.recovery_timeout)
        elif self.recovery_timeout == _RECOVERY_DEFAULT:
            object.__setattr__(self, "recovery_timeout", self.timeout_seconds)
        elif self.timeout_seconds != self.recovery_timeout:
            raise ConfigurationError(
                "circuit_breaker: recovery_timeout and timeout_seconds are the same setting; "
                "pass one of them"
            )
        if isinstance(self.excluded_error_types, list):
            object.__setattr__(self, "excluded_error_types", tuple(self.excluded_error_types))

    def validate(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigurationError(f"circuit_breaker.enabled must be True or False, not {self.enabled!r}")
        _check_int("circuit_breaker", "failure_threshold", self.failure_threshold, 1)
        _check_int("circuit_breaker", "success_threshold", self.success_threshold, 1)
        _check_int("circuit_breaker", "half_open_requests", self.half_open_requests, 1)
        _check_seconds("circuit_breaker", "recovery_timeout", self.recovery_timeout)
        if not isinstance(self.excluded_error_types, tuple) or not all(
            isinstance(t, type) and issubclass(t, BaseException) for t in self.excluded_error_types
        ):
            raise ConfigurationError(
                "circuit_breaker.excluded_error_types must be a tuple of exception classes"
            )

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass(frozen=True)
class BackpressureConfig:
    """At most ``max_concurrent_requests`` backend calls at once per
    function; up to ``queue_size`` more wait at most ``timeout`` seconds for
    a slot, and the rest skip the backend (served by L1 or the function)."""

    enabled: bool = True
    max_concurrent_requests: int = 100
    queue_size: int = 1000
    timeout: float = 0.1

    def validate(self) -> None:
        if not isinstance(self.enabled, bool):
            raise ConfigurationError(f"backpressure.enabled must be True or False, not {self.enabled!r}")
        _check_int("backpressure", "max_concurrent_requests", self.max_concurrent_requests, 1)
        _check_int("backpressure", "queue_size", self.queue_size, 0)
        _check_seconds("backpressure", "timeout", self.timeout)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)
