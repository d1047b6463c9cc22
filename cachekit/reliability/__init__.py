"""Reliability settings of the L2 path: the circuit breaker and backpressure.

The configuration objects live in :mod:`cachekit.config.reliability`; this is
the reference API's import home for them. (The breaker itself arrives with
the two-tier decorator path.)
"""

from cachekit.config.reliability import BackpressureConfig, CircuitBreakerConfig

__all__ = ["BackpressureConfig", "CircuitBreakerConfig"]
