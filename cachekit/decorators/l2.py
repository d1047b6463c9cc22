"""The L2 tier of a decorated function: its backend behind a C L2Backend.

One ``_core.L2Backend`` per (backend object, breaker and backpressure
settings), shared by every function using that backend with those
settings, so the circuit breaker sees the backend's health across
functions. A RedisBackend is driven through its C client (no Python on the
L2 path), a FileBackend or MemcachedBackend through its C file store or client (likewise); any other backend through its own get/set/delete methods.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from cachekit._core import L2Backend
from cachekit.config.decorator import DecoratorConfig

log = logging.getLogger("cachekit")

_lock = threading.Lock()
# (id(backend), breaker settings) -> (backend, L2Backend); the backend is
# kept so its id is never reused while the entry exists.
_tiers: dict[tuple[Any, ...], tuple[Any, L2Backend]] = {}
_told_secure = False


def l2_for(backend: Any, config: DecoratorConfig) -> L2Backend:
    cb, bp = config.circuit_breaker, config.backpressure
    settings = (
        cb.enabled, cb.failure_threshold, cb.success_threshold, float(cb.recovery_timeout),
        cb.half_open_requests, bp.max_concurrent_requests if bp.enabled else 0,
    )
    ident = (id(backend), *settings)
    with _lock:
        found = _tiers.get(ident)
        if found is not None:
            return found[1]
        # A RedisBackend's or MemcachedBackend's C client, a FileBackend's
        # C file store: driven from C, with no Python on the L2 path.
        client = getattr(backend, "_client", None)
        if client is None:
            client = getattr(backend, "_store", None)
        from cachekit._core import FileStore, MemcachedClient, RedisClient, RedisClusterClient

        tier = L2Backend(
            backend,
            client=client if isinstance(
                client, (RedisClient, RedisClusterClient, FileStore, MemcachedClient)
            ) else None,
            breaker_enabled=cb.enabled,
            failure_threshold=cb.failure_threshold,
            success_threshold=cb.success_threshold,
            recovery_timeout=float(cb.recovery_timeout),
            half_open_requests=cb.half_open_requests,
            max_concurrent=settings[-1],
        )
        _tiers[ident] = (backend, tier)
        return tier


def secure_stays_local(qualified_name: str) -> None:
    """Say once per process that encrypted functions whose keys come from
    an external provider (no master key) keep to L1."""
    global _told_secure
    with _lock:
        tell, _told_secure = not _told_secure, True
    if tell:
        log.info(
            "cachekit: %s: @cache.secure with a key provider keeps its entries in the "
            "in-process L1 only: L2 names are a MAC under a key derived from a master key, "
            "and a provider holds none",
            qualified_name,
        )
