"""AutoSerializer: the default codec, which picks the encoding per value.

The C codec already chooses per value: msgpack for plain data, raw buffers
for numpy arrays (ext 20), Arrow IPC for pandas and polars frames (ext 21),
see docs/format.md. So AutoSerializer is StandardSerializer under the
reference API's name and signature; ``@cache(serializer="auto")`` is the
default path.
"""

from __future__ import annotations

from typing import Any

from cachekit import _core
from cachekit.exceptions import ConfigurationError
from cachekit.serializers.base import SerializationMetadata
from cachekit.serializers.standard_serializer import StandardSerializer

__all__ = ["AutoSerializer"]


class AutoSerializer(StandardSerializer):
    """msgpack with typed extensions, arrays and frames included.

    ``default_format`` must be ``"msgpack"`` (the only general format);
    ``use_rust`` is accepted for compatibility and ignored (the codec is C).
    """

    def __init__(
        self,
        default_format: str = "msgpack",
        enable_integrity_checking: bool = True,
        use_rust: bool | None = None,
    ) -> None:
        if default_format != "msgpack":
            raise ConfigurationError(
                f"AutoSerializer(default_format={default_format!r}): only 'msgpack' is "
                "supported; use OrjsonSerializer or ArrowSerializer for those formats"
            )
        super().__init__(enable_integrity_checking=enable_integrity_checking)
        self.default_format = default_format
        self.use_rust = use_rust

    def serialize(self, obj: Any) -> tuple[bytes, SerializationMetadata]:
        return super().serialize(obj)

    def deserialize(self, data: bytes | memoryview, metadata: Any = None) -> Any:
        return super().deserialize(data, metadata)

    def estimate_compression_ratio(self, obj: Any) -> float:
        """Encoded size over stored size (>= 1.0; 1.0 when LZ4 would not pay)."""
        entry = _core.encode_entry(obj)
        header = _core.read_header(entry)
        stored = int(header["stored_len"])
        return int(header["original_len"]) / stored if stored else 1.0

    def validate_data(self, data: bytes) -> bool:
        """True if data is an entry this serializer can decode."""
        try:
            self.deserialize(data)
        except _core.SerializationError:
            return False
        return True

    def __repr__(self) -> str:
        return f"AutoSerializer(enable_integrity_checking={self.enable_integrity_checking})"
