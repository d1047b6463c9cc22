"""Serializer protocol and the metadata that travels with serialized bytes."""

from __future__ import annotations

import dataclasses
import enum
from typing import Any, Protocol, runtime_checkable

from cachekit import _core
from cachekit.exceptions import IntegrityError, SerializationError

__all__ = [
    "SerializationError",
    "SerializationFormat",
    "SerializationMetadata",
    "SerializerProtocol",
    "SerializerType",
]


class SerializationFormat(enum.Enum):
    """Serializer ids, as stored in byte 4 of every entry (docs/format.md)."""

    MSGPACK = "msgpack"
    ORJSON = "orjson"
    ARROW = "arrow"

    @property
    def wire_id(self) -> int:
        return {"msgpack": 1, "orjson": 2, "arrow": 3}[self.value]


class SerializerType(enum.Enum):
    """Kept for code written against the reference API."""

    DEFAULT = "default"


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


_new_object = object.__new__


def fast_metadata(
    fmt: SerializationFormat,
    compressed: bool,
    original_type: str | None,
    encrypted: bool = False,
    tenant_id: str | None = None,
    encryption_algorithm: str | None = None,
    key_fingerprint: str | None = None,
) -> SerializationMetadata:
    """SerializationMetadata(fmt, "utf-8", compressed, original_type, ...)
    with its __dict__ set in one step instead of the dataclass __init__'s
    eight attribute stores (benchmarks/README.md, "Serializer layers")."""
    meta: SerializationMetadata = _new_object(SerializationMetadata)
    meta.__dict__ = {
        "serialization_format": fmt, "encoding": "utf-8", "compressed": compressed,
        "original_type": original_type, "encrypted": encrypted, "tenant_id": tenant_id,
        "encryption_algorithm": encryption_algorithm, "key_fingerprint": key_fingerprint,
    }
    return meta


@runtime_checkable
class SerializerProtocol(Protocol):
    def serialize(self, obj: Any) -> tuple[bytes, SerializationMetadata]: ...

    def deserialize(self, data: bytes | memoryview, metadata: Any = None) -> Any: ...


def frame_payload(payload: bytes | memoryview, fmt: SerializationFormat) -> bytes:
    """A full entry (header, optional LZ4, checksum) around a serialized
    payload, recording fmt's serializer id in header byte 4."""
    return _core.frame(payload, serializer=fmt.wire_id)


def unframe_payload(data: bytes | memoryview, fmt: SerializationFormat) -> bytes:
    """The payload of an entry frame_payload wrote for fmt. An entry another
    serializer wrote is an IntegrityError (a cache miss to a caller), never
    decoded as if it were fmt."""
    wire_id, payload = _core.unframe(data)
    if wire_id != fmt.wire_id:
        raise IntegrityError(
            f"entry serializer {wire_id} is not {fmt.value} ({fmt.wire_id})"
        )
    return payload


def check_metadata(metadata: Any, fmt: SerializationFormat) -> None:
    """Metadata naming another format (EncryptionWrapper passes the id its
    entry recorded) is an IntegrityError, as in unframe_payload."""
    other = getattr(metadata, "serialization_format", None)
    if isinstance(other, SerializationFormat) and other is not fmt:
        raise IntegrityError(
            f"entry serializer {other.wire_id} is not {fmt.value} ({fmt.wire_id})"
        )


def missing_extra(package: str, extra: str, what: str) -> Exception:
    from cachekit.exceptions import ConfigurationError

    return ConfigurationError(
        f"{what} needs the {package} package: install cachekit's {extra} extra "
        f"(pip install '.[{extra}]' from the source checkout) or pip install {package}"
    )
