"""Key providers: where @cache.secure gets its data keys.

A provider makes data keys (a random 32-byte key plus its wrapped form,
which is stored in every entry) and unwraps them again. The C keyring caches
what they return (docs/security.md, "Key caches") and calls them with no
lock held, once per key however many threads miss at the same time.

- The local provider is built in: give ``master_key`` (or set
  ``CACHEKIT_MASTER_KEY``) and keys are wrapped under per-tenant keys derived
  from it with HKDF-SHA256.
- :class:`AwsKmsKeyProvider` asks AWS KMS (``GenerateDataKey`` / ``Decrypt``)
  with the tenant as encryption context, so KMS itself refuses to unwrap one
  tenant's key for another.
- Anything with the :class:`KeyProvider` shape works too.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

from cachekit.exceptions import ConfigurationError

__all__ = ["AwsKmsKeyProvider", "KeyProvider"]


@runtime_checkable
class KeyProvider(Protocol):
    """What @cache.secure needs from a key provider.

    ``provider_id`` (2..255; 2 is AWS KMS's, so pick 3..255 for your own) is
    written into entries; ``key_id`` names the
    wrapping key (its fingerprint goes into entries, so entries from another
    key are misses, not errors). Plaintext keys are returned as bytes or,
    better, a bytearray, which the keyring wipes once it has copied it.

    ``generate_data_key`` must return a key never returned before: the
    keyring counts its nonces from 0 for every key it is given (behind a
    random 32-bit prefix, which lowers but does not remove the risk of a
    reused key; docs/security.md, "Key provider contract").
    """

    provider_id: int
    key_id: str

    def generate_data_key(self, encryption_context: Mapping[str, str]) -> tuple[bytes, bytes]: ...

    def decrypt_data_key(self, wrapped: bytes, encryption_context: Mapping[str, str]) -> bytes: ...


class AwsKmsKeyProvider:
    """Data keys from AWS KMS: ``GenerateDataKey(KeySpec=AES_256)`` to write,
    ``Decrypt`` to read, both with ``{"cachekit:tenant": tenant}`` as the
    encryption context. Pass a boto3 KMS ``client`` or the usual boto3
    settings (``region_name``, ``endpoint_url``)."""

    provider_id = 2

    def __init__(
        self,
        key_id: str,
        *,
        client: Any = None,
        region_name: str | None = None,
        endpoint_url: str | None = None,
        **client_kwargs: Any,
    ) -> None:
        if not isinstance(key_id, str) or not key_id:
            raise ConfigurationError("AwsKmsKeyProvider needs a KMS key id or ARN")
        self.key_id = key_id
        if client is None:
            try:
                import boto3  # type: ignore[import-untyped]
            except ImportError:
                raise ConfigurationError(
                    "AwsKmsKeyProvider needs boto3: pip install boto3, or install cachekit "
                    "from its source checkout with the kms extra: pip install '.[kms]'"
                ) from None
            client = boto3.client("kms", region_name=region_name, endpoint_url=endpoint_url,
                                  **client_kwargs)
        self._client = client

    def generate_data_key(self, encryption_context: Mapping[str, str]) -> tuple[bytearray, bytes]:
        reply = self._client.generate_data_key(
            KeyId=self.key_id, KeySpec="AES_256", EncryptionContext=dict(encryption_context)
        )
        return bytearray(reply["Plaintext"]), reply["CiphertextBlob"]

    def decrypt_data_key(self, wrapped: bytes, encryption_context: Mapping[str, str]) -> bytearray:
        reply = self._client.decrypt(
            CiphertextBlob=wrapped, KeyId=self.key_id, EncryptionContext=dict(encryption_context)
        )
        return bytearray(reply["Plaintext"])

    def __repr__(self) -> str:
        return f"AwsKmsKeyProvider(key_id={self.key_id!r})"
