"""Configuration: process-wide settings and per-decorator options."""

from cachekit.config.decorator import UNSET, DecoratorConfig, L1CacheConfig
from cachekit.config.encryption import EncryptionConfig
from cachekit.config.monitoring import MonitoringConfig
from cachekit.config.reliability import BackpressureConfig, CircuitBreakerConfig
from cachekit.config.secret import SecretStr
from cachekit.config.settings import CachekitConfig
from cachekit.config.singleton import get_settings, reset_settings
from cachekit.exceptions import ConfigurationError

__all__ = [
    "UNSET",
    "BackpressureConfig",
    "CachekitConfig",
    "CircuitBreakerConfig",
    "ConfigurationError",
    "DecoratorConfig",
    "EncryptionConfig",
    "L1CacheConfig",
    "MonitoringConfig",
    "SecretStr",
    "get_settings",
    "reset_settings",
]
