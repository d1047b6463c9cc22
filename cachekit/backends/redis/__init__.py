"""The Redis backend: RedisBackend and its RedisBackendConfig."""

from cachekit.backends.redis.backend import RedisBackend
from cachekit.backends.redis.config import RedisBackendConfig

__all__ = ["RedisBackend", "RedisBackendConfig"]
