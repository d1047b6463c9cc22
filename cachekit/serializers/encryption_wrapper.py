"""EncryptionWrapper: client-side AES-256-GCM around any serializer.

The inner serializer's bytes become the plaintext of an encrypted entry
(docs/format.md, "Encrypted entries"), bound to the tenant and to the
``cache_key`` passed to serialize/deserialize. Keys come from the
``master_key`` argument (raw bytes, or hex text) or ``CACHEKIT_MASTER_KEY``;
``previous_master_keys`` (or ``CACHEKIT_PREVIOUS_MASTER_KEYS``) still decrypt.
"""

from __future__ import annotations

from typing import Any

from cachekit._core import DecryptionError, EncryptionError, Keyring
from cachekit.config.encryption import decode_master_key, wipe
from cachekit.config.secret import SecretStr
from cachekit.config.singleton import get_settings
from cachekit.exceptions import ConfigurationError
from cachekit.serializers.base import SerializationFormat, SerializationMetadata, SerializerProtocol
from cachekit.serializers.standard_serializer import StandardSerializer

# Name used by code written for other releases.
DecryptionAuthenticationError = DecryptionError

__all__ = ["DecryptionAuthenticationError", "EncryptionError", "EncryptionWrapper"]

_FORMATS = {1: SerializationFormat.MSGPACK, 2: SerializationFormat.ORJSON, 3: SerializationFormat.ARROW}


def _raw_key(key: bytes | bytearray | str | SecretStr, what: str) -> bytearray:
    if isinstance(key, (bytes, bytearray)):
        if len(key) < 32:
            raise ConfigurationError(f"{what} must be at least 32 bytes")
        return bytearray(key)
    secret = key if isinstance(key, SecretStr) else SecretStr(key)
    return decode_master_key(secret, what)


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
        if not isinstance(fail_closed, bool):
            raise ConfigurationError("fail_closed must be True or False")
        self.fail_closed = fail_closed
        settings = get_settings()
        if master_key is None:
            master_key = settings.master_key
        if master_key is None:
            raise ConfigurationError(
                "EncryptionWrapper requires master_key or the CACHEKIT_MASTER_KEY environment "
                "variable. Generate a key with: openssl rand -hex 32"
            )
        if previous_master_keys is None:
            previous_master_keys = list(settings.previous_master_keys)
        raw = _raw_key(master_key, "master_key")
        previous = [_raw_key(k, f"previous_master_keys[{i}]") for i, k in enumerate(previous_master_keys)]
        try:
            self._keyring = Keyring(raw, previous)
        except ValueError as exc:
            raise ConfigurationError(str(exc)) from None
        finally:
            wipe(raw)
            for p in previous:
                wipe(p)

    @property
    def keyring(self) -> Keyring:
        return self._keyring

    def _format_id(self, metadata: SerializationMetadata | None) -> int:
        fmt = metadata.serialization_format if metadata is not None else SerializationFormat.MSGPACK
        return fmt.wire_id

    def serialize(self, obj: Any, cache_key: str = "") -> tuple[bytes, SerializationMetadata]:
        plaintext, inner = self.serializer.serialize(obj)
        entry = self._keyring.seal(
            plaintext, tenant=self.tenant_id, cache_key=cache_key.encode(),
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
        self, data: bytes | memoryview, metadata: SerializationMetadata | None = None, cache_key: str = ""
    ) -> Any:
        fmt_id, plaintext = self._keyring.open(data, tenant=self.tenant_id, cache_key=cache_key.encode())
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
        return (f"EncryptionWrapper(serializer={self.serializer!r}, tenant_id={self.tenant_id!r}, "
                f"key_fingerprint={self._keyring.fingerprint!r})")

    def __reduce__(self) -> object:
        raise TypeError("EncryptionWrapper holds keys and cannot be pickled")
