"""Intent presets: a documented set of defaults per intent, which explicit
arguments override (docs/usage.md, "Intent presets").

A preset is a function of no arguments returning the ``DecoratorConfig``
the intent starts from; ``@cache.<intent>(...)`` applies keyword options on
top of it, and ``config=`` replaces it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from cachekit.config.decorator import DecoratorConfig
from cachekit.config.reliability import BackpressureConfig, CircuitBreakerConfig


def minimal() -> DecoratorConfig:
    """Speed first: no circuit breaker and no backpressure bound in front of
    the backend (a failing backend still never fails a call)."""
    return DecoratorConfig(
        circuit_breaker=CircuitBreakerConfig(enabled=False),
        backpressure=BackpressureConfig(enabled=False),
    )


def production() -> DecoratorConfig:
    """Reliability first: the circuit breaker and backpressure at their
    defaults, and a cross-process stampede lease of 10 s, so a cold or
    expired hot key is computed once across the fleet."""
    return DecoratorConfig(stampede_lease=10.0)


def dev() -> DecoratorConfig:
    """Local development: a breaker that retries a restarted local Redis
    after 5 s instead of 30."""
    return DecoratorConfig(circuit_breaker=CircuitBreakerConfig(recovery_timeout=5.0))


def test() -> DecoratorConfig:
    """Tests: in-process only (never a shared Redis, whatever the
    environment says) and a store of the function's own, so one test's
    entries never answer another's calls of other functions."""
    return DecoratorConfig(
        backend=None, l1=dataclasses.replace(DecoratorConfig().l1, max_entries=10_000)
    )


def secure() -> DecoratorConfig:
    """Client-side encryption; everything else as ``production``."""
    base = production()
    return dataclasses.replace(base, encryption=dataclasses.replace(base.encryption, enabled=True))


PRESETS: dict[str, Callable[[], DecoratorConfig]] = {
    "minimal": minimal,
    "production": production,
    "secure": secure,
    "dev": dev,
    "test": test,
}
