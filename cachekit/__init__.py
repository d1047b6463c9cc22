"""cachekit: fast, trustworthy function caching with a C core.

    from cachekit import cache

    @cache(ttl=300)
    def get_user(user_id: int) -> dict: ...
"""

from cachekit.app_types import register_type  # installs the codec's rules first
from cachekit import _data  # noqa: F401  (installs the array and frame rules)
from cachekit.config import CircuitBreakerConfig, DecoratorConfig, EncryptionConfig, L1CacheConfig
from cachekit.decorators import cache
from cachekit.exceptions import (
    BackendError,
    CachekitError,
    ConfigurationError,
    DecryptionError,
    EncryptionError,
    IntegrityError,
    SerializationError,
    UnsupportedTypeError,
)
from cachekit.info import CacheInfo
from cachekit.interop import (
    InteropError,
    decode_interop_value,
    encode_interop_value,
    generate_interop_key,
)

__version__ = "0.1.0"

__all__ = [
    "BackendError",
    "CacheInfo",
    "CachekitError",
    "CircuitBreakerConfig",
    "ConfigurationError",
    "DecoratorConfig",
    "DecryptionError",
    "EncryptionConfig",
    "EncryptionError",
    "IntegrityError",
    "InteropError",
    "L1CacheConfig",
    "SerializationError",
    "UnsupportedTypeError",
    "__version__",
    "cache",
    "decode_interop_value",
    "encode_interop_value",
    "generate_interop_key",
    "register_type",
]
