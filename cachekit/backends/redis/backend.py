"""RedisBackend: the BaseBackend (and TTLInspectableBackend) over one
``cachekit._core.RedisClient``.

The two-tier decorator path calls ``backend._client`` (the C client: bytes
keys, TTLs in ms) directly; these Python methods are the protocol for
everything else. Fork safety is the C client's: a child's pool drops the
parent's connections without I/O and opens its own (docs/design.md, "Fork").
"""

from __future__ import annotations

import math
import time
from types import TracebackType
from typing import Any

from cachekit._core import RedisClient, RedisClusterClient
from cachekit.backends.redis.config import RedisBackendConfig
from cachekit.config.secret import SecretStr
from cachekit.exceptions import BackendError, ConfigurationError


def _key(key: str) -> bytes:
    if not isinstance(key, str):
        raise TypeError(f"backend keys are str, not {type(key).__name__}")
    return key.encode("utf-8")


def _ttl_ms(ttl: float | None) -> int | None:
    if ttl is None:
        return None
    if isinstance(ttl, bool) or not isinstance(ttl, (int, float)) or not (
        ttl > 0 and math.isfinite(ttl)
    ):
        raise ValueError(f"ttl must be a positive number of seconds or None, not {ttl!r}")
    return max(1, math.ceil(ttl * 1000))


class RedisBackend:
    """A Redis L2 store.

    ``RedisBackend()`` reads the environment (RedisBackendConfig.from_env);
    ``RedisBackend("redis://...")`` (str or SecretStr) takes the URL and reads
    the other options from the environment; ``RedisBackend(config)`` takes a
    RedisBackendConfig as it is. A ``redis+cluster://`` URL (or
    ``cluster=True`` / ``cluster_nodes`` in the config) gives a Redis Cluster
    client (docs/cluster.md). ``client_provider`` (the reference API's
    source of redis-py clients) does not apply to cachekit's C client: only
    None is accepted.
    """

    def __init__(
        self,
        redis_url: str | SecretStr | RedisBackendConfig | None = None,
        client_provider: Any = None,
    ) -> None:
        if client_provider is not None:
            raise ConfigurationError(
                "client_provider is not available: cachekit talks to Redis through its own C "
                "client, not redis-py; pass the URL or a RedisBackendConfig instead"
            )
        if isinstance(redis_url, RedisBackendConfig):
            config = redis_url
        elif redis_url is None:
            config = RedisBackendConfig.from_env()
        elif isinstance(redis_url, (str, SecretStr)):
            config = RedisBackendConfig.from_env(redis_url=redis_url)
        else:
            raise ConfigurationError(
                "redis_url must be a URL (str or SecretStr), a RedisBackendConfig or None, "
                f"not {type(redis_url).__name__}"
            )
        self.config = config
        self._closed = False
        self._client = self._new_client()

    def _new_client(self) -> RedisClient | RedisClusterClient:
        url = self.config.redis_url.get_secret_value()
        try:
            if self.config.is_cluster:
                return RedisClusterClient(url, **self.config.cluster_kwargs())
            return RedisClient(url, **self.config.client_kwargs())
        except ValueError as exc:  # the C parser's messages carry no credentials
            raise ConfigurationError(f"redis_url, cluster or TLS options refused: {exc}") from None
        except BackendError as exc:  # construction opens no connection: only files fail
            raise ConfigurationError(f"TLS files refused: {exc}") from None

    # ---------------------------------------------------------- BaseBackend

    def get(self, key: str) -> bytes | None:
        return self._client.get(_key(key))

    def set(self, key: str, value: bytes, ttl: int | None = None) -> None:
        self._client.set(_key(key), value, ttl_ms=_ttl_ms(ttl))

    def delete(self, key: str) -> bool:
        return self._client.delete(_key(key)) > 0

    def exists(self, key: str) -> bool:
        return self._client.exists(_key(key))

    def health_check(self) -> tuple[bool, dict[str, Any]]:
        """PING the server: (True, details) or (False, details with the
        error); never raises."""
        start = time.perf_counter()
        try:
            ok = bool(self._client.ping())
            error = None if ok else "unexpected PING reply"
        except Exception as exc:  # noqa: BLE001 - a health check reports, it does not raise
            ok, error = False, f"{type(exc).__name__}: {exc}"
        latency = round((time.perf_counter() - start) * 1000.0, 3)
        kind = "redis_cluster" if isinstance(self._client, RedisClusterClient) else "redis"
        return ok, {"backend": kind, "latency_ms": latency, "error": error}

    # ------------------------------------------------ TTLInspectableBackend

    def get_ttl(self, key: str) -> int | None:
        """Whole seconds left (rounded up), or None when the key is absent
        or has no expiry."""
        ms = self._client.pttl(_key(key))
        return None if ms < 0 else math.ceil(ms / 1000)

    def refresh_ttl(self, key: str, ttl: int) -> bool:
        ms = _ttl_ms(ttl)
        assert ms is not None  # noqa: S101 - _ttl_ms(None) is the only None
        return self._client.pexpire(_key(key), ms)

    # -------------------------------------------------------------- lifetime

    def close(self) -> None:
        """Close the connections; later calls raise BackendError."""
        self._closed = True
        self._client.close()

    def __enter__(self) -> RedisBackend:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        # The C client's repr shows the URL with its password masked.
        state = " closed" if self._closed else ""
        return f"<RedisBackend{state} {self._client!r}>"
