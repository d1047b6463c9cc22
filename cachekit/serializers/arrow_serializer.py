"""ArrowSerializer: tables as Arrow IPC streams (serializer id 3 in the header).

Takes a pandas DataFrame (index kept, through pyarrow's pandas metadata), a
polars DataFrame, or a pyarrow Table / RecordBatch, and gives back the
``return_format`` asked for: ``"pandas"``, ``"polars"`` or ``"arrow"``.
pyarrow (the ``arrow`` extra) is imported when the serializer is created;
pandas and polars only when a value of theirs is written or asked for.

The default codec stores frames too (docs/format.md, ext 21), inside any
value and with the same type coming back; ArrowSerializer is for entries
that are one table and that other Arrow readers may open.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any, BinaryIO

from cachekit._data import write_ipc_table
from cachekit.exceptions import ConfigurationError, SerializationError, UnsupportedTypeError
from cachekit.serializers.base import (
    SerializationFormat,
    SerializationMetadata,
    check_metadata,
    frame_payload,
    missing_extra,
    unframe_payload,
)

__all__ = ["ArrowSerializer"]

_RETURN_FORMATS = ("pandas", "polars", "arrow")
_COMPRESSIONS = ("auto", None, "lz4", "zstd")


class ArrowSerializer:
    """Arrow IPC. ``compression``: ``"auto"`` (default) and ``None`` leave
    compression to the entry frame's LZ4 (with integrity checking) ; ``"lz4"``
    or ``"zstd"`` compress the IPC buffers themselves (readable by any
    Arrow implementation)."""

    def __init__(
        self,
        return_format: str = "pandas",
        enable_integrity_checking: bool = True,
        compression: str | None = "auto",
    ) -> None:
        if return_format not in _RETURN_FORMATS:
            raise ConfigurationError(
                f"return_format must be one of {', '.join(_RETURN_FORMATS)}, not {return_format!r}"
            )
        if compression not in _COMPRESSIONS:
            raise ConfigurationError(
                f"compression must be 'auto', None, 'lz4' or 'zstd', not {compression!r}"
            )
        try:
            self._pa: Any = importlib.import_module("pyarrow")
            importlib.import_module("pyarrow.ipc")
        except ImportError:
            raise missing_extra("pyarrow", "arrow", "ArrowSerializer") from None
        if return_format != "arrow":
            try:
                importlib.import_module(return_format)
            except ImportError:
                raise missing_extra(return_format, return_format,
                                    f"ArrowSerializer(return_format={return_format!r})") from None
        self.return_format = return_format
        self.enable_integrity_checking = enable_integrity_checking
        self.compression = compression

    def serialization_metadata(self) -> SerializationMetadata:
        return SerializationMetadata(SerializationFormat.ARROW)

    def _table(self, obj: Any) -> Any:
        pa = self._pa
        if isinstance(obj, pa.Table):
            return obj
        if isinstance(obj, pa.RecordBatch):
            return pa.Table.from_batches([obj])
        pd = sys.modules.get("pandas")
        if pd is not None and isinstance(obj, pd.DataFrame):
            return pa.Table.from_pandas(obj, preserve_index=True)
        pl = sys.modules.get("polars")
        if pl is not None and isinstance(obj, pl.DataFrame):
            return obj.to_arrow()
        raise UnsupportedTypeError(
            f"ArrowSerializer stores pandas or polars DataFrames and pyarrow Tables, not "
            f"{type(obj).__module__}.{type(obj).__qualname__}"
        )

    def _ipc(self, obj: Any) -> Any:
        pa = self._pa
        table = self._table(obj)
        codec = None if self.compression in ("auto", None) else self.compression
        sink = pa.BufferOutputStream()
        try:
            options = pa.ipc.IpcWriteOptions(compression=codec)
            with pa.ipc.new_stream(sink, table.schema, options=options) as writer:
                write_ipc_table(pa, writer, table)
        except pa.ArrowException as exc:
            raise SerializationError(f"ArrowSerializer cannot encode this table: {exc}") from None
        return sink.getvalue()

    def serialize(self, obj: Any) -> tuple[bytes, SerializationMetadata]:
        payload = self._ipc(obj)
        compressed = self.compression not in ("auto", None)
        if self.enable_integrity_checking:
            data = frame_payload(payload, SerializationFormat.ARROW)
            compressed = compressed or bool(data[3] & 0x01)
        else:
            data = payload.to_pybytes()
        return data, SerializationMetadata(
            SerializationFormat.ARROW, compressed=compressed, original_type=type(obj).__name__
        )

    def serialize_to_sink(self, obj: Any, sink: BinaryIO, max_bytes: int | None = None) -> SerializationMetadata:
        """serialize(obj), written to sink; nothing is written when the
        result is larger than max_bytes (SerializationError)."""
        data, meta = self.serialize(obj)
        if max_bytes is not None and len(data) > max_bytes:
            raise SerializationError(f"serialized table is {len(data)} bytes, over max_bytes={max_bytes}")
        sink.write(data)
        return meta

    def deserialize(self, data: bytes | memoryview, metadata: Any = None) -> Any:
        check_metadata(metadata, SerializationFormat.ARROW)
        payload = unframe_payload(data, SerializationFormat.ARROW) if self.enable_integrity_checking else data
        return self.decode_payload(payload)

    def decode_payload(self, payload: bytes | memoryview) -> Any:
        """A bare Arrow IPC stream (no entry frame) as return_format;
        SerializationError for anything else."""
        pa = self._pa
        try:
            table = pa.ipc.open_stream(pa.py_buffer(payload)).read_all()
            table.validate(full=True)
        except (pa.ArrowException, ValueError, OSError) as exc:
            raise SerializationError(f"invalid Arrow IPC stream in cache entry: {exc}") from None
        if self.return_format == "arrow":
            return table
        if self.return_format == "polars":
            return importlib.import_module("polars").from_arrow(table)
        return table.to_pandas()

    def __repr__(self) -> str:
        return (f"ArrowSerializer(return_format={self.return_format!r}, "
                f"enable_integrity_checking={self.enable_integrity_checking}, "
                f"compression={self.compression!r})")
