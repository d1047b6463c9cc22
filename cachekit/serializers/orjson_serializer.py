"""OrjsonSerializer: JSON through orjson (serializer id 2 in the entry header).

JSON keeps only what JSON has: dict keys become str, tuples and sets lists,
datetimes ISO strings; use it for values other programs read. orjson is an
optional dependency (the ``json`` extra), imported when the serializer is
created.
"""

from __future__ import annotations

import importlib
from typing import Any

from cachekit.exceptions import SerializationError, UnsupportedTypeError
from cachekit.serializers.base import (
    SerializationFormat,
    SerializationMetadata,
    check_metadata,
    frame_payload,
    missing_extra,
    unframe_payload,
)

__all__ = ["OrjsonSerializer"]

# orjson.OPT_SORT_KEYS: equal dicts give equal bytes.
_OPT_SORT_KEYS = 32


class OrjsonSerializer:
    """JSON via orjson; ``option`` is passed to ``orjson.dumps`` (default:
    sorted keys). With integrity checking (the default) the bytes are a full
    entry (header, LZ4, xxHash3 checksum, serializer id 2); without, bare JSON."""

    def __init__(self, option: int = _OPT_SORT_KEYS, enable_integrity_checking: bool = True) -> None:
        try:
            self._orjson: Any = importlib.import_module("orjson")
        except ImportError:
            raise missing_extra("orjson", "json", "OrjsonSerializer") from None
        if not isinstance(option, int) or isinstance(option, bool):
            raise UnsupportedTypeError(f"option must be an int of orjson.OPT_* flags, not {option!r}")
        self.option = option
        self.enable_integrity_checking = enable_integrity_checking

    def serialize(self, obj: Any) -> tuple[bytes, SerializationMetadata]:
        try:
            data = self._orjson.dumps(obj, option=self.option)
        except TypeError as exc:  # orjson.JSONEncodeError is a TypeError
            raise UnsupportedTypeError(f"OrjsonSerializer cannot encode this value: {exc}") from None
        compressed = False
        if self.enable_integrity_checking:
            data = frame_payload(data, SerializationFormat.ORJSON)
            compressed = bool(data[3] & 0x01)
        return data, SerializationMetadata(
            SerializationFormat.ORJSON, compressed=compressed, original_type=type(obj).__name__
        )

    def deserialize(self, data: bytes | memoryview, metadata: Any = None) -> Any:
        check_metadata(metadata, SerializationFormat.ORJSON)
        payload = unframe_payload(data, SerializationFormat.ORJSON) if self.enable_integrity_checking else data
        try:
            return self._orjson.loads(payload)
        except ValueError as exc:  # orjson.JSONDecodeError
            raise SerializationError(f"invalid JSON in cache entry: {exc}") from None

    def __repr__(self) -> str:
        return (f"OrjsonSerializer(option={self.option}, "
                f"enable_integrity_checking={self.enable_integrity_checking})")
