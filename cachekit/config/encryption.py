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


HEX_KEY_HINT = (
    "pass a hex str (generate one with: openssl rand -hex 32; for raw key bytes pass key.hex())"
)
# The largest DEK limit the C keyring takes (a signed 64-bit count).
MAX_LIMIT = 2**63 - 1
# Beyond ~570 years a duration no longer fits in 64-bit nanoseconds.
MAX_SECONDS = 1.8e10


def key_type_error(master_key: object, previous: object) -> str | None:
    """What is wrong with the types of master_key / previous_master_keys, or
    None. Names types only: the message never shows a value."""
    if master_key is not None and not isinstance(master_key, (str, SecretStr)):
        return f"master_key must be a hex str, not {type(master_key).__name__}: {HEX_KEY_HINT}"
    if previous is None:
        return None
    if not isinstance(previous, (list, tuple)):
        return (
            f"previous_master_keys must be a list or tuple of hex strings, not "
            f"{type(previous).__name__}: pass previous_master_keys=[old_key_hex, ...]"
        )
    for i, key in enumerate(previous):
        if not isinstance(key, (str, SecretStr)):
            return (
                f"previous_master_keys[{i}] must be a hex str, not {type(key).__name__}: "
                f"{HEX_KEY_HINT}"
            )
    return None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


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
    ``compress_min`` (0, the default: never) compresses results whose
    encoding is at least that many bytes with LZ4 before encrypting them,
    when that makes them smaller; the stored length then tells how
    compressible the value is (docs/security.md, "Compression before
    encryption").
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
    compress_min: int = 0

    def __post_init__(self) -> None:
        # Refuse keys of the wrong type, and wrap plain strings, at once, so
        # no repr of this object (or traceback showing it) holds a key.
        error = key_type_error(self.master_key, self.previous_master_keys)
        if error is not None:
            object.__setattr__(self, "master_key", None)
            object.__setattr__(self, "previous_master_keys", ())
            raise ConfigurationError(error)
        if isinstance(self.master_key, str):
            object.__setattr__(self, "master_key", SecretStr(self.master_key))
        previous = tuple(
            k if isinstance(k, SecretStr) else SecretStr(k) for k in self.previous_master_keys or ()
        )
        object.__setattr__(self, "previous_master_keys", previous)

    def validate(self) -> None:
        if self.enabled is not None and not isinstance(self.enabled, bool):
            raise ConfigurationError("encryption enabled must be True, False or None")
        if self.fail_closed is not None and not isinstance(self.fail_closed, bool):
            raise ConfigurationError("fail_closed must be True, False or None")
        if not isinstance(self.key_rotation_enabled, bool):
            raise ConfigurationError("key_rotation_enabled must be True or False")
        check_tenant_extractor(self.tenant_extractor)
        if not (
            _is_number(self.dek_max_age)
            and math.isfinite(self.dek_max_age)
            and 0 < self.dek_max_age < MAX_SECONDS
        ):
            raise ConfigurationError(
                "dek_max_age must be a positive int or float of seconds below 1.8e10, "
                f"not {self.dek_max_age!r}"
            )
        if not (_is_int(self.dek_max_messages) and 0 < self.dek_max_messages <= 2**32):
            raise ConfigurationError(
                f"dek_max_messages must be an int from 1 to 2**32, not {self.dek_max_messages!r}"
            )
        if not (_is_int(self.dek_max_bytes) and 0 < self.dek_max_bytes <= MAX_LIMIT):
            raise ConfigurationError(
                f"dek_max_bytes must be an int from 1 to 2**63-1, not {self.dek_max_bytes!r}"
            )
        if not (_is_int(self.compress_min) and 0 <= self.compress_min <= MAX_LIMIT):
            raise ConfigurationError(
                "compress_min must be an int >= 0 (0: never compress before encrypting), "
                f"not {self.compress_min!r}"
            )
        if self.key_provider is not None:
            missing = [a for a in ("provider_id", "key_id", "generate_data_key", "decrypt_data_key")
                       if not hasattr(self.key_provider, a)]
            if missing:
                raise ConfigurationError(
                    f"key_provider lacks {', '.join(missing)} (see cachekit.key_providers.KeyProvider)"
                )


def decode_master_key(secret: SecretStr | None, source: str) -> bytearray:
    """The raw key bytes of a hex master key, in a bytearray the caller wipes."""
    if secret is None:
        raise ConfigurationError(MISSING_KEY)
    if not secret.get_secret_value().strip():
        raise ConfigurationError(f"{source} is empty: {HEX_KEY_HINT}")
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


def check_tenant_extractor(extractor: Any) -> None:
    if extractor is None or callable(extractor) or callable(getattr(extractor, "extract", None)):
        return
    raise ConfigurationError(
        f"tenant_extractor must be a callable taking the function's arguments and returning "
        f"the tenant id (a non-empty str), or an object with .extract(args, kwargs); "
        f"not {type(extractor).__name__}. For one fixed tenant pass "
        "lambda *args, **kwargs: 'tenant-id'"
    )


def adapt_tenant_extractor(extractor: Any) -> Callable[..., str] | None:
    """Accept a callable of the function's arguments, or an object with
    ``.extract(args, kwargs)`` (the 0.24.1 style)."""
    check_tenant_extractor(extractor)
    if extractor is None or callable(extractor):
        adapted: Callable[..., str] | None = extractor
        return adapted
    extract = extractor.extract

    def call(*args: Any, **kwargs: Any) -> str:
        tenant: str = extract(args, kwargs)  # checked by the C side, like any tenant
        return tenant

    return call
