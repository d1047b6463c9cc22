"""StandardSerializer: the C msgpack codec, framed and checksummed."""

from __future__ import annotations

from typing import Any

from cachekit import _core
from cachekit.serializers.base import SerializationFormat, SerializationMetadata, check_metadata


class StandardSerializer:
    """msgpack with typed extensions (docs/format.md). With integrity
    checking (the default) the bytes are a full entry: header, optional LZ4,
    xxHash3 checksum; without, the bare msgpack encoding."""

    def __init__(self, enable_integrity_checking: bool = True) -> None:
        self.enable_integrity_checking = enable_integrity_checking

    def serialize(self, obj: Any) -> tuple[bytes, SerializationMetadata]:
        if self.enable_integrity_checking:
            data = _core.encode_entry(obj)
            compressed = bool(_core.read_header(data)["compressed"])
        else:
            data, compressed = _core.pack(obj), False
        return data, SerializationMetadata(
            SerializationFormat.MSGPACK, compressed=compressed, original_type=type(obj).__name__
        )

    def deserialize(self, data: bytes | memoryview, metadata: Any = None) -> Any:
        check_metadata(metadata, SerializationFormat.MSGPACK)
        if self.enable_integrity_checking:
            return _core.decode_entry(data)
        return _core.unpack(data)

    def __repr__(self) -> str:
        return f"StandardSerializer(enable_integrity_checking={self.enable_integrity_checking})"
