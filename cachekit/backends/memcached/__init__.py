"""MemcachedBackend: memcached as the L2, through cachekit's C client."""

from cachekit.backends.memcached.backend import MemcachedBackend
from cachekit.backends.memcached.config import MemcachedBackendConfig

__all__ = ["MemcachedBackend", "MemcachedBackendConfig"]
