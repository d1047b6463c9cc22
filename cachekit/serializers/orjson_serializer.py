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
    fast_metadata,
    missing_extra,
    unframe_payload,
)
from cachekit import _core

__all__ = ["OrjsonSerializer"]

_ORJSON = SerializationFormat.ORJSON
_JSON_ID = 2  # header byte 4 (docs/format.md)
_frame = _core.frame
_unframe = _core.unframe

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
            # The C frame call directly (frame_payload's work, without its
            # per-call lookups): this path is a few microseconds in all.
            data = _frame(data, serializer=_JSON_ID)
            compressed = bool(data[3] & 0x01)
        return data, fast_metadata(_ORJSON, compressed, type(obj).__name__)

    def deserialize(self, data: bytes | memoryview, metadata: Any = None) -> Any:
        if metadata is not None and getattr(metadata, "serialization_format", _ORJSON) is not _ORJSON:
            check_metadata(metadata, _ORJSON)
        if self.enable_integrity_checking:
            wire_id, framed = _unframe(data)
            payload: bytes | memoryview = framed
            if wire_id != _JSON_ID:
                payload = unframe_payload(data, _ORJSON)  # raises IntegrityError
        else:
            payload = data
        try:
            return self._orjson.loads(payload)
        except ValueError as exc:  # orjson.JSONDecodeError
            raise SerializationError(f"invalid JSON in cache entry: {exc}") from None

    def __repr__(self) -> str:
        return (f"OrjsonSerializer(option={self.option}, "
                f"enable_integrity_checking={self.enable_integrity_checking})")
