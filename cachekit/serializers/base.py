"""Serializer protocol and the metadata that travels with serialized bytes."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Protocol, runtime_checkable

from cachekit.exceptions import SerializationError

__all__ = ["SerializationError", "SerializationFormat", "SerializationMetadata", "SerializerProtocol"]


class SerializationFormat(enum.Enum):
    """Serializer ids, as stored in byte 4 of every entry (docs/format.md)."""

    MSGPACK = "msgpack"
    ORJSON = "orjson"
    ARROW = "arrow"

    @property
    def wire_id(self) -> int:
        return {"msgpack": 1, "orjson": 2, "arrow": 3}[self.value]


@dataclasses.dataclass
class SerializationMetadata:
    serialization_format: SerializationFormat
    encoding: str = "utf-8"
    compressed: bool = False
    original_type: str | None = None
    encrypted: bool = False
    tenant_id: str | None = None
    encryption_algorithm: str | None = None
    key_fingerprint: str | None = None

    def to_dict(self) -> dict[str, Any]:
        d = dataclasses.asdict(self)
        d["serialization_format"] = self.serialization_format.value
        return d


@runtime_checkable
class SerializerProtocol(Protocol):
    def serialize(self, obj: Any) -> tuple[bytes, SerializationMetadata]: ...

    def deserialize(self, data: bytes | memoryview, metadata: Any = None) -> Any: ...
