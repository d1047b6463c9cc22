"""Serializers: how values become bytes, and EncryptionWrapper to encrypt them."""

from cachekit.serializers.base import (
    SerializationError,
    SerializationFormat,
    SerializationMetadata,
    SerializerProtocol,
)
from cachekit.serializers.encryption_wrapper import (
    DecryptionAuthenticationError,
    EncryptionError,
    EncryptionWrapper,
)
from cachekit.serializers.standard_serializer import StandardSerializer

__all__ = [
    "DecryptionAuthenticationError",
    "EncryptionError",
    "EncryptionWrapper",
    "SerializationError",
    "SerializationFormat",
    "SerializationMetadata",
    "SerializerProtocol",
    "StandardSerializer",
]
