"""MemcachedBackendConfig: which memcached servers and how to talk to them.

``from_env()`` reads ``CACHEKIT_MEMCACHED_<FIELD>``
(``CACHEKIT_MEMCACHED_SERVERS="mc1:11211,mc2:11211"``,
``CACHEKIT_MEMCACHED_TIMEOUT``, ...). Invalid values raise
ConfigurationError naming the field and what to pass.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from cachekit.backends._envconf import parse_float, parse_int, parse_list, read_prefixed
from cachekit.exceptions import ConfigurationError

ENV_PREFIX = "CACHEKIT_MEMCACHED_"
# memcached's exptime: a value over 30 days is read as an absolute Unix time.
MAX_MEMCACHED_TTL = 30 * 24 * 60 * 60
_ENV_FIELDS: dict[str, Callable[[str], Any]] = {
    "servers": parse_list, "connect_timeout": parse_float, "timeout": parse_float,
    "max_pool_size": parse_int, "retry_attempts": parse_int, "key_prefix": str,
    "max_value_bytes": parse_int,
}


def _is_int(v: object) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def parse_server(server: str) -> tuple[str, int]:
    """``"host:port"`` (``"[::1]:11211"`` for IPv6) -> (host, port)."""
    host, sep, port = server.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigurationError(
            f"MemcachedBackendConfig.servers: {server!r} is not 'host:port' (e.g. '127.0.0.1:11211')"
        )
    return host, int(port)


@dataclasses.dataclass(frozen=True)
class MemcachedBackendConfig:
    """Options of a MemcachedBackend.

    servers: ``"host:port"`` strings; keys are spread over them by hash.
    connect_timeout / timeout: seconds per connect / per operation.
    max_pool_size: idle connections kept per server. retry_attempts: how
    often an operation on a pooled connection the server dropped is retried
    on a fresh one. key_prefix: prepended to every key name.
    max_value_bytes: larger values are counted and not stored (memcached's
    default item limit is 1 MiB, key and item header included).
    """

    servers: tuple[str, ...] = ("127.0.0.1:11211",)
    connect_timeout: float = 2.0
    timeout: float = 1.0
    max_pool_size: int = 10
    retry_attempts: int = 2
    key_prefix: str = ""
    max_value_bytes: int = 1_000_000

    def __post_init__(self) -> None:
        servers = self.servers
        if isinstance(servers, str):
            servers = (servers,)
        if not isinstance(servers, (list, tuple)) or not servers:
            raise ConfigurationError(
                "MemcachedBackendConfig.servers must be a non-empty list of 'host:port'"
            )
        object.__setattr__(self, "servers", tuple(servers))
        for server in self.servers:
            if not isinstance(server, str):
                raise ConfigurationError("MemcachedBackendConfig.servers entries must be str")
            parse_server(server)
        if len(self.servers) > 16:
            raise ConfigurationError("MemcachedBackendConfig.servers: at most 16 servers")
        for name in ("connect_timeout", "timeout"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.1 <= v <= 30.0:
                raise ConfigurationError(f"MemcachedBackendConfig.{name} must be seconds in 0.1..30.0")
        if not _is_int(self.max_pool_size) or not 1 <= self.max_pool_size <= 100:
            raise ConfigurationError("MemcachedBackendConfig.max_pool_size must be an int in 1..100")
        if not _is_int(self.retry_attempts) or not 0 <= self.retry_attempts <= 10:
            raise ConfigurationError("MemcachedBackendConfig.retry_attempts must be an int in 0..10")
        prefix = self.key_prefix
        if not isinstance(prefix, str) or len(prefix.encode()) > 64 or any(
            ord(ch) <= 32 or ord(ch) >= 127 for ch in prefix
        ):
            raise ConfigurationError(
                "MemcachedBackendConfig.key_prefix must be at most 64 printable ASCII "
                "characters without spaces"
            )
        if not _is_int(self.max_value_bytes) or self.max_value_bytes < 1:
            raise ConfigurationError("MemcachedBackendConfig.max_value_bytes must be an int >= 1")

    @classmethod
    def from_env(
        cls, environ: Mapping[str, str] | None = None, **overrides: Any
    ) -> MemcachedBackendConfig:
        """The config from ``CACHEKIT_MEMCACHED_*`` variables; keyword overrides win."""
        values = read_prefixed(ENV_PREFIX, _ENV_FIELDS, environ)
        values.update(overrides)
        return cls(**values)
