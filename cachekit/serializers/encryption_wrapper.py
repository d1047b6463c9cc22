"""EncryptionWrapper: client-side AES-256-GCM around any serializer.

The inner serializer's bytes become the plaintext of an encrypted entry
(docs/format.md, "Encrypted entries"), bound to the tenant and to the
``cache_key`` passed to serialize/deserialize (required: an empty key would
bind nothing). Keys come from the
``master_key`` argument (raw bytes, or hex text) or ``CACHEKIT_MASTER_KEY``;
``previous_master_keys`` (or ``CACHEKIT_PREVIOUS_MASTER_KEYS``) still decrypt.
"""

from __future__ import annotations

from typing import Any

from cachekit._core import DecryptionError, EncryptionError, Keyring
from cachekit.config.encryption import decode_master_key, wipe
from cachekit.config.secret import SecretStr
from cachekit.config.singleton import get_secure_settings
from cachekit.exceptions import ConfigurationError
from cachekit.serializers.base import (
    SerializationFormat,
    SerializationMetadata,
    SerializerProtocol,
    fast_metadata,
)
from cachekit.serializers.standard_serializer import StandardSerializer

# Name used by code written for other releases.
DecryptionAuthenticationError = DecryptionError

__all__ = ["CacheKeyError", "DecryptionAuthenticationError", "EncryptionError", "EncryptionWrapper"]

_FORMATS = {1: SerializationFormat.MSGPACK, 2: SerializationFormat.ORJSON, 3: SerializationFormat.ARROW}


class CacheKeyError(ConfigurationError, TypeError):
    """A missing or mistyped ``cache_key``: a TypeError, as Python raises for
    a missing or wrong argument, and a ConfigurationError (so a ValueError),
    as cachekit raises for every argument it refuses."""


class _Required:
    """Default of cache_key: there is none, it must be given."""

    def __repr__(self) -> str:
        return "<required>"


_NO_CACHE_KEY: Any = _Required()


def _cache_key_bytes(cache_key: object, method: str) -> bytes:
    """The bytes a ciphertext is bound to. An empty key would bind nothing,
    so one must be given."""
    if cache_key is _NO_CACHE_KEY:
        raise CacheKeyError(
            f"EncryptionWrapper.{method}() needs cache_key=: the key the entry is stored "
            "under (a non-empty str or bytes), which the ciphertext is bound to"
        )
    if isinstance(cache_key, str):
        key = cache_key.encode()
    elif isinstance(cache_key, bytes):
        key = cache_key
    else:
        raise CacheKeyError(
            f"cache_key must be a non-empty str or bytes (the key the entry is stored under), "
            f"not {type(cache_key).__name__}"
        )
    if not key:
        raise ConfigurationError(
            "cache_key must not be empty: it binds the ciphertext to its entry"
        )
    return key


def _raw_key(key: object, what: str) -> bytearray:
    """The raw bytes of one key argument, in a bytearray the caller wipes.
    Errors name the argument and the type, never the value."""
    # Each error path drops the argument first: the raising frame's locals
    # show up in tracebacks.
    if isinstance(key, (bytes, bytearray)):
        if not 32 <= len(key) <= 128:
            del key
            raise ConfigurationError(
                f"{what} must be at least 32 bytes (at most 128) of raw key, or a hex str"
            )
        return bytearray(key)
    if isinstance(key, (str, SecretStr)):
        secret = key if isinstance(key, SecretStr) else SecretStr(key)
        del key
        return decode_master_key(secret, what)
    kind = type(key).__name__
    del key
    raise ConfigurationError(
        f"{what} must be raw key bytes or a hex str, not {kind}. "
        "Generate a key with: openssl rand -hex 32"
    )


