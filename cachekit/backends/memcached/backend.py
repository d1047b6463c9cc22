"""MemcachedBackend: the C memcached client (``cachekit._core.MemcachedClient``,
src/core/ck_memcached.c) behind the backend methods.

The client speaks memcached's meta protocol over cachekit's socket layer
with the GIL released, a pool of connections per server and hard timeouts;
failures raise BackendError (with its error_type), which the decorator's
breaker counts while the function runs. Key names that memcached cannot
hold (over 250 bytes, spaces, control characters) are hashed, and the full
name is checked on read. Values over max_value_bytes are counted
(``stats()["too_large"]``) and not stored. memcached has no key scan, so
``cache_clear()`` of a function clears its L1 entries only.
"""

from __future__ import annotations

import time
from typing import Any

from cachekit._core import MemcachedClient
from cachekit.backends.memcached.config import MemcachedBackendConfig, parse_server
from cachekit.exceptions import ConfigurationError


def _ttl_ms(ttl: float | None) -> int:
    if ttl is None or ttl <= 0:
        return 0
    return max(1, int(ttl * 1000))


class MemcachedBackend:
    """``MemcachedBackend(MemcachedBackendConfig(servers=["127.0.0.1:11211"]))``;
    with no config, ``MemcachedBackendConfig.from_env()``. Connects lazily."""

    def __init__(self, config: MemcachedBackendConfig | None = None) -> None:
        if config is None:
            config = MemcachedBackendConfig.from_env()
        if not isinstance(config, MemcachedBackendConfig):
            raise ConfigurationError(
                f"MemcachedBackend takes a MemcachedBackendConfig, not {type(config).__name__}"
            )
        self.config = config
        self._client = MemcachedClient(
            [parse_server(s) for s in config.servers], config.connect_timeout, config.timeout,
            config.max_pool_size, config.retry_attempts, config.max_value_bytes,
            config.key_prefix,
        )

    def get(self, key: str) -> bytes | None:
        return self._client.get(key)

    def set(self, key: str, value: bytes, ttl: int | None = None) -> None:
        self._client.set(key, value, _ttl_ms(ttl))

    def delete(self, key: str) -> bool:
        return bool(self._client.delete(key))

    def exists(self, key: str) -> bool:
        return self._client.get(key) is not None

    def get_ttl(self, key: str) -> int | None:
        """Seconds left as memcached reports them, or None (absent, or no expiry)."""
        entry = self._client.get_entry(key)
        if entry is None or entry[1] < 0:
            return None
        return int(entry[1])

    def refresh_ttl(self, key: str, ttl: int) -> bool:
        return bool(self._client.touch(key, _ttl_ms(ttl)))

    def stats(self) -> dict[str, int]:
        """This client's counters: too_large (values not stored)."""
        return dict(self._client.stats())

    def health_check(self) -> tuple[bool, dict[str, Any]]:
        """``mn`` round trip to every server; never raises."""
        start = time.perf_counter()
        try:
            ok, error = bool(self._client.ping()), None
        except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
            ok, error = False, f"{type(exc).__name__}: {exc}"
        latency = round((time.perf_counter() - start) * 1000.0, 3)
        return ok, {"backend": "memcached", "servers": list(self.config.servers),
                    "latency_ms": latency, "error": error}

    def close(self) -> None:
        self._client.close()

    def __repr__(self) -> str:
        return f"MemcachedBackend(servers={list(self.config.servers)!r})"
