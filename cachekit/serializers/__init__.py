"""Serializers: how values become bytes, and EncryptionWrapper to encrypt them.

Every serializer here writes a full entry (docs/format.md) whose header
byte 4 records which one wrote it (1 msgpack, 2 JSON, 3 Arrow); reading an
entry with another serializer is an IntegrityError, never a mis-decode.
"""

from __future__ import annotations

import importlib.util
import time
from typing import Any

from cachekit.exceptions import ConfigurationError
from cachekit.serializers.arrow_serializer import ArrowSerializer
from cachekit.serializers.auto_serializer import AutoSerializer
from cachekit.serializers.base import (
    SerializationError,
    SerializationFormat,
    SerializationMetadata,
    SerializerProtocol,
    SerializerType,
)
from cachekit.serializers.encryption_wrapper import (
    DecryptionAuthenticationError,
    EncryptionError,
    EncryptionWrapper,
)
from cachekit.serializers.orjson_serializer import OrjsonSerializer
from cachekit.serializers.standard_serializer import StandardSerializer

__all__ = [
    "SERIALIZER_REGISTRY",
    "ArrowSerializer",
    "AutoSerializer",
    "DecryptionAuthenticationError",
    "EncryptionError",
    "EncryptionWrapper",
    "OrjsonSerializer",
    "SerializationError",
    "SerializationFormat",
    "SerializationMetadata",
    "SerializerProtocol",
    "SerializerType",
    "StandardSerializer",
    "benchmark_serializers",
    "get_available_serializers",
    "get_serializer",
    "get_serializer_info",
]

# Name -> class. "default" and "std" are the C msgpack codec (which also
# stores numpy arrays and pandas / polars frames); "auto" is the same codec
# under the reference API's name.
SERIALIZER_REGISTRY: dict[str, type] = {
    "default": StandardSerializer,
    "std": StandardSerializer,
    "msgpack": StandardSerializer,
    "auto": AutoSerializer,
    "orjson": OrjsonSerializer,
    "arrow": ArrowSerializer,
}

# name -> (format, packages it needs, extra that installs them, what it is for)
_INFO: dict[str, tuple[SerializationFormat, tuple[str, ...], str | None, str]] = {
    "default": (SerializationFormat.MSGPACK, (), None,
                "msgpack with typed extensions: any supported Python value, numpy arrays, frames"),
    "std": (SerializationFormat.MSGPACK, (), None, "same as 'default'"),
    "msgpack": (SerializationFormat.MSGPACK, (), None, "same as 'default'"),
    "auto": (SerializationFormat.MSGPACK, (), None,
             "the default codec, which picks raw buffers for arrays and Arrow for frames"),
    "orjson": (SerializationFormat.ORJSON, ("orjson",), "json",
               "JSON via orjson: interoperable, JSON types only"),
    "arrow": (SerializationFormat.ARROW, ("pyarrow",), "arrow",
              "Arrow IPC: one DataFrame or Table per entry"),
}


def get_serializer(name: str, enable_integrity_checking: bool = True) -> SerializerProtocol:
    """A new serializer by registry name; ConfigurationError for an unknown
    name or a missing optional package (naming the extra to install)."""
    cls = SERIALIZER_REGISTRY.get(name) if isinstance(name, str) else None
    if cls is None:
        raise ConfigurationError(
            f"unknown serializer {name!r}; known: {', '.join(sorted(SERIALIZER_REGISTRY))}"
        )
    serializer: SerializerProtocol = cls(enable_integrity_checking=enable_integrity_checking)
    return serializer


def _available(name: str) -> bool:
    return all(importlib.util.find_spec(p) is not None for p in _INFO[name][1])


def get_available_serializers() -> dict[str, Any]:
    """Registry name -> class, for the serializers whose packages are installed."""
    return {name: cls for name, cls in SERIALIZER_REGISTRY.items() if _available(name)}


def get_serializer_info() -> dict[str, dict[str, Any]]:
    """Per registry name: class, format, serializer id, availability, extra."""
    return {
        name: {
            "class": SERIALIZER_REGISTRY[name].__name__,
            "format": fmt.value,
            "serializer_id": fmt.wire_id,
            "available": _available(name),
            "requires": list(packages),
            "extra": extra,
            "description": description,
        }
        for name, (fmt, packages, extra, description) in _INFO.items()
    }


def benchmark_serializers() -> dict[str, Any]:
    """Round-trip time (microseconds, best of 5 x 200) of a small dict for
    each available serializer; a rough guide, not a benchmark suite."""
    sample = {"id": 12345, "name": "example", "tags": ["a", "b", "c"], "score": 0.5}
    results: dict[str, Any] = {}
    for name in ("default", "orjson"):
        if not _available(name):
            continue
        s = get_serializer(name)
        best = float("inf")
        for _ in range(5):
            t0 = time.perf_counter()
            for _ in range(200):
                data, meta = s.serialize(sample)
                s.deserialize(data, meta)
            best = min(best, (time.perf_counter() - t0) / 200)
        results[name] = {"round_trip_us": round(best * 1e6, 3), "size": len(s.serialize(sample)[0])}
    return results