class EncryptionWrapper:
    """Encrypt what ``serializer`` (default: StandardSerializer) produces.

    serialize and deserialize raise EncryptionError / DecryptionError on
    failure. ``fail_closed`` applies when the wrapper is given to
    ``@cache(serializer=...)``: True makes a result that cannot be encrypted
    raise EncryptionError to the caller; False (the default) logs it and
    returns the result uncached.
    """

    def __init__(
        self,
        serializer: SerializerProtocol | None = None,
        master_key: bytes | bytearray | str | SecretStr | None = None,
        tenant_id: str = "default",
        fail_closed: bool = False,
        previous_master_keys: list[Any] | None = None,
    ) -> None:
        if not isinstance(tenant_id, str) or not tenant_id:
            raise ConfigurationError("tenant_id must be a non-empty str")
        self.serializer = serializer if serializer is not None else StandardSerializer(
            enable_integrity_checking=False
        )
        self.tenant_id = tenant_id
        # A bare-msgpack StandardSerializer (the default): one C call per
        # serialize / deserialize (benchmarks/README.md, "Serializer layers").
        self._direct = (type(self.serializer) is StandardSerializer
                        and not self.serializer.enable_integrity_checking)
        if not isinstance(fail_closed, bool):
            raise ConfigurationError("fail_closed must be True or False")
        self.fail_closed = fail_closed
        settings = get_secure_settings()
        # Every decoded key is appended before the next is decoded, so a
        # failure on any of them still wipes all that were decoded.
        raws: list[bytearray] = []
        key: object = None
        try:
            master_source = "master_key"
            if master_key is None:
                master_key, master_source = settings.master_key, "CACHEKIT_MASTER_KEY"
            if master_key is None:
                raise ConfigurationError(
                    "EncryptionWrapper requires master_key or the CACHEKIT_MASTER_KEY environment "
                    "variable. Generate a key with: openssl rand -hex 32"
                )
            previous_source = "previous_master_keys[{}]"
            if previous_master_keys is None:
                previous_master_keys = list(settings.previous_master_keys)
                previous_source = "CACHEKIT_MASTER_KEY_ROTATION key {}"
            if not isinstance(previous_master_keys, (list, tuple)):
                raise ConfigurationError(
                    f"previous_master_keys must be a list or tuple of keys (raw bytes or hex "
                    f"str), not {type(previous_master_keys).__name__}"
                )
            raws.append(_raw_key(master_key, master_source))
            for i, key in enumerate(previous_master_keys):
                number = i if previous_source.startswith("previous") else i + 1
                raws.append(_raw_key(key, previous_source.format(number)))
            self._keyring = Keyring(raws[0], raws[1:])
            self._fingerprint = self._keyring.fingerprint  # fixed: the master key's
        except ValueError as exc:
            if isinstance(exc, ConfigurationError):
                raise
            raise ConfigurationError(str(exc)) from None
        finally:
            # Neither the key arguments nor their decoded bytes stay in this
            # frame for a traceback (or an error reporter reading locals).
            master_key = previous_master_keys = key = None
            for raw in raws:
                wipe(raw)

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    def _format_id(self, metadata: SerializationMetadata | None) -> int:
        fmt = metadata.serialization_format if metadata is not None else SerializationFormat.MSGPACK
        return fmt.wire_id

    def serialize(
        self, obj: Any, cache_key: str | bytes = _NO_CACHE_KEY
    ) -> tuple[bytes, SerializationMetadata]:
        """Encrypt obj for the entry stored under cache_key (required: a
        non-empty str or bytes; deserialize needs the same one)."""
        key = _cache_key_bytes(cache_key, "serialize")
        if self._direct:
            # The default inner serializer is the C codec: seal_value packs
            # and seals in one C call, with the same bytes as seal(pack(obj)).
            entry = self._keyring.seal_value(obj, tenant=self.tenant_id, cache_key=key)
            return entry, fast_metadata(SerializationFormat.MSGPACK, False, type(obj).__name__,
                                        True, self.tenant_id, "AES-256-GCM", self._fingerprint)
        plaintext, inner = self.serializer.serialize(obj)
        entry = self._keyring.seal(
            plaintext, tenant=self.tenant_id, cache_key=key,
            serializer=self._format_id(inner),
        )
        meta = SerializationMetadata(
            inner.serialization_format if inner is not None else SerializationFormat.MSGPACK,
            compressed=False,
            original_type=inner.original_type if inner is not None else None,
            encrypted=True,
            tenant_id=self.tenant_id,
            encryption_algorithm="AES-256-GCM",
            key_fingerprint=self._keyring.fingerprint,
        )
        return entry, meta

    def deserialize(
        self,
        data: bytes | memoryview,
        metadata: SerializationMetadata | None = None,
        cache_key: str | bytes = _NO_CACHE_KEY,
    ) -> Any:
        """Decrypt what serialize produced for the same cache_key (required)."""
        key = _cache_key_bytes(cache_key, "deserialize")
        if self._direct:
            # An entry of another serializer is an IntegrityError, as below.
            return self._keyring.open_value(data, tenant=self.tenant_id, cache_key=key)
        fmt_id, plaintext = self._keyring.open(data, tenant=self.tenant_id, cache_key=key)
        inner_meta = SerializationMetadata(_FORMATS[fmt_id])
        return self.serializer.deserialize(plaintext, inner_meta)

    def get_encryption_info(self) -> dict[str, Any]:
        return {
            "algorithm": "AES-256-GCM",
            "key_fingerprint": self._keyring.fingerprint,
            "previous_key_fingerprints": list(self._keyring.previous_fingerprints),
            "tenant_id": self.tenant_id,
            "serializer": type(self.serializer).__name__,
        }

    def __repr__(self) -> str:
        # Also shown for a half-built wrapper (a traceback's locals while
        # __init__ refuses a key): then there is no keyring yet.
        keyring = getattr(self, "_keyring", None)
        fingerprint = keyring.fingerprint if keyring is not None else None
        return (f"EncryptionWrapper(serializer={getattr(self, 'serializer', None)!r}, "
                f"tenant_id={getattr(self, 'tenant_id', None)!r}, key_fingerprint={fingerprint!r})")

    def __reduce__(self) -> str | tuple[Any, ...]:
        raise TypeError("EncryptionWrapper holds keys and cannot be pickled")
