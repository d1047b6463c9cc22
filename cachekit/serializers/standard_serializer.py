"""StandardSerializer: the C msgpack codec, framed and checksummed."""

from __future__ import annotations

from typing import Any

from cachekit import _core
from cachekit.serializers.base import (
    SerializationFormat,
    SerializationMetadata,
    check_metadata,
    fast_metadata,
)

_MSGPACK = SerializationFormat.MSGPACK
_encode_entry = _core.encode_entry
_decode_entry = _core.decode_entry


class StandardSerializer:
    """msgpack with typed extensions (docs/format.md). With integrity
    checking (the default) the bytes are a full entry: header, optional LZ4,
    xxHash3 checksum; without, the bare msgpack encoding."""

    def __init__(self, enable_integrity_checking: bool = True) -> None:
        self.enable_integrity_checking = enable_integrity_checking

    def serialize(self, obj: Any) -> tuple[bytes, SerializationMetadata]:
        if self.enable_integrity_checking:
            data = _encode_entry(obj)
            # Header byte 3, bit 0: COMPRESSED (docs/format.md).
            return data, fast_metadata(_MSGPACK, bool(data[3] & 1), type(obj).__name__)
        return _core.pack(obj), fast_metadata(_MSGPACK, False, type(obj).__name__)

    def deserialize(self, data: bytes | memoryview, metadata: Any = None) -> Any:
        if metadata is not None and getattr(metadata, "serialization_format", _MSGPACK) is not _MSGPACK:
            check_metadata(metadata, _MSGPACK)
        if self.enable_integrity_checking:
            return _decode_entry(data)
        return _core.unpack(data)

    def __repr__(self) -> str:
        return f"StandardSerializer(enable_integrity_checking={self.enable_integrity_checking})"
