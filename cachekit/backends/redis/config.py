"""RedisBackendConfig: where the Redis server is and how to talk to it.

``from_env()`` reads the same variables as the process-wide settings
(``CACHEKIT_REDIS_URL``, falling back to ``REDIS_URL``;
``CACHEKIT_CONNECTION_POOL_SIZE``, ``CACHEKIT_SOCKET_TIMEOUT``,
``CACHEKIT_SOCKET_CONNECT_TIMEOUT``), parsed by
:mod:`cachekit.config.settings`. The URL may hold a password, so it is kept
as a SecretStr: ``repr``/``str`` and errors show ``**********``.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from cachekit.config.secret import SecretStr
from cachekit.config.settings import REDIS_URL_SCHEMES, _coerce_override, read_env
from cachekit.exceptions import ConfigurationError

DEFAULT_REDIS_URL = "redis://localhost:6379"
CLUSTER_SCHEMES = ("redis+cluster://", "rediss+cluster://")
# The fields from_env reads (each is a setting of the same name).
ENV_FIELDS = ("redis_url", "connection_pool_size", "socket_timeout", "socket_connect_timeout")


@dataclasses.dataclass(frozen=True)
class RedisBackendConfig:
    """Options of a RedisBackend.

    redis_url: ``redis://[user:password@]host[:port][/db]``, ``rediss://``
    (TLS, verified), ``unix:///path[?db=N]`` or
    ``redis+sentinel://[user:password@]host[:port][,host[:port]...]/service[/db]``
    (the master discovered through Sentinel, docs/sentinel.md); a str is
    wrapped in SecretStr.
    connection_pool_size: connections the client keeps (callers beyond it
    wait up to socket_timeout for one). socket_timeout /
    socket_connect_timeout: seconds per operation / per connect.
    ssl_*: for ``rediss://``: CA bundle (default: the system's), client
    certificate and key, and whether to check the server's host name.

    cluster: talk to a Redis Cluster (RedisClusterClient: slot routing, a
    pool of connection_pool_size per node). Implied by a
    ``redis+cluster://host:port[,host:port...]`` (or ``rediss+cluster://``)
    URL and by cluster_nodes; with a plain ``redis://`` URL the node it names
    is the first seed. cluster_nodes: more seeds, ``"host:port"`` strings.
    cluster_max_redirects: MOVED/ASK/TRYAGAIN rounds followed per call.

    socket_keepalive and disable_hiredis are the reference API's; cachekit's
    C client parses replies with its bundled hiredis reader and does not set
    SO_KEEPALIVE yet, so only their defaults are accepted.
    """

    redis_url: SecretStr = dataclasses.field(default_factory=lambda: SecretStr(DEFAULT_REDIS_URL))
    connection_pool_size: int = 50
    socket_timeout: float = 5.0
    socket_connect_timeout: float = 5.0
    socket_keepalive: bool = True
    disable_hiredis: bool = False
    ssl_ca_certs: str | None = None
    ssl_certfile: str | None = None
    ssl_keyfile: str | None = None
    ssl_check_hostname: bool = True
    cluster: bool = False
    cluster_nodes: tuple[str, ...] = ()
    cluster_max_redirects: int = 5

    if TYPE_CHECKING:  # what the generated __init__ accepts: a str URL too
        def __init__(
            self,
            redis_url: str | SecretStr = DEFAULT_REDIS_URL,
            connection_pool_size: int = 50,
            socket_timeout: float = 5.0,
            socket_connect_timeout: float = 5.0,
            socket_keepalive: bool = True,
            disable_hiredis: bool = False,
            ssl_ca_certs: str | None = None,
            ssl_certfile: str | None = None,
            ssl_keyfile: str | None = None,
            ssl_check_hostname: bool = True,
            cluster: bool = False,
            cluster_nodes: tuple[str, ...] | list[str] = (),
            cluster_max_redirects: int = 5,
        ) -> None: ...

    def __post_init__(self) -> None:
        url: Any = self.redis_url
        if isinstance(url, str):
            object.__setattr__(self, "redis_url", SecretStr(url))
        elif not isinstance(url, SecretStr):
            raise ConfigurationError(
                f"redis_url must be a str or SecretStr URL, not {type(url).__name__}"
            )
        nodes: Any = self.cluster_nodes
        if isinstance(nodes, list):
            object.__setattr__(self, "cluster_nodes", tuple(nodes))
        self.validate()

    @property
    def is_cluster(self) -> bool:
        """Whether the backend talks to a Redis Cluster (see the class doc)."""
        url = self.redis_url.get_secret_value()
        return self.cluster or bool(self.cluster_nodes) or url.startswith(CLUSTER_SCHEMES)

    def validate(self) -> None:
        """Raise ConfigurationError naming the field and what to pass."""
        if not self.redis_url.get_secret_value().startswith(REDIS_URL_SCHEMES):
            raise ConfigurationError(
                "redis_url must be a redis://, rediss://, unix://, redis+cluster:// or "
                "redis+sentinel:// URL (e.g. 'redis://localhost:6379/0' or "
                "'redis+sentinel://host1:26379,host2:26379/mymaster/0')"
            )
        self._validate_cluster()
        size = self.connection_pool_size
        if isinstance(size, bool) or not isinstance(size, int) or size <= 0:
            raise ConfigurationError(f"connection_pool_size must be a positive int, not {size!r}")
        for name in ("socket_timeout", "socket_connect_timeout"):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not (value > 0 and math.isfinite(value))
            ):
                raise ConfigurationError(f"{name} must be a positive number of seconds, not {value!r}")
        for name in ("ssl_ca_certs", "ssl_certfile", "ssl_keyfile"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value):
                raise ConfigurationError(f"{name} must be a file path (str) or None")
        if (self.ssl_certfile is None) != (self.ssl_keyfile is None):
            raise ConfigurationError("pass ssl_certfile and ssl_keyfile together (client certificate)")
        if not isinstance(self.ssl_check_hostname, bool):
            raise ConfigurationError("ssl_check_hostname must be True or False")
        if self.socket_keepalive is not True:
            raise ConfigurationError(
                "socket_keepalive=False is not available: cachekit's Redis client has no "
                "keepalive option yet; leave it at True"
            )
        if self.disable_hiredis is not False:
            raise ConfigurationError(
                "disable_hiredis=True is not available: cachekit's C client always parses "
                "replies with its bundled hiredis reader; leave it at False"
            )

    def _validate_cluster(self) -> None:
        if not isinstance(self.cluster, bool):
            raise ConfigurationError("cluster must be True or False")
        nodes = self.cluster_nodes
        if not isinstance(nodes, tuple) or not all(isinstance(n, str) and n for n in nodes):
            raise ConfigurationError(
                "cluster_nodes must be a tuple of 'host:port' strings, e.g. ('10.0.0.2:6379',)"
            )
        hops = self.cluster_max_redirects
        if isinstance(hops, bool) or not isinstance(hops, int) or not 1 <= hops <= 100:
            raise ConfigurationError(f"cluster_max_redirects must be an int 1-100, not {hops!r}")
        if self.is_cluster and self.redis_url.get_secret_value().startswith("unix://"):
            raise ConfigurationError(
                "a Redis Cluster is reached over TCP: use redis+cluster://host:port, "
                "not a unix:// URL"
            )

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> RedisBackendConfig:
        """The variables listed in the module docstring (environ defaults to
        ``os.environ``), then keyword overrides. Unset: the defaults
        (``redis://localhost:6379``). Raises ConfigurationError naming the
        variable."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise ConfigurationError(
                f"unknown RedisBackendConfig option(s) {', '.join(unknown)}; "
                f"known: {', '.join(sorted(fields))}"
            )
        values: dict[str, Any] = {
            k: v for k, v in read_env(ENV_FIELDS, environ).items() if v is not None
        }
        for name, value in overrides.items():
            values[name] = _coerce_override(name, value) if name in ENV_FIELDS else value
        return cls(**values)

    def client_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of cachekit._core.RedisClient (besides url)."""
        return {
            "pool_size": self.connection_pool_size,
            "socket_timeout": float(self.socket_timeout),
            "socket_connect_timeout": float(self.socket_connect_timeout),
            "ssl_ca_certs": self.ssl_ca_certs,
            "ssl_certfile": self.ssl_certfile,
            "ssl_keyfile": self.ssl_keyfile,
            "ssl_check_hostname": self.ssl_check_hostname,
        }

    def cluster_kwargs(self) -> dict[str, Any]:
        """The keyword arguments of cachekit._core.RedisClusterClient (besides url)."""
        return {
            **self.client_kwargs(),
            "nodes": list(self.cluster_nodes),
            "max_redirects": self.cluster_max_redirects,
        }
