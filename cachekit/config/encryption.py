"""EncryptionConfig: what ``@cache.secure`` needs, validated at decoration time."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from cachekit.config.secret import SecretStr
from cachekit.exceptions import ConfigurationError

MISSING_KEY = (
    "cache.secure requires master_key parameter or CACHEKIT_MASTER_KEY environment variable. "
    "Generate a key with: openssl rand -hex 32"
)
BAD_KEY = (
    "{source} must be hex-encoded, minimum 32 bytes (64 hex characters). "
    "Generate a key with: openssl rand -hex 32"
)


@dataclasses.dataclass(frozen=True)
class EncryptionConfig:
    """Client-side encryption settings of one decorated function.

    ``master_key`` and ``previous_master_keys`` are hex strings (kept as
    SecretStr, so they never print); unset ones come from
    ``CACHEKIT_MASTER_KEY`` and ``CACHEKIT_PREVIOUS_MASTER_KEYS``.
    ``tenant_extractor`` is called with the function's arguments and returns
    the tenant id (a non-empty str); each tenant gets its own keys.
    ``key_provider`` (e.g. AwsKmsKeyProvider) replaces the master key as the
    source of data keys. ``fail_closed`` (None: ``CACHEKIT_ENCRYPTION_FAIL_CLOSED``,
    default False) decides what a result that cannot be encrypted does: False
    logs and counts it and returns the result uncached; True raises
    EncryptionError to the caller. Nothing is ever stored unencrypted.
    """

    enabled: bool | None = None
    master_key: SecretStr | None = None
    previous_master_keys: tuple[SecretStr, ...] = ()
    key_rotation_enabled: bool = True
    tenant_extractor: Callable[..., str] | None = None
    dek_max_age: float = 3600.0
    dek_max_messages: int = 2**32
    dek_max_bytes: int = 2**36
    key_provider: Any = None
    fail_closed: bool | None = None

    def __post_init__(self) -> None:
        # Wrap plain strings at once so no repr of this object shows a key.
        if isinstance(self.master_key, str):
            object.__setattr__(self, "master_key", SecretStr(self.master_key))
        previous = tuple(
            k if isinstance(k, SecretStr) else SecretStr(k) for k in self.previous_master_keys or ()
        )
        object.__setattr__(self, "previous_master_keys", previous)

    def validate(self) -> None:
        if self.fail_closed is not None and not isinstance(self.fail_closed, bool):
            raise ConfigurationError("fail_closed must be True, False or None")
        if self.tenant_extractor is not None and not callable(self.tenant_extractor) and not hasattr(
            self.tenant_extractor, "extract"
        ):
            raise ConfigurationError("tenant_extractor must be callable or have .extract(args, kwargs)")
        if not (self.dek_max_age > 0 and math.isfinite(self.dek_max_age)):
            raise ConfigurationError("dek_max_age must be a positive number of seconds")
        if not (0 < self.dek_max_messages <= 2**32):
            raise ConfigurationError("dek_max_messages must be between 1 and 2**32")
        if self.dek_max_bytes <= 0:
            raise ConfigurationError("dek_max_bytes must be positive")
        if self.key_provider is not None:
            missing = [a for a in ("provider_id", "key_id", "generate_data_key", "decrypt_data_key")
                       if not hasattr(self.key_provider, a)]
            if missing:
                raise ConfigurationError(
                    f"key_provider lacks {', '.join(missing)} (see cachekit.key_providers.KeyProvider)"
                )


def decode_master_key(secret: SecretStr | None, source: str) -> bytearray:
    """The raw key bytes of a hex master key, in a bytearray the caller wipes."""
    if secret is None or not secret.get_secret_value().strip():
        raise ConfigurationError(MISSING_KEY)
    try:
        raw = bytearray.fromhex(secret.get_secret_value().strip())
    except ValueError:
        raise ConfigurationError(BAD_KEY.format(source=source)) from None
    if len(raw) < 32:
        wipe(raw)
        raise ConfigurationError(BAD_KEY.format(source=source))
    if len(raw) > 128:
        wipe(raw)
        raise ConfigurationError(f"{source} must be at most 128 bytes (256 hex characters)")
    return raw


def wipe(buf: bytearray) -> None:
    buf[:] = bytes(len(buf))


def adapt_tenant_extractor(extractor: Any) -> Callable[..., str] | None:
    """Accept a callable of the function's arguments, or an object with
    ``.extract(args, kwargs)`` (the 0.24.1 style)."""
    if extractor is None or callable(extractor):
        return extractor
    extract = extractor.extract

    def call(*args: Any, **kwargs: Any) -> str:
        return extract(args, kwargs)

    return call
